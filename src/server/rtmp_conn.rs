//! The RTMP session driver: runs the sans-IO `ServerSession` on a
//! [`Transport`] until the client publishes or plays, asks for the decision
//! ([`Shard::decide`]) before any media byte, then serves the publisher or
//! the player.
//!
//! A player stays on the shard that accepted it. A publisher whose stream
//! another shard owns is handed to that shard (fd, session and counters in
//! one message).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use super::decide::{Action, Ask};
use super::player::{drive_player, log_close, InputResult, GOODBYE_TIMEOUT};
use super::{PublisherHandoff, Shard, ShardMsg};
use crate::error::{ConnError, Deadline, Refusal};
use crate::metrics::Protocol;
use crate::net::io::{read_some, write_all, READ_BUF_LEN, WRITE_TIMEOUT};
use crate::net::{ConnSlot, ConnWhat, Registered, Transport};
use crate::stream::{MediaFilter, Player, PlayerFormat, StreamEvent, StreamKey};
use proto::rtmp::session::{Output, ServerSession, SessionEvent, StreamRequest};

/// What a connection turned out to be.
enum Intent {
    Publish(StreamRequest),
    Play(StreamRequest),
}

/// Serves an RTMP connection whose first bytes (`first`) were read.
pub async fn run(
    shard: Rc<Shard>,
    mut conn: Transport,
    first: Vec<u8>,
    mut slot: ConnSlot,
    reg: Registered,
    deadline: Deadline,
) {
    let peer = reg.state.peer;
    reg.set_what(ConnWhat::Rtmp);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ reg.id.rotate_left(32);
    let mut session = ServerSession::new(shard.session_config(), seed, 0);
    let intent = match async {
        session.handle_input(&first)?;
        drop(first);
        // Boxed: a player or publisher keeps none of the set-up's state.
        Box::pin(until_publish_or_play(
            &shard,
            &mut conn,
            &mut session,
            &mut slot,
            &reg,
            deadline,
        ))
        .await
    }
    .await
    {
        Ok(Some(intent)) => intent,
        Ok(None) => {
            log_close(peer, None, &slot, None);
            return;
        }
        Err(e) => {
            log::warn!("peer={peer} blame={:?} error={e}", e.blame());
            log_close(peer, None, &slot, None);
            return;
        }
    };
    let (req, action) = match intent {
        Intent::Play(req) => (req, Action::Play),
        Intent::Publish(req) => (req, Action::Publish),
    };
    let key = shard.stream_key(&req);
    let protocol = match action {
        Action::Play => Protocol::RtmpPlay,
        Action::Publish => Protocol::RtmpPublish,
    };
    let ask = Ask {
        action,
        key: &key,
        protocol,
        peer,
        query: &req.query,
        client_id: reg.id,
        tc_url: req.tc_url.as_deref(),
    };
    // A player or publisher gets a task of its own and this one ends: a
    // task keeps the memory of its largest state while it lives, and the
    // set-up's states are larger than a player needs.
    let decided = async {
        Box::pin(shard.decide(&ask)).await?;
        // A play the node must answer only once the stream is live (an
        // edge's pull, an origin asked by an edge).
        match shard
            .rtmp_play_wait(&req.query)
            .filter(|_| action == Action::Play)
        {
            Some(wait) if !shard.wait_live(&key, wait, &reg.state.close).await => {
                Err(Refusal::stream(format!(
                    "{key} is not published here (waited {} ms)",
                    wait.as_millis()
                )))
            }
            _ => Ok(()),
        }
    };
    if let Err(refusal) = decided.await {
        Box::pin(refuse(
            &mut conn,
            &mut session,
            &mut slot,
            &key,
            action,
            &refusal,
            &reg,
        ))
        .await;
        return;
    }
    match action {
        Action::Play => {
            glommio::spawn_local(run_player(shard, conn, session, req, key, slot, reg)).detach();
        }
        Action::Publish => {
            let owner = shard.ctx.owner_of(key.as_bytes());
            if owner == shard.id() {
                let hook_client_id = reg.id;
                glommio::spawn_local(run_publisher(
                    shard,
                    conn,
                    session,
                    req,
                    key,
                    slot,
                    reg,
                    hook_client_id,
                ))
                .detach();
            } else {
                Box::pin(hand_off(&shard, conn, session, req, key, slot, reg, owner)).await;
            }
        }
    }
}

/// Answers a refused publish or play with an `onStatus` error naming the
/// reason, and closes.
async fn refuse(
    conn: &mut Transport,
    session: &mut ServerSession,
    slot: &mut ConnSlot,
    key: &StreamKey,
    action: Action,
    refusal: &Refusal,
    reg: &Registered,
) {
    let peer = reg.state.peer;
    log::warn!(
        "refused action={} key={key} peer={peer} blame={:?} reason={refusal}",
        action.name(),
        refusal.blame
    );
    match action {
        Action::Publish => session.reject_publish(refusal.publish_code(), &refusal.reason),
        Action::Play => session.reject_play(refusal.play_code(), &refusal.reason),
    }
    if let Some(b) = session.take_transmit() {
        let _ = write_all(conn, &b, slot).await;
    }
    log_close(peer, Some(key), slot, None);
}

