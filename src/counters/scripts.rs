//! The Lua scripts, one per live state change, loaded once (by SHA, re-sent only when
//! Redis lost it); each validates before it writes. Every script is the shared prelude
//! (the pledge status words from [`PledgeStatus`], the channel's publishing functions from
//! `channel`, then `scripts/prelude.lua`) followed by its own file. The typed wrappers of
//! the pledge's own changes are here; those of the ledger's effects are in `settled`.

use redis::Script;
use redis::aio::ConnectionLike;
use std::sync::LazyLock;

use super::{CampaignKeys, FIELDS, channel, pledge_hash};
use crate::domain::{PledgeRecord, PledgeStatus, Slug};

/// How many events each stream's log keeps for replay.
pub const LOG_LENGTH: u32 = 1000;

pub(super) struct Scripts {
    pledge: Script,
    expire: Script,
    pub(super) pledge_failed: Script,
    pub(super) gift: Script,
    pub(super) refund: Script,
    pub(super) milestone: Script,
    pub(super) alert: Script,
    pub(super) snapshot: Script,
    seq_floor: Script,
}

/// `local STATUS = {pending = 'pending', ...}` from the Rust enum, the counter fields,
/// the channel's functions, then the prelude.
fn prelude() -> String {
    let words: Vec<String> = PledgeStatus::ALL
        .iter()
        .map(|s| format!("{0} = '{0}'", s.as_str()))
        .collect();
    let counters: Vec<String> = FIELDS.iter().map(|f| format!("'{f}'")).collect();
    format!(
        "local STATUS = {{{}}}\nlocal COUNTERS = {{{}}}\n{}{}",
        words.join(", "),
        counters.join(", "),
        channel::lua(),
        include_str!("scripts/prelude.lua")
    )
}

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", prelude()))
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    pledge: script(include_str!("scripts/pledge.lua")),
    expire: script(include_str!("scripts/expire.lua")),
    pledge_failed: script(include_str!("scripts/pledge_failed.lua")),
    gift: script(include_str!("scripts/gift.lua")),
    refund: script(include_str!("scripts/refund.lua")),
    milestone: script(include_str!("scripts/milestone.lua")),
    alert: script(include_str!("scripts/alert.lua")),
    snapshot: script(include_str!("scripts/snapshot.lua")),
    seq_floor: script(include_str!("scripts/seq_floor.lua")),
});

/// A pledge to record once per idempotency key, with the lifetimes the caller chose.
pub struct PledgeWrite<'a> {
    pub pledge: &'a PledgeRecord,
    /// The idempotency key it is recorded under.
    pub idempotency_key: &'a str,
    /// A digest of the request, telling a retry from another pledge under the same key.
    pub fingerprint: &'a str,
    pub idempotency_ttl_secs: u64,
    pub pledge_ttl_secs: u64,
}

/// What the pledge script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PledgeOutcome {
    New {
        pledge_id: String,
        expires_ms: i64,
    },
    /// The same idempotency key and body were seen before: the first pledge.
    Replay {
        pledge_id: String,
        expires_ms: i64,
    },
    /// The same idempotency key came with a different body.
    Conflict,
    /// The campaign's counters are missing: rebuild them from the ledger, then retry.
    NotBuilt,
}

/// The keys and arguments of the pledge script for `write`, in order.
pub fn pledge_call(keys: &CampaignKeys, write: &PledgeWrite<'_>) -> (Vec<String>, Vec<String>) {
    let p = write.pledge;
    let id = p.id.to_string();
    let script_keys = vec![
        keys.idempotency(write.idempotency_key),
        keys.pledge(&id),
        keys.totals(),
        keys.stream_totals(&p.stream),
        keys.pending(),
        keys.built(),
    ];
    let mut args = vec![
        write.fingerprint.to_owned(),
        id,
        p.amount.minor_units().to_string(),
        p.stream.to_string(),
        p.expires_at.timestamp_millis().to_string(),
        write.idempotency_ttl_secs.to_string(),
        write.pledge_ttl_secs.to_string(),
        keys.channel(),
    ];
    for (field, value) in pledge_hash::fields(p) {
        args.push(field.to_owned());
        args.push(value);
    }
    (script_keys, args)
}

