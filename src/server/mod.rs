//! The HTTP side of the server elements (whipserversrc, whepserversink):
//! POST an offer → 201 + answer + Location + ETag, DELETE, OPTIONS, optional
//! Bearer auth, CORS for browser pages. What a POST does is up to the
//! element, through `Handler`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};

use crate::protocol::AuthToken;
use crate::runtime::RUNTIME;

/// Offers are a few KiB; anything far larger is not an offer.
const MAX_BODY: usize = 256 * 1024;

/// Why the element refused an offer; sent as an RFC 9457 problem+json body.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub retry_after: Option<u32>,
}

impl Refusal {
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub trait Handler: Send + Sync + 'static {
    /// A POSTed offer on `path`; the resource will live at `location`.
    /// Returns the answer SDP.
    fn offer(
        &self,
        path: String,
        location: String,
        offer: String,
    ) -> BoxFuture<Result<String, Refusal>>;
    /// DELETE of a resource: false if unknown (404).
    fn delete(&self, location: &str) -> bool;
    /// GET of any other path (a page, say). None: 404.
    fn get(&self, _path: &str) -> Option<(&'static str, Bytes)> {
        None
    }
}

struct Shared {
    token: Option<AuthToken>,
    handler: Arc<dyn Handler>,
}

/// A listening server; stops (and drops every connection) when dropped.
pub struct HttpServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds synchronously, so that a busy port is an error at once.
    pub fn bind(
        addr: &str,
        token: Option<AuthToken>,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<HttpServer> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let _guard = RUNTIME.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let shared = Arc::new(Shared { token, handler });
        let task = RUNTIME.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        connections.spawn(async move {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let service = hyper::service::service_fn(move |req| {
                                let shared = shared.clone();
                                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(HttpServer { local_addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn response(
    status: StatusCode,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("Access-Control-Allow-Origin", "*")
        .header(
            "Access-Control-Expose-Headers",
            "Location, ETag, Link, Accept-Patch",
        );
    if let Some(ct) = content_type {
        builder = builder.header("Content-Type", ct);
    }
    builder.body(Full::new(body.into())).unwrap()
}

fn problem(refusal: &Refusal) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": "about:blank",
        "status": refusal.status,
        "title": refusal.title,
        "detail": refusal.detail,
    });
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = response(status, Some("application/problem+json"), body.to_string());
    if let Some(secs) = refusal.retry_after {
        resp.headers_mut().insert("Retry-After", secs.into());
    }
    if refusal.status == 401 {
        resp.headers_mut()
            .insert("WWW-Authenticate", "Bearer".parse().unwrap());
    }
    resp
}

fn authorized(shared: &Shared, req: &Request<hyper::body::Incoming>) -> bool {
    let Some(token) = &shared.token else {
        return true;
    };
    let expected = format!("Bearer {}", token.expose());
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .is_some_and(|v| {
            // Constant-time compare; lengths are not secret.
            v.as_bytes().len() == expected.len()
                && openssl::memcmp::eq(v.as_bytes(), expected.as_bytes())
        })
}

fn new_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = openssl::rand::rand_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(shared: &Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    if req.method() == Method::OPTIONS {
        // CORS preflight or WHIP OPTIONS: never requires auth (RFC 9725 §4.7).
        let mut resp = response(StatusCode::NO_CONTENT, None, Bytes::new());
        let h = resp.headers_mut();
        h.insert("Accept-Post", "application/sdp".parse().unwrap());
        h.insert("Allow", "OPTIONS, POST, DELETE, PATCH".parse().unwrap());
        h.insert(
            "Access-Control-Allow-Methods",
            "OPTIONS, POST, DELETE, PATCH".parse().unwrap(),
        );
        h.insert(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, If-Match".parse().unwrap(),
        );
        return resp;
    }
    if req.method() == Method::GET {
        return match shared.handler.get(req.uri().path()) {
            Some((ct, body)) => response(StatusCode::OK, Some(ct), body),
            None => problem(&Refusal::new(404, "Not Found", "no such page")),
        };
    }
    if !authorized(shared, &req) {
        return problem(&Refusal::new(
            401,
            "Unauthorized",
            "missing or wrong Bearer token",
        ));
    }
    match *req.method() {
        Method::POST => {
            let is_sdp = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/sdp")
                });
            if !is_sdp {
                return problem(&Refusal::new(
                    415,
                    "Unsupported Media Type",
                    "the offer must be application/sdp",
                ));
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return problem(&Refusal::new(413, "Content Too Large", "offer too large"))
                }
            };
            let offer = String::from_utf8_lossy(&body).into_owned();
            let id = new_id();
            let location = format!("{path}/{id}");
            match shared.handler.offer(path, location.clone(), offer).await {
                Ok(answer) => {
                    let mut resp = response(StatusCode::CREATED, Some("application/sdp"), answer);
                    let h = resp.headers_mut();
                    h.insert("Location", location.parse().unwrap());
                    h.insert("ETag", format!("\"{id}\"").parse().unwrap());
                    resp
                }
                Err(refusal) => problem(&refusal),
            }
        }
        Method::DELETE => {
            if shared.handler.delete(&path) {
                response(StatusCode::OK, None, Bytes::new())
            } else {
                problem(&Refusal::new(404, "Not Found", "no such session"))
            }
        }
        // Our answers carry every candidate; trickle and ICE restart are not
        // offered (clients then keep the session, RFC 9725 §4.3.1).
        Method::PATCH => problem(&Refusal::new(
            405,
            "Method Not Allowed",
            "trickle ICE is not supported",
        )),
        _ => problem(&Refusal::new(
            405,
            "Method Not Allowed",
            "use POST, DELETE or OPTIONS",
        )),
    }
}

/// How long a client may take to connect after its answer.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A server-side peer's life after its answer. Resolves with why it ended:
/// its connection failed or closed, or `max` passed, in which case
/// `at_cap` runs first (and is awaited). `on_connected` runs once connected.
/// None: the peer was closed by us.
pub async fn peer_lifetime<C>(
    peer: &crate::peer::Peer,
    max: Option<std::time::Duration>,
    on_connected: impl FnOnce(),
    at_cap: C,
) -> Option<String>
where
    C: Future<Output = ()>,
{
    use crate::session::{wait_connected, wait_disconnected};
    match wait_connected(peer, CONNECT_LIMIT).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => return Some(e.to_string()),
    }
    on_connected();
    let cap = async {
        match max {
            Some(max) => tokio::time::sleep(max).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        state = wait_disconnected(peer) => Some(format!("connection {state:?}")),
        _ = cap => {
            at_cap.await;
            Some(format!("max-session-duration ({} s) reached", max.unwrap_or_default().as_secs()))
        }
    }
}
