//! Edge mode: a stream published to an edge is pushed to an origin
//! (`edge.push_publishes`), so a publisher may use any node. The edge's
//! own players play the local publish; the push is a [`Sink`] of the
//! stream on its owner shard (the start: metadata, codec configs, GOP;
//! then every frame, in order), written to the origin over an RTMP
//! publish by `proto::rtmp::client`. A push that cannot keep up is closed
//! (`FullPolicy::Close`) and starts again, so the origin never gets a
//! stream with holes. Which origin and when to retry is `crate::edge`'s,
//! as for pulls; a push that gives up leaves the local publish alone.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use proto::rtmp::client::{ClientEvent, ClientSession, Output, StreamMode};

use super::pull::{connect, send, sleep_until, Edge, UPSTREAM_IDLE_TIMEOUT};
use super::Shard;
use crate::config::OriginChoice;
use crate::edge::{origin_order, Attempts, Step};
use crate::error::{ConnError, Deadline};
use crate::net::io::{read_some, READ_BUF_LEN};
use crate::stream::sink::{FullPolicy, Sink, SinkItem};
use crate::stream::{Signal, StreamKey};

/// Payload bytes a push may have queued for its origin before it is
/// closed and starts again (several seconds of a high-bitrate stream).
pub const PUSH_QUEUE_BYTES_MAX: usize = 16 << 20;

/// Stops the push when dropped (its publisher ended).
pub struct PushGuard(Rc<Signal>);

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.0.raise();
    }
}

/// Starts pushing `key` (published here by a client) to an origin, when
/// this node is an edge with `edge.push_publishes`; the push lasts as long
/// as the guard.
pub fn start(shard: &Rc<Shard>, key: &StreamKey) -> Option<PushGuard> {
    shard.edge.as_ref()?;
    if !shard.is_edge() || !shard.config().edge.push_publishes {
        return None;
    }
    let stop = Rc::new(Signal::default());
    glommio::spawn_local(run(shard.clone(), key.clone(), stop.clone())).detach();
    Some(PushGuard(stop))
}

async fn run(shard: Rc<Shard>, key: StreamKey, stop: Rc<Signal>) {
    let Some(edge) = shard.edge.as_ref() else {
        return;
    };
    // A push goes where pulls of the key look first: the hash's order,
    // whatever `edge.lb` says for pulls, so every edge pushes a stream to
    // the same origin.
    let order = origin_order(&edge.origins, &key, OriginChoice::Hash, 0);
    let mut attempts = Attempts::new(edge.policy, order, edge.origins.len());
    loop {
        if stop.is_raised() {
            break;
        }
        match attempts.next(Instant::now()) {
            Step::GiveUp => {
                log::warn!(
                    "push gave up key={key} (edge.retry_max_ms): the stream stays on this edge only"
                );
                return;
            }
            Step::WaitUntil(at) => {
                sleep_until(at, &stop).await;
            }
            Step::Try(i) => {
                let origin = edge.origins[i];
                match attempt(&shard, edge, &key, origin, &stop, &mut attempts).await {
                    Ok(()) => break,
                    Err(why) => {
                        attempts.failed(i, Instant::now());
                        log::warn!("push failed key={key} origin={origin} error={why}");
                    }
                }
            }
        }
    }
    log::info!("push stop key={key}");
}

/// What woke the push.
enum Next {
    Read(Result<Option<usize>, ConnError>),
    Item(SinkItem),
    Stop,
}

/// Puts one sink item in the session's output.
fn encode(session: &mut ClientSession, item: SinkItem) -> Result<(), String> {
    match item {
        SinkItem::Frame(f) => session
            .send_frame(&f)
            .map_err(|e| format!("frame not sent: {e}")),
        SinkItem::Metadata(m) => session
            .send_metadata(&m)
            .map_err(|e| format!("metadata not sent: {e}")),
        // The local publisher changed or left: the guard stops the push
        // when it ends.
        SinkItem::Published | SinkItem::Unpublished => Ok(()),
    }
}

