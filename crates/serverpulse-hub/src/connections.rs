//! Serving HTTP/1 connections, each closed once it has waited [`IDLE_TIMEOUT`] for a
//! request.
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
//! The same limit bounds how long a client may take to send a request's head at all.
//! Responses are not limited: a live feed streams for as long as it is watched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use tokio::net::{TcpListener, TcpStream};

/// How long a connection may wait for its next request (or for the rest of one's head).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on every connection `listener` accepts, with the client's address as
/// [`ConnectInfo`], until `shutdown` resolves; then lets each connection finish the
/// request it is answering and returns once all are closed.
pub async fn serve(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    // Connections hold a receiver each: the sender closes when the last one is gone.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, client)) => {
                tokio::spawn(serve_connection(stream, client, app.clone(), stopping.clone()));
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

async fn serve_connection(
    stream: TcpStream,
    client: SocketAddr,
    app: Router,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(client));
        // A router is always ready: no `poll_ready` needed before `call`.
        let mut app = app.clone();
        async move {
            Ok::<_, Infallible>(tower_service::Service::call(&mut app, request).await.unwrap_or_else(|e| match e {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(IDLE_TIMEOUT);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut stop_asked = false;
    loop {
        tokio::select! {
            // An idle connection's timeout, a client gone: nothing to report.
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%error, "connection ended");
                }
                break;
            }
            changed = stopping.changed(), if !stop_asked => {
                stop_asked = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
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
