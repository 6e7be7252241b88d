//! The public disclosure of a campaign (CONTRACT §4): what a donor or a journalist checks.
//! Totals, program areas and streams, the digest once closed, and the adjustments after
//! close — read from the ledger, and by construction without any donor name, donor_ref,
//! message, pledge, gift or provider transaction id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::BTreeMap;

use crate::catalog::Campaign;
use crate::domain::CampaignStatus;

/// The code under which gifts for no program area are shown, and its name.
pub const UNRESTRICTED: &str = "unrestricted";
pub const UNRESTRICTED_NAME: &str = "不限定用途";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Disclosure {
    pub campaign: String,
    pub title: String,
    /// The fund's slug, and its name.
    pub fund: String,
    pub fund_name: String,
    pub charity: String,
    #[schema(value_type = String)]
    pub status: CampaignStatus,
    pub closed_at: Option<DateTime<Utc>>,
    /// When these figures were read.
    pub as_of: DateTime<Utc>,
    /// The digest given at close (never changed after).
    pub ledger_digest: Option<String>,
    pub currency: String,
    #[schema(value_type = Object)]
    pub totals: Totals,
    #[schema(value_type = Object)]
    pub by_designation: BTreeMap<String, Area>,
    #[schema(value_type = Object)]
    pub by_stream: BTreeMap<String, Share>,
    #[schema(value_type = Object)]
    pub post_close_adjustments: Adjustments,
}

/// Money in minor units: `raised` by gifts, `refunded` to donors, `matched` by the
/// sponsor (net of reversals), provider `fees`, and `net` = raised − refunded.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct Totals {
    pub raised: i64,
    pub refunded: i64,
    pub matched: i64,
    pub fees: i64,
    pub net: i64,
    pub gifts: i64,
    pub donors: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Area {
    pub name: String,
    pub gifts: i64,
    pub net: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Share {
    pub streamer: String,
    pub gifts: i64,
    pub net: i64,
}

/// Refunds settled after close: real money returned, shown beside the digest, and the
/// sponsor's matching they took back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Adjustments {
    pub count: i64,
    pub amount: i64,
    pub matched_reversed: i64,
}

/// The disclosure of `campaign` as of now.
pub async fn disclose(db: &mut PgConnection, campaign: &Campaign) -> sqlx::Result<Disclosure> {
    let id = campaign.id;
    let mut totals: Totals = sqlx::query_as(
        r#"select coalesce(sum(g.amount), 0)::bigint as raised,
                  (select coalesce(sum(amount), 0) from refunds where campaign_id = $1)::bigint
                      as refunded,
                  (select coalesce(sum(amount), 0) from matching_entries
                   where campaign_id = $1)::bigint as matched,
                  coalesce(sum(g.fee), 0)::bigint as fees,
                  0::bigint as net,
                  count(*) as gifts,
                  count(distinct coalesce(g.donor_ref, g.pledge_id::text)) as donors
           from gifts g where g.campaign_id = $1"#,
    )
    .bind(id)
    .fetch_one(&mut *db)
    .await?;
    totals.net = totals.raised - totals.refunded;
    let areas: Vec<(String, String, i64, i64)> = sqlx::query_as(
        r#"select d.code::text, d.name, count(g.id),
                  coalesce(sum(g.amount - coalesce((select sum(amount) from refunds r
                                                    where r.gift_id = g.id), 0)), 0)::bigint
           from designations d
           left join gifts g on g.campaign_id = $1 and g.designation = d.code::text
           where d.fund_id = $2
           group by d.code, d.name"#,
    )
    .bind(id)
    .bind(campaign.fund_id)
    .fetch_all(&mut *db)
    .await?;
    let mut by_designation: BTreeMap<String, Area> = areas
        .into_iter()
        .map(|(code, name, gifts, net)| (code, Area { name, gifts, net }))
        .collect();
    let mut by_stream: BTreeMap<String, Share> = sqlx::query_as::<_, (String, String)>(
        r#"select slug::text, streamer from streams where campaign_id = $1"#,
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?
    .into_iter()
    .map(|(slug, streamer)| {
        let share = Share {
            streamer,
            ..Share::default()
        };
        (slug, share)
    })
    .collect();
    let shares: Vec<(Option<String>, String, i64, i64)> = sqlx::query_as(
        r#"select g.designation, s.slug::text, count(*),
                  sum(g.amount - coalesce((select sum(amount) from refunds r
                                           where r.gift_id = g.id), 0))::bigint
           from gifts g join streams s on s.id = g.stream_id
           where g.campaign_id = $1 group by 1, 2"#,
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    let fund_codes: Vec<String> = by_designation.keys().cloned().collect();
    for (designation, stream, gifts, net) in shares {
        let share = by_stream.entry(stream).or_default();
        share.gifts += gifts;
        share.net += net;
        // Gifts for no program area, or for one the fund no longer lists, have a row
        // of their own (the fund's areas were counted above).
        let (code, name) = match designation {
            None => (UNRESTRICTED.to_owned(), UNRESTRICTED_NAME.to_owned()),
            Some(code) if !fund_codes.contains(&code) => (code.clone(), code),
            Some(_) => continue,
        };
        let area = by_designation.entry(code).or_insert_with(|| Area {
            name,
            gifts: 0,
            net: 0,
        });
        area.gifts += gifts;
        area.net += net;
    }
    let (count, amount, matched_reversed): (i64, i64, i64) = sqlx::query_as(
        r#"select count(*), coalesce(sum(r.amount), 0)::bigint,
                  coalesce(-sum((select sum(m.amount) from matching_entries m
                                 where m.refund_id = r.id)), 0)::bigint
           from refunds r where r.campaign_id = $1 and r.post_close"#,
    )
    .bind(id)
    .fetch_one(&mut *db)
    .await?;
    let stored: Option<String> =
        sqlx::query_scalar(r#"select ledger_digest from campaigns where id = $1"#)
            .bind(id)
            .fetch_one(&mut *db)
            .await?;
    Ok(Disclosure {
        campaign: campaign.slug.to_string(),
        title: campaign.title.clone(),
        fund: campaign.fund_slug.clone(),
        fund_name: campaign.fund_name.clone(),
        charity: campaign.charity.clone(),
        status: campaign.status(Utc::now()),
        closed_at: campaign.closed_at,
        as_of: Utc::now(),
        ledger_digest: stored,
        currency: campaign.currency.to_string(),
        totals,
        by_designation,
        by_stream,
        post_close_adjustments: Adjustments {
            count,
            amount,
            matched_reversed,
        },
    })
}
