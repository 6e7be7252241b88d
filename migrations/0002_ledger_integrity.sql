-- Ledger integrity: refunds aimed at the payment they refund, refunds of payments recorded
-- as exceptions, post-close adjustments, signed events that could not be understood, the
-- outbox of live effects, and milestones decided once in the ledger.

-- The provider transaction a refund refunds (CONTRACT §7 `refunded_txn_id`).
alter table payment_events
    add column refunded_txn_id text
        check (char_length(refunded_txn_id) between 1 and 200);

create index payment_events_txn_idx on payment_events (provider_txn_id);

-- A refund settled after its campaign closed: real money returned, shown beside the
-- digest given at close, never changing it.
alter table refunds
    add column post_close boolean not null default false;

-- Exceptions: how each was resolved, and signed bodies that could not be understood (kept
-- raw, with no payment event behind them).
alter table payment_exceptions
    drop constraint payment_exceptions_event_id_fkey,
    alter column provider_txn_id drop not null,
    add column refunded_txn_id text,
    add column raw_body bytea,
    -- applied: a parked refund applied to its payment; refunded: the payment was refunded
    -- in full; replayed: a parked refund whose refund was already applied.
    add column resolution text check (resolution in ('applied', 'refunded', 'replayed')),
    -- The event that resolved it.
    add column resolved_by text;

update payment_exceptions set resolution = 'applied' where resolved_at is not null;

alter table payment_exceptions
    add constraint payment_exceptions_resolved_check
        check ((resolved_at is null) = (resolution is null)),
    add constraint payment_exceptions_raw_check
        check ((kind = 'invalid_event') or (raw_body is null)),
    drop constraint payment_exceptions_kind_check,
    add constraint payment_exceptions_kind_check check (kind in (
        'amount_mismatch', 'currency_mismatch', 'unknown_pledge', 'duplicate_payment',
        'payment_after_close', 'refund_without_gift', 'refund_exceeds_gift',
        'refund_exceeds_payment', 'invalid_event'));

create index payment_exceptions_txn_idx on payment_exceptions (provider_txn_id);
create index payment_exceptions_refunded_txn_idx on payment_exceptions (refunded_txn_id)
    where kind = 'refund_without_gift' and resolved_at is null;

-- Refunds of payments recorded as exceptions (a duplicate charge, a wrong amount, a payment
-- after close): money the provider returned that never was a gift. Append-only.
create table exception_refunds (
    id                   uuid primary key,
    -- The exception of the refunded payment.
    exception_event_id   text not null references payment_exceptions (event_id),
    campaign_id          bigint references campaigns (id),
    provider_txn_id      text not null unique,
    event_id             text not null unique references payment_events (event_id),
    amount               money_amount not null,
    currency             text not null,
    refunded_at          timestamptz not null default now()
);

create index exception_refunds_exception_idx on exception_refunds (exception_event_id);
create index exception_refunds_campaign_idx on exception_refunds (campaign_id);

-- Confirmed totals (settled gifts net of refunds), kept by the settling transaction, so
-- milestones are decided in the ledger, once.
create table stream_confirmed (
    stream_id  bigint primary key references streams (id),
    confirmed  bigint not null
);

create table campaign_confirmed (
    campaign_id  bigint primary key references campaigns (id),
    confirmed    bigint not null
);

insert into stream_confirmed (stream_id, confirmed)
select g.stream_id,
       sum(g.amount - coalesce((select sum(r.amount) from refunds r where r.gift_id = g.id), 0))
from gifts g group by g.stream_id;

insert into campaign_confirmed (campaign_id, confirmed)
select g.campaign_id,
       sum(g.amount - coalesce((select sum(r.amount) from refunds r where r.gift_id = g.id), 0))
from gifts g group by g.campaign_id;

-- Each milestone once: 25, 50, 75 or 100 % of a campaign's goal (no stream) or of a
-- stream's goal, the first time its confirmed total reached it.
create table milestones (
    id           bigint generated always as identity primary key,
    campaign_id  bigint not null references campaigns (id),
    stream_id    bigint references streams (id),
    reached      integer not null check (reached in (25, 50, 75, 100)),
    reached_at   timestamptz not null default now()
);

create unique index milestones_campaign_once on milestones (campaign_id, reached)
    where stream_id is null;
create unique index milestones_stream_once on milestones (stream_id, reached)
    where stream_id is not null;

-- Milestones already passed count as reached, so none is announced again.
insert into milestones (campaign_id, stream_id, reached)
select c.id, null, pct
from campaigns c
join campaign_confirmed t on t.campaign_id = c.id
cross join (values (25), (50), (75), (100)) as p(pct)
where t.confirmed::numeric * 100 >= c.goal::numeric * pct;

insert into milestones (campaign_id, stream_id, reached)
select s.campaign_id, s.id, pct
from streams s
join stream_confirmed t on t.stream_id = s.id
cross join (values (25), (50), (75), (100)) as p(pct)
where s.goal is not null and t.confirmed::numeric * 100 >= s.goal::numeric * pct;

-- Live effects waiting to be applied to Redis: written in the same transaction as the
-- ledger rows they follow from, applied by a relay on any gateway, then deleted.
create table outbox (
    id           bigint generated always as identity primary key,
    campaign_id  bigint not null references campaigns (id),
    effect       jsonb not null,
    created_at   timestamptz not null default now()
);

create index outbox_campaign_idx on outbox (campaign_id, id);
