//! One logical stream over WebRTC sessions: when to negotiate, when to
//! DELETE, and what to tell the application. Shared by whipsink and whepsrc,
//! which differ only in direction and pads.

pub mod backoff;
pub mod ice_restart;
pub mod messages;
pub mod resource;
pub mod settings;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use gst_webrtc::WebRTCSDPType;
use url::Url;

use crate::peer::timeline::Phase;
use crate::peer::{Connection, Peer, PeerError};
use crate::protocol::{redact_url, AnswerKind, DeleteOutcome, OfferResponse, ProtocolError};
use crate::runtime::RUNTIME;
pub use resource::Resource;
pub use settings::ClientSettings;

pub static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "whipwhep-session",
        gst::DebugColorFlags::empty(),
        Some("WHIP/WHEP session"),
    )
});

/// How long a state change waits for the DELETE before letting it finish in
/// the background: stopping must be prompt even when the server is mute.
pub const TEARDOWN_WAIT: Duration = Duration::from_secs(1);

/// The element a stream belongs to, as everything running on the runtime
/// holds it: weakly, so that an application dropping a PLAYING pipeline gets
/// the element finalized (and its sessions DELETEd by its dispose), rather
/// than kept alive by its own supervisor.
#[derive(Clone)]
pub struct Host {
    weak: glib::WeakRef<gst::Element>,
    /// For log lines, whether or not the element is still there.
    name: glib::GString,
}

impl Host {
    pub fn new(obj: &gst::Element) -> Self {
        Self {
            weak: obj.downgrade(),
            name: obj.name(),
        }
    }

    /// For an element being disposed: its sessions are DELETEd, and nothing
    /// is posted on it any more.
    pub fn detached(name: &str) -> Self {
        Self {
            weak: glib::WeakRef::new(),
            name: name.into(),
        }
    }

    /// The element, unless it is gone (or going).
    pub fn get(&self) -> Option<gst::Element> {
        self.weak.upgrade()
    }

    /// Runs `f` with the element if it is still there (posting a message).
    pub fn with(&self, f: impl FnOnce(&gst::Element)) {
        if let Some(obj) = self.get() {
            f(&obj)
        }
    }

