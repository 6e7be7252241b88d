//! The Redis hash of a pledge in flight, in one place: its fields, written by the pledge
//! script (given [`fields`]) and by a rebuild, and read back by [`find`]. The scripts that
//! move a pledge on read and write only its `status`, `amount` and `stream` fields.

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionLike;
use std::collections::HashMap;
use uuid::Uuid;

use super::Keys;
use crate::domain::{Currency, Money, PledgeRecord, PledgeStatus, Slug};

/// How long a pledge's hash stays in Redis after it is made (its payment may come late).
pub const PLEDGE_KEEP_SECS: u64 = 7 * 24 * 60 * 60;

/// The hash's field/value pairs for `pledge`, as the pledge script and a rebuild write them.
pub fn fields(p: &PledgeRecord) -> Vec<(&'static str, String)> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        ("stream", p.stream.to_string()),
        ("stream_id", p.stream_id.to_string()),
        ("campaign", p.campaign.to_string()),
        ("campaign_id", p.campaign_id.to_string()),
        ("amount", p.amount.to_string()),
        ("currency", p.currency.to_string()),
        ("status", p.status.as_str().to_owned()),
        ("name", p.public_name().unwrap_or_default().to_owned()),
        ("anonymous", if p.anonymous { "1" } else { "0" }.to_owned()),
        ("message", text(&p.message)),
        ("designation", text(&p.designation)),
        ("donor_ref", text(&p.donor_ref)),
        ("idempotency_key", text(&p.idempotency_key)),
        ("created", p.created_at.timestamp_millis().to_string()),
        ("expires", p.expires_at.timestamp_millis().to_string()),
    ]
}

/// A pledge hash that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("the live store holds pledge {id} with {what}")]
pub struct Unreadable {
    pub id: Uuid,
    pub what: String,
}

/// Why a pledge could not be read from the live store.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
}

/// Reads back what [`fields`] wrote.
pub fn decode(id: Uuid, values: &HashMap<String, String>) -> Result<PledgeRecord, Unreadable> {
    let bad = |what: &str| Unreadable {
        id,
        what: what.to_owned(),
    };
    let field = |name: &str| values.get(name).ok_or_else(|| bad(&format!("no {name}")));
    let number = |name: &str| -> Result<i64, Unreadable> {
        field(name)?
            .parse()
            .map_err(|_| bad(&format!("a {name} that is not an integer")))
    };
    let text = |name: &str| values.get(name).filter(|v| !v.is_empty()).cloned();
    let at = |name: &str| -> Result<DateTime<Utc>, Unreadable> {
        Utc.timestamp_millis_opt(number(name)?)
            .single()
            .ok_or_else(|| bad(&format!("a {name} time out of range")))
    };
    Ok(PledgeRecord {
        id,
        campaign_id: number("campaign_id")?,
        campaign: Slug::parse("campaign", field("campaign")?).map_err(|_| bad("a bad campaign"))?,
        stream_id: number("stream_id")?,
        stream: Slug::parse("stream", field("stream")?).map_err(|_| bad("a bad stream"))?,
        amount: Money::positive("amount", number("amount")?)
            .map_err(|_| bad("an amount that is not a positive amount"))?,
        currency: Currency::parse("currency", field("currency")?)
            .map_err(|_| bad("a bad currency"))?,
        status: PledgeStatus::parse(field("status")?).ok_or_else(|| bad("an unknown status"))?,
        donor_name: text("name"),
        anonymous: field("anonymous")? == "1",
        message: text("message"),
        designation: text("designation"),
        donor_ref: text("donor_ref"),
        idempotency_key: text("idempotency_key"),
        created_at: at("created")?,
        expires_at: at("expires")?,
    })
}

/// Reads a pledge from the live store (through the index from pledge id to campaign),
/// where it stays for [`PLEDGE_KEEP_SECS`]; `None` when it is not there.
pub async fn find<C: ConnectionLike>(
    redis: &mut C,
    keys: &Keys,
    id: &Uuid,
) -> Result<Option<PledgeRecord>, ReadError> {
    let text = id.to_string();
    let campaign: Option<String> = redis::cmd("GET")
        .arg(keys.pledge_index(&text))
        .query_async(redis)
        .await?;
    let Some(campaign) = campaign else {
        return Ok(None);
    };
    let campaign = Slug::parse("campaign", &campaign).map_err(|_| Unreadable {
        id: *id,
        what: "an index naming no campaign".into(),
    })?;
    let values: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.campaign(&campaign).pledge(&text))
        .query_async(redis)
        .await?;
    if values.is_empty() {
        return Ok(None);
    }
    Ok(Some(decode(*id, &values)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PledgeRecord {
        PledgeRecord {
            id: Uuid::new_v4(),
            campaign_id: 3,
            campaign: Slug::parse("c", "warm-winter").expect("slug"),
            stream_id: 7,
            stream: Slug::parse("s", "live-01").expect("slug"),
            amount: Money::from_stored(5000),
            currency: Currency::CNY,
            designation: Some("education".into()),
            donor_name: Some("小明".into()),
            anonymous: false,
            message: None,
            donor_ref: Some("browser-1".into()),
            idempotency_key: Some("key-12345678".into()),
            status: PledgeStatus::Pending,
            created_at: Utc
                .timestamp_millis_opt(1_780_000_000_123)
                .single()
                .expect("t"),
            expires_at: Utc
                .timestamp_millis_opt(1_780_001_800_123)
                .single()
                .expect("t"),
        }
    }

    fn stored(p: &PledgeRecord) -> HashMap<String, String> {
        fields(p)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    #[test]
    fn a_pledge_reads_back_as_written() {
        let p = record();
        assert_eq!(decode(p.id, &stored(&p)).expect("decodes"), p);
    }

    #[test]
    fn an_anonymous_pledge_keeps_no_name() {
        let p = PledgeRecord {
            anonymous: true,
            ..record()
        };
        let back = decode(p.id, &stored(&p)).expect("decodes");
        assert_eq!((back.donor_name, back.anonymous), (None, true));
    }

    #[test]
    fn missing_or_malformed_fields_are_errors_not_zeros() {
        let p = record();
        for (field, value) in [
            ("amount", Some("lots")),
            ("status", Some("paid")),
            ("expires", None),
        ] {
            let mut values = stored(&p);
            match value {
                Some(v) => values.insert(field.to_owned(), v.to_owned()),
                None => values.remove(field),
            };
            let e = decode(p.id, &values).expect_err(field);
            assert!(e.what.contains(field) || e.what.contains("status"), "{e}");
        }
    }
}
