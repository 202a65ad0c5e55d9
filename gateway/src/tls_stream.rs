//! Server-side TLS over a TCP socket on rustls' unbuffered API.
//!
//! Why not tokio-rustls: its `ServerConnection` owns a 4 KiB receive buffer
//! that it never gives back, so every idle keep-alive connection holds one
//! for hours. Here the connection owns its buffers: the received TLS bytes,
//! the decrypted bytes not yet read, and the encrypted bytes not yet sent.
//! [`ServerTls::release_buffers`] drops all three while a connection is
//! parked (see [`crate::park`]), so an idle connection keeps only rustls'
//! keys and state.
//!
//! The stream behaves as tokio-rustls' does where the gateway relies on it:
//! the peer's close_notify reads as end of stream, a TCP close without one
//! is an `UnexpectedEof` error (a truncation is never a clean end), and
//! `poll_shutdown` sends close_notify before closing the write side.

use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::{
    ClientHello, ResolvesServerCert, ServerConnectionData, UnbufferedServerConnection,
};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, ReadTraffic};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How much is read from the socket at a time (more when a record needs it).
const READ_SIZE: usize = 4096;

/// The largest TLS record: header, 2^14 bytes of plaintext and 256 of
/// expansion (RFC 8446 §5.2). rustls refuses larger ones.
const MAX_RECORD: usize = 5 + (1 << 14) + 256;

/// Encrypted bytes that may wait for the socket before `poll_write` waits
/// too: enough for a few records, and a bound on what a slow reader costs.
const MAX_PENDING_WRITE: usize = 64 * 1024;

/// The most received bytes held at once: a handshake message rustls is
/// joining (it allows 64 KiB) and the next record. More is a peer that
/// does not follow the protocol.
const MAX_INCOMING: usize = 0x1_0000 + MAX_RECORD;

/// Plaintext taken per `poll_write`, so one call encrypts a bounded amount.
const MAX_WRITE: usize = 4 * (1 << 14);

/// Bytes a record adds to its plaintext, at most (TLS 1.2 AES-GCM: header,
/// explicit nonce, tag; TLS 1.3 adds a content type byte instead).
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 3;

thread_local! {
    /// The SNI of the ClientHello [`SniRecorder`] saw last on this thread.
    static SNI: RefCell<Option<Box<str>>> = const { RefCell::new(None) };
}

/// Wraps a config's certificate resolver to record the client's SNI, which
/// rustls' unbuffered server connection does not expose. rustls calls the
/// resolver for every ClientHello, resumed or not, synchronously inside
/// `process_tls_records`: [`ServerTls`] clears the slot before that call
/// and takes it after, on the same thread, so no other connection's name
/// can be seen.
#[derive(Debug)]
pub struct SniRecorder(pub Arc<dyn ResolvesServerCert>);

impl ResolvesServerCert for SniRecorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(Box::from);
        SNI.with(|s| *s.borrow_mut() = name);
        self.0.resolve(hello)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.0.only_raw_public_keys()
    }
}

