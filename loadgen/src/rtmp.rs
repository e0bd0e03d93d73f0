//! RTMP publisher and player drivers: a glommio socket around
//! [`ClientSession`]. The player is kept cheap: one read buffer, the
//! session's chunk decoding, and per frame only the FLV header flags and,
//! on video, the stamp. Players read a [`PlayerStream`], so `rtmps://`
//! players are the same code over TLS; the publisher is plain RTMP only.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use proto::rtmp::client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, Output, RtmpUrl, StreamMode,
};

use crate::net::{connect, media_socket, READ_BUF_LEN, START_TIMEOUT};
use crate::runtime::{player_started, start_within, wall_us, ThreadCtx};
use crate::stats::{Media, PlayerRecord, PublisherRecord};
use crate::synth::{Synth, SynthConfig, AUDIO_RATE, AUDIO_SAMPLES_PER_FRAME};
use crate::tls::{PlayerStream, TlsClient};

/// How long the publisher's goodbye (FCUnpublish, deleteStream) may take.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where RTMP players connect (and the publisher, over plain RTMP).
#[derive(Clone, Debug)]
pub struct RtmpTarget {
    pub addr: SocketAddr,
    pub url: RtmpUrl,
    /// For rtmps:// players.
    pub tls: Option<TlsClient>,
}

impl RtmpTarget {
    fn config(&self, mode: StreamMode) -> ClientConfig {
        ClientConfig::new(&self.url, mode)
    }
}

/// A seed for the handshake's random bytes; anything varying will do.
fn seed(salt: u64) -> u64 {
    wall_us().rotate_left(17) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Rejected { .. } => e.to_string(),
        other => format!("protocol: {other}"),
    }
}

/// Plays until the connection ends: Ok on a clean close by the server,
/// Err naming what went wrong otherwise. [`runtime::run_player`] records
/// the outcome.
///
/// [`runtime::run_player`]: crate::runtime::run_player
pub async fn play(
    target: &RtmpTarget,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
    salt: u64,
) -> Result<(), String> {
    let (stream, session) = start_within("Play.Start", start_play(target, rec, ctx, salt)).await?;
    read_media(stream, session, rec, ctx).await
}

/// Connects and plays until Play.Start. Media that came with it stays in
/// the session's output for [`read_media`].
async fn start_play(
    target: &RtmpTarget,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
    salt: u64,
) -> Result<(PlayerStream, ClientSession), String> {
    let mut stream = PlayerStream::connect(target.addr, target.tls.as_ref()).await?;
    let mut session = ClientSession::new(target.config(StreamMode::Play), seed(salt), 0);
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Transmit(b) => stream
                    .write_all(&b)
                    .await
                    .map_err(|e| format!("write: {e}"))?,
                Output::Event(ClientEvent::PlayStarted { .. }) => {
                    player_started(rec, ctx);
                    return Ok((stream, session));
                }
                Output::Event(ClientEvent::Refused(s)) => {
                    return Err(format!("play refused: {} ({})", s.code, s.description));
                }
                Output::Event(_) => {}
            }
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection before Play.Start".into());
        }
        ctx.on_read(rec, n, &ctx.window());
        session.handle_input(&buf[..n]).map_err(|e| describe(&e))?;
    }
}

