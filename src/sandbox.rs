//! The built-in sandbox payment provider (`LIVEFUND_SANDBOX_PAYMENTS=true`), for demos,
//! tests and load tests.
//!
//! It behaves exactly like a real provider: it never touches the ledger, it sends the
//! service a signed `POST /api/v1/webhooks/payments` over HTTP (CONTRACT §7) and
//! retries on a 5xx or a lost connection with the same event, so the service cannot
//! tell it from the real thing.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::config::{Config, Secret};
use crate::domain::PledgeStatus;
use crate::payments::signature::{self, HEADER};
use crate::payments::{EventKind, PaymentEvent};
use crate::pledges::{Intake, PledgeView};

/// Deliveries of one event before the provider gives up.
pub const ATTEMPTS: usize = 3;
/// The wait before the second and the third delivery.
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(200), Duration::from_millis(400)];
/// How long one delivery may take; the webhook answers once the event is committed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an event could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox provider's HTTP client could not be built: {0}")]
    Client(#[source] reqwest::Error),
    #[error("the payment event could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    /// No answer (connection refused, reset or timed out) after every attempt.
    #[error("the payment webhook did not answer after {attempts} attempt(s): {source}")]
    Unreachable {
        attempts: usize,
        #[source]
        source: reqwest::Error,
    },
    /// Still a 5xx after every attempt.
    #[error("the payment webhook answered {status} after {attempts} attempt(s)")]
    Rejected {
        attempts: usize,
        status: u16,
        body: Value,
    },
}

/// One event delivered, and the webhook's final answer (any status below 500).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: PaymentEvent,
    pub status: u16,
    /// The answer's JSON, or its text as a JSON string when it is not JSON.
    pub body: Value,
}

impl Delivery {
    /// Whether the service took the event (2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The receipt's `outcome` (`gift`, `failed`, `refund`, `ignored`, ...), if any.
    pub fn outcome(&self) -> Option<&str> {
        self.body.get("outcome").and_then(Value::as_str)
    }
}

/// The fake provider: an HTTP client, where to deliver, and the secret to sign with.
#[derive(Debug, Clone)]
pub struct SandboxProvider {
    client: reqwest::Client,
    webhook_url: String,
    secret: Secret,
}

/// One HTTP client for the whole process: its connection pool is shared by every
/// provider built with [`SandboxProvider::new`].
pub fn shared_client() -> Result<reqwest::Client, SandboxError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("livefund-sandbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(SandboxError::Client)?;
    // Another thread may have won the race; either client will do.
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// The processing fee the sandbox charges: 0.6 % of `amount`, rounded half up, in
/// integer minor units.
pub fn processing_fee(amount: i64) -> i64 {
    if amount <= 0 {
        return 0;
    }
    let fee = (i128::from(amount) * 6 + 500) / 1000;
    i64::try_from(fee).map_or(amount, |fee| fee.min(amount))
}

impl SandboxProvider {
    /// A provider delivering to this service's own webhook at its public URL, signing
    /// with the first webhook secret, on the process-wide client.
    pub fn new(config: &Config) -> Result<Self, SandboxError> {
        Ok(Self::with_client(shared_client()?, config))
    }

    /// The same on a client of the caller's choosing.
    pub fn with_client(client: reqwest::Client, config: &Config) -> Self {
        Self {
            client,
            webhook_url: format!(
                "{}/api/v1/webhooks/payments",
                config.public_url.trim_end_matches('/')
            ),
            secret: config.webhook_secrets.signing().clone(),
        }
    }

    /// Where events are delivered.
    pub fn webhook_url(&self) -> &str {
        &self.webhook_url
    }

    /// Pays the whole pledge (`payment.succeeded`), less the sandbox's processing fee.
    pub async fn pay(&self, pledge: &PledgeView) -> Result<Delivery, SandboxError> {
        let event = event(
            EventKind::PaymentSucceeded,
            pledge,
            pledge.amount,
            processing_fee(pledge.amount),
            txn_id("txn_sbx_"),
        );
        self.send(event).await
    }

    /// Declines the payment (`payment.failed`).
    pub async fn fail(&self, pledge: &PledgeView) -> Result<Delivery, SandboxError> {
        let event = event(
            EventKind::PaymentFailed,
            pledge,
            pledge.amount,
            0,
            txn_id("txn_sbx_"),
        );
        self.send(event).await
    }

    /// Refunds `amount` of the payment `payment_txn` of the pledge (`refund.succeeded`
    /// naming that payment, as providers do). `provider_txn_id` is the refund's own id;
    /// `None` makes a new one (`txn_sbx_rf_...`), while giving one already used replays
    /// that refund.
    pub async fn refund(
        &self,
        pledge: &PledgeView,
        payment_txn: &str,
        amount: i64,
        provider_txn_id: Option<String>,
    ) -> Result<Delivery, SandboxError> {
        let txn = provider_txn_id.unwrap_or_else(|| txn_id("txn_sbx_rf_"));
        let mut event = event(EventKind::RefundSucceeded, pledge, amount, 0, txn);
        event.refunded_txn_id = Some(payment_txn.to_owned());
        self.send(event).await
    }

    /// Delivers `event` as a provider does: its JSON signed now, POSTed, and delivered
    /// again (the same event, signed afresh) after a 5xx or a lost connection, up to
    /// [`ATTEMPTS`] times in all.
    pub async fn send(&self, event: PaymentEvent) -> Result<Delivery, SandboxError> {
        let body = serde_json::to_vec(&event).map_err(SandboxError::Encode)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self.post(&body).await;
            let again = match &answer {
                Ok((status, _)) => *status >= 500,
                Err(e) => !e.is_builder(),
            };
            if again && attempt < ATTEMPTS {
                tracing::info!(
                    event_id = %event.event_id,
                    attempt,
                    "sandbox webhook delivery failed; delivering again"
                );
                tokio::time::sleep(BACKOFF[attempt - 1]).await;
                continue;
            }
            return match answer {
                Ok((status, body)) if status < 500 => Ok(Delivery {
                    event,
                    status,
                    body,
                }),
                Ok((status, body)) => Err(SandboxError::Rejected {
                    attempts: attempt,
                    status,
                    body,
                }),
                Err(source) => Err(SandboxError::Unreachable {
                    attempts: attempt,
                    source,
                }),
            };
        }
    }

    async fn post(&self, body: &[u8]) -> Result<(u16, Value), reqwest::Error> {
        let signed = signature::sign(&self.secret, Utc::now().timestamp(), body);
        let response = self
            .client
            .post(&self.webhook_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER, signed)
            .body(body.to_vec())
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, body))
    }
}

