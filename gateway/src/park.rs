//! Parking idle HTTP/1.1 connections: between requests, hyper's state for a
//! connection (a 16 KiB read buffer, an 8 KiB write buffer, the dispatcher)
//! is most of what the connection costs, and keep-alive clients (agents,
//! services) leave connections idle for hours. Once a connection has been
//! quiet for [`QUIET`] with nothing in flight, [`H1`] takes the TLS stream
//! back from hyper (`into_parts`), keeps the bytes hyper had read but not
//! used, drops everything else (the TLS stream's buffers and the
//! connection's caches too), and waits for the socket to become
//! readable; then a fresh hyper connection starts with those bytes replayed
//! first. Upgraded connections (WebSockets) end hyper's connection and are
//! never parked; HTTP/2 is multiplexed and not parked.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::io::AsyncWrite;

use crate::idle::{Activity, InFlight, Tracked};
use crate::recheck::{BoxError, OpenStreams};

/// How long a connection must carry no bytes, with nothing in flight,
/// before it is parked. Long enough that a client sending requests back to
/// back, or a burst of them, keeps its hyper state (the gap between its
/// requests is a round trip, far below this). Short, because every
/// connection waiting out this period still holds ~27 KB of hyper buffers:
/// when many clients connect at once (a fleet of agents after a restart)
/// the buffers of all connections of the last `QUIET` add up, and the
/// allocator keeps that peak resident for a while. Measured with
/// `ward-bench idle` (1000 connections): 100 ms cost ~1 KB more per idle
/// connection than 20 ms. A park and resume costs two buffer allocations
/// and a copy of the stream; a client sending every 50 ms (so parking each
/// time) showed no CPU difference per request within the noise of
/// `cpu.sh` at 640 requests/s.
pub const QUIET: Duration = Duration::from_millis(25);

/// How long a parked connection that must close gets to send its TLS
/// close_notify before it is dropped (the peer may not read).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The client's TLS stream.
pub type Tls = crate::tls_stream::ServerTls;

type Io = TokioIo<Tracked<Tls>>;

enum State<S: HttpService<Incoming>> {
    Live(Box<http1::UpgradeableConnection<Io, S>>),
    Parked(Box<Tracked<Tls>>),
    Closing(Box<Tracked<Tls>>),
    Done,
}

/// An HTTP/1.1 connection that parks when idle (see the module docs).
pub struct H1<S: HttpService<Incoming>> {
    state: State<S>,
    builder: Arc<http1::Builder>,
    service: S,
    activity: Arc<Activity>,
    header_timeout: Duration,
    parked: IntGauge,
    peer: SocketAddr,
    /// Its per-connection caches are dropped while parked.
    streams: Arc<OpenStreams>,
    /// Quiet period, header deadline or close grace, whichever is next.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: HttpService<Incoming>> Drop for H1<S> {
    fn drop(&mut self) {
        if matches!(self.state, State::Parked(_)) {
            self.parked.dec();
        }
    }
}

