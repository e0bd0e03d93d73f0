//! Serving one player connection (RTMP or HTTP-FLV) attached to a stream:
//! its writer drains the player's queue, its reader feeds the session, and
//! while the writer is parked the fan-out writes to the connection itself
//! (the direct write, [`crate::net::io::flush_or_wake`]).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;

use super::Shard;
use crate::net::io::{drain, flush, DirectWriter};
use crate::net::{ConnSlot, Registered, Transport};
use crate::stream::{OutQueue, Player, StreamKey};

/// Bytes a player's reader reads at once. Players send little (acks,
/// pings, commands), and this buffer lives as long as the player, so it is
/// small: it is most of the per-player memory besides the shared media.
pub const PLAYER_READ_BUF_LEN: usize = 1024;
/// How long a closing player gets to receive its last messages.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Input handler of a player connection: takes bytes read, may queue
/// replies; returns Some(reason) to end the play.
pub(super) type InputResult = Result<Option<&'static str>, Box<dyn std::error::Error>>;

/// Serves a player attached to a stream until it, the stream or the shard
/// ends: the writer drains its queue with vectored writes, the reader feeds
/// `on_input`, and at a stream end `goodbye` may queue last words (which get
/// [`GOODBYE_TIMEOUT`] to leave).
#[allow(clippy::too_many_arguments)]
pub(super) async fn drive_player(
    shard: &Rc<Shard>,
    conn: Transport,
    key: &StreamKey,
    player: Rc<Player>,
    mut slot: ConnSlot,
    reg: Registered,
    mut on_input: impl FnMut(&[u8], &mut OutQueue) -> InputResult,
    goodbye: impl FnOnce(&mut OutQueue),
) -> u64 {
    let peer = reg.state.peer;
    let to = conn.direct_handle();
    let (mut rd, mut wr) = crate::net::transport::split(conn);
    // Declared after the connection's halves, so dropped (ending the
    // fan-out's direct writes) before the connection closes, however this
    // future ends. A TLS player has none: its writer is woken instead.
    let direct = to.map(|to| DirectWrites::register(shard, &player, to, &reg));
    let mut bytes_in = 0u64;
    let reader = async {
        let mut buf = vec![0u8; PLAYER_READ_BUF_LEN];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, Box<dyn std::error::Error>>("peer closed");
            }
            bytes_in += n as u64;
            shard.metrics.bytes_in(n as u64);
            reg.state.last_active.set(Instant::now());
            if let Some(reason) = on_input(&buf[..n], &mut player.queue.borrow_mut())? {
                return Ok(reason);
            }
        }
    };
    let writer = async {
        drain(&mut wr, &player.queue, &reg.state.last_active).await?;
        Ok("writer done")
    };
    let closed = async {
        futures_lite::future::or(player.close.wait(), reg.state.close.wait()).await;
        Ok("stream ended")
    };
    let outcome = futures_lite::future::or(closed, futures_lite::future::or(reader, writer)).await;
    let reason = match &outcome {
        Ok(r) => r.to_string(),
        Err(e) => e.to_string(),
    };
    // From here on only this task writes: the goodbye must not interleave
    // with frames written from the fan-out.
    drop(direct);
    if matches!(outcome, Ok("stream ended")) {
        goodbye(&mut player.queue.borrow_mut());
        let _ = futures_lite::future::or(
            async {
                let _ = flush(&mut wr, &player.queue).await;
            },
            glommio::timer::sleep(GOODBYE_TIMEOUT),
        )
        .await;
    }
    shard.detach_player(key, player.id);
    slot.bytes_in += bytes_in;
    slot.bytes_out += player.queue.borrow().written();
    log::debug!("player peer={peer} ended: {reason}");
    let skipped = player.queue.borrow().skipped();
    log_close(peer, Some(key), &slot, Some(skipped));
    drop(reg);
    slot.bytes_out
}

/// While alive, the fan-out may write to the player's connection itself:
/// the shard's direct-write table maps the player to its connection.
struct DirectWrites<'a> {
    shard: &'a Shard,
    player: u64,
}

impl<'a> DirectWrites<'a> {
    fn register(
        shard: &'a Shard,
        player: &Player,
        to: crate::net::DirectHandle,
        reg: &Registered,
    ) -> Self {
        shard.direct.borrow_mut().insert(
            player.id,
            DirectWriter {
                to,
                last_active: reg.state.last_active.clone(),
            },
        );
        DirectWrites {
            shard,
            player: player.id,
        }
    }
}

impl Drop for DirectWrites<'_> {
    fn drop(&mut self) {
        self.shard.direct.borrow_mut().remove(&self.player);
    }
}

/// The one log line of a connection's end.
pub(super) fn log_close(
    peer: SocketAddr,
    key: Option<&StreamKey>,
    slot: &ConnSlot,
    skipped: Option<u64>,
) {
    let key = key.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
    let skipped = skipped
        .map(|s| format!(" skipped_frames={s}"))
        .unwrap_or_default();
    log::info!(
        "close peer={peer} key={key} bytes_in={} bytes_out={} duration_ms={}{skipped}",
        slot.bytes_in,
        slot.bytes_out,
        slot.accepted.elapsed().as_millis()
    );
}
