//! The payment provider's side: webhook signatures, the events it sends, and the
//! built-in sandbox provider.

mod event;
pub mod sandbox;
pub mod signature;

pub use event::{EventKind, PaymentEvent};
