//! livefund: charity fundraising for live streams.
pub mod demo;
