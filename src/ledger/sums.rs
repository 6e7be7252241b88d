//! The ledger's own sums of a campaign, per stream and in all: what the live counters
//! must equal.

use sqlx::PgConnection;

use crate::counters::FIELDS;
use crate::domain::{PledgeStatus, Slug};

/// One stream's (or the campaign's) counters as the ledger has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerCounters {
    pub pledged: i64,
    pub confirmed: i64,
    pub matched: i64,
    pub refunded: i64,
    pub gifts: i64,
}

impl LedgerCounters {
    fn add(&mut self, o: &LedgerCounters) {
        self.pledged += o.pledged;
        self.confirmed += o.confirmed;
        self.matched += o.matched;
        self.refunded += o.refunded;
        self.gifts += o.gifts;
    }

    pub(super) fn sub(&mut self, o: &LedgerCounters) {
        self.pledged -= o.pledged;
        self.confirmed -= o.confirmed;
        self.matched -= o.matched;
        self.refunded -= o.refunded;
        self.gifts -= o.gifts;
    }

    /// The counters in the order of [`FIELDS`], as a totals hash holds them.
    pub(super) fn fields(&self) -> [(&'static str, i64); 5] {
        [
            (FIELDS[0], self.pledged),
            (FIELDS[1], self.confirmed),
            (FIELDS[2], self.matched),
            (FIELDS[3], self.refunded),
            (FIELDS[4], self.gifts),
        ]
    }

    /// Counters read from a totals hash, in the order of [`FIELDS`]; absent fields are 0.
    pub(super) fn from_fields(values: &[Option<i64>]) -> LedgerCounters {
        let at = |i: usize| values.get(i).copied().flatten().unwrap_or(0);
        LedgerCounters {
            pledged: at(0),
            confirmed: at(1),
            matched: at(2),
            refunded: at(3),
            gifts: at(4),
        }
    }

    /// How far `live` is from this, counting settled money only (`pledged` lags behind
    /// the write-behind by design and is not drift).
    pub(super) fn drift(&self, live: &LedgerCounters) -> i64 {
        (self.confirmed - live.confirmed).abs()
            + (self.matched - live.matched).abs()
            + (self.refunded - live.refunded).abs()
            + (self.gifts - live.gifts).abs()
    }
}

/// A campaign's or a stream's id and slug, as read from the database.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Named {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub slug: Slug,
}

#[derive(sqlx::FromRow)]
struct StreamRow {
    #[sqlx(try_from = "String")]
    slug: Slug,
    goal: Option<i64>,
    pledged: i64,
    confirmed: i64,
    matched: i64,
    refunded: i64,
    gifts: i64,
}

/// A campaign's counters per stream and in all, from PostgreSQL.
pub struct LedgerTotals {
    pub campaign_id: i64,
    pub goal: i64,
    pub campaign: LedgerCounters,
    /// (stream slug, stream goal, counters), in stream id order.
    pub streams: Vec<(Slug, Option<i64>, LedgerCounters)>,
}

/// Sums the ledger of `campaign`; `None` when there is no such campaign.
pub async fn ledger_totals(
    db: &mut PgConnection,
    campaign: &Slug,
) -> sqlx::Result<Option<LedgerTotals>> {
    let id: Option<i64> = sqlx::query_scalar(r#"select id from campaigns where slug = $1"#)
        .bind(campaign.as_str())
        .fetch_optional(&mut *db)
        .await?;
    match id {
        Some(id) => ledger_totals_of(db, id).await,
        None => Ok(None),
    }
}

/// Sums the ledger of the campaign with id `campaign_id`.
pub async fn ledger_totals_of(
    db: &mut PgConnection,
    campaign_id: i64,
) -> sqlx::Result<Option<LedgerTotals>> {
    let Some(goal) =
        sqlx::query_scalar::<_, i64>(r#"select goal::bigint from campaigns where id = $1"#)
            .bind(campaign_id)
            .fetch_optional(&mut *db)
            .await?
    else {
        return Ok(None);
    };
    let rows: Vec<StreamRow> = sqlx::query_as(
        r#"select s.slug::text as slug, s.goal::bigint as goal,
                  coalesce((select sum(amount) from pledges p where p.stream_id = s.id
                            and p.status = any($2)), 0)::bigint as pledged,
                  (coalesce((select sum(amount) from gifts g where g.stream_id = s.id), 0)
                   - coalesce((select sum(r.amount) from refunds r join gifts g on g.id = r.gift_id
                               where g.stream_id = s.id), 0))::bigint as confirmed,
                  coalesce((select sum(m.amount) from matching_entries m join gifts g
                            on g.id = m.gift_id where g.stream_id = s.id), 0)::bigint as matched,
                  coalesce((select sum(r.amount) from refunds r join gifts g on g.id = r.gift_id
                            where g.stream_id = s.id), 0)::bigint as refunded,
                  (select count(*) from gifts g where g.stream_id = s.id) as gifts
           from streams s where s.campaign_id = $1 order by s.id"#,
    )
    .bind(campaign_id)
    .bind(PledgeStatus::pledged_words())
    .fetch_all(&mut *db)
    .await?;
    let mut total = LedgerCounters::default();
    let streams = rows
        .into_iter()
        .map(|r| {
            let c = LedgerCounters {
                pledged: r.pledged,
                confirmed: r.confirmed,
                matched: r.matched,
                refunded: r.refunded,
                gifts: r.gifts,
            };
            total.add(&c);
            (r.slug, r.goal, c)
        })
        .collect();
    Ok(Some(LedgerTotals {
        campaign_id,
        goal,
        campaign: total,
        streams,
    }))
}
