//! The HTTP side of the server elements (whipserversrc, whepserversink):
//! POST an offer → 201 + answer + Location + ETag, DELETE, OPTIONS, optional
//! Bearer auth, CORS for browser pages. What a POST does is up to the
//! element, through `Handler`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};

use crate::protocol::AuthToken;
use crate::runtime::RUNTIME;

pub mod claims;
pub mod codec_params;
pub mod direction;
pub mod ice;
pub mod key_units;
pub mod settings;

pub use ice::IceSession;

/// The HTTP server's own category: one INFO line per request (method, path
/// with query values redacted, status, time taken), connection limits and
/// accept failures.
pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "whipwhep-http",
        gst::DebugColorFlags::empty(),
        Some("WHIP/WHEP server elements' HTTP server"),
    )
});

/// Offers are a few KiB; anything far larger is not an offer.
const MAX_BODY: usize = 256 * 1024;

/// Browser pages (plain JavaScript, nothing loaded from elsewhere) that the
/// server elements answer a GET of their path with: each POSTs to the path
/// it was loaded from, so the page's URL is the endpoint's URL.
pub static WHEP_PLAYER_PAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| with_hints(include_str!("pages/whep-player.html")));
pub static WHIP_PUBLISHER_PAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| with_hints(include_str!("pages/whip-publisher.html")));

/// Both pages say why a session does not connect the same way: that script
/// is kept once, and put into each page where its marker is.
fn with_hints(page: &str) -> String {
    page.replacen(
        "/* hints.js: inserted by the server (src/server/pages/hints.js) */",
        include_str!("pages/hints.js"),
        1,
    )
}
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

/// What a server element's stats sample: `sessions` lists its sessions'
/// peers with their Locations, for as long as the element lives.
pub fn stats_sources<E>(
    element: &E,
    sessions: fn(&E) -> Vec<crate::peer::stats::Source>,
) -> crate::peer::stats::Sources
where
    E: gst::prelude::IsA<gst::Element> + Send + Sync,
{
    let weak = gst::prelude::ObjectExt::downgrade(element);
    Arc::new(move || weak.upgrade().map(|e| sessions(&e)).unwrap_or_default())
}

/// Each session's peer with its Location, from a map by Location.
pub fn peers_by_location<S>(
    sessions: &HashMap<String, S>,
    peer: fn(&S) -> &Arc<crate::peer::Peer>,
) -> Vec<crate::peer::stats::Source> {
    sessions
        .iter()
        .map(|(location, s)| (peer(s).clone(), Some(location.clone())))
        .collect()
}

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

/// An accepted offer: the answer, and the session's ICE for its PATCHes.
pub struct Answered {
    pub sdp: String,
    pub ice: Arc<IceSession>,
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
    ) -> BoxFuture<Result<Answered, Refusal>>;
    /// The ICE of the session at `location`, for a PATCH; None: unknown.
    fn ice(&self, location: &str) -> Option<Arc<IceSession>>;
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
    /// The socket closes when the aborted accept task is dropped, on a
    /// runtime worker: off the runtime (an element going to NULL), wait for
    /// that, briefly, so the port is free when the state change returns (a
    /// new element binding it at once got "Address in use").
    fn drop(&mut self) {
        let Some(task) = self.task.lock().unwrap().take() else {
            return;
        };
        task.abort();
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while !task.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
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
        // registration ends it. Aborting it drops its `JoinSet`, which
        // aborts every connection task: connections in flight are closed
        // with the socket, none is left running.
        let weak = Arc::downgrade(&listener);
        let task = RUNTIME.spawn(accept_loop(socket, weak));
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

/// How long a connection may take to send a request's head, from when it
/// connects or from its previous response: a client that sends part of a
/// header and stalls (slow-loris) is closed then, and so is an idle
/// keep-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request's body (an offer) may take to arrive once its head did.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once on one listener. At the limit a new
/// connection takes the place of the oldest idle one (no request in
/// progress); with none idle it is closed at once.
pub const MAX_CONNECTIONS: usize = 128;

/// Pause after a failed accept (EMFILE: out of file descriptors), so that
/// the loop does not spin on an error that will not go away at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Logs the first of a burst of like events, and how many followed, at most
/// once per `PERIOD`.
#[derive(Default)]
struct Burst {
    last: Option<Instant>,
    suppressed: u64,
}

impl Burst {
    const PERIOD: Duration = Duration::from_secs(5);

    /// `Some(n)` when this event is to be logged, `n` the ones not logged
    /// since the last.
    fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::PERIOD)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A connection being served, for the connection limit.
struct Conn {
    abort: tokio::task::AbortHandle,
    /// A request is in progress on it.
    busy: Arc<AtomicBool>,
    accepted: Instant,
}

async fn accept_loop(socket: tokio::net::TcpListener, weak: Weak<Listener>) {
    let local = socket.local_addr().ok();
    let mut connections = tokio::task::JoinSet::new();
    let mut live: HashMap<u64, Conn> = HashMap::new();
    let mut next_id = 0u64;
    let (mut accept_errors, mut over_limit) = (Burst::default(), Burst::default());
    loop {
        tokio::select! {
            accepted = socket.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        if let Some(more) = accept_errors.tick() {
                            gst::warning!(CAT, "{local:?}: accept failed: {e} ({more} more failures since the last report); pausing {} ms", ACCEPT_BACKOFF.as_millis());
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                if live.len() >= MAX_CONNECTIONS {
                    let idle = live
                        .iter()
                        .filter(|(_, c)| !c.busy.load(Ordering::Acquire))
                        .min_by_key(|(_, c)| c.accepted)
                        .map(|(id, _)| *id);
                    let evicted = idle.and_then(|id| live.remove(&id));
                    if let Some(more) = over_limit.tick() {
                        gst::warning!(
                            CAT,
                            "{local:?}: {MAX_CONNECTIONS} connections open: {} ({more} more since the last report)",
                            if evicted.is_some() { "closed the oldest idle one for a new one" } else { "none idle, closed a new one" }
                        );
                    }
                    match evicted {
                        Some(c) => c.abort.abort(),
                        // Dropped: closed at once, nothing spent on it.
                        None => continue,
                    }
                }
                let _ = stream.set_nodelay(true);
                let busy = Arc::new(AtomicBool::new(false));
                let id = next_id;
                next_id += 1;
                let abort = connections.spawn(serve(stream, weak.clone(), busy.clone(), id));
                live.insert(id, Conn { abort, busy, accepted: Instant::now() });
            }
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Ok(id) = done {
                    live.remove(&id);
                }
            }
        }
    }
}

