//! TLS on the one port (HTTPS and RTMPS), with rustls: the certificates
//! (several, chosen by SNI, swapped whole on reload), the handshake under
//! its own deadline, and [`TlsStream`], the encrypted byte stream the
//! drivers get inside a [`super::Transport`].
//!
//! rustls is the state machine; this module only moves its bytes. Reads go
//! through the reactor like plain TCP. Writes are vectored: a player's
//! queued buffers are encrypted together into records of up to 16 KiB
//! (never one record per frame), then sent with one `sendmsg`. Encrypted
//! bytes that the socket does not take at once wait in rustls, bounded by
//! [`TLS_SEND_BUFFER_MAX`], until the writer's flush sends them: every
//! writer flushes after its writes.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use super::transport::{poll_sendmsg, sendmsg_nonblocking};
use crate::config::TlsConfig;
use crate::error::{ConnError, Deadline};
use crate::stream::Signal;

/// Encrypted bytes one connection may hold that its socket has not taken
/// yet; past it, writes wait for the socket. The player's own queue
/// (`stream.player_queue_bytes_max`) bounds what waits before encryption.
pub const TLS_SEND_BUFFER_MAX: usize = 64 * 1024;
/// Bytes of TLS records read from the socket at once during a handshake.
const HANDSHAKE_READ_LEN: usize = 16 * 1024 + 256;
/// The one application protocol offered by ALPN: HTTP/1.1 (RTMPS clients
/// offer none, which is accepted).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The certificates in use, shared by every shard; [`TlsAcceptor::reload`]
/// swaps them whole, so a handshake sees either the old set or the new.
/// Connections already open keep their session.
pub struct TlsAcceptor {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Loads every certificate `tls` names; the error names the key and
    /// the file that failed.
    pub fn load(tls: &TlsConfig) -> Result<Self, String> {
        Ok(Self {
            current: RwLock::new(server_config(tls)?),
        })
    }

    /// Loads the certificates again (on SIGHUP). On an error the old ones
    /// stay in use, and the error says why.
    pub fn reload(&self, tls: &TlsConfig) -> Result<(), String> {
        let fresh = server_config(tls)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A rustls server configuration for `tls`: the default pair and every
/// `[[tls.certs]]` entry, ALPN `http/1.1`.
fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(default_provider());
    let default = certified_key(&provider, &tls.cert, &tls.key, "tls.cert")?;
    let mut by_name = HashMap::new();
    for (i, entry) in tls.certs.iter().enumerate() {
        let key = certified_key(&provider, &entry.cert, &entry.key, "tls.certs")
            .map_err(|e| format!("[[tls.certs]] #{}: {e}", i + 1))?;
        for name in &entry.names {
            by_name.insert(name.to_ascii_lowercase(), key.clone());
        }
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { default, by_name }));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Reads a PEM certificate chain and its private key and checks that they
/// belong together.
fn certified_key(
    provider: &rustls::crypto::CryptoProvider,
    cert: &str,
    key: &str,
    what: &str,
) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{what}: cannot read {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: {cert} is not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{what}: {cert} holds no certificate"));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{what}: cannot read a PEM private key from {key}: {e}"))?;
    let ck = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("{what}: {key} cannot sign for {cert}: {e}"))?;
    Ok(Arc::new(ck))
}

/// Picks the certificate for the name the client asked for (SNI): an exact
/// name, then a `*.` wildcard one label up, then the default pair.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        self.by_name
            .get(&name)
            .or_else(|| wildcard.and_then(|w| self.by_name.get(&w)))
            .or(Some(&self.default))
            .cloned()
    }
}

/// An encrypted connection: the socket and its rustls session.
pub struct TlsStream {
    pub(super) io: TcpStream,
    pub(super) tls: ServerConnection,
}

/// Serves the TLS handshake of a connection whose first bytes (`first`,
/// already read) are a TLS record; the connection is encrypted from then
/// on. `deadline` bounds the whole handshake.
pub async fn accept(
    mut io: TcpStream,
    first: &[u8],
    config: Arc<ServerConfig>,
    close: &Signal,
    deadline: Deadline,
) -> Result<TlsStream, ConnError> {
    let mut tls = ServerConnection::new(config)
        .map_err(|e| ConnError::Internal(format!("tls session: {e}")))?;
    tls.set_buffer_limit(Some(TLS_SEND_BUFFER_MAX));
    let mut input = first.to_vec();
    let mut buf = vec![0u8; HANDSHAKE_READ_LEN];
    loop {
        let fed = feed(&mut tls, &input);
        // Whatever rustls has to say goes out first, an alert included.
        let mut out = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut out)?;
        }
        if !out.is_empty() {
            io.write_all(&out).await?;
        }
        fed?;
        if !tls.is_handshaking() {
            return Ok(TlsStream { io, tls });
        }
        let read = super::io::read_some(&mut io, &mut buf, close, Some(deadline)).await?;
        let Some(n) = read else {
            return Err(ConnError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed during the TLS handshake",
            )));
        };
        input.clear();
        input.extend_from_slice(&buf[..n]);
    }
}

