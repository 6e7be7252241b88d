-- The whole livefund domain: the catalogue (funds, designations, campaigns, streams),
-- pledges written behind from Redis, and the append-only money ledger (payment events,
-- gifts, refunds, matching entries, exceptions), with statements and reconciliation reports.
-- Every money write is made idempotent by a unique constraint.

create domain slug as text
    check (value ~ '^[a-z0-9][a-z0-9-]{1,62}$');

create domain currency_code as text
    check (value ~ '^[A-Z]{3}$');

-- Amounts are integer minor units (fen for CNY).
create domain money_amount as bigint
    check (value > 0);

create table funds (
    id          bigint generated always as identity primary key,
    slug        slug not null unique,
    name        text not null check (char_length(name) between 1 and 200),
    charity     text not null check (char_length(charity) between 1 and 200),
    created_at  timestamptz not null default now()
);

-- A fund's program areas; a gift may be restricted to one of them.
create table designations (
    fund_id     bigint not null references funds (id),
    code        text not null check (code ~ '^[a-z][a-z0-9_-]{0,31}$'),
    name        text not null check (char_length(name) between 1 and 100),
    position    integer not null check (position >= 0),
    primary key (fund_id, code),
    unique (fund_id, position)
);

create table campaigns (
    id            bigint generated always as identity primary key,
    slug          slug not null unique,
    fund_id       bigint not null references funds (id),
    title         text not null check (char_length(title) between 1 and 200),
    currency      currency_code not null,
    goal          money_amount not null,
    min_amount    money_amount not null,
    max_amount    money_amount not null,
    starts_at     timestamptz,
    ends_at       timestamptz,
    created_at    timestamptz not null default now(),
    -- Closing: set once, by the close operation.
    closed_at     timestamptz,
    close_forced  boolean,
    close_reason  text,
    ledger_digest text,
    check (min_amount <= max_amount),
    check (starts_at is null or ends_at is null or starts_at < ends_at),
    check ((closed_at is null) = (close_forced is null)),
    check ((closed_at is null) = (ledger_digest is null))
);

create index campaigns_fund_idx on campaigns (fund_id);

-- A sponsor's matching (配捐) for one campaign; `spent` is the net matched total,
-- kept under `cap` by the check so concurrent settlements can never overspend.
create table matching_pools (
    campaign_id    bigint primary key references campaigns (id),
    sponsor        text not null check (char_length(sponsor) between 1 and 200),
    ratio_percent  integer not null check (ratio_percent between 1 and 1000),
    cap            money_amount not null,
    spent          bigint not null default 0,
    check (spent between 0 and cap)
);

create table streams (
    id                   bigint generated always as identity primary key,
    slug                 slug not null unique,
    campaign_id          bigint not null references campaigns (id),
    streamer             text not null check (char_length(streamer) between 1 and 100),
    goal                 money_amount,
    -- SHA-256 of the moderation key; the key itself is shown once and never stored.
    moderation_key_hash  bytea not null check (octet_length(moderation_key_hash) = 32),
    created_at           timestamptz not null default now()
);

create index streams_campaign_idx on streams (campaign_id);

-- Pledges live in Redis while in flight and are written behind here in batches,
-- so reconciliation can report pledges that were never paid. Status only moves forward.
create table pledges (
    id               uuid primary key,
    campaign_id      bigint not null references campaigns (id),
    stream_id        bigint not null references streams (id),
    amount           money_amount not null,
    currency         currency_code not null,
    designation      text,
    donor_name       text check (char_length(donor_name) <= 32),
    anonymous        boolean not null,
    message          text check (char_length(message) <= 140),
    donor_ref        text check (char_length(donor_ref) <= 128),
    idempotency_key  text check (idempotency_key ~ '^[A-Za-z0-9_-]{8,64}$'),
    status           text not null
        check (status in ('pending', 'confirmed', 'failed', 'expired', 'refunded')),
    created_at       timestamptz not null,
    expires_at       timestamptz not null,
    updated_at       timestamptz not null default now()
);

create index pledges_campaign_status_idx on pledges (campaign_id, status);

-- Every verified webhook delivery, once: a replayed event id is a no-op.
create table payment_events (
    id               bigint generated always as identity primary key,
    event_id         text not null unique check (char_length(event_id) between 1 and 200),
    type             text not null
        check (type in ('payment.succeeded', 'payment.failed', 'refund.succeeded')),
    pledge_id        uuid,
    provider_txn_id  text not null check (char_length(provider_txn_id) between 1 and 200),
    amount           bigint not null,
    currency         text not null,
    fee              bigint not null default 0,
    occurred_at      timestamptz not null,
    test             boolean not null default false,
    -- What settlement made of it: gift, refund, failed, ignored, exception, test.
    outcome          text not null,
    received_at      timestamptz not null default now()
);

