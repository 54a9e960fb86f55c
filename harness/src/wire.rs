//! One keep-alive HTTP/1.1 connection driven by hand (hyper's client connection, no pool), for
//! load generators that must know when a request is written on an open connection: its
//! latency is measured from there, and the time spent (re)connecting is the client's own.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request as the generator sends it.
pub type Request = hyper::Request<Full<Bytes>>;

/// What came back for one request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Whether the answer carried `Retry-After`.
    pub retry_after: bool,
    /// The whole body.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    /// The connection could not be opened.
    #[error("connect: {0}")]
    Connect(String),
    /// No answer within the client timeout.
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    /// The connection failed or was closed while the request was under way.
    #[error("transport: {0}")]
    Transport(String),
}

/// A keep-alive connection to one server, reopened when the server has closed it.
pub struct Wire {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Wire {
    /// A connection to `addr`, opened on first use.
    pub fn to(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    /// Makes the connection ready to write a request: reuses it while the server keeps it
    /// open, opens a new one otherwise.
    pub async fn ready(&mut self) -> Result<(), WireError> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_ok()
        {
            return Ok(());
        }
        self.sender = None;
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| WireError::Connect(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| WireError::Connect(e.to_string()))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| WireError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Writes `request` on the ready connection and reads the whole answer, within `timeout`;
    /// call [`ready`](Self::ready) first. After a failure the connection is dropped.
    pub async fn exchange(
        &mut self,
        request: Request,
        timeout: Duration,
    ) -> Result<Answer, WireError> {
        let Some(sender) = &mut self.sender else {
            return Err(WireError::Transport("not connected".to_owned()));
        };
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| WireError::Transport(e.to_string()))?;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| WireError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        let answer = match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(WireError::Timeout(timeout)),
        };
        if answer.is_err() {
            self.sender = None;
        }
        answer
    }
}
