//! Idle detection for client connections: an I/O wrapper that records when
//! bytes last moved, so the connection loop can close keep-alive and HTTP/2
//! connections that carry nothing (a slowloris holding sockets open after
//! its handshake, or simply forgotten clients).
//!
//! The same wrapper tells [`crate::park`] when an HTTP/1.1 connection is
//! between requests (nothing in flight, everything written and flushed,
//! hyper waiting for bytes), which is when hyper's buffers can be dropped,
//! and replays the bytes hyper had read but not used when a parked
//! connection resumes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `head_from_ms` when no request head is being read.
const NO_HEAD: u64 = u64::MAX;

/// What the connection's I/O and its requests have been doing. Shared
/// (atomics) because request and response bodies may end in other tasks
/// (the upstream client holds the request body).
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    /// Requests whose request body or response body is still alive, as
    /// started and finished counts: `finished` doubles as an epoch that
    /// tells whether one ended while hyper was being polled.
    started: AtomicU64,
    finished: AtomicU64,
    /// When the first byte of a request head not yet complete was read.
    head_from_ms: AtomicU64,
    /// The last read returned `Pending`: hyper is waiting for bytes.
    read_pending: AtomicBool,
    /// Something was written since the last successful flush.
    dirty: AtomicBool,
    /// hyper started closing the connection.
    shutting_down: AtomicBool,
}

impl Activity {
    /// Starts now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            // The first request head is awaited from the start, as hyper
            // does: a client that completes the handshake and sends
            // nothing is closed after the header read timeout, parked or
            // not. Between later requests only the idle timeout applies.
            head_from_ms: AtomicU64::new(0),
            read_pending: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NO_HEAD - 1)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The instant bytes last moved.
    pub fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// A request head was parsed: its header-read clock stops.
    pub fn head_done(&self) {
        self.head_from_ms.store(NO_HEAD, Ordering::SeqCst);
    }

    /// A partial request head is known to be waiting (bytes left over at
    /// parking): its clock runs from now unless it already runs.
    pub fn head_pending(&self) {
        let _ = self.head_from_ms.compare_exchange(
            NO_HEAD,
            self.now_ms(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// When the first byte of the request head being read arrived, if one
    /// is being read (between requests only).
    pub fn head_from(&self) -> Option<Instant> {
        match self.head_from_ms.load(Ordering::SeqCst) {
            NO_HEAD => None,
            ms => Some(self.start + Duration::from_millis(ms)),
        }
    }

    /// Counts a request (or one of its bodies) as in flight until the
    /// returned guard is dropped or released.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::SeqCst);
        InFlight {
            activity: Some(self.clone()),
        }
    }

    /// How many in-flight guards have ended; changes whenever one ends.
    pub fn epoch(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    /// No request is in flight, hyper wrote and flushed everything, is not
    /// closing, and its last read found nothing to read.
    pub fn between_requests(&self) -> bool {
        self.no_request()
            && self.read_pending.load(Ordering::SeqCst)
            && !self.dirty.load(Ordering::SeqCst)
            && !self.shutting_down.load(Ordering::SeqCst)
    }

    /// No request is in flight.
    pub fn no_request(&self) -> bool {
        self.started.load(Ordering::SeqCst) == self.finished.load(Ordering::SeqCst)
    }
}

/// Keeps a request in flight (see [`Activity::in_flight`]).
#[derive(Debug)]
pub struct InFlight {
    activity: Option<Arc<Activity>>,
}

impl InFlight {
    /// Ends it now (a body reached its end before it was dropped).
    pub fn release(&mut self) {
        if let Some(a) = self.activity.take() {
            a.finished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// Wraps a stream and touches `activity` whenever bytes move.
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Bytes read before parking that hyper had not used yet; read again
    /// first. Boxed: rarely any, and every parked connection holds this.
    replay: Option<Box<Bytes>>,
}

impl<T> Tracked<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Tracked<T> {
        Tracked {
            inner,
            activity,
            replay: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Bytes still to be replayed before the stream is read again.
    pub fn replay(&self) -> &[u8] {
        self.replay.as_deref().map_or(&[], |b| &b[..])
    }

    /// Makes `bytes` the next bytes read (before the stream's own).
    pub fn set_replay(&mut self, bytes: Bytes) {
        self.replay = (!bytes.is_empty()).then(|| Box::new(bytes));
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(replay) = this.replay.as_mut() {
            let n = replay.len().min(buf.remaining());
            buf.put_slice(&replay[..n]);
            replay.advance(n);
            if replay.is_empty() {
                this.replay = None;
            }
            this.activity.read_pending.store(false, Ordering::SeqCst);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let a = &this.activity;
        a.read_pending.store(r.is_pending(), Ordering::SeqCst);
        if buf.filled().len() > before {
            a.touch();
            if a.no_request() {
                // Bytes between requests start a request head: its clock
                // starts with the first of them.
                a.head_pending();
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.activity.dirty.store(true, Ordering::SeqCst);
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.activity.dirty.store(true, Ordering::SeqCst);
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.activity.dirty.store(false, Ordering::SeqCst);
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.activity.shutting_down.store(true, Ordering::SeqCst);
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Replayed bytes come first and in order, then the stream's own; and
    /// the signals that allow parking follow what hyper would do.
    #[tokio::test]
    async fn replays_first_and_tracks_what_parking_needs() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let activity = Activity::new();
        let mut io = Tracked::new(ours, activity.clone());
        // The first request head is awaited from the start.
        assert!(activity.head_from().is_some());
        activity.head_done();
        assert!(activity.head_from().is_none());

        io.set_replay(Bytes::from_static(b"GET / HT"));
        peer.write_all(b"TP/1.1\r\n\r\n").await.unwrap();
        let mut got = vec![0u8; 18];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
        assert!(io.replay().is_empty());
        // Bytes read between requests start the head clock.
        assert!(activity.head_from().is_some());
        activity.head_done();

        // A request in flight (its body alive) forbids parking.
        let mut body = activity.in_flight();
        let epoch = activity.epoch();
        let mut buf = [0u8; 8];
        let pending = futures_poll_read(&mut io, &mut buf);
        assert!(pending);
        assert!(!activity.between_requests());
        // Bytes read while a request is in flight are its body, not a head.
        peer.write_all(b"body").await.unwrap();
        io.read_exact(&mut buf[..4]).await.unwrap();
        assert!(activity.head_from().is_none());
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        body.release();
        assert_ne!(activity.epoch(), epoch);
        assert!(futures_poll_read(&mut io, &mut buf));
        // Written but not flushed: not yet.
        assert!(!activity.between_requests());
        io.flush().await.unwrap();
        assert!(activity.between_requests());
        // Once hyper closes, never.
        io.shutdown().await.unwrap();
        assert!(!activity.between_requests());
    }

    /// Polls one read with a no-op waker; `true` if it was pending.
    fn futures_poll_read(io: &mut Tracked<tokio::io::DuplexStream>, buf: &mut [u8]) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rb = ReadBuf::new(buf);
        Pin::new(io).poll_read(&mut cx, &mut rb).is_pending()
    }

    /// A guard ends its request once, however often it is released.
    #[test]
    fn guards_release_once() {
        let activity = Activity::new();
        let mut g = activity.in_flight();
        assert!(!activity.no_request());
        g.release();
        g.release();
        drop(g);
        assert!(activity.no_request());
        assert_eq!(activity.epoch(), 1);
    }
}
