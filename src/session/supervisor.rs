//! One logical stream over many WebRTC sessions: connect, watch, renew
//! ahead of a known cap (make-before-break), reconnect with backoff after a
//! cut, and give up with an ERROR that says why. The element says how to
//! make a peer and how its output follows sessions (`Role`); this module
//! decides when.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst_webrtc::WebRTCPeerConnectionState;
use url::Url;

use super::backoff::{self, Backoff};
use super::ice_restart;
use super::{
    delete_and_report, messages, new_peer_off_runtime, post_error, Host, MakePeer, Negotiation,
    Resource, SessionError, CAT,
};
use crate::peer::{Peer, PeerError};
use crate::protocol::{redact_url, Client};
use crate::runtime::RUNTIME;

/// How long a new session may take to deliver its first media.
const FIRST_MEDIA_GRACE: Duration = Duration::from_secs(2);
/// The longest a session's watch sleeps when nothing is due sooner.
const WATCH_IDLE: Duration = Duration::from_secs(1);
/// How often the watch looks again at a silence that may become a cut.
const WATCH_POLL: Duration = Duration::from_millis(100);

/// When to reconnect and renew; from element properties.
#[derive(Debug, Clone)]
pub struct Policy {
    pub reconnect: bool,
    /// Bounds of the backoff between reconnection attempts (and of the
    /// retries of one POST).
    pub backoff: Backoff,
    /// The server's cap on a session, if known: renew before it.
    pub max_session: Option<Duration>,
    /// How long before the cap the next session opens.
    pub renew_lead: Duration,
    /// A session that delivers no media this long has been cut.
    pub media_timeout: Option<Duration>,
    /// After a cut of the path, how long an ICE restart on the same session
    /// may take to bring media back; None: no restart, a new session.
    pub ice_restart: Option<Duration>,
    /// RTCP reports at least this often (`rtcp-interval`); None: RTP's pace.
    pub rtcp_interval: Option<Duration>,
    pub use_link_headers: bool,
    pub gather_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long "no publisher yet" (409) is retried, beyond `backoff`'s
    /// count (WHEP); None: a 409 is like any other transient refusal.
    pub publisher_wait: Option<Duration>,
}

/// What the supervised element provides.
pub trait Role: Send + Sync + 'static {
    /// "WHIP" or "WHEP", for messages.
    fn protocol(&self) -> &'static str;
    /// A fresh peer in the element's bin, wired to its pads. `renewal`: made
    /// while the current session still plays (make before break). Called
    /// on a blocking thread: it adds a webrtcbin and syncs its state.
    fn new_peer(&self, renewal: bool) -> Result<Arc<Peer>, PeerError>;
    /// Resolves when `peer` can make its offer (whipsink: caps known).
    fn before_offer(&self, _peer: &Arc<Peer>) -> crate::runtime::BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }
    /// Whether a 406 counter-offer can be answered (WHEP).
    fn answers_counter_offers(&self) -> bool;
    /// The remote's description is applied to `peer`: what it will send is
    /// known before any of it flows (whepsrc exposes its pads then). Runs
    /// on a blocking thread: it may change element states.
    fn answered(&self, _peer: &Arc<Peer>, _remote_sdp: &str) {}
    /// `peer` is connected: move the output to it (at the next point it can).
    fn activate(&self, peer: &Arc<Peer>);
    /// Whether `peer` now carries the output (the switch happened).
    fn carries_output(&self, peer: &Arc<Peer>) -> bool;
    /// Whether a silence of the remote's RTCP, judged against the interval
    /// it actually uses, ends a session when `media-timeout` is off
    /// (whipsink: a publisher hears nothing else from the server).
    fn rtcp_liveness(&self) -> bool {
        false
    }
    /// When media last flowed through `peer`, if it ever did.
    fn last_media(&self, peer: &Arc<Peer>) -> Option<Instant>;
    /// `peer`'s session is over: take its elements away.
    fn retire(&self, peer: &Arc<Peer>);
}

