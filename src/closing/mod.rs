//! A campaign's books once it has run: the export of its settled gifts, the ledger digest
//! given at close, the close itself, and the public disclosure.

mod close;
mod digest;
mod disclosure;
mod export;

pub use close::{CloseError, CloseRequest, Closed, close, ledger_state};
pub use digest::{VERSION as DIGEST_VERSION, ledger_digest};
pub use disclosure::{Disclosure, UNRESTRICTED, disclose};
pub use export::{COLUMNS as GIFT_COLUMNS, GiftEntry, gifts, spreadsheet_safe, to_csv};
