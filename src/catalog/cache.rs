//! A short-lived in-memory copy of what pledges and sockets need of a stream and its
//! campaign, so the hot paths never wait on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

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

/// Stream slug → its info, read again from PostgreSQL once older than [`FRESH_FOR`].
pub struct CatalogCache {
    db: PgPool,
    keys: Keys,
    entries: moka::future::Cache<Slug, Arc<StreamInfo>>,
}

/// The most streams kept.
const CAPACITY: u64 = 100_000;

impl CatalogCache {
    pub fn new(db: PgPool, keys: Keys) -> Self {
        Self {
            db,
            keys,
            entries: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(FRESH_FOR)
                .build(),
        }
    }

    /// Forgets every entry: the next read of each stream goes to PostgreSQL (after a
    /// change this gateway made, such as a close).
    pub fn forget_all(&self) {
        self.entries.invalidate_all();
    }

    /// The stream named `slug`, or `None` when there is no such stream (not cached: a
    /// stream created a moment later is found at once).
    pub async fn stream(&self, slug: &Slug) -> sqlx::Result<Option<Arc<StreamInfo>>> {
        if let Some(hit) = self.entries.get(slug).await {
            return Ok(Some(hit));
        }
        let loaded = self.load(slug).await?;
        if let Some(info) = &loaded {
            self.entries.insert(slug.clone(), info.clone()).await;
        }
        Ok(loaded)
    }

    /// Reads the stream, its campaign and the fund's designations from PostgreSQL.
    async fn load(&self, slug: &Slug) -> sqlx::Result<Option<Arc<StreamInfo>>> {
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
        Ok(Some(Arc::new(StreamInfo {
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
        })))
    }
}
