//! The scenarios, one module each; every one returns a [`crate::report::Report`].

pub mod connect;
pub mod fanout;
pub mod idle;
pub mod pledges;
pub mod rebuild;
pub mod settle;
pub mod two_gateways;
