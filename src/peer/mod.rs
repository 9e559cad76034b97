//! One webrtcbin: ICE pinning, ICE servers, certificate, offer/answer,
//! bounded gathering, connection state and the signs that the remote ended
//! the session (DTLS close, RTCP BYE, RTCP silence). The elements touch their
//! webrtcbins too, where media meets them: whepsrc emits `add-transceiver`
//! and connects `pad-added`, whipserversrc connects `pad-added`, whipsink and
//! whepserversink request sink pads and set their transceivers.

pub mod certificate;
pub mod congestion;
pub mod ice;
mod nice;
pub mod sdp;
pub mod stats;
pub mod timeline;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICETransportPolicy, WebRTCPeerConnectionState, WebRTCSDPType};
use tokio::sync::{oneshot, watch};

use crate::protocol::IceServer;
use timeline::{Phase, Timeline};

pub static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "whipwhep-peer",
        gst::DebugColorFlags::empty(),
        Some("WHIP/WHEP webrtcbin peer"),
    )
});

/// libnice's Ta, the pacing of connectivity checks, in ms (its default: 20).
const ICE_PACING_MS: u32 = 5;

/// Packets in a row a jitterbuffer needs before it starts pushing, rather
/// than waiting out its latency. One: a small key frame is a single packet
/// (the next one is a frame interval later); the packets after it still wait
/// for any hole before them, as usual.
const FASTSTART_PACKETS: u32 = 1;

/// RTCP bandwidth for reports (`set_rtcp_interval`), bytes/s.
const RTCP_BANDWIDTH: i32 = 16_000;

/// ICE and jitterbuffer settings for one webrtcbin, taken from element
/// properties when a session starts.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Local addresses to gather host candidates on. Empty: libnice's default
    /// (every interface but loopback, with UPnP).
    pub ice_addresses: Vec<String>,
    pub stun_server: Option<String>,
    pub turn_servers: Vec<String>,
    pub ice_transport_policy: WebRTCICETransportPolicy,
    /// Receive jitterbuffer latency.
    pub latency_ms: u32,
    /// Jitterbuffers start with the first packets (`FASTSTART_PACKETS`)
    /// instead of holding them for the whole latency.
    pub fast_start: bool,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            ice_addresses: Vec::new(),
            stun_server: None,
            turn_servers: Vec::new(),
            ice_transport_policy: WebRTCICETransportPolicy::All,
            latency_ms: 200,
            fast_start: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("GStreamer element {0} is missing; install the package that provides it")]
    MissingElement(&'static str),
    #[error("webrtcbin could not {what}: {reason}")]
    Negotiation { what: &'static str, reason: String },
    #[error("the answer is not valid SDP: {0}")]
    InvalidSdp(String),
}

/// How waiting for a peer to connect ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connected,
    /// Closed by its owner before it connected.
    Closed,
    /// ICE/DTLS failed; the reason, when an ERROR from inside said it.
    Failed(Option<String>),
    TimedOut,
}

/// A description ready to send over HTTP.
#[derive(Debug, Clone)]
pub struct LocalDescription {
    pub sdp: String,
    /// How many of the gathered candidates it carries; later ones trickle.
    pub candidates_sent: usize,
    pub gathering_complete: bool,
}

/// A local candidate as webrtcbin reports it: m-line index and `candidate:` line.
pub type Candidate = (u32, String);

pub struct Peer {
    webrtcbin: gst::Element,
    /// The remote closed (or broke) the DTLS connection after it was up.
    remote_closed: Arc<std::sync::atomic::AtomicBool>,
    gathering_complete: watch::Receiver<bool>,
    connection: watch::Receiver<WebRTCPeerConnectionState>,
    candidates: Arc<Mutex<Vec<Candidate>>>,
    bye: watch::Receiver<bool>,
    /// When RTCP came from the remote, and how far apart.
    last_rtcp: Arc<Mutex<RtcpClock>>,
    /// When any packet (RTP, RTCP, DTLS, STUN) came from the remote, and how
    /// far apart.
    heard: Arc<Mutex<RtcpClock>>,
    failure: Arc<Failure>,
    stats: Arc<stats::PeerStats>,
    timeline: Arc<Timeline>,
    /// The receiving jitterbuffers, by the SSRC they hold.
    jitterbuffers: Arc<Mutex<HashMap<u32, glib::WeakRef<gst::Element>>>>,
}

/// The connection state as the owner sees it: webrtcbin's, unless an ERROR
/// from inside the webrtcbin failed the peer first (see `contain_error`).
struct Failure {
    state: watch::Sender<WebRTCPeerConnectionState>,
    reason: Mutex<Option<String>>,
}

/// Each live peer's webrtcbin and `Failure`, for `contain_error` to find the
/// peer an ERROR came from. Entries go with their webrtcbin.
static FAILURES: std::sync::LazyLock<Mutex<Vec<FailureEntry>>> =
    std::sync::LazyLock::new(Default::default);

/// A webrtcbin, and the `Failure` of the peer it belongs to.
type FailureEntry = (glib::WeakRef<gst::Element>, std::sync::Weak<Failure>);

fn register_failure(webrtcbin: &gst::Element, failure: &Arc<Failure>) {
    let mut all = FAILURES.lock().unwrap();
    all.retain(|(bin, f)| bin.upgrade().is_some() && f.strong_count() > 0);
    all.push((webrtcbin.downgrade(), Arc::downgrade(failure)));
}

fn failure_of(object: &gst::Object) -> Option<Arc<Failure>> {
    FAILURES
        .lock()
        .unwrap()
        .iter()
        .find(|(bin, _)| {
            bin.upgrade()
                .is_some_and(|b| b.upcast_ref::<gst::Object>() == object)
        })
        .and_then(|(_, f)| f.upgrade())
}

/// GstDtlsConnectionState values (gst-plugins-bad's dtls, not in the
/// bindings).
const DTLS_CLOSED: i32 = 1;
const DTLS_FAILED: i32 = 2;
const DTLS_CONNECTED: i32 = 4;