struct Active {
    peer: Arc<Peer>,
    resource: Arc<Resource>,
    started: Instant,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    Connection(WebRTCPeerConnectionState),
    /// An ERROR from inside the webrtcbin (see `peer::contain_error`).
    PeerFailed(String),
    NoMedia(Duration),
    /// The server closed the DTLS connection (close_notify).
    RemoteClosed,
    /// No RTCP from the server for this long, several times its usual
    /// interval (whipsink, which receives no media).
    NoRtcp(Duration),
    Bye,
    Renew,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Connection(s) => write!(f, "connection {s:?}"),
            End::PeerFailed(reason) => write!(f, "connection failed: {reason}"),
            End::NoMedia(d) => write!(f, "nothing heard for {} ms (media-timeout)", d.as_millis()),
            End::RemoteClosed => {
                f.write_str("the server closed the connection (DTLS close_notify)")
            }
            End::NoRtcp(d) => write!(
                f,
                "no RTCP from the server for {} ms, several times its usual interval",
                d.as_millis()
            ),
            End::Bye => f.write_str("the server sent RTCP BYE"),
            End::Renew => f.write_str("renewed before the session cap"),
        }
    }
}

pub struct Supervisor<R: Role> {
    role: Arc<R>,
    host: Host,
    client: Client,
    endpoint: Url,
    policy: Policy,
    /// Attempts since the stream last ran: POST retries and reconnections
    /// count alike (session-reconnecting's `attempt`).
    attempt: AtomicU32,
}

/// The resources of live sessions, so that stopping can DELETE them all.
pub type Sessions = Arc<std::sync::Mutex<Vec<Arc<Resource>>>>;

/// The session carrying the stream now, if one does: what the element's
/// statistics describe.
pub type Current = Arc<std::sync::Mutex<Option<(Arc<Peer>, Arc<Resource>)>>>;

/// The statistics sources of a supervised element: its current session.
pub fn stats_sources(current: &Current) -> crate::peer::stats::Sources {
    let current = current.clone();
    Arc::new(move || {
        current
            .lock()
            .unwrap()
            .iter()
            .map(|(peer, resource)| (peer.clone(), resource.location().map(|u| redact_url(&u))))
            .collect()
    })
}

impl<R: Role> Supervisor<R> {
    pub fn new(role: Arc<R>, host: Host, client: Client, endpoint: Url, policy: Policy) -> Self {
        Self {
            role,
            host,
            client,
            endpoint,
            policy,
            attempt: AtomicU32::new(0),
        }
    }

    /// Runs a supervisor for `obj` on the runtime: the task (abort it to
    /// stop), the sessions it creates (to DELETE when stopping) and the one
    /// carrying the stream (for statistics).
    pub fn spawn(
        role: Arc<R>,
        obj: &gst::Element,
        client: Client,
        endpoint: Url,
        policy: Policy,
    ) -> (tokio::task::JoinHandle<()>, Sessions, Current) {
        let sessions: Sessions = Default::default();
        let current: Current = Default::default();
        let supervisor = Self::new(role, Host::new(obj), client, endpoint, policy);
        (
            RUNTIME.spawn(supervisor.run(sessions.clone(), current.clone())),
            sessions,
            current,
        )
    }

    /// Takes a session's elements away off the runtime's workers: it
    /// changes element states, which may wait on streaming threads.
    async fn retire(&self, peer: &Arc<Peer>) {
        let (role, peer) = (self.role.clone(), peer.clone());
        let _ = tokio::task::spawn_blocking(move || role.retire(&peer)).await;
    }

    fn context(&self) -> String {
        format!(
            "{} session with {}",
            self.role.protocol(),
            redact_url(&self.endpoint)
        )
    }

