//! The registry of this gateway's stream hubs, and joining and leaving them.

use redis::aio::ConnectionManager;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OnceCell, broadcast, mpsc, oneshot};

use super::subscriber::Command;
use crate::catalog::{CampaignInfo, StreamInfo};

/// Frames for every socket of a stream, already in WebSocket framing: encoded once per
/// stream, written by each socket as they are. Events that arrive together travel
/// together, so a socket wakes and writes once for all of them.
#[derive(Debug, Clone)]
pub struct Frame(Arc<Frames>);

/// Server text frames one after another, with the seq of each (`None` for frames never
/// replayed: totals, test alerts) and where it ends.
#[derive(Debug, Default)]
pub struct Frames {
    wire: Vec<u8>,
    marks: Vec<(Option<u64>, usize)>,
    /// The newest seq among the frames, kept as they are pushed: every socket asks.
    last_seq: Option<u64>,
}

impl Frames {
    /// Adds one text frame.
    pub fn push(&mut self, seq: Option<u64>, text: &str) {
        encode_text(&mut self.wire, text);
        self.marks.push((seq, self.wire.len()));
        self.last_seq = self.last_seq.max(seq);
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// The newest seq among the frames.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }
}

impl Frame {
    /// The wire bytes of each frame after `last_sent`: every frame without a seq, and the
    /// events a socket has not sent yet (a replay after a lost subscription repeats some).
    pub fn fresh(&self, last_sent: u64) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.0.marks.iter().filter_map(move |&(seq, end)| {
            let part = &self.0.wire[start..end];
            start = end;
            seq.is_none_or(|seq| seq > last_sent).then_some(part)
        })
    }

    /// The newest seq among the frames.
    pub fn last_seq(&self) -> Option<u64> {
        self.0.last_seq()
    }
}

/// Frames `text` as one unmasked text frame (a server's, RFC 6455 §5.2) onto `out`.
pub fn encode_text(out: &mut Vec<u8>, text: &str) {
    let len = text.len();
    out.reserve(len + 10);
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(text.as_bytes());
}

/// One stream's fan-out on this gateway.
pub struct StreamHub {
    pub info: Arc<StreamInfo>,
    tx: broadcast::Sender<Frame>,
    /// The newest event seq passed to the sockets: the seq of totals frames, and where a
    /// replay after a lost subscription starts.
    last_seq: AtomicU64,
    sockets: AtomicUsize,
    /// The last totals frame sent, so an unchanged one is not sent again.
    pub(super) last_totals: Mutex<Option<String>>,
}

impl StreamHub {
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Passes frames on. Each socket skips what it already sent (a replay after a lost
    /// subscription may repeat events), so nothing is dropped here.
    pub fn publish(&self, frames: Frames) {
        if frames.is_empty() {
            return;
        }
        if let Some(seq) = frames.last_seq() {
            self.last_seq.fetch_max(seq, Ordering::AcqRel);
        }
        let _ = self.tx.send(Frame(Arc::new(frames)));
    }

    /// Passes on one frame; `seq` for an event, `None` for a frame never replayed.
    pub fn publish_one(&self, seq: Option<u64>, text: &str) {
        let mut frames = Frames::default();
        frames.push(seq, text);
        self.publish(frames);
    }

    /// Starts a new hub's seq at the stream's seq read by its first socket's snapshot,
    /// so its totals frames carry the stream's latest seq from the start.
    pub fn seed_seq(&self, seq: u64) {
        let _ = self
            .last_seq
            .compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire);
    }
}

struct CampaignHubs {
    info: Arc<CampaignInfo>,
    streams: HashMap<String, Arc<StreamHub>>,
    /// Set once the Redis subscription of the campaign's channel is confirmed.
    subscribed: Arc<OnceCell<()>>,
}

/// Metric handles of the live paths, registered once: a per-frame lookup by name would
/// cost more than the frame.
pub struct LiveMetrics {
    pub open: metrics::Gauge,
    pub frames_sent: metrics::Counter,
    pub frames_dropped: metrics::Counter,
    pub closed_slow: metrics::Counter,
}