/// Gives rustls `bytes` of TLS records and lets it process them.
fn feed(tls: &mut ServerConnection, mut bytes: &[u8]) -> Result<(), ConnError> {
    while !bytes.is_empty() {
        // 0: rustls takes no more (a close_notify came); what follows it
        // is ignored, as TLS says.
        if tls.read_tls(&mut bytes)? == 0 {
            break;
        }
        tls.process_new_packets()
            .map_err(|e| ConnError::Tls(e.to_string()))?;
    }
    Ok(())
}

impl TlsStream {
    /// Sends what rustls holds, as far as the socket takes it now, without
    /// registering for more room (the reader calls this: a waiting writer
    /// must stay the one the reactor wakes).
    fn send_nonblocking(&mut self) {
        let fd = self.io.as_raw_fd();
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut FdWriter(fd)).is_err() {
                return;
            }
        }
    }

    /// Sends what rustls holds; Pending until the socket took all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut w = PollIo {
                io: &mut self.io,
                cx,
            };
            match self.tls.write_tls(&mut w) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the socket without a close_notify: for a
                // player or a publisher that is an ordinary end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut r = PollIo {
                io: &mut this.io,
                cx,
            };
            match this.tls.read_tls(&mut r) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
            let processed = this.tls.process_new_packets();
            // A key update's reply, or the alert of a failure.
            this.send_nonblocking();
            if let Err(e) = processed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        loop {
            let n = this.tls.writer().write_vectored(bufs)?;
            if n > 0 {
                // Send now what the socket takes; the rest waits for the
                // writer's next write or its flush.
                this.send_nonblocking();
                return Poll::Ready(Ok(n));
            }
            // rustls holds TLS_SEND_BUFFER_MAX already: make room.
            ready!(this.poll_send(cx))?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.send_close_notify();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

/// The socket as a blocking-style reader and writer for rustls, inside a
/// poll: "not now" is `WouldBlock`, with the task registered to be woken.
struct PollIo<'a, 'b> {
    io: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for PollIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for PollIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match poll_sendmsg(self.io, self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The socket as a writer that never waits.
struct FdWriter(std::os::fd::RawFd);

impl Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sendmsg_nonblocking(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sendmsg_nonblocking(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// When a handshake must be done by: `tls.handshake_timeout_s` from now.
pub fn handshake_deadline(tls: &TlsConfig) -> Deadline {
    Deadline::after(
        std::time::Duration::from_secs(tls.handshake_timeout_s),
        "tls.handshake_timeout_s",
        "the TLS handshake",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::process::Command;

    /// A self-signed certificate for 127.0.0.1 made with the openssl CLI
    /// (the test command installs it), as PEM paths in `dir`.
    fn self_signed(dir: &std::path::Path) -> TlsConfig {
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        TlsConfig {
            cert: cert.to_string_lossy().into_owned(),
            key: key.to_string_lossy().into_owned(),
            ..TlsConfig::default()
        }
    }

    /// Bytes a client wants to send, as they would go on the wire.
    fn wire(client: &mut ClientConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Records after a close_notify (here, a client's junk in the same read
    /// as its alert) are ignored: `feed` returns instead of spinning on a
    /// rustls that takes no more bytes.
    #[test]
    fn feed_stops_at_a_close_notify() {
        let dir = tempfile::tempdir().unwrap();
        let tls = self_signed(dir.path());
        let server_config = server_config(&tls).unwrap();
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&tls.cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client_config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = ServerConnection::new(server_config).unwrap();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            feed(&mut server, &wire(&mut client)).unwrap();
            let mut back = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut back).unwrap();
            }
            let mut rd = &back[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets().unwrap();
        }
        assert!(!server.is_handshaking(), "handshake done");
        client.send_close_notify();
        let mut bytes = wire(&mut client);
        // More than rustls reads at once, so bytes are left after it has
        // seen the alert.
        for _ in 0..8 {
            bytes.extend_from_slice(&[0x17, 0x03, 0x03, 0x20, 0x00]);
            bytes.resize(bytes.len() + 0x2000, 0xaa);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = feed(&mut server, &bytes).map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("feed returned within 10 s");
        assert!(r.is_ok(), "{r:?}");
    }
}