/// Reads until the connection ends: Ok on a clean close by the server,
/// Err naming what went wrong otherwise.
async fn read_media(
    mut stream: PlayerStream,
    mut session: ClientSession,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
) -> Result<(), String> {
    let mut buf = vec![0u8; READ_BUF_LEN];
    let window = ctx.window();
    // Dropped before the stream: the socket leaves the set before it closes.
    let media = media_socket(stream.tcp(), ctx)?;
    loop {
        let now = Instant::now();
        let mut wall = None;
        while let Some(out) = session.poll_output() {
            match out {
                Output::Transmit(b) => stream
                    .write_all(&b)
                    .await
                    .map_err(|e| format!("write: {e}"))?,
                Output::Event(ClientEvent::Media(f)) => {
                    let wall_now = *wall.get_or_insert_with(wall_us);
                    let media = Media {
                        video: f.is_video(),
                        keyframe: f.keyframe,
                        sequence_header: f.sequence_header,
                        len: f.payload.len(),
                        prefix: &f.payload,
                    };
                    rec.borrow_mut().on_media(
                        &media,
                        now,
                        wall_now,
                        &window,
                        &mut ctx.hists.borrow_mut(),
                    );
                }
                Output::Event(_) => {}
            }
        }
        let n = stream
            .read_swept(&ctx.sweeper, &media, &mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        // A socket that always has data never makes `read` wait; let the
        // executor run timers and other players when its slice is over.
        glommio::yield_if_needed().await;
        ctx.on_read(rec, n, &window);
        session.handle_input(&buf[..n]).map_err(|e| describe(&e))?;
    }
}

/// What the publisher sends and where: plain RTMP (`main.rs` refuses an
/// rtmps:// publish URL, so the target has no TLS client).
#[derive(Clone, Debug)]
pub struct PublishPlan {
    pub target: RtmpTarget,
    pub synth: SynthConfig,
}

/// Publishes the synthetic stream until the run's end. Once the first
/// keyframe is out it sets the moment players may start; on failure it
/// aborts the run.
pub async fn run_publisher(
    plan: Rc<PublishPlan>,
    rec: Rc<RefCell<PublisherRecord>>,
    ctx: Rc<ThreadCtx>,
) {
    let result = futures_lite::future::or(publish(&plan, &rec, &ctx), async {
        glommio::timer::sleep(START_TIMEOUT).await;
        if !rec.borrow().live {
            return Err(format!("no Publish.Start within {START_TIMEOUT:?}"));
        }
        std::future::pending().await
    })
    .await;
    if let Err(e) = result {
        let e = format!("publisher: {e}");
        rec.borrow_mut().error = Some(e.clone());
        ctx.shared.abort(e);
    }
}

async fn publish(
    plan: &PublishPlan,
    rec: &RefCell<PublisherRecord>,
    ctx: &ThreadCtx,
) -> Result<(), String> {
    let mut stream = connect(plan.target.addr).await?;
    let config = plan.target.config(StreamMode::Publish);
    let mut session = ClientSession::new(config, seed(u64::MAX), 0);
    let mut buf = vec![0u8; READ_BUF_LEN];
    // Start-up: until Publish.Start.
    'start: loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Transmit(b) => write(&mut stream, &b, rec).await?,
                Output::Event(ClientEvent::PublishStarted { .. }) => break 'start,
                Output::Event(ClientEvent::Refused(s)) => {
                    return Err(format!("publish refused: {} ({})", s.code, s.description))
                }
                Output::Event(_) => {}
            }
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection before Publish.Start".into());
        }
        session.handle_input(&buf[..n]).map_err(|e| describe(&e))?;
    }
    rec.borrow_mut().live = true;

    let mut synth = Synth::new(plan.synth);
    let send = |session: &mut ClientSession, f: &proto::media::Frame| {
        session.send_frame(f).map_err(|e| format!("bug: {e}"))
    };
    session
        .send_metadata(&synth.metadata_body())
        .map_err(|e| format!("bug: {e}"))?;
    send(&mut session, &synth.video_sequence_header())?;
    if plan.synth.audio {
        send(&mut session, &synth.audio_sequence_header())?;
    }
    let t0 = Instant::now();
    let frame_interval = Duration::from_secs_f64(1.0 / plan.synth.fps);
    let audio_interval =
        Duration::from_secs_f64(f64::from(AUDIO_SAMPLES_PER_FRAME) / f64::from(AUDIO_RATE));
    // Players start once the first keyframe has surely reached the
    // server's GOP cache.
    let timeline = ctx.start_players(t0 + crate::runtime::PLAYERS_AFTER_FIRST_KEYFRAME);
    let (end, window) = (timeline.end, timeline.window);

    let session = RefCell::new(session);
    let pending: RefCell<Vec<Bytes>> = RefCell::new(Vec::new());
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let reader = async {
        loop {
            let n = rd.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".to_string());
            }
            let mut s = session.borrow_mut();
            s.handle_input(&buf[..n]).map_err(|e| describe(&e))?;
            while let Some(out) = s.poll_output() {
                match out {
                    Output::Transmit(b) => pending.borrow_mut().push(b),
                    Output::Event(ClientEvent::Status(st)) if st.level == "error" => {
                        return Err(format!("server: {} ({})", st.code, st.description));
                    }
                    Output::Event(_) => {}
                }
            }
        }
    };
    let pacer = async {
        let mut video_n: u64 = 0;
        let mut audio_n: u64 = 0;
        loop {
            let video_due = t0 + frame_interval.mul_f64(video_n as f64);
            let audio_due = if plan.synth.audio {
                t0 + audio_interval.mul_f64(audio_n as f64)
            } else {
                end
            };
            let due = video_due.min(audio_due);
            if due >= end {
                break;
            }
            let now = Instant::now();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
            let now = Instant::now();
            // Everything due is chunked under one borrow, released before
            // the writes below wait.
            let mut out: Vec<Bytes> = std::mem::take(&mut *pending.borrow_mut());
            let mut lag = Duration::ZERO;
            let mut media = 0u64;
            let (mut v, mut a) = (0, 0);
            {
                let mut s = session.borrow_mut();
                while t0 + frame_interval.mul_f64(video_n as f64) <= now {
                    let at = frame_interval.mul_f64(video_n as f64);
                    lag = lag.max(now - (t0 + at));
                    let f = synth.next_video(at.as_millis() as u32, wall_us());
                    send(&mut s, &f)?;
                    media += f.payload.len() as u64;
                    video_n += 1;
                    v += 1;
                }
                while plan.synth.audio && t0 + audio_interval.mul_f64(audio_n as f64) <= now {
                    let at = audio_interval.mul_f64(audio_n as f64);
                    lag = lag.max(now - (t0 + at));
                    let f = synth.audio_frame(at.as_millis() as u32);
                    send(&mut s, &f)?;
                    media += f.payload.len() as u64;
                    audio_n += 1;
                    a += 1;
                }
                if let Some(b) = s.take_transmit() {
                    out.push(b);
                }
            }
            {
                let mut r = rec.borrow_mut();
                r.video_frames += v;
                r.audio_frames += a;
                r.send_lag_max = r.send_lag_max.max(lag);
                if window.contains(now) {
                    r.window_media_bytes += media;
                }
            }
            for b in out {
                wr.write_all(&b).await.map_err(|e| format!("write: {e}"))?;
                rec.borrow_mut().socket_bytes += b.len() as u64;
                ctx.progress()
                    .publisher_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
        // The run is over: say goodbye, briefly.
        let bye = {
            let mut s = session.borrow_mut();
            s.close();
            s.take_transmit()
        };
        if let Some(b) = bye {
            let _ = futures_lite::future::or(
                async {
                    let _ = wr.write_all(&b).await;
                },
                glommio::timer::sleep(GOODBYE_TIMEOUT),
            )
            .await;
        }
        Ok::<(), String>(())
    };
    futures_lite::future::or(pacer, reader).await
}

async fn write(
    stream: &mut TcpStream,
    b: &[u8],
    rec: &RefCell<PublisherRecord>,
) -> Result<(), String> {
    stream
        .write_all(b)
        .await
        .map_err(|e| format!("write: {e}"))?;
    rec.borrow_mut().socket_bytes += b.len() as u64;
    Ok(())
}
