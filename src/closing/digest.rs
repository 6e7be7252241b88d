//! The ledger digest given at close: a SHA-256 hash chain over the campaign's gifts, in
//! the export's order, so anyone holding the export can compute it again.
//!
//! ```text
//! h₀ = SHA-256("livefund-ledger-v1:" + campaign slug)
//! hᵢ = SHA-256(hᵢ₋₁ (32 bytes) + lineᵢ (UTF-8))
//! digest = lowercase hex of hₙ
//! ```
//!
//! `lineᵢ` is the i-th gift's fields joined by U+001F (unit separator) and ended by
//! `\n`: gift_id, pledge_id, provider_txn_id, stream, amount, fee, currency,
//! designation, donor, anonymous (`true`/`false`), message, matched at close
//! (`matched - matched_after_close`), refunded at close (`refunded -
//! refunded_after_close`), settled_at — each as the export writes it, absent text as
//! the empty string, and a text cell's leading `'` (put there for spreadsheets) dropped.

use sha2::{Digest, Sha256};

use super::export::{GiftEntry, time_text};

/// Names the algorithm; a new algorithm gets a new name.
pub const VERSION: &str = "livefund-ledger-v1";

/// The digest of `gifts` (in the export's order) for the campaign `slug`.
pub fn ledger_digest(slug: &str, gifts: &[GiftEntry]) -> String {
    let mut chain: [u8; 32] = Sha256::digest(format!("{VERSION}:{slug}").as_bytes()).into();
    for gift in gifts {
        let mut link = Sha256::new();
        link.update(chain);
        link.update(line(gift).as_bytes());
        chain = link.finalize().into();
    }
    hex::encode(chain)
}

fn line(g: &GiftEntry) -> String {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        g.gift_id.to_string(),
        g.pledge_id.to_string(),
        g.provider_txn_id.clone(),
        g.stream.clone(),
        g.amount.to_string(),
        g.fee.to_string(),
        g.currency.clone(),
        text(&g.designation),
        text(&g.donor),
        g.anonymous.to_string(),
        text(&g.message),
        (g.matched - g.matched_after_close).to_string(),
        (g.refunded - g.refunded_after_close).to_string(),
        time_text(g.settled_at),
    ];
    let mut line = fields.join("\u{1f}");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn gift(amount: i64) -> GiftEntry {
        GiftEntry {
            gift_id: uuid::Uuid::nil(),
            pledge_id: uuid::Uuid::nil(),
            provider_txn_id: "pay_1".into(),
            stream: "s".into(),
            amount,
            fee: 0,
            currency: "CNY".into(),
            designation: None,
            donor: None,
            anonymous: true,
            message: None,
            message_hidden: false,
            matched: 0,
            refunded: 0,
            refunded_after_close: 0,
            matched_after_close: 0,
            settled_at: chrono::Utc.timestamp_opt(0, 0).single().unwrap_or_default(),
        }
    }

    #[test]
    fn the_chain_starts_from_the_campaign_and_covers_every_gift_in_order() {
        let empty = ledger_digest("c", &[]);
        assert_eq!(empty, hex::encode(Sha256::digest(b"livefund-ledger-v1:c")));
        assert_ne!(
            ledger_digest("c", &[gift(1)]),
            ledger_digest("c", &[gift(2)])
        );
        assert_ne!(
            ledger_digest("c", &[gift(1), gift(2)]),
            ledger_digest("c", &[gift(2), gift(1)])
        );
        assert_ne!(
            ledger_digest("c", &[gift(1)]),
            ledger_digest("d", &[gift(1)])
        );
    }

    #[test]
    fn what_happens_after_close_leaves_the_digest() {
        let at_close = gift(500);
        let mut later = at_close.clone();
        later.refunded = 200;
        later.refunded_after_close = 200;
        later.matched_after_close = -100;
        later.matched = -100;
        later.message_hidden = true;
        assert_eq!(
            ledger_digest("c", &[at_close]),
            ledger_digest("c", &[later])
        );
    }
}
