//! What a batch of payment events does to the ledger, decided in memory from what the
//! ledger already holds: no I/O here, so every rule is unit-tested. Events are taken in
//! order; each one sees the effects of those before it.

use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use crate::payments::{EventKind, PaymentEvent};

/// A pledge as settlement needs it.
#[derive(Debug, Clone)]
pub struct PledgeFacts {
    pub id: Uuid,
    pub campaign_id: i64,
    pub stream_id: i64,
    pub amount: i64,
    pub currency: String,
    pub designation: Option<String>,
    pub donor_name: Option<String>,
    pub anonymous: bool,
    pub message: Option<String>,
    pub donor_ref: Option<String>,
}

/// A settled gift, with what has been refunded and matched of it so far.
#[derive(Debug, Clone)]
pub struct GiftFacts {
    pub id: Uuid,
    pub pledge_id: Uuid,
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

/// A campaign's sponsor pool, locked for this batch.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts {
    pub ratio_percent: i64,
    pub cap: i64,
    pub spent: i64,
}

/// What the ledger holds that the batch's events touch.
#[derive(Debug, Default)]
pub struct Known {
    pub pledges: HashMap<Uuid, PledgeFacts>,
    /// Campaign id → whether it is closed.
    pub closed: HashMap<i64, bool>,
    pub gifts: HashMap<Uuid, GiftFacts>,
    pub gift_txns: HashSet<String>,
    pub refund_txns: HashSet<String>,
    pub pools: HashMap<i64, PoolFacts>,
    /// Refunds that came before their payment, by pledge, in arrival order.
    pub parked: HashMap<Uuid, Vec<PaymentEvent>>,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Gift(Uuid),
    Refund(Uuid),
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
    pub pledge: PledgeFacts,
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
}

#[derive(Debug, Clone)]
pub struct NewException {
    pub event: PaymentEvent,
    pub campaign_id: Option<i64>,
    pub kind: &'static str,
    pub detail: String,
}