/// One connection to `origin`: publishes the stream until the push is
/// stopped (Ok) or fails (Err, with why).
async fn attempt(
    shard: &Rc<Shard>,
    edge: &Edge,
    key: &StreamKey,
    origin: SocketAddr,
    stop: &Rc<Signal>,
    attempts: &mut Attempts,
) -> Result<(), String> {
    let (mut conn, mut session) = connect(shard, edge, key, origin, StreamMode::Publish).await?;
    let mut buf = vec![0u8; READ_BUF_LEN];
    let mut sink: Option<Rc<Sink>> = None;
    let result: Result<(), String> = async {
        loop {
            while let Some(out) = session.poll_output() {
                match out {
                    Output::Transmit(b) => send(&mut conn, &b, origin).await?,
                    Output::Event(ClientEvent::PublishStarted { .. }) => {
                        attempts.succeeded();
                        let s = Rc::new(Sink::new(
                            shard.conns.next_id(),
                            "push",
                            FullPolicy::Close,
                            PUSH_QUEUE_BYTES_MAX,
                        ));
                        shard.with_table(|t| t.attach_sink(key, s.clone(), Instant::now()));
                        log::info!(
                            "push publishing key={key} origin={origin} shard={}",
                            shard.id()
                        );
                        sink = Some(s);
                    }
                    Output::Event(ClientEvent::Refused(s)) => {
                        return Err(format!(
                            "{origin} refused the publish: {} {}",
                            s.code, s.description
                        ))
                    }
                    Output::Event(ClientEvent::Status(s)) if s.level == "error" => {
                        return Err(format!("{origin}: {} {}", s.code, s.description))
                    }
                    Output::Event(_) => {}
                }
            }
            let next = {
                let deadline = Deadline::after(
                    UPSTREAM_IDLE_TIMEOUT,
                    "UPSTREAM_IDLE_TIMEOUT",
                    "the origin's answer to the publish",
                );
                // Until the publish starts, only the origin's answer counts
                // (and has a deadline); then the origin may be silent.
                let read = async {
                    Next::Read(
                        read_some(
                            &mut conn,
                            &mut buf,
                            stop,
                            sink.is_none().then_some(deadline),
                        )
                        .await,
                    )
                };
                let item = async {
                    match &sink {
                        Some(s) => {
                            let item = futures_lite::future::poll_fn(|cx| {
                                s.queue.borrow_mut().poll_next(cx)
                            });
                            futures_lite::future::or(async { Next::Item(item.await) }, async {
                                s.close.wait().await;
                                Next::Stop
                            })
                            .await
                        }
                        None => std::future::pending().await,
                    }
                };
                futures_lite::future::or(item, read).await
            };
            match next {
                Next::Read(Ok(Some(n))) => session
                    .handle_input(&buf[..n])
                    .map_err(|e| format!("from {origin}: {e}"))?,
                Next::Read(Ok(None)) if stop.is_raised() => {
                    session.close();
                    if let Some(b) = session.take_transmit() {
                        let _ = send(&mut conn, &b, origin).await;
                    }
                    return Ok(());
                }
                Next::Read(Ok(None)) => return Err(format!("{origin} closed the connection")),
                Next::Read(Err(e)) => return Err(format!("from {origin}: {e}")),
                Next::Stop => {
                    return Err(format!(
                        "the push fell {PUSH_QUEUE_BYTES_MAX} bytes behind (PUSH_QUEUE_BYTES_MAX)"
                    ))
                }
                Next::Item(item) => {
                    // Everything queued goes out in one write (the
                    // session batches its output until it is polled).
                    encode(&mut session, item)?;
                    if let Some(s) = &sink {
                        while let Some(more) = s.queue.borrow_mut().pop() {
                            encode(&mut session, more)?;
                        }
                    }
                }
            }
        }
    }
    .await;
    if let Some(s) = sink {
        shard.with_table(|t| t.detach_sink(key, s.id, Instant::now()));
    }
    result
}