    /// Negotiates and connects one session (`renewal`: see `Role::new_peer`).
    async fn establish(&self, sessions: &Sessions, renewal: bool) -> Result<Active, SessionError> {
        let start = Instant::now();
        let role = self.role.clone();
        let make_peer: MakePeer = Arc::new(move || role.new_peer(renewal));
        let peer = new_peer_off_runtime(make_peer.clone()).await?;
        peer.timeline().set_origin(start);
        let resource = Resource::new(self.client.clone());
        sessions.lock().unwrap().push(resource.clone());
        let result = async {
            self.role.before_offer(&peer).await;
            let negotiated = Negotiation {
                host: &self.host,
                peer: &peer,
                resource: &resource,
                endpoint: &self.endpoint,
                use_link_headers: self.policy.use_link_headers,
                gather_timeout: self.policy.gather_timeout,
                retry: self.policy.backoff,
                publisher_wait: self.policy.publisher_wait,
                attempt: &self.attempt,
                counter_offer_peer: self.role.answers_counter_offers().then_some(make_peer),
            }
            .run()
            .await?;
            if !Arc::ptr_eq(&negotiated.peer, &peer) {
                self.retire(&peer).await;
            }
            let peer = negotiated.peer;
            let (role, answered_peer, sdp) = (
                self.role.clone(),
                peer.clone(),
                negotiated.response.sdp.clone(),
            );
            let rtcp_interval = self.policy.rtcp_interval;
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(interval) = rtcp_interval {
                    answered_peer.set_rtcp_interval(interval);
                }
                role.answered(&answered_peer, &sdp)
            })
            .await;
            self.host
                .with(|obj| messages::post_session_started(obj, &negotiated.response));
            match super::wait_connected(&peer, self.policy.connect_timeout).await {
                Ok(true) => {
                    RUNTIME.spawn(report_timeline(self.host.clone(), peer.clone()));
                    Ok(Active {
                        peer,
                        resource: resource.clone(),
                        started: Instant::now(),
                    })
                }
                Ok(false) => Err(SessionError::ConnectionFailed),
                Err(e) => Err(e),
            }
        }
        .await;
        if result.is_err() {
            self.retire(&peer).await;
            self.end(&resource, "failed to start", sessions);
        }
        result
    }

    /// DELETEs a session in the background and forgets it.
    fn end(&self, resource: &Arc<Resource>, reason: &str, sessions: &Sessions) {
        sessions
            .lock()
            .unwrap()
            .retain(|r| !Arc::ptr_eq(r, resource));
        let (host, resource, reason) = (self.host.clone(), resource.clone(), reason.to_string());
        RUNTIME.spawn(async move { delete_and_report(&host, &resource, &reason).await });
    }

    /// Resolves when `active` ends, or when it is time to renew it.
    async fn watch(&self, active: &Active) -> End {
        let renew_at = self
            .policy
            .max_session
            .map(|cap| active.started + cap.saturating_sub(self.policy.renew_lead));
        let disconnected = active.peer.wait_disconnected();
        tokio::pin!(disconnected);
        let bye = active.peer.bye();
        tokio::pin!(bye);
        let mut next_check = Instant::now();
        loop {
            tokio::select! {
                biased;
                state = &mut disconnected => {
                    return match active.peer.failure() {
                        Some(reason) => End::PeerFailed(reason),
                        None if active.peer.remote_closed() => End::RemoteClosed,
                        None => End::Connection(state),
                    };
                }
                _ = &mut bye => return End::Bye,
                _ = crate::runtime::sleep_until_tick(next_check) => {}
            }
            let now = Instant::now();
            if renew_at.is_some_and(|t| now >= t) {
                return End::Renew;
            }
            // Wake only when something may be due, not on a fixed tick: a
            // hundred sessions in a process would otherwise wake it
            // thousands of times a second for nothing.
            next_check = now + WATCH_IDLE;
            if let Some(t) = renew_at {
                next_check = next_check.min(t);
            }
            if self.policy.media_timeout.is_none() && self.role.rtcp_liveness() {
                if let Some(idle) = active.peer.rtcp_silence() {
                    return End::NoRtcp(idle);
                }
                if let Some(t) = active.peer.rtcp_cut_at() {
                    next_check = next_check.min(t);
                }
            }
            if let Some(limit) = self.policy.media_timeout {
                // Before the first buffer, count from the connection and
                // allow for the first key frame to come.
                let (last, limit) = match self.role.last_media(&active.peer) {
                    Some(last) => (last, limit),
                    None => (active.started, limit.max(FIRST_MEDIA_GRACE)),
                };
                let idle = now.saturating_duration_since(last);
                // Media late while packets still arrive is this process
                // running behind (many streams decoding on few cores), not a
                // cut: a new session would cost the server one, and the
                // stream would be no sooner back.
                if idle >= limit && active.peer.silence(limit).is_some() {
                    return End::NoMedia(idle);
                }
                let due = if idle >= limit {
                    now + WATCH_POLL
                } else {
                    last + limit
                };
                next_check = next_check.min(due);
            }
        }
    }

    /// Whether an ICE restart may save the session: its path broke (ICE or
    /// DTLS state, silence), rather than the server ending it.
    fn path_broke(end: &End) -> bool {
        matches!(
            end,
            End::Connection(
                WebRTCPeerConnectionState::Failed | WebRTCPeerConnectionState::Disconnected
            ) | End::NoMedia(_)
                | End::NoRtcp(_)
        )
    }

    /// When media last came through `peer`; for whipsink, which receives
    /// none, the server's last RTCP report.
    fn last_heard(role: &R, peer: &Arc<Peer>) -> Option<Instant> {
        if role.rtcp_liveness() {
            peer.last_rtcp()
        } else {
            role.last_media(peer)
        }
    }

    /// Restarts ICE on `active` (see `ice_restart`); Ok: when media came
    /// back, within `limit`. A path still down when a restart's checks run
    /// exhausts them (libnice gives up on a pair after a few retransmissions),
    /// so a restart that brought nothing back within `RESTART_RETRY` is made
    /// again, each a new PATCH, until `limit`.
    async fn restart_ice(&self, active: &Active, limit: Duration) -> Result<Instant, String> {
        const RESTART_RETRY: Duration = Duration::from_millis(1000);
        let since = Instant::now();
        let attempt = async {
            loop {
                ice_restart::restart(&active.peer, &active.resource).await?;
                let tried = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while tried.elapsed() < RESTART_RETRY {
                    tick.tick().await;
                    let up = !matches!(
                        *active.peer.connection_state().borrow(),
                        WebRTCPeerConnectionState::Failed
                            | WebRTCPeerConnectionState::Closed
                            | WebRTCPeerConnectionState::Disconnected
                    );
                    if let Some(t) =
                        Self::last_heard(&self.role, &active.peer).filter(|t| *t > since)
                    {
                        if up {
                            return Ok(t);
                        }
                    }
                }
                gst::debug!(
                    CAT,
                    id = self.host.name(),
                    "media not back yet: restarting ICE again"
                );
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "media was not back within {} ms",
                    limit.as_millis()
                ))
            })
    }

    /// After a failed ICE restart, once the new session's first media came
    /// (at most 10 s on), `session-ice-restarted` with outcome `new-session`.
    fn report_new_session(&self, new: &Active, cut: Instant, reason: String) {
        let (role, peer, host) = (self.role.clone(), new.peer.clone(), self.host.clone());
        let location = new.resource.location();
        RUNTIME.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..1000 {
                tick.tick().await;
                if let Some(t) = Self::last_heard(&role, &peer).filter(|t| *t > cut) {
                    host.with(|obj| {
                        messages::post_ice_restarted(
                            obj,
                            "new-session",
                            t - cut,
                            location.as_ref(),
                            &reason,
                        )
                    });
                    return;
                }
            }
        });
    }

    /// Runs until the policy gives up (ERROR) or the task is aborted.
    pub async fn run(self, sessions: Sessions, current: Current) {
        let host = self.host.clone();
        let mut ran = false;
        let mut next: Option<Active> = None;
        // The session an ICE restart kept: watched again as it was.
        let mut restarted: Option<Active> = None;
        // A failed ICE restart: when media stopped, and why.
        let mut replaced: Option<(Instant, String)> = None;
        loop {
            let (active, fresh) = match restarted.take() {
                Some(a) => (a, false),
                None => (
                    match next.take() {
                        Some(a) => a,
                        None => match self.establish(&sessions, false).await {
                            Ok(a) => a,
                            Err(e) => {
                                let transient = matches!(&e, SessionError::Protocol(p) if backoff::is_retryable(p.status()) || p.status().is_none())
                                    || matches!(
                                        e,
                                        SessionError::ConnectionFailed
                                            | SessionError::PeerFailed(_)
                                            | SessionError::ConnectTimeout(_)
                                    );
                                // The first session failing is a configuration or
                                // availability problem for the user to see at once
                                // (its POST was already retried if the refusal was
                                // transient); reconnection is for streams that ran.
                                let attempt = self.attempt.load(Ordering::Relaxed);
                                if !self.policy.reconnect
                                    || !ran
                                    || !transient
                                    || attempt >= self.policy.backoff.max_retries
                                {
                                    let why = if attempt > 0 {
                                        format!(
                                            "{} (gave up after {attempt} reconnection attempts)",
                                            self.context()
                                        )
                                    } else {
                                        self.context()
                                    };
                                    return host.with(|obj| post_error(obj, &why, &e));
                                }
                                let attempt = self.attempt.fetch_add(1, Ordering::Relaxed) + 1;
                                let delay = self.policy.backoff.delay(
                                    attempt,
                                    match &e {
                                        SessionError::Protocol(p) => p.retry_after(),
                                        _ => None,
                                    },
                                );
                                let of =
                                    format!("{attempt} of {}", self.policy.backoff.max_retries);
                                host.with(|obj| {
                                    messages::post_retrying(
                                        obj,
                                        attempt,
                                        delay,
                                        &e.to_string(),
                                        &of,
                                    )
                                });
                                tokio::time::sleep(delay).await;
                                continue;
                            }
                        },
                    },
                    true,
                ),
            };
            *current.lock().unwrap() = Some((active.peer.clone(), active.resource.clone()));
            if fresh {
                self.attempt.store(0, Ordering::Relaxed);
                ran = true;
                self.role.activate(&active.peer);
                if let Some((cut, reason)) = replaced.take() {
                    self.report_new_session(&active, cut, reason);
                }
            }
            match self.watch(&active).await {
                End::Renew => {
                    // Make before break: the old session keeps the output until
                    // the new one can take over.
                    gst::info!(CAT, id = host.name(), "renewing ahead of the session cap");
                    let switched_from = Instant::now();
                    match self.establish(&sessions, true).await {
                        Ok(new) => {
                            self.role.activate(&new.peer);
                            let deadline =
                                Instant::now() + self.policy.renew_lead.max(Duration::from_secs(1));
                            while !self.role.carries_output(&new.peer) && Instant::now() < deadline
                            {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            gst::info!(
                                CAT,
                                id = host.name(),
                                "renewal took {:?}",
                                switched_from.elapsed()
                            );
                            self.retire(&active.peer).await;
                            self.end(&active.resource, "renewed", &sessions);
                            next = Some(new);
                        }
                        Err(e) => {
                            // Keep the old one until it is cut; reconnect then.
                            gst::warning!(CAT, id = host.name(), "renewal failed: {e}");
                            next = Some(Active {
                                started: Instant::now(),
                                ..active
                            });
                        }
                    }
                }
                end => {
                    let cut =
                        Self::last_heard(&self.role, &active.peer).unwrap_or_else(Instant::now);
                    let mut reason = end.to_string();
                    if let Some(limit) = self.policy.ice_restart.filter(|_| Self::path_broke(&end))
                    {
                        gst::info!(CAT, id = host.name(), "path broke ({end}): restarting ICE");
                        match self.restart_ice(&active, limit).await {
                            Ok(back) => {
                                gst::info!(
                                    CAT,
                                    id = host.name(),
                                    "ICE restarted, media back after {:?}",
                                    back - cut
                                );
                                host.with(|obj| {
                                    messages::post_ice_restarted(
                                        obj,
                                        "restarted",
                                        back - cut,
                                        active.resource.location().as_ref(),
                                        &reason,
                                    )
                                });
                                restarted = Some(active);
                                continue;
                            }
                            Err(why) => {
                                gst::warning!(CAT, id = host.name(), "ICE restart failed: {why}");
                                reason = format!("{end}; the ICE restart failed: {why}");
                                replaced = Some((cut, reason.clone()));
                            }
                        }
                    }
                    let end = reason;
                    gst::info!(CAT, id = host.name(), "session ended: {end}");
                    current.lock().unwrap().take();
                    self.retire(&active.peer).await;
                    self.end(&active.resource, &end.to_string(), &sessions);
                    if !self.policy.reconnect {
                        let e = SessionError::Ended(end.to_string());
                        return host.with(|obj| post_error(obj, &self.context(), &e));
                    }
                    self.attempt.store(1, Ordering::Relaxed);
                    host.with(|obj| {
                        messages::post_reconnecting(obj, 1, Duration::ZERO, &end.to_string())
                    });
                }
            }
        }
    }
}

/// How long a connected session's first frame is awaited for its timeline.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(10);

/// Posts `session-timeline` once the session's first frame came (see
/// `crate::peer::timeline`), and logs it in the `whipwhep-timeline` category.
async fn report_timeline(host: Host, peer: Arc<Peer>) {
    if !peer.timeline().first_frame(FIRST_FRAME_WAIT).await {
        return;
    }
    let s = peer.timeline().to_structure();
    gst::info!(crate::peer::timeline::CAT, id = host.name(), "{s}");
    host.with(|obj| messages::post_session_timeline(obj, s));
}
