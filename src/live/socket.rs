//! One live socket: snapshot, replay since the client's last seq, then live frames,
//! pings, and the client's pledges. One task per socket keeps an idle socket small;
//! `select!` over the client and the stream's broadcast stands in for a reader/writer
//! pair.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Live;
use super::hub::{Frame, LiveMetrics, Membership};
use super::protocol::{ClientFrame, Reply, SnapshotFrame, reference_of};
use crate::catalog::StreamInfo;
use crate::config::Limits;
use crate::counters::snapshot;
use crate::ledger::Ledger;
use crate::pledges::{Intake, Window};

/// Recent gifts and top donors in a snapshot.
const RECENT: usize = 10;
const TOP: usize = 10;
/// Over-limit messages a client may send, once told, before it is closed.
const STRIKES: u32 = 5;

/// How long a new socket waits for its stream's subscription.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Close codes (RFC 6455).
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TOO_BIG: u16 = 1009;
const INTERNAL: u16 = 1011;

/// Why a socket is closed: the code and reason to send, or nothing (the client left).
type Close = Option<(u16, &'static str)>;

const UNAVAILABLE: Close = Some((INTERNAL, "live updates are unavailable"));

/// What a socket needs besides the socket itself.
pub struct SocketParams {
    pub live: Arc<Live>,
    pub intake: Intake,
    pub ledger: Ledger,
    pub limits: Limits,
    pub stream: Arc<StreamInfo>,
    pub since: Option<u64>,
    pub shutdown: CancellationToken,
}

/// Serves one socket until either side closes it.
pub async fn run_socket(mut socket: WebSocket, params: SocketParams) {
    params.live.metrics.open.increment(1.0);
    let close = serve(&mut socket, &params).await;
    if let Some((code, why)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(why),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
    params.live.metrics.open.decrement(1.0);
}

/// Joins the stream, opens with the snapshot, then converses until one side closes.
///
/// The steps that run once or now and then (joining, the snapshot, a client's message)
/// are boxed: a task's future is as large as its largest step, and it lives as long as
/// the socket, so only the small listening loop stays inline.
async fn serve(socket: &mut WebSocket, p: &SocketParams) -> Close {
    let membership = match Box::pin(join(p)).await {
        Ok(membership) => membership,
        Err(close) => return close,
    };
    let mut talk = Conversation::new(p);
    match Box::pin(talk.open(socket, &membership)).await {
        Ok(()) => talk.converse(socket, membership).await,
        Err(close) => close,
    }
}

/// Joins the stream's hub. While Redis is away the subscription cannot be confirmed: the
/// client is told and closed (it reconnects with `since`) rather than left on a silent
/// socket.
async fn join(p: &SocketParams) -> Result<Membership, Close> {
    match tokio::time::timeout(JOIN_TIMEOUT, p.live.join(&p.stream)).await {
        Ok(Ok(membership)) => Ok(membership),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not join a live stream");
            Err(UNAVAILABLE)
        }
        Err(_) => {
            tracing::warn!("live subscription not confirmed in time");
            Err(UNAVAILABLE)
        }
    }
}

/// One socket's state while it is open.
struct Conversation<'p> {
    p: &'p SocketParams,
    send_timeout: Duration,
    /// The newest event seq sent: an event at or below it is not sent again.
    last_sent: u64,
    unanswered_pings: u32,
    messages: Window,
    pledges: Window,
    strikes: u32,
}

impl<'p> Conversation<'p> {
    fn new(p: &'p SocketParams) -> Self {
        let now = Instant::now();
        Conversation {
            p,
            send_timeout: Duration::from_millis(p.limits.ws_send_timeout_ms),
            last_sent: 0,
            unanswered_pings: 0,
            messages: Window::new(now),
            pledges: Window::new(now),
            strikes: 0,
        }
    }

    fn metrics(&self) -> &LiveMetrics {
        &self.p.live.metrics
    }

    /// Sends one frame, giving up (and counting the socket as slow) after the timeout.
    async fn send(&self, socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), Close> {
        match tokio::time::timeout(self.send_timeout, socket.send(Message::Text(text))).await {
            Ok(Ok(())) => {
                self.metrics().frames_sent.increment(1);
                Ok(())
            }
            Ok(Err(_)) => Err(None),
            Err(_) => {
                self.metrics().closed_slow.increment(1);
                Err(None)
            }
        }
    }