impl LiveMetrics {
    fn register() -> Self {
        Self {
            open: metrics::gauge!("livefund_ws_open"),
            frames_sent: metrics::counter!("livefund_ws_frames_sent_total"),
            frames_dropped: metrics::counter!("livefund_ws_frames_dropped_total"),
            closed_slow: metrics::counter!("livefund_ws_closed_slow_total"),
        }
    }
}

/// Every hub of this gateway, by campaign and stream.
pub struct Live {
    pub metrics: LiveMetrics,
    pub(super) redis: ConnectionManager,
    campaigns: Mutex<HashMap<String, CampaignHubs>>,
    commands: mpsc::UnboundedSender<Command>,
    dirty: Mutex<HashSet<String>>,
    pub(super) dirty_notify: Notify,
    queue: usize,
}

/// A socket's place in its stream's hub; leaving is dropping it.
pub struct Membership {
    pub hub: Arc<StreamHub>,
    pub rx: broadcast::Receiver<Frame>,
    live: Arc<Live>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.live.leave(&self.hub);
    }
}

/// Why a socket could not join its stream.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the live subscription failed: {0}")]
    Subscribe(String),
}

impl Live {
    /// `queue` is how many frames a stream's broadcast holds for a slow socket.
    pub fn new(
        redis: ConnectionManager,
        queue: usize,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let live = Arc::new(Self {
            metrics: LiveMetrics::register(),
            redis,
            campaigns: Mutex::new(HashMap::new()),
            commands,
            dirty: Mutex::new(HashSet::new()),
            dirty_notify: Notify::new(),
            queue: queue.max(16),
        });
        (live, rx)
    }

    /// Joins `stream`'s hub, creating it and subscribing its campaign's channel when it
    /// is the first here. Returns once the subscription is confirmed, so a snapshot read
    /// after this misses nothing.
    pub async fn join(self: &Arc<Self>, stream: &Arc<StreamInfo>) -> Result<Membership, JoinError> {
        let campaign = &stream.campaign;
        let (hub, subscribed, new_campaign) = {
            let mut campaigns = self
                .campaigns
                .lock()
                .map_err(|_| JoinError::Subscribe("poisoned".into()))?;
            let new_campaign = !campaigns.contains_key(campaign.slug.as_str());
            let entry = campaigns
                .entry(campaign.slug.to_string())
                .or_insert_with(|| CampaignHubs {
                    info: campaign.clone(),
                    streams: HashMap::new(),
                    subscribed: Arc::new(OnceCell::new()),
                });
            let hub = entry
                .streams
                .entry(stream.slug.to_string())
                .or_insert_with(|| {
                    Arc::new(StreamHub {
                        info: stream.clone(),
                        tx: broadcast::channel(self.queue).0,
                        last_seq: AtomicU64::new(0),
                        sockets: AtomicUsize::new(0),
                        last_totals: Mutex::new(None),
                    })
                })
                .clone();
            hub.sockets.fetch_add(1, Ordering::AcqRel);
            (hub, entry.subscribed.clone(), new_campaign)
        };
        let membership = Membership {
            rx: hub.tx.subscribe(),
            hub,
            live: self.clone(),
        };
        if new_campaign {
            metrics::gauge!("livefund_live_campaigns").increment(1.0);
        }
        let channel = campaign.keys.channel();
        let slug = campaign.slug.to_string();
        subscribed
            .get_or_try_init(|| async {
                let (ack, done) = oneshot::channel();
                self.commands
                    .send(Command::Subscribe {
                        channel,
                        campaign: slug,
                        ack,
                    })
                    .map_err(|_| JoinError::Subscribe("the subscriber has stopped".into()))?;
                done.await
                    .map_err(|_| JoinError::Subscribe("the subscriber has stopped".into()))?
                    .map_err(JoinError::Subscribe)
            })
            .await?;
        Ok(membership)
    }

