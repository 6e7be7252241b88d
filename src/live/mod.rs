//! Live fan-out: per-stream hubs on this gateway, fed by one Redis pub/sub subscription
//! per campaign that has local sockets, with totals coalesced and events passed through.
//!
//! Each frame is serialized once per stream (by the Lua script for events, here for
//! totals) and handed to every local socket of the stream through a broadcast channel.

mod coalesce;
mod hub;
mod protocol;
mod socket;
mod subscriber;
mod wire;

pub use coalesce::run_coalescer;
pub use hub::{Frame, Live, Membership};
pub use socket::{SocketParams, run_socket};
pub use subscriber::{Command as SubscriberCommand, run_subscriber};
pub use wire::{NotAnUpgrade, Upgrade};
