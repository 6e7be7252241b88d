//! The one Redis pub/sub connection of this gateway: it subscribes to the channels of
//! campaigns with local sockets and routes each message to its stream hub. After a lost
//! connection it resubscribes and replays from the streams' logs what it missed.

use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Live;
use super::hub::{Frames, StreamHub};
use crate::counters::channel::Message;

/// What the hubs ask of the subscriber.
pub enum Command {
    Subscribe {
        channel: String,
        campaign: String,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Unsubscribe {
        channel: String,
    },
}

/// The most messages passed on together.
const BATCH: usize = 256;

/// Entries of a stream's log: id and field/value pairs.
type LogEntries = Vec<(String, Vec<(String, String)>)>;

#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// Runs until `shutdown`, reconnecting with a short backoff when Redis goes away.
pub async fn run_subscriber(
    client: redis::Client,
    live: Arc<Live>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    // channel → campaign slug, for every channel that should be subscribed.
    let mut wanted: HashMap<String, String> = HashMap::new();
    let mut first = true;
    loop {
        let connected = tokio::select! {
            c = client.get_async_pubsub() => c,
            _ = shutdown.cancelled() => return,
        };
        let pubsub = match connected {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "live subscription: cannot reach Redis; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        let (mut sink, mut messages) = pubsub.split();
        let mut healthy = true;
        for channel in wanted.keys() {
            if sink.subscribe(channel).await.is_err() {
                healthy = false;
                break;
            }
        }
        if !healthy {
            continue;
        }
        if !first {
            tracing::info!("live subscription restored; replaying missed events");
            resync(&live).await;
        }
        first = false;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Subscribe { channel, campaign, ack }) => {
                        let result = sink.subscribe(&channel).await.map_err(|e| e.to_string());
                        let failed = result.is_err();
                        wanted.insert(channel, campaign);
                        let _ = ack.send(result);
                        if failed { break; }
                    }
                    Some(Command::Unsubscribe { channel }) => {
                        wanted.remove(&channel);
                        if sink.unsubscribe(&channel).await.is_err() { break; }
                    }
                    None => return,
                },
                message = messages.next() => {
                    if !pass_on(&live, &wanted, message, &mut messages) {
                        tracing::warn!("live subscription lost; reconnecting");
                        break;
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Passes on `first` and the messages already waiting behind it (up to a batch), one
/// batch per hub. `false` when the subscription is gone.
fn pass_on(
    live: &Live,
    wanted: &HashMap<String, String>,
    first: Option<redis::Msg>,
    messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
) -> bool {
    let mut batch = Batch::default();
    let mut next = first;
    let mut taken = 0;
    while let Some(message) = next.take() {
        let channel = message.get_channel_name();
        if let (Some(campaign), Ok(payload)) =
            (wanted.get(channel), message.get_payload::<String>())
        {
            batch.dispatch(live, campaign, &payload);
        }
        taken += 1;
        if taken < BATCH {
            next = messages.next().now_or_never().flatten();
        }
    }
    batch.publish();
    taken > 0
}

/// Frames for the hubs, gathered from the messages that arrived together.
#[derive(Default)]
struct Batch {
    hubs: Vec<(Arc<StreamHub>, Frames)>,
}

impl Batch {
    /// Routes one message: `T <stream>` marks totals changed; `E <stream> <frame>` is an
    /// event frame, passed on as is; `A <stream> <frame>` is an alert never replayed.
    fn dispatch(&mut self, live: &Live, campaign: &str, payload: &str) {
        match Message::decode(payload) {
            Some(Message::Totals { .. }) => live.mark_dirty(campaign),
            Some(Message::Event { stream, frame }) => {
                match serde_json::from_str::<SeqOnly>(frame) {
                    Ok(SeqOnly { seq }) => self.push(live, campaign, stream, Some(seq), frame),
                    Err(e) => tracing::warn!(error = %e, "live event without a seq"),
                }
            }
            Some(Message::Alert { stream, frame }) => {
                self.push(live, campaign, stream, None, frame)
            }
            None => tracing::warn!(payload, "unrecognised live message"),
        }
    }

    fn push(&mut self, live: &Live, campaign: &str, stream: &str, seq: Option<u64>, text: &str) {
        let known = self.hubs.iter().position(|(hub, _)| {
            hub.info.slug.as_str() == stream && hub.info.campaign.slug.as_str() == campaign
        });
        let index = match known {
            Some(index) => index,
            None => {
                let Some(hub) = live.hub(campaign, stream) else {
                    return;
                };
                self.hubs.push((hub, Frames::default()));
                self.hubs.len() - 1
            }
        };
        self.hubs[index].1.push(seq, text);
    }

    fn publish(self) {
        for (hub, frames) in self.hubs {
            hub.publish(frames);
        }
    }
}

/// After a lost subscription: every hub reads the events it missed from its stream's
/// log, and every campaign's totals are sent again.
async fn resync(live: &Live) {
    let mut redis = live.redis.clone();
    for (campaign, hubs) in live.all() {
        for hub in hubs {
            let from = format!("{}-0", hub.last_seq() + 1);
            let entries: redis::RedisResult<LogEntries> = redis::cmd("XRANGE")
                .arg(campaign.keys.stream_log(&hub.info.slug))
                .arg(from)
                .arg("+")
                .query_async(&mut redis)
                .await;
            let Ok(entries) = entries else { continue };
            let mut frames = Frames::default();
            for (id, fields) in entries {
                let seq = id.split('-').next().and_then(|s| s.parse::<u64>().ok());
                let frame = fields.into_iter().find(|(k, _)| k == "f").map(|(_, v)| v);
                if let (Some(seq), Some(frame)) = (seq, frame) {
                    frames.push(Some(seq), &frame);
                }
            }
            hub.publish(frames);
        }
    }
    live.mark_all_dirty();
}