    pub fn name(&self) -> &glib::GStr {
        self.name.as_gstr()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Peer(#[from] PeerError),
    #[error("the server's answer was rejected by webrtcbin: {0}")]
    BadAnswer(PeerError),
    /// The answer accepts none of the offered codecs: nothing would flow.
    #[error("{0}")]
    NoCommonCodec(String),
    #[error("the server answered with a counter-offer, which WHIP does not allow")]
    UnexpectedCounterOffer,
    #[error("ICE/DTLS connection failed (no usable candidate pair, or the DTLS handshake failed)")]
    ConnectionFailed,
    #[error("the connection failed: {0}")]
    PeerFailed(String),
    #[error("ICE/DTLS did not connect within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the session ended ({0}) and reconnection is off")]
    Ended(String),
    #[error("{0}")]
    Config(String),
}

impl SessionError {
    /// The GStreamer error domain that fits best, for the bus ERROR.
    pub fn to_error(&self) -> gst::ResourceError {
        match self {
            SessionError::Protocol(e) => match e.status() {
                Some(401 | 403) => gst::ResourceError::NotAuthorized,
                Some(404 | 410) => gst::ResourceError::NotFound,
                Some(_) => gst::ResourceError::Failed,
                None => gst::ResourceError::OpenReadWrite,
            },
            SessionError::Config(_) => gst::ResourceError::Settings,
            _ => gst::ResourceError::Failed,
        }
    }
}

/// Posts `err` as a bus ERROR on `obj`.
pub fn post_error(obj: &gst::Element, context: &str, err: &SessionError) {
    let msg = format!("{context}: {err}");
    gst::error!(CAT, obj = obj, "{msg}");
    obj.post_error_message(gst::error_msg!(err.to_error(), ("{}", msg)));
}

/// Makes a fresh peer; called on a blocking thread (it changes element
/// states).
pub type MakePeer = Arc<dyn Fn() -> Result<Arc<Peer>, PeerError> + Send + Sync>;

/// A new peer from `make`, made on a blocking thread, never on a runtime
/// worker: making one adds a webrtcbin to a running bin and syncs its state.
pub async fn new_peer_off_runtime(make: MakePeer) -> Result<Arc<Peer>, SessionError> {
    tokio::task::spawn_blocking(move || make())
        .await
        .map_err(|e| SessionError::Config(format!("making a peer failed: {e}")))?
        .map_err(SessionError::from)
}

/// What the offerer needs for one negotiation.
pub struct Negotiation<'a> {
    pub host: &'a Host,
    pub peer: &'a Arc<Peer>,
    pub resource: &'a Arc<Resource>,
    pub endpoint: &'a Url,
    pub use_link_headers: bool,
    pub gather_timeout: Duration,
    /// Retries of the POST on transient refusals (409, 429, 503...).
    pub retry: backoff::Backoff,
    /// See `Policy::publisher_wait`.
    pub publisher_wait: Option<Duration>,
    /// The stream's attempt counter, shared with the supervisor.
    pub attempt: &'a std::sync::atomic::AtomicU32,
    /// WHEP only: makes a fresh peer to answer a 406 counter-offer with
    /// (webrtcbin 1.22 cannot roll its own offer back).
    pub counter_offer_peer: Option<MakePeer>,
}

/// A negotiated session: the POST answer, and the peer that carries it
/// (a new one after a counter-offer).
pub struct Negotiated {
    pub response: OfferResponse,
    pub peer: Arc<Peer>,
}

impl Negotiation<'_> {
    /// OPTIONS (if asked), offer, POST, answer. The POST runs in a task of its
    /// own so that a stop during it cannot lose the Location: the task DELETEs
    /// by itself if the session was closed before the answer came.
    pub async fn run(self) -> Result<Negotiated, SessionError> {
        let client = self.resource.client().clone();
        if self.use_link_headers {
            // OPTIONS first rather than POST-then-trickle: servers that don't
            // trickle (Cloudflare, device endpoints) need every candidate in the
            // POST, and webrtcbin ignores ICE servers added after gathering
            // began (simple-whip-client #5). MediaMTX and Janus answer OPTIONS
            // with their Link headers; a failure here is not fatal.
            match client.options(self.endpoint).await {
                Ok(opts) => self.peer.add_ice_servers(&opts.ice_servers),
                Err(e) => gst::warning!(
                    CAT,
                    id = self.host.name(),
                    "OPTIONS failed, no Link ICE servers: {e}"
                ),
            }
        }
        let offer = self.peer.offer(self.gather_timeout).await?;
        gst::info!(
            CAT,
            id = self.host.name(),
            "offer ready, {} candidates",
            offer.candidates_sent
        );
        gst::debug!(CAT, id = self.host.name(), "offer:\n{}", offer.sdp);
        let local = offer.clone();
        let offer = offer.sdp;

        let waiting_since = std::time::Instant::now();
        let mut retry = 0;
        let resp = loop {
            self.peer.timeline().mark(Phase::PostSent);
            let e = match self.post(&offer).await {
                Err(SessionError::Protocol(e)) if backoff::is_retryable(e.status()) => e,
                other => break other?,
            };
            retry += 1;
            // WHEP's "no publisher yet": a player waits for the stream to
            // start, at the pace the server asks for.
            let wait = self.publisher_wait.filter(|_| e.status() == Some(409));
            let (delay, of) = match wait {
                Some(limit) => {
                    if waiting_since.elapsed() >= limit {
                        return Err(e.into());
                    }
                    let delay = match e.retry_after() {
                        Some(d) => d.min(self.retry.max),
                        None => self.retry.delay(retry, None),
                    };
                    let of = if limit == Duration::MAX {
                        format!("try {retry}, waiting for a publisher")
                    } else {
                        format!(
                            "try {retry}, waiting up to {} s for a publisher",
                            limit.as_secs()
                        )
                    };
                    (delay, of)
                }
                None if retry <= self.retry.max_retries => (
                    self.retry.delay(retry, e.retry_after()),
                    format!("{retry} of {}", self.retry.max_retries),
                ),
                None => return Err(e.into()),
            };
            let attempt = self
                .attempt
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            self.host
                .with(|obj| messages::post_retrying(obj, attempt, delay, &e.to_string(), &of));
            tokio::time::sleep(delay).await;
        };
        self.peer.timeline().mark(Phase::AnswerReceived);
        gst::debug!(
            CAT,
            id = self.host.name(),
            "answer ({}):\n{}",
            resp.status,
            resp.sdp
        );

        if resp.session_url.is_none() {
            gst::warning!(
                CAT,
                id = self.host.name(),
                "{} answered without a Location: the session cannot be DELETEd or PATCHed",
                redact_url(&resp.answered_url)
            );
        }
        if resp.kind == AnswerKind::CounterOffer {
            return self.answer_counter_offer(resp).await;
        }
        self.peer
            .set_remote(WebRTCSDPType::Answer, &resp.sdp)
            .await
            .map_err(SessionError::BadAnswer)?;
        // webrtcbin takes such an answer and then sends nothing, silently.
        crate::peer::sdp::answer_accepts_an_offered_codec(&offer, &resp.sdp)
            .map_err(SessionError::NoCommonCodec)?;
        if !local.gathering_complete {
            if let Some(url) = resp.session_url.clone() {
                RUNTIME.spawn(trickle_late_candidates(
                    self.peer.clone(),
                    self.resource.clone(),
                    url,
                    resp.etag.clone(),
                    local,
                ));
            }
        }
        // STUN/TURN servers in the answer come too late for this session's
        // gathering (webrtcbin cannot add them now): use-link-headers learns
        // them by OPTIONS instead.
        Ok(Negotiated {
            response: resp,
            peer: self.peer.clone(),
        })
    }

