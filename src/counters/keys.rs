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
}

/// The keys of one campaign: `<prefix>:{c:<campaign>}:...`.
#[derive(Debug, Clone)]
pub struct CampaignKeys {
    base: String,
}

impl CampaignKeys {
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
    }
}
