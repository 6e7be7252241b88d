//! Campaigns and their sponsor matching pools.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::CatalogError;
use crate::domain::{
    CampaignStatus, CampaignWindow, Currency, Invalid, MatchingTerms, Money, Slug,
};

/// A campaign as an operator creates it.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub slug: Slug,
    pub fund: Slug,
    pub title: String,
    pub currency: Currency,
    pub goal: Money,
    pub min_amount: Money,
    pub max_amount: Money,
    pub window: CampaignWindow,
    pub matching: Option<MatchingTerms>,
}

impl NewCampaign {
    /// Checks the rules that tie fields together.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.min_amount > self.max_amount {
            return Err(Invalid::new("max_amount", "must be at least min_amount"));
        }
        Ok(())
    }
}

/// The sponsor's terms and how much of the cap is spent (net of reversals).
#[derive(Debug, Clone)]
pub struct Matching {
    pub terms: MatchingTerms,
    pub spent: Money,
}

/// A stored campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: i64,
    pub slug: Slug,
    pub fund_id: i64,
    pub fund_slug: String,
    /// The fund's name and the charity that runs it, as shown to donors.
    pub fund_name: String,
    pub charity: String,
    pub title: String,
    pub currency: Currency,
    pub goal: Money,
    pub min_amount: Money,
    pub max_amount: Money,
    pub window: CampaignWindow,
    pub matching: Option<Matching>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Campaign {
    pub fn status(&self, now: DateTime<Utc>) -> CampaignStatus {
        self.window.status(now, self.closed_at)
    }
}

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: i64,
    slug: String,
    fund_id: i64,
    fund_slug: String,
    fund_name: String,
    charity: String,
    title: String,
    currency: String,
    goal: i64,
    min_amount: i64,
    max_amount: i64,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    sponsor: Option<String>,
    ratio_percent: Option<i32>,
    cap: Option<i64>,
    spent: Option<i64>,
}

impl TryFrom<CampaignRow> for Campaign {
    type Error = sqlx::Error;

    fn try_from(row: CampaignRow) -> Result<Self, Self::Error> {
        let corrupt = |e: Invalid| sqlx::Error::Decode(Box::new(e));
        let matching = match (row.sponsor, row.ratio_percent, row.cap, row.spent) {
            (Some(sponsor), Some(ratio), Some(cap), Some(spent)) => Some(Matching {
                terms: MatchingTerms::new(sponsor, ratio.into(), Money::from_stored(cap))
                    .map_err(corrupt)?,
                spent: Money::from_stored(spent),
            }),
            _ => None,
        };
        Ok(Campaign {
            id: row.id,
            slug: Slug::parse("slug", &row.slug).map_err(corrupt)?,
            fund_id: row.fund_id,
            fund_slug: row.fund_slug,
            fund_name: row.fund_name,
            charity: row.charity,
            title: row.title,
            currency: Currency::parse("currency", &row.currency).map_err(corrupt)?,
            goal: Money::from_stored(row.goal),
            min_amount: Money::from_stored(row.min_amount),
            max_amount: Money::from_stored(row.max_amount),
            window: CampaignWindow {
                starts_at: row.starts_at,
                ends_at: row.ends_at,
            },
            matching,
            created_at: row.created_at,
            closed_at: row.closed_at,
        })
    }
}

/// The campaign query, with its `where` clause appended at compile time (sqlx takes
/// only static SQL).
macro_rules! select_campaign {
    ($where:literal) => {
        concat!(
            r#"
    select c.id, c.slug::text as slug, c.fund_id, f.slug::text as fund_slug,
           f.name as fund_name, f.charity, c.title,
           c.currency::text as currency, c.goal::bigint as goal,
           c.min_amount::bigint as min_amount, c.max_amount::bigint as max_amount,
           c.starts_at, c.ends_at, c.created_at, c.closed_at,
           m.sponsor, m.ratio_percent, m.cap::bigint as cap, m.spent
    from campaigns c
    join funds f on f.id = c.fund_id
    left join matching_pools m on m.campaign_id = c.id
"#,
            $where
        )
    };
}

/// Creates the campaign (and its matching pool) in one transaction.
pub async fn create_campaign(db: &PgPool, new: &NewCampaign) -> Result<Campaign, CatalogError> {
    let mut tx = db.begin().await?;
    let fund_id: Option<i64> = sqlx::query_scalar(r#"select id from funds where slug = $1"#)
        .bind(new.fund.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let fund_id = fund_id.ok_or_else(|| CatalogError::UnknownFund(new.fund.to_string()))?;
    let id: Option<i64> = sqlx::query_scalar(
        r#"insert into campaigns
               (slug, fund_id, title, currency, goal, min_amount, max_amount, starts_at, ends_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           on conflict (slug) do nothing
           returning id"#,
    )
    .bind(new.slug.as_str())
    .bind(fund_id)
    .bind(&new.title)
    .bind(new.currency.as_str())
    .bind(new.goal.minor_units())
    .bind(new.min_amount.minor_units())
    .bind(new.max_amount.minor_units())
    .bind(new.window.starts_at)
    .bind(new.window.ends_at)
    .fetch_optional(&mut *tx)
    .await?;
    let id = id.ok_or(CatalogError::AlreadyExists("campaign"))?;
    if let Some(terms) = &new.matching {
        sqlx::query(
            r#"insert into matching_pools (campaign_id, sponsor, ratio_percent, cap)
               values ($1, $2, $3, $4)"#,
        )
        .bind(id)
        .bind(&terms.sponsor)
        .bind(i32::from(terms.ratio_percent))
        .bind(terms.cap.minor_units())
        .execute(&mut *tx)
        .await?;
    }
    let row: CampaignRow = sqlx::query_as(select_campaign!("where c.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row.try_into()?)
}

/// The most campaigns a public listing shows.
pub const LISTED: i64 = 100;

/// The campaigns, those not closed first (newest first), then the closed ones (most
/// recently closed first); at most [`LISTED`].
pub async fn listed_campaigns(db: &PgPool) -> sqlx::Result<Vec<Campaign>> {
    let rows: Vec<CampaignRow> = sqlx::query_as(select_campaign!(
        "order by c.closed_at is not null, c.closed_at desc, c.created_at desc, c.id desc
         limit $1"
    ))
    .bind(LISTED)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Campaign::try_from).collect()
}

pub async fn campaign_by_slug(db: &PgPool, slug: &Slug) -> sqlx::Result<Option<Campaign>> {
    let row: Option<CampaignRow> = sqlx::query_as(select_campaign!("where c.slug = $1"))
        .bind(slug.as_str())
        .fetch_optional(db)
        .await?;
    row.map(Campaign::try_from).transpose()
}
