use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_webrtc::WebRTCRTPTransceiverDirection;

use crate::codec;
use crate::peer::congestion;
use crate::peer::stats::ClientStats;
use crate::peer::Peer;
use crate::protocol::Client;
use crate::runtime::RUNTIME;
use crate::session::supervisor::{stats_sources, Role, Sessions, Supervisor};
use crate::session::{self, ClientSettings, SessionError};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("whipsink", gst::DebugColorFlags::empty(), Some("WHIP sink"))
});

/// How long to wait for the H.264 payloader to learn the profile from the
/// first SPS, before offering Constrained Baseline as a default.
const H264_PROFILE_WAIT: Duration = Duration::from_secs(1);

struct Stream {
    ghost: gst::GhostPad,
    /// [parser ! payloader !] queue: what we added (the payloader only for
    /// encoded input). The queue's src pad feeds the current webrtcbin.
    elements: Vec<gst::Element>,
    /// The queue's src pad, once caps arrived.
    out: Option<gst::Pad>,
    /// Between two sessions: a probe dropping what the queue sends, so that
    /// an unlinked pad never stops the stream upstream (not-linked).
    parked: Option<gst::PadProbeId>,
    eos: bool,
}

#[derive(Default)]
struct State {
    /// The webrtcbin the streams feed.
    peer: Option<Arc<Peer>>,
    /// Whether `peer` is still unused by any session.
    peer_fresh: bool,
    streams: Vec<Stream>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
    resources: Option<Sessions>,
    client: Option<Client>,
    started: bool,
    running: bool,
    next_pad: u32,
    next_peer: u32,
    /// Congestion control of every peer, decided when the first one is made:
    /// on when asked for and the first stream is encoded (we payload it, so
    /// it carries TWCC).
    congestion: Option<congestion::Settings>,
}

pub struct WhipSink {
    settings: Mutex<ClientSettings>,
    congestion: Mutex<congestion::Settings>,
    state: Mutex<State>,
    stats: ClientStats,
    /// Held while a stream is given to a peer: the first stream makes a
    /// new peer's DTLS transport and puts it in the bin, alone (streams'
    /// caps come on their own threads).
    feeding: Mutex<()>,
}

