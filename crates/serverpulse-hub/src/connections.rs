//! Serving HTTP/1 connections: an idle one costs its socket alone, and is closed once it
//! has waited [`IDLE_TIMEOUT`] for a request.
//!
//! Agents keep their connection after a report (ureq pools it) and come back 30 s later,
//! when their pool finds it too old and opens another. A hub that kept every idle
//! connection open (axum's `serve` has no such limit) held one per agent: a file
//! descriptor each (a fleet past the usual 1,024 stopped being accepted) and ~28 KB
//! of buffers and task each, which at 100,000 agents is gigabytes. Closing a connection
//! idle for a few seconds keeps the ones in use (a report and the requests right
//! after it, a browser loading a page) and lets the rest go. A client reusing a pooled
//! connection first checks it is still open (ureq does), so a closed one is not used.
//!
//! Even those few seconds are thousands of connections: a fleet of 100,000 agents opens
//! 3,333 a second. hyper holds 16 KB of buffers for a connection from its first byte to
//! its close, so between requests a connection is *parked*: hyper is let go (its
//! connection is told to stop while idle, which hands the socket back untouched, with
//! any bytes read but not yet parsed), and only the socket is kept until the client
//! writes again — then a new hyper connection serves it. Whether hyper is idle is
//! watched from outside it ([`Exchange`]): no request unanswered, the answer all
//! written to the socket, and nothing read since.
//!
//! The same limit bounds how long a client may take to send a request's head at all.
//! Responses are not limited: a live feed streams for as long as it is watched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a connection may wait for its next request (or for the rest of one's head).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on every connection `listener` accepts, with the client's address as
/// [`ConnectInfo`], until `shutdown` resolves; then lets each connection finish the
/// request it is answering and returns once all are closed.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    let mut builder = http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(IDLE_TIMEOUT);
    let builder = Arc::new(builder);
    // Connections hold a receiver each: the sender closes when the last one is gone.
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, client)) => {
                let connection =
                    Connection { client, app: app.clone(), builder: builder.clone(), stopping: stopping.clone() };
                tokio::spawn(connection.serve(stream));
            }
            Err(error) => wait_after_accept_error(&error).await,
        }
    }
    // New connections are refused from now on, not left waiting in the backlog.
    drop(listener);
    drop(stopping);
    let _ = stop.send(true);
    stop.closed().await;
}

/// One client's connection, and what serving it takes.
struct Connection {
    client: SocketAddr,
    app: Router,
    builder: Arc<http1::Builder>,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// Serves `stream` until the client closes it, it idles past [`IDLE_TIMEOUT`], it
    /// fails, or the hub stops.
    async fn serve(mut self, mut stream: TcpStream) {
        let mut unparsed = Bytes::new();
        loop {
            // Parked: the socket alone, until the client writes.
            if unparsed.is_empty() {
                tokio::select! {
                    readable = tokio::time::timeout(IDLE_TIMEOUT, stream.readable()) => {
                        if !matches!(readable, Ok(Ok(()))) {
                            return;
                        }
                    }
                    _ = self.stopping.changed() => return,
                }
            }
            match self.serve_until_idle(stream, unparsed).await {
                Some(parked) => (stream, unparsed) = parked,
                None => return,
            }
        }
    }

    /// Serves requests on `stream` (whose first bytes, read already, are `unparsed`)
    /// with hyper until the connection is idle between two requests, and then returns
    /// the socket and any bytes read but not parsed; `None` once it is closed.
    async fn serve_until_idle(&mut self, stream: TcpStream, unparsed: Bytes) -> Option<(TcpStream, Bytes)> {
        let exchange = Arc::new(Exchange::default());
        let io = TokioIo::new(WatchedStream { stream, unparsed, exchange: exchange.clone() });
        let (client, app, answered) = (self.client, self.app.clone(), exchange.clone());
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let answering = Answering::begin(&answered);
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(client));
            // A router is always ready: no `poll_ready` needed before `call`.
            let mut app = app.clone();
            Box::pin(async move {
                let response = tower_service::Service::call(&mut app, request).await.unwrap_or_else(|e| match e {});
                Ok::<_, Infallible>(response.map(|body| AnsweredWhenDropped { body, _answering: answering }))
            })
        });
        // Boxed, so that a parked connection's task does not keep room for it.
        let mut connection = Box::new(self.builder.serve_connection(io, service));
        let mut stop = std::pin::pin!(self.stopping.changed());
        let (mut stop_asked, mut parking) = (false, false);
        let served = std::future::poll_fn(|cx| {
            if !stop_asked && stop.as_mut().poll(cx).is_ready() {
                stop_asked = true;
                Pin::new(&mut *connection).graceful_shutdown();
            }
            loop {
                if let Poll::Ready(result) = connection.poll_without_shutdown(cx) {
                    return Poll::Ready(result);
                }
                if stop_asked || parking || !exchange.is_idle() {
                    return Poll::Pending;
                }
                // hyper closes an idle connection at once when told to stop, without
                // touching the socket (polled without shutdown).
                parking = true;
                Pin::new(&mut *connection).graceful_shutdown();
            }
        })
        .await;
        if let Err(error) = served {
            // A timeout, a client gone: nothing to report.
            tracing::trace!(%error, "connection ended");
            return None;
        }
        if !parking || stop_asked {
            // hyper closed it (the client asked to), or the hub is stopping: a stop
            // seen here is not seen again by the parked connection's wait.
            return None;
        }
        let parts = connection.into_parts();
        let WatchedStream { stream, unparsed: not_yet_given, .. } = parts.io.into_inner();
        // Copied out (nothing, almost always): a slice of hyper's read buffer would keep
        // all of its 8 KB while the connection is parked.
        let unparsed = [&parts.read_buf[..], &not_yet_given[..]].concat();
        Some((stream, unparsed.into()))
    }
}