/// How long an alert that left dtlsenc takes to reach the network (funnel,
/// ICE sink): µs on loopback; a margin for a loaded machine.
const CLOSE_NOTIFY_FLIGHT: Duration = Duration::from_millis(15);

/// How long `close_notify` waits for the alert to leave.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_millis(100);

fn dtls_state(dtls: &gst::Element) -> i32 {
    dtls.property_value("connection-state")
        .transform::<i32>()
        .ok()
        .and_then(|v| v.get::<i32>().ok())
        .unwrap_or(DTLS_CLOSED)
}

/// How long a peer's pace is not known after its first packet, during which
/// silence never ends it: two of RTP's longest default intervals.
/// gst-plugins-rs whepsrc (webrtcbin's defaults) sent nothing for over 7 s
/// after connecting in 1 of 20 sessions.
const UNKNOWN_PACE: Duration = Duration::from_millis(2 * 6160);

/// The remote's RTCP over time, for `Peer::rtcp_silence`.
#[derive(Default)]
struct RtcpClock {
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
    /// The latest intervals between reports, newest last.
    gaps: std::collections::VecDeque<Duration>,
}

impl RtcpClock {
    /// Intervals kept to judge the remote's pace.
    const KEPT: usize = 8;
    /// Reports closer than this are one compound packet (several SSRCs).
    const SAME_PACKET: Duration = Duration::from_millis(50);
    /// Silence of this many of the longest recent intervals is a cut.
    const MISSED: u32 = 3;
    const MIN_SILENCE: Duration = Duration::from_millis(1500);

    fn heard(&mut self, now: std::time::Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap < Self::SAME_PACKET {
                return;
            }
            if self.gaps.len() == Self::KEPT {
                self.gaps.pop_front();
            }
            self.gaps.push_back(gap);
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// The idle time, once it is at least `floor` and `MISSED` times the
    /// longest recent gap. A viewer that sends only RTCP at RFC 3550's pace
    /// leaves up to 6.2 s between reports (5 s randomised up to 1.5 times,
    /// divided by e - 1.5: §6.3.1, A.7), and its pace shows only once
    /// several came (the gaps before are ICE and DTLS packets): with
    /// `patient`, not during its first `UNKNOWN_PACE`.
    fn idle_beyond(
        &self,
        now: std::time::Instant,
        floor: Duration,
        patient: bool,
    ) -> Option<Duration> {
        let idle = now.saturating_duration_since(self.last?);
        (now >= self.idle_due(floor, patient)?).then_some(idle)
    }

    /// When `idle_beyond` would first say silent if nothing more came; None
    /// before anything came.
    fn idle_due(&self, floor: Duration, patient: bool) -> Option<std::time::Instant> {
        let longest = self.gaps.iter().max().copied().unwrap_or_default();
        let due = self.last? + floor.max(longest * Self::MISSED);
        Some(if patient {
            due.max(self.first? + UNKNOWN_PACE)
        } else {
            due
        })
    }

    /// When the silence since the last report becomes a cut, once the
    /// remote's pace is known (two intervals).
    fn cut_at(&self) -> Option<std::time::Instant> {
        if self.gaps.len() < 2 {
            return None;
        }
        let longest = self.gaps.iter().max().copied()?;
        Some(self.last? + (longest * Self::MISSED).max(Self::MIN_SILENCE))
    }

    fn silence(&self, now: std::time::Instant) -> Option<Duration> {
        let idle = now.saturating_duration_since(self.last?);
        (now >= self.cut_at()?).then_some(idle)
    }
}

impl Peer {
    /// Creates a webrtcbin with max-bundle, our certificate and state watchers.
    /// The caller adds it to its bin.
    pub fn new(name: &str) -> Result<Peer, PeerError> {
        let webrtcbin = gst::ElementFactory::make("webrtcbin")
            .name(name)
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .map_err(|_| PeerError::MissingElement("webrtcbin"))?;

        if let Some(cert) = certificate::CERTIFICATE.as_ref() {
            // Runs inside create-offer / set-remote-description with webrtcbin's
            // lock held, while the new dtlssrtpdec is still in NULL: only set the
            // PEM here, never call back into webrtcbin.
            webrtcbin.connect("deep-element-added", false, move |args| {
                if let Ok(el) = args[2].get::<gst::Element>() {
                    if el.factory().is_some_and(|f| f.name() == "dtlssrtpdec") {
                        el.set_property("pem", cert.pem());
                    }
                }
                None
            });
        }

        // Video asks for lost packets again (NACK, and RTX where offered).
        // The transceivers webrtcbin makes itself while answering an offer
        // (whipserversrc) have it off: the answer would drop the offer's
        // `nack` and RTX, and the jitterbuffers would never ask.
        webrtcbin.connect("on-new-transceiver", false, |args| {
            let t = args[1].get::<gst_webrtc::WebRTCRTPTransceiver>().ok()?;
            if t.property::<gst_webrtc::WebRTCKind>("kind") == gst_webrtc::WebRTCKind::Video {
                t.set_property("do-nack", true);
            }
            None
        });

        let (gather_tx, gathering_complete) = watch::channel(false);
        webrtcbin.connect_notify(Some("ice-gathering-state"), move |bin, _| {
            let state = bin.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
            gather_tx.send_replace(state == gst_webrtc::WebRTCICEGatheringState::Complete);
        });

        let (state, connection) = watch::channel(WebRTCPeerConnectionState::New);
        let failure = Arc::new(Failure {
            state,
            reason: Mutex::new(None),
        });
        register_failure(&webrtcbin, &failure);
        let watched = failure.clone();
        webrtcbin.connect_notify(Some("connection-state"), move |bin, _| {
            let state = bin.property::<WebRTCPeerConnectionState>("connection-state");
            gst::debug!(CAT, obj = bin, "connection state {state:?}");
            if watched.reason.lock().unwrap().is_none() {
                watched.state.send_replace(state);
            }
        });

        // The remote closing its DTLS connection (close_notify, as a browser's
        // RTCPeerConnection.close() or a server ending the session sends) or
        // failing it after it was up: the session is over now, seconds before
        // any timeout would tell. webrtcbin 1.22 still calls such a
        // connection "connected" (a closed DTLS transport counts as up), so
        // it is watched on the DTLS element itself.
        let timeline = Arc::new(Timeline::default());
        let remote_closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closed = remote_closed.clone();
        let watched = failure.clone();
        let times = timeline.clone();
        webrtcbin.connect("deep-element-added", false, move |args| {
            let el = args[2].get::<gst::Element>().ok()?;
            if el.factory().is_some_and(|f| f.name() == "dtlssrtpdec") {
                let (closed, watched, times) = (closed.clone(), watched.clone(), times.clone());
                let was_up = std::sync::atomic::AtomicBool::new(false);
                el.connect_notify(Some("connection-state"), move |dec, _| {
                    let state = dtls_state(dec);
                    gst::debug!(CAT, obj = dec, "DTLS connection {state}");
                    match state {
                        DTLS_CONNECTED => {
                            times.mark(Phase::DtlsConnected);
                            was_up.store(true, Ordering::Relaxed)
                        }
                        DTLS_CLOSED | DTLS_FAILED if was_up.load(Ordering::Relaxed) => {
                            closed.store(true, Ordering::Relaxed);
                            if watched.reason.lock().unwrap().is_none() {
                                watched.state.send_replace(if state == DTLS_FAILED {
                                    WebRTCPeerConnectionState::Failed
                                } else {
                                    WebRTCPeerConnectionState::Closed
                                });
                            }
                        }
                        _ => {}
                    }
                });
            }
            None
        });

        // Every packet from the remote passes a nicesrc (one per transport):
        // its pace tells whether the remote is still there (`Peer::silence`).
        let heard = Arc::new(Mutex::new(RtcpClock::default()));
        let clock = heard.clone();
        webrtcbin.connect("deep-element-added", false, move |args| {
            let el = args[2].get::<gst::Element>().ok()?;
            if el.factory().is_some_and(|f| f.name() == "nicesrc") {
                let clock = clock.clone();
                el.static_pad("src")?.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                    move |_, _| {
                        clock.lock().unwrap().heard(std::time::Instant::now());
                        gst::PadProbeReturn::Ok
                    },
                );
            }
            None
        });