    fn leave(&self, hub: &Arc<StreamHub>) {
        if hub.sockets.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let Ok(mut campaigns) = self.campaigns.lock() else {
            return;
        };
        let campaign = hub.info.campaign.slug.as_str();
        let Some(entry) = campaigns.get_mut(campaign) else {
            return;
        };
        // A socket may have joined again between the count reaching zero and the lock,
        // and the hub under this slug may be a newer one: remove only this one, idle.
        let slug = hub.info.slug.as_str();
        let this_one = entry.streams.get(slug).is_some_and(|h| Arc::ptr_eq(h, hub));
        if this_one && hub.sockets.load(Ordering::Acquire) == 0 {
            entry.streams.remove(slug);
        }
        if entry.streams.is_empty() {
            let channel = entry.info.keys.channel();
            campaigns.remove(campaign);
            metrics::gauge!("livefund_live_campaigns").decrement(1.0);
            let _ = self.commands.send(Command::Unsubscribe { channel });
        }
    }

    /// The hub of `stream` in `campaign`, if this gateway has one.
    pub(super) fn hub(&self, campaign: &str, stream: &str) -> Option<Arc<StreamHub>> {
        let campaigns = self.campaigns.lock().ok()?;
        campaigns.get(campaign)?.streams.get(stream).cloned()
    }

    /// Every hub of this gateway, grouped by campaign.
    pub(super) fn all(&self) -> Vec<(Arc<CampaignInfo>, Vec<Arc<StreamHub>>)> {
        let Ok(campaigns) = self.campaigns.lock() else {
            return Vec::new();
        };
        campaigns
            .values()
            .map(|c| (c.info.clone(), c.streams.values().cloned().collect()))
            .collect()
    }

    /// The hubs of one campaign, with its info.
    pub(super) fn campaign(
        &self,
        campaign: &str,
    ) -> Option<(Arc<CampaignInfo>, Vec<Arc<StreamHub>>)> {
        let campaigns = self.campaigns.lock().ok()?;
        let c = campaigns.get(campaign)?;
        Some((c.info.clone(), c.streams.values().cloned().collect()))
    }

    /// Notes that a campaign's totals changed; the coalescer sends them soon.
    pub(super) fn mark_dirty(&self, campaign: &str) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(campaign.to_owned());
        }
        self.dirty_notify.notify_one();
    }

    /// Marks every campaign with local sockets as changed.
    pub(super) fn mark_all_dirty(&self) {
        let names: Vec<String> = match self.campaigns.lock() {
            Ok(c) => c.keys().cloned().collect(),
            Err(_) => return,
        };
        for name in names {
            self.mark_dirty(&name);
        }
    }

    pub(super) fn take_dirty(&self) -> Vec<String> {
        self.dirty
            .lock()
            .map(|mut d| d.drain().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_only_the_frames_after_what_it_sent() {
        let mut frames = Frames::default();
        frames.push(Some(3), "three");
        frames.push(Some(4), "four");
        frames.push(None, "totals");
        frames.push(Some(5), "five");
        let frame = Frame(Arc::new(frames));
        assert_eq!(frame.last_seq(), Some(5));
        let fresh: Vec<&[u8]> = frame.fresh(4).collect();
        assert_eq!(fresh, vec![&b"\x81\x06totals"[..], &b"\x81\x04five"[..]]);
        assert_eq!(frame.fresh(0).count(), 4);
        assert_eq!(frame.fresh(9).count(), 1);
    }

    #[test]
    fn frame_lengths_use_the_short_medium_and_long_forms() {
        for (len, header) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut out = Vec::new();
            encode_text(&mut out, &"x".repeat(len));
            assert_eq!(out.len(), len + header, "{len}");
            assert_eq!(out[0], 0x81);
        }
        let mut out = Vec::new();
        encode_text(&mut out, &"x".repeat(300));
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
    }
}
