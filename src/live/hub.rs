//! The registry of this gateway's stream hubs, and joining and leaving them.

use axum::extract::ws::Utf8Bytes;
use redis::aio::ConnectionManager;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OnceCell, broadcast, mpsc, oneshot};

use super::subscriber::Command;
use crate::catalog::{CampaignInfo, StreamInfo};

/// One frame for every socket of a stream: serialized once, shared by reference.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event's seq (`gift`, `refund`, `milestone`); `None` for frames never replayed.
    pub seq: Option<u64>,
    pub text: Utf8Bytes,
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

    /// Passes an event on. Each socket skips what it already sent (a replay after a lost
    /// subscription may repeat events), so nothing is dropped here.
    pub fn publish_event(&self, seq: u64, text: Utf8Bytes) {
        self.last_seq.fetch_max(seq, Ordering::AcqRel);
        let _ = self.tx.send(Frame {
            seq: Some(seq),
            text,
        });
    }

    /// Starts a new hub's seq at the stream's seq read by its first socket's snapshot,
    /// so its totals frames carry the stream's latest seq from the start.
    pub fn seed_seq(&self, seq: u64) {
        let _ = self
            .last_seq
            .compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Passes on a frame that is never replayed (totals, test alerts).
    pub fn publish(&self, text: Utf8Bytes) {
        let _ = self.tx.send(Frame { seq: None, text });
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
