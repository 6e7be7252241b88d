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
use super::hub::LiveMetrics;
use super::protocol::{ClientFrame, Reply, SnapshotFrame, reference_of};
use crate::AppState;
use crate::catalog::StreamInfo;
use crate::counters::snapshot;
use crate::pledges::{self, Window};

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

/// What a socket needs besides the socket itself.
pub struct SocketParams {
    pub state: AppState,
    pub live: Arc<Live>,
    pub stream: Arc<StreamInfo>,
    pub since: Option<u64>,
    pub shutdown: CancellationToken,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

/// Serves one socket until either side closes it.
pub async fn run_socket(mut socket: WebSocket, params: SocketParams) {
    params.live.metrics.open.increment(1.0);
    let reason = serve(&mut socket, &params).await;
    if let Some((code, why)) = reason {
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

/// Sends one frame, giving up (and counting the socket as slow) after `timeout`.
async fn send(
    socket: &mut WebSocket,
    text: Utf8Bytes,
    timeout: Duration,
    m: &LiveMetrics,
) -> Result<(), ()> {
    match tokio::time::timeout(timeout, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => {
            m.frames_sent.increment(1);
            Ok(())
        }
        Ok(Err(_)) => Err(()),
        Err(_) => {
            m.closed_slow.increment(1);
            Err(())
        }
    }
}

/// Returns the close frame to send, if any.
async fn serve(socket: &mut WebSocket, p: &SocketParams) -> Option<(u16, &'static str)> {
    let limits = &p.state.config.limits;
    let m = &p.live.metrics;
    let send_timeout = Duration::from_millis(limits.ws_send_timeout_ms);
    // While Redis is away the subscription cannot be confirmed: the client is told and
    // closed (it reconnects with `since`) rather than left on a silent socket.
    let joined = tokio::time::timeout(JOIN_TIMEOUT, p.live.join(&p.stream)).await;
    let mut membership = match joined {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not join a live stream");
            return Some((INTERNAL, "live updates are unavailable"));
        }
        Err(_) => {
            tracing::warn!("live subscription not confirmed in time");
            return Some((INTERNAL, "live updates are unavailable"));
        }
    };
    let campaign = &p.stream.campaign;
    let mut redis = p.state.redis.clone();
    let state = &p.state;
    if let Err(e) =
        crate::ledger::ensure_built(&state.db, &mut redis, &state.keys, &campaign.slug).await
    {
        tracing::warn!(error = %e, "could not rebuild lost counters");
        return Some((INTERNAL, "live updates are unavailable"));
    }
    let snap = match snapshot(
        &mut redis,
        &campaign.keys,
        &p.stream.slug,
        (campaign.goal, p.stream.goal),
        p.since,
        RECENT,
        TOP,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read a live snapshot");
            return Some((INTERNAL, "live updates are unavailable"));
        }
    };
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
    let first = serde_json::to_string(&first).unwrap_or_default();
    send(socket, first.into(), send_timeout, m).await.ok()?;
    for frame in snap.replay {
        send(socket, frame.into(), send_timeout, m).await.ok()?;
    }
    let mut last_sent = snap.seq;
    membership.hub.seed_seq(snap.seq);

    let mut ping = tokio::time::interval(Duration::from_secs(limits.ws_ping_secs.max(1)));
    ping.reset();
    let mut unanswered_pings = 0u32;
    let now = Instant::now();
    let (mut messages, mut pledges, mut strikes) = (Window::new(now), Window::new(now), 0u32);

    loop {
        tokio::select! {
            frame = membership.rx.recv() => match frame {
                Ok(frame) => {
                    if let Some(seq) = frame.seq {
                        if seq <= last_sent { continue; }
                        last_sent = seq;
                    }
                    send(socket, frame.text, send_timeout, m).await.ok()?;
                }
                Err(RecvError::Lagged(missed)) => {
                    m.frames_dropped.increment(missed);
                    m.closed_slow.increment(1);
                    return Some((POLICY, "too slow: reconnect with since"));
                }
                Err(RecvError::Closed) => return Some((GOING_AWAY, "stream closed")),
            },
            incoming = socket.recv() => {
                let message = match incoming {
                    None => return None,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return too_big(e).then_some((TOO_BIG, "frame too large")),
                };
                let text = match message {
                    Message::Text(text) => Some(text),
                    Message::Binary(_) => None,
                    Message::Pong(_) => { unanswered_pings = 0; continue; }
                    Message::Ping(_) => continue,
                    Message::Close(_) => return None,
                };
                let now = Instant::now();
                // `None`: over a rate limit.
                let reply = if !messages.allow(now, limits.ws_messages) {
                    None
                } else if let Some(text) = &text {
                    answer(p, text, &mut pledges, now).await
                } else {
                    let refused = Reply::Error {
                        code: "invalid_request",
                        message: "frames are JSON text",
                        reference: None,
                    };
                    Some(refused.to_json())
                };
                match reply {
                    Some(reply) => send(socket, reply.into(), send_timeout, m).await.ok()?,
                    None => {
                        let text = text.as_deref().unwrap_or_default();
                        if let Flow::Close(code, why) = strike(socket, &mut strikes, text, send_timeout, m).await {
                            return Some((code, why));
                        }
                    }
                }
            },
            _ = ping.tick() => {
                if unanswered_pings >= 2 {
                    return Some((POLICY, "no pong"));
                }
                unanswered_pings += 1;
                let sent = tokio::time::timeout(send_timeout, socket.send(Message::Ping(Default::default()))).await;
                if !matches!(sent, Ok(Ok(()))) { return None; }
            },
            _ = p.shutdown.cancelled() => return Some((GOING_AWAY, "server shutting down")),
        }
    }
}

/// Tells a client it is over its rate; closes it when it keeps on.
async fn strike(
    socket: &mut WebSocket,
    strikes: &mut u32,
    text: &str,
    timeout: Duration,
    m: &LiveMetrics,
) -> Flow {
    *strikes += 1;
    metrics::counter!("livefund_pledges_refused_total", "code" => "rate_limited").increment(1);
    if *strikes > STRIKES {
        return Flow::Close(POLICY, "rate limit exceeded");
    }
    let reference = reference_of(text);
    let reply = Reply::Error {
        code: "rate_limited",
        message: "too many messages: slow down",
        reference: reference.as_deref(),
    };
    match send(socket, reply.to_json().into(), timeout, m).await {
        Ok(()) => Flow::Continue,
        Err(()) => Flow::Close(POLICY, "rate limit exceeded"),
    }
}

fn too_big(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// The reply to one client message, or `None` when a pledge is over its rate.
async fn answer(
    p: &SocketParams,
    text: &str,
    pledges: &mut Window,
    now: Instant,
) -> Option<String> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            let reference = reference_of(text);
            let message = format!("not a valid client frame: {e}");
            return Some(
                Reply::Error {
                    code: "invalid_request",
                    message: &message,
                    reference: reference.as_deref(),
                }
                .to_json(),
            );
        }
    };
    let fields = match frame {
        ClientFrame::Ping => return Some(Reply::Pong.to_json()),
        ClientFrame::Pledge(fields) => fields,
    };
    if !pledges.allow(now, p.state.config.limits.ws_pledges) {
        return None;
    }
    let reference = fields.idempotency_key.as_str();
    if fields
        .stream
        .as_deref()
        .is_some_and(|s| s != p.stream.slug.as_str())
    {
        return Some(
            Reply::Error {
                code: "invalid_request",
                message: "stream: this socket pledges to its own stream only",
                reference: Some(reference),
            }
            .to_json(),
        );
    }
    Some(match pledges::pledge(&p.state, &p.stream, &fields).await {
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
            }
            .to_json()
        }
    })
}
