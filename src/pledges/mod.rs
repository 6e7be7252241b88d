//! Pledge intake, shared by HTTP and WebSocket: parse against the campaign's rules,
//! record once per idempotency key in Redis, hand the pledge to the write-behind.

mod expiry;
mod rate;
mod writer;

pub use expiry::{ExpiryIndex, run_expiry, sweep};
pub use rate::{RateLimiter, Window};
pub use writer::{PledgeChange, WriteBehind, run_write_behind};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::catalog::{CampaignInfo, StreamInfo};
use crate::counters::pledge_hash::{self, PLEDGE_KEEP_SECS, ReadError};
use crate::counters::{self, PledgeOutcome, PledgeWrite};
use crate::domain::{Currency, Money, Pledge, PledgeFields, PledgeRecord, PledgeStatus, Refusal};
use crate::ledger::{Ledger, RebuildError, pledge_rows};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 60 * 60;

/// The answer to an accepted pledge (CONTRACT §6).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub pledge_id: String,
    /// Always `pending` in this answer; `GET /api/v1/pledges/{id}` tells what became of it.
    pub status: PledgeStatus,
    #[schema(value_type = i64)]
    pub amount: Money,
    #[schema(value_type = String)]
    pub currency: Currency,
    pub checkout_url: String,
    pub expires_at: DateTime<Utc>,
    /// True when this answer repeats the first one for the same idempotency key.
    #[serde(skip)]
    pub replay: bool,
}

/// Why a pledge was not accepted, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PledgeError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("this idempotency key was used with a different pledge")]
    IdempotencyConflict,
    #[error("the live store is unavailable, try again")]
    Redis(#[source] redis::RedisError),
    #[error("the fund database is unavailable, try again")]
    Database(#[source] sqlx::Error),
    #[error("the live counters could not be rebuilt, try again")]
    Rebuild(#[source] RebuildError),
}

impl From<redis::RedisError> for PledgeError {
    fn from(e: redis::RedisError) -> Self {
        tracing::error!(error = %e, "redis error while pledging");
        PledgeError::Redis(e)
    }
}

impl From<sqlx::Error> for PledgeError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error while reading a pledge");
        PledgeError::Database(e)
    }
}

impl PledgeError {
    /// The pledge field at fault, when the refusal names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PledgeError::Refused(Refusal::Invalid(invalid)) => Some(&invalid.field),
            PledgeError::Refused(Refusal::AmountOutOfRange { .. }) => Some("amount"),
            PledgeError::Refused(Refusal::CurrencyMismatch { .. }) => Some("currency"),
            PledgeError::Refused(Refusal::UnknownDesignation(_)) => Some("designation"),
            _ => None,
        }
    }

    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            PledgeError::Refused(r) => r.code(),
            PledgeError::IdempotencyConflict => "idempotency_conflict",
            PledgeError::Redis(_) | PledgeError::Database(_) | PledgeError::Rebuild(_) => {
                "unavailable"
            }
        }
    }
}

/// A pledge as its viewer reads it back (`GET /api/v1/pledges/{id}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PledgeView {
    pub pledge_id: String,
    pub status: PledgeStatus,
    pub amount: i64,
    pub currency: String,
    pub campaign: String,
    pub stream: String,
    pub designation: Option<String>,
    pub anonymous: bool,
    pub checkout_url: String,
    pub expires_at: DateTime<Utc>,
}

/// Pledge intake: what taking and reading pledges needs, cheap to clone.
#[derive(Clone)]
pub struct Intake {
    ledger: Ledger,
    write_behind: WriteBehind,
    expiry: Arc<ExpiryIndex>,
    checkout_url: Arc<str>,
    pledge_ttl_secs: u64,
    /// Told of each new pledge, when the sandbox pays pledges by itself.
    accepted: Option<mpsc::UnboundedSender<Uuid>>,
}

impl Intake {
    pub fn new(
        ledger: Ledger,
        write_behind: WriteBehind,
        checkout_url: String,
        pledge_ttl_secs: u64,
        accepted: Option<mpsc::UnboundedSender<Uuid>>,
    ) -> Intake {
        Intake {
            ledger,
            write_behind,
            expiry: Arc::new(ExpiryIndex::default()),
            checkout_url: checkout_url.into(),
            pledge_ttl_secs,
            accepted,
        }
    }