/// The pledge script's full source (prelude included), as Redis runs it: for a
/// benchmark that runs the script alone with `EVALSHA`.
pub fn pledge_script_source() -> String {
    format!("{}\n{}", prelude(), include_str!("scripts/pledge.lua"))
}

/// Records a pledge once per idempotency key (`pledge.lua`).
pub async fn accept_pledge<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    write: &PledgeWrite<'_>,
) -> redis::RedisResult<PledgeOutcome> {
    let (script_keys, args) = pledge_call(keys, write);
    let mut invocation = SCRIPTS.pledge.prepare_invoke();
    for key in script_keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(arg);
    }
    let reply: Vec<String> = invocation.invoke_async(conn).await?;
    pledge_outcome(&reply)
}

/// Reads the pledge script's reply; anything else is an error, never a guess.
fn pledge_outcome(reply: &[String]) -> redis::RedisResult<PledgeOutcome> {
    let unexpected = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected reply from the pledge script",
            reply.join(" "),
        ))
    };
    let accepted =
        || -> Option<(String, i64)> { Some((reply.get(1)?.clone(), reply.get(2)?.parse().ok()?)) };
    match reply.first().map(String::as_str) {
        Some("new") => {
            let (pledge_id, expires_ms) = accepted().ok_or_else(unexpected)?;
            Ok(PledgeOutcome::New {
                pledge_id,
                expires_ms,
            })
        }
        Some("replay") => {
            let (pledge_id, expires_ms) = accepted().ok_or_else(unexpected)?;
            Ok(PledgeOutcome::Replay {
                pledge_id,
                expires_ms,
            })
        }
        Some("conflict") => Ok(PledgeOutcome::Conflict),
        Some("rebuild") => Ok(PledgeOutcome::NotBuilt),
        _ => Err(unexpected()),
    }
}

/// Expires up to `limit` due pending pledges of a campaign (`expire.lua`); returns
/// the ids it expired.
pub async fn expire_due<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    now_ms: i64,
    limit: usize,
) -> redis::RedisResult<Vec<String>> {
    SCRIPTS
        .expire
        .key(keys.pending())
        .key(keys.totals())
        .arg(now_ms)
        .arg(limit)
        .arg(keys.base())
        .arg(keys.channel())
        .invoke_async(conn)
        .await
}

/// Raises a stream's seq to at least `floor` (`seq_floor.lua`); returns the seq now.
pub async fn raise_seq<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    stream: &Slug,
    floor: i64,
) -> redis::RedisResult<i64> {
    SCRIPTS
        .seq_floor
        .key(keys.stream_seq(stream))
        .arg(floor)
        .invoke_async(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_spells_every_status_from_the_enum() {
        let p = prelude();
        assert!(p.starts_with("local STATUS = {pending = 'pending', expired = 'expired'"));
        for s in PledgeStatus::ALL {
            assert!(p.contains(&format!("{0} = '{0}'", s.as_str())));
        }
    }

    #[test]
    fn an_unexpected_pledge_reply_is_an_error() {
        let r = |v: &[&str]| pledge_outcome(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            r(&["new", "p1", "42"]).ok(),
            Some(PledgeOutcome::New {
                pledge_id: "p1".into(),
                expires_ms: 42
            })
        );
        assert_eq!(r(&["conflict"]).ok(), Some(PledgeOutcome::Conflict));
        assert!(r(&["new", "p1"]).is_err());
        assert!(r(&["what"]).is_err());
        assert!(r(&[]).is_err());
    }

    #[test]
    fn the_benchmarks_source_is_the_script_the_service_runs() {
        let alone = Script::new(&pledge_script_source());
        assert_eq!(alone.get_hash(), SCRIPTS.pledge.get_hash());
    }
}
