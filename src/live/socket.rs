//! One live socket: snapshot, replay since the client's last seq, then live frames,
//! pings, and the client's pledges. One task per socket keeps an idle socket small;
//! `select!` over the client, the stream's broadcast and the socket's pledge in flight
//! stands in for a reader/writer pair.
//!
//! Frames waiting in the broadcast are sent together: one write for all of them, so a
//! busy stream costs a socket one wake-up and one write per batch rather than per frame.
//! A pledge is answered while the socket goes on receiving frames.

use futures_util::future::{FutureExt, OptionFuture};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::Live;
use super::hub::{Frame, LiveMetrics, Membership};
use super::protocol::{ClientFrame, Reply, SnapshotFrame, reference_of};
use super::wire::LiveSocket;
use crate::catalog::StreamInfo;
use crate::config::Limits;
use crate::counters::snapshot;
use crate::domain::PledgeFields;
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

/// The most broadcast frames sent in one write.
const BATCH: usize = 64;

/// A pledge's reply on its way: the pledge script's round trip, then the reply's text.
type PledgeReply<'p> = Pin<Box<dyn Future<Output = String> + Send + 'p>>;

/// What a client's message asks of the socket.
enum Answer<'p> {
    /// A reply to send now.
    Now(String),
    /// A pledge, answered when its future is done.
    Later(PledgeReply<'p>),
    /// Over a rate limit.
    OverRate,
}

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
pub async fn run_socket(mut socket: LiveSocket, params: SocketParams) {
    params.live.metrics.open.increment(1.0);
    let close = serve(&mut socket, &params).await;
    if let Some((code, why)) = close {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: why.into(),
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
async fn serve(socket: &mut LiveSocket, p: &SocketParams) -> Close {
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

    /// Sends what is waiting, giving up (and counting the socket as slow) after the
    /// timeout. A socket whose kernel buffer has room is flushed without a timer.
    async fn flush(&self, socket: &mut LiveSocket) -> Result<(), Close> {
        let flushed = match socket.flush().now_or_never() {
            Some(done) => done,
            None => match tokio::time::timeout(self.send_timeout, socket.flush()).await {
                Ok(done) => done,
                Err(_) => {
                    self.metrics().closed_slow.increment(1);
                    return Err(None);
                }
            },
        };
        flushed.map_err(|_| None)
    }

    /// Sends one text frame now.
    async fn send(&self, socket: &mut LiveSocket, text: &str) -> Result<(), Close> {
        socket.get_mut().push_text(text);
        self.flush(socket).await?;
        self.metrics().frames_sent.increment(1);
        Ok(())
    }

    /// The snapshot, then the events after the client's `since`, in one write.
    async fn open(
        &mut self,
        socket: &mut LiveSocket,
        membership: &Membership,
    ) -> Result<(), Close> {
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
        let io = socket.get_mut();
        io.push_text(&first);
        for frame in &snap.replay {
            io.push_text(frame);
        }
        self.flush(socket).await?;
        self.metrics()
            .frames_sent
            .increment(1 + snap.replay.len() as u64);
        self.last_sent = snap.seq;
        membership.hub.seed_seq(snap.seq);
        Ok(())
    }

    /// Live frames, the client's messages and pings, until one side closes. While a
    /// pledge is in flight the client's next message waits; frames do not.
    async fn converse(&mut self, socket: &mut LiveSocket, mut membership: Membership) -> Close {
        let mut ping =
            tokio::time::interval(Duration::from_secs(self.p.limits.ws_ping_secs.max(1)));
        ping.reset();
        // Made once: a new wait on the shared token each turn would take its lock twice.
        let p = self.p;
        let shutdown = p.shutdown.cancelled();
        tokio::pin!(shutdown);
        let mut pledge: Option<PledgeReply<'p>> = None;
        loop {
            let step = tokio::select! {
                frame = membership.rx.recv() => self.frames(socket, &mut membership.rx, frame).await,
                Some(reply) = OptionFuture::from(pledge.as_mut()) => {
                    pledge = None;
                    self.send(socket, &reply).await
                }
                incoming = socket.next(), if pledge.is_none() => {
                    match Box::pin(self.incoming(socket, incoming)).await {
                        Ok(later) => {
                            pledge = later;
                            Ok(())
                        }
                        Err(close) => Err(close),
                    }
                }
                _ = ping.tick() => self.ping(socket).await,
                _ = &mut shutdown => Err(Some((GOING_AWAY, "server shutting down"))),
            };
            if let Err(close) = step {
                return close;
            }
        }
    }

    /// A frame of the stream's broadcast and those queued behind it, up to a batch, sent
    /// in one write. An event already sent (a replay after a lost subscription repeats
    /// some) is skipped.
    async fn frames(
        &mut self,
        socket: &mut LiveSocket,
        rx: &mut broadcast::Receiver<Frame>,
        first: Result<Frame, RecvError>,
    ) -> Result<(), Close> {
        let mut next = Some(first);
        let mut taken = 0;
        let mut sent = 0u64;
        while let Some(item) = next.take() {
            match item {
                Ok(frame) => {
                    let io = socket.get_mut();
                    for framed in frame.fresh(self.last_sent) {
                        io.push_framed(framed);
                        sent += 1;
                    }
                    self.last_sent = self.last_sent.max(frame.last_seq().unwrap_or(0));
                }
                Err(RecvError::Lagged(missed)) => {
                    self.metrics().frames_dropped.increment(missed);
                    self.metrics().closed_slow.increment(1);
                    return Err(Some((POLICY, "too slow: reconnect with since")));
                }
                Err(RecvError::Closed) => return Err(Some((GOING_AWAY, "stream closed"))),
            }
            taken += 1;
            if taken < BATCH {
                next = match rx.try_recv() {
                    Ok(frame) => Some(Ok(frame)),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
                    Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                };
            }
        }
        if sent > 0 {
            self.flush(socket).await?;
            self.metrics().frames_sent.increment(sent);
        }
        Ok(())
    }

    async fn ping(&mut self, socket: &mut LiveSocket) -> Result<(), Close> {
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

    /// A message from the client, answered within its rate limits; a pledge is returned
    /// to be answered when done.
    async fn incoming(
        &mut self,
        socket: &mut LiveSocket,
        incoming: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<Option<PledgeReply<'p>>, Close> {
        let text = match incoming {
            None | Some(Ok(Message::Close(_))) => return Err(None),
            Some(Err(e)) => return Err(too_big(&e).then_some((TOO_BIG, "frame too large"))),
            Some(Ok(Message::Pong(_))) => {
                self.unanswered_pings = 0;
                return Ok(None);
            }
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => return Ok(None),
            Some(Ok(Message::Text(text))) => Some(text),
            Some(Ok(Message::Binary(_))) => None,
        };
        let now = Instant::now();
        let answer = if !self.messages.allow(now, self.p.limits.ws_messages) {
            Answer::OverRate
        } else if let Some(text) = &text {
            self.answer(text, now)
        } else {
            let refused = Reply::Error {
                code: "invalid_request",
                message: "frames are JSON text",
                reference: None,
                field: None,
            };
            Answer::Now(refused.to_json())
        };
        match answer {
            Answer::Now(reply) => self.send(socket, &reply).await.map(|()| None),
            Answer::Later(pledge) => Ok(Some(pledge)),
            Answer::OverRate => {
                let text = text.as_ref().map(|t| t.as_str()).unwrap_or_default();
                self.strike(socket, text).await.map(|()| None)
            }
        }
    }

    /// Tells a client it is over its rate; closes it when it keeps on.
    async fn strike(&mut self, socket: &mut LiveSocket, text: &str) -> Result<(), Close> {
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
        self.send(socket, &reply.to_json()).await.map_err(|_| OVER)
    }

    /// What to do with one client message.
    fn answer(&mut self, text: &str, now: Instant) -> Answer<'p> {
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
                return Answer::Now(error.to_json());
            }
        };
        let fields = match frame {
            ClientFrame::Ping => return Answer::Now(Reply::Pong.to_json()),
            ClientFrame::Pledge(fields) => fields,
        };
        if !self.pledges.allow(now, self.p.limits.ws_pledges) {
            return Answer::OverRate;
        }
        let stream = &self.p.stream;
        if fields
            .stream
            .as_deref()
            .is_some_and(|s| s != stream.slug.as_str())
        {
            let error = Reply::Error {
                code: "invalid_request",
                message: "stream: this socket pledges to its own stream only",
                reference: Some(fields.idempotency_key.as_str()),
                field: None,
            };
            return Answer::Now(error.to_json());
        }
        Answer::Later(Box::pin(pledge(self.p, fields)))
    }
}

/// Takes one pledge and words the reply.
async fn pledge(p: &SocketParams, fields: PledgeFields) -> String {
    let reference = fields.idempotency_key.as_str();
    match p.intake.pledge(&p.stream, &fields).await {
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
    }
}

fn too_big(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Capacity(_))
}
