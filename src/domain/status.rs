//! A pledge's status (CONTRACT §6) and the order statuses follow: a status only moves
//! forward. The one place the status words are spelled; SQL and Lua get them from here.

use serde::{Deserialize, Serialize};

/// Where a pledge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PledgeStatus {
    /// Accepted, waiting for its payment.
    Pending,
    /// Its payment did not come in time.
    Expired,
    /// Its payment was declined.
    Failed,
    /// Paid: a gift in the ledger.
    Confirmed,
    /// Its gift was refunded in full.
    Refunded,
}

impl PledgeStatus {
    /// Every status, in rank order.
    pub const ALL: [PledgeStatus; 5] = [
        PledgeStatus::Pending,
        PledgeStatus::Expired,
        PledgeStatus::Failed,
        PledgeStatus::Confirmed,
        PledgeStatus::Refunded,
    ];

    /// The word of the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            PledgeStatus::Pending => "pending",
            PledgeStatus::Expired => "expired",
            PledgeStatus::Failed => "failed",
            PledgeStatus::Confirmed => "confirmed",
            PledgeStatus::Refunded => "refunded",
        }
    }

    /// The status a stored word names.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// How far a pledge has come; it may only move to a higher rank. An expired or
    /// failed pledge can still be paid late; a paid one is refunded at most.
    pub fn rank(self) -> i32 {
        match self {
            PledgeStatus::Pending => 0,
            PledgeStatus::Expired | PledgeStatus::Failed => 1,
            PledgeStatus::Confirmed => 2,
            PledgeStatus::Refunded => 3,
        }
    }

    /// Whether a pledge in this status may move to `next`.
    pub fn may_become(self, next: PledgeStatus) -> bool {
        next.rank() > self.rank()
    }

    /// Whether a pledge in this status counts in `pledged`: not failed, not expired.
    pub fn counts_as_pledged(self) -> bool {
        !matches!(self, PledgeStatus::Expired | PledgeStatus::Failed)
    }

    /// The words of the statuses that count in `pledged`, for SQL (`status = any($1)`).
    pub fn pledged_words() -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|s| s.counts_as_pledged())
            .map(PledgeStatus::as_str)
            .collect()
    }

    /// The words and ranks of every status as two columns, for SQL that orders statuses
    /// (`unnest($1::text[], $2::int[]) as r(status, rank)`).
    pub fn rank_table() -> (Vec<&'static str>, Vec<i32>) {
        Self::ALL.iter().map(|s| (s.as_str(), s.rank())).unzip()
    }
}

impl TryFrom<String> for PledgeStatus {
    type Error = super::Invalid;

    fn try_from(word: String) -> Result<Self, Self::Error> {
        PledgeStatus::parse(&word).ok_or_else(|| {
            super::Invalid::new("status", format!("{word:?} is not a pledge status"))
        })
    }
}

impl std::fmt::Display for PledgeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_match_serde() {
        for s in PledgeStatus::ALL {
            assert_eq!(PledgeStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("serializes"),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(PledgeStatus::parse("paid"), None);
    }

    #[test]
    fn a_status_only_moves_forward() {
        use PledgeStatus::*;
        assert!(Pending.may_become(Expired) && Pending.may_become(Confirmed));
        assert!(Expired.may_become(Confirmed) && Failed.may_become(Confirmed));
        assert!(Confirmed.may_become(Refunded));
        assert!(!Expired.may_become(Failed) && !Confirmed.may_become(Failed));
        assert!(!Refunded.may_become(Confirmed) && !Pending.may_become(Pending));
    }
}
