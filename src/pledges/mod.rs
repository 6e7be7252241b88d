//! Pledge intake, shared by HTTP and WebSocket: parse against the campaign's rules,
//! record once per idempotency key in Redis, hand the pledge to the write-behind.

mod expiry;
mod rate;
mod writer;

pub use expiry::{ExpiryIndex, run_expiry, sweep};
pub use rate::{RateLimiter, Window};
pub use writer::{PledgeChange, PledgeRow, WriteBehind, run_write_behind};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use std::sync::Arc;

use crate::AppState;
use crate::catalog::StreamInfo;
use crate::counters::{self, PledgeOutcome, PledgeWrite};
use crate::domain::{Currency, Money, Pledge, PledgeFields, Refusal};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_SECS: u64 = 24 * 60 * 60;
/// How long a pledge's hash stays in Redis after it is made (settlement may come late).
pub const PLEDGE_KEEP_SECS: u64 = 7 * 24 * 60 * 60;

/// The answer to an accepted pledge (CONTRACT §6).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub pledge_id: String,
    /// Always `pending` in this answer; `GET /api/v1/pledges/{id}` tells what became of it.
    pub status: &'static str,
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

/// Why a pledge was not accepted.
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
}

impl PledgeError {
    fn database(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error while reading a pledge");
        PledgeError::Database(e)
    }

    fn rebuild(e: crate::ledger::RebuildError) -> Self {
        tracing::error!(error = %e, "could not rebuild a campaign's counters");
        match e {
            crate::ledger::RebuildError::Redis(e) => PledgeError::Redis(e),
            crate::ledger::RebuildError::Database(e) => PledgeError::Database(e),
            crate::ledger::RebuildError::UnknownCampaign(c) => PledgeError::Redis(
                redis::RedisError::from((redis::ErrorKind::Client, "unknown campaign", c)),
            ),
        }
    }
}

impl From<redis::RedisError> for PledgeError {
    fn from(e: redis::RedisError) -> Self {
        tracing::error!(error = %e, "redis error while pledging");
        PledgeError::Redis(e)
    }
}

impl PledgeError {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            PledgeError::Refused(r) => r.code(),
            PledgeError::IdempotencyConflict => "idempotency_conflict",
            PledgeError::Redis(_) | PledgeError::Database(_) => "unavailable",
        }
    }
}

/// A pledge as its viewer reads it back (`GET /api/v1/pledges/{id}`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PledgeStatus {
    pub pledge_id: String,
    /// `pending`, `confirmed`, `failed`, `expired` or `refunded`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub campaign: String,
    pub stream: String,
    pub designation: Option<String>,
    pub anonymous: bool,
    #[sqlx(default)]
    pub checkout_url: String,
    pub expires_at: DateTime<Utc>,
}

/// A pledge as the live store holds it while it is in flight.
#[derive(Debug, Clone)]
pub struct LivePledge {
    pub campaign: String,
    pub stream: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub designation: Option<String>,
    /// The public name: none for an anonymous pledge.
    pub donor_name: Option<String>,
    pub anonymous: bool,
    pub message: Option<String>,
    pub donor_ref: Option<String>,
    pub expires_ms: i64,
}

/// Reads a pledge from the live store, where it stays for [`PLEDGE_KEEP_SECS`].
pub async fn find_live(
    state: &AppState,
    pledge_id: &uuid::Uuid,
) -> Result<Option<LivePledge>, PledgeError> {
    let id = pledge_id.to_string();
    let mut redis = state.redis.clone();
    let campaign: Option<String> =
        redis::AsyncCommands::get(&mut redis, state.keys.pledge_index(&id)).await?;
    let Some(campaign) = campaign else {
        return Ok(None);
    };
    let Ok(slug) = crate::domain::Slug::parse("campaign", &campaign) else {
        return Ok(None);
    };
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(state.keys.campaign(&slug).pledge(&id))
        .arg(&[
            "status",
            "amount",
            "currency",
            "stream",
            "designation",
            "anonymous",
            "expires",
            "name",
            "message",
            "donor_ref",
        ])
        .query_async(&mut redis)
        .await?;
    let text = |v: &Option<String>| v.clone().filter(|t| !t.is_empty());
    let [
        Some(status),
        Some(amount),
        Some(currency),
        Some(stream),
        designation,
        anonymous,
        expires,
        name,
        message,
        donor_ref,
    ] = fields.as_slice()
    else {
        return Ok(None);
    };
    Ok(Some(LivePledge {
        campaign,
        stream: stream.clone(),
        status: status.clone(),
        amount: amount.parse().unwrap_or(0),
        currency: currency.clone(),
        designation: text(designation),
        donor_name: text(name),
        anonymous: anonymous.as_deref() == Some("1"),
        message: text(message),
        donor_ref: text(donor_ref),
        expires_ms: expires.as_deref().and_then(|e| e.parse().ok()).unwrap_or(0),
    }))
}

