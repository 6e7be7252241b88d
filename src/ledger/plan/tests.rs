//! The settlement rules, event by event and in shuffled orders.

use super::*;
use crate::domain::{Currency, Money, Slug};
use chrono::Utc;

const CAMPAIGN: i64 = 1;

fn pledge(n: u128, amount: i64) -> PledgeRecord {
    PledgeRecord {
        id: Uuid::from_u128(n),
        campaign_id: CAMPAIGN,
        campaign: Slug::parse("c", "campaign").expect("slug"),
        stream_id: 7,
        stream: Slug::parse("s", "stream").expect("slug"),
        amount: Money::from_stored(amount),
        currency: Currency::CNY,
        designation: None,
        donor_name: Some("小明".into()),
        anonymous: false,
        message: None,
        donor_ref: Some("browser-1".into()),
        idempotency_key: None,
        status: PledgeStatus::Pending,
        created_at: Utc::now(),
        expires_at: Utc::now(),
    }
}

fn event(id: &str, kind: EventKind, pledge: u128, txn: &str, amount: i64) -> PaymentEvent {
    PaymentEvent {
        event_id: id.into(),
        kind,
        pledge_id: Uuid::from_u128(pledge).to_string(),
        provider_txn_id: txn.into(),
        amount,
        currency: "CNY".into(),
        fee: 0,
        occurred_at: Utc::now(),
        test: false,
        refunded_txn_id: None,
    }
}

fn paid(id: &str, pledge: u128, txn: &str, amount: i64) -> PaymentEvent {
    event(id, EventKind::PaymentSucceeded, pledge, txn, amount)
}

fn refunded(id: &str, pledge: u128, txn: &str, amount: i64) -> PaymentEvent {
    event(id, EventKind::RefundSucceeded, pledge, txn, amount)
}

fn known(pledges: &[PledgeRecord], pool: Option<PoolFacts>) -> Known {
    let mut known = Known::default();
    for p in pledges {
        known.pledges.insert(p.id, p.clone());
    }
    known.campaigns.insert(CAMPAIGN, CampaignFacts::default());
    if let Some(pool) = pool {
        known.pools.insert(CAMPAIGN, pool);
    }
    known
}

fn codes(plan: &Plan) -> Vec<&'static str> {
    plan.outcomes
        .iter()
        .map(|o| match o {
            Outcome::Exception(kind) => kind,
            other => other.word(),
        })
        .collect()
}

/// The final ledger a sequence leaves: gift amounts per pledge, refund total, net match.
fn ledger(events: &[PaymentEvent], known: &mut Known) -> (Vec<(Uuid, i64)>, i64, i64) {
    let mut gifts = Vec::new();
    let (mut refunds, mut matched) = (0, 0);
    for e in events {
        let plan = plan(std::slice::from_ref(e), known);
        for g in &plan.gifts {
            gifts.push((g.pledge.id, g.pledge.amount.minor_units()));
            matched += g.matched;
        }
        for r in &plan.refunds {
            refunds += r.amount;
            matched -= r.reversed;
        }
    }
    gifts.sort();
    (gifts, refunds, matched)
}

#[test]
fn a_payment_makes_one_gift_and_a_second_transaction_is_an_exception() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 5000),
            paid("e2", 1, "t1", 5000),
            paid("e3", 1, "t2", 5000),
        ],
        &mut k,
    );
    assert_eq!(codes(&plan), ["gift", "ignored", "duplicate_payment"]);
    assert_eq!(plan.gifts.len(), 1);
    assert_eq!(
        plan.statuses,
        [(Uuid::from_u128(1), PledgeStatus::Confirmed)]
    );
}

#[test]
fn each_exception_class_is_recorded_and_counts_nothing() {
    let mut k = known(&[pledge(1, 5000), pledge(2, 5000), pledge(3, 5000)], None);
    let mut usd = paid("e3", 2, "t3", 5000);
    usd.currency = "USD".into();
    let mut fee = paid("e4", 3, "t4", 5000);
    fee.fee = 5001;
    let plan = plan(
        &[
            paid("e1", 9, "t1", 5000),
            paid("e2", 1, "t2", 4999),
            usd,
            fee,
            refunded("e5", 1, "r1", 100),
        ],
        &mut k,
    );
    assert_eq!(
        codes(&plan),
        [
            "unknown_pledge",
            "amount_mismatch",
            "currency_mismatch",
            "invalid_event",
            "refund_without_gift"
        ]
    );
    assert!(plan.gifts.is_empty() && plan.refunds.is_empty() && plan.statuses.is_empty());
    assert_eq!(plan.exceptions.len(), 5);

    let mut closed = known(&[pledge(1, 5000)], None);
    closed.campaigns.insert(
        CAMPAIGN,
        CampaignFacts {
            closed: true,
            ..CampaignFacts::default()
        },
    );
    let plan = super::plan(&[paid("e1", 1, "t1", 5000)], &mut closed);
    assert_eq!(codes(&plan), ["payment_after_close"]);
}

