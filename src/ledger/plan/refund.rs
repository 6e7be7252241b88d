//! A refund: it reduces exactly the payment it names (a gift or a charge), or the
//! pledge's gift when it names none; with no such payment yet, it is parked.

use uuid::Uuid;

use super::{
    Effect, Known, NewChargeRefund, NewRefund, Outcome, Plan, Reclassified, Resolution, Resolved,
};
use crate::domain::{PledgeRecord, PledgeStatus};
use crate::payments::PaymentEvent;

/// What a refund takes money off.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// The gift of this pledge.
    Gift(Uuid),
    /// The charge with this provider transaction.
    Charge(String),
    /// Nothing yet: the refund is parked.
    Nothing,
}

/// Why a refund was not applied: an exception kind and its detail.
type Refused = (&'static str, String);

pub(super) fn refund(
    event: &PaymentEvent,
    pledge: Option<PledgeRecord>,
    known: &mut Known,
    plan: &mut Plan,
) -> Outcome {
    let txn = &event.provider_txn_id;
    if known.applied_refunds.contains(txn) || known.parked_refunds.contains(txn) {
        return Outcome::Ignored;
    }
    let target = target(event, pledge.as_ref(), known);
    if let Target::Nothing = target {
        return park(event, pledge.as_ref(), known, plan);
    }
    let campaign = campaign_of(&target, known).or(pledge.map(|p| p.campaign_id));
    match apply(event, target, known, plan) {
        Ok(outcome) => outcome,
        Err((kind, detail)) => plan.exception(event, campaign, kind, detail),
    }
}

fn target(event: &PaymentEvent, pledge: Option<&PledgeRecord>, known: &Known) -> Target {
    match event.refunds_txn() {
        Some(txn) => match known.gift_txns.get(txn) {
            Some(pledge) => Target::Gift(*pledge),
            None if known.charges.contains_key(txn) => Target::Charge(txn.to_owned()),
            None => Target::Nothing,
        },
        None => match pledge {
            Some(p) if known.gifts.contains_key(&p.id) => Target::Gift(p.id),
            _ => Target::Nothing,
        },
    }
}

fn campaign_of(target: &Target, known: &Known) -> Option<i64> {
    match target {
        Target::Gift(pledge) => known.gifts.get(pledge).map(|g| g.campaign_id),
        Target::Charge(txn) => known.charges.get(txn).and_then(|c| c.campaign_id),
        Target::Nothing => None,
    }
}

fn apply(
    event: &PaymentEvent,
    target: Target,
    known: &mut Known,
    plan: &mut Plan,
) -> Result<Outcome, Refused> {
    match target {
        Target::Gift(pledge) => refund_gift(event, pledge, known, plan),
        Target::Charge(txn) => refund_charge(event, &txn, known, plan),
        Target::Nothing => Err(("refund_without_gift", "nothing to refund".into())),
    }
}

/// Checks a refund of `amount` in `currency` against what is left of a payment.
fn check(
    event: &PaymentEvent,
    currency: &str,
    left: i64,
    exceeds: &'static str,
) -> Result<(), Refused> {
    if event.currency != currency || event.amount <= 0 {
        let detail = format!(
            "refund of {} {} on a payment in {currency}",
            event.amount, event.currency
        );
        return Err(("invalid_event", detail));
    }
    if event.amount > left {
        let detail = format!("refund of {} with {left} left on the payment", event.amount);
        return Err((exceeds, detail));
    }
    Ok(())
}

fn refund_gift(
    event: &PaymentEvent,
    pledge: Uuid,
    known: &mut Known,
    plan: &mut Plan,
) -> Result<Outcome, Refused> {
    let Some(gift) = known.gifts.get(&pledge).cloned() else {
        return Err(("refund_without_gift", "no settled gift".into()));
    };
    check(
        event,
        &gift.currency,
        gift.amount - gift.refunded,
        "refund_exceeds_gift",
    )?;
    let refunded = gift.refunded + event.amount;
    // The match goes back in proportion; a whole refund takes back the whole match.
    let reversed_total =
        (i128::from(gift.matched) * i128::from(refunded) / i128::from(gift.amount)) as i64;
    let reversed = reversed_total - gift.reversed;
    if let Some(pool) = known.pools.get_mut(&gift.campaign_id) {
        pool.spent -= reversed;
    }
    let mut updated = gift.clone();
    (updated.refunded, updated.reversed) = (refunded, reversed_total);
    known.gifts.insert(pledge, updated);
    known.applied_refunds.insert(event.provider_txn_id.clone());
    let fully = refunded == gift.amount;
    if fully {
        plan.statuses.push((pledge, PledgeStatus::Refunded));
    }
    let id = Uuid::new_v4();
    plan.effects.push(Effect::Refund(plan.refunds.len()));
    plan.refunds.push(NewRefund {
        id,
        post_close: known.closed(gift.campaign_id),
        provider_txn_id: event.provider_txn_id.clone(),
        event_id: event.event_id.clone(),
        amount: event.amount,
        reversed,
        fully,
        gift: gift.clone(),
    });
    super::progress::confirmed(known, plan, gift.campaign_id, gift.stream_id, -event.amount);
    Ok(Outcome::Refund(id))
}

fn refund_charge(
    event: &PaymentEvent,
    txn: &str,
    known: &mut Known,
    plan: &mut Plan,
) -> Result<Outcome, Refused> {
    let Some(mut charge) = known.charges.get(txn).cloned() else {
        return Err(("refund_without_gift", format!("no payment {txn}")));
    };
    let exceeds = "refund_exceeds_payment";
    check(
        event,
        &charge.currency,
        charge.amount - charge.refunded,
        exceeds,
    )?;
    charge.refunded += event.amount;
    if charge.refunded == charge.amount {
        plan.resolved.push(Resolved {
            event_id: charge.event_id.clone(),
            how: Resolution::Refunded,
            by: event.event_id.clone(),
        });
    }
    known.charges.insert(txn.to_owned(), charge.clone());
    known.applied_refunds.insert(event.provider_txn_id.clone());
    let id = Uuid::new_v4();
    plan.charge_refunds.push(NewChargeRefund {
        id,
        charge,
        provider_txn_id: event.provider_txn_id.clone(),
        event_id: event.event_id.clone(),
        amount: event.amount,
    });
    Ok(Outcome::ChargeRefund(id))
}

/// Kept aside: when its payment comes, the refund applies then.
fn park(
    event: &PaymentEvent,
    pledge: Option<&PledgeRecord>,
    known: &mut Known,
    plan: &mut Plan,
) -> Outcome {
    known.parked.push(event.clone());
    known.parked_refunds.insert(event.provider_txn_id.clone());
    let detail = match event.refunds_txn() {
        Some(txn) => format!("no payment {txn} yet"),
        None => "no settled gift for this pledge".into(),
    };
    let campaign = pledge.map(|p| p.campaign_id);
    plan.exception(event, campaign, "refund_without_gift", detail)
}

/// A parked refund whose payment came with the event `by`: applied to `target`, resolving
/// its exception; or, when its refund was applied already, resolved as a replay; or,
/// refused after all, its exception says why.
pub(super) fn apply_parked(
    parked: &PaymentEvent,
    by: &str,
    target: Target,
    known: &mut Known,
    plan: &mut Plan,
) {
    let txn = &parked.provider_txn_id;
    known.parked_refunds.remove(txn);
    let resolved = |how| Resolved {
        event_id: parked.event_id.clone(),
        how,
        by: by.to_owned(),
    };
    if known.applied_refunds.contains(txn) {
        plan.resolved.push(resolved(Resolution::Replayed));
        plan.late_outcomes
            .push((parked.event_id.clone(), Outcome::Ignored));
        return;
    }
    match apply(parked, target, known, plan) {
        Ok(outcome) => {
            plan.resolved.push(resolved(Resolution::Applied));
            plan.late_outcomes.push((parked.event_id.clone(), outcome));
        }
        Err((kind, detail)) => plan.reclassified.push(Reclassified {
            event_id: parked.event_id.clone(),
            kind,
            detail,
        }),
    }
}