/// What a connection's hyper is doing, as seen from its socket and its service.
struct Exchange {
    /// Requests begun and not yet answered in full.
    unanswered: AtomicUsize,
    /// Whether a request has been answered (hyper waits for the first one otherwise).
    answered_one: AtomicBool,
    /// Whether every byte written since the last answer ended has reached the socket.
    flushed: AtomicBool,
    /// Whether bytes were read since the last answer ended (a next request begun).
    heard: AtomicBool,
}

impl Default for Exchange {
    fn default() -> Self {
        Self {
            unanswered: AtomicUsize::new(0),
            answered_one: AtomicBool::new(false),
            flushed: AtomicBool::new(true),
            heard: AtomicBool::new(false),
        }
    }
}

impl Exchange {
    /// Between requests: the last answer sent in full and nothing of a next one read.
    fn is_idle(&self) -> bool {
        self.answered_one.load(Ordering::Relaxed)
            && self.unanswered.load(Ordering::Relaxed) == 0
            && self.flushed.load(Ordering::Relaxed)
            && !self.heard.load(Ordering::Relaxed)
    }
}

/// A request being answered, from the service's call until hyper drops its response
/// body (written in full, or the connection failed).
struct Answering(Arc<Exchange>);

impl Answering {
    fn begin(exchange: &Arc<Exchange>) -> Self {
        exchange.unanswered.fetch_add(1, Ordering::Relaxed);
        Self(exchange.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let exchange = &self.0;
        if exchange.unanswered.fetch_sub(1, Ordering::Relaxed) == 1 {
            // hyper writes the answer's last bytes after dropping its body.
            exchange.flushed.store(false, Ordering::Relaxed);
            exchange.heard.store(false, Ordering::Relaxed);
            exchange.answered_one.store(true, Ordering::Relaxed);
        }
    }
}

/// A response body that marks its request answered when hyper is done with it.
struct AnsweredWhenDropped {
    body: axum::body::Body,
    _answering: Answering,
}

impl Body for AnsweredWhenDropped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket as hyper sees it: bytes read before hyper took it
/// (`unparsed`) come first, and what passes through is noted in the [`Exchange`].
struct WatchedStream {
    stream: TcpStream,
    unparsed: Bytes,
    exchange: Arc<Exchange>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.unparsed.is_empty() {
            let n = self.unparsed.len().min(buf.remaining());
            buf.put_slice(&self.unparsed.split_to(n));
            self.exchange.heard.store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.exchange.heard.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// hyper flushes its socket once its own buffer is written out: the answer so far
    /// has left.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.exchange.flushed.store(true, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Connections the kernel may hold for the hub before it accepts them. tokio's `bind`
/// asks for 1,024: a fleet of 100,000 agents opens ~3,300 connections a second, so a
/// third of a second's lag of the accept loop (a busy bucket boundary) overflowed it,
/// and agents saw connections dropped. Linux caps it at `net.core.somaxconn` (4,096 on
/// current kernels).
const LISTEN_BACKLOG: u32 = 8_192;

/// Listens on `address` with room for [`LISTEN_BACKLOG`] connections not yet accepted.
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As tokio's and std's `bind` do: a restarted hub rebinds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises this process's soft limit on open files to its hard limit, as a server that
/// holds a descriptor per connection should: the usual soft limit (1,024) is a few
/// seconds of a large fleet's reports, while services get a hard limit of 524,288 from
/// systemd. The limits found and set are logged; a failure leaves them as they were.
pub fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    /// Linux's own ceiling (`fs.nr_open`) unless raised: the most an unlimited hard
    /// limit allows.
    const KERNEL_DEFAULT_CEILING: u64 = 1 << 20;
    let Rlimit { current: Some(soft), maximum } = getrlimit(Resource::Nofile) else {
        return;
    };
    let hard = maximum.unwrap_or(KERNEL_DEFAULT_CEILING);
    if soft >= hard {
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum }) {
        Ok(()) => tracing::debug!(from = soft, to = hard, "open files limit raised"),
        Err(error) => tracing::warn!(%error, soft, hard, "cannot raise the open files limit"),
    }
}

/// After an accept error, carries on at once when it concerned that connection alone,
/// and after a second otherwise (out of file descriptors, say: some may be closed by
/// then), as axum's `serve` does.
async fn wait_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
