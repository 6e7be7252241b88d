//! The Redis key layout, in one place.

use crate::domain::Slug;

/// Builds keys under one deployment prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The keys of one campaign and its streams; all share the campaign's hash tag.
    pub fn campaign(&self, campaign: &Slug) -> CampaignKeys {
        CampaignKeys {
            base: format!("{}:{{c:{}}}", self.prefix, campaign),
        }
    }

    /// Pledge id → its campaign, so a pledge can be read back by its id alone.
    pub fn pledge_index(&self, pledge_id: &str) -> String {
        format!("{}:pledge:{}", self.prefix, pledge_id)
    }

    /// The set of campaigns that may have pending pledges, walked by the expiry sweep.
    /// An index only, outside any campaign's slot; never touched by a script.
    pub fn pending_campaigns(&self) -> String {
        format!("{}:pending-campaigns", self.prefix)
    }
}

/// The keys of one campaign: `<prefix>:{c:<campaign>}:...`.
#[derive(Debug, Clone)]
pub struct CampaignKeys {
    base: String,
}

impl CampaignKeys {
    /// The common start of every key of the campaign; scripts build stream keys from it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Hash of the campaign's counters: pledged, confirmed, matched, refunded, gifts.
    pub fn totals(&self) -> String {
        format!("{}:totals", self.base)
    }

    /// HyperLogLog of the campaign's donors.
    pub fn donors(&self) -> String {
        format!("{}:donors", self.base)
    }

    /// Hash of one stream's counters, same fields as the campaign's.
    pub fn stream_totals(&self, stream: &Slug) -> String {
        format!("{}:s:{}:totals", self.base, stream)
    }

    /// HyperLogLog of one stream's donors.
    pub fn stream_donors(&self, stream: &Slug) -> String {
        format!("{}:s:{}:donors", self.base, stream)
    }

    /// Hash of one pledge in flight.
    pub fn pledge(&self, pledge_id: &str) -> String {
        format!("{}:pl:{}", self.base, pledge_id)
    }

    /// The first answer given to an idempotency key.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{}", self.base, key)
    }

    /// Sorted set of pending pledge ids by expiry time (ms).
    pub fn pending(&self) -> String {
        format!("{}:pending", self.base)
    }

    /// Set of gift ids counted live (by their effect, or by a rebuild from the ledger).
    pub fn applied_gifts(&self) -> String {
        format!("{}:applied-gifts", self.base)
    }

    /// Set of refund ids counted live (by their effect, or by a rebuild from the ledger).
    pub fn applied_refunds(&self) -> String {
        format!("{}:applied-refunds", self.base)
    }

    /// Set of the ledger's effects already announced (`g:<gift>`, `r:<refund>`,
    /// `m:<milestone>`): counting and announcing are separate facts, so a rebuild that
    /// counts a gift does not swallow its alert.
    pub fn announced(&self) -> String {
        format!("{}:announced", self.base)
    }

    /// Sorted set of the campaign's top donors by net amount.
    pub fn top(&self) -> String {
        format!("{}:top", self.base)
    }

    /// Sorted set of one stream's top donors by net amount.
    pub fn stream_top(&self, stream: &Slug) -> String {
        format!("{}:s:{}:top", self.base, stream)
    }

    /// Hash of leaderboard key to the name shown ('' for none).
    pub fn names(&self) -> String {
        format!("{}:names", self.base)
    }

    /// Counter of one stream's event seq.
    pub fn stream_seq(&self, stream: &Slug) -> String {
        format!("{}:s:{}:seq", self.base, stream)
    }

    /// Redis stream of one stream's recent events, with ids `<seq>-0`.
    pub fn stream_log(&self, stream: &Slug) -> String {
        format!("{}:s:{}:log", self.base, stream)
    }

    /// Present once the campaign's counters were built (at creation, or rebuilt from the
    /// ledger); its absence means Redis lost them.
    pub fn built(&self) -> String {
        format!("{}:built", self.base)
    }

    /// The pub/sub channel of the campaign's live changes.
    pub fn channel(&self) -> String {
        format!("{}:events", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_campaign_hash_tag() {
        let campaign = Slug::parse("c", "warm-winter").expect("slug");
        let stream = Slug::parse("s", "live-01").expect("slug");
        let keys = Keys::new("lf").campaign(&campaign);
        assert_eq!(keys.totals(), "lf:{c:warm-winter}:totals");
        assert_eq!(keys.donors(), "lf:{c:warm-winter}:donors");
        assert_eq!(
            keys.stream_totals(&stream),
            "lf:{c:warm-winter}:s:live-01:totals"
        );
        assert_eq!(
            keys.stream_donors(&stream),
            "lf:{c:warm-winter}:s:live-01:donors"
        );
        for key in [keys.pledge("p"), keys.stream_log(&stream), keys.channel()] {
            assert!(key.starts_with("lf:{c:warm-winter}:"), "{key}");
        }
    }
}