    /// One POST, in a task of its own (see `run`).
    async fn post(&self, offer: &str) -> Result<OfferResponse, SessionError> {
        let resource = self.resource.clone();
        let endpoint = self.endpoint.clone();
        let offer = offer.to_string();
        let post = RUNTIME.spawn(async move {
            // A stop gives the answer TEARDOWN_WAIT more to come (a Location
            // that comes after the stop is DELETEd here), then abandons the
            // request and closes its connection, rather than leaving it to
            // run until its timeout.
            let abandon = async {
                resource.closed().await;
                tokio::time::sleep(TEARDOWN_WAIT).await;
            };
            let resp = tokio::select! {
                biased;
                resp = resource.client().post_offer(&endpoint, &offer) => resp?,
                _ = abandon => {
                    return Err(ProtocolError::Client("stopped while the POST was pending".into()))
                }
            };
            if let Some(orphan) = resource.located(resp.session_url.clone()) {
                let _ = resource.client().delete(&orphan).await;
            }
            Ok::<_, ProtocolError>(resp)
        });
        Ok(post
            .await
            .map_err(|e| SessionError::Config(format!("POST task failed: {e}")))??)
    }

    /// WHEP counter-offer (406 + server offer, docs/protocol.md P17): answer
    /// it with a fresh recvonly peer and PATCH the answer to the session URL.
    async fn answer_counter_offer(&self, resp: OfferResponse) -> Result<Negotiated, SessionError> {
        let make_peer = self
            .counter_offer_peer
            .clone()
            .ok_or(SessionError::UnexpectedCounterOffer)?;
        let url = resp.session_url.clone().ok_or_else(|| {
            SessionError::Protocol(ProtocolError::InvalidResponse {
                url: redact_url(&resp.answered_url),
                message: "a counter-offer without a Location cannot be answered".into(),
            })
        })?;
        let peer = new_peer_off_runtime(make_peer).await?;
        let answer = peer
            .answer(&resp.sdp, self.gather_timeout)
            .await
            .map_err(SessionError::BadAnswer)?;
        gst::debug!(
            CAT,
            id = self.host.name(),
            "answer to the counter-offer:\n{}",
            answer.sdp
        );
        self.resource
            .client()
            .patch_answer(&url, &answer.sdp)
            .await?;
        Ok(Negotiated {
            response: resp,
            peer,
        })
    }
}

