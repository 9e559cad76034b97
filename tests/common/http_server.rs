//! A programmable HTTP/1.1 server for tests, on 127.0.0.1 with a random port.
//!
//! It records every request (method, path and query, headers, body) and
//! answers with canned replies per `METHOD path` route (the query is not part
//! of the route). Two other modes exist: [`TestServer::mute`] accepts TCP
//! connections and never answers (timeouts), and [`TestServer::raw`] answers
//! every request with the same bytes, exactly as given (header case, odd
//! framing), since hyper always writes header names in lower case.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A canned reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
        }
    }

    /// Adds a header line; call again with the same name for repeated lines.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// `Content-Type: application/sdp` and the body.
    pub fn sdp(self, sdp: &str) -> Reply {
        self.header("content-type", "application/sdp").body(sdp)
    }

    pub fn json(self, json: &str) -> Reply {
        self.header("content-type", "application/json").body(json)
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).into_iter().next()
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<(String, String), VecDeque<Reply>>,
    requests: Vec<Recorded>,
    connections: usize,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestServer {
    /// A server answering from its routes; unknown routes get 404.
    pub async fn start() -> TestServer {
        let (listener, addr) = bind().await;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                lock(&shared).connections += 1;
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    /// A server that accepts connections and never answers.
    pub async fn mute() -> TestServer {
        let (listener, addr) = bind().await;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                lock(&shared).connections += 1;
                held.push(stream);
            }
        });
        TestServer { addr, state, task }
    }

    /// A server answering every request with exactly `response` (which
    /// should say `Connection: close`), then closing the connection.
    pub async fn raw(response: &str) -> TestServer {
        let (listener, addr) = bind().await;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let response = response.as_bytes().to_vec();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                lock(&shared).connections += 1;
                let state = shared.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    if let Some(recorded) = read_raw_request(stream, &response).await {
                        lock(&state).requests.push(recorded);
                    }
                });
            }
        });
        TestServer { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path_and_query` on this server.
    pub fn url(&self, path_and_query: &str) -> url::Url {
        url::Url::parse(&format!("{}{}", self.base(), path_and_query)).expect("test URL")
    }

    /// Answers `method path` with `reply` from now on.
    pub fn on(&self, method: &str, path: &str, reply: Reply) {
        self.on_seq(method, path, vec![reply]);
    }

    /// Answers `method path` with `replies` in order; the last one repeats.
    pub fn on_seq(&self, method: &str, path: &str, replies: Vec<Reply>) {
        lock(&self.state)
            .routes
            .insert((method.to_owned(), path.to_owned()), replies.into());
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|pq| pq.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let key = (recorded.method.clone(), recorded.path().to_owned());
    let reply = {
        let mut state = lock(&state);
        state.requests.push(recorded);
        match state.routes.get_mut(&key) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        }
    }
    .unwrap_or_else(|| Reply::new(404).body("no such route"));
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("valid status");
    for (name, value) in reply.headers {
        response.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            hyper::header::HeaderValue::from_str(&value).expect("header value"),
        );
    }
    Ok(response)
}

/// Reads one request (head and `Content-Length` body), writes `response`.
async fn read_raw_request(mut stream: TcpStream, response: &[u8]) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    stream.write_all(response).await.ok()?;
    let _ = stream.shutdown().await;
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}
