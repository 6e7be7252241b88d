//! What a batch of payment events does to the ledger, decided in memory from what the
//! ledger already holds: no I/O here, so every rule is unit-tested. Events are taken in
//! order; each one sees the effects of those before it.
//!
//! The rules, in short: a payment makes one gift per pledge; a payment that cannot be a
//! gift (unknown pledge, wrong amount or currency, a second charge, after close) is a
//! *charge*: money taken, recorded as an exception. A refund reduces exactly the payment it
//! names (`refunded_txn_id`), a gift or a charge; without a name, the pledge's gift. A
//! refund whose payment has not arrived is parked and applied when it does.

mod pay;
mod progress;
mod refund;

use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

use crate::domain::{PledgeRecord, PledgeStatus};
use crate::payments::{EventKind, PaymentEvent};

pub use progress::MILESTONES;

/// A settled gift, with what has been refunded and matched of it so far.
#[derive(Debug, Clone)]
pub struct GiftFacts {
    pub id: Uuid,
    pub pledge_id: Uuid,
    pub provider_txn_id: String,
    pub amount: i64,
    pub currency: String,
    pub campaign_id: i64,
    pub stream_id: i64,
    pub anonymous: bool,
    pub donor_ref: Option<String>,
    pub matched: i64,
    pub refunded: i64,
    pub reversed: i64,
}

/// A payment recorded as an exception: money the provider took that is not a gift.
#[derive(Debug, Clone)]
pub struct ChargeFacts {
    /// The exception's event id.
    pub event_id: String,
    pub provider_txn_id: String,
    pub campaign_id: Option<i64>,
    pub amount: i64,
    pub currency: String,
    pub refunded: i64,
}

/// A campaign's sponsor pool, locked for this batch.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts {
    pub ratio_percent: i64,
    pub cap: i64,
    pub spent: i64,
}

/// A campaign's or a stream's confirmed total against its goal, and the milestones it
/// already reached.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub goal: Option<i64>,
    pub confirmed: i64,
    pub reached: BTreeSet<i32>,
}

/// A campaign as settlement needs it (its row is locked for the batch).
#[derive(Debug, Clone, Default)]
pub struct CampaignFacts {
    pub closed: bool,
    pub progress: Progress,
}

/// What the ledger holds that the batch's events touch.
#[derive(Debug, Default)]
pub struct Known {
    pub pledges: HashMap<Uuid, PledgeRecord>,
    pub campaigns: HashMap<i64, CampaignFacts>,
    /// Stream id → its progress.
    pub streams: HashMap<i64, Progress>,
    /// Gifts by pledge id.
    pub gifts: HashMap<Uuid, GiftFacts>,
    /// A gift's provider transaction → its pledge.
    pub gift_txns: HashMap<String, Uuid>,
    /// Charges by provider transaction.
    pub charges: HashMap<String, ChargeFacts>,
    /// Refund transactions applied (to a gift or a charge).
    pub applied_refunds: HashSet<String>,
    /// Refund transactions parked, waiting for their payment.
    pub parked_refunds: HashSet<String>,
    pub pools: HashMap<i64, PoolFacts>,
    /// Refunds that came before their payment, in arrival order.
    pub parked: Vec<PaymentEvent>,
}

impl Known {
    fn closed(&self, campaign: i64) -> bool {
        self.campaigns.get(&campaign).is_some_and(|c| c.closed)
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Gift(Uuid),
    Refund(Uuid),
    /// A refund of a charge (a payment recorded as an exception).
    ChargeRefund(Uuid),
    Failed,
    /// No effect: a replay, a second event for a transaction, a failure after success.
    Ignored,
    Test,
    Exception(&'static str),
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Gift(_) => "gift",
            Outcome::Refund(_) => "refund",
            Outcome::ChargeRefund(_) => "exception_refund",
            Outcome::Failed => "failed",
            Outcome::Ignored => "ignored",
            Outcome::Test => "test",
            Outcome::Exception(_) => "exception",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewGift {
    pub id: Uuid,
    pub pledge: PledgeRecord,
    pub provider_txn_id: String,
    pub event_id: String,
    pub fee: i64,
    pub matched: i64,
}

#[derive(Debug, Clone)]
pub struct NewRefund {
    pub id: Uuid,
    pub gift: GiftFacts,
    pub provider_txn_id: String,
    pub event_id: String,
    pub amount: i64,
    pub reversed: i64,
    pub fully: bool,
    /// Settled after the campaign closed: a post-close adjustment.
    pub post_close: bool,
}

/// A refund of a charge.
#[derive(Debug, Clone)]
pub struct NewChargeRefund {
    pub id: Uuid,
    pub charge: ChargeFacts,
    pub provider_txn_id: String,
    pub event_id: String,
    pub amount: i64,
}

#[derive(Debug, Clone)]
pub struct NewException {
    pub event: PaymentEvent,
    pub campaign_id: Option<i64>,
    pub kind: &'static str,
    pub detail: String,
}

/// How an exception was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// A parked refund was applied to its payment.
    Applied,
    /// The charge was refunded in full.
    Refunded,
    /// A parked refund whose refund had already been applied.
    Replayed,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Applied => "applied",
            Resolution::Refunded => "refunded",
            Resolution::Replayed => "replayed",
        }
    }
}

