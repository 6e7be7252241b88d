//! Campaign rules: when a campaign is live, and the sponsor's matching terms.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Invalid, Money};

/// Where a campaign stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Scheduled,
    Live,
    Ended,
    Closed,
}

/// The time window of a campaign; open-ended where a bound is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignWindow {
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

impl CampaignWindow {
    pub fn new(
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
    ) -> Result<Self, Invalid> {
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && s >= e
        {
            return Err(Invalid::new("ends_at", "must be after starts_at"));
        }
        Ok(Self { starts_at, ends_at })
    }

    /// A campaign is live inside its window until it is closed.
    pub fn status(&self, now: DateTime<Utc>, closed_at: Option<DateTime<Utc>>) -> CampaignStatus {
        if closed_at.is_some() {
            CampaignStatus::Closed
        } else if self.starts_at.is_some_and(|s| now < s) {
            CampaignStatus::Scheduled
        } else if self.ends_at.is_some_and(|e| now >= e) {
            CampaignStatus::Ended
        } else {
            CampaignStatus::Live
        }
    }
}

/// A sponsor adds `ratio_percent` of each settled gift until the net match reaches `cap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchingTerms {
    pub sponsor: String,
    pub ratio_percent: u16,
    pub cap: Money,
}

impl MatchingTerms {
    pub const MAX_RATIO_PERCENT: u16 = 1000;

    pub fn new(sponsor: String, ratio_percent: i64, cap: Money) -> Result<Self, Invalid> {
        let ratio = u16::try_from(ratio_percent)
            .ok()
            .filter(|r| (1..=Self::MAX_RATIO_PERCENT).contains(r))
            .ok_or_else(|| {
                Invalid::new(
                    "matching.ratio_percent",
                    format!("must be between 1 and {}", Self::MAX_RATIO_PERCENT),
                )
            })?;
        Ok(Self {
            sponsor,
            ratio_percent: ratio,
            cap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, 0, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn window_status() {
        let w = CampaignWindow::new(Some(at(10)), Some(at(12))).expect("ordered");
        assert_eq!(w.status(at(9), None), CampaignStatus::Scheduled);
        assert_eq!(w.status(at(10), None), CampaignStatus::Live);
        assert_eq!(w.status(at(12), None), CampaignStatus::Ended);
        assert_eq!(w.status(at(11), Some(at(11))), CampaignStatus::Closed);
        let open = CampaignWindow::new(None, None).expect("open");
        assert_eq!(open.status(at(0), None), CampaignStatus::Live);
    }

    #[test]
    fn window_must_be_ordered() {
        assert!(CampaignWindow::new(Some(at(12)), Some(at(12))).is_err());
        assert!(CampaignWindow::new(Some(at(13)), Some(at(12))).is_err());
    }

    #[test]
    fn ratio_bounds() {
        let cap = Money::from_stored(100);
        assert!(MatchingTerms::new("s".into(), 0, cap).is_err());
        assert!(MatchingTerms::new("s".into(), 1001, cap).is_err());
        assert!(MatchingTerms::new("s".into(), -5, cap).is_err());
        assert!(MatchingTerms::new("s".into(), 100, cap).is_ok());
    }
}