/// A server-side TLS stream (see the module docs).
pub struct ServerTls {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Received TLS bytes; `incoming[start..filled]` is not yet processed
    /// (at most one partial record once [`ServerTls::process`] has run).
    /// Processed records only move `start`: the rest moves to the front
    /// once, before the next read, not once per record (a flight of tiny
    /// records would otherwise cost quadratic copying).
    incoming: Vec<u8>,
    start: usize,
    filled: usize,
    /// Decrypted bytes; `plain[plain_at..]` is not yet read.
    plain: Vec<u8>,
    plain_at: usize,
    /// Encrypted bytes; `outgoing[sent..]` is not yet written.
    outgoing: Vec<u8>,
    sent: usize,
    /// close_notify received.
    peer_closed: bool,
    /// The socket reached end of stream.
    tcp_eof: bool,
    /// close_notify queued.
    close_sent: bool,
    /// The error that ended the connection: rustls must not see the bytes
    /// that caused it again, so every later call returns it.
    failed: Option<Box<rustls::Error>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("tcp", &self.tcp)
            .field("buffered_tls", &self.filled)
            .field("buffered_plain", &(self.plain.len() - self.plain_at))
            .field("unsent", &(self.outgoing.len() - self.sent))
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl ServerTls {
    /// Runs the server side of a handshake on `tcp`; returns the stream and
    /// the server name the client asked for (SNI), if it sent one. A
    /// refused handshake is an `InvalidData` error carrying the
    /// `rustls::Error` (as tokio-rustls reports it), after the alert has
    /// been offered to the peer.
    pub async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
    ) -> io::Result<(ServerTls, Option<Box<str>>)> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut tls = ServerTls {
            tcp,
            conn,
            incoming: Vec::new(),
            start: 0,
            filled: 0,
            plain: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            sent: 0,
            peer_closed: false,
            tcp_eof: false,
            close_sent: false,
            failed: None,
        };
        let mut sni = None;
        poll_fn(|cx| tls.poll_handshake(cx, &mut sni)).await?;
        Ok((tls, sni))
    }

    /// The session: peer certificates, ALPN, version, resumption.
    pub fn session(&self) -> &CommonState {
        &self.conn
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether a read can make progress without the socket: decrypted
    /// bytes wait, or the peer has closed.
    pub fn has_buffered(&self) -> bool {
        self.plain_at < self.plain.len() || self.peer_closed || self.tcp_eof
    }

    /// Frees every buffer that holds nothing (call when the connection goes
    /// idle); they are allocated again on the next read or write.
    pub fn release_buffers(&mut self) {
        if self.filled == 0 {
            self.incoming = Vec::new();
        }
        if self.plain_at >= self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        if self.sent >= self.outgoing.len() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
    }

    fn poll_handshake(
        &mut self,
        cx: &mut Context<'_>,
        sni: &mut Option<Box<str>>,
    ) -> Poll<io::Result<()>> {
        loop {
            SNI.with(|s| s.borrow_mut().take());
            let processed = self.process();
            if let Some(name) = SNI.with(|s| s.borrow_mut().take()) {
                *sni = Some(name);
            }
            match processed {
                Ok(()) => {}
                Err(e) => {
                    // The alert is on its way if the socket takes it now;
                    // the refusal stands either way.
                    let _ = self.poll_flush_outgoing(cx);
                    return Poll::Ready(Err(e));
                }
            }
            ready!(self.poll_flush_outgoing(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.peer_closed || ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                )));
            }
        }
    }

    /// Processes every complete record received: decrypted bytes go to
    /// `plain`, records rustls wants sent (handshake, alerts, key updates)
    /// to `outgoing`; a close_notify sets `peer_closed`. On a TLS error,
    /// the alert rustls queued is encoded too, and the error returned.
    fn process(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(tls_error((**e).clone()));
        }
        loop {
            let status = self
                .conn
                .process_tls_records(&mut self.incoming[self.start..self.filled]);
            let mut discard = status.discard;
            let done = match status.state {
                Err(e) => {
                    self.drop_front(discard);
                    self.failed = Some(Box::new(e.clone()));
                    self.encode_alert();
                    return Err(tls_error(e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    discard += take_records(&mut traffic, &mut self.plain, &mut self.plain_at)?;
                    false
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut data, &mut self.outgoing)?;
                    false
                }
                // `outgoing` is ours: once a record is in it, it is as good
                // as sent for rustls.
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    false
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    self.peer_closed = true;
                    true
                }
                Ok(ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake) => true,
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    self.drop_front(discard);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS early data is not accepted",
                    ));
                }
                Ok(other) => {
                    let e = io::Error::other(format!("unexpected TLS state {other:?}"));
                    self.drop_front(discard);
                    return Err(e);
                }
            };
            self.drop_front(discard);
            if done {
                return Ok(());
            }
        }
    }

    /// After a TLS error, rustls hands out the fatal alert it queued, once:
    /// the call after that would process the offending bytes again.
    fn encode_alert(&mut self) {
        if !self.conn.wants_write() {
            return;
        }
        let status = self
            .conn
            .process_tls_records(&mut self.incoming[self.start..self.filled]);
        let discard = status.discard;
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
            let _ = encode(&mut data, &mut self.outgoing);
        }
        self.drop_front(discard);
    }

    fn drop_front(&mut self, n: usize) {
        self.start = (self.start + n).min(self.filled);
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        }
    }

    /// Reads from the socket into `incoming`: 0 at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.tcp_eof {
            return Poll::Ready(Ok(0));
        }
        if self.start > 0 {
            self.incoming.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        // Room for a whole record when a partial one is waiting.
        let record = if self.filled >= 5 {
            5 + usize::from(u16::from_be_bytes([self.incoming[3], self.incoming[4]]))
        } else {
            0
        };
        if self.filled >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS peer sent more unprocessable bytes than the gateway buffers",
            )));
        }
        let want = (self.filled + READ_SIZE).max(record.min(MAX_RECORD));
        if self.incoming.len() < want {
            self.incoming.resize(want, 0);
        }
        let mut buf = ReadBuf::new(&mut self.incoming[self.filled..]);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n == 0 {
            self.tcp_eof = true;
        }
        self.filled += n;
        Poll::Ready(Ok(n))
    }

    /// Writes `outgoing` to the socket.
    fn poll_flush_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Encrypts `data` (all of it) into `outgoing`, or queues close_notify
    /// when `data` is `None`. Records received meanwhile are processed first,
    /// as a read would: after that, rustls has nothing to hand out and is
    /// ready for application data, unless the connection is closed.
    fn seal(&mut self, data: Option<&[u8]>) -> io::Result<()> {
        self.process()?;
        let status = self
            .conn
            .process_tls_records(&mut self.incoming[self.start..self.filled]);
        let discard = status.discard;
        let result = match status.state {
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match data {
                Some(data) => seal_into(&mut self.outgoing, data.len(), |out| {
                    traffic.encrypt(data, out)
                }),
                None => seal_into(&mut self.outgoing, 0, |out| traffic.queue_close_notify(out)),
            },
            Ok(ConnectionState::Closed) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS connection is closed",
            )),
            Ok(other) => Err(io::Error::other(format!(
                "cannot write in TLS state {other:?}"
            ))),
            Err(e) => {
                self.failed = Some(Box::new(e.clone()));
                Err(tls_error(e))
            }
        };
        self.drop_front(discard);
        result
    }
}

