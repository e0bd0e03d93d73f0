//! Accepting connections on the one port (and `internal_port`), and
//! handing each to its driver by what its first bytes say it is.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use super::player::log_close;
use super::Shard;
use crate::error::Deadline;
use crate::metrics::Refused;
use crate::net::io::{read_some, WRITE_TIMEOUT};
use crate::net::{ConnSlot, ConnWhat, Registered, Sniffed, Transport};

/// Bytes of a connection's first read (the protocol is sniffed from it).
/// Small: a connection that sends nothing holds this buffer until its
/// deadline, and the drivers read the rest themselves (an RTMP C0+C1 is
/// 1537 bytes; a TLS ClientHello usually fits).
const FIRST_READ_LEN: usize = 2048;
/// After a failed accept (e.g. out of fds), how long the loop pauses.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Which listener accepted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Port {
    /// `port`: RTMP, HTTP and (with `[tls]`) TLS, told apart by their
    /// first byte.
    Main,
    /// `internal_port`: the HTTP API only.
    Internal,
    /// `tls.port`: TLS only (HTTPS and RTMPS inside).
    TlsOnly,
}

impl Port {
    /// The config key of the port, as logs name it.
    fn key(self) -> &'static str {
        match self {
            Port::Main => "port",
            Port::Internal => "internal_port",
            Port::TlsOnly => "tls.port",
        }
    }
}

/// Binds this shard's `internal_port` or `tls.port` listener
/// (`SO_REUSEPORT`, like the main one) and starts accepting on it until the
/// shard stops. None when the port is 0; Err (logged) when it cannot be
/// bound.
pub(super) fn bind_extra(shard: &Rc<Shard>, which: Port) -> Result<Option<glommio::Task<()>>, ()> {
    let port = match which {
        Port::Internal => shard.config().internal_port,
        Port::TlsOnly => shard.config().tls.port,
        Port::Main => unreachable!("the main port is bound by shard_main"),
    };
    if port == 0 {
        return Ok(None);
    }
    let addr = format!("{}:{port}", shard.config().listen);
    let listener = match glommio::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!(
                "shard {}: cannot listen on {addr} ({}): {e}",
                shard.id(),
                which.key()
            );
            return Err(());
        }
    };
    if shard.id() == 0 {
        let what = match which {
            Port::Internal => "the API only",
            _ => "TLS only: HTTPS and RTMPS",
        };
        log::info!("{} addr={addr} ({}: {what})", which.key(), which.key());
    }
    Ok(Some(glommio::spawn_local(accept_loop(
        shard.clone(),
        listener,
        which,
    ))))
}