/// How long late candidates are awaited after the offer went out.
const LATE_CANDIDATES_LIMIT: Duration = Duration::from_secs(10);

/// Sends the candidates gathered after the offer in one PATCH (RFC 9725
/// §4.3.1). Any refusal means the server doesn't trickle: the session stays.
async fn trickle_late_candidates(
    peer: Arc<Peer>,
    resource: Arc<Resource>,
    url: Url,
    etag: Option<String>,
    offer: crate::peer::LocalDescription,
) {
    let (candidates, complete) = peer
        .late_candidates(offer.candidates_sent, LATE_CANDIDATES_LIMIT)
        .await;
    if (candidates.is_empty() && !complete) || resource.is_closed() {
        return;
    }
    let attr = |name: &str| {
        offer
            .sdp
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(name).map(String::from))
            .unwrap_or_default()
    };
    let frag = crate::protocol::trickle_sdpfrag(
        &attr("a=mid:"),
        &attr("a=ice-ufrag:"),
        &attr("a=ice-pwd:"),
        &candidates,
        complete,
    );
    match resource
        .client()
        .patch_trickle(&url, etag.as_deref(), &frag)
        .await
    {
        Ok(crate::protocol::TrickleOutcome::Accepted { .. }) => {
            gst::debug!(CAT, "trickled {} late candidates", candidates.len())
        }
        Ok(crate::protocol::TrickleOutcome::NotSupported { status }) => {
            gst::info!(
                CAT,
                "server does not trickle (HTTP {status}); {} late candidates dropped",
                candidates.len()
            )
        }
        Err(e) => gst::warning!(CAT, "trickle PATCH failed: {e}"),
    }
}

/// Waits until the peer connects (Ok(true)), is closed (Ok(false)) or fails
/// (Err), at most `limit`.
pub async fn wait_connected(peer: &Peer, limit: Duration) -> Result<bool, SessionError> {
    match peer.wait_connected(limit).await {
        Connection::Connected => Ok(true),
        Connection::Closed => Ok(false),
        Connection::Failed(Some(reason)) => Err(SessionError::PeerFailed(reason)),
        Connection::Failed(None) => Err(SessionError::ConnectionFailed),
        Connection::TimedOut => Err(SessionError::ConnectTimeout(limit)),
    }
}

/// DELETEs every resource (each once), in parallel, waiting up to `wait`
/// in all; what is still pending then finishes in the background.
pub fn teardown_all(host: &Host, resources: &[Arc<Resource>], reason: &str, wait: Duration) {
    let pending: Vec<Arc<Resource>> = resources
        .iter()
        .filter(|r| !r.is_closed())
        .cloned()
        .collect();
    if pending.is_empty() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for resource in pending {
        let (tx, host, reason) = (tx.clone(), host.clone(), reason.to_string());
        RUNTIME.spawn(async move {
            delete_and_report(&host, &resource, &reason).await;
            let _ = tx.send(());
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(()) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                gst::warning!(
                    CAT,
                    id = host.name(),
                    "DELETE still pending after {wait:?}; finishing in the background"
                );
                return;
            }
        }
    }
}

/// DELETEs `resource` (once) and posts session-ended.
pub async fn delete_and_report(host: &Host, resource: &Resource, reason: &str) {
    let location = resource.location().map(|u| redact_url(&u));
    match resource.close_and_delete().await {
        Some((url, Ok(outcome))) => {
            let outcome = match outcome {
                DeleteOutcome::Deleted => "deleted",
                DeleteOutcome::AlreadyGone => "already gone",
            };
            gst::info!(CAT, id = host.name(), "DELETE {url}: {outcome}");
        }
        Some((url, Err(e))) => {
            gst::warning!(CAT, id = host.name(), "DELETE {url} failed: {e}");
        }
        None => {}
    }
    host.with(|obj| messages::post_session_ended(obj, location.as_deref(), reason));
}