/// What to do after looking at the connection.
enum Step {
    Pending,
    Again,
    Park,
    Resume,
    Close(&'static str),
    Done(Result<(), hyper::Error>),
}

impl<S, B> H1<S>
where
    S: HttpService<Incoming, ResBody = B> + Clone + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    /// Starts serving `io` (whose activity is `activity`). `builder` is
    /// used again for every resume; `header_timeout` bounds a request head
    /// across parking as hyper's own timer bounds it within one hyper
    /// connection. `streams` is the connection's registry, whose caches
    /// are dropped on parking.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        builder: Arc<http1::Builder>,
        io: Tracked<Tls>,
        service: S,
        activity: Arc<Activity>,
        header_timeout: Duration,
        parked: IntGauge,
        peer: SocketAddr,
        streams: Arc<OpenStreams>,
    ) -> H1<S> {
        let conn = builder
            .serve_connection(TokioIo::new(io), service.clone())
            .with_upgrades();
        H1 {
            state: State::Live(Box::new(conn)),
            builder,
            service,
            activity,
            header_timeout,
            parked,
            peer,
            streams,
            timer: None,
        }
    }

    /// Whether the connection is parked now.
    pub fn is_parked(&self) -> bool {
        matches!(self.state, State::Parked(_))
    }

    /// Closes the connection without cutting a request: hyper finishes the
    /// one in flight; a parked connection has none and closes at once.
    pub fn graceful_shutdown(&mut self) {
        match &mut self.state {
            State::Live(conn) => Pin::new(&mut **conn).graceful_shutdown(),
            State::Parked(_) => self.close(),
            State::Closing(_) | State::Done => {}
        }
    }

    /// Drives the connection; ready when it has ended.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        loop {
            let step = match &mut self.state {
                State::Live(conn) => {
                    let epoch = self.activity.epoch();
                    match Pin::new(&mut **conn).poll(cx) {
                        Poll::Ready(r) => Step::Done(r),
                        Poll::Pending if self.activity.epoch() != epoch => {
                            // A request ended while hyper was polled (its
                            // body may have ended in another task): let
                            // hyper see that before deciding anything.
                            Step::Again
                        }
                        Poll::Pending => self.live_step(cx),
                    }
                }
                State::Parked(io) => {
                    let tls = io.get_ref();
                    // Decrypted bytes (or the peer's close_notify) may be
                    // held already: then there is nothing to wait for on
                    // the socket.
                    if tls.has_buffered() || tls.tcp().poll_read_ready(cx).is_ready() {
                        Step::Resume
                    } else {
                        self.head_step(cx, Instant::now(), None)
                    }
                }
                State::Closing(io) => match Pin::new(&mut **io).poll_shutdown(cx) {
                    Poll::Ready(_) => Step::Done(Ok(())),
                    Poll::Pending => match self.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                        Some(Poll::Pending) => Step::Pending,
                        _ => Step::Done(Ok(())),
                    },
                },
                State::Done => Step::Done(Ok(())),
            };
            match step {
                Step::Pending => return Poll::Pending,
                Step::Again => {}
                Step::Park => self.park(),
                Step::Resume => self.resume(),
                Step::Close(why) => {
                    tracing::debug!(peer = %self.peer, why, "closing HTTP/1.1 connection");
                    self.close();
                }
                Step::Done(r) => {
                    self.set_state(State::Done);
                    self.timer = None;
                    return Poll::Ready(r);
                }
            }
        }
    }

    /// hyper is waiting: park, close for a slow head, or wait for the
    /// quiet period to end.
    fn live_step(&mut self, cx: &mut Context<'_>) -> Step {
        let a = &self.activity;
        if !a.no_request() {
            // hyper wakes the task as the request moves on.
            return Step::Pending;
        }
        let now = Instant::now();
        let mut wake = None;
        if a.between_requests() {
            let quiet_until = a.last() + QUIET;
            if now >= quiet_until {
                return Step::Park;
            }
            wake = Some(quiet_until);
        }
        self.head_step(cx, now, wake)
    }

    /// Closes when the request head being read is past its deadline;
    /// otherwise waits for that deadline or `wake`, whichever is first.
    fn head_step(&mut self, cx: &mut Context<'_>, now: Instant, wake: Option<Instant>) -> Step {
        let mut wake = wake;
        if let Some(from) = self.activity.head_from() {
            let deadline = from + self.header_timeout;
            if now >= deadline {
                return Step::Close("request head not complete within the header read timeout");
            }
            wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
        }
        let Some(at) = wake else {
            self.timer = None;
            return Step::Pending;
        };
        let at = tokio::time::Instant::from_std(at);
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() != at {
                    t.as_mut().reset(at);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Step::Again,
            Poll::Pending => Step::Pending,
        }
    }

    fn set_state(&mut self, state: State<S>) {
        let was = matches!(self.state, State::Parked(_));
        self.state = state;
        match (was, matches!(self.state, State::Parked(_))) {
            (false, true) => self.parked.inc(),
            (true, false) => self.parked.dec(),
            _ => {}
        }
    }

    /// Takes the stream back from hyper with the bytes it had not used.
    fn take_io(&mut self) -> Option<Tracked<Tls>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Live(conn) => {
                let parts = conn.into_parts()?;
                let mut io = parts.io.into_inner();
                if !parts.read_buf.is_empty() {
                    // A partial request head: its header-read clock keeps
                    // running while parked.
                    self.activity.head_pending();
                }
                // Copied: `read_buf` is a view into hyper's whole read
                // buffer, which would otherwise stay allocated.
                let mut replay = Vec::with_capacity(parts.read_buf.len() + io.replay().len());
                replay.extend_from_slice(&parts.read_buf);
                replay.extend_from_slice(io.replay());
                io.set_replay(Bytes::from(replay));
                Some(io)
            }
            State::Parked(io) => {
                self.parked.dec();
                Some(*io)
            }
            State::Closing(io) => Some(*io),
            State::Done => None,
        }
    }

    fn park(&mut self) {
        self.timer = None;
        if let Some(mut io) = self.take_io() {
            // The TLS buffers and the per-connection caches go too: the
            // next request allocates them again, and signs one assertion.
            io.get_mut().release_buffers();
            self.streams.forget_caches();
            tracing::debug!(peer = %self.peer, left = io.replay().len(), "parked idle HTTP/1.1 connection");
            self.set_state(State::Parked(Box::new(io)));
        }
    }

    fn resume(&mut self) {
        if let Some(io) = self.take_io() {
            tracing::trace!(peer = %self.peer, "resuming parked HTTP/1.1 connection");
            let conn = self
                .builder
                .serve_connection(TokioIo::new(io), self.service.clone())
                .with_upgrades();
            self.set_state(State::Live(Box::new(conn)));
        }
    }

    /// Sends close_notify and closes, bounded by [`CLOSE_GRACE`].
    fn close(&mut self) {
        match self.take_io() {
            Some(io) => {
                self.timer = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                self.set_state(State::Closing(Box::new(io)));
            }
            None => self.set_state(State::Done),
        }
    }
}

/// A request or response body that keeps its request in flight (and the
/// connection unparked) until it ends or is dropped.
#[derive(Debug)]
pub struct Guarded<B> {
    inner: B,
    guard: InFlight,
}

impl<B: Body> Guarded<B> {
    /// Wraps `inner`; a body that is already at its end releases at once.
    pub fn new(inner: B, mut guard: InFlight) -> Guarded<B> {
        if inner.is_end_stream() {
            guard.release();
        }
        Guarded { inner, guard }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard.release();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
