//! One consistent read of what a campaign's live counters must hold, taken by a rebuild
//! or a repair under the campaign's lock: totals, leaderboards, donors, the gifts and
//! refunds counted, the effects still waiting in the outbox, and pending pledges.

use sqlx::PgConnection;

use super::super::outbox::LiveEffect;
use super::super::pledge_rows;
use super::super::sums::{LedgerTotals, ledger_totals_of};
use crate::domain::{PledgeRecord, Slug};

/// A gift's net amount on the leaderboards.
#[derive(sqlx::FromRow)]
pub struct BoardRow {
    #[sqlx(try_from = "String")]
    pub stream: Slug,
    pub gift_id: String,
    pub pledge_id: String,
    pub anonymous: bool,
    pub donor_ref: Option<String>,
    pub donor_name: Option<String>,
    pub net: i64,
}

/// What the counters of one campaign must hold, read from one snapshot of the ledger.
pub struct Snapshot {
    pub totals: LedgerTotals,
    /// Every gift, with its net: the leaderboards, and the donors (those with a gift).
    pub boards: Vec<BoardRow>,
    pub gift_ids: Vec<String>,
    pub refund_ids: Vec<String>,
    pub pending: Vec<PledgeRecord>,
}

/// The totals, and the effects committed but not yet applied by a relay.
pub async fn totals_and_waiting(
    db: &mut PgConnection,
    campaign_id: i64,
) -> sqlx::Result<Option<(LedgerTotals, Vec<LiveEffect>)>> {
    let Some(totals) = ledger_totals_of(db, campaign_id).await? else {
        return Ok(None);
    };
    let waiting: Vec<sqlx::types::Json<serde_json::Value>> =
        sqlx::query_scalar(r#"select effect from outbox where campaign_id = $1 order by id"#)
            .bind(campaign_id)
            .fetch_all(&mut *db)
            .await?;
    // An effect that cannot be read is the relay's to report; here it is left out.
    let waiting = waiting
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.0).ok())
        .collect();
    Ok(Some((totals, waiting)))
}

/// Everything else a rebuild writes, from the same snapshot as `totals`.
pub async fn the_rest(db: &mut PgConnection, totals: LedgerTotals) -> sqlx::Result<Snapshot> {
    let id = totals.campaign_id;
    let boards: Vec<BoardRow> = sqlx::query_as(
        r#"select s.slug::text as stream, g.id::text as gift_id, g.pledge_id::text as pledge_id,
                  g.anonymous, g.donor_ref, g.donor_name,
                  (g.amount - coalesce((select sum(amount) from refunds r where r.gift_id = g.id), 0))::bigint as net
           from gifts g join streams s on s.id = g.stream_id
           where g.campaign_id = $1 order by g.settled_at, g.id"#,
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    let gift_ids = boards.iter().map(|b| b.gift_id.clone()).collect();
    let refund_ids: Vec<String> =
        sqlx::query_scalar(r#"select id::text from refunds where campaign_id = $1"#)
            .bind(id)
            .fetch_all(&mut *db)
            .await?;
    let pending = pledge_rows::pending_of(db, id).await?;
    Ok(Snapshot {
        totals,
        boards,
        gift_ids,
        refund_ids,
        pending,
    })
}
