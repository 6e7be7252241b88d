//! Streams of a campaign, each with a moderation key of which only the hash is stored.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::CatalogError;
use crate::domain::{Money, Slug};

/// A stream as an operator creates it.
#[derive(Debug, Clone)]
pub struct NewStream {
    pub slug: Slug,
    pub streamer: String,
    pub goal: Option<Money>,
}

/// A stored stream.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stream {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub slug: Slug,
    pub campaign_id: i64,
    #[sqlx(try_from = "String")]
    pub campaign_slug: Slug,
    pub streamer: String,
    pub goal: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl Stream {
    pub fn slug(&self) -> &Slug {
        &self.slug
    }

    pub fn goal(&self) -> Option<Money> {
        self.goal.map(Money::from_stored)
    }
}

/// The streamer's moderation key: shown once at creation, stored only as its SHA-256.
pub struct ModerationKey(String);

impl ModerationKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("lfmk_{}", hex::encode(bytes)))
    }

    pub fn hash(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    /// The key itself, to hand to the streamer once.
    pub fn reveal(self) -> String {
        self.0
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The stream query, with its `where` clause appended at compile time (sqlx takes
/// only static SQL).
macro_rules! select_stream {
    ($where:literal) => {
        concat!(
            r#"
    select s.id, s.slug::text as slug, s.campaign_id, c.slug::text as campaign_slug,
           s.streamer, s.goal::bigint as goal, s.created_at
    from streams s
    join campaigns c on c.id = s.campaign_id
"#,
            $where
        )
    };
}

/// Creates a stream of `campaign_id` whose moderation key hashes as `key`.
pub async fn create_stream(
    db: &PgPool,
    campaign_id: i64,
    new: &NewStream,
    key: &ModerationKey,
) -> Result<Stream, CatalogError> {
    let id: Option<i64> = sqlx::query_scalar(
        r#"insert into streams (slug, campaign_id, streamer, goal, moderation_key_hash)
           values ($1, $2, $3, $4, $5)
           on conflict (slug) do nothing
           returning id"#,
    )
    .bind(new.slug.as_str())
    .bind(campaign_id)
    .bind(&new.streamer)
    .bind(new.goal.map(Money::minor_units))
    .bind(&ModerationKey::hash(key.as_str())[..])
    .fetch_optional(db)
    .await?;
    let id = id.ok_or(CatalogError::AlreadyExists("stream"))?;
    let stream = sqlx::query_as(select_stream!("where s.id = $1"))
        .bind(id)
        .fetch_one(db)
        .await?;
    Ok(stream)
}

pub async fn stream_by_slug(db: &PgPool, slug: &Slug) -> sqlx::Result<Option<Stream>> {
    sqlx::query_as(select_stream!("where s.slug = $1"))
        .bind(slug.as_str())
        .fetch_optional(db)
        .await
}

pub async fn streams_of_campaign(db: &PgPool, campaign_id: i64) -> sqlx::Result<Vec<Stream>> {
    sqlx::query_as(select_stream!(
        "where s.campaign_id = $1 order by s.created_at, s.id"
    ))
    .bind(campaign_id)
    .fetch_all(db)
    .await
}
