//! The ledger against a stored statement, in PostgreSQL and in one snapshot: each of the
//! campaign's statement rows is put beside what the ledger holds for its transaction
//! (a gift, a refund, a refund of an exception, a payment exception), then classified.
//! The statement is never loaded into memory; the lists come back sorted.

use sqlx::PgConnection;
use std::collections::BTreeMap;

use super::report::{Bucket, Count, Discrepancy, ExceptionEntry, Money, Side, Unpaid};
use crate::domain::PledgeStatus;

/// A campaign's statement rows beside the ledger, for the rest of the transaction: the
/// first row of each transaction and type stands for it (any other is a duplicate), put
/// beside the gift, refund or exception of that type. Rows that belong to another
/// campaign are left out and counted.
pub async fn stage(
    db: &mut PgConnection,
    statement_id: i64,
    campaign_id: i64,
) -> sqlx::Result<(u64, u64)> {
    sqlx::query(
        r#"create temp table rec_rows on commit drop as
           with s as (
               select line, provider_txn_id as txn, pledge_id, type, amount, currency, fee,
                      refunded_txn_id,
                      row_number() over (partition by provider_txn_id, type order by line) as nth,
                      min(line) over (partition by provider_txn_id, type) as first_line,
                      case when pledge_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                           then pledge_id::uuid end as pledge_uuid
               from statement_rows where statement_id = $1)
           select s.*,
                  g.amount as gift_amount, g.fee as gift_fee, g.currency::text as gift_currency,
                  coalesce(r.amount, xr.amount) as refund_amount,
                  coalesce(r.currency::text, xr.currency) as refund_currency,
                  -- The payment the ledger's refund refunds.
                  coalesce(rg.provider_txn_id, xe.provider_txn_id) as refund_target,
                  x.kind as exception_kind, x.campaign_id as exception_campaign,
                  coalesce(g.campaign_id, r.campaign_id, xr.campaign_id, x.campaign_id,
                           p.campaign_id) as campaign_id
           from s
           left join gifts g on s.type = 'payment' and g.provider_txn_id = s.txn
           left join refunds r on s.type = 'refund' and r.provider_txn_id = s.txn
           left join gifts rg on rg.id = r.gift_id
           left join exception_refunds xr on s.type = 'refund' and xr.provider_txn_id = s.txn
           left join payment_exceptions xe on xe.event_id = xr.exception_event_id
           left join lateral (
               select e.kind, e.campaign_id from payment_exceptions e
               where e.provider_txn_id = s.txn
                 and (e.kind like 'refund%') = (s.type = 'refund')
               order by e.id limit 1) x on true
           left join pledges p on p.id = s.pledge_uuid"#,
    )
    .bind(statement_id)
    .execute(&mut *db)
    .await?;
    let others = sqlx::query(r#"delete from rec_rows where campaign_id <> $1"#)
        .bind(campaign_id)
        .execute(&mut *db)
        .await?
        .rows_affected();
    sqlx::query(r#"create index on rec_rows (txn, type)"#)
        .execute(&mut *db)
        .await?;
    sqlx::query(r#"analyze rec_rows"#).execute(&mut *db).await?;
    let rows: i64 = sqlx::query_scalar(r#"select count(*) from rec_rows"#)
        .fetch_one(&mut *db)
        .await?;
    Ok((rows as u64, others))
}

/// Stores every discrepancy of the report `report_id`, numbered in the report's order:
/// by class, then statement line (ledger-only rows last), then transaction (byte order).
pub async fn store_discrepancies(
    db: &mut PgConnection,
    report_id: i64,
    campaign_id: i64,
) -> sqlx::Result<()> {
    sqlx::query(DISCREPANCIES)
        .bind(report_id)
        .bind(campaign_id)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// One discrepancy as stored.
#[derive(sqlx::FromRow)]
pub struct Found {
    pub class: String,
    pub provider_txn_id: String,
    pub pledge_id: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub line: Option<i64>,
    pub ledger_amount: Option<i64>,
    pub ledger_fee: Option<i64>,
    pub ledger_currency: Option<String>,
    pub statement_amount: Option<i64>,
    pub statement_fee: Option<i64>,
    pub statement_currency: Option<String>,
    pub detail: String,
}

impl From<Found> for Discrepancy {
    fn from(f: Found) -> Self {
        let side = |amount: Option<i64>, fee: Option<i64>, currency: Option<String>| {
            amount.map(|amount| Money {
                amount,
                fee: fee.unwrap_or(0),
                currency: currency.unwrap_or_default(),
            })
        };
        Discrepancy {
            provider_txn_id: f.provider_txn_id,
            pledge_id: f.pledge_id.filter(|p| !p.is_empty()),
            kind: f.kind,
            line: f.line,
            ledger: side(f.ledger_amount, f.ledger_fee, f.ledger_currency),
            statement: side(f.statement_amount, f.statement_fee, f.statement_currency),
            detail: f.detail,
        }
    }
}

/// The columns of a stored discrepancy, in order.
pub const FOUND_COLUMNS: &str = "class, provider_txn_id, pledge_id, type, line, ledger_amount, \
     ledger_fee, ledger_currency, statement_amount, statement_fee, statement_currency, detail";

/// The first `limit` discrepancies of `class`, and how many there are in all.
pub async fn listed(
    db: &mut PgConnection,
    report_id: i64,
    class: &str,
    limit: i64,
) -> sqlx::Result<(Vec<Discrepancy>, u64)> {
    let found: Vec<Found> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {FOUND_COLUMNS} from reconciliation_discrepancies
         where report_id = $1 and class = $2 order by position limit $3"
    )))
    .bind(report_id)
    .bind(class)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
    let total: i64 = sqlx::query_scalar(
        r#"select count(*) from reconciliation_discrepancies where report_id = $1 and class = $2"#,
    )
    .bind(report_id)
    .bind(class)
    .fetch_one(&mut *db)
    .await?;
    Ok((
        found.into_iter().map(Discrepancy::from).collect(),
        total as u64,
    ))
}

/// Every class in one statement, numbered in the report's order.
const DISCREPANCIES: &str = r#"
insert into reconciliation_discrepancies
    (report_id, position, class, provider_txn_id, pledge_id, type, line, ledger_amount,
     ledger_fee, ledger_currency, statement_amount, statement_fee, statement_currency, detail)
with payment_exceptions_of as (
    select e.provider_txn_id as txn, e.pledge_id::text as pledge_id, e.kind,
           v.amount, v.fee, v.currency
    from payment_exceptions e join payment_events v on v.event_id = e.event_id
    where e.campaign_id = $2 and v.type = 'payment.succeeded'),
found as (
    -- The provider moved money the ledger has nothing for.
    select 1 as rank, 'missing_in_ledger' as class, txn, pledge_id, type, line::bigint as line,
           null::bigint as l_amount, null::bigint as l_fee, null::text as l_currency,
           amount as s_amount, fee as s_fee, currency as s_currency,
           case when exception_kind is not null
                then 'recorded only as an ' || exception_kind || ' exception of no campaign'
                else 'no ' || case when type = 'payment' then 'gift' else 'refund' end
                     || ' in the ledger' end as detail
    from rec_rows
    where nth = 1 and gift_amount is null and refund_amount is null
      and (exception_kind is null or exception_campaign is null)
    union all
    select 3, 'amount_mismatch', txn, pledge_id, type, line,
           coalesce(gift_amount, refund_amount), coalesce(gift_fee, 0),
           coalesce(gift_currency, refund_currency), amount, fee, currency,
           case when coalesce(gift_currency, refund_currency) <> currency then 'currency differs'
                when coalesce(gift_amount, refund_amount) <> amount then 'amount differs'
                when gift_amount is not null then 'fee differs'
                else 'refunds ' || refunded_txn_id || ', the ledger refunded '
                     || refund_target end
    from rec_rows
    where nth = 1 and (
        (gift_amount is not null
         and (gift_amount, gift_fee, gift_currency) is distinct from (amount, fee, currency))
        or (refund_amount is not null
            and ((refund_amount, refund_currency) is distinct from (amount, currency)
                 or refunded_txn_id <> refund_target)))
    union all
    select 4, 'duplicates', txn, pledge_id, type, line, null, null, null, amount, fee, currency,
           'the transaction is also on line ' || first_line
    from rec_rows where nth > 1
    union all
    select 4, 'duplicates', txn, pledge_id, type, line, null, null, null, amount, fee, currency,
           'a second payment for the pledge (first: ' || first_txn || ' on line '
           || first_of_pledge || ')'
    from (select *, first_value(txn) over w as first_txn,
                 first_value(line) over w as first_of_pledge,
                 row_number() over w as of_pledge
          from rec_rows where nth = 1 and type = 'payment' and pledge_uuid is not null
          window w as (partition by pledge_uuid order by line)) as paid
    where of_pledge > 1
    union all
    -- The ledger holds money the statement does not show.
    select 2, 'missing_in_statement', g.provider_txn_id, g.pledge_id::text, 'payment', null,
           g.amount, g.fee, g.currency::text, null, null, null, 'a gift the statement lacks'
    from gifts g
    where g.campaign_id = $2
      and not exists (select 1 from rec_rows s
                      where s.txn = g.provider_txn_id and s.type = 'payment')
    union all
    select 2, 'missing_in_statement', r.provider_txn_id, g.pledge_id::text, 'refund', null,
           r.amount, 0, r.currency::text, null, null, null, 'a refund the statement lacks'
    from refunds r join gifts g on g.id = r.gift_id
    where r.campaign_id = $2
      and not exists (select 1 from rec_rows s
                      where s.txn = r.provider_txn_id and s.type = 'refund')
    union all
    select 2, 'missing_in_statement', xr.provider_txn_id, null, 'refund', null,
           xr.amount, 0, xr.currency, null, null, null,
           'a refund of an exception the statement lacks'
    from exception_refunds xr
    where xr.campaign_id = $2
      and not exists (select 1 from rec_rows s
                      where s.txn = xr.provider_txn_id and s.type = 'refund')
    union all
    select 2, 'missing_in_statement', x.txn, x.pledge_id, 'payment', null,
           x.amount, x.fee, x.currency, null, null, null,
           'a payment recorded as ' || x.kind || ' the statement lacks'
    from payment_exceptions_of x
    where not exists (select 1 from rec_rows s where s.txn = x.txn and s.type = 'payment')
)
select $1, row_number() over (order by rank, line nulls last, txn collate "C", type),
       class, txn, pledge_id, type, line, l_amount, l_fee, l_currency, s_amount, s_fee,
       s_currency, detail
from found
"#;

/// What a statement row matched exactly.
pub async fn matched(db: &mut PgConnection) -> sqlx::Result<Count> {
    let (count, amount): (i64, i64) = sqlx::query_as(
        r#"select count(*), coalesce(sum(amount), 0)::bigint from rec_rows
           where nth = 1 and (
               (gift_amount, gift_fee, gift_currency) = (amount, fee, currency)
               or ((refund_amount, refund_currency) = (amount, currency)
                   and (refunded_txn_id is null or refunded_txn_id = refund_target)))"#,
    )
    .fetch_one(&mut *db)
    .await?;
    Ok(Count { count, amount })
}

/// The statement's side: rows, payments, refunds, fees.
pub async fn statement_side(db: &mut PgConnection) -> sqlx::Result<Side> {
    let (rows, amount, refunds, fees): (i64, i64, i64, i64) = sqlx::query_as(
        r#"select count(*),
                  coalesce(sum(amount) filter (where type = 'payment'), 0)::bigint,
                  coalesce(sum(amount) filter (where type = 'refund'), 0)::bigint,
                  coalesce(sum(fee), 0)::bigint
           from rec_rows"#,
    )
    .fetch_one(&mut *db)
    .await?;
    Ok(Side {
        rows: Some(rows),
        amount,
        refunds,
        net: amount - refunds,
        fees,
        ..Side::default()
    })
}

/// The ledger's side: gifts, their amount and fees, and their refunds.
pub async fn ledger_side(db: &mut PgConnection, campaign_id: i64) -> sqlx::Result<Side> {
    let (gifts, amount, fees, refunds): (i64, i64, i64, i64) = sqlx::query_as(
        r#"select count(*), coalesce(sum(amount), 0)::bigint, coalesce(sum(fee), 0)::bigint,
                  (select coalesce(sum(amount), 0) from refunds where campaign_id = $1)::bigint
           from gifts where campaign_id = $1"#,
    )
    .bind(campaign_id)
    .fetch_one(&mut *db)
    .await?;
    Ok(Side {
        gifts: Some(gifts),
        amount,
        refunds,
        net: amount - refunds,
        fees,
        ..Side::default()
    })
}

/// Every payment exception of the campaign, oldest first.
pub async fn exceptions(
    db: &mut PgConnection,
    campaign_id: i64,
) -> sqlx::Result<Vec<ExceptionEntry>> {
    sqlx::query_as(
        r#"select event_id, kind, provider_txn_id, pledge_id::text as pledge_id, amount,
                  currency, detail, created_at, resolution, resolved_by
           from payment_exceptions where campaign_id = $1 order by id"#,
    )
    .bind(campaign_id)
    .fetch_all(&mut *db)
    .await
}

/// Gifts and their net (less refunds) per program area (`unrestricted` for none) and
/// per stream.
pub async fn buckets(
    db: &mut PgConnection,
    campaign_id: i64,
) -> sqlx::Result<(BTreeMap<String, Bucket>, BTreeMap<String, Bucket>)> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        r#"select coalesce(g.designation, 'unrestricted'), s.slug::text, count(*),
                  sum(g.amount - coalesce((select sum(amount) from refunds r
                                           where r.gift_id = g.id), 0))::bigint
           from gifts g join streams s on s.id = g.stream_id
           where g.campaign_id = $1
           group by 1, 2"#,
    )
    .bind(campaign_id)
    .fetch_all(&mut *db)
    .await?;
    let (mut by_designation, mut by_stream) = (BTreeMap::new(), BTreeMap::new());
    for (designation, stream, gifts, net) in rows {
        let add = |bucket: &mut Bucket| {
            bucket.gifts += gifts;
            bucket.net += net;
        };
        add(by_designation.entry(designation).or_default());
        add(by_stream.entry(stream).or_default());
    }
    Ok((by_designation, by_stream))
}

/// Pledges never paid, by stream.
pub async fn unpaid(db: &mut PgConnection, campaign_id: i64) -> sqlx::Result<Unpaid> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        r#"select s.slug::text, count(*), sum(p.amount)::bigint
           from pledges p join streams s on s.id = p.stream_id
           where p.campaign_id = $1 and p.status = any($2)
           group by 1"#,
    )
    .bind(campaign_id)
    .bind(
        [
            PledgeStatus::Pending,
            PledgeStatus::Expired,
            PledgeStatus::Failed,
        ]
        .map(PledgeStatus::as_str)
        .to_vec(),
    )
    .fetch_all(&mut *db)
    .await?;
    let mut unpaid = Unpaid::default();
    for (stream, count, amount) in rows {
        unpaid.count += count;
        unpaid.amount += amount;
        unpaid.by_stream.insert(stream, Count { count, amount });
    }
    Ok(unpaid)
}