/// Accepts connections on `listener` until the shard stops.
pub(super) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, which: Port) {
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
                glommio::spawn_local(run_accepted(shard, stream, which)).detach();
            }
            Err(e) => {
                log::warn!("accept on shard {} ({}): {e}", shard.id(), which.key());
                glommio::timer::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Entry point for every accepted connection.
async fn run_accepted(shard: Rc<Shard>, stream: TcpStream, which: Port) {
    let mut conn = Transport::Tcp(stream);
    let peer = match conn.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    shard.refresh();
    let c = shard.config();
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
    let internal = which == Port::Internal;
    let reg = Registered::new(
        &shard.conns,
        &shard.metrics,
        peer,
        internal,
        shard.stopping.is_raised(),
    );
    log::debug!("accept peer={peer} shard={}", shard.id());

    // Sniff the protocol from the first bytes (DESIGN.md: one port).
    let mut deadline = sniff_deadline(&shard);
    let Some(mut first) = first_read(&mut conn, &mut slot, &reg, deadline).await else {
        return;
    };
    let mut sniffed = Sniffed::from_first_byte(first[0]);
    let tls = match (&shard.tls, sniffed, which) {
        (Some(tls), Sniffed::Tls, Port::Main | Port::TlsOnly) => Some(tls.config()),
        _ => None,
    };
    if let Some(config) = tls {
        let Transport::Tcp(io) = conn else {
            unreachable!("a connection is plain until its handshake")
        };
        let handshake = crate::net::tls::handshake_deadline(&shard.config().tls);
        conn = match crate::net::tls::accept(io, &first, config, &reg.state.close, handshake).await
        {
            Ok(t) => Transport::Tls(Box::new(t)),
            Err(e) => {
                shard.metrics.refused(Refused::TlsHandshake);
                log::info!("peer={peer} error={e} (TLS handshake)");
                log_close(peer, None, &slot, None);
                return;
            }
        };
        // The RTMP handshake or the first request starts its wait now.
        deadline = sniff_deadline(&shard);
        let Some(inner) = first_read(&mut conn, &mut slot, &reg, deadline).await else {
            return;
        };
        first = inner;
        sniffed = match Sniffed::from_first_byte(first[0]) {
            Sniffed::Tls => Sniffed::Unknown(first[0]),
            other => other,
        };
    }
    let error = match (sniffed, which) {
        (_, Port::TlsOnly) if !conn.is_tls() => format!(
            "a plain connection (first byte 0x{:02x}) on tls.port {}, which serves only TLS",
            first[0], shard.config().tls.port
        ),
        (Sniffed::Http, _) => {
            reg.set_what(ConnWhat::Http);
            // The driver gets a task of its own and this one ends: a task
            // keeps the memory of its largest state for as long as it lives
            // (here the first read's, about 5 KB), and a player lives long.
            glommio::spawn_local(super::http_conn::run(shard, conn, first, slot, reg)).detach();
            return;
        }
        (Sniffed::Rtmp, Port::Main | Port::TlsOnly) => {
            glommio::spawn_local(super::rtmp_conn::run(
                shard, conn, first, slot, reg, deadline,
            ))
            .detach();
            return;
        }
        (other, Port::Internal) => format!(
            "{other:?} (first byte 0x{:02x}) on internal_port {}, which serves only the HTTP API",
            first[0], shard.config().internal_port
        ),
        (Sniffed::Tls, _) => {
            "TLS (first byte 0x16) is not configured on this port: set tls.cert and tls.key"
                .to_string()
        }
        (other, _) if conn.is_tls() => format!(
            "unrecognised protocol inside TLS: first byte 0x{:02x} ({other:?}) is neither RTMP \
             (0x03) nor an HTTP method",
            first[0]
        ),
        (other, _) => format!(
            "unrecognised protocol: first byte 0x{:02x} ({other:?}) is neither RTMP (0x03) nor \
             an HTTP method",
            first[0]
        ),
    };
    log::warn!("peer={peer} error={error}");
    log_close(peer, None, &slot, None);
}

/// The deadline of the first request, publish or play
/// (`rtmp.handshake_timeout_s`), from now.
fn sniff_deadline(shard: &Shard) -> Deadline {
    Deadline::after(
        shard.config().rtmp.handshake_timeout(),
        "rtmp.handshake_timeout_s",
        "the first request, publish or play",
    )
}

/// A connection's first read, which names its protocol: None (logged) when
/// it ended first.
async fn first_read(
    conn: &mut Transport,
    slot: &mut ConnSlot,
    reg: &Registered,
    deadline: Deadline,
) -> Option<Vec<u8>> {
    let mut first = vec![0u8; FIRST_READ_LEN];
    let n = match read_some(conn, &mut first, &reg.state.close, Some(deadline)).await {
        Ok(Some(n)) => n,
        Ok(None) => return None,
        Err(e) => {
            log::info!("peer={} error={e}", reg.state.peer);
            return None;
        }
    };
    // Keep only what was read: this buffer lives as long as the connection.
    first.truncate(n);
    first.shrink_to_fit();
    slot.bytes_in += n as u64;
    Some(first)
}
