//! Funds and their designations (program areas).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::CatalogError;
use crate::domain::{DesignationCode, Slug};

/// A fund as an operator creates it; designations keep the order given.
#[derive(Debug, Clone)]
pub struct NewFund {
    pub slug: Slug,
    pub name: String,
    pub charity: String,
    pub designations: Vec<NewDesignation>,
}

#[derive(Debug, Clone)]
pub struct NewDesignation {
    pub code: DesignationCode,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Designation {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Fund {
    #[serde(skip)]
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub charity: String,
    pub designations: Vec<Designation>,
    pub created_at: DateTime<Utc>,
}

/// Creates the fund and its designations in one transaction.
pub async fn create_fund(db: &PgPool, fund: &NewFund) -> Result<Fund, CatalogError> {
    let mut tx = db.begin().await?;
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        r#"insert into funds (slug, name, charity) values ($1, $2, $3)
           on conflict (slug) do nothing
           returning id, created_at"#,
    )
    .bind(fund.slug.as_str())
    .bind(&fund.name)
    .bind(&fund.charity)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, created_at)) = row else {
        return Err(CatalogError::AlreadyExists("fund"));
    };
    let codes: Vec<&str> = fund.designations.iter().map(|d| d.code.as_str()).collect();
    let names: Vec<&str> = fund.designations.iter().map(|d| d.name.as_str()).collect();
    sqlx::query(
        r#"insert into designations (fund_id, code, name, position)
           select $1, code, name, (ordinality - 1)::integer
           from unnest($2::text[], $3::text[]) with ordinality as d(code, name, ordinality)"#,
    )
    .bind(id)
    .bind(&codes)
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Fund {
        id,
        slug: fund.slug.to_string(),
        name: fund.name.clone(),
        charity: fund.charity.clone(),
        designations: fund
            .designations
            .iter()
            .map(|d| Designation {
                code: d.code.to_string(),
                name: d.name.clone(),
            })
            .collect(),
        created_at,
    })
}

/// A fund's designations in the order the operator gave them.
pub async fn designations_of_fund(db: &PgPool, fund_id: i64) -> sqlx::Result<Vec<Designation>> {
    sqlx::query_as(r#"select code, name from designations where fund_id = $1 order by position"#)
        .bind(fund_id)
        .fetch_all(db)
        .await
}