#[test]
fn refunds_are_partial_bounded_and_the_last_one_refunds_the_pledge() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 5000),
            refunded("e2", 1, "r1", 2000),
            refunded("e3", 1, "r2", 3001),
            refunded("e4", 1, "r2", 3000),
            refunded("e5", 1, "r2", 3000),
        ],
        &mut k,
    );
    assert_eq!(
        codes(&plan),
        ["gift", "refund", "refund_exceeds_gift", "refund", "ignored"]
    );
    assert!(!plan.refunds[0].fully && plan.refunds[1].fully);
    assert_eq!(
        plan.statuses.last(),
        Some(&(Uuid::from_u128(1), PledgeStatus::Refunded))
    );
}

#[test]
fn matching_stops_at_the_cap_and_a_refund_returns_its_match() {
    let pool = PoolFacts {
        ratio_percent: 50,
        cap: 3000,
        spent: 0,
    };
    let mut k = known(
        &[pledge(1, 4000), pledge(2, 4000), pledge(3, 4000)],
        Some(pool),
    );
    let plan = plan(
        &[
            paid("e1", 1, "t1", 4000),
            paid("e2", 2, "t2", 4000),
            paid("e3", 3, "t3", 4000),
        ],
        &mut k,
    );
    let matched: Vec<i64> = plan.gifts.iter().map(|g| g.matched).collect();
    assert_eq!(
        matched,
        [2000, 1000, 0],
        "the last match is partial, then none"
    );
    assert_eq!(k.pools[&CAMPAIGN].spent, 3000);

    let plan = super::plan(
        &[refunded("e4", 1, "r1", 1000), refunded("e5", 1, "r2", 3000)],
        &mut k,
    );
    let reversed: Vec<i64> = plan.refunds.iter().map(|r| r.reversed).collect();
    assert_eq!(
        reversed,
        [500, 1500],
        "in proportion, and in full once fully refunded"
    );
    assert_eq!(k.pools[&CAMPAIGN].spent, 1000);
    let plan = super::plan(&[paid("e6", 9, "t9", 4000)], &mut k);
    assert_eq!(codes(&plan), ["unknown_pledge"]);
}

#[test]
fn failures_after_success_change_nothing() {
    let mut k = known(&[pledge(1, 5000), pledge(2, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 5000),
            event("e2", EventKind::PaymentFailed, 1, "t1", 5000),
            event("e3", EventKind::PaymentFailed, 2, "t2", 5000),
            paid("e4", 2, "t2", 5000),
        ],
        &mut k,
    );
    assert_eq!(codes(&plan), ["gift", "ignored", "failed", "gift"]);
    assert_eq!(
        plan.statuses.last(),
        Some(&(Uuid::from_u128(2), PledgeStatus::Confirmed))
    );
}

#[test]
fn test_events_touch_no_ledger_row() {
    let mut k = known(&[pledge(1, 5000)], None);
    let mut e = paid("e1", 1, "t1", 5000);
    e.test = true;
    let plan = plan(&[e], &mut k);
    assert_eq!(codes(&plan), ["test"]);
    assert!(plan.gifts.is_empty() && plan.statuses.is_empty());
    assert!(matches!(plan.effects[..], [Effect::Test(..)]));
}

#[test]
fn shuffled_events_leave_the_same_ledger_as_in_order() {
    let pool = PoolFacts {
        ratio_percent: 100,
        cap: 6000,
        spent: 0,
    };
    let pledges = [pledge(1, 5000), pledge(2, 3000)];
    let in_order = [
        paid("e1", 1, "t1", 5000),
        paid("e2", 2, "t2", 3000),
        refunded("e3", 1, "r1", 2000),
        event("e4", EventKind::PaymentFailed, 2, "t2", 3000),
        refunded("e5", 2, "r2", 3000),
    ];
    let expected = ledger(&in_order, &mut known(&pledges, Some(pool)));
    assert_eq!(expected.1, 5000);
    let orders: [[usize; 5]; 4] = [
        [2, 0, 1, 3, 4],
        [4, 3, 2, 1, 0],
        [3, 4, 1, 2, 0],
        [2, 4, 0, 3, 1],
    ];
    for order in orders {
        let shuffled: Vec<PaymentEvent> = order.iter().map(|&i| in_order[i].clone()).collect();
        let mut k = known(&pledges, Some(pool));
        assert_eq!(ledger(&shuffled, &mut k), expected, "order {order:?}");
        assert!(k.parked.is_empty(), "no refund left parked");
    }
}