    /// The write-behind, for the expiry sweep.
    pub fn write_behind(&self) -> WriteBehind {
        self.write_behind.clone()
    }

    /// Where the viewer pays the pledge.
    pub fn checkout_url(&self, pledge_id: &str) -> String {
        format!("{}/{pledge_id}", self.checkout_url)
    }

    /// Reads a pledge: from the live store while it is there, else from the written-behind
    /// copy in PostgreSQL.
    #[tracing::instrument(skip_all, fields(pledge_id = %pledge_id))]
    pub async fn find(&self, pledge_id: &Uuid) -> Result<Option<PledgeView>, PledgeError> {
        let mut redis = self.ledger.stores.redis.clone();
        let live = match pledge_hash::find(&mut redis, &self.ledger.stores.keys, pledge_id).await {
            Ok(live) => live,
            Err(ReadError::Redis(e)) => return Err(e.into()),
            Err(ReadError::Unreadable(e)) => {
                tracing::warn!(error = %e, "reading the pledge from the ledger instead");
                None
            }
        };
        let pledge = match live {
            Some(pledge) => Some(pledge),
            None => pledge_rows::by_id(&self.ledger.stores.db, pledge_id).await?,
        };
        Ok(pledge.map(|p| self.view(&p)))
    }

    fn view(&self, p: &PledgeRecord) -> PledgeView {
        let pledge_id = p.id.to_string();
        PledgeView {
            checkout_url: self.checkout_url(&pledge_id),
            pledge_id,
            status: p.status,
            amount: p.amount.minor_units(),
            currency: p.currency.to_string(),
            campaign: p.campaign.to_string(),
            stream: p.stream.to_string(),
            designation: p.designation.clone(),
            anonymous: p.anonymous,
            expires_at: p.expires_at,
        }
    }

    /// Takes a pledge for `stream`. The same idempotency key and body give the first
    /// answer again, from any gateway; a different body gives a conflict.
    #[tracing::instrument(skip_all, fields(stream = %stream.slug, pledge_id))]
    pub async fn pledge(
        &self,
        stream: &StreamInfo,
        fields: &PledgeFields,
    ) -> Result<Accepted, PledgeError> {
        let now = Utc::now();
        let pledge = Pledge::parse(stream.slug.clone(), fields, &stream.campaign.rules(now))
            .inspect_err(|e| {
                metrics::counter!("livefund_pledges_refused_total", "code" => e.code())
                    .increment(1);
            })?;
        let record = self.record_of(stream, pledge.clone(), now);
        let (pledge_id, expires_ms, replay) = self.accept(stream, &pledge, &record).await?;
        tracing::Span::current().record("pledge_id", tracing::field::display(&pledge_id));
        // A new pledge was indexed under its id together with the script; a replay's first
        // pledge has another id, indexed again below.
        let indexed = pledge_id == record.id;
        let first = PledgeRecord {
            id: pledge_id,
            expires_at: at_ms(expires_ms),
            created_at: at_ms(expires_ms) - self.ttl(),
            ..record
        };
        self.after_accept(stream, &first, replay, indexed).await?;
        Ok(Accepted {
            pledge_id: pledge_id.to_string(),
            checkout_url: self.checkout_url(&pledge_id.to_string()),
            status: PledgeStatus::Pending,
            amount: pledge.amount,
            currency: pledge.currency,
            expires_at: first.expires_at,
            replay,
        })
    }

    fn ttl(&self) -> chrono::Duration {
        let secs = i64::try_from(self.pledge_ttl_secs).unwrap_or(i64::MAX / 1000);
        chrono::Duration::seconds(secs)
    }

    /// The pledge as it is kept, under a new id.
    fn record_of(&self, stream: &StreamInfo, pledge: Pledge, now: DateTime<Utc>) -> PledgeRecord {
        let campaign = &stream.campaign;
        PledgeRecord {
            id: Uuid::new_v4(),
            campaign_id: campaign.id,
            campaign: campaign.slug.clone(),
            stream_id: stream.id,
            stream: pledge.stream.clone(),
            amount: pledge.amount,
            currency: pledge.currency,
            designation: pledge.designation.as_ref().map(|d| d.to_string()),
            // An anonymous pledge's name is dropped here: it is never shown, so never kept.
            donor_name: pledge.public_name().map(str::to_owned),
            anonymous: pledge.anonymous,
            message: pledge.message.clone(),
            donor_ref: pledge.donor_ref.clone(),
            idempotency_key: Some(pledge.idempotency_key.as_str().to_owned()),
            status: PledgeStatus::Pending,
            created_at: now,
            expires_at: now + self.ttl(),
        }
    }

