//! Tests the live-counter Lua scripts (`src/counters/scripts/*.lua`) through their typed
//! wrappers, against a real Redis (`REDIS_URL`, else redis://127.0.0.1:6379).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::StreamExt;
use livefund::counters::{
    self, Applied, CampaignKeys, FIELDS, FailedPledge, Keys, LOG_LENGTH, PledgeOutcome,
    PledgeWrite, ReachedMilestone, Scope, SettledGift, SettledRefund, Snapshot, TopDonor,
};
use livefund::domain::{
    CampaignStatus, Currency, Money, Pledge, PledgeFields, PledgeRecord, PledgeRules, PledgeStatus,
    Slug,
};
use redis::FromRedisValue;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

type R<T = ()> = redis::RedisResult<T>;

/// The stream most tests use.
const S: &str = "live-01";

/// One test's campaign, under a key prefix of its own.
struct Live {
    client: redis::Client,
    conn: MultiplexedConnection,
    keys: CampaignKeys,
}

async fn live() -> Live {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).expect("a valid redis url");
    let conn = client.get_multiplexed_async_connection().await;
    let (conn, keys) = (conn.expect("a running redis"), Keys::new(new_id()));
    let keys = keys.campaign(&slug("warm-winter"));
    let mut conn = conn;
    let _: () = redis::cmd("SET")
        .arg(keys.built())
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("mark the counters built");
    Live { client, conn, keys }
}

fn seq_of(applied: Applied) -> u64 {
    match applied {
        Applied::Announced(seq) => seq,
        Applied::AlreadyAnnounced => 0,
        other => panic!("the campaign's counters are marked built in live(): {other:?}"),
    }
}

/// A fresh pledge id.
fn pledge_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `p` as kept, under `id`, expiring at `expires_ms`.
fn record(p: &Pledge, id: &str, expires_ms: i64) -> PledgeRecord {
    let at = |ms| Utc.timestamp_millis_opt(ms).single().expect("a time");
    PledgeRecord {
        id: id.parse().expect("a pledge id is a UUID"),
        campaign_id: 1,
        campaign: slug("warm-winter"),
        stream_id: 1,
        stream: p.stream.clone(),
        amount: p.amount,
        currency: p.currency,
        designation: p.designation.as_ref().map(|d| d.to_string()),
        donor_name: p.public_name().map(str::to_owned),
        anonymous: p.anonymous,
        message: p.message.clone(),
        donor_ref: p.donor_ref.clone(),
        idempotency_key: Some(p.idempotency_key.as_str().to_owned()),
        status: PledgeStatus::Pending,
        created_at: at(0),
        expires_at: at(expires_ms),
    }
}

fn new_id() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

fn slug(s: &str) -> Slug {
    Slug::parse("slug", s).expect("a valid slug")
}

fn money(v: i64) -> Money {
    Money::from_stored(v)
}

fn frame(text: &str) -> Value {
    serde_json::from_str(text).expect("a frame is JSON")
}

fn top(donor: Option<&str>, amount: i64) -> TopDonor {
    let (donor, amount) = (donor.map(Into::into), money(amount));
    TopDonor { donor, amount }
}

/// A named pledge with a message and a designation, as the page sends it.
fn pledge(stream: &str, key: &str, amount: i64, donor_ref: Option<&str>) -> Pledge {
    let fields = PledgeFields {
        amount,
        currency: "CNY".into(),
        donor_name: Some("小明".into()),
        message: Some("加油".into()),
        designation: Some("education".into()),
        donor_ref: donor_ref.map(Into::into),
        idempotency_key: key.into(),
        ..PledgeFields::default()
    };
    let rules = PledgeRules {
        currency: Currency::CNY,
        min_amount: money(1),
        max_amount: Money::MAX,
        designations: ["education".to_owned()].into(),
        status: CampaignStatus::Live,
    };
    Pledge::parse(slug(stream), &fields, &rules).expect("a valid pledge")
}

/// A named, unmatched gift.
fn gift(id: &str, pledge_id: &str, stream: &Slug, amount: i64) -> SettledGift {
    SettledGift {
        gift_id: id.into(),
        pledge_id: pledge_id.into(),
        stream: stream.clone(),
        amount: money(amount),
        matched: Money::ZERO,
        currency: "CNY".into(),
        donor_ref: None,
        anonymous: false,
        public_name: Some("小明".into()),
        message: None,
        designation: None,
    }
}

/// `g` from the page of `donor_ref`, shown as `name`.
fn by(g: SettledGift, donor_ref: &str, name: &str) -> SettledGift {
    SettledGift {
        donor_ref: Some(donor_ref.into()),
        public_name: Some(name.into()),
        ..g
    }
}