/// Reads a pledge: from the live store while it is there, else from the written-behind
/// copy in PostgreSQL.
pub async fn find(
    state: &AppState,
    pledge_id: &uuid::Uuid,
) -> Result<Option<PledgeStatus>, PledgeError> {
    let id = pledge_id.to_string();
    if let Some(live) = find_live(state, pledge_id).await? {
        return Ok(Some(PledgeStatus {
            checkout_url: format!("{}/{}", state.config.checkout_url, id),
            pledge_id: id,
            status: live.status,
            amount: live.amount,
            currency: live.currency,
            campaign: live.campaign,
            stream: live.stream,
            designation: live.designation,
            anonymous: live.anonymous,
            expires_at: at_ms(live.expires_ms),
        }));
    }
    let row: Option<PledgeStatus> = sqlx::query_as(
        r#"select p.id::text as pledge_id, p.status, p.amount::bigint as amount,
                  p.currency::text as currency, c.slug::text as campaign,
                  s.slug::text as stream, p.designation, p.anonymous, p.expires_at
           from pledges p
           join campaigns c on c.id = p.campaign_id
           join streams s on s.id = p.stream_id
           where p.id = $1"#,
    )
    .bind(pledge_id)
    .fetch_optional(&state.db)
    .await
    .map_err(PledgeError::database)?;
    Ok(row.map(|pledge| PledgeStatus {
        checkout_url: format!("{}/{}", state.config.checkout_url, id),
        ..pledge
    }))
}

/// With sandbox auto-pay on, the sandbox provider pays the new pledge after the delay.
fn autopay(state: &AppState, pledge_id: uuid::Uuid) {
    let delay = state.config.limits.sandbox_autopay_ms;
    if !state.config.sandbox_payments || delay == 0 {
        return;
    }
    match crate::payments::sandbox::SandboxProvider::new(&state.config) {
        Ok(provider) => provider.schedule_autopay(
            pledge_id,
            std::time::Duration::from_millis(delay),
            state.clone(),
        ),
        Err(e) => tracing::warn!(error = %e, "sandbox auto-pay unavailable"),
    }
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Takes a pledge for `stream`. The same idempotency key and body give the first
/// answer again, from any gateway; a different body gives a conflict.
pub async fn pledge(
    state: &AppState,
    stream: &Arc<StreamInfo>,
    fields: &PledgeFields,
) -> Result<Accepted, PledgeError> {
    let now = Utc::now();
    let campaign = &stream.campaign;
    let refused = |e: Refusal| {
        metrics::counter!("livefund_pledges_refused_total", "code" => e.code()).increment(1);
        PledgeError::Refused(e)
    };
    let pledge =
        Pledge::parse(stream.slug.clone(), fields, &campaign.rules(now)).map_err(refused)?;
    let (amount, currency) = (pledge.amount, pledge.currency);
    let pledge_id = uuid::Uuid::new_v4();
    let id_text = pledge_id.to_string();
    let now_ms = now.timestamp_millis();
    let ttl_ms =
        i64::try_from(state.config.limits.pledge_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let write = PledgeWrite {
        pledge: &pledge,
        pledge_id: &id_text,
        now_ms,
        expires_ms: now_ms.saturating_add(ttl_ms),
        idempotency_ttl_secs: IDEMPOTENCY_TTL_SECS,
        pledge_ttl_secs: PLEDGE_KEEP_SECS.max(state.config.limits.pledge_ttl_secs),
    };
    let mut redis = state.redis.clone();
    let mut outcome = counters::accept_pledge(&mut redis, &campaign.keys, &write).await?;
    if outcome == PledgeOutcome::NotBuilt {
        // Redis lost the campaign's counters: rebuild them from the ledger, then pledge.
        crate::ledger::ensure_built(&state.db, &mut redis, &state.keys, &campaign.slug)
            .await
            .map_err(PledgeError::rebuild)?;
        outcome = counters::accept_pledge(&mut redis, &campaign.keys, &write).await?;
    }
    let (pledge_id_text, expires_ms, replay) = match outcome {
        PledgeOutcome::New {
            pledge_id,
            expires_ms,
        } => (pledge_id, expires_ms, false),
        PledgeOutcome::Replay {
            pledge_id,
            expires_ms,
        } => (pledge_id, expires_ms, true),
        PledgeOutcome::NotBuilt => {
            return Err(PledgeError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the campaign's counters could not be rebuilt",
            ))));
        }
        PledgeOutcome::Conflict => {
            metrics::counter!("livefund_pledges_refused_total", "code" => "idempotency_conflict")
                .increment(1);
            return Err(PledgeError::IdempotencyConflict);
        }
    };
    let expires_at = at_ms(expires_ms);
    // The first pledge's id: a replay answers with it, not with this call's new one.
    let pledge_id: uuid::Uuid = pledge_id_text.parse().unwrap_or(pledge_id);
    // Index, sweep registration and write-behind are idempotent, and are done again on
    // a replay: a retry then repairs what a failure right after the script left undone.
    let index: redis::RedisResult<()> = redis::AsyncCommands::set_ex(
        &mut redis,
        state.keys.pledge_index(&pledge_id_text),
        campaign.slug.as_str(),
        write.pledge_ttl_secs,
    )
    .await;
    index?;
    state
        .expiry_index
        .register(&state.redis, &state.keys, campaign)
        .await;
    if !replay {
        metrics::counter!("livefund_pledges_accepted_total").increment(1);
        autopay(state, pledge_id);
    }
    let ttl = chrono::Duration::milliseconds(ttl_ms);
    state.write_behind.send(PledgeChange::Created(PledgeRow {
        id: pledge_id,
        campaign_id: campaign.id,
        stream_id: stream.id,
        pledge,
        created_at: if replay { expires_at - ttl } else { now },
        expires_at,
    }));
    Ok(Accepted {
        checkout_url: format!("{}/{}", state.config.checkout_url, pledge_id_text),
        pledge_id: pledge_id_text,
        status: "pending",
        amount,
        currency,
        expires_at,
        replay,
    })
}
