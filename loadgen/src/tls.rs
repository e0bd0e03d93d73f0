//! TLS players (`https://`, `rtmps://`): a rustls client session over a
//! player's glommio socket, and [`PlayerStream`], the byte stream the
//! HTTP-FLV, HLS and RTMP players read, plain or encrypted. Players see only plaintext; what they
//! count and parse is the same either way.
//!
//! rustls is the state machine; this module only moves its bytes: records
//! read from the socket (by glommio while starting, by the thread's
//! [`Sweeper`] once media flows, as for plain players) are kept in one
//! buffer and handed to rustls as it can take them, and what rustls has
//! to send is written out whole before the next read.
//!
//! `--cacert PATH` trusts the certificates in a PEM file; `--insecure`
//! accepts any server certificate (benchmarks only) but still checks the
//! handshake's signature with it, so the server pays for a real handshake.

use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::net::READ_BUF_LEN;
use crate::sweep::{Registration, Sweeper};

/// Ciphertext read from the socket at once: a whole 16 KiB record and its
/// header and tag.
const RAW_BUF_LEN: usize = READ_BUF_LEN + 512;

/// How TLS players trust the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust<'a> {
    /// The certificates of a PEM file.
    CaFile(&'a Path),
    /// Any certificate (handshake signatures still verified).
    Insecure,
}

/// The ALPN protocol HTTP players offer; RTMPS players offer none, as
/// FFmpeg and OBS do.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A rustls client configuration: aws-lc-rs, TLS 1.2 and 1.3, offering
/// `alpn` if given.
pub fn client_config(trust: Trust<'_>, alpn: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = match trust {
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--cacert {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("--cacert {}: no certificate", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert { provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
    Ok(Arc::new(config))
}

/// Accepts any server certificate, but checks that the server signed the
/// handshake with its key.
#[derive(Debug)]
struct AnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a TLS player connects with: the configuration and the name the
/// server's certificate must carry (a DNS name or an IP address).
#[derive(Clone, Debug)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl TlsClient {
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<Self, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
        Ok(TlsClient { config, name })
    }
}

/// A client TLS session on a socket.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ClientConnection,
    /// Ciphertext read, not yet taken by rustls: `raw[start..end]`.
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// Ciphertext rustls produced, not yet written.
    out: Vec<u8>,
}

/// Where [`TlsStream::read_from`] gets ciphertext.
#[derive(Clone, Copy)]
enum Source<'a> {
    Glommio,
    Swept(&'a Sweeper, &'a Registration),
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsStream {
    /// Starts a session on `tcp`; the handshake runs on the first write and
    /// read.
    pub fn new(tcp: TcpStream, client: &TlsClient) -> Result<Self, String> {
        let conn = ClientConnection::new(client.config.clone(), client.name.clone())
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(TlsStream {
            tcp,
            conn,
            raw: vec![0; RAW_BUF_LEN],
            start: 0,
            end: 0,
            out: Vec::new(),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Writes out whatever rustls has to send.
    async fn flush_tls(&mut self) -> io::Result<()> {
        loop {
            if self.out.is_empty() {
                if !self.conn.wants_write() {
                    return Ok(());
                }
                self.conn.write_tls(&mut self.out)?;
            }
            self.tcp.write_all(&self.out).await?;
            self.out.clear();
        }
    }

    /// Queues `data` (sent once the handshake allows) and sends what can
    /// be sent; during the handshake that means reading the server's
    /// flight too.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.conn.writer().write_all(data)?;
        loop {
            self.flush_tls().await?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            if !self.pull(Source::Glommio).await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS: the server closed the connection during the handshake",
                ));
            }
        }
    }

    /// Hands rustls ciphertext, reading more from the socket if none is
    /// buffered; Ok(false) at the socket's end.
    async fn pull(&mut self, source: Source<'_>) -> io::Result<bool> {
        if self.start == self.end {
            let n = match source {
                Source::Glommio => self.tcp.read(&mut self.raw).await?,
                Source::Swept(sweeper, reg) => sweeper.read(reg, &mut self.raw).await?,
            };
            if n == 0 {
                return Ok(false);
            }
            self.start = 0;
            self.end = n;
        }
        let mut input = &self.raw[self.start..self.end];
        let n = self.conn.read_tls(&mut input)?;
        self.start += n;
        if let Err(e) = self.conn.process_new_packets() {
            // Tell the server why (the alert rustls queued), then fail.
            let _ = self.flush_tls().await;
            return Err(tls_err(e));
        }
        self.flush_tls().await?;
        Ok(true)
    }

    /// Plaintext into `buf`; 0 at the end of the stream.
    async fn read_from(&mut self, buf: &mut [u8], source: Source<'_>) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.pull(source).await? {
                // Closed without close_notify: an end like a plain one.
                return Ok(0);
            }
        }
    }
}

