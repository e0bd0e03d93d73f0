//! Accepting connections on the one port (and `internal_port`), and
//! handing each to its driver by what its first bytes say it is.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;

use super::player::log_close;
use super::Shard;
use crate::error::Deadline;
use crate::metrics::Refused;
use crate::net::io::{read_some, READ_BUF_LEN, WRITE_TIMEOUT};
use crate::net::{ConnSlot, ConnWhat, Registered, Sniffed, Transport};

/// Bytes of a connection's first read (the protocol is sniffed from it).
const FIRST_READ_LEN: usize = READ_BUF_LEN;
/// After a failed accept (e.g. out of fds), how long the loop pauses.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Binds this shard's `internal_port` listener (`SO_REUSEPORT`, like the
/// main one) and starts accepting on it until the shard stops. None when
/// `internal_port` is 0; Err (logged) when it cannot be bound.
pub(super) fn bind_internal(shard: &Rc<Shard>) -> Result<Option<glommio::Task<()>>, ()> {
    let port = shard.config.internal_port;
    if port == 0 {
        return Ok(None);
    }
    let addr = format!("{}:{port}", shard.config.listen);
    let listener = match glommio::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!(
                "shard {}: cannot listen on {addr} (internal_port): {e}",
                shard.id()
            );
            return Err(());
        }
    };
    if shard.id() == 0 {
        log::info!("api port addr={addr} (internal_port: the API only)");
    }
    Ok(Some(glommio::spawn_local(accept_loop(
        shard.clone(),
        listener,
        true,
    ))))
}

/// Accepts connections on `listener` until the shard stops; `internal`:
/// it is the `internal_port` listener.
pub(super) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, internal: bool) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stopping.wait().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
        match accepted {
            Ok(stream) => {
                let shard = shard.clone();
                glommio::spawn_local(run_accepted(shard, Transport::Tcp(stream), internal))
                    .detach();
            }
            Err(e) => {
                let which = if internal { "internal_port" } else { "port" };
                log::warn!("accept on shard {} ({which}): {e}", shard.id());
                glommio::timer::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Entry point for every accepted connection; `internal`: accepted on
/// `internal_port` (HTTP only).
async fn run_accepted(shard: Rc<Shard>, mut conn: Transport, internal: bool) {
    let peer = match conn.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let c = &shard.config;
    let mut slot = match ConnSlot::reserve(c.max_connections, c.max_connections_per_ip, peer.ip()) {
        Ok(slot) => slot,
        Err(why) => {
            let limit = match why {
                Refused::MaxConnectionsPerIp => c.max_connections_per_ip,
                _ => c.max_connections,
            };
            log::warn!("refused peer={peer}: {}={limit} reached", why.label());
            shard.metrics.refused(why);
            return;
        }
    };
    let _ = conn.configure(WRITE_TIMEOUT);
    let reg = Registered::new(
        &shard.conns,
        &shard.metrics,
        peer,
        internal,
        shard.stopping.is_raised(),
    );
    log::debug!("accept peer={peer} shard={}", shard.id());

    // Sniff the protocol from the first bytes (DESIGN.md: one port).
    let deadline = Deadline::after(
        shard.config.rtmp.handshake_timeout(),
        "rtmp.handshake_timeout_s",
        "the first request, publish or play",
    );
    let mut first = vec![0u8; FIRST_READ_LEN];
    let n = match read_some(&mut conn, &mut first, &reg.state.close, Some(deadline)).await {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => {
            log::info!("peer={peer} error={e}");
            return;
        }
    };
    // Keep only what was read: this buffer lives as long as the connection.
    first.truncate(n);
    first.shrink_to_fit();
    slot.bytes_in += n as u64;
    let error = match Sniffed::from_first_byte(first[0]) {
        Sniffed::Http => {
            reg.set_what(ConnWhat::Http);
            // The driver gets a task of its own and this one ends: a task
            // keeps the memory of its largest state for as long as it lives
            // (here the first read's, about 5 KB), and a player lives long.
            glommio::spawn_local(super::http_conn::run(shard, conn, first, slot, reg)).detach();
            return;
        }
        Sniffed::Rtmp if !internal => {
            glommio::spawn_local(super::rtmp_conn::run(
                shard, conn, first, slot, reg, deadline,
            ))
            .detach();
            return;
        }
        other if internal => format!(
            "{other:?} (first byte 0x{:02x}) on internal_port {}, which serves only the HTTP API",
            first[0], shard.config.internal_port
        ),
        Sniffed::Tls => "TLS (first byte 0x16) is not configured on this port".to_string(),
        other => format!(
            "unrecognised protocol: first byte 0x{:02x} ({other:?}) is neither RTMP (0x03) nor \
             an HTTP method",
            first[0]
        ),
    };
    log::warn!("peer={peer} error={error}");
    log_close(peer, None, &slot, None);
}