/// Moves the records rustls decrypted to `plain` (after its unread
/// bytes); returns what they add to the discard.
fn take_records(
    traffic: &mut ReadTraffic<'_, '_, ServerConnectionData>,
    plain: &mut Vec<u8>,
    plain_at: &mut usize,
) -> io::Result<usize> {
    let mut discard = 0;
    while let Some(record) = traffic.next_record() {
        let record = record.map_err(tls_error)?;
        discard += record.discard;
        if *plain_at >= plain.len() {
            plain.clear();
            *plain_at = 0;
        }
        plain.extend_from_slice(record.payload);
    }
    Ok(discard)
}

/// Copies a record rustls encoded into `outgoing`.
fn encode(
    data: &mut EncodeTlsData<'_, ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    let start = outgoing.len();
    outgoing.resize(start + 1024, 0);
    loop {
        match data.encode(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(e)) => outgoing.resize(start + e.required_size, 0),
            Err(e @ EncodeError::AlreadyEncoded) => {
                outgoing.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

/// Appends what `seal` writes to `outgoing`, growing it as rustls asks.
fn seal_into(
    outgoing: &mut Vec<u8>,
    plain_len: usize,
    mut seal: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    let start = outgoing.len();
    let guess = plain_len + (plain_len / (1 << 14) + 1) * RECORD_OVERHEAD;
    outgoing.resize(start + guess, 0);
    loop {
        match seal(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(e)) => outgoing.resize(start + e.required_size, 0),
            Err(e) => {
                outgoing.truncate(start);
                return Err(io::Error::other(e));
            }
        }
    }
}

impl AsyncRead for ServerTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_at < this.plain.len() {
                let n = (this.plain.len() - this.plain_at).min(buf.remaining());
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            this.process()?;
            // A key update answer or the like: sent when the socket takes
            // it; a later write or flush sends the rest.
            if let Poll::Ready(Err(e)) = this.poll_flush_outgoing(cx) {
                return Poll::Ready(Err(e));
            }
            // Bytes to hand out, or the end of the stream: see the top.
            if this.plain_at < this.plain.len() || this.peer_closed {
                continue;
            }
            // A peer that makes rustls answer (key update requests) but
            // never reads is not read from either: what waits for it
            // stays bounded.
            if this.outgoing.len() - this.sent >= MAX_PENDING_WRITE {
                ready!(this.poll_flush_outgoing(cx))?;
            }
            if ready!(this.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
        }
    }
}

impl AsyncWrite for ServerTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after TLS close_notify",
            )));
        }
        if this.outgoing.len() - this.sent >= MAX_PENDING_WRITE {
            ready!(this.poll_flush_outgoing(cx))?;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_WRITE);
        this.seal(Some(&buf[..n]))?;
        // Sent now if the socket takes it; flush sends the rest.
        if let Poll::Ready(Err(e)) = this.poll_flush_outgoing(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_outgoing(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            // Closed already (both sides sent close_notify): nothing to add.
            let _ = this.seal(None);
        }
        ready!(this.poll_flush_outgoing(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConfig, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    struct Pki {
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        anonymous: Arc<ClientConfig>,
    }

    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        name: &str,
        eku: ExtendedKeyUsagePurpose,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, issuer).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], der)
    }

    fn pki(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let roots = Arc::new(roots);
        let (server_chain, server_key) = leaf(&ca, "gw.test", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_chain, client_key) =
            leaf(&ca, "client.test", ExtendedKeyUsagePurpose::ClientAuth);
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), crate::tls::provider())
                .build()
                .unwrap();
        let mut server = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_chain, server_key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        server.cert_resolver = Arc::new(SniRecorder(server.cert_resolver.clone()));
        let builder = || {
            ClientConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots.clone())
        };
        let mut client = builder()
            .with_client_auth_cert(client_chain, client_key)
            .unwrap();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Pki {
            server: Arc::new(server),
            client: Arc::new(client),
            anonymous: Arc::new(builder().with_no_client_auth()),
        }
    }

    /// A connected pair: the server's side (its handshake's result) and the
    /// client's.
    async fn pair(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (
        io::Result<(ServerTls, Option<Box<str>>)>,
        io::Result<TlsStream<TcpStream>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            ServerTls::accept(tcp, server).await
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("gw.test").unwrap();
        let client = TlsConnector::from(client).connect(name, tcp).await;
        (accept.await.unwrap(), client)
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    async fn round_trip(versions: &[&'static rustls::SupportedProtocolVersion]) {
        let pki = pki(versions);
        let (server, client) = pair(pki.server, pki.client).await;
        let ((mut server, sni), mut client) = (server.unwrap(), client.unwrap());
        assert_eq!(sni.as_deref(), Some("gw.test"));
        assert_eq!(server.session().alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(
            server.session().peer_certificates().map(<[_]>::len),
            Some(1)
        );
        assert_eq!(
            server.session().protocol_version(),
            Some(versions[0].version)
        );

        // More than fits a record, read in pieces smaller than one.
        let up = pattern(300_000, 7);
        let sent = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.flush().await.unwrap();
            client
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 1000];
        while got.len() < up.len() {
            let n = server.read(&mut chunk).await.unwrap();
            assert!(n > 0, "end of stream after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == up, "the bytes read are not the bytes sent");
        let mut client = writer.await.unwrap();

        let down = pattern(200_000, 3);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.map(|_| got)
        });
        server.write_all(&down).await.unwrap();
        server.shutdown().await.unwrap();
        let got = reader
            .await
            .unwrap()
            .expect("a clean close_notify, not a truncation");
        assert!(got == down, "the client read other bytes than were written");
    }

    #[tokio::test]
    async fn carries_bytes_both_ways_over_tls13() {
        round_trip(&[&rustls::version::TLS13]).await;
    }

    #[tokio::test]
    async fn carries_bytes_both_ways_over_tls12() {
        round_trip(&[&rustls::version::TLS12]).await;
    }

    #[tokio::test]
    async fn a_resumed_session_reports_its_sni_too() {
        let pki = pki(&[&rustls::version::TLS13]);
        for kind in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed] {
            let (server, client) = pair(pki.server.clone(), pki.client.clone()).await;
            let ((mut server, sni), mut client) = (server.unwrap(), client.unwrap());
            // Read the session tickets, so the next connection can resume.
            server.write_all(b"x").await.unwrap();
            server.flush().await.unwrap();
            let mut one = [0u8; 1];
            client.read_exact(&mut one).await.unwrap();
            assert_eq!(server.session().handshake_kind(), Some(kind));
            // TCP routes are chosen by this name, resumed or not.
            assert_eq!(sni.as_deref(), Some("gw.test"), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn many_tiny_records_in_one_read_arrive_in_order() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server, client) = pair(pki.server, pki.client).await;
        let ((mut server, _), mut client) = (server.unwrap(), client.unwrap());
        let sent = pattern(3000, 11);
        let bytes = sent.clone();
        let writer = tokio::spawn(async move {
            // One record per write: the server reads hundreds at a time.
            for b in bytes {
                client.write_all(&[b]).await.unwrap();
            }
            client.shutdown().await.unwrap();
            client
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got == sent, "{} bytes read, not the bytes sent", got.len());
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn close_notify_ends_the_stream_and_a_bare_tcp_close_is_an_error() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server, client) = pair(pki.server.clone(), pki.client.clone()).await;
        let ((mut server, _), mut client) = (server.unwrap(), client.unwrap());
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");

        let (server, client) = pair(pki.server, pki.client).await;
        let ((mut server, _), mut client) = (server.unwrap(), client.unwrap());
        client.write_all(b"cut").await.unwrap();
        client.flush().await.unwrap();
        // A FIN with no close_notify before it (dropping the socket could
        // send a reset: the session tickets are unread).
        let (mut tcp, _) = client.into_inner();
        tcp.shutdown().await.unwrap();
        let mut got = Vec::new();
        let e = server.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(got, b"cut");
    }

    #[tokio::test]
    async fn idle_connection_gives_its_buffers_back_and_carries_on() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server, client) = pair(pki.server, pki.client).await;
        let ((mut server, _), mut client) = (server.unwrap(), client.unwrap());
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"pong").await.unwrap();
        server.flush().await.unwrap();
        assert!(server.incoming.capacity() > 0);
        server.release_buffers();
        assert_eq!(
            server.incoming.capacity() + server.plain.capacity() + server.outgoing.capacity(),
            0
        );
        assert!(!server.has_buffered());
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        client.write_all(b"again").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"again");
    }

    #[tokio::test]
    async fn a_client_key_update_is_followed() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server, client) = pair(pki.server, pki.client).await;
        let ((mut server, _), mut client) = (server.unwrap(), client.unwrap());
        for round in 0..3u8 {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            client.write_all(&[round; 10]).await.unwrap();
            client.flush().await.unwrap();
            let mut buf = [0u8; 10];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, [round; 10]);
            server.write_all(&[round + 1; 3]).await.unwrap();
            server.flush().await.unwrap();
            let mut back = [0u8; 3];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round + 1; 3]);
        }
    }

    #[tokio::test]
    async fn a_refused_handshake_names_the_reason_and_alerts_the_client() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server, client) = pair(pki.server, pki.anonymous).await;
        let e = server.unwrap_err();
        assert_eq!(crate::tls::handshake_failure_reason(&e), "no_certificate");
        // TLS 1.3: the client finished its side; the alert is what it reads.
        let mut client = client.unwrap();
        let mut buf = [0u8; 1];
        let e = client.read(&mut buf).await.unwrap_err();
        assert!(
            e.to_string().contains("CertificateRequired"),
            "the client saw {e}, not the server's alert"
        );
    }

    #[tokio::test]
    async fn garbage_instead_of_a_client_hello_is_refused() {
        let pki = pki(&[&rustls::version::TLS13]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut raw = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let e = ServerTls::accept(tcp, pki.server).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