/// A refund of `amount` that names the payment `of`.
fn refund_of(id: &str, pledge: u128, txn: &str, of: &str, amount: i64) -> PaymentEvent {
    PaymentEvent {
        refunded_txn_id: Some(of.into()),
        ..refunded(id, pledge, txn, amount)
    }
}

fn resolved(plan: &Plan) -> Vec<(&str, Resolution, &str)> {
    plan.resolved
        .iter()
        .map(|r| (r.event_id.as_str(), r.how, r.by.as_str()))
        .collect()
}

#[test]
fn a_refund_of_a_duplicate_charge_resolves_it_and_leaves_the_gift() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 5000),
            paid("e2", 1, "t2", 5000),
            refund_of("e3", 1, "r1", "t2", 5000),
            paid("e4", 1, "t2", 5000),
        ],
        &mut k,
    );
    assert_eq!(
        codes(&plan),
        ["gift", "duplicate_payment", "exception_refund", "ignored"]
    );
    assert!(plan.refunds.is_empty(), "the gift is not refunded");
    assert_eq!(plan.charge_refunds.len(), 1);
    assert_eq!(plan.charge_refunds[0].charge.event_id, "e2");
    assert_eq!(resolved(&plan), [("e2", Resolution::Refunded, "e3")]);
    assert_eq!(
        plan.statuses,
        [(Uuid::from_u128(1), PledgeStatus::Confirmed)],
        "the pledge stays confirmed"
    );
    assert_eq!(k.gifts[&Uuid::from_u128(1)].refunded, 0);
}

#[test]
fn a_partial_refund_of_a_charge_leaves_it_open_and_an_excess_is_refused() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 4000),
            refund_of("e2", 1, "r1", "t1", 1500),
            refund_of("e3", 1, "r2", "t1", 3000),
            refund_of("e4", 1, "r3", "t1", 2500),
        ],
        &mut k,
    );
    assert_eq!(
        codes(&plan),
        [
            "amount_mismatch",
            "exception_refund",
            "refund_exceeds_payment",
            "exception_refund"
        ]
    );
    assert_eq!(resolved(&plan), [("e1", Resolution::Refunded, "e4")]);
}

#[test]
fn a_refund_of_a_wrong_payment_parked_before_it_lands_on_that_payment_only() {
    let mut k = known(&[pledge(1, 5000)], None);
    let early = plan(&[refund_of("e1", 1, "r1", "t_wrong", 4000)], &mut k);
    assert_eq!(codes(&early), ["refund_without_gift"]);
    let later = plan(
        &[
            paid("e2", 1, "t_wrong", 4000),
            paid("e3", 1, "t_right", 5000),
        ],
        &mut k,
    );
    assert_eq!(codes(&later), ["amount_mismatch", "gift"]);
    assert_eq!(
        later.charge_refunds.len(),
        1,
        "the refund took the wrong payment back"
    );
    assert!(later.refunds.is_empty(), "and left the gift alone");
    assert_eq!(
        resolved(&later),
        [
            ("e2", Resolution::Refunded, "e1"),
            ("e1", Resolution::Applied, "e2")
        ]
    );
    assert_eq!(
        later.late_outcomes,
        [(
            "e1".into(),
            Outcome::ChargeRefund(later.charge_refunds[0].id)
        )]
    );
    assert!(k.parked.is_empty());
}

#[test]
fn a_refund_naming_a_gift_refunds_that_gift_whatever_pledge_it_names() {
    let mut k = known(&[pledge(1, 5000), pledge(2, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 5000),
            paid("e2", 2, "t2", 5000),
            refund_of("e3", 1, "r1", "t2", 5000),
            refunded("e4", 1, "r2", 1000),
        ],
        &mut k,
    );
    assert_eq!(codes(&plan), ["gift", "gift", "refund", "refund"]);
    assert_eq!(plan.refunds[0].gift.pledge_id, Uuid::from_u128(2));
    assert_eq!(
        plan.refunds[1].gift.pledge_id,
        Uuid::from_u128(1),
        "no name: the pledge's gift"
    );
}