/// A refund of `amount` of `g`, whose board key is `key`, reversing no match.
fn refund(id: &str, g: &SettledGift, key: &str, amount: i64) -> SettledRefund {
    SettledRefund {
        refund_id: id.into(),
        gift_id: g.gift_id.clone(),
        pledge_id: g.pledge_id.clone(),
        stream: g.stream.clone(),
        amount: money(amount),
        match_reversed: Money::ZERO,
        board_key: key.into(),
        fully_refunded: false,
    }
}

/// The milestone `reached` of `scope`, announced on `streams`.
fn milestone(scope: Scope, reached: i32, streams: &[&str]) -> ReachedMilestone {
    let key = match scope {
        Scope::Stream => format!("stream:{}:{reached}", streams[0]),
        Scope::Campaign => format!("campaign:{reached}"),
    };
    ReachedMilestone {
        key,
        scope,
        reached,
        streams: streams.iter().map(|s| slug(s)).collect(),
    }
}

/// A logged event: (seq, kind, frame as stored).
type Event = (u64, String, String);

/// The events as `<seq> <kind>`, plus `<scope> <reached>` for a milestone, joined by ", ".
fn summary(log: &[Event]) -> String {
    let line = |(seq, kind, text): &Event| {
        let f = frame(text);
        let milestone = format!(" {} {}", f["scope"].as_str().unwrap_or("?"), f["reached"]);
        format!(
            "{seq} {kind}{}",
            if kind == "milestone" { &milestone } else { "" }
        )
    };
    log.iter().map(line).collect::<Vec<_>>().join(", ")
}

/// The frames of the events `keep` keeps, in log order.
fn frames(log: &[Event], keep: impl Fn(&Event) -> bool) -> Vec<String> {
    log.iter()
        .filter(|e| keep(e))
        .map(|e| e.2.clone())
        .collect()
}

impl Live {
    async fn q<T: FromRedisValue>(&mut self, args: &[&str]) -> R<T> {
        let mut cmd = redis::cmd(args[0]);
        cmd.arg(&args[1..]).query_async(&mut self.conn).await
    }

    async fn accept(&mut self, p: &Pledge, id: &str, expires_ms: i64) -> R<PledgeOutcome> {
        let (kept, fingerprint, ttl) = (record(p, id, expires_ms), p.fingerprint(), 3600);
        let write = PledgeWrite {
            pledge: &kept,
            idempotency_key: p.idempotency_key.as_str(),
            fingerprint: &fingerprint,
            idempotency_ttl_secs: ttl,
            pledge_ttl_secs: ttl,
        };
        counters::accept_pledge(&mut self.conn, &self.keys, &write).await
    }

    /// A new pledge of `amount` on `stream` with no donor_ref; returns its id.
    async fn pledge(&mut self, stream: &str, amount: i64, expires_ms: i64) -> R<String> {
        let (id, p) = (pledge_id(), pledge(stream, &new_id(), amount, None));
        let outcome = self.accept(&p, &id, expires_ms).await?;
        let pledge_id = id.clone();
        assert_eq!(
            outcome,
            PledgeOutcome::New {
                pledge_id,
                expires_ms
            }
        );
        Ok(id)
    }

    /// The gift's seq, or 0 when it was announced before.
    async fn gift(&mut self, g: &SettledGift) -> R<u64> {
        let applied = counters::gift_settled(&mut self.conn, &self.keys, g).await?;
        Ok(seq_of(applied))
    }

    /// The refund's seq, or 0 when it was announced before.
    async fn refund(&mut self, r: &SettledRefund) -> R<u64> {
        let applied = counters::refund_settled(&mut self.conn, &self.keys, r).await?;
        Ok(seq_of(applied))
    }

    /// The seq each stream's milestone event got; empty when announced before.
    async fn milestone(&mut self, m: &ReachedMilestone) -> R<Vec<u64>> {
        let (applied, seqs) = counters::milestone_reached(&mut self.conn, &self.keys, m).await?;
        assert_ne!(applied, Applied::NotBuilt);
        Ok(seqs)
    }

    async fn expire(&mut self, now_ms: i64, limit: usize) -> R<Vec<String>> {
        counters::expire_due(&mut self.conn, &self.keys, now_ms, limit).await
    }

    /// Fails a pledge of [`S`].
    async fn failed(&mut self, pledge_id: &str) -> R<bool> {
        let failed = FailedPledge {
            pledge_id: pledge_id.into(),
            stream: slug(S),
        };
        counters::pledge_failed(&mut self.conn, &self.keys, &failed).await
    }

    /// A snapshot of [`S`], with goals 4000 (campaign) and 400 (stream).
    async fn snap(&mut self, since: Option<u64>, recent: usize, top: usize) -> R<Snapshot> {
        let (conn, keys, goals) = (&mut self.conn, &self.keys, (money(4000), Some(money(400))));
        counters::snapshot(conn, keys, &slug(S), goals, since, recent, top).await
    }

