//! The HTTP side of the server elements (whipserversrc, whepserversink):
//! POST an offer → 201 + answer + Location + ETag, DELETE, OPTIONS, optional
//! Bearer auth, CORS for browser pages. What a POST does is up to the
//! element, through `Handler`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};

use crate::protocol::AuthToken;
use crate::runtime::RUNTIME;

pub mod claims;
pub mod direction;

/// Offers are a few KiB; anything far larger is not an offer.
const MAX_BODY: usize = 256 * 1024;

/// Browser pages (plain JavaScript, nothing loaded from elsewhere) that the
/// server elements answer a GET of their path with: each POSTs to the path
/// it was loaded from, so the page's URL is the endpoint's URL.
pub const WHEP_PLAYER_PAGE: &str = include_str!("pages/whep-player.html");
pub const WHIP_PUBLISHER_PAGE: &str = include_str!("pages/whip-publisher.html");
pub const HTML: &str = "text/html; charset=utf-8";

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

pub use crate::runtime::BoxFuture;

/// Runs `f` on a blocking thread: element work (adding a webrtcbin, syncing
/// states, stopping one) never runs on a runtime worker, where it could
/// wait on a streaming thread while HTTP for every client waits on it.
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refusal::new(500, "Internal Server Error", e.to_string()))
}

pub trait Handler: Send + Sync + 'static {
    /// A POSTed offer on `path`; the resource will live at `location`.
    /// Returns the answer SDP. Runs in the connection's task, on a runtime
    /// worker: element work goes through `off_runtime`.
    fn offer(
        &self,
        path: String,
        location: String,
        offer: String,
    ) -> BoxFuture<Result<String, Refusal>>;
    /// DELETE of a resource: false if unknown (404). Runs on a blocking
    /// thread: it may change element states.
    fn delete(&self, location: &str) -> bool;
    /// GET of any other path (a page, say). None: 404.
    fn get(&self, _path: &str) -> Option<(&'static str, Bytes)> {
        None
    }
}

/// An element's share of a listener: the requests under `prefix`.
struct Route {
    id: u64,
    prefix: String,
    token: Option<AuthToken>,
    handler: Arc<dyn Handler>,
}

/// One listening socket, shared by every server element configured with the
/// same address (whipserversrc on /whip and whepserversinks on /whep/<name>
/// make one relay on one port). Stops when its last route goes.
struct Listener {
    local_addr: SocketAddr,
    routes: std::sync::RwLock<Vec<Arc<Route>>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

impl Listener {
    /// The route for `path`: the longest prefix that is `path` or one of
    /// its parent paths.
    fn route(&self, path: &str) -> Option<Arc<Route>> {
        self.routes
            .read()
            .unwrap()
            .iter()
            .filter(|r| {
                r.prefix == "/" || path == r.prefix || path.starts_with(&format!("{}/", r.prefix))
            })
            .max_by_key(|r| r.prefix.len())
            .cloned()
    }
}

static LISTENERS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Listener>>>,
> = std::sync::LazyLock::new(Default::default);
static NEXT_ROUTE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An element's registration on a listener; unregisters when dropped.
pub struct HttpServer {
    listener: Arc<Listener>,
    route: u64,
}

/// `/a/b/` → `/a/b`; `` → `/`.
fn normalize_prefix(prefix: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        "/".into()
    } else if p.starts_with('/') {
        p.into()
    } else {
        format!("/{p}")
    }
}

impl HttpServer {
    /// Serves `handler` for requests under `prefix` on `addr`, sharing the
    /// socket with other elements on the same address. Binds synchronously,
    /// so that a busy port (or a path already served there) is an error at
    /// once. Port 0 always makes a new listener on a free port.
    pub fn bind(
        addr: &str,
        prefix: &str,
        token: Option<AuthToken>,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<HttpServer> {
        let prefix = normalize_prefix(prefix);
        let mut listeners = LISTENERS.lock().unwrap();
        let shared = !addr.ends_with(":0");
        let listener = match listeners
            .get(addr)
            .and_then(std::sync::Weak::upgrade)
            .filter(|_| shared)
        {
            Some(l) => l,
            None => {
                let l = Self::listen(addr)?;
                if shared {
                    listeners.insert(addr.to_string(), Arc::downgrade(&l));
                }
                // Others may join by the address actually bound (port 0).
                listeners.insert(l.local_addr.to_string(), Arc::downgrade(&l));
                l
            }
        };
        let mut routes = listener.routes.write().unwrap();
        if routes.iter().any(|r| r.prefix == prefix) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{prefix} is already served on {addr}"),
            ));
        }
        let id = NEXT_ROUTE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        routes.push(Arc::new(Route {
            id,
            prefix,
            token,
            handler,
        }));
        drop(routes);
        Ok(HttpServer {
            listener,
            route: id,
        })
    }

    fn listen(addr: &str) -> std::io::Result<Arc<Listener>> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let _guard = RUNTIME.enter();
        let socket = tokio::net::TcpListener::from_std(std_listener)?;
        let listener = Arc::new(Listener {
            local_addr,
            routes: Default::default(),
            task: Default::default(),
        });
        // The accept loop holds the listener weakly: dropping the last
        // registration ends it.
        let weak = Arc::downgrade(&listener);
        let task = RUNTIME.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = socket.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let weak = weak.clone();
                        connections.spawn(async move {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let service = hyper::service::service_fn(move |req| {
                                let weak = weak.clone();
                                async move {
                                    Ok::<_, Infallible>(match weak.upgrade() {
                                        Some(l) => handle(&l, req).await,
                                        None => problem(&Refusal::new(503, "Service Unavailable", "the server is stopping")),
                                    })
                                }
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
        *listener.task.lock().unwrap() = Some(task);
        Ok(listener)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.listener
            .routes
            .write()
            .unwrap()
            .retain(|r| r.id != self.route);
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

fn authorized(route: &Route, req: &Request<hyper::body::Incoming>) -> bool {
    let Some(token) = &route.token else {
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

async fn handle(listener: &Listener, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let Some(shared) = listener.route(if path.is_empty() { "/" } else { &path }) else {
        return problem(&Refusal::new(
            404,
            "Not Found",
            "nothing is served on this path",
        ));
    };
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
    if !authorized(&shared, &req) {
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
            // Tearing a peer down changes element states: not on a runtime worker.
            let handler = shared.handler.clone();
            let deleted = tokio::task::spawn_blocking(move || handler.delete(&path))
                .await
                .unwrap_or(false);
            if deleted {
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
    use crate::peer::Connection;
    match peer.wait_connected(CONNECT_LIMIT).await {
        Connection::Connected => {}
        Connection::Closed => return None,
        Connection::Failed(reason) => {
            return Some(reason.unwrap_or_else(|| "ICE/DTLS connection failed".into()))
        }
        Connection::TimedOut => {
            return Some(format!("ICE/DTLS did not connect within {CONNECT_LIMIT:?}"))
        }
    }
    on_connected();
    let cap = async {
        match max {
            Some(max) => tokio::time::sleep(max).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        state = peer.wait_disconnected() => {
            Some(peer.failure().unwrap_or_else(|| format!("connection {state:?}")))
        }
        _ = cap => {
            at_cap.await;
            Some(format!("max-session-duration ({} s) reached", max.unwrap_or_default().as_secs()))
        }
    }
}