create index payment_events_pledge_idx on payment_events (pledge_id);

-- The ledger of settled gifts: append-only, one per pledge and per provider transaction.
-- Donor fields are copied from the pledge so the ledger stands on its own.
create table gifts (
    id               uuid primary key,
    campaign_id      bigint not null references campaigns (id),
    stream_id        bigint not null references streams (id),
    pledge_id        uuid not null unique,
    provider_txn_id  text not null unique,
    event_id         text not null unique references payment_events (event_id),
    amount           money_amount not null,
    fee              bigint not null check (fee >= 0 and fee <= amount),
    currency         currency_code not null,
    designation      text,
    donor_name       text check (char_length(donor_name) <= 32),
    anonymous        boolean not null,
    message          text check (char_length(message) <= 140),
    message_hidden   boolean not null default false,
    donor_ref        text,
    settled_at       timestamptz not null default now()
);

create index gifts_campaign_idx on gifts (campaign_id, settled_at);
create index gifts_stream_idx on gifts (stream_id);

-- Compensating rows for refunds (partial or whole); a gift's amount is never updated.
create table refunds (
    id               uuid primary key,
    gift_id          uuid not null references gifts (id),
    campaign_id      bigint not null references campaigns (id),
    provider_txn_id  text not null unique,
    event_id         text not null unique references payment_events (event_id),
    amount           money_amount not null,
    currency         currency_code not null,
    refunded_at      timestamptz not null default now()
);

create index refunds_gift_idx on refunds (gift_id);
create index refunds_campaign_idx on refunds (campaign_id);

-- The sponsor's match of a gift (positive) and its reversal by a refund (negative).
create table matching_entries (
    id           bigint generated always as identity primary key,
    campaign_id  bigint not null references campaigns (id),
    gift_id      uuid not null references gifts (id),
    refund_id    uuid references refunds (id),
    amount       bigint not null check (amount <> 0),
    created_at   timestamptz not null default now(),
    check ((refund_id is null) = (amount > 0))
);

create unique index matching_entries_gift_once on matching_entries (gift_id) where refund_id is null;
create unique index matching_entries_refund_once on matching_entries (refund_id) where refund_id is not null;
create index matching_entries_campaign_idx on matching_entries (campaign_id);

-- Events accepted (200) but not counted: mismatches, unknown pledges, duplicates, late payments.
create table payment_exceptions (
    id               bigint generated always as identity primary key,
    event_id         text not null unique references payment_events (event_id),
    campaign_id      bigint references campaigns (id),
    pledge_id        uuid,
    provider_txn_id  text not null,
    kind             text not null check (kind in (
        'amount_mismatch', 'currency_mismatch', 'unknown_pledge', 'duplicate_payment',
        'payment_after_close', 'refund_without_gift', 'refund_exceeds_gift',
        'invalid_event')),
    amount           bigint not null,
    currency         text not null,
    detail           text not null default '',
    created_at       timestamptz not null default now(),
    -- A refund that came before its payment is applied when the payment arrives;
    -- its exception is then resolved, and reconciliation lists only unresolved ones.
    resolved_at      timestamptz
);

create index payment_exceptions_campaign_idx on payment_exceptions (campaign_id);
create index payment_exceptions_parked_idx on payment_exceptions (pledge_id)
    where kind = 'refund_without_gift' and resolved_at is null;

-- The highest event seq each stream has reached, recorded after settlement's live
-- effects. If Redis loses a stream's seq, it starts again above this, so seq keeps
-- increasing and reconnecting clients are told of the gap.
create table stream_seqs (
    stream_id  bigint primary key references streams (id),
    seq        bigint not null check (seq >= 0)
);

-- A provider statement as uploaded, and its parsed rows.
create table statements (
    id           bigint generated always as identity primary key,
    campaign_id  bigint not null references campaigns (id),
    body_sha256  text not null,
    row_count    integer not null check (row_count >= 0),
    uploaded_at  timestamptz not null default now()
);

create table statement_rows (
    statement_id     bigint not null references statements (id),
    line             integer not null check (line > 0),
    provider_txn_id  text not null,
    pledge_id        text not null,
    type             text not null check (type in ('payment', 'refund')),
    amount           bigint not null,
    currency         text not null,
    fee              bigint not null,
    occurred_at      timestamptz not null,
    primary key (statement_id, line)
);

create table reconciliation_reports (
    id            bigint generated always as identity primary key,
    campaign_id   bigint not null references campaigns (id),
    statement_id  bigint not null references statements (id),
    generated_at  timestamptz not null default now(),
    clean         boolean not null,
    report        jsonb not null
);

create index reconciliation_reports_latest_idx on reconciliation_reports (campaign_id, id desc);