    /// HMGET of [`FIELDS`] (pledged, confirmed, matched, refunded, gifts) on the campaign's
    /// totals and on `stream`'s; absent reads as 0.
    async fn totals(&mut self, stream: &str) -> R<[[i64; 5]; 2]> {
        let keys = [self.keys.totals(), self.keys.stream_totals(&slug(stream))];
        let mut out = [[0; 5]; 2];
        for (i, key) in keys.iter().enumerate() {
            let hmget = [&["HMGET", key.as_str()][..], &FIELDS[..]].concat();
            let values: Vec<Option<i64>> = self.q(&hmget).await?;
            out[i] = std::array::from_fn(|f| values[f].unwrap_or(0));
        }
        Ok(out)
    }

    /// PFCOUNT of the campaign's donors and of `stream`'s.
    async fn donors(&mut self, stream: &str) -> R<[i64; 2]> {
        let (campaign, stream) = (self.keys.donors(), self.keys.stream_donors(&slug(stream)));
        let campaign = self.q(&["PFCOUNT", &campaign]).await?;
        Ok([campaign, self.q(&["PFCOUNT", &stream]).await?])
    }

    /// ZSCORE of a leaderboard key on the campaign's board and on [`S`]'s.
    async fn board(&mut self, key: &str) -> R<[Option<i64>; 2]> {
        let (campaign, stream) = (self.keys.top(), self.keys.stream_top(&slug(S)));
        let campaign = self.q(&["ZSCORE", &campaign, key]).await?;
        Ok([campaign, self.q(&["ZSCORE", &stream, key]).await?])
    }

    async fn status(&mut self, pledge_id: &str) -> R<Option<String>> {
        let key = self.keys.pledge(pledge_id);
        self.q(&["HGET", &key, "status"]).await
    }

    async fn pending(&mut self) -> R<Vec<(String, i64)>> {
        let key = self.keys.pending();
        self.q(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]).await
    }

    async fn seq(&mut self, stream: &str) -> R<Option<u64>> {
        let key = self.keys.stream_seq(&slug(stream));
        self.q(&["GET", &key]).await
    }

    /// XRANGE of a stream's log; checks each entry is `<seq>-0 t <kind> f <frame>` and its
    /// frame carries that seq and type.
    async fn log(&mut self, stream: &str) -> R<Vec<Event>> {
        let key = self.keys.stream_log(&slug(stream));
        let entries: Vec<(String, Vec<String>)> = self.q(&["XRANGE", &key, "-", "+"]).await?;
        let check = |(id, fields): (String, Vec<String>)| {
            let seq: u64 = id
                .strip_suffix("-0")
                .expect("<seq>-0")
                .parse()
                .expect("seq");
            let [t, kind, f, text] = <[String; 4]>::try_from(fields).expect("t and f");
            let f_ = frame(&text);
            assert_eq!([&t, &f], ["t", "f"]);
            assert_eq!((&f_["seq"], &f_["type"]), (&json!(seq), &json!(kind)));
            (seq, kind, text)
        };
        Ok(entries.into_iter().map(check).collect())
    }

    /// Everything the scripts write for the campaign and [`S`], to show a call changed
    /// nothing.
    async fn state(&mut self) -> R<Vec<redis::Value>> {
        let (k, s) = (&self.keys, slug(S));
        let mut pipe = redis::pipe();
        for key in [k.totals(), k.names(), k.stream_totals(&s)] {
            pipe.cmd("HGETALL").arg(key);
        }
        for key in [k.pending(), k.top(), k.stream_top(&s)] {
            pipe.cmd("ZRANGE").arg(key).arg(&["0", "-1", "WITHSCORES"]);
        }
        for key in [k.donors(), k.stream_donors(&s)] {
            pipe.cmd("PFCOUNT").arg(key);
        }
        for key in [k.applied_gifts(), k.applied_refunds(), k.announced()] {
            pipe.cmd("SMEMBERS").arg(key);
        }
        pipe.cmd("GET").arg(k.stream_seq(&s));
        pipe.cmd("XRANGE").arg(k.stream_log(&s)).arg(&["-", "+"]);
        pipe.query_async(&mut self.conn).await
    }
}

#[tokio::test]
async fn new_pledge_counts_pledged_and_is_pending_until_its_expiry() -> R {
    let mut t = live().await;
    let id = t.pledge(S, 500, 90_000).await?;
    assert_eq!(t.totals(S).await?, [[500, 0, 0, 0, 0]; 2]);
    assert_eq!(
        t.donors(S).await?,
        [0, 0],
        "donors are those with a settled gift"
    );
    assert_eq!(t.pending().await?, [(id.clone(), 90_000)]);
    assert_eq!(t.status(&id).await?.as_deref(), Some("pending"));
    Ok(())
}

