//! A real HTTP receiver on 127.0.0.1 that answers from a script and records every request.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, handler};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Status with a `Retry-After` header (seconds).
    RetryAfter(u16, u64),
    /// Wait this long, then 200 (to trip the client's timeout).
    Hang(Duration),
}

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    fallback: Option<Reply>,
    received: Vec<Received>,
}

/// The running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[handler]
async fn receive(req: &Request, body: Vec<u8>, state: Data<&Arc<Mutex<State>>>) -> Response {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let reply = {
        let mut s = state.lock().expect("receiver state");
        s.received.push(Received {
            at: Instant::now(),
            headers,
            body,
        });
        s.script
            .pop_front()
            .or_else(|| s.fallback.clone())
            .unwrap_or(Reply::Status(200))
    };
    let (code, retry_after) = match reply {
        Reply::Status(c) => (c, None),
        Reply::RetryAfter(c, secs) => (c, Some(secs)),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            (200, None)
        }
    };
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/plain")
        .body(if code < 300 { "Received" } else { "Nope" });
    if let Some(secs) = retry_after {
        resp.headers_mut().insert("retry-after", secs.into());
    }
    resp
}

impl Receiver {
    /// Starts a receiver answering `script` in order, then `fallback` (200 if none).
    pub async fn start(script: Vec<Reply>, fallback: Option<Reply>) -> Self {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            fallback,
            received: Vec::new(),
        }));
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind receiver");
        let addr = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("socket addr");
        let app = Route::new().at("/*path", receive).data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { addr, state }
    }

    /// A receiver that always answers 200.
    pub async fn ok() -> Self {
        Self::start(Vec::new(), None).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("receiver state").received.clone()
    }

    /// Waits until at least `n` requests arrived (or `timeout` passes) and returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