/// An exception (by its event id) resolved by the event `by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub event_id: String,
    pub how: Resolution,
    pub by: String,
}

/// A parked refund that, once its payment came, was refused after all: its exception
/// becomes `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclassified {
    pub event_id: String,
    pub kind: &'static str,
    pub detail: String,
}

/// A milestone reached for the first time: `stream` `None` is the campaign's own goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMilestone {
    pub campaign_id: i64,
    pub stream_id: Option<i64>,
    pub reached: i32,
}

/// A live effect of the batch, in the order it is to be announced.
#[derive(Debug, Clone)]
pub enum Effect {
    /// `Plan::gifts[i]`.
    Gift(usize),
    /// `Plan::refunds[i]`.
    Refund(usize),
    /// `Plan::milestones[i]`.
    Milestone(usize),
    /// The pledge's payment failed: it leaves `pledged`.
    Failed(PledgeRecord),
    /// A provider's test event: an alert marked test.
    Test(PledgeRecord, PaymentEvent),
}

/// Everything the batch writes, and the live effects that follow.
#[derive(Debug, Default)]
pub struct Plan {
    /// One per event, in the batch's order.
    pub outcomes: Vec<Outcome>,
    pub gifts: Vec<NewGift>,
    pub refunds: Vec<NewRefund>,
    pub charge_refunds: Vec<NewChargeRefund>,
    pub exceptions: Vec<NewException>,
    pub resolved: Vec<Resolved>,
    pub reclassified: Vec<Reclassified>,
    /// Parked refunds of earlier batches applied now, with what they came to.
    pub late_outcomes: Vec<(String, Outcome)>,
    pub statuses: Vec<(Uuid, PledgeStatus)>,
    pub milestones: Vec<NewMilestone>,
    pub effects: Vec<Effect>,
}

impl Plan {
    /// The net change of confirmed money per stream and per campaign.
    pub fn confirmed_deltas(&self) -> (HashMap<i64, i64>, HashMap<i64, i64>) {
        let mut streams: HashMap<i64, i64> = HashMap::new();
        let mut campaigns: HashMap<i64, i64> = HashMap::new();
        let changes = self
            .gifts
            .iter()
            .map(|g| {
                let p = &g.pledge;
                (p.stream_id, p.campaign_id, p.amount.minor_units())
            })
            .chain(
                self.refunds
                    .iter()
                    .map(|r| (r.gift.stream_id, r.gift.campaign_id, -r.amount)),
            );
        for (stream, campaign, delta) in changes {
            *streams.entry(stream).or_default() += delta;
            *campaigns.entry(campaign).or_default() += delta;
        }
        (streams, campaigns)
    }

    fn exception(
        &mut self,
        event: &PaymentEvent,
        campaign: Option<i64>,
        kind: &'static str,
        detail: String,
    ) -> Outcome {
        self.exceptions.push(NewException {
            event: event.clone(),
            campaign_id: campaign,
            kind,
            detail,
        });
        Outcome::Exception(kind)
    }
}

fn pledge_id(event: &PaymentEvent) -> Option<Uuid> {
    event.pledge_id.parse().ok()
}

/// Decides every event of `events` (none of which was seen before) against `known`,
/// updating `known` as it goes.
pub fn plan(events: &[PaymentEvent], known: &mut Known) -> Plan {
    let mut plan = Plan::default();
    for event in events {
        let outcome = decide(event, known, &mut plan);
        plan.outcomes.push(outcome);
    }
    // A refund parked and applied within this batch is answered with what it came to.
    let late = std::mem::take(&mut plan.late_outcomes);
    for (event_id, outcome) in late {
        match events.iter().position(|e| e.event_id == event_id) {
            Some(i) => plan.outcomes[i] = outcome,
            None => plan.late_outcomes.push((event_id, outcome)),
        }
    }
    plan
}

fn decide(event: &PaymentEvent, known: &mut Known, plan: &mut Plan) -> Outcome {
    let pledge = pledge_id(event).and_then(|id| known.pledges.get(&id).cloned());
    if event.test {
        if let Some(p) = pledge {
            plan.effects.push(Effect::Test(p, event.clone()));
        }
        return Outcome::Test;
    }
    match event.kind {
        EventKind::PaymentSucceeded => pay::pay(event, pledge, known, plan),
        EventKind::PaymentFailed => match pledge {
            Some(p) if !known.gifts.contains_key(&p.id) => {
                plan.statuses.push((p.id, PledgeStatus::Failed));
                plan.effects.push(Effect::Failed(p));
                Outcome::Failed
            }
            _ => Outcome::Ignored,
        },
        EventKind::RefundSucceeded => refund::refund(event, pledge, known, plan),
    }
}

#[cfg(test)]
mod tests;