        let times = timeline.clone();
        webrtcbin.connect_notify(Some("ice-connection-state"), move |bin, _| {
            use gst_webrtc::WebRTCICEConnectionState as Ice;
            let state = bin.property::<Ice>("ice-connection-state");
            if matches!(state, Ice::Connected | Ice::Completed) {
                times.mark(Phase::IceConnected);
            }
        });
        // The first RTP: out of webrtcbin (received), or into it once DTLS
        // is up (sent: what came before was dropped at the DTLS encoder).
        let times = timeline.clone();
        webrtcbin.connect_pad_added(move |_, pad| {
            let times = times.clone();
            let sending = pad.direction() == gst::PadDirection::Sink;
            let data = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
            pad.add_probe(data, move |_, _| {
                if !sending {
                    times.mark(Phase::FirstRtp);
                    return gst::PadProbeReturn::Remove;
                }
                if !times.has(Phase::DtlsConnected) {
                    return gst::PadProbeReturn::Ok;
                }
                times.mark(Phase::FirstRtp);
                times.mark(Phase::FirstFrame);
                gst::PadProbeReturn::Remove
            });
        });

        let candidates = Arc::new(Mutex::new(Vec::new()));
        let sink = candidates.clone();
        webrtcbin.connect("on-ice-candidate", false, move |args| {
            let mline = args[1].get::<u32>().unwrap_or(0);
            if let Ok(cand) = args[2].get::<String>() {
                sink.lock().unwrap().push((mline, cand));
            }
            None
        });

        // RTCP BYE from the remote: it ended the session (a server at its
        // session cap, say), sooner than ICE or a media timeout would tell.
        let (bye_tx, bye) = watch::channel(false);
        let last_rtcp = Arc::new(Mutex::new(RtcpClock::default()));
        if let Some(rtpbin) = webrtcbin
            .downcast_ref::<gst::Bin>()
            .and_then(|b| b.by_name("rtpbin"))
        {
            rtpbin.connect("on-bye-ssrc", false, move |_| {
                bye_tx.send_replace(true);
                None
            });
            let last = last_rtcp.clone();
            rtpbin.connect("on-ssrc-active", false, move |_| {
                last.lock().unwrap().heard(std::time::Instant::now());
                gst::trace!(CAT, "RTCP from the remote");
                None
            });
            // Every RTCP packet the remote sends, too: with TWCC feedback
            // flowing, rtpbin stopped signalling on-ssrc-active for the
            // remote's reports (seen on 1.22), and the silence of a vanished
            // server went unnoticed.
            let last = last_rtcp.clone();
            rtpbin.connect_pad_added(move |_, pad| {
                if !pad.name().starts_with("recv_rtcp_sink") {
                    return;
                }
                let last = last.clone();
                pad.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                    move |_, _| {
                        last.lock().unwrap().heard(std::time::Instant::now());
                        gst::PadProbeReturn::Ok
                    },
                );
            });
        }

        let jitterbuffers: Arc<Mutex<HashMap<u32, glib::WeakRef<gst::Element>>>> =
            Default::default();
        if let Some(rtpbin) = webrtcbin
            .downcast_ref::<gst::Bin>()
            .and_then(|b| b.by_name("rtpbin"))
        {
            let found = jitterbuffers.clone();
            rtpbin.connect("new-jitterbuffer", false, move |args| {
                let jb = args.get(1)?.get::<gst::Element>().ok()?;
                // NACK for the holes that packets reveal, not for the next
                // packet before it is due: that timer, re-armed per packet,
                // woke each session's timer thread 30 times a second.
                jb.set_property("rtx-next-seqnum", false);
                let ssrc = args.get(3)?.get::<u32>().ok()?;
                found.lock().unwrap().insert(ssrc, jb.downgrade());
                None
            });
        }

        let stats = stats::PeerStats::attach(&webrtcbin);

