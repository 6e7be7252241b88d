//! Writing a snapshot of the ledger into a campaign's live counters, as one atomic
//! pipeline: what a rebuild (everything) or a repair (settled money only) rewrites. The
//! campaign is marked built only once everything else is written (see `write_snapshot`).

use std::collections::HashMap;

use super::Scope;
use super::snapshot::Snapshot;
use crate::counters::pledge_hash::{self, PLEDGE_KEEP_SECS};
use crate::counters::{CampaignKeys, Keys, board_key, donor_key};
use crate::domain::{PledgeStatus, Slug, public_name};
use crate::ledger::sums::LedgerCounters;

/// The pipeline that makes the counters of `campaign` what `snap` says.
pub fn pipeline(keys: &Keys, campaign: &Slug, snap: &Snapshot, scope: Scope) -> redis::Pipeline {
    let k = keys.campaign(campaign);
    let streams: Vec<Slug> = snap
        .totals
        .streams
        .iter()
        .map(|(s, _, _)| s.clone())
        .collect();
    let mut pipe = redis::pipe();
    pipe.atomic();
    clear(&mut pipe, &k, &streams, scope);
    totals(&mut pipe, &k, snap, &streams, scope);
    donors(&mut pipe, &k, snap);
    boards(&mut pipe, &k, snap);
    for chunk in snap.gift_ids.chunks(1000) {
        pipe.sadd(k.applied_gifts(), chunk).ignore();
    }
    for chunk in snap.refund_ids.chunks(1000) {
        pipe.sadd(k.applied_refunds(), chunk).ignore();
    }
    if scope == Scope::Everything {
        pending(&mut pipe, keys, &k, campaign, snap);
        settled_pledges(&mut pipe, &k, snap);
    }
    pipe
}

/// What is rewritten from scratch. Event logs, seqs and the announced effects are kept.
fn clear(pipe: &mut redis::Pipeline, k: &CampaignKeys, streams: &[Slug], scope: Scope) {
    let mut keys = vec![
        k.top(),
        k.names(),
        k.donors(),
        k.applied_gifts(),
        k.applied_refunds(),
    ];
    if scope == Scope::Everything {
        keys.extend([k.totals(), k.pending()]);
    }
    for s in streams {
        keys.extend([k.stream_top(s), k.stream_donors(s)]);
        if scope == Scope::Everything {
            keys.push(k.stream_totals(s));
        }
    }
    pipe.del(keys).ignore();
}

fn totals(
    pipe: &mut redis::Pipeline,
    k: &CampaignKeys,
    snap: &Snapshot,
    streams: &[Slug],
    scope: Scope,
) {
    // A repair leaves `pledged` to the pledges in flight.
    let fields = |c: &LedgerCounters| {
        let all = c.fields();
        match scope {
            Scope::Everything => all.to_vec(),
            Scope::Settled => all[1..].to_vec(),
        }
    };
    pipe.hset_multiple(k.totals(), &fields(&snap.totals.campaign))
        .ignore();
    for ((_, _, counters), s) in snap.totals.streams.iter().zip(streams) {
        pipe.hset_multiple(k.stream_totals(s), &fields(counters))
            .ignore();
    }
}

/// Unique donors are those with a settled gift, counted under the pledge script's key.
fn donors(pipe: &mut redis::Pipeline, k: &CampaignKeys, snap: &Snapshot) {
    for b in &snap.boards {
        let donor = donor_key(b.donor_ref.as_deref(), &b.pledge_id);
        pipe.pfadd(k.donors(), &donor).ignore();
        pipe.pfadd(k.stream_donors(&b.stream), &donor).ignore();
    }
}

fn boards(pipe: &mut redis::Pipeline, k: &CampaignKeys, snap: &Snapshot) {
    let mut names: HashMap<String, String> = HashMap::new();
    for b in &snap.boards {
        let key = board_key(
            &b.gift_id,
            &b.pledge_id,
            b.anonymous,
            b.donor_ref.as_deref(),
        );
        let name = public_name(b.anonymous, b.donor_name.as_deref()).unwrap_or_default();
        names.insert(key.clone(), name.to_owned());
        if b.net > 0 {
            pipe.zincr(k.top(), &key, b.net).ignore();
            pipe.zincr(k.stream_top(&b.stream), &key, b.net).ignore();
        }
    }
    if !names.is_empty() {
        let names: Vec<(String, String)> = names.into_iter().collect();
        pipe.hset_multiple(k.names(), &names).ignore();
    }
}

/// Marks confirmed the records still held of pledges whose gift is settled but that
/// expired or failed here first: the rebuilt `pledged` counts them, so the gift's effect,
/// when the relay applies it, must not count them again.
const CONFIRM_SETTLED: &str = r#"
for _, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if status == ARGV[2] or status == ARGV[3] then
    redis.call('HSET', key, 'status', ARGV[1])
  end
end
return 0
"#;

fn settled_pledges(pipe: &mut redis::Pipeline, k: &CampaignKeys, snap: &Snapshot) {
    let records: Vec<String> = snap.boards.iter().map(|b| k.pledge(&b.pledge_id)).collect();
    for chunk in records.chunks(1000) {
        pipe.cmd("EVAL")
            .arg(CONFIRM_SETTLED)
            .arg(chunk.len())
            .arg(chunk)
            .arg(PledgeStatus::Confirmed.as_str())
            .arg(PledgeStatus::Expired.as_str())
            .arg(PledgeStatus::Failed.as_str())
            .ignore();
    }
}

/// Pending pledges, as the pledge script writes them.
fn pending(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    k: &CampaignKeys,
    campaign: &Slug,
    snap: &Snapshot,
) {
    for p in &snap.pending {
        let id = p.id.to_string();
        pipe.hset_multiple(k.pledge(&id), &pledge_hash::fields(p))
            .ignore();
        pipe.expire(k.pledge(&id), PLEDGE_KEEP_SECS as i64).ignore();
        pipe.zadd(k.pending(), &id, p.expires_at.timestamp_millis())
            .ignore();
        pipe.set_ex(keys.pledge_index(&id), campaign.as_str(), PLEDGE_KEEP_SECS)
            .ignore();
    }
}
