//! The payment provider's side: the events it sends and their webhook signatures.

mod event;
pub mod signature;

pub use event::{EventKind, PaymentEvent};