        Ok(Peer {
            stats,
            webrtcbin,
            remote_closed,
            gathering_complete,
            connection,
            failure,
            candidates,
            bye,
            last_rtcp,
            heard,
            timeline,
            jitterbuffers,
        })
    }

    /// The jitterbuffer holding the received stream `ssrc` (the `ssrc` of
    /// the caps on the pad webrtcbin made for it).
    pub fn jitterbuffer(&self, ssrc: u32) -> Option<gst::Element> {
        self.jitterbuffers.lock().unwrap().get(&ssrc)?.upgrade()
    }

    /// This session's start, phase by phase.
    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// A configured peer of no bin yet. Its DTLS transport is to be made
    /// (`prime`, or the remote offer) before it `join`s its element's bin:
    /// see `join`.
    pub fn detached(name: &str, settings: &PeerSettings) -> Result<Arc<Peer>, PeerError> {
        let peer = Arc::new(Peer::new(name)?);
        peer.configure(settings);
        // Negotiation needs READY (webrtcbin's thread); NULL is "closed".
        peer.webrtcbin
            .set_state(gst::State::Ready)
            .map_err(|e| PeerError::Negotiation {
                what: "start",
                reason: e.to_string(),
            })?;
        Ok(peer)
    }

    /// For a peer that sends no media (whepsrc, whipserversrc). Once RTX is
    /// negotiated, webrtcbin's RTX sender starts a thread of its own to
    /// resend from, idle here: its map of formats to resend stays empty, so
    /// that thread ends as soon as it starts. (The RTX receiver, which
    /// repairs what comes in, is another element and keeps its map.)
    pub fn receive_only(&self) {
        self.webrtcbin.connect("deep-element-added", false, |args| {
            let added = args[2].get::<gst::Element>().ok()?;
            // rtpbin adds the sender inside a bin of webrtcbin's making.
            let senders: Vec<gst::Element> = match added.downcast_ref::<gst::Bin>() {
                Some(bin) => bin
                    .iterate_all_by_element_factory_name("rtprtxsend")
                    .into_iter()
                    .flatten()
                    .collect(),
                None if added.factory().is_some_and(|f| f.name() == "rtprtxsend") => vec![added],
                None => return None,
            };
            for rtx in senders {
                rtx.connect_notify(Some("payload-type-map"), |rtx, _| {
                    let map = rtx.property::<Option<gst::Structure>>("payload-type-map");
                    if map.is_some_and(|m| m.n_fields() > 0) {
                        let empty = gst::Structure::new_empty("application/x-rtp-pt-map");
                        rtx.set_property("payload-type-map", empty);
                    }
                });
            }
            None
        });
    }

    /// Puts the peer into `bin`, in `bin`'s state. Called once its DTLS
    /// transport exists: the certificate (private key included) is handed
    /// to the transport's `dtlssrtpdec` when webrtcbin makes it, and a
    /// property set inside the application's pipeline reaches every
    /// deep-notify watcher there (`gst-launch-1.0 -v` prints it). Made
    /// while webrtcbin has no parent, that notification stops at webrtcbin.
    pub fn join(&self, bin: &gst::Bin) -> Result<(), PeerError> {
        bin.add(&self.webrtcbin)
            .map_err(|e| PeerError::Negotiation {
                what: "add webrtcbin",
                reason: e.to_string(),
            })?;
        let _ = self.webrtcbin.sync_state_with_parent();
        self.timeline.mark(Phase::PeerReady);
        Ok(())
    }

    /// Makes the bundle's DTLS transport now, by an offer that is thrown
    /// away (an offerer's transceivers must have caps: a pad's, or codec
    /// preferences). Blocking, a few ms; bounded.
    pub fn prime(&self) -> Result<(), PeerError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let promise = gst::Promise::with_change_func(move |reply| {
            let _ = tx.send(match reply {
                Ok(Some(s)) if s.has_field("offer") => Ok(()),
                Ok(Some(s)) => Err(s
                    .get::<glib::Error>("error")
                    .map_or_else(|_| "no offer".to_string(), |e| e.to_string())),
                Ok(None) => Err("empty reply".into()),
                Err(e) => Err(format!("{e:?}")),
            });
        });
        self.webrtcbin
            .emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        let reason = match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => reason,
            Err(_) => {
                promise.interrupt();
                "no reply in 2 s".into()
            }
        };
        Err(PeerError::Negotiation {
            what: "prepare the DTLS transport",
            reason,
        })
    }

    /// Stops this peer's webrtcbin and takes it out of `bin`.
    pub fn remove_from(&self, bin: &gst::Bin) {
        crate::element::stop(&self.webrtcbin);
        let _ = bin.remove(&self.webrtcbin);
    }

    pub fn webrtcbin(&self) -> &gst::Element {
        &self.webrtcbin
    }

    /// Frame counters and the congestion controller's target, for
    /// `stats::sample`.
    pub fn stats(&self) -> &stats::PeerStats {
        &self.stats
    }

    /// The same, to keep in a callback.
    pub fn stats_handle(&self) -> Arc<stats::PeerStats> {
        self.stats.clone()
    }

    /// Applies ICE and latency settings. Must run before set-local-description,
    /// which starts gathering: libnice cannot use servers or addresses added
    /// later (simple-whip-client #5).
    pub fn configure(&self, settings: &PeerSettings) {
        let bin = &self.webrtcbin;
        bin.set_property("latency", settings.latency_ms);
        if settings.fast_start {
            if let Some(rtpbin) = bin
                .downcast_ref::<gst::Bin>()
                .and_then(|b| b.by_name("rtpbin"))
            {
                // The latency still absorbs jitter for everything after the
                // start (of the first key frame, for video).
                rtpbin.connect("new-jitterbuffer", false, |args| {
                    if let Some(Ok(jb)) = args.get(1).map(|v| v.get::<gst::Element>()) {
                        if jb.has_property("faststart-min-packets") {
                            jb.set_property("faststart-min-packets", FASTSTART_PACKETS);
                        }
                    }
                    None
                });
            }
        }
        bin.set_property("ice-transport-policy", settings.ice_transport_policy);
        if let Some(stun) = &settings.stun_server {
            bin.set_property("stun-server", stun);
        }
        for turn in &settings.turn_servers {
            bin.emit_by_name::<bool>("add-turn-server", &[turn]);
        }
        let ice = bin.property::<gst_webrtc::WebRTCICE>("ice-agent");
        let agent = ice
            .find_property("agent")
            .map(|_| ice.property::<glib::Object>("agent"));
        if let Some(agent) = &agent {
            // libnice paces connectivity checks 20 ms apart (Ta); a check and
            // then the nominating check cost ~60 ms of every connection here.
            // RFC 8445 14.2 allows Ta down to 5 ms; with the few candidate
            // pairs of a WHIP/WHEP session that is a short burst.
            if agent.find_property("stun-pacing-timer").is_some() {
                agent.set_property("stun-pacing-timer", ICE_PACING_MS);
            }
        }
        if !settings.ice_addresses.is_empty() {
            // UPnP discovery sends multicast on every interface: pointless
            // (and unwanted) once the user restricted ICE to chosen addresses.
            if let Some(agent) = &agent {
                if agent.find_property("upnp").is_some() {
                    agent.set_property("upnp", false);
                }
            }
            for addr in &settings.ice_addresses {
                ice.emit_by_name::<bool>("add-local-ip-address", &[addr]);
            }
        }
    }

    /// Adds STUN/TURN servers learnt from Link headers. webrtcbin has a single
    /// STUN slot: the first STUN server wins unless one is configured.
    pub fn add_ice_servers(&self, servers: &[IceServer]) {
        for server in servers {
            let Some(uri) = server.to_webrtcbin_uri() else {
                continue;
            };
            if server.is_turn() {
                self.webrtcbin
                    .emit_by_name::<bool>("add-turn-server", &[&uri]);
            } else if self
                .webrtcbin
                .property::<Option<String>>("stun-server")
                .is_none()
            {
                self.webrtcbin.set_property("stun-server", &uri);
            }
        }
    }

    /// When the remote last sent RTCP (receiver or sender reports), if ever:
    /// a publisher's only sign that the server still listens.
    pub fn last_rtcp(&self) -> Option<std::time::Instant> {
        self.last_rtcp.lock().unwrap().last
    }

    /// How long the remote's RTCP has been silent, if that is several times
    /// the longest interval it used lately (servers use 0.5 to 5 s, and RTP
    /// randomises each interval by ±50%): the remote is gone. None while
    /// it is not, or too few reports came to judge.
    pub fn rtcp_silence(&self) -> Option<Duration> {
        self.last_rtcp
            .lock()
            .unwrap()
            .silence(std::time::Instant::now())
    }

    /// When `rtcp_silence` will be Some if no report comes before; None
    /// while the remote's pace is not known.
    pub fn rtcp_cut_at(&self) -> Option<std::time::Instant> {
        self.last_rtcp.lock().unwrap().cut_at()
    }

    /// How long nothing at all (media, RTCP, DTLS, ICE checks) came from the
    /// remote, once that is at least `floor` and three times the longest
    /// gap it left lately (a viewer that reports every 5 s is not silent
    /// after 5 s): the remote is gone (killed, unplugged). None while it is
    /// not, or before anything came.
    pub fn silence(&self, floor: Duration) -> Option<Duration> {
        let clock = self.heard.lock().unwrap();
        clock.idle_beyond(std::time::Instant::now(), floor, false)
    }

    /// `silence` as a server judges a client: never in the client's first
    /// `UNKNOWN_PACE`, before its pace shows.
    pub fn client_silence(&self, floor: Duration) -> Option<Duration> {
        let clock = self.heard.lock().unwrap();
        let idle = clock.idle_beyond(std::time::Instant::now(), floor, true)?;
        gst::debug!(
            CAT,
            obj = self.webrtcbin,
            "silent for {idle:?}; gaps before: {:?}",
            clock.gaps
        );
        Some(idle)
    }

    /// When `client_silence(floor)` would first be Some if nothing more
    /// came: the time to look again. None before anything came.
    pub fn client_silence_due(&self, floor: Duration) -> Option<std::time::Instant> {
        self.heard.lock().unwrap().idle_due(floor, true)
    }

    /// Sends RTCP reports at least every `interval` (RTP's default minimum is
    /// 5 s): a server doing so lets its publishers notice within about that
    /// long that it is gone. Call once negotiated (bundled: session 0).
    pub fn set_rtcp_interval(&self, interval: Duration) {
        let Some(rtpbin) = self
            .webrtcbin
            .downcast_ref::<gst::Bin>()
            .and_then(|b| b.by_name("rtpbin"))
        else {
            return;
        };
        if let Some(session) =
            rtpbin.emit_by_name::<Option<glib::Object>>("get-internal-session", &[&0u32])
        {
            session.set_property("rtcp-min-interval", interval.as_nanos() as u64);
            // RFC 3550 §6.2 scales the interval with the RTCP bandwidth, by
            // default 5 % of a session bandwidth rtpsession guesses low, and
            // counts TWCC feedback in the average packet size: a receiver
            // sending feedback for a 250 kbit/s stream sent its reports
            // 10-20 s apart, the sender had no RTT. The reports are tiny
            // next to the media; the minimum interval paces them.
            session.set_property("rtcp-rr-bandwidth", RTCP_BANDWIDTH);
            session.set_property("rtcp-rs-bandwidth", RTCP_BANDWIDTH);
        }
    }

    /// Whether the remote closed the DTLS connection (close_notify) or it
    /// failed after being up.
    pub fn remote_closed(&self) -> bool {
        self.remote_closed.load(Ordering::Relaxed)
    }

    /// Ends the connection the way a browser's RTCPeerConnection.close()
    /// does, with a DTLS close_notify, so the remote knows at once rather
    /// than after its timeouts; waits (briefly) until it went out. For
    /// sessions ended from this side; the webrtcbin is stopped after.
    pub fn close_notify(&self) {
        let Some(bin) = self.webrtcbin.downcast_ref::<gst::Bin>() else {
            return;
        };
        // Every connected transport: before BUNDLE is settled webrtcbin may
        // have made others that never connected.
        let encs: Vec<gst::Element> = bin
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == "dtlsenc"))
            .filter(|e| dtls_state(e) == DTLS_CONNECTED)
            .collect();
        for enc in encs {
            let (Some(src), Some(sink)) = (
                enc.static_pad("src"),
                enc.static_pad("sink")
                    .or_else(|| enc.request_pad_simple("sink")),
            ) else {
                continue;
            };
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let probe = src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let _ = tx.try_send(());
                gst::PadProbeReturn::Remove
            });
            // dtlsenc answers EOS on its data pad with close_notify.
            if sink.send_event(gst::event::Eos::new()) {
                let sent = rx.recv_timeout(CLOSE_NOTIFY_WAIT).is_ok();
                // The alert has left dtlsenc; stopping the webrtcbin at once
                // would flush it at the ICE sink before it is sent.
                if sent {
                    std::thread::sleep(CLOSE_NOTIFY_FLIGHT);
                }
                gst::debug!(CAT, obj = enc, "close_notify sent: {sent}");
            } else if let Some(probe) = probe {
                src.remove_probe(probe);
            }
        }
    }

    /// Resolves when the remote sends RTCP BYE (never, if it does not).
    pub async fn bye(&self) {
        let mut rx = self.bye.clone();
        if rx.wait_for(|bye| *bye).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Why the peer failed, when an ERROR from inside it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.reason.lock().unwrap().clone()
    }

    pub fn connection_state(&self) -> watch::Receiver<WebRTCPeerConnectionState> {
        self.connection.clone()
    }

    /// Waits until the peer connects, is closed or fails, at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> Connection {
        let mut rx = self.connection_state();
        let wait = rx.wait_for(|s| {
            matches!(
                s,
                WebRTCPeerConnectionState::Connected
                    | WebRTCPeerConnectionState::Failed
                    | WebRTCPeerConnectionState::Closed
            )
        });
        let state = match tokio::time::timeout(limit, wait).await {
            Ok(state) => state
                .map(|s| *s)
                .unwrap_or(WebRTCPeerConnectionState::Closed),
            Err(_) => return Connection::TimedOut,
        };
        match state {
            WebRTCPeerConnectionState::Connected => Connection::Connected,
            WebRTCPeerConnectionState::Failed => Connection::Failed(self.failure()),
            _ => Connection::Closed,
        }
    }

    /// Waits until a connected peer fails, closes or disconnects.
    pub async fn wait_disconnected(&self) -> WebRTCPeerConnectionState {
        let mut rx = self.connection_state();
        rx.wait_for(|s| {
            matches!(
                s,
                WebRTCPeerConnectionState::Failed
                    | WebRTCPeerConnectionState::Closed
                    | WebRTCPeerConnectionState::Disconnected
            )
        })
        .await
        .map(|s| *s)
        .unwrap_or(WebRTCPeerConnectionState::Closed)
    }

    async fn call(
        &self,
        what: &'static str,
        signal: &str,
        desc: Option<&gst_webrtc::WebRTCSessionDescription>,
    ) -> Result<Option<gst::Structure>, PeerError> {
        let (tx, rx) = oneshot::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let reply = match reply {
                Ok(s) => Ok(s.map(|s| s.to_owned())),
                Err(e) => Err(format!("{e:?}")),
            };
            let _ = tx.send(reply);
        });
        match desc {
            Some(desc) => self.webrtcbin.emit_by_name::<()>(signal, &[desc, &promise]),
            None => self
                .webrtcbin
                .emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]),
        }
        let reply = rx
            .await
            .map_err(|_| PeerError::Negotiation {
                what,
                reason: "webrtcbin dropped the promise".into(),
            })?
            .map_err(|reason| PeerError::Negotiation { what, reason })?;
        if let Some(err) = reply
            .as_ref()
            .and_then(|s| s.get::<glib::Error>("error").ok())
        {
            return Err(PeerError::Negotiation {
                what,
                reason: err.to_string(),
            });
        }
        Ok(reply)
    }

    async fn create(
        &self,
        what: &'static str,
        signal: &str,
        field: &str,
    ) -> Result<gst_webrtc::WebRTCSessionDescription, PeerError> {
        let reply = self.call(what, signal, None).await?;
        self.timeline.mark(Phase::DescriptionCreated);
        reply
            .and_then(|s| s.get::<gst_webrtc::WebRTCSessionDescription>(field).ok())
            .ok_or_else(|| PeerError::Negotiation {
                what,
                reason: "empty reply".into(),
            })
    }

    async fn set_local(
        &self,
        desc: &gst_webrtc::WebRTCSessionDescription,
    ) -> Result<(), PeerError> {
        self.call(
            "set the local description",
            "set-local-description",
            Some(desc),
        )
        .await
        .map(|_| ())
    }

    /// Sets the remote description from SDP text received over HTTP.
    pub async fn set_remote(&self, kind: WebRTCSDPType, text: &str) -> Result<(), PeerError> {
        let msg = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        if msg.medias_len() == 0 {
            return Err(PeerError::InvalidSdp("no media section".into()));
        }
        let desc = gst_webrtc::WebRTCSessionDescription::new(kind, msg);
        self.call(
            "set the remote description",
            "set-remote-description",
            Some(&desc),
        )
        .await?;
        if kind == WebRTCSDPType::Answer {
            self.timeline.mark(Phase::AnswerApplied);
        }
        Ok(())
    }

    /// Waits for ICE gathering to complete, at most `limit`. Returns whether
    /// it completed; if not, the caller sends what it has (WHIP §4.3 allows
    /// late candidates to follow by trickle).
    async fn wait_gathering(&self, limit: Duration) -> bool {
        let mut rx = self.gathering_complete.clone();
        let complete = tokio::time::timeout(limit, rx.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        self.timeline.mark(Phase::Gathered);
        complete
    }

    /// The local description as text for the HTTP peer: our fingerprint, the
    /// candidates, rtcp-mux-only and complete H.264 parameters. `offer` is
    /// the remote offer when this is an answer.
    fn local_text(
        &self,
        gathering_complete: bool,
        offer: Option<&str>,
    ) -> Result<LocalDescription, PeerError> {
        let desc = self
            .webrtcbin
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .ok_or_else(|| PeerError::Negotiation {
                what: "produce a local description",
                reason: "none set".into(),
            })?;
        let text = desc.sdp().as_text().map_err(|e| PeerError::Negotiation {
            what: "serialize the local description",
            reason: e.to_string(),
        })?;
        let candidates: Vec<String> = self
            .candidates
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        let mut text = sdp::add_candidates(&text, &candidates, gathering_complete);
        if let Some(cert) = certificate::CERTIFICATE.as_ref() {
            text = sdp::set_fingerprint(&text, cert.fingerprint());
        }
        Ok(LocalDescription {
            sdp: sdp::complete_h264_fmtp(&sdp::add_rtcp_mux_only(&text), offer),
            candidates_sent: candidates.len(),
            gathering_complete,
        })
    }

    /// Offerer side (whipsink, whepsrc): create and set the offer, gather for
    /// at most `gather_limit`, and return the offer to POST.
    pub async fn offer(&self, gather_limit: Duration) -> Result<LocalDescription, PeerError> {
        let offer = self
            .create("create an offer", "create-offer", "offer")
            .await?;
        self.set_local(&offer).await?;
        let complete = self.wait_gathering(gather_limit).await;
        self.local_text(complete, None)
    }

    /// Answerer side (whipserversrc, and a WHEP counter-offer): apply the
    /// remote offer, then answer it.
    pub async fn answer(
        &self,
        offer: &str,
        gather_limit: Duration,
    ) -> Result<LocalDescription, PeerError> {
        self.set_remote(WebRTCSDPType::Offer, offer).await?;
        self.answer_remote_offer(offer, gather_limit, false).await
    }

    /// Creates and sets the answer to the remote offer already applied
    /// (whepserversink links its senders in between), gathers, and returns it.
    pub async fn answer_remote_offer(
        &self,
        offer: &str,
        gather_limit: Duration,
        keep_twcc: bool,
    ) -> Result<LocalDescription, PeerError> {
        let mut answer = self
            .create("create an answer", "create-answer", "answer")
            .await?;
        if keep_twcc {
            let offered = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
                .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
            if let Some(sdp) = congestion::keep_twcc_in_answer(&offered, answer.sdp()) {
                answer = gst_webrtc::WebRTCSessionDescription::new(answer.type_(), sdp);
            }
        }
        self.set_local(&answer).await?;
        let complete = self.wait_gathering(gather_limit).await;
        self.local_text(complete, Some(offer))
    }

    /// Candidates gathered after `already_sent`, once gathering completes
    /// or `limit` passes; and whether it completed.
    pub async fn late_candidates(
        &self,
        already_sent: usize,
        limit: Duration,
    ) -> (Vec<String>, bool) {
        let complete = self.wait_gathering(limit).await;
        let all = self.candidates.lock().unwrap();
        (
            all.iter()
                .skip(already_sent)
                .map(|(_, c)| c.clone())
                .collect(),
            complete,
        )
    }

    /// A remote candidate (`candidate:...`) that came by trickle, for the
    /// m-section `mline`; an empty one says no more will come.
    pub fn add_remote_candidate(&self, mline: u32, candidate: &str) {
        self.webrtcbin
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }

    /// The local candidates gathered so far (`candidate:...` lines).
    pub fn local_candidates(&self) -> Vec<String> {
        let all = self.candidates.lock().unwrap();
        all.iter().map(|(_, c)| c.clone()).collect()
    }

    /// The description webrtcbin holds for `property` ("local-description",
    /// "remote-description"), as text.
    pub fn description(&self, property: &str) -> Option<String> {
        self.webrtcbin
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>(property)
            .and_then(|d| d.sdp().as_text().ok())
    }

    /// Starts libnice's ICE over (see `nice`): before the restart's
    /// descriptions are set.
    fn restart_agent(&self) -> Result<(), PeerError> {
        let ice = self
            .webrtcbin
            .property::<gst_webrtc::WebRTCICE>("ice-agent");
        let agent = ice
            .find_property("agent")
            .map(|_| ice.property::<glib::Object>("agent"))
            .ok_or_else(|| PeerError::Negotiation {
                what: "restart ICE",
                reason: "the ICE agent is not libnice's".into(),
            })?;
        nice::restart(&agent).map_err(|reason| PeerError::Negotiation {
            what: "restart ICE",
            reason,
        })
    }

    /// Answerer side of an ICE restart (RFC 9725 §4.3.3): `offer` is the
    /// remote's description with its new credentials and candidates.
    /// Answers with new credentials of ours, returned as (ufrag, pwd).
    /// DTLS and media go on: only ICE starts over.
    pub async fn answer_ice_restart(&self, offer: &str) -> Result<(String, String), PeerError> {
        self.restart_agent()?;
        self.set_remote(WebRTCSDPType::Offer, offer).await?;
        let answer = self
            .create("create an answer", "create-answer", "answer")
            .await?;
        self.set_local_with_new_credentials(&answer).await
    }

    /// Offerer side of an ICE restart: a new offer with new credentials,
    /// set locally; returns it as text (its candidates follow by
    /// `local_candidates`: they are those gathered already).
    pub async fn offer_ice_restart(&self) -> Result<String, PeerError> {
        self.restart_agent()?;
        let offer = self
            .create("create an offer", "create-offer", "offer")
            .await?;
        self.set_local_with_new_credentials(&offer).await?;
        self.description("local-description")
            .ok_or_else(|| PeerError::Negotiation {
                what: "restart ICE",
                reason: "no local description".into(),
            })
    }

    /// `desc` with fresh ICE credentials, set as the local description.
    async fn set_local_with_new_credentials(
        &self,
        desc: &gst_webrtc::WebRTCSessionDescription,
    ) -> Result<(String, String), PeerError> {
        let (ufrag, pwd) = ice::new_credentials();
        let text = desc.sdp().as_text().map_err(|e| PeerError::Negotiation {
            what: "serialize the local description",
            reason: e.to_string(),
        })?;
        let text = ice::with_credentials(&text, &ufrag, &pwd);
        let msg = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
            .map_err(|e| PeerError::InvalidSdp(e.to_string()))?;
        let desc = gst_webrtc::WebRTCSessionDescription::new(desc.type_(), msg);
        self.set_local(&desc).await?;
        Ok((ufrag, pwd))
    }

    /// Asks the encoders upstream of every send pad for a key unit: a viewer
    /// can decode nothing before one, and the encoder's first one was
    /// dropped while DTLS was still connecting.
    pub fn request_keyframes(&self) {
        for pad in self.webrtcbin.sink_pads() {
            let fku = gst::event::CustomUpstream::new(
                gst::Structure::builder("GstForceKeyUnit")
                    .field("all-headers", true)
                    .build(),
            );
            let _ = pad.push_event(fku);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.webrtcbin.set_state(gst::State::Null);
    }
}

/// Loads the plugins a session's webrtcbin uses (webrtc, nice, srtp,
/// rtpmanager), so that a session made later does not: ~40 ms of a first
/// session that found its DTLS key ready (examples/bench_whep.rs, "key
/// pregenerated"). Blocking; the elements made are dropped at once.
pub fn load_plugins() {
    for name in ["webrtcbin", "nicesrc", "srtpenc", "srtpdec"] {
        let _ = gst::ElementFactory::make(name).build();
    }
}

/// An ERROR from inside one of `bin`'s peers (a DTLS alert, a bad packet)
/// ends that peer, not the element: the peer's connection state becomes
/// Failed with the error as its reason, for its owner to handle like any
/// failed connection (reconnect, or end that client's session), and the
/// message becomes a WARNING. Any other message comes back as it was.
pub fn contain_error(bin: &gst::Bin, message: gst::Message) -> gst::Message {
    let gst::MessageView::Error(err) = message.view() else {
        return message;
    };
    // The direct child of `bin` the error came from.
    let Some(mut child) = message.src().cloned() else {
        return message;
    };
    while let Some(parent) = child.parent() {
        if parent == *bin.upcast_ref::<gst::Object>() {
            break;
        }
        child = parent;
    }
    let Some(failure) = failure_of(&child) else {
        return message;
    };
    let reason = match err.debug() {
        Some(debug) => format!("{}: {} ({debug})", child.name(), err.error()),
        None => format!("{}: {}", child.name(), err.error()),
    };
    gst::warning!(CAT, obj = child, "peer failed: {reason}");
    failure.reason.lock().unwrap().get_or_insert(reason);
    failure
        .state
        .send_replace(WebRTCPeerConnectionState::Failed);

    let mut warning = gst::message::Warning::builder_from_error(err.error());
    if let Some(src) = message.src() {
        warning = warning.src(src);
    }
    let debug = err.debug();
    if let Some(debug) = debug.as_deref() {
        warning = warning.debug(debug);
    }
    warning.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn rtcp_silence_adapts_to_the_interval_the_remote_uses() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // A server reporting every ~500 ms (two SSRCs per packet).
        let mut fast = RtcpClock::default();
        for t in [0, 10, 480, 490, 1020, 1500, 2000] {
            fast.heard(ms(t));
        }
        assert_eq!(fast.silence(ms(2000 + 1400)), None);
        assert!(fast.silence(ms(2000 + 1700)).is_some());
        // One reporting every 5 s: 5 s of silence is normal for it.
        let mut slow = RtcpClock::default();
        for t in [0, 5000, 9000, 14000] {
            slow.heard(ms(t));
        }
        assert_eq!(slow.silence(ms(14000 + 6000)), None);
        assert!(slow.silence(ms(14000 + 15500)).is_some());
        // Too little to judge.
        let mut new = RtcpClock::default();
        new.heard(ms(0));
        assert_eq!(new.silence(ms(60_000)), None);
    }

    #[test]
    fn a_viewer_at_rtps_default_pace_is_not_reaped_before_its_pace_is_known() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let floor = Duration::from_secs(5);
        // ICE and DTLS packets at connection, then RTCP at RTP's default
        // pace (2-6.2 s apart), the first 8 s after connecting.
        let mut viewer = RtcpClock::default();
        for t in [0, 20, 40, 60, 8000, 14_100, 16_500, 22_600, 25_000] {
            assert_eq!(viewer.idle_beyond(ms(t), floor, true), None, "at {t} ms");
            viewer.heard(ms(t));
        }
        assert_eq!(viewer.idle_beyond(ms(25_000 + 23_700), floor, true), None);
        assert!(viewer
            .idle_beyond(ms(25_000 + 23_900), floor, true)
            .is_some());
        // Silent since 2.5 s after connecting (killed, say): kept until
        // 12.3 s after connecting, not 5 s after the silence began.
        let mut early = RtcpClock::default();
        for t in [0, 20, 40, 500, 1500, 2500] {
            early.heard(ms(t));
        }
        assert_eq!(early.idle_beyond(ms(12_200), floor, true), None);
        // A client judging its server (which sends media) is not patient.
        assert!(early.idle_beyond(ms(2500 + 5000), floor, false).is_some());
        assert!(early.idle_beyond(ms(12_400), floor, true).is_some());
        // Once its pace is known (every second), the floor rules.
        let mut client = RtcpClock::default();
        for t in (0..=13_000).step_by(1000) {
            client.heard(ms(t));
        }
        assert_eq!(client.idle_beyond(ms(13_000 + 4900), floor, true), None);
        assert!(client.idle_beyond(ms(13_000 + 5000), floor, true).is_some());
        // The server looks again exactly when the cut would come.
        assert_eq!(client.idle_due(floor, true), Some(ms(13_000 + 5000)));
        assert_eq!(early.idle_due(floor, true), Some(ms(12_320)));
        assert_eq!(viewer.idle_due(floor, true), Some(ms(25_000 + 23_820)));
        assert_eq!(RtcpClock::default().idle_due(floor, true), None);
    }
}
