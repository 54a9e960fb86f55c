//! The connection cap: at most `MAX_CONNECTIONS` client connections are served at once; each
//! one past it gets one `503 overloaded` answer with `Retry-After` and is closed, so an idle
//! flood of keep-alive connections cannot grow the api's memory and a client is told. Refusals
//! are bounded too: past them, new connections wait in the listen queue (completed by the
//! kernel, their requests in its buffers) rather than being dropped unanswered.

use std::io::Result as IoResult;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, response_for};
use crate::overload::Kind;

/// Connections being refused at once, at most: a refusal is one short answer, so a few suffice
/// to keep up, and the others wait in the listen queue instead of holding memory here.
const MAX_REFUSING: usize = 64;
/// How long a refused connection may take to send its request before it is dropped.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP acceptor that serves at most `max` connections at once and answers the others 503.
pub struct CappedAcceptor {
    inner: TcpAcceptor,
    open: Arc<Semaphore>,
    /// Refusals under way, at most [`MAX_REFUSING`]: past both bounds, connections wait in the
    /// listen queue.
    refusing: Arc<Semaphore>,
}

impl CappedAcceptor {
    /// Caps `inner` at `max` connections.
    pub fn new(inner: TcpAcceptor, max: usize) -> Self {
        Self {
            inner,
            open: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(max.min(MAX_REFUSING))),
        }
    }
}

impl Acceptor for CappedAcceptor {
    type Io = Counted;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> IoResult<(Counted, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            // Past both bounds, the next connection waits in the listen queue (the kernel holds
            // it; its request waits in the socket buffer) until a refusal or a connection ends,
            // rather than being dropped: a dropped connection is an error to the client, not
            // an answer it can act on.
            let (served, refusing) = tokio::select! {
                biased;
                Ok(p) = self.open.clone().acquire_owned() => (Some(p), None),
                Ok(p) = self.refusing.clone().acquire_owned() => (None, Some(p)),
                else => return Err(std::io::Error::other("the connection cap was closed")),
            };
            let (stream, local, remote, scheme) = self.inner.accept().await?;
            let served = served.or_else(|| self.open.clone().try_acquire_owned().ok());
            match served {
                Some(permit) => {
                    let counted = Counted {
                        stream,
                        _permit: permit,
                    };
                    return Ok((counted, local, remote, scheme));
                }
                None => {
                    if let Some(permit) = refusing {
                        tokio::spawn(refuse(stream, permit));
                    }
                }
            }
        }
    }
}

/// Answers the connection's first request `503 overloaded` and closes it.
async fn refuse(stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let service = hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
        Kind::of(req.method(), req.uri().path()).count_overloaded();
        let refusal = response_for(ApiError::Overloaded);
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = refusal.status();
        *response.headers_mut() = refusal.headers().clone();
        let body = refusal.into_body().into_bytes().await.unwrap_or_default();
        *response.body_mut() = Full::new(body);
        Ok::<_, std::convert::Infallible>(response)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, connection).await;
}

/// A served connection; dropping it (when the connection ends) frees its place under the cap.
pub struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<IoResult<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<IoResult<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<IoResult<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