    /// Records the pledge once per idempotency key, rebuilding the campaign's counters
    /// first if Redis lost them. Returns the first pledge's id and expiry, and whether
    /// this was a replay.
    async fn accept(
        &self,
        stream: &StreamInfo,
        pledge: &Pledge,
        record: &PledgeRecord,
    ) -> Result<(Uuid, i64, bool), PledgeError> {
        let campaign = &stream.campaign;
        let fingerprint = pledge.fingerprint();
        let write = PledgeWrite {
            pledge: record,
            idempotency_key: pledge.idempotency_key.as_str(),
            fingerprint: &fingerprint,
            idempotency_ttl_secs: IDEMPOTENCY_TTL_SECS,
            pledge_ttl_secs: PLEDGE_KEEP_SECS.max(self.pledge_ttl_secs),
        };
        let mut redis = self.ledger.stores.redis.clone();
        // The index (pledge id → campaign) goes out with the script, one round trip for
        // both: the id is new, so an index written for a pledge the script then refuses
        // or replays points at nothing and expires.
        let (outcome, index) = tokio::join!(
            counters::accept_pledge(&mut redis, &campaign.keys, &write),
            self.index(&record.id, campaign),
        );
        let mut outcome = outcome?;
        index?;
        if outcome == PledgeOutcome::NotBuilt {
            // Redis lost the campaign's counters: rebuild them from the ledger, then pledge.
            self.ledger
                .ensure_built(&campaign.slug)
                .await
                .map_err(PledgeError::Rebuild)?;
            outcome = counters::accept_pledge(&mut redis, &campaign.keys, &write).await?;
        }
        let (id, expires_ms, replay) = match outcome {
            PledgeOutcome::New {
                pledge_id,
                expires_ms,
            } => (pledge_id, expires_ms, false),
            PledgeOutcome::Replay {
                pledge_id,
                expires_ms,
            } => (pledge_id, expires_ms, true),
            PledgeOutcome::NotBuilt => {
                let missing = RebuildError::UnknownCampaign(campaign.slug.to_string());
                return Err(PledgeError::Rebuild(missing));
            }
            PledgeOutcome::Conflict => {
                metrics::counter!("livefund_pledges_refused_total", "code" => "idempotency_conflict")
                    .increment(1);
                return Err(PledgeError::IdempotencyConflict);
            }
        };
        let id = id.parse().map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the pledge script answered a pledge id that is not a UUID",
                id,
            ))
        })?;
        Ok((id, expires_ms, replay))
    }

    /// Index, sweep registration and write-behind are idempotent, and are done again on a
    /// replay: a retry then repairs what a failure right after the script left undone.
    async fn after_accept(
        &self,
        stream: &StreamInfo,
        first: &PledgeRecord,
        replay: bool,
        indexed: bool,
    ) -> Result<(), PledgeError> {
        let campaign = &stream.campaign;
        let keys = &self.ledger.stores.keys;
        if !indexed {
            self.index(&first.id, campaign).await?;
        }
        self.expiry
            .register(&self.ledger.stores.redis, keys, campaign)
            .await;
        if !replay {
            metrics::counter!("livefund_pledges_accepted_total").increment(1);
            if let Some(accepted) = &self.accepted {
                let _ = accepted.send(first.id);
            }
        }
        self.write_behind
            .send(PledgeChange::Created(Box::new(first.clone())));
        Ok(())
    }

    /// Records which campaign pledge `id` belongs to, for webhooks and status reads that
    /// know only the id.
    async fn index(&self, id: &Uuid, campaign: &CampaignInfo) -> redis::RedisResult<()> {
        let mut redis = self.ledger.stores.redis.clone();
        redis::AsyncCommands::set_ex(
            &mut redis,
            self.ledger.stores.keys.pledge_index(&id.to_string()),
            campaign.slug.as_str(),
            PLEDGE_KEEP_SECS.max(self.pledge_ttl_secs),
        )
        .await
    }
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}