/// Marks a connection busy while a request is handled.
struct Busy(Arc<AtomicBool>);

impl Busy {
    fn new(flag: &Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::Release);
        Busy(flag.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Serves one connection; returns its id when it ends.
async fn serve(
    stream: tokio::net::TcpStream,
    weak: Weak<Listener>,
    busy: Arc<AtomicBool>,
    id: u64,
) -> u64 {
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper::service::service_fn(move |req| {
        let weak = weak.clone();
        let busy = busy.clone();
        async move {
            let _busy = Busy::new(&busy);
            let started = Instant::now();
            let (method, shown) = (req.method().clone(), shown_path(req.uri()));
            let resp = match weak.upgrade() {
                Some(l) => handle(&l, req).await,
                None => problem(&Refusal::new(
                    503,
                    "Service Unavailable",
                    "the server is stopping",
                )),
            };
            gst::info!(
                CAT,
                "{method} {shown} {} {:.1} ms",
                resp.status().as_u16(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            Ok::<_, Infallible>(resp)
        }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service)
        .await;
    if let Err(e) = result {
        gst::debug!(CAT, "connection closed: {e}");
    }
    id
}

/// A request's path and query for the log: query values redacted (a token
/// may be in one), as client URLs are (`redact_url`).
fn shown_path(uri: &hyper::Uri) -> String {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match url::Url::parse("http://server").and_then(|base| base.join(pq)) {
        Ok(url) => {
            let redacted = crate::protocol::redact_url(&url);
            redacted["http://server".len()..].to_string()
        }
        Err(_) => uri.path().to_string(),
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

pub(crate) fn new_id() -> String {
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
        h.insert("Accept-Patch", ice::SDPFRAG.parse().unwrap());
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
            let body = Limited::new(req.into_body(), MAX_BODY).collect();
            let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(_)) => {
                    return problem(&Refusal::new(413, "Content Too Large", "offer too large"))
                }
                Err(_) => {
                    return problem(&Refusal::new(
                        408,
                        "Request Timeout",
                        format!(
                            "the offer did not arrive within {} s",
                            BODY_TIMEOUT.as_secs()
                        ),
                    ))
                }
            };
            let offer = String::from_utf8_lossy(&body).into_owned();
            let id = new_id();
            let location = format!("{path}/{id}");
            match shared.handler.offer(path, location.clone(), offer).await {
                Ok(answered) => {
                    let mut resp =
                        response(StatusCode::CREATED, Some("application/sdp"), answered.sdp);
                    let h = resp.headers_mut();
                    h.insert("Location", location.parse().unwrap());
                    h.insert("ETag", answered.ice.etag().parse().unwrap());
                    h.insert("Accept-Patch", ice::SDPFRAG.parse().unwrap());
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
        Method::PATCH => patch(&shared, &path, req).await,
        _ => problem(&Refusal::new(
            405,
            "Method Not Allowed",
            "use POST, DELETE or OPTIONS",
        )),
    }
}

/// Trickle ICE or ICE restart on a session (see `ice`).
async fn patch(
    route: &Route,
    location: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let Some(session) = route.handler.ice(location) else {
        return problem(&Refusal::new(404, "Not Found", "no such session"));
    };
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let is_sdpfrag = header(hyper::header::CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(ice::SDPFRAG)
    });
    if !is_sdpfrag {
        let mut resp = problem(&Refusal::new(
            415,
            "Unsupported Media Type",
            format!("a PATCH must be {}", ice::SDPFRAG),
        ));
        resp.headers_mut()
            .insert("Accept-Patch", ice::SDPFRAG.parse().unwrap());
        return resp;
    }
    let if_match = header(hyper::header::IF_MATCH);
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return problem(&Refusal::new(413, "Content Too Large", "sdpfrag too large")),
        Err(_) => {
            return problem(&Refusal::new(
                408,
                "Request Timeout",
                "the sdpfrag did not arrive in time",
            ))
        }
    };
    let body = String::from_utf8_lossy(&body);
    match session.patch(if_match.as_deref(), &body).await {
        Ok(ice::Patched::Trickled) => {
            let mut resp = response(StatusCode::NO_CONTENT, None, Bytes::new());
            resp.headers_mut()
                .insert("ETag", session.etag().parse().unwrap());
            resp
        }
        Ok(ice::Patched::Restarted { sdpfrag, etag }) => {
            let mut resp = response(StatusCode::OK, Some(ice::SDPFRAG), sdpfrag);
            resp.headers_mut().insert("ETag", etag.parse().unwrap());
            resp
        }
        Err(refusal) => problem(&refusal),
    }
}

/// How long a client may take to connect after its answer.
const CONNECT_LIMIT: Duration = Duration::from_secs(15);

/// How long a session the client closed (DTLS close_notify) waits for its
/// DELETE before it ends on its own.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How often `peer_lifetime` looks at a peer's silence while nothing came
/// from it yet.
const SILENCE_CHECK: Duration = Duration::from_millis(250);
/// The shortest wait between two looks (a deadline already past, by a
/// clock's rounding).
const SILENCE_MIN_WAIT: Duration = Duration::from_millis(10);

/// A server-side peer's life after its answer. Resolves with why it ended:
/// its connection failed or closed, nothing came from it for `timeout`
/// (see `Peer::silence`), or `max` passed, in which case `at_cap` runs first
/// (and is awaited). `on_connected` runs once connected. None: the peer was
/// closed by us.
pub async fn peer_lifetime<C>(
    peer: &crate::peer::Peer,
    max: Option<Duration>,
    timeout: Option<Duration>,
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
    let silent = async {
        let Some(timeout) = timeout else {
            return std::future::pending::<Duration>().await;
        };
        // Looks again when the silence would become a cut if nothing more
        // came (or after `SILENCE_CHECK` while nothing came yet): about
        // once per `timeout` per client, not on a tick.
        loop {
            if let Some(idle) = peer.client_silence(timeout) {
                return idle;
            }
            let now = std::time::Instant::now();
            let due = peer
                .client_silence_due(timeout)
                .unwrap_or(now + SILENCE_CHECK)
                .max(now + SILENCE_MIN_WAIT);
            crate::runtime::sleep_until_tick(due).await;
        }
    };
    tokio::select! {
        state = peer.wait_disconnected() => {
            if peer.failure().is_none() && peer.remote_closed() {
                // A client that stops closes its connection and DELETEs its
                // resource together (a browser page's Stop); the close_notify
                // (UDP) comes first. The DELETE, if it follows, ends the
                // session with its own reason, and gets 200, not 404.
                tokio::time::sleep(CLOSE_GRACE).await;
            }
            Some(peer.failure().unwrap_or_else(|| format!("connection {state:?}")))
        }
        idle = silent => {
            Some(format!("nothing received for {:.1} s (peer-timeout)", idle.as_secs_f64()))
        }
        _ = cap => {
            at_cap.await;
            Some(format!("max-session-duration ({} s) reached", max.unwrap_or_default().as_secs()))
        }
    }
}

#[cfg(test)]
mod page_tests {
    #[test]
    fn both_pages_carry_the_connection_hints() {
        for page in [&*super::WHEP_PLAYER_PAGE, &*super::WHIP_PUBLISHER_PAGE] {
            assert!(page.contains("function armHint("));
            assert!(!page.contains("inserted by the server"));
        }
    }
}