    /// The snapshot, then the events after the client's `since`.
    async fn open(&mut self, socket: &mut WebSocket, membership: &Membership) -> Result<(), Close> {
        let (stream, campaign) = (&self.p.stream, &self.p.stream.campaign);
        if let Err(e) = self.p.ledger.ensure_built(&campaign.slug).await {
            tracing::warn!(error = %e, "could not rebuild lost counters");
            return Err(UNAVAILABLE);
        }
        let goals = (campaign.goal, stream.goal);
        let mut redis = self.p.live.redis.clone();
        let snap = snapshot(
            &mut redis,
            &campaign.keys,
            &stream.slug,
            goals,
            self.p.since,
            RECENT,
            TOP,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not read a live snapshot");
            UNAVAILABLE
        })?;
        let recent: Vec<Box<RawValue>> = snap
            .recent
            .iter()
            .filter_map(|f| RawValue::from_string(f.clone()).ok())
            .collect();
        let campaign_totals = snap
            .campaign
            .clone()
            .with_matching_cap(campaign.matching_cap);
        let first = SnapshotFrame::new(
            snap.seq,
            &snap.stream,
            &campaign_totals,
            &recent,
            &snap.top,
            snap.gap,
        );
        let first = serde_json::to_string(&first).map_err(|_| UNAVAILABLE)?;
        self.send(socket, first.into()).await?;
        for frame in snap.replay {
            self.send(socket, frame.into()).await?;
        }
        self.last_sent = snap.seq;
        membership.hub.seed_seq(snap.seq);
        Ok(())
    }

    /// Live frames, the client's messages and pings, until one side closes.
    async fn converse(&mut self, socket: &mut WebSocket, mut membership: Membership) -> Close {
        let mut ping =
            tokio::time::interval(Duration::from_secs(self.p.limits.ws_ping_secs.max(1)));
        ping.reset();
        loop {
            let step = tokio::select! {
                frame = membership.rx.recv() => self.frame(socket, frame).await,
                incoming = socket.recv() => Box::pin(self.incoming(socket, incoming)).await,
                _ = ping.tick() => self.ping(socket).await,
                _ = self.p.shutdown.cancelled() => Err(Some((GOING_AWAY, "server shutting down"))),
            };
            if let Err(close) = step {
                return close;
            }
        }
    }

    /// A frame of the stream's broadcast; an event already sent (a replay after a lost
    /// subscription repeats some) is skipped.
    async fn frame(
        &mut self,
        socket: &mut WebSocket,
        frame: Result<Frame, RecvError>,
    ) -> Result<(), Close> {
        match frame {
            Ok(frame) => {
                if let Some(seq) = frame.seq {
                    if seq <= self.last_sent {
                        return Ok(());
                    }
                    self.last_sent = seq;
                }
                self.send(socket, frame.text).await
            }
            Err(RecvError::Lagged(missed)) => {
                self.metrics().frames_dropped.increment(missed);
                self.metrics().closed_slow.increment(1);
                Err(Some((POLICY, "too slow: reconnect with since")))
            }
            Err(RecvError::Closed) => Err(Some((GOING_AWAY, "stream closed"))),
        }
    }

    async fn ping(&mut self, socket: &mut WebSocket) -> Result<(), Close> {
        if self.unanswered_pings >= 2 {
            return Err(Some((POLICY, "no pong")));
        }
        self.unanswered_pings += 1;
        let sent = tokio::time::timeout(
            self.send_timeout,
            socket.send(Message::Ping(Default::default())),
        )
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(None),
        }
    }

    /// A message from the client, answered within its rate limits.
    async fn incoming(
        &mut self,
        socket: &mut WebSocket,
        incoming: Option<Result<Message, axum::Error>>,
    ) -> Result<(), Close> {
        let text = match incoming {
            None | Some(Ok(Message::Close(_))) => return Err(None),
            Some(Err(e)) => return Err(too_big(e).then_some((TOO_BIG, "frame too large"))),
            Some(Ok(Message::Pong(_))) => {
                self.unanswered_pings = 0;
                return Ok(());
            }
            Some(Ok(Message::Ping(_))) => return Ok(()),
            Some(Ok(Message::Text(text))) => Some(text),
            Some(Ok(Message::Binary(_))) => None,
        };
        let now = Instant::now();
        // `None`: over a rate limit.
        let reply = if !self.messages.allow(now, self.p.limits.ws_messages) {
            None
        } else if let Some(text) = &text {
            self.answer(text, now).await
        } else {
            let refused = Reply::Error {
                code: "invalid_request",
                message: "frames are JSON text",
                reference: None,
                field: None,
            };
            Some(refused.to_json())
        };
        match reply {
            Some(reply) => self.send(socket, reply.into()).await,
            None => {
                self.strike(socket, text.as_deref().unwrap_or_default())
                    .await
            }
        }
    }

    /// Tells a client it is over its rate; closes it when it keeps on.
    async fn strike(&mut self, socket: &mut WebSocket, text: &str) -> Result<(), Close> {
        const OVER: Close = Some((POLICY, "rate limit exceeded"));
        self.strikes += 1;
        metrics::counter!("livefund_pledges_refused_total", "code" => "rate_limited").increment(1);
        if self.strikes > STRIKES {
            return Err(OVER);
        }
        let reference = reference_of(text);
        let reply = Reply::Error {
            code: "rate_limited",
            message: "too many messages: slow down",
            reference: reference.as_deref(),
            field: None,
        };
        self.send(socket, reply.to_json().into())
            .await
            .map_err(|_| OVER)
    }

    /// The reply to one client message, or `None` when a pledge is over its rate.
    async fn answer(&mut self, text: &str, now: Instant) -> Option<String> {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                let reference = reference_of(text);
                let message = format!("not a valid client frame: {e}");
                let error = Reply::Error {
                    code: "invalid_request",
                    message: &message,
                    reference: reference.as_deref(),
                    field: None,
                };
                return Some(error.to_json());
            }
        };
        let fields = match frame {
            ClientFrame::Ping => return Some(Reply::Pong.to_json()),
            ClientFrame::Pledge(fields) => fields,
        };
        if !self.pledges.allow(now, self.p.limits.ws_pledges) {
            return None;
        }
        let reference = fields.idempotency_key.as_str();
        let stream = &self.p.stream;
        if fields
            .stream
            .as_deref()
            .is_some_and(|s| s != stream.slug.as_str())
        {
            let error = Reply::Error {
                code: "invalid_request",
                message: "stream: this socket pledges to its own stream only",
                reference: Some(reference),
                field: None,
            };
            return Some(error.to_json());
        }
        Some(match self.p.intake.pledge(stream, &fields).await {
            Ok(accepted) => Reply::PledgeAccepted {
                reference,
                pledge_id: &accepted.pledge_id,
                checkout_url: &accepted.checkout_url,
                expires_at: accepted.expires_at,
            }
            .to_json(),
            Err(e) => {
                let message = e.to_string();
                Reply::Error {
                    code: e.code(),
                    message: &message,
                    reference: Some(reference),
                    field: e.field(),
                }
                .to_json()
            }
        })
    }
}

fn too_big(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}