#[test]
fn a_parked_refund_already_applied_elsewhere_is_resolved_as_a_replay() {
    let mut k = known(&[pledge(1, 5000)], None);
    k.parked.push(refunded("e_old", 1, "r1", 1000));
    k.parked_refunds.insert("r1".into());
    k.applied_refunds.insert("r1".into());
    let plan = plan(&[paid("e1", 1, "t1", 5000)], &mut k);
    assert_eq!(codes(&plan), ["gift"]);
    assert!(plan.refunds.is_empty());
    assert_eq!(resolved(&plan), [("e_old", Resolution::Replayed, "e1")]);
    assert_eq!(plan.late_outcomes, [("e_old".into(), Outcome::Ignored)]);
}

#[test]
fn a_parked_refund_refused_on_arrival_of_its_payment_says_why() {
    let mut k = known(&[pledge(1, 5000)], None);
    let early = plan(&[refunded("e1", 1, "r1", 6000)], &mut k);
    assert_eq!(codes(&early), ["refund_without_gift"]);
    let later = plan(&[paid("e2", 1, "t1", 5000)], &mut k);
    assert_eq!(codes(&later), ["gift"]);
    assert_eq!(
        later.reclassified,
        [Reclassified {
            event_id: "e1".into(),
            kind: "refund_exceeds_gift",
            detail: "refund of 6000 with 5000 left on the payment".into()
        }]
    );
    assert!(later.resolved.is_empty());
}

#[test]
fn a_second_event_for_a_charge_or_a_parked_refund_has_no_effect() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan = plan(
        &[
            paid("e1", 1, "t1", 4000),
            paid("e2", 1, "t1", 4000),
            refunded("e3", 1, "r1", 100),
            refunded("e4", 1, "r1", 100),
        ],
        &mut k,
    );
    assert_eq!(
        codes(&plan),
        [
            "amount_mismatch",
            "ignored",
            "refund_without_gift",
            "ignored"
        ]
    );
    assert_eq!(plan.exceptions.len(), 2);
}

#[test]
fn a_refund_after_close_is_a_post_close_adjustment() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan1 = plan(&[paid("e1", 1, "t1", 5000)], &mut k);
    assert_eq!(codes(&plan1), ["gift"]);
    if let Some(c) = k.campaigns.get_mut(&CAMPAIGN) {
        c.closed = true;
    }
    let plan2 = plan(&[refunded("e2", 1, "r1", 2000)], &mut k);
    assert_eq!(codes(&plan2), ["refund"]);
    assert!(plan2.refunds[0].post_close);
    assert!(!plan1.gifts.is_empty());
}

#[test]
fn milestones_follow_the_gift_that_reaches_them_stream_first() {
    let mut k = known(&[pledge(1, 5000), pledge(2, 5000)], None);
    k.streams.insert(
        7,
        Progress {
            goal: Some(10_000),
            ..Progress::default()
        },
    );
    if let Some(c) = k.campaigns.get_mut(&CAMPAIGN) {
        c.progress = Progress {
            goal: Some(20_000),
            confirmed: 4000,
            reached: [25].into(),
        };
    }
    let plan = plan(
        &[
            paid("e1", 1, "t1", 5000),
            refunded("e2", 1, "r1", 5000),
            paid("e3", 2, "t2", 5000),
        ],
        &mut k,
    );
    let order: Vec<String> = plan
        .effects
        .iter()
        .map(|e| match e {
            Effect::Gift(i) => format!("gift {i}"),
            Effect::Refund(i) => format!("refund {i}"),
            Effect::Milestone(i) => {
                let m = &plan.milestones[*i];
                let scope = if m.stream_id.is_some() {
                    "stream"
                } else {
                    "campaign"
                };
                format!("{scope} {}", m.reached)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        order,
        ["gift 0", "stream 25", "stream 50", "refund 0", "gift 1"],
        "the campaign reached 9000 of 20000 then fell; the stream passed 50 % once"
    );
    assert_eq!(plan.confirmed_deltas().0[&7], 5000);
}

#[test]
fn a_refund_parked_and_applied_in_one_batch_is_answered_as_applied() {
    let mut k = known(&[pledge(1, 5000)], None);
    let plan = plan(
        &[refunded("e1", 1, "r1", 1000), paid("e2", 1, "t1", 5000)],
        &mut k,
    );
    assert_eq!(codes(&plan), ["refund", "gift"]);
    assert!(plan.late_outcomes.is_empty());
    assert_eq!(resolved(&plan), [("e1", Resolution::Applied, "e2")]);
}