/// A player's byte stream: plain TCP or TLS over it.
pub enum PlayerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl PlayerStream {
    /// Connects to `addr`, with TLS if `tls` is given (the handshake runs
    /// with the first request).
    pub async fn connect(
        addr: std::net::SocketAddr,
        tls: Option<&TlsClient>,
    ) -> Result<Self, String> {
        let tcp = crate::net::connect(addr).await?;
        Ok(match tls {
            None => PlayerStream::Plain(tcp),
            Some(client) => PlayerStream::Tls(Box::new(TlsStream::new(tcp, client)?)),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            PlayerStream::Plain(s) => s,
            PlayerStream::Tls(s) => s.tcp(),
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            PlayerStream::Plain(s) => s.write_all(data).await,
            PlayerStream::Tls(s) => TlsStream::write_all(s, data).await,
        }
    }

    /// Reads through glommio (while starting).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PlayerStream::Plain(s) => s.read(buf).await,
            PlayerStream::Tls(s) => s.read_from(buf, Source::Glommio).await,
        }
    }

    /// Reads through the thread's sweeper (once media flows).
    pub async fn read_swept(
        &mut self,
        sweeper: &Sweeper,
        reg: &Registration,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        match self {
            PlayerStream::Plain(_) => sweeper.read(reg, buf).await,
            PlayerStream::Tls(s) => s.read_from(buf, Source::Swept(sweeper, reg)).await,
        }
    }
}

/// The futures-lite view of a TLS session, for code that reads and
/// writes through the usual traits (tests, tools). Polls are driven by
/// the async methods above, so each poll starts the step afresh: only the
/// data moved is kept between polls.
impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.start == this.end {
                let n = match Pin::new(&mut this.tcp).poll_read(cx, &mut this.raw) {
                    Poll::Ready(r) => r?,
                    Poll::Pending => return Poll::Pending,
                };
                if n == 0 {
                    return Poll::Ready(Ok(0));
                }
                this.start = 0;
                this.end = n;
            }
            let mut input = &this.raw[this.start..this.end];
            let n = this.conn.read_tls(&mut input)?;
            this.start += n;
            this.conn.process_new_packets().map_err(tls_err)?;
            // The handshake's next flight (and a queued request after it).
            if this.conn.wants_write() || !this.out.is_empty() {
                if let Poll::Ready(Err(e)) = Pin::new(&mut *this).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
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
        let this = self.get_mut();
        let n = this.conn.writer().write(buf)?;
        match Pin::new(&mut *this).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out.is_empty() {
                if !this.conn.wants_write() {
                    return Pin::new(&mut this.tcp).poll_flush(cx);
                }
                this.conn.write_tls(&mut this.out)?;
            }
            let n = match Pin::new(&mut this.tcp).poll_write(cx, &this.out) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.out.drain(..n);
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.send_close_notify();
        match Pin::new(&mut *this).poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_close(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_and_names() {
        let c = client_config(Trust::Insecure, Some(ALPN_HTTP1)).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let rtmps = client_config(Trust::Insecure, None).unwrap();
        assert!(rtmps.alpn_protocols.is_empty());
        assert!(TlsClient::new(c.clone(), "127.0.0.1").is_ok());
        assert!(TlsClient::new(c, "localhost").is_ok());
        let missing = Path::new("/nonexistent/ca.pem");
        let e = client_config(Trust::CaFile(missing), None).unwrap_err();
        assert!(e.contains("--cacert"), "{e}");
        let dir = std::env::temp_dir().join(format!("shardcast-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = client_config(Trust::CaFile(&empty), None).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