/// Moves a publisher to the shard that owns its stream.
#[allow(clippy::too_many_arguments)]
async fn hand_off(
    shard: &Rc<Shard>,
    mut conn: Transport,
    mut session: ServerSession,
    req: StreamRequest,
    key: StreamKey,
    mut slot: ConnSlot,
    reg: Registered,
    owner: usize,
) {
    let peer = reg.state.peer;
    if let Some(b) = session.take_transmit() {
        if write_all(&mut conn, &b, &mut slot).await.is_err() {
            return;
        }
    }
    reg.count.moved();
    shard.metrics.handoff_sent();
    let hook_client_id = reg.id;
    drop(reg);
    log::debug!(
        "handoff key={key} peer={peer} from={} to={owner}",
        shard.id()
    );
    let handoff = PublisherHandoff {
        hook_client_id,
        session,
        request: req,
        key: key.clone(),
        peer,
        slot,
    };
    let err = match conn.detach(handoff) {
        Ok(moved) => match shard
            .ctx
            .post_control(owner, ShardMsg::Publisher(Box::new(moved)))
        {
            Ok(()) => return,
            Err(e) => ConnError::Internal(format!("handoff to shard {owner}: {e}")),
        },
        Err(e) => ConnError::Internal(format!("handoff: dup of the socket failed: {e}")),
    };
    log::error!(
        "publish key={key} peer={peer} error={err} blame={:?}",
        err.blame()
    );
}

/// A publisher that another shard accepted and handed to us, the owner.
pub async fn run_handed_off_publisher(shard: Rc<Shard>, conn: Transport, h: PublisherHandoff) {
    let _ = conn.configure(WRITE_TIMEOUT);
    let reg = Registered::new(
        &shard.conns,
        &shard.metrics,
        h.peer,
        false,
        shard.stopping.is_raised(),
    );
    run_publisher(
        shard,
        conn,
        h.session,
        h.request,
        h.key,
        h.slot,
        reg,
        h.hook_client_id,
    )
    .await;
}

/// Runs the session through handshake, connect and createStream until the
/// client publishes or plays.
async fn until_publish_or_play(
    shard: &Rc<Shard>,
    conn: &mut Transport,
    session: &mut ServerSession,
    slot: &mut ConnSlot,
    reg: &Registered,
    deadline: Deadline,
) -> Result<Option<Intent>, ConnError> {
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Transmit(b) => write_all(conn, &b, slot).await?,
                Output::Event(SessionEvent::Connected { app, tc_url }) => log::info!(
                    "connect peer={} app={app} tc_url={} shard={}",
                    reg.state.peer,
                    tc_url.as_deref().unwrap_or("-"),
                    shard.id()
                ),
                Output::Event(SessionEvent::PublishRequested(r)) => {
                    return Ok(Some(Intent::Publish(r)))
                }
                Output::Event(SessionEvent::PlayRequested(r)) => return Ok(Some(Intent::Play(r))),
                Output::Event(_) => {}
            }
        }
        let Some(n) = read_some(conn, &mut buf, &reg.state.close, Some(deadline)).await? else {
            return Ok(None);
        };
        slot.bytes_in += n as u64;
        reg.state.last_active.set(Instant::now());
        session.handle_input(&buf[..n])?;
    }
}

