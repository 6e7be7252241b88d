-- Reconciliation and close: statement rows that name the payment they refund, the rows a
-- statement could not read, and who closed a campaign on which report.

alter table statement_rows
    add column refunded_txn_id text;

create index statement_rows_txn_idx on statement_rows (statement_id, provider_txn_id);

alter table statements
    add column bad_rows integer not null default 0 check (bad_rows >= 0);

-- Lines of a statement that could not be read, with the reason; a report over the
-- statement lists them and is not clean.
create table statement_problems (
    statement_id  bigint not null references statements (id),
    line          bigint not null check (line > 0),
    reason        text not null,
    primary key (statement_id, line)
);

alter table campaigns
    add column closed_by text,
    add column closed_on_report bigint references reconciliation_reports (id);

-- Nothing could close a campaign before this migration but a hand-written update.
update campaigns
set closed_by = 'an operator, before reconciliation',
    close_forced = true,
    close_reason = coalesce(nullif(close_reason, ''), 'closed before reconciliation existed')
where closed_at is not null;

alter table campaigns
    add constraint campaigns_closed_by_check check ((closed_at is null) = (closed_by is null)),
    -- A forced close gives its reason; a clean one names the clean report it closed on.
    add constraint campaigns_close_grounds_check check (
        closed_at is null
        or (close_forced and char_length(coalesce(close_reason, '')) > 0)
        or (not close_forced and closed_on_report is not null));

-- Reports are kept as written, key order and all, so the same inputs read back
-- byte-identical but for `generated_at`.
alter table reconciliation_reports
    alter column report type json using report::json,
    -- Where the ledger stood in the report's snapshot: a close compares it with now.
    add column ledger_state text;

-- Every discrepancy of a report, in the report's order (`position`): the CSV lists them
-- all, however many; the JSON report lists the first of each class and counts the rest.
create table reconciliation_discrepancies (
    report_id           bigint not null references reconciliation_reports (id),
    position            bigint not null,
    class               text not null check (class in (
        'missing_in_ledger', 'missing_in_statement', 'amount_mismatch', 'duplicates')),
    provider_txn_id     text not null,
    pledge_id           text,
    type                text not null check (type in ('payment', 'refund')),
    line                bigint,
    ledger_amount       bigint,
    ledger_fee          bigint,
    ledger_currency     text,
    statement_amount    bigint,
    statement_fee       bigint,
    statement_currency  text,
    detail              text not null,
    primary key (report_id, position)
);

create index reconciliation_discrepancies_class_idx
    on reconciliation_discrepancies (report_id, class, position);