/// Everything the batch writes, and what it tells the live counters after commit.
#[derive(Debug, Default)]
pub struct Plan {
    /// One per event, in the batch's order.
    pub outcomes: Vec<Outcome>,
    pub gifts: Vec<NewGift>,
    pub refunds: Vec<NewRefund>,
    pub exceptions: Vec<NewException>,
    /// Event ids of parked refunds applied now.
    pub resolved: Vec<String>,
    pub statuses: Vec<(Uuid, &'static str)>,
    /// Pledges whose payment failed (live: they leave `pledged`).
    pub failed: Vec<PledgeFacts>,
    /// Test events to show as test alerts.
    pub tests: Vec<(PledgeFacts, PaymentEvent)>,
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
    plan
}

fn exception(
    plan: &mut Plan,
    event: &PaymentEvent,
    campaign: Option<i64>,
    kind: &'static str,
    detail: String,
) -> Outcome {
    plan.exceptions.push(NewException {
        event: event.clone(),
        campaign_id: campaign,
        kind,
        detail,
    });
    Outcome::Exception(kind)
}

fn decide(event: &PaymentEvent, known: &mut Known, plan: &mut Plan) -> Outcome {
    let pledge = pledge_id(event).and_then(|id| known.pledges.get(&id).cloned());
    if event.test {
        if let Some(p) = pledge {
            plan.tests.push((p, event.clone()));
        }
        return Outcome::Test;
    }
    match event.kind {
        EventKind::PaymentSucceeded => pay(event, pledge, known, plan),
        EventKind::PaymentFailed => match pledge {
            Some(p) if !known.gifts.contains_key(&p.id) => {
                plan.statuses.push((p.id, "failed"));
                plan.failed.push(p);
                Outcome::Failed
            }
            _ => Outcome::Ignored,
        },
        EventKind::RefundSucceeded => refund(event, pledge, known, plan),
    }
}

fn pay(
    event: &PaymentEvent,
    pledge: Option<PledgeFacts>,
    known: &mut Known,
    plan: &mut Plan,
) -> Outcome {
    if known.gift_txns.contains(&event.provider_txn_id) {
        return Outcome::Ignored;
    }
    let Some(p) = pledge else {
        return exception(
            plan,
            event,
            None,
            "unknown_pledge",
            "no pledge with this id".into(),
        );
    };
    let campaign = Some(p.campaign_id);
    if known.closed.get(&p.campaign_id).copied().unwrap_or(false) {
        return exception(
            plan,
            event,
            campaign,
            "payment_after_close",
            "the campaign is closed".into(),
        );
    }
    if event.currency != p.currency {
        let detail = format!("pledged in {}, paid in {}", p.currency, event.currency);
        return exception(plan, event, campaign, "currency_mismatch", detail);
    }
    if event.amount != p.amount {
        let detail = format!("pledged {}, paid {}", p.amount, event.amount);
        return exception(plan, event, campaign, "amount_mismatch", detail);
    }
    if event.fee < 0 || event.fee > event.amount {
        let detail = format!("fee {} is not between 0 and the amount", event.fee);
        return exception(plan, event, campaign, "invalid_event", detail);
    }
    if known.gifts.contains_key(&p.id) {
        let detail = "the pledge was already paid under another transaction".into();
        return exception(plan, event, campaign, "duplicate_payment", detail);
    }
    let matched = known.pools.get_mut(&p.campaign_id).map_or(0, |pool| {
        let m = (event.amount.saturating_mul(pool.ratio_percent) / 100).min(pool.cap - pool.spent);
        pool.spent += m;
        m
    });
    let gift = GiftFacts {
        id: Uuid::new_v4(),
        pledge_id: p.id,
        amount: event.amount,
        currency: event.currency.clone(),
        campaign_id: p.campaign_id,
        stream_id: p.stream_id,
        anonymous: p.anonymous,
        donor_ref: p.donor_ref.clone(),
        matched,
        refunded: 0,
        reversed: 0,
    };
    known.gift_txns.insert(event.provider_txn_id.clone());
    known.gifts.insert(p.id, gift.clone());
    plan.statuses.push((p.id, "confirmed"));
    plan.gifts.push(NewGift {
        id: gift.id,
        pledge: p.clone(),
        provider_txn_id: event.provider_txn_id.clone(),
        event_id: event.event_id.clone(),
        fee: event.fee,
        matched,
    });
    // Refunds that arrived before this payment apply now, in their order.
    for parked in known.parked.remove(&p.id).unwrap_or_default() {
        if matches!(
            refund(&parked, Some(p.clone()), known, plan),
            Outcome::Refund(_)
        ) {
            plan.resolved.push(parked.event_id.clone());
        }
    }
    Outcome::Gift(gift.id)
}

fn refund(
    event: &PaymentEvent,
    pledge: Option<PledgeFacts>,
    known: &mut Known,
    plan: &mut Plan,
) -> Outcome {
    if known.refund_txns.contains(&event.provider_txn_id) {
        return Outcome::Ignored;
    }
    let campaign = pledge.as_ref().map(|p| p.campaign_id);
    let Some(gift) = pledge
        .as_ref()
        .and_then(|p| known.gifts.get(&p.id))
        .cloned()
    else {
        // Kept aside: if the payment comes later, the refund applies then.
        if let Some(p) = &pledge {
            let parked = known.parked.entry(p.id).or_default();
            if !parked.iter().any(|e| e.event_id == event.event_id) {
                parked.push(event.clone());
            }
        }
        return exception(
            plan,
            event,
            campaign,
            "refund_without_gift",
            "no settled gift for this pledge".into(),
        );
    };
    if event.currency != gift.currency || event.amount <= 0 {
        let detail = format!(
            "refund of {} {} on a gift in {}",
            event.amount, event.currency, gift.currency
        );
        return exception(plan, event, campaign, "invalid_event", detail);
    }
    let left = gift.amount - gift.refunded;
    if event.amount > left {
        let detail = format!("refund of {} with {} left on the gift", event.amount, left);
        return exception(plan, event, campaign, "refund_exceeds_gift", detail);
    }
    let refunded = gift.refunded + event.amount;
    // The match goes back in proportion; a whole refund takes back the whole match.
    let reversed_total =
        (i128::from(gift.matched) * i128::from(refunded) / i128::from(gift.amount)) as i64;
    let reversed = reversed_total - gift.reversed;
    if let Some(pool) = known.pools.get_mut(&gift.campaign_id) {
        pool.spent -= reversed;
    }
    let updated = GiftFacts {
        refunded,
        reversed: reversed_total,
        ..gift.clone()
    };
    known.gifts.insert(gift.pledge_id, updated);
    known.refund_txns.insert(event.provider_txn_id.clone());
    let fully = refunded == gift.amount;
    if fully {
        plan.statuses.push((gift.pledge_id, "refunded"));
    }
    let id = Uuid::new_v4();
    plan.refunds.push(NewRefund {
        id,
        gift,
        provider_txn_id: event.provider_txn_id.clone(),
        event_id: event.event_id.clone(),
        amount: event.amount,
        reversed,
        fully,
    });
    Outcome::Refund(id)
}

#[cfg(test)]
mod tests;
