//! The frames of the live WebSocket (CONTRACT §9), server → client and client → server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::counters::{TopDonor, Totals};
use crate::domain::{Money, PledgeFields};

/// `{"type": "totals", "seq", "stream", "campaign"}`.
#[derive(Serialize)]
pub struct TotalsFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    stream: &'a Totals,
    campaign: &'a Totals,
}

impl<'a> TotalsFrame<'a> {
    pub fn new(seq: u64, stream: &'a Totals, campaign: &'a Totals) -> Self {
        Self {
            kind: "totals",
            seq,
            stream,
            campaign,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Serialize)]
pub struct TopEntry<'a> {
    donor: Option<&'a str>,
    amount: Money,
}

/// The first frame of every socket.
#[derive(Serialize)]
pub struct SnapshotFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    stream: &'a Totals,
    campaign: &'a Totals,
    recent: Vec<&'a RawValue>,
    top: Vec<TopEntry<'a>>,
    gap: bool,
}

impl<'a> SnapshotFrame<'a> {
    pub fn new(
        seq: u64,
        stream: &'a Totals,
        campaign: &'a Totals,
        recent: &'a [Box<RawValue>],
        top: &'a [TopDonor],
        gap: bool,
    ) -> Self {
        Self {
            kind: "snapshot",
            seq,
            stream,
            campaign,
            recent: recent.iter().map(AsRef::as_ref).collect(),
            top: top
                .iter()
                .map(|t| TopEntry {
                    donor: t.donor.as_deref(),
                    amount: t.amount,
                })
                .collect(),
            gap,
        }
    }
}

/// Frames that answer one client.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply<'a> {
    PledgeAccepted {
        #[serde(rename = "ref")]
        reference: &'a str,
        pledge_id: &'a str,
        checkout_url: &'a str,
        expires_at: DateTime<Utc>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        /// The pledge field at fault, as in an HTTP error body.
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<&'a str>,
    },
    Pong,
}

impl Reply<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The body of `POST /api/v1/pledges` without `stream`.
    Pledge(PledgeFields),
    Ping,
}

/// The idempotency key of a pledge frame, even when the rest of it is malformed, so
/// an error can echo it as `ref`.
pub fn reference_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Ref {
        idempotency_key: Option<String>,
    }
    serde_json::from_str::<Ref>(text).ok()?.idempotency_key
}