/// Pays each pledge sent on `accepted` after `delay`, if it is still pending then, as a
/// viewer who always pays would (`LIVEFUND_SANDBOX_AUTOPAY_MS`). Failures are logged and
/// counted; `stop` ends it, and the payments still waiting with it.
pub async fn run_autopay(
    config: std::sync::Arc<Config>,
    intake: Intake,
    mut accepted: tokio::sync::mpsc::UnboundedReceiver<Uuid>,
    delay: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let provider = match SandboxProvider::new(&config) {
        Ok(provider) => provider,
        Err(e) => {
            tracing::error!(error = %e, "sandbox auto-pay unavailable");
            return;
        }
    };
    let mut waiting = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            pledge = accepted.recv() => match pledge {
                Some(pledge_id) => {
                    let (provider, intake) = (provider.clone(), intake.clone());
                    waiting.spawn(async move {
                        tokio::time::sleep(delay).await;
                        autopay(&provider, &intake, pledge_id).await;
                    });
                }
                None => break,
            },
            Some(_) = waiting.join_next(), if !waiting.is_empty() => {}
            _ = stop.cancelled() => break,
        }
    }
    waiting.shutdown().await;
}

/// Pays one pledge if it is still pending.
async fn autopay(provider: &SandboxProvider, intake: &Intake, pledge_id: Uuid) {
    let counted = |result: &'static str| {
        metrics::counter!("livefund_sandbox_autopay_total", "result" => result).increment(1);
    };
    let pledge = match intake.find(&pledge_id).await {
        Ok(Some(pledge)) => pledge,
        Ok(None) => {
            tracing::warn!(%pledge_id, "sandbox auto-pay: no such pledge");
            return counted("failed");
        }
        Err(e) => {
            tracing::warn!(%pledge_id, error = %e, "sandbox auto-pay: could not read the pledge");
            return counted("failed");
        }
    };
    if pledge.status != PledgeStatus::Pending {
        tracing::debug!(%pledge_id, status = %pledge.status, "sandbox auto-pay: not pending, not paid");
        return counted("skipped");
    }
    match provider.pay(&pledge).await {
        Ok(delivery) if delivery.accepted() => counted("paid"),
        Ok(delivery) => {
            tracing::warn!(%pledge_id, status = delivery.status, response = %delivery.body, "sandbox auto-pay: the webhook refused the payment");
            counted("failed");
        }
        Err(e) => {
            tracing::warn!(%pledge_id, error = %e, "sandbox auto-pay failed");
            counted("failed");
        }
    }
}

fn txn_id(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

fn event(
    kind: EventKind,
    pledge: &PledgeView,
    amount: i64,
    fee: i64,
    provider_txn_id: String,
) -> PaymentEvent {
    PaymentEvent {
        event_id: format!("evt_sbx_{}", Uuid::new_v4().simple()),
        kind,
        pledge_id: pledge.pledge_id.clone(),
        provider_txn_id,
        amount,
        currency: pledge.currency.clone(),
        fee,
        occurred_at: Utc::now(),
        test: false,
        refunded_txn_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_six_per_mille_rounded_half_up() {
        for (amount, fee) in [
            (5000, 30),
            (100, 1),
            (83, 0),
            (84, 1),
            (250, 2),
            (1, 0),
            (0, 0),
            (-5, 0),
            (500_000, 3000),
        ] {
            assert_eq!(processing_fee(amount), fee, "amount {amount}");
        }
        assert_eq!(
            processing_fee(i64::MAX),
            55_340_232_221_128_655,
            "no overflow"
        );
    }

    #[test]
    fn events_carry_the_pledge_and_fresh_ids() {
        let pledge = PledgeView {
            pledge_id: Uuid::new_v4().to_string(),
            status: PledgeStatus::Pending,
            amount: 5000,
            currency: "CNY".into(),
            campaign: "campaign".into(),
            stream: "stream".into(),
            designation: None,
            anonymous: false,
            checkout_url: String::new(),
            expires_at: Utc::now(),
        };
        let a = event(
            EventKind::PaymentSucceeded,
            &pledge,
            5000,
            30,
            txn_id("txn_sbx_"),
        );
        let b = event(
            EventKind::PaymentSucceeded,
            &pledge,
            5000,
            30,
            txn_id("txn_sbx_"),
        );
        assert_ne!(a.event_id, b.event_id);
        assert_ne!(a.provider_txn_id, b.provider_txn_id);
        assert!(a.event_id.starts_with("evt_sbx_") && a.event_id.len() == 8 + 32);
        assert!(a.provider_txn_id.starts_with("txn_sbx_"));
        assert_eq!(a.pledge_id, pledge.pledge_id);
        let json = serde_json::to_value(&a).expect("an event serializes");
        assert_eq!(json["type"], "payment.succeeded");
        assert_eq!(json["fee"], 30);
        assert_eq!(json["test"], false);
    }
}