/// Serves an admitted publisher on its owner shard; `hook_client_id` is
/// the client id its hooks are told.
#[allow(clippy::too_many_arguments)]
async fn run_publisher(
    shard: Rc<Shard>,
    mut conn: Transport,
    mut session: ServerSession,
    req: StreamRequest,
    key: StreamKey,
    mut slot: ConnSlot,
    reg: Registered,
    hook_client_id: u64,
) {
    let peer = reg.state.peer;
    let id = match shard.start_publish(&key, &reg) {
        Ok(id) => id,
        Err(refusal) => {
            refuse(
                &mut conn,
                &mut session,
                &mut slot,
                &key,
                Action::Publish,
                &refusal,
                &reg,
            )
            .await;
            return;
        }
    };
    session.accept_publish();
    // An edge pushes the stream on to an origin while it is published here.
    let _push = super::push::start(&shard, &key);
    reg.count.classify(Protocol::RtmpPublish);
    reg.set_what(ConnWhat::Publisher(key.clone()));
    log::info!(
        "publish key={key} peer={peer} shard={} stream_id={}",
        shard.id(),
        req.stream_id
    );
    let mut buf = vec![0u8; READ_BUF_LEN];
    let mut bad_media = 0u64;
    let result: Result<(), ConnError> = async {
        loop {
            while let Some(out) = session.poll_output() {
                match out {
                    Output::Transmit(b) => write_all(&mut conn, &b, &mut slot).await?,
                    Output::Event(SessionEvent::Media(f)) => {
                        shard.publish_event(&key, id, StreamEvent::Frame(f))
                    }
                    Output::Event(SessionEvent::Metadata(m)) => {
                        shard.publish_event(&key, id, StreamEvent::Metadata(m))
                    }
                    Output::Event(SessionEvent::Unpublished) => return Ok(()),
                    Output::Event(SessionEvent::BadMedia(e)) => {
                        bad_media += 1;
                        if bad_media.is_power_of_two() {
                            log::warn!(
                                "bad media key={key} peer={peer} count={bad_media} error={e}"
                            );
                        }
                    }
                    Output::Event(_) => {}
                }
            }
            let Some(n) = read_some(&mut conn, &mut buf, &reg.state.close, None).await? else {
                return Ok(());
            };
            slot.bytes_in += n as u64;
            reg.state.last_active.set(Instant::now());
            session.handle_input(&buf[..n])?;
        }
    }
    .await;
    shard.end_publish(&key, id);
    shard.hooks.notify_end(&Ask {
        action: Action::Publish,
        key: &key,
        protocol: Protocol::RtmpPublish,
        peer,
        query: &req.query,
        client_id: hook_client_id,
        tc_url: req.tc_url.as_deref(),
    });
    if let Err(e) = result {
        log::warn!("peer={peer} key={key} blame={:?} error={e}", e.blame());
    } else if shards::stop_requested() {
        session.send_status(
            "status",
            "NetStream.Unpublish.Success",
            "Server shutting down.",
        );
        if let Some(b) = session.take_transmit() {
            let _ = futures_lite::future::or(
                async {
                    let _ = write_all(&mut conn, &b, &mut slot).await;
                },
                glommio::timer::sleep(GOODBYE_TIMEOUT),
            )
            .await;
        }
    }
    log_close(peer, Some(&key), &slot, None);
}

async fn run_player(
    shard: Rc<Shard>,
    conn: Transport,
    mut session: ServerSession,
    req: StreamRequest,
    key: StreamKey,
    slot: ConnSlot,
    reg: Registered,
) {
    let peer = reg.state.peer;
    let asked = MediaFilter::from_query(&req.query);
    let mut only = asked;
    // The player's id is its client id, so the API can name it.
    let player = Rc::new(Player::new(
        reg.id,
        peer,
        PlayerFormat::Rtmp {
            stream_id: req.stream_id,
        },
        only,
        shard.config().stream.player_queue_bytes_max,
    ));
    session.accept_play();
    if let Some(b) = session.take_transmit() {
        player.queue.borrow_mut().push_control(&[b]);
    }
    session.release_buffers();
    reg.set_what(ConnWhat::Player(key.clone(), "rtmp"));
    reg.count.classify(Protocol::RtmpPlay);
    let cached = shard.attach_player(&key, player.clone());
    log::info!(
        "play key={key} peer={peer} shard={} stream_id={} gop_frames={cached} audio={} video={}",
        shard.id(),
        req.stream_id,
        only.audio,
        only.video
    );

    let conn_closed = reg.state.close.clone();
    let client_id = reg.id;
    let session = RefCell::new(session);
    let filter_player = player.clone();
    drive_player(
        &shard,
        conn,
        &key,
        player,
        slot,
        reg,
        |bytes, queue| -> InputResult {
            let mut session = session.borrow_mut();
            session.handle_input(bytes)?;
            while let Some(out) = session.poll_output() {
                match out {
                    Output::Transmit(b) => queue.push_control(&[b]),
                    Output::Event(SessionEvent::PlayStopped) => return Ok(Some("play stopped")),
                    Output::Event(SessionEvent::ReceiveMedia { audio, video }) => {
                        only.audio = audio.unwrap_or(only.audio) && asked.audio;
                        only.video = video.unwrap_or(only.video) && asked.video;
                        filter_player.filter.set(only);
                    }
                    Output::Event(_) => {}
                }
            }
            Ok(None)
        },
        |queue| {
            let mut session = session.borrow_mut();
            session.end_play(if shards::stop_requested() {
                "Server shutting down."
            } else if conn_closed.is_raised() {
                "Closed by the server."
            } else {
                "No publisher within publisher_grace_s."
            });
            if let Some(b) = session.take_transmit() {
                queue.push_control(&[b]);
            }
        },
    )
    .await;
    shard.hooks.notify_end(&Ask {
        action: Action::Play,
        key: &key,
        protocol: Protocol::RtmpPlay,
        peer,
        query: &req.query,
        client_id,
        tc_url: req.tc_url.as_deref(),
    });
}