impl Default for WhipSink {
    fn default() -> Self {
        Self {
            settings: Mutex::new(ClientSettings::new(crate::session::settings::Kind::Whip)),
            congestion: Mutex::default(),
            state: Mutex::default(),
            stats: ClientStats::default(),
            feeding: Mutex::default(),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WhipSink {
    // GStreamer names instances after the type, less a "Gst" prefix:
    // this one's are `whipsink0`, `whipsink1`..., and the type
    // cannot clash with gst-plugins-rs' own, whose names start with "Gst".
    const NAME: &'static str = "WhipSink";
    type Type = super::WhipSink;
    type ParentType = gst::Bin;
}

impl ObjectImpl for WhipSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = ClientSettings::properties(
                crate::session::settings::Kind::Whip,
                "whip-endpoint",
                "URL of the WHIP endpoint to POST the offer to, e.g. https://host/whip/stream",
            );
            props.extend(congestion::Settings::properties());
            props.extend(ClientStats::properties());
            props
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.stats.set_property(value, pspec)
            || self.congestion.lock().unwrap().set(value, pspec)
        {
            return;
        }
        let token = {
            let mut settings = self.settings.lock().unwrap();
            settings.set(value, pspec);
            settings.auth_token.clone()
        };
        if pspec.name() == "auth-token" {
            // Token refresh: the next session and every DELETE use it.
            if let Some(client) = &self.state.lock().unwrap().client {
                client.set_auth_token(token);
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = self.stats.property(pspec) {
            return value;
        }
        if let Some(value) = self.congestion.lock().unwrap().get(pspec) {
            return value;
        }
        self.settings
            .lock()
            .unwrap()
            .get(pspec)
            .unwrap_or_else(|| pspec.default_value().clone())
    }

    fn dispose(&self) {
        let (supervisor, sessions) = {
            let mut state = self.state.lock().unwrap();
            (state.supervisor.take(), state.resources.take())
        };
        crate::element::dispose_client(self.obj().upcast_ref(), supervisor, sessions);
    }

    fn constructed(&self) {
        self.parent_constructed();
        crate::element::set_up_bin(self.obj().upcast_ref(), gst::ElementFlags::SINK);
    }
}

impl GstObjectImpl for WhipSink {}

impl ElementImpl for WhipSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "WHIP sink",
                "Sink/Network/WebRTC",
                "Publishes RTP or encoded H.264/VP8/VP9/Opus streams to a WHIP endpoint (RFC 9725)",
                "gst-plugin-whipwhep developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = codec::input_caps();
            vec![gst::PadTemplate::new(
                "sink_%u",
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &caps,
            )
            .unwrap()]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let mut state = self.state.lock().unwrap();
        if state.started {
            gst::error!(
                CAT,
                imp = self,
                "cannot add a stream to a running WHIP session"
            );
            return None;
        }
        let name = crate::element::request_pad_name(
            self.obj().upcast_ref(),
            templ,
            name,
            &mut state.next_pad,
        )?;
        let ghost = gst::GhostPad::builder_from_template(templ)
            .name(name.as_str())
            .event_function(|pad, parent, event| {
                WhipSink::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        state.streams.push(Stream {
            ghost: ghost.clone(),
            elements: Vec::new(),
            out: None,
            parked: None,
            eos: false,
        });
        drop(state);
        ghost.set_active(true).ok()?;
        self.obj().add_pad(&ghost).ok()?;
        Some(ghost.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let stream = {
            let mut state = self.state.lock().unwrap();
            let Some(i) = state
                .streams
                .iter()
                .position(|s| s.ghost.upcast_ref::<gst::Pad>() == pad)
            else {
                return;
            };
            let stream = state.streams.remove(i);
            (stream, state.peer.clone())
        };
        let (stream, peer) = stream;
        let _ = stream.ghost.set_target(None::<&gst::Pad>);
        for el in &stream.elements {
            crate::element::stop(el);
            let _ = self.obj().remove(el);
        }
        if let (Some(wpad), Some(peer)) = (stream.out.and_then(|o| o.peer()), peer) {
            peer.webrtcbin().release_request_pad(&wpad);
        }
        let _ = self.obj().remove_pad(pad);
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self.settings.lock().unwrap().validate("whip-endpoint") {
                    gst::element_imp_error!(self, gst::ResourceError::Settings, ("{}", msg));
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => self.stop_session("stopped"),
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        // Negotiate from PLAYING on, once the state change has gone through
        // us (see whepsrc: DTLS elements must not be created mid-change).
        if transition == gst::StateChange::PausedToPlaying {
            self.state.lock().unwrap().running = true;
            self.maybe_start();
        }
        Ok(ret)
    }
}

impl BinImpl for WhipSink {
    fn handle_message(&self, message: gst::Message) {
        // A session's failure is the supervisor's to handle (reconnect, or
        // ERROR with its context), not a bare ERROR from deep inside.
        let message = crate::peer::contain_error(self.obj().upcast_ref(), message);
        self.parent_handle_message(message)
    }
}

impl WhipSink {
    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                if let Err(err) = self.link_stream(pad, c.caps()) {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("{}", err));
                    return false;
                }
                let ret = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                self.maybe_start();
                ret
            }
            gst::EventView::Eos(_) => {
                self.stream_eos(pad);
                true
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// A new webrtcbin, configured from the properties, not in the bin yet:
    /// `feed_peer` puts it there. Takes no lock of ours.
    fn create_peer(
        &self,
        n: u32,
        congestion: Option<congestion::Settings>,
    ) -> Result<Arc<Peer>, crate::peer::PeerError> {
        let settings = self.settings.lock().unwrap().clone();
        let peer = Peer::detached(&format!("session{n}"), &settings.peer_settings(0))?;
        if let Some(cc) = congestion {
            let weak = self.obj().downgrade();
            let min = cc.min;
            let on_estimate: congestion::OnEstimate = Arc::new(move |bps| {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().set_bitrate(bps, min);
                }
            });
            // Before the DTLS transport is made (`Peer::prime`): webrtcbin
            // asks for the estimator when it makes the transport.
            congestion::install(&peer, &cc, on_estimate).map_err(|reason| {
                crate::peer::PeerError::Negotiation {
                    what: "set up congestion control",
                    reason,
                }
            })?;
        }
        Ok(peer)
    }

    /// Gives a total target bitrate to the video encoders (see
    /// `congestion::video_share`).
    fn set_bitrate(&self, total: u32, min: u32) {
        let (encoders, audio) = {
            let state = self.state.lock().unwrap();
            let mut encoders = Vec::new();
            let mut audio = 0;
            for s in state.streams.iter().filter(|s| s.elements.len() > 1) {
                let media = s
                    .ghost
                    .current_caps()
                    .and_then(|c| c.structure(0).map(|st| st.name().to_string()))
                    .unwrap_or_default();
                if media.starts_with("audio/") {
                    audio += 1;
                    continue;
                }
                let encoder = s
                    .elements
                    .iter()
                    .find(|e| e.factory().is_some_and(|f| f.klass().contains("Encoder")))
                    .cloned()
                    .or_else(|| congestion::upstream_encoder(&s.elements[0].static_pad("sink")?));
                encoders.extend(encoder);
            }
            (encoders, audio)
        };
        if encoders.is_empty() {
            return;
        }
        let share = congestion::video_share(total, encoders.len(), audio, min);
        for encoder in &encoders {
            if congestion::set_encoder_bitrate(encoder, share) {
                gst::debug!(CAT, imp = self, "{}: {share} bit/s", encoder.name());
            }
        }
    }

    /// Detaches the streams from `peer`, which is going away: until the next
    /// session their queues' output is dropped, not refused (a not-linked
    /// flow would stop the sources and no caps would reach the next offer).
    fn park_streams(&self, peer: &Peer) {
        let mut state = self.state.lock().unwrap();
        for s in state.streams.iter_mut() {
            let Some(out) = s.out.clone() else { continue };
            let Some(wpad) = out.peer() else { continue };
            if wpad.parent_element().as_ref() != Some(peer.webrtcbin()) {
                continue;
            }
            if s.parked.is_none() {
                s.parked = out.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                    |_, _| gst::PadProbeReturn::Drop,
                );
            }
            let _ = out.unlink(&wpad);
        }
    }

    /// Links a stream's queue to a sendonly transceiver of `peer`, replacing
    /// its link to a previous peer once the queue is idle.
    /// A peer not in `bin` yet gets its DTLS transport first (see
    /// `Peer::join`), from an offer with the stream's RTP caps (`rtp`, or
    /// those `out` has sent).
    fn feed_peer(
        &self,
        out: &gst::Pad,
        rtp: Option<&gst::Caps>,
        peer: &Peer,
    ) -> Result<(), String> {
        let _feeding = self.feeding.lock().unwrap();
        let wpad = peer
            .webrtcbin()
            .request_pad_simple("sink_%u")
            .ok_or("webrtcbin refused a sink pad")?;
        let transceiver = wpad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
        transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
        if peer.webrtcbin().parent().is_none() {
            let caps = out
                .current_caps()
                .or_else(|| rtp.cloned())
                .ok_or("no caps to start a session with")?;
            transceiver.set_property("codec-preferences", &caps);
            let primed = peer.prime();
            transceiver.set_property("codec-preferences", None::<gst::Caps>);
            primed
                .and_then(|_| peer.join(self.obj().upcast_ref()))
                .map_err(|e| e.to_string())?;
        }
        if out.peer().is_none() {
            return out
                .link(&wpad)
                .map(|_| ())
                .map_err(|e| format!("cannot link to webrtcbin: {e:?}"));
        }
        out.add_probe(gst::PadProbeType::IDLE, move |out, _| {
            if let Some(old) = out.peer() {
                let _ = out.unlink(&old);
            }
            // Linking resends the sticky events (caps) to the new webrtcbin.
            let _ = out.link(&wpad);
            gst::PadProbeReturn::Remove
        });
        Ok(())
    }

    /// First caps on a request pad: [parse ! payload !] queue, into webrtcbin.
    fn link_stream(&self, ghost: &gst::GhostPad, caps: &gst::CapsRef) -> Result<(), String> {
        let known = {
            let state = self.state.lock().unwrap();
            state
                .streams
                .iter()
                .find(|s| &s.ghost == ghost)
                .map(|s| s.out.is_some())
                .ok_or("unknown pad")?
        };
        if known {
            return Ok(());
        }
        let mut chain = if codec::is_rtp(caps) {
            Vec::new()
        } else {
            let codec =
                codec::from_encoded_caps(caps).ok_or_else(|| format!("unsupported caps {caps}"))?;
            let mut chain = codec.payload_chain().map_err(|e| e.to_string())?;
            if self.congestion.lock().unwrap().enabled {
                // The payloader stamps TWCC, and its caps ask for feedback.
                let payloader = chain.last().unwrap();
                let caps = congestion::stamp_twcc(payloader)?;
                chain.push(
                    gst::ElementFactory::make("capsfilter")
                        .property("caps", caps)
                        .build()
                        .map_err(|_| "capsfilter missing")?,
                );
            }
            chain
        };
        // Keeps upstream live and unblocked while the stream moves between
        // webrtcbins (republishing).
        chain.push(
            gst::ElementFactory::make("queue")
                .property_from_str("leaky", "downstream")
                .property("max-size-buffers", 0u32)
                .property("max-size-bytes", 0u32)
                .property("max-size-time", 300_000_000u64)
                .build()
                .map_err(|_| "queue missing")?,
        );
        codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
        let out = chain.last().unwrap().static_pad("src").unwrap();
        let peer = {
            // Streams' caps come on their own threads: one of them makes the
            // first webrtcbin, under the lock, and the others use it.
            let mut state = self.state.lock().unwrap();
            match state.peer.clone() {
                Some(p) => p,
                None => {
                    state.next_peer += 1;
                    let cc = *self.congestion.lock().unwrap();
                    state.congestion = (cc.enabled && !codec::is_rtp(caps)).then_some(cc);
                    let p = self
                        .create_peer(state.next_peer, state.congestion)
                        .map_err(|e| e.to_string())?;
                    state.peer = Some(p.clone());
                    state.peer_fresh = true;
                    p
                }
            }
        };
        let rtp = if codec::is_rtp(caps) {
            caps.to_owned()
        } else {
            let codec = codec::from_encoded_caps(caps).ok_or("unsupported caps")?;
            gst::Caps::builder_full()
                .structure(codec.rtp_caps(96, None))
                .build()
        };
        self.feed_peer(&out, Some(&rtp), &peer)?;
        ghost
            .set_target(Some(&chain[0].static_pad("sink").unwrap()))
            .map_err(|e| e.to_string())?;
        let mut state = self.state.lock().unwrap();
        if let Some(s) = state.streams.iter_mut().find(|s| &s.ghost == ghost) {
            s.out = Some(out);
            s.elements = chain;
        }
        Ok(())
    }

    /// Starts publishing once PAUSED/PLAYING and every stream has caps.
    fn maybe_start(&self) {
        let mut state = self.state.lock().unwrap();
        if state.started
            || !state.running
            || state.streams.is_empty()
            || state.streams.iter().any(|s| s.out.is_none())
        {
            return;
        }
        state.started = true;
        let settings = self.settings.lock().unwrap().clone();
        let obj = self.obj().clone().upcast::<gst::Element>();
        let fail = |e: SessionError| session::post_error(&obj, "WHIP", &e);
        let endpoint = match settings.endpoint_url("whip-endpoint") {
            Ok(u) => u,
            Err(e) => return fail(SessionError::Config(e)),
        };
        let client = match settings.client() {
            Ok(c) => c,
            Err(e) => return fail(e.into()),
        };
        let policy = settings.policy();
        let role = Arc::new(WhipRole(self.obj().downgrade()));
        let (task, sessions, current) =
            Supervisor::spawn(role, &obj, client.clone(), endpoint, policy);
        self.stats.start(&obj, stats_sources(&current));
        state.supervisor = Some(task);
        state.resources = Some(sessions);
        state.client = Some(client);
    }

    fn stop_session(&self, reason: &str) {
        self.stats.stop();
        let (task, resources) = {
            let mut state = self.state.lock().unwrap();
            state.running = false;
            (state.supervisor.take(), state.resources.take())
        };
        if let Some(task) = task {
            task.abort();
        }
        if let Some(resources) = resources {
            let resources = resources.lock().unwrap().clone();
            session::teardown_all(
                &session::Host::new(self.obj().upcast_ref()),
                &resources,
                reason,
                session::TEARDOWN_WAIT,
            );
        }
    }

    /// EOS on every stream: DELETE the session, then post EOS so the
    /// pipeline finishes once the server knows (or after `TEARDOWN_WAIT`).
    fn stream_eos(&self, pad: &gst::GhostPad) {
        let (task, resources) = {
            let mut state = self.state.lock().unwrap();
            if let Some(s) = state.streams.iter_mut().find(|s| &s.ghost == pad) {
                s.eos = true;
            }
            if !state.streams.iter().all(|s| s.eos) {
                return;
            }
            (state.supervisor.take(), state.resources.take())
        };
        if let Some(task) = task {
            task.abort();
        }
        let host = session::Host::new(self.obj().upcast_ref());
        RUNTIME.spawn(async move {
            if let Some(resources) = resources {
                let resources = resources.lock().unwrap().clone();
                let h = host.clone();
                let deletes = RUNTIME.spawn(async move {
                    for r in resources {
                        session::delete_and_report(&h, &r, "end of stream").await;
                    }
                });
                // The pipeline's EOS waits for the DELETE as a stop does, at
                // most TEARDOWN_WAIT; a slow one finishes in the background.
                let _ = tokio::time::timeout(session::TEARDOWN_WAIT, deletes).await;
            }
            host.with(|obj| {
                let _ = obj.post_message(gst::message::Eos::builder().src(obj).build());
            });
        });
    }
}

/// whipsink's part in the session supervisor.
struct WhipRole(glib::WeakRef<super::WhipSink>);

impl WhipRole {
    fn min_bitrate(&self) -> u32 {
        self.0
            .upgrade()
            .map(|obj| obj.imp().congestion.lock().unwrap().min)
            .unwrap_or(0)
    }
}

impl Role for WhipRole {
    fn protocol(&self) -> &'static str {
        "WHIP"
    }

    /// The first session uses the webrtcbin the streams were linked to when
    /// their caps came; each later one gets a new webrtcbin, and the streams
    /// move to it.
    fn new_peer(&self, _renewal: bool) -> Result<Arc<Peer>, crate::peer::PeerError> {
        let gone = || crate::peer::PeerError::Negotiation {
            what: "start",
            reason: "element gone".into(),
        };
        let obj = self.0.upgrade().ok_or_else(gone)?;
        let imp = obj.imp();
        let (fresh, outs) = {
            let mut state = imp.state.lock().unwrap();
            let fresh = state.peer.clone().filter(|_| state.peer_fresh);
            state.peer_fresh = false;
            (
                fresh,
                state
                    .streams
                    .iter()
                    .filter_map(|s| s.out.clone())
                    .collect::<Vec<_>>(),
            )
        };
        let peer = match fresh {
            Some(p) => p,
            None => {
                let (n, cc) = {
                    let mut state = imp.state.lock().unwrap();
                    state.next_peer += 1;
                    (state.next_peer, state.congestion)
                };
                let peer = imp.create_peer(n, cc)?;
                for out in &outs {
                    imp.feed_peer(out, None, &peer).map_err(|reason| {
                        crate::peer::PeerError::Negotiation {
                            what: "move a stream to a new session",
                            reason,
                        }
                    })?;
                }
                let mut state = imp.state.lock().unwrap();
                for s in state.streams.iter_mut() {
                    if let (Some(out), Some(id)) = (&s.out, s.parked.take()) {
                        out.remove_probe(id);
                    }
                }
                state.peer = Some(peer.clone());
                peer
            }
        };
        Ok(peer)
    }

    fn before_offer(&self, peer: &Arc<Peer>) -> crate::runtime::BoxFuture<()> {
        Box::pin(wait_complete_caps(peer.webrtcbin().sink_pads()))
    }

    fn answers_counter_offers(&self) -> bool {
        false
    }

    fn activate(&self, peer: &Arc<Peer>) {
        gst::info!(CAT, "connected, requesting a key frame");
        peer.request_keyframes();
        // Congestion control starts from start-bitrate.
        let (target, min) = (peer.stats().target_bitrate(), self.min_bitrate());
        if let (Some(obj), true) = (self.0.upgrade(), target > 0) {
            obj.imp().set_bitrate(target, min);
        }
    }

    fn carries_output(&self, _peer: &Arc<Peer>) -> bool {
        true
    }

    fn rtcp_liveness(&self) -> bool {
        true
    }

    /// A publisher receives no media: RTCP reports are its sign of life.
    fn last_media(&self, peer: &Arc<Peer>) -> Option<std::time::Instant> {
        peer.last_rtcp()
    }

    fn retire(&self, peer: &Arc<Peer>) {
        if let Some(obj) = self.0.upgrade() {
            obj.imp().park_streams(peer);
            peer.remove_from(obj.upcast_ref());
        }
    }
}

/// Waits until webrtcbin holds caps an offer can be made from: for H.264,
/// caps carrying the profile, which the payloader learns from the first SPS
/// (strict servers reject an H.264 offer without it). Bounded: then the SDP
/// gets Constrained Baseline as a default.
async fn wait_complete_caps(pads: Vec<gst::Pad>) {
    let deadline = tokio::time::Instant::now() + H264_PROFILE_WAIT;
    loop {
        let complete = pads.iter().all(|p| {
            p.current_caps().is_some_and(|caps| {
                caps.structure(0).is_some_and(|s| {
                    !s.get::<&str>("encoding-name")
                        .is_ok_and(|n| n.eq_ignore_ascii_case("H264"))
                        || s.has_field("profile-level-id")
                })
            })
        });
        if complete || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
