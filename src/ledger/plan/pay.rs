//! A payment: a gift when it matches its pledge, else a charge recorded as an exception;
//! either way, the refunds parked for it apply now.

use uuid::Uuid;

use super::refund::{self, Target};
use super::{ChargeFacts, Effect, GiftFacts, Known, NewGift, Outcome, Plan};
use crate::domain::{PledgeRecord, PledgeStatus};
use crate::payments::PaymentEvent;

pub(super) fn pay(
    event: &PaymentEvent,
    pledge: Option<PledgeRecord>,
    known: &mut Known,
    plan: &mut Plan,
) -> Outcome {
    let txn = &event.provider_txn_id;
    if known.gift_txns.contains_key(txn) || known.charges.contains_key(txn) {
        return Outcome::Ignored;
    }
    let outcome = match accept(event, pledge.as_ref(), known) {
        Ok(p) => gift(event, p, known, plan),
        Err((kind, detail)) => {
            let campaign = pledge.as_ref().map(|p| p.campaign_id);
            charge(event, campaign, known);
            plan.exception(event, campaign, kind, detail)
        }
    };
    apply_parked(event, pledge.as_ref(), known, plan);
    outcome
}

/// The pledge a payment pays as its gift, or why it cannot be its gift: an exception
/// kind and its detail.
fn accept<'p>(
    event: &PaymentEvent,
    pledge: Option<&'p PledgeRecord>,
    known: &Known,
) -> Result<&'p PledgeRecord, (&'static str, String)> {
    let Some(p) = pledge else {
        return Err(("unknown_pledge", "no pledge with this id".into()));
    };
    if known.closed(p.campaign_id) {
        return Err(("payment_after_close", "the campaign is closed".into()));
    }
    if event.currency != p.currency.as_str() {
        let detail = format!("pledged in {}, paid in {}", p.currency, event.currency);
        return Err(("currency_mismatch", detail));
    }
    if event.amount != p.amount.minor_units() {
        let detail = format!("pledged {}, paid {}", p.amount, event.amount);
        return Err(("amount_mismatch", detail));
    }
    if event.fee < 0 || event.fee > event.amount {
        let detail = format!("fee {} is not between 0 and the amount", event.fee);
        return Err(("invalid_event", detail));
    }
    if known.gifts.contains_key(&p.id) {
        let detail = "the pledge was already paid under another transaction".into();
        return Err(("duplicate_payment", detail));
    }
    Ok(p)
}

/// Money taken that is not a gift: a refund may name it later.
fn charge(event: &PaymentEvent, campaign: Option<i64>, known: &mut Known) {
    known.charges.insert(
        event.provider_txn_id.clone(),
        ChargeFacts {
            event_id: event.event_id.clone(),
            provider_txn_id: event.provider_txn_id.clone(),
            campaign_id: campaign,
            amount: event.amount,
            currency: event.currency.clone(),
            refunded: 0,
        },
    );
}

fn gift(event: &PaymentEvent, p: &PledgeRecord, known: &mut Known, plan: &mut Plan) -> Outcome {
    let matched = known.pools.get_mut(&p.campaign_id).map_or(0, |pool| {
        let m = (event.amount.saturating_mul(pool.ratio_percent) / 100).min(pool.cap - pool.spent);
        pool.spent += m;
        m
    });
    let gift = GiftFacts {
        id: Uuid::new_v4(),
        pledge_id: p.id,
        provider_txn_id: event.provider_txn_id.clone(),
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
    known.gift_txns.insert(event.provider_txn_id.clone(), p.id);
    known.gifts.insert(p.id, gift.clone());
    plan.statuses.push((p.id, PledgeStatus::Confirmed));
    plan.effects.push(Effect::Gift(plan.gifts.len()));
    plan.gifts.push(NewGift {
        id: gift.id,
        pledge: p.clone(),
        provider_txn_id: event.provider_txn_id.clone(),
        event_id: event.event_id.clone(),
        fee: event.fee,
        matched,
    });
    super::progress::confirmed(known, plan, p.campaign_id, p.stream_id, event.amount);
    Outcome::Gift(gift.id)
}

/// Refunds that arrived before this payment and name it (or, naming no payment, its
/// pledge, once the pledge has a gift) apply now, in their order of arrival.
fn apply_parked(
    payment: &PaymentEvent,
    pledge: Option<&PledgeRecord>,
    known: &mut Known,
    plan: &mut Plan,
) {
    let is_gift = known.gift_txns.contains_key(&payment.provider_txn_id);
    let waiting = |e: &PaymentEvent| match e.refunds_txn() {
        Some(txn) => txn == payment.provider_txn_id,
        None => is_gift && pledge.is_some_and(|p| e.pledge_id == p.id.to_string()),
    };
    let (due, still): (Vec<_>, Vec<_>) = std::mem::take(&mut known.parked)
        .into_iter()
        .partition(|e| waiting(e));
    known.parked = still;
    let target = if is_gift {
        pledge.map_or(Target::Nothing, |p| Target::Gift(p.id))
    } else {
        Target::Charge(payment.provider_txn_id.clone())
    };
    for parked in due {
        refund::apply_parked(&parked, &payment.event_id, target.clone(), known, plan);
    }
}