#[tokio::test]
async fn same_key_and_body_replays_the_first_pledge_even_with_another_id() -> R {
    let mut t = live().await;
    let p = pledge(S, "retry-key-1", 500, Some("browser-1"));
    let (first_id, second_id) = (pledge_id(), pledge_id());
    t.accept(&p, &first_id, 90_000).await?;
    let before = t.state().await?;
    let again = t.accept(&p, &second_id, 120_000).await?;
    let (pledge_id, expires_ms) = (first_id, 90_000);
    assert_eq!(
        again,
        PledgeOutcome::Replay {
            pledge_id,
            expires_ms
        }
    );
    assert_eq!(t.state().await?, before);
    assert_eq!(t.status(&second_id).await?, None);
    Ok(())
}

#[tokio::test]
async fn same_key_with_another_amount_conflicts_and_changes_nothing() -> R {
    let mut t = live().await;
    let first = pledge(S, "retry-key-1", 500, None);
    let (first_id, second_id) = (pledge_id(), pledge_id());
    t.accept(&first, &first_id, 90_000).await?;
    let before = t.state().await?;
    let other = pledge(S, "retry-key-1", 501, None);
    let conflict = t.accept(&other, &second_id, 90_000).await?;
    assert_eq!(conflict, PledgeOutcome::Conflict);
    assert_eq!(t.state().await?, before);
    assert_eq!(t.status(&second_id).await?, None);
    Ok(())
}

#[tokio::test]
async fn donors_are_counted_by_donor_ref_else_one_per_pledge() -> R {
    let mut t = live().await;
    let (s1, s2) = (slug(S), slug("live-02"));
    for id in ["same-ref-1", "same-ref-2"] {
        t.gift(&by(gift(id, id, &s1, 100), "browser-1", "小明"))
            .await?;
    }
    assert_eq!(t.donors(S).await?, [1, 1]);
    for id in ["no-ref-1", "no-ref-2"] {
        t.gift(&gift(id, id, &s2, 100)).await?;
    }
    assert_eq!(t.donors("live-02").await?, [3, 2]);
    let streams = [(&s1, None), (&s2, Some(money(10)))];
    let (all, streams) = counters::read_totals(&mut t.conn, &t.keys, money(1000), &streams).await?;
    assert_eq!(
        (all.donors, all.pledged),
        (3, money(400)),
        "gifts never pledged here count as pledged"
    );
    assert_eq!((streams[0].donors, streams[1].donors), (1, 2));
    assert_eq!(streams[1].goal, Some(money(10)));
    Ok(())
}

#[tokio::test]
async fn expire_due_expires_due_pledges_once_and_leaves_later_ones() -> R {
    let mut t = live().await;
    let early = t.pledge(S, 100, 1_000).await?;
    let on_time = t.pledge("live-02", 200, 2_000).await?;
    let later = t.pledge(S, 400, 2_001).await?;
    assert_eq!(t.expire(2_000, 100).await?, [early.clone(), on_time]);
    assert_eq!(t.totals(S).await?, [[400, 0, 0, 0, 0]; 2]);
    assert_eq!(t.totals("live-02").await?[1], [0; 5]);
    assert_eq!(t.pending().await?, [(later, 2_001)]);
    assert_eq!(t.status(&early).await?.as_deref(), Some("expired"));
    assert_eq!(t.expire(2_000, 100).await?, Vec::<String>::new());
    assert_eq!(t.totals(S).await?, [[400, 0, 0, 0, 0]; 2]);
    assert!(!t.failed(&early).await?, "an expired pledge does not fail");
    Ok(())
}

#[tokio::test]
async fn expire_due_limit_bounds_each_call_earliest_first() -> R {
    let mut t = live().await;
    let mut ids = Vec::new();
    for expires_ms in [500, 100, 300, 200, 400] {
        ids.push((expires_ms, t.pledge(S, 10, expires_ms).await?));
    }
    ids.sort();
    let ids: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
    assert_eq!(t.expire(1_000, 2).await?, ids[0..2]);
    assert_eq!(t.expire(1_000, 2).await?, ids[2..4]);
    assert_eq!(t.expire(1_000, 2).await?, ids[4..5]);
    assert!(t.expire(1_000, 2).await?.is_empty());
    assert_eq!(t.totals(S).await?, [[0; 5]; 2]);
    Ok(())
}

#[tokio::test]
async fn pledge_failed_takes_a_pending_pledge_off_pledged_once() -> R {
    let mut t = live().await;
    let id = t.pledge(S, 500, 90_000).await?;
    t.pledge(S, 70, 90_000).await?;
    assert!(t.failed(&id).await?);
    assert_eq!(t.totals(S).await?, [[70, 0, 0, 0, 0]; 2]);
    assert_eq!(t.status(&id).await?.as_deref(), Some("failed"));
    let before = t.state().await?;
    assert!(!t.failed(&id).await?);
    assert!(!t.failed("never-seen").await?);
    assert_eq!(t.state().await?, before);
    Ok(())
}

