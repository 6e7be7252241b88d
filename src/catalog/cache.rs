//! A short-lived in-memory copy of what pledges and sockets need of a stream and its
//! campaign, so the hot paths never wait on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{campaign_by_slug, designations_of_fund, stream_by_slug};
use crate::counters::{CampaignKeys, Keys};
use crate::domain::{CampaignStatus, Money, PledgeRules, Slug};

/// How long a cached entry is trusted. Closing a campaign or changing its rules shows
/// within this time on every gateway.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// What the live paths need of a campaign.
#[derive(Debug)]
pub struct CampaignInfo {
    pub id: i64,
    pub slug: Slug,
    pub goal: Money,
    /// The sponsor's matching cap, when the campaign is matched.
    pub matching_cap: Option<Money>,
    pub keys: CampaignKeys,
    rules: PledgeRules,
    stored: super::Campaign,
}

impl CampaignInfo {
    /// The pledge rules as of `now` (the campaign may have started or ended since).
    pub fn rules(&self, now: DateTime<Utc>) -> PledgeRules {
        PledgeRules {
            status: self.status(now),
            ..self.rules.clone()
        }
    }

    pub fn status(&self, now: DateTime<Utc>) -> CampaignStatus {
        self.stored.status(now)
    }
}

/// What the live paths need of a stream.
#[derive(Debug)]
pub struct StreamInfo {
    pub id: i64,
    pub slug: Slug,
    pub goal: Option<Money>,
    pub campaign: Arc<CampaignInfo>,
}

/// Stream slug → its info, refreshed from PostgreSQL when older than [`FRESH_FOR`].
pub struct CatalogCache {
    db: PgPool,
    keys: Keys,
    entries: Mutex<HashMap<String, (Instant, Arc<StreamInfo>)>>,
}

impl CatalogCache {
    pub fn new(db: PgPool, keys: Keys) -> Self {
        Self {
            db,
            keys,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The stream named `slug`, or `None` when there is no such stream.
    pub async fn stream(&self, slug: &Slug) -> sqlx::Result<Option<Arc<StreamInfo>>> {
        if let Some(hit) = self.fresh(slug.as_str()) {
            return Ok(Some(hit));
        }
        let Some(stream) = stream_by_slug(&self.db, slug).await? else {
            return Ok(None);
        };
        let Some(campaign) = campaign_by_slug(&self.db, &stream.campaign_slug).await? else {
            return Ok(None);
        };
        let designations: HashSet<String> = designations_of_fund(&self.db, campaign.fund_id)
            .await?
            .into_iter()
            .map(|d| d.code)
            .collect();
        let info = Arc::new(StreamInfo {
            id: stream.id,
            slug: slug.clone(),
            goal: stream.goal(),
            campaign: Arc::new(CampaignInfo {
                id: campaign.id,
                keys: self.keys.campaign(&campaign.slug),
                slug: campaign.slug.clone(),
                goal: campaign.goal,
                matching_cap: campaign.matching.as_ref().map(|m| m.terms.cap),
                rules: PledgeRules {
                    currency: campaign.currency,
                    min_amount: campaign.min_amount,
                    max_amount: campaign.max_amount,
                    designations,
                    status: CampaignStatus::Live,
                },
                stored: campaign,
            }),
        });
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(slug.to_string(), (Instant::now(), info.clone()));
        }
        Ok(Some(info))
    }

    fn fresh(&self, slug: &str) -> Option<Arc<StreamInfo>> {
        let entries = self.entries.lock().ok()?;
        let (at, info) = entries.get(slug)?;
        (at.elapsed() < FRESH_FOR).then(|| info.clone())
    }
}