#[tokio::test]
async fn failed_pledge_is_not_expired_again() -> R {
    let mut t = live().await;
    let id = t.pledge(S, 500, 1_000).await?;
    assert!(t.failed(&id).await?);
    assert!(t.pending().await?.is_empty());
    // Even a stale pending entry does not take it off `pledged` a second time.
    let _: i64 = t.q(&["ZADD", &t.keys.pending(), "1000", &id]).await?;
    assert!(t.expire(5_000, 100).await?.is_empty());
    assert_eq!(t.totals(S).await?, [[0; 5]; 2]);
    assert!(t.pending().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn gift_counts_once_on_campaign_stream_board_and_log() -> R {
    let mut t = live().await;
    let (s, pid) = (slug(S), pledge_id());
    let p = pledge(S, "key-gift-1", 500, Some("browser-1"));
    t.accept(&p, &pid, 90_000).await?;
    let g = SettledGift {
        matched: money(250),
        message: Some("加油 \"/\"".into()),
        designation: Some("education".into()),
        ..by(gift("gift-1", &pid, &s, 500), "browser-1", "小明")
    };
    assert_eq!(t.gift(&g).await?, 1);
    assert_eq!(t.totals(S).await?, [[500, 500, 250, 0, 1]; 2]);
    assert_eq!(t.board("d:browser-1").await?, [Some(500); 2]);
    assert_eq!(t.donors(S).await?, [1, 1]);
    assert!(t.pending().await?.is_empty());
    assert_eq!(t.status(&pid).await?.as_deref(), Some("confirmed"));
    let log = t.log(S).await?;
    let want = json!({"type": "gift", "seq": 1, "gift_id": "gift-1", "donor": "小明",
        "amount": 500, "currency": "CNY", "message": "加油 \"/\"", "designation": "education",
        "matched": 250, "test": false});
    assert_eq!((log.len(), frame(&log[0].2)), (1, want));
    assert_eq!(t.seq(S).await?, Some(1));

    let before = t.state().await?;
    assert_eq!(t.gift(&g).await?, 0);
    assert_eq!(t.state().await?, before);
    Ok(())
}

#[tokio::test]
async fn anonymous_gift_shows_no_donor_even_with_a_name_and_has_its_own_board_entry() -> R {
    let mut t = live().await;
    let s = slug(S);
    let g = by(gift("gift-1", "p-1", &s, 300), "browser-1", "小明");
    assert_eq!(
        t.gift(&SettledGift {
            anonymous: true,
            ..g
        })
        .await?,
        1
    );
    let f = frame(&t.log(S).await?[0].2);
    let shown = [&f["donor"], &f["message"], &f["designation"]];
    assert_eq!(shown, [&Value::Null; 3]);
    assert_eq!(t.board("a:gift-1").await?, [Some(300); 2]);
    assert_eq!(t.board("d:browser-1").await?, [None; 2]);
    let name: Option<String> = t.q(&["HGET", &t.keys.names(), "a:gift-1"]).await?;
    assert_eq!(name.as_deref(), Some(""));
    assert_eq!(t.snap(None, 1, 1).await?.top, [top(None, 300)]);
    Ok(())
}

#[tokio::test]
async fn gift_for_an_expired_or_failed_pledge_counts_it_as_pledged_again() -> R {
    let mut t = live().await;
    let s = slug(S);
    let expired = t.pledge(S, 500, 1_000).await?;
    let failed = t.pledge(S, 70, 90_000).await?;
    assert_eq!(t.expire(1_000, 10).await?, std::slice::from_ref(&expired));
    assert!(t.failed(&failed).await?);
    assert_eq!(t.totals(S).await?, [[0; 5]; 2]);
    t.gift(&gift("gift-1", &expired, &s, 500)).await?;
    t.gift(&gift("gift-2", &failed, &s, 70)).await?;
    assert_eq!(t.totals(S).await?, [[570, 570, 0, 0, 2]; 2]);
    Ok(())
}

#[tokio::test]
async fn a_repair_that_counted_the_gift_leaves_its_expired_pledge_to_the_gift() -> R {
    let mut t = live().await;
    let s = slug(S);
    let expired = t.pledge(S, 500, 1_000).await?;
    assert_eq!(t.expire(1_000, 10).await?, std::slice::from_ref(&expired));
    // A drift repair rewrote the settled counters (the gift among them) but left
    // `pledged`, which the expiry took the pledge out of, as it was.
    let _: i64 = t.q(&["SADD", &t.keys.applied_gifts(), "gift-1"]).await?;
    t.gift(&gift("gift-1", &expired, &s, 500)).await?;
    let pledged: Option<i64> = t.q(&["HGET", &t.keys.totals(), "pledged"]).await?;
    assert_eq!(pledged, Some(500), "back in pledged once");
    Ok(())
}

#[tokio::test]
async fn a_milestone_is_announced_once_on_each_stream_with_its_own_seq() -> R {
    let mut t = live().await;
    let a = slug("stream-a");
    t.gift(&gift("g-a", "g-a", &a, 50)).await?;
    let campaign = milestone(Scope::Campaign, 25, &["stream-a", "stream-b", "stream-c"]);
    assert_eq!(t.milestone(&campaign).await?, [2, 1, 1]);
    assert_eq!(t.milestone(&campaign).await?, Vec::<u64>::new(), "once");
    let own = milestone(Scope::Stream, 50, &["stream-b"]);
    assert_eq!(t.milestone(&own).await?, [2]);
    assert_eq!(
        summary(&t.log("stream-a").await?),
        "1 gift, 2 milestone campaign 25"
    );
    let b = "1 milestone campaign 25, 2 milestone stream 50";
    assert_eq!(summary(&t.log("stream-b").await?), b);
    let want = json!({"type": "milestone", "seq": 2, "scope": "stream", "reached": 50});
    assert_eq!(frame(&t.log("stream-b").await?[1].2), want);
    assert_eq!(t.seq("stream-c").await?, Some(1));
    Ok(())
}

#[tokio::test]
async fn a_gift_counted_by_a_rebuild_is_still_announced_once() -> R {
    let mut t = live().await;
    let s = slug(S);
    let pid = t.pledge(S, 300, 90_000).await?;
    // A rebuild from the ledger counted the gift (its totals and its id) before its
    // effect ran.
    let g = gift("gift-1", &pid, &s, 300);
    let _: i64 = t.q(&["SADD", &t.keys.applied_gifts(), "gift-1"]).await?;
    let _: () = t
        .q(&["HSET", &t.keys.totals(), "confirmed", "300", "gifts", "1"])
        .await?;
    assert_eq!(t.gift(&g).await?, 1, "announced");
    assert_eq!(
        t.totals(S).await?[0],
        [300, 300, 0, 0, 1],
        "not counted again"
    );
    assert_eq!(summary(&t.log(S).await?), "1 gift");
    assert_eq!(t.gift(&g).await?, 0, "and announced once");
    assert_eq!(
        t.status(&pid).await?.as_deref(),
        Some("confirmed"),
        "its pledge moved on"
    );
    assert!(t.pending().await?.is_empty(), "and will not expire");
    Ok(())
}

#[tokio::test]
async fn a_refund_waits_for_its_gift_to_be_counted() -> R {
    let mut t = live().await;
    let s = slug(S);
    let g = gift("gift-1", "p-1", &s, 100);
    let before = t.state().await?;
    let r = refund("r-1", &g, "p:p-1", 40);
    let applied = counters::refund_settled(&mut t.conn, &t.keys, &r).await?;
    assert_eq!(applied, Applied::GiftNotCounted);
    assert_eq!(t.state().await?, before, "nothing written");
    t.gift(&g).await?;
    assert_eq!(t.refund(&r).await?, 2);
    assert_eq!(t.totals(S).await?[1], [100, 60, 0, 40, 1]);
    Ok(())
}

#[tokio::test]
async fn an_event_goes_after_the_newest_logged_even_when_the_seq_was_lost() -> R {
    let mut t = live().await;
    let s = slug(S);
    t.gift(&gift("g-1", "g-1", &s, 1)).await?;
    t.gift(&gift("g-2", "g-2", &s, 1)).await?;
    let _: i64 = t.q(&["DEL", &t.keys.stream_seq(&s)]).await?;
    assert_eq!(t.gift(&gift("g-3", "g-3", &s, 1)).await?, 3);
    assert_eq!(summary(&t.log(S).await?), "1 gift, 2 gift, 3 gift");
    Ok(())
}

#[tokio::test]
async fn a_script_refuses_corrupt_totals_before_writing_anything() -> R {
    let mut t = live().await;
    let s = slug(S);
    let _: () = t
        .q(&["HSET", &t.keys.stream_totals(&s), "confirmed", "lots"])
        .await?;
    let before = t.state().await?;
    let g = gift("g-1", "g-1", &s, 100);
    let result = counters::gift_settled(&mut t.conn, &t.keys, &g).await;
    assert!(result.is_err(), "{result:?}");
    let p = pledge(S, "corrupt-key-1", 500, None);
    assert!(t.accept(&p, &pledge_id(), 1_000).await.is_err());
    assert_eq!(t.state().await?, before, "nothing written");
    Ok(())
}

#[tokio::test]
async fn refund_reverses_the_gift_and_appends_a_refund_event_once() -> R {
    let mut t = live().await;
    let s = slug(S);
    let pid = t.pledge(S, 500, 90_000).await?;
    let g = by(gift("gift-1", &pid, &s, 500), "browser-1", "小明");
    let g = SettledGift {
        matched: money(250),
        ..g
    };
    t.gift(&g).await?;
    let (board, reversed) = ("d:browser-1", money(100));
    let partial = refund("r-1", &g, board, 200);
    let partial = SettledRefund {
        match_reversed: reversed,
        ..partial
    };
    assert_eq!(t.refund(&partial).await?, 2);
    assert_eq!(t.totals(S).await?, [[500, 300, 150, 200, 1]; 2]);
    assert_eq!(t.board(board).await?, [Some(300); 2]);
    let log = t.log(S).await?;
    let want = json!({"type": "refund", "seq": 2, "gift_id": "gift-1", "amount": 200});
    assert_eq!((log.len(), frame(&log[1].2)), (2, want));
    let before = t.state().await?;
    assert_eq!(t.refund(&partial).await?, 0);
    assert_eq!(t.state().await?, before);

    let (rest, reversed) = (refund("r-2", &g, board, 300), money(150));
    let rest = SettledRefund {
        match_reversed: reversed,
        fully_refunded: true,
        ..rest
    };
    assert_eq!(t.refund(&rest).await?, 3);
    assert_eq!(t.totals(S).await?, [[500, 0, 0, 500, 1]; 2]);
    assert_eq!(t.board(board).await?, [None; 2], "removed at 0");
    assert_eq!(t.status(&pid).await?.as_deref(), Some("refunded"));
    Ok(())
}

/// Gifts on [`S`] (goals 4000 and 400, as [`Live::snap`] reads them): Alice 100 then 200
/// under her donor_ref, an anonymous 250, Bob 80 less a 30 refund; the stream's
/// milestones in between, where the ledger would reach them.
async fn busy_stream(t: &mut Live) -> R {
    let s = slug(S);
    t.pledge(S, 5, 90_000).await?;
    let worth = |id, amount| gift(id, id, &s, amount);
    let bob = by(worth("g-3", 80), "bob", "Bob");
    t.gift(&by(worth("g-1", 100), "alice", "Alice")).await?;
    t.milestone(&milestone(Scope::Stream, 25, &[S])).await?;
    t.gift(&SettledGift {
        anonymous: true,
        ..worth("g-2", 250)
    })
    .await?;
    t.milestone(&milestone(Scope::Stream, 50, &[S])).await?;
    t.milestone(&milestone(Scope::Stream, 75, &[S])).await?;
    t.gift(&bob).await?;
    t.milestone(&milestone(Scope::Stream, 100, &[S])).await?;
    t.refund(&refund("r-1", &bob, "d:bob", 30)).await?;
    t.gift(&by(worth("g-4", 200), "alice", "Alice")).await?;
    Ok(())
}

#[tokio::test]
async fn snapshot_reads_totals_latest_seq_recent_gifts_and_top_donors() -> R {
    let mut t = live().await;
    busy_stream(&mut t).await?;
    let snap = t.snap(None, 10, 10).await?;
    let s = slug(S);
    let streams = [(&s, Some(money(400)))];
    let (all, streams) = counters::read_totals(&mut t.conn, &t.keys, money(4000), &streams).await?;
    assert_eq!((&snap.campaign, &snap.stream), (&all, &streams[0]));
    assert_eq!((snap.stream.confirmed, snap.stream.gifts), (money(600), 4));

    let log = t.log(S).await?;
    assert!(summary(&log).contains("2 milestone stream 25, 3 gift"));
    assert_eq!([Some(snap.seq); 2], [t.seq(S).await?, Some(9)]);
    let mut gifts = frames(&log, |e| e.1 == "gift");
    gifts.reverse();
    assert_eq!(snap.recent, gifts);
    let want = [
        top(Some("Alice"), 300),
        top(None, 250),
        top(Some("Bob"), 50),
    ];
    assert_eq!(snap.top, want);
    assert!(snap.replay.is_empty() && !snap.gap);

    let two = t.snap(None, 2, 1).await?;
    assert_eq!((&two.recent[..], &two.top[..]), (&gifts[..2], &want[..1]));
    Ok(())
}

#[tokio::test]
async fn snapshot_since_replays_exactly_the_later_events_in_order() -> R {
    let mut t = live().await;
    busy_stream(&mut t).await?;
    let log = t.log(S).await?;
    let latest = log.len() as u64;
    for since in [0, 1, 3, latest - 1, latest] {
        let snap = t.snap(Some(since), 0, 1).await?;
        let want = frames(&log, |e| e.0 > since);
        let got = (snap.replay, snap.gap, snap.seq);
        assert_eq!(got, (want, false, latest), "since {since}");
        assert!(snap.recent.is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn snapshot_since_older_than_the_kept_log_reports_a_gap() -> R {
    let mut t = live().await;
    let s = slug(S);
    let total = u64::from(LOG_LENGTH) + 10;
    for i in 1..=total {
        let id = format!("g-{i}");
        t.gift(&gift(&id, &id, &s, 1)).await?;
    }
    let kept = frames(&t.log(S).await?, |_| true);
    assert_eq!(kept.len(), LOG_LENGTH as usize);
    assert_eq!(frame(&kept[0])["seq"], 11);
    let gap = t.snap(Some(1), 1, 1).await?;
    assert_eq!(
        (gap.gap, &gap.replay),
        (true, &kept),
        "from the oldest kept"
    );
    let edge = t.snap(Some(10), 1, 1).await?;
    assert_eq!((edge.gap, &edge.replay), (false, &kept), "right after 10");
    let none = t.snap(None, 1, 1).await?;
    assert_eq!((none.replay.len(), none.gap, none.seq), (0, false, total));
    Ok(())
}

#[tokio::test]
async fn pubsub_announces_totals_changes_and_the_logged_frames() -> R {
    let mut t = live().await;
    let mut pubsub = t.client.get_async_pubsub().await?;
    pubsub.subscribe(t.keys.channel()).await?;
    let mut messages = pubsub.into_on_message();
    let s = slug(S);
    let pid = t.pledge(S, 300, 90_000).await?;
    let g = gift("gift-1", &pid, &s, 300);
    t.gift(&g).await?;
    t.milestone(&milestone(Scope::Stream, 25, &[S])).await?;
    let doomed = t.pledge(S, 5, 90_000).await?;
    assert!(t.failed(&doomed).await?);
    t.refund(&refund("r-1", &g, &g.board_key(), 10)).await?;
    t.pledge(S, 5, 1).await?;
    assert_eq!(t.expire(1, 10).await?.len(), 1);

    let log = t.log(S).await?;
    assert_eq!(summary(&log), "1 gift, 2 milestone stream 25, 3 refund");
    let msg = |e: Option<usize>| e.map_or(format!("T {S}"), |i| format!("E {S} {}", log[i].2));
    let (n, e) = (None, Some);
    // pledge; gift, totals; milestone; pledge; failed; refund, totals; pledge; expire
    let want = [n, e(0), n, e(1), n, n, e(2), n, n, n].map(msg);
    let mut got = Vec::new();
    while got.len() < want.len() {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let next = next.expect("a message in 5 s").expect("subscribed");
        got.push(next.get_payload::<String>()?);
    }
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test]
async fn snapshot_with_top_zero_lists_no_donors() -> R {
    let mut t = live().await;
    busy_stream(&mut t).await?;
    let snap = t.snap(None, 0, 0).await?;
    assert_eq!(snap.top, []);
    Ok(())
}

#[tokio::test]
async fn snapshot_recent_finds_a_gift_behind_four_refunds() -> R {
    let mut t = live().await;
    let s = slug(S);
    let g = gift("gift-1", "p-1", &s, 100);
    t.gift(&g).await?;
    for id in ["r-1", "r-2", "r-3", "r-4"] {
        t.refund(&refund(id, &g, "p:p-1", 1)).await?;
    }
    assert_eq!(
        t.snap(None, 1, 1).await?.recent.len(),
        1,
        "the log holds a gift"
    );
    Ok(())
}

#[tokio::test]
async fn without_built_counters_every_hook_refuses_and_writes_nothing() -> R {
    let mut t = live().await;
    let _: () = redis::cmd("DEL")
        .arg(t.keys.built())
        .query_async(&mut t.conn)
        .await?;
    let id = pledge_id();
    let p = pledge(S, &new_id(), 500, None);
    assert_eq!(t.accept(&p, &id, 1_000).await?, PledgeOutcome::NotBuilt);
    let s = slug(S);
    let g = gift("gift-1", "p-1", &s, 100);
    let applied = counters::gift_settled(&mut t.conn, &t.keys, &g).await?;
    assert_eq!(applied, Applied::NotBuilt);
    let r = refund("r-1", &g, "p:p-1", 100);
    let applied = counters::refund_settled(&mut t.conn, &t.keys, &r).await?;
    assert_eq!(applied, Applied::NotBuilt);
    let m = milestone(Scope::Campaign, 25, &[S]);
    let (applied, _) = counters::milestone_reached(&mut t.conn, &t.keys, &m).await?;
    assert_eq!(applied, Applied::NotBuilt);
    let pattern = format!("{}*", t.keys.base());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut t.conn)
        .await?;
    assert_eq!(keys, Vec::<String>::new(), "nothing was written");
    Ok(())
}

#[tokio::test]
async fn a_test_alert_is_shown_once() -> R {
    let mut t = live().await;
    let mut pubsub = t.client.get_async_pubsub().await?;
    pubsub.subscribe(t.keys.channel()).await?;
    let alert = counters::Alert {
        key: "evt_test_1".into(),
        stream: slug(S),
        frame: r#"{"type":"gift","test":true}"#.into(),
    };
    assert!(counters::publish_alert(&mut t.conn, &t.keys, &alert).await?);
    assert!(!counters::publish_alert(&mut t.conn, &t.keys, &alert).await?);
    let mut messages = pubsub.into_on_message();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
    let first: String = first
        .expect("a message")
        .expect("subscribed")
        .get_payload()?;
    assert_eq!(first, format!("A {S} {}", alert.frame));
    let again = tokio::time::timeout(Duration::from_millis(300), messages.next()).await;
    assert!(again.is_err(), "no second alert");
    assert!(t.log(S).await?.is_empty(), "never logged");
    Ok(())
}
