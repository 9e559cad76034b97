use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_webrtc::WebRTCRTPTransceiverDirection;

use super::output::{Fed, Output, OutputKind, SessionId};
use super::Media;
use crate::codec::{self, Codec};
use crate::peer::stats::ClientStats;
use crate::peer::timeline::Phase;
use crate::peer::{Peer, PeerError};
use crate::protocol::Client;
use crate::session::supervisor::{stats_sources, Role, Sessions, Supervisor};
use crate::session::{self, messages, ClientSettings, SessionError};

/// Reference for `SessionInfo::last_media`.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "whepsrc",
        gst::DebugColorFlags::empty(),
        Some("WHEP source"),
    )
});

/// Enough to reorder packets and absorb jitter on a good network, and to let
/// a NACKed packet come back on a LAN, while costing 150 ms less time to first
/// frame than webrtcbin's 200 ms default.
const DEFAULT_LATENCY_MS: u32 = 50;

/// A session (one webrtcbin) feeding the outputs.
struct SessionInfo {
    peer: Arc<Peer>,
    /// Depayload/decode chains.
    elements: Vec<gst::Element>,
    /// Where each stream of the session ends (see `route_stream`).
    ends: Vec<gst::Pad>,
    /// Milliseconds since `epoch` of the last media buffer; 0: none yet.
    last_media: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    outputs: Vec<Arc<Output>>,
    sessions: HashMap<SessionId, SessionInfo>,
    /// The session outputs made later should move to.
    preferred: Option<SessionId>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
    resources: Option<Sessions>,
    client: Option<Client>,
    next_video_pad: u32,
    next_audio_pad: u32,
    next_session: SessionId,
}

#[derive(Clone)]
struct Settings {
    client: ClientSettings,
    video_caps: gst::Caps,
    audio_caps: gst::Caps,
    media: Media,
    latency_ms: u32,
}

fn decodable(media: &str) -> gst::Caps {
    codec::caps_of(
        codec::ALL
            .into_iter()
            .filter(|c| c.media == media && c.can_decode()),
    )
}

/// What a `media` output may carry for these codecs: RTP, encoded or
/// decoded, whichever downstream accepts.
fn output_forms<'a>(media: &str, codecs: impl Iterator<Item = &'a &'static Codec>) -> gst::Caps {
    let mut caps = gst::Caps::builder("application/x-rtp")
        .field("media", media)
        .build();
    for c in codecs {
        caps.merge(gst::Caps::builder(c.encoded).build());
    }
    caps.merge(gst::Caps::new_empty_simple(format!("{media}/x-raw")));
    caps
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            client: ClientSettings::new(crate::session::settings::Kind::Whep),
            video_caps: decodable("video"),
            audio_caps: decodable("audio"),
            media: Media::AudioVideo,
            latency_ms: DEFAULT_LATENCY_MS,
        }
    }
}

impl Settings {
    /// Codecs to offer for `media`, in preference order.
    fn codecs(&self, media: &str) -> Vec<&'static Codec> {
        let wanted = match (media, self.media) {
            ("video", Media::Audio) | ("audio", Media::Video) => return Vec::new(),
            ("video", _) => &self.video_caps,
            _ => &self.audio_caps,
        };
        codec::preferred(wanted, media, |_| true)
    }
}

#[derive(Default)]
pub struct WhepSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// The flows of all src pads, combined: an unlinked pad is fine while
    /// another one is linked (an audio+video stream into a video-only
    /// pipeline).
    flows: Mutex<gst_base::UniqueFlowCombiner>,
    /// Whether the user was told why nothing is linked.
    told_unlinked: std::sync::atomic::AtomicBool,
    /// Packets the sessions' jitterbuffers dropped while downstream stalled.
    dropped: AtomicU64,
    /// The src pads' stream group.
    group: std::sync::OnceLock<gst::GroupId>,
    stats: ClientStats,
}

#[glib::object_subclass]
impl ObjectSubclass for WhepSrc {
    // GStreamer names instances after the type, less a "Gst" prefix:
    // this one's are `whepsrc0`, `whepsrc1`..., and the type
    // cannot clash with gst-plugins-rs' own, whose names start with "Gst".
    const NAME: &'static str = "WhepSrc";
    type Type = super::WhepSrc;
    type ParentType = gst::Bin;
}

impl ObjectImpl for WhepSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = ClientSettings::properties(
                crate::session::settings::Kind::Whep,
                "whep-endpoint",
                "URL of the WHEP endpoint to POST the offer to, e.g. https://host/whep/stream",
            );
            props.extend(crate::element::codec_caps_pspecs(
                "every codec with an installed decoder",
            ));
            props.extend([
                glib::ParamSpecEnum::builder_with_default("media", Media::AudioVideo)
                    .nick("Media")
                    .blurb(
                        "Which media to ask for. \"video\" offers no audio transceiver: device \
                         endpoints such as Ring reject one with \"Incompatible send direction\".",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("dropped")
                    .nick("Dropped packets")
                    .blurb(
                        "RTP packets dropped because downstream stalled: a src pad's buffers \
                         leave from the session's receiving thread, with no queue of their own; \
                         when downstream holds one for over 1 s, the jitterbuffer behind it \
                         keeps the newest packets only, as a leaky queue of about 1 s would.",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Jitterbuffer latency")
                    .blurb(
                        "Milliseconds of receive jitterbuffer. 50 absorbs jitter and lets a lost \
                         packet be re-sent on a good network; webrtcbin's own default (200) adds \
                         150 ms more to the time to first frame. Raise it on lossy links.",
                    )
                    .maximum(10_000)
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
            ]);
            props.extend(ClientStats::properties());
            props
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.stats.set_property(value, pspec) {
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "video-caps" => settings.video_caps = crate::element::caps_value(value),
            "audio-caps" => settings.audio_caps = crate::element::caps_value(value),
            "media" => settings.media = value.get().unwrap(),
            "latency" => settings.latency_ms = value.get().unwrap(),
            _ => {
                settings.client.set(value, pspec);
                if pspec.name() == "auth-token" {
                    let token = settings.client.auth_token.clone();
                    drop(settings);
                    // Token refresh: the next session and every DELETE use it.
                    if let Some(client) = &self.state.lock().unwrap().client {
                        client.set_auth_token(token);
                    }
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = self.stats.property(pspec) {
            return value;
        }
        if pspec.name() == "dropped" {
            return self.dropped.load(Ordering::Relaxed).to_value();
        }
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "video-caps" => settings.video_caps.to_value(),
            "audio-caps" => settings.audio_caps.to_value(),
            "media" => settings.media.to_value(),
            "latency" => settings.latency_ms.to_value(),
            _ => settings
                .client
                .get(pspec)
                .unwrap_or_else(|| pspec.default_value().clone()),
        }
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
        crate::element::set_up_bin(self.obj().upcast_ref(), gst::ElementFlags::SOURCE);
    }
}

impl GstObjectImpl for WhepSrc {}

impl ElementImpl for WhepSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "WHEP source",
                "Source/Network/WebRTC",
                "Plays a WHEP endpoint: RTP, encoded or decoded streams, as downstream accepts",
                "gst-plugin-whipwhep developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Named by media, as webrtcsrc's, so `s.video_0` and `s.audio_0`
            // can be linked by name in gst-launch.
            ["video", "audio"]
                .into_iter()
                .map(|media| {
                    gst::PadTemplate::new(
                        &format!("{media}_%u"),
                        gst::PadDirection::Src,
                        gst::PadPresence::Sometimes,
                        &output_forms(media, codec::ALL.iter().filter(|c| c.media == media)),
                    )
                    .unwrap()
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        crate::element::before_transition(transition);
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self
                    .settings
                    .lock()
                    .unwrap()
                    .client
                    .validate("whep-endpoint")
                {
                    gst::element_imp_error!(self, gst::ResourceError::Settings, ("{}", msg));
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => self.stop_session("stopped"),
            _ => {}
        }
        let mut ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => ret = gst::StateChangeSuccess::NoPreroll,
            gst::StateChange::PausedToPlaying
                if self.state.lock().unwrap().supervisor.is_none() =>
            {
                // Negotiate only once the application's state change has gone
                // through us. Started in READY→PAUSED, create-offer (on a
                // webrtcbin thread) adds the DTLS bins while the same
                // set_state(PLAYING) still recurses into webrtcbin's children:
                // dtlsdec then reaches READY during our `pem` swap and either
                // the state change ("without connection id and pem") or the
                // handshake fails, about once in 150 sessions under load.
                self.start_session();
            }
            gst::StateChange::PlayingToPaused => ret = gst::StateChangeSuccess::NoPreroll,
            gst::StateChange::ReadyToNull => self.reset_outputs(),
            _ => {}
        }
        Ok(ret)
    }

    fn send_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            self.end_of_stream();
            return true;
        }
        self.parent_send_event(event)
    }
}

impl BinImpl for WhepSrc {
    fn handle_message(&self, message: gst::Message) {
        // A session's failure is the supervisor's to handle (reconnect, or
        // ERROR with its context), not a bare ERROR from deep inside.
        let message = crate::peer::contain_error(self.obj().upcast_ref(), message);
        // A guarded jitterbuffer's drops (`Output::guard_jitterbuffer`).
        if let gst::MessageView::Element(m) = message.view() {
            if let Some(s) = m.structure().filter(|s| s.name() == "drop-msg") {
                let n = s.get::<u32>("num-drop-on-latency").unwrap_or(0);
                self.dropped.fetch_add(n.into(), Ordering::Relaxed);
                return;
            }
        }
        self.parent_handle_message(message)
    }
}

/// whepsrc's part in the session supervisor.
struct WhepRole {
    weak: glib::WeakRef<super::WhepSrc>,
    settings: Settings,
}

impl WhepRole {
    fn imp(&self) -> Option<super::WhepSrc> {
        self.weak.upgrade()
    }

    fn session_of(&self, peer: &Arc<Peer>) -> Option<SessionId> {
        let obj = self.imp()?;
        let state = obj.imp().state.lock().unwrap();
        state
            .sessions
            .iter()
            .find(|(_, s)| Arc::ptr_eq(&s.peer, peer))
            .map(|(id, _)| *id)
    }
}

impl Role for WhepRole {
    fn protocol(&self) -> &'static str {
        "WHEP"
    }

    fn new_peer(&self, renewal: bool) -> Result<Arc<Peer>, PeerError> {
        let obj = self.imp().ok_or(PeerError::Negotiation {
            what: "start",
            reason: "element gone".into(),
        })?;
        obj.imp().new_session(&self.settings, renewal)
    }

    fn answers_counter_offers(&self) -> bool {
        true
    }

    fn answered(&self, _peer: &Arc<Peer>, remote_sdp: &str) {
        if let Some(obj) = self.imp() {
            obj.imp().expose_outputs(remote_sdp);
        }
    }

    fn activate(&self, peer: &Arc<Peer>) {
        let (Some(obj), Some(id)) = (self.imp(), self.session_of(peer)) else {
            return;
        };
        let mut state = obj.imp().state.lock().unwrap();
        state.preferred = Some(id);
        for o in &state.outputs {
            o.prefer(id);
        }
    }

    fn carries_output(&self, peer: &Arc<Peer>) -> bool {
        let (Some(obj), Some(id)) = (self.imp(), self.session_of(peer)) else {
            return false;
        };
        let state = obj.imp().state.lock().unwrap();
        !state.outputs.is_empty() && state.outputs.iter().all(|o| o.serves(id))
    }

    fn last_media(&self, peer: &Arc<Peer>) -> Option<Instant> {
        let obj = self.imp()?;
        let id = self.session_of(peer)?;
        let state = obj.imp().state.lock().unwrap();
        let ms = state.sessions.get(&id)?.last_media.load(Ordering::Relaxed);
        (ms > 0).then(|| *EPOCH + Duration::from_millis(ms))
    }

    fn retire(&self, peer: &Arc<Peer>) {
        if let (Some(obj), Some(id)) = (self.imp(), self.session_of(peer)) {
            obj.imp().retire_session(id);
        }
    }
}

impl WhepSrc {
    /// A webrtcbin with recvonly transceivers for the codecs to offer, whose
    /// streams are routed to the outputs.
    fn new_session(&self, settings: &Settings, renewal: bool) -> Result<Arc<Peer>, PeerError> {
        let id = {
            let mut state = self.state.lock().unwrap();
            state.next_session += 1;
            state.next_session
        };
        let obj = self.obj();
        let mut peer_settings = settings.client.peer_settings(settings.latency_ms);
        // A renewal, made while the previous session still feeds the
        // outputs, needs no fast start, and keeps both sessions' timing
        // alike: the output switches at a frame later than the last one
        // pushed, judged by timestamps, and a fast-started session's
        // timing can differ enough from the old one's to repeat a frame.
        // Fast start is for when nothing plays: the first session, or a
        // reconnection after a cut.
        peer_settings.fast_start = !renewal;
        let peer = Peer::detached(&format!("session{id}"), &peer_settings)?;
        peer.receive_only();
        for media in ["video", "audio"] {
            let codecs = settings.codecs(media);
            if codecs.is_empty() {
                continue;
            }
            let mut caps = gst::Caps::new_empty();
            for c in codecs {
                caps.get_mut()
                    .unwrap()
                    .append_structure(c.rtp_caps(c.payload_type, None));
            }
            let transceiver = peer
                .webrtcbin()
                .emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                    "add-transceiver",
                    &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
                );
            transceiver.set_property(
                "do-nack",
                media == "video" && settings.client.do_retransmission,
            );
        }
        peer.prime()?;
        peer.join(obj.upcast_ref())?;
        let weak = obj.downgrade();
        peer.webrtcbin().connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Some(obj) = weak.upgrade() {
                if let Err(e) = obj.imp().route_stream(id, pad) {
                    gst::element_error!(obj, gst::StreamError::Decode, ("{}", e));
                }
            }
        });
        self.state.lock().unwrap().sessions.insert(
            id,
            SessionInfo {
                peer: peer.clone(),
                elements: Vec::new(),
                ends: Vec::new(),
                last_media: Arc::new(AtomicU64::new(0)),
            },
        );
        Ok(peer)
    }

    fn retire_session(&self, id: SessionId) {
        let (info, outputs) = {
            let mut state = self.state.lock().unwrap();
            (state.sessions.remove(&id), state.outputs.clone())
        };
        for o in &outputs {
            o.retire(id);
        }
        if let Some(info) = info {
            let obj = self.obj();
            let bin: &gst::Bin = obj.upcast_ref();
            // Downstream first. A push that downstream holds (a stall)
            // holds every stream lock on its way: this waits for it.
            for end in &info.ends {
                let _ = end.set_active(false);
            }
            for el in info.elements.iter().rev() {
                crate::element::stop(el);
                let _ = bin.remove(el);
            }
            info.peer.remove_from(bin);
        }
    }

    fn start_session(&self) {
        let settings = self.settings.lock().unwrap().clone();
        let obj = self.obj().clone().upcast::<gst::Element>();
        let fail = |e: SessionError| session::post_error(&obj, "WHEP", &e);
        let endpoint = match settings.client.endpoint_url("whep-endpoint") {
            Ok(u) => u,
            Err(e) => return fail(SessionError::Config(e)),
        };
        if settings.codecs("video").is_empty() && settings.codecs("audio").is_empty() {
            return fail(SessionError::Config(
                "nothing to offer: no decodable codec in video-caps/audio-caps for the chosen media".into(),
            ));
        }
        let client = match settings.client.client() {
            Ok(c) => c,
            Err(e) => return fail(e.into()),
        };
        let policy = settings.client.policy();
        let role = Arc::new(WhepRole {
            weak: self.obj().downgrade(),
            settings,
        });
        let (task, sessions, current) =
            Supervisor::spawn(role, &obj, client.clone(), endpoint, policy);
        self.stats.start(&obj, stats_sources(&current));
        let mut state = self.state.lock().unwrap();
        state.supervisor = Some(task);
        state.resources = Some(sessions);
        state.client = Some(client);
    }

    /// Stops the supervisor, DELETEs every live session (waiting at most
    /// `TEARDOWN_WAIT`) and removes their elements.
    fn stop_session(&self, reason: &str) {
        self.stats.stop();
        let (task, resources, ids) = {
            let mut state = self.state.lock().unwrap();
            (
                state.supervisor.take(),
                state.resources.take(),
                state.sessions.keys().copied().collect::<Vec<_>>(),
            )
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
        for id in ids {
            self.retire_session(id);
        }
    }

    /// The application ends the stream (`gst-launch-1.0 -e`, say): retries
    /// end, the session is DELETEd, and EOS goes out of every src pad after
    /// the last buffer. With no pad yet (nothing published), each media
    /// asked for gets a pad that carries only EOS, as a source with no data
    /// would, so that the pipeline can finish.
    fn end_of_stream(&self) {
        self.stop_session("end of stream");
        let mut outputs = self.state.lock().unwrap().outputs.clone();
        if outputs.is_empty() {
            let settings = self.settings.lock().unwrap().clone();
            for media in ["video", "audio"] {
                if !settings.codecs(media).is_empty() {
                    match self.add_output(media, None) {
                        Ok(o) => outputs.push(o),
                        Err(e) => gst::warning!(CAT, imp = self, "no {media} pad for EOS: {e}"),
                    }
                }
            }
        }
        // Not from the caller's thread: send_event holds the element's state
        // lock, and a sink that never prerolled takes EOS as its preroll,
        // then waits for PLAYING, which needs that lock.
        crate::runtime::RUNTIME.spawn_blocking(move || {
            for o in outputs {
                o.end_of_stream();
            }
        });
    }

    /// Back to NULL: the src pads stay, with their links, for the next
    /// PLAYING (gst-launch links a sometimes pad once, when it appears), and
    /// start over: new timestamps, flows, EOS. Pads made for EOS alone,
    /// with no codec known, go: the next session decides their form.
    fn reset_outputs(&self) {
        let gone: Vec<Arc<Output>> = {
            let mut state = self.state.lock().unwrap();
            let (gone, kept) = state.outputs.drain(..).partition(|o| o.encoding == "none");
            state.outputs = kept;
            if state.outputs.is_empty() {
                state.next_video_pad = 0;
                state.next_audio_pad = 0;
            }
            gone
        };
        self.told_unlinked.store(false, Ordering::Relaxed);
        let obj = self.obj();
        let mut flows = self.flows.lock().unwrap();
        for o in gone {
            flows.remove_pad(&o.pad);
            let _ = o.pad.set_active(false);
            let _ = obj.remove_pad(&o.pad);
        }
        flows.reset();
        for o in self.state.lock().unwrap().outputs.iter() {
            o.reset();
        }
    }

    /// What downstream of `pad` accepts: RTP if it takes these RTP caps
    /// (gst-plugins-rs whepsrc's output, and the fallback for ANY), else the
    /// encoded stream, else decoded media.
    fn choose_kind(pad: &gst::Pad, rtp: &gst::Caps, codec: &Codec) -> OutputKind {
        let accepted = pad.peer_query_caps(None);
        if accepted.is_any() || accepted.can_intersect(rtp) {
            OutputKind::Rtp
        } else if accepted.can_intersect(&gst::Caps::builder(codec.encoded).build()) {
            OutputKind::Encoded
        } else {
            OutputKind::Raw
        }
    }

    /// The output for `codec`'s media, made (and exposed) on first use.
    fn output_for(&self, codec: &'static Codec, rtp: &gst::Caps) -> Result<Arc<Output>, String> {
        if let Some(o) = self.output_of(codec.media) {
            return Ok(o);
        }
        self.add_output(codec.media, Some((codec, rtp)))
    }

    /// Exposes a pad for each media the server will send, all at once and
    /// before any flows: a pad left unlinked is then known to be unlinked
    /// (not merely not yet made) when the first buffer's flow is combined.
    fn expose_outputs(&self, remote_sdp: &str) {
        let settings = self.settings.lock().unwrap().clone();
        let mut added = false;
        for (media, encoding) in crate::peer::sdp::remote_sending_media(remote_sdp) {
            let Some(codec) = settings
                .codecs(&media)
                .into_iter()
                .find(|c| c.encoding_name.eq_ignore_ascii_case(&encoding))
            else {
                continue;
            };
            if self.output_of(codec.media).is_some() {
                continue;
            }
            let rtp = gst::Caps::from(codec.rtp_caps(codec.payload_type, None));
            match self.add_output(codec.media, Some((codec, &rtp))) {
                Ok(_) => added = true,
                Err(e) => gst::warning!(CAT, imp = self, "cannot expose {media}: {e}"),
            }
        }
        if added {
            self.obj().no_more_pads();
        }
    }

    fn output_of(&self, media: &str) -> Option<Arc<Output>> {
        let state = self.state.lock().unwrap();
        state.outputs.iter().find(|o| o.media == media).cloned()
    }

    /// Exposes a src pad for `media`. With the codec known, the output's
    /// form follows what downstream accepts.
    fn add_output(
        &self,
        media: &'static str,
        codec: Option<(&'static Codec, &gst::Caps)>,
    ) -> Result<Arc<Output>, String> {
        let latency = self.settings.lock().unwrap().latency_ms;
        let latency = gst::ClockTime::from_mseconds(latency.into());
        // Until the first buffer fixes them, the pad's caps say which media
        // it carries, in each form it may take, for pad-added handlers.
        let forms = match codec {
            Some((c, _)) => output_forms(media, [c].iter()),
            None => {
                let settings = self.settings.lock().unwrap();
                output_forms(media, settings.codecs(media).iter())
            }
        };
        let pad_forms = forms.clone();
        let obj = self.obj();
        let name = {
            let mut state = self.state.lock().unwrap();
            let next = if media == "video" {
                &mut state.next_video_pad
            } else {
                &mut state.next_audio_pad
            };
            *next += 1;
            format!("{media}_{}", *next - 1)
        };
        let templ = obj.pad_template(&format!("{media}_%u")).unwrap();
        let pad = gst::Pad::builder_from_template(&templ)
            .name(name.as_str())
            .query_function(move |pad, parent, query| match query.view_mut() {
                gst::QueryViewMut::Caps(q) => {
                    let caps = pad.current_caps().unwrap_or_else(|| pad_forms.clone());
                    let result = match q.filter() {
                        Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
                        None => caps,
                    };
                    q.set_result(&result);
                    true
                }
                // A live source: what it pushes is `latency` (the
                // jitterbuffer's) behind its capture.
                gst::QueryViewMut::Latency(q) => {
                    q.set(true, latency, gst::ClockTime::NONE);
                    true
                }
                _ => gst::Pad::query_default(pad, parent, query),
            })
            .build();
        self.flows.lock().unwrap().add_pad(&pad);
        pad.set_active(true).map_err(|e| e.to_string())?;
        // The application links the pad in its pad-added handler, so what
        // downstream accepts is known right after.
        obj.add_pad(&pad).map_err(|e| e.to_string())?;
        let (kind, encoding) = match codec {
            Some((c, rtp)) => (Self::choose_kind(&pad, rtp, c), c.encoding_name),
            None => (OutputKind::Raw, "none"),
        };
        gst::info!(CAT, imp = self, "{name}: {encoding} as {kind:?}");
        let group = *self.group.get_or_init(gst::GroupId::next);
        let output = Arc::new(Output::new(media, encoding, kind, forms, pad, group));
        let mut state = self.state.lock().unwrap();
        if let Some(id) = state.preferred {
            output.prefer(id);
        }
        state.outputs.push(output.clone());
        Ok(output)
    }

    /// The flow of all src pads together (see `flows`). When none is linked,
    /// the stream stops with an ERROR that says what each pad carries.
    fn combine_flow(
        &self,
        flow: Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let combined = self.flows.lock().unwrap().update_flow(flow);
        if combined == Err(gst::FlowError::NotLinked)
            && !self.told_unlinked.swap(true, Ordering::Relaxed)
        {
            let outputs = self.state.lock().unwrap().outputs.clone();
            let pads: Vec<String> = outputs.iter().map(|o| o.describe()).collect();
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("no src pad of whepsrc is linked, so nothing can play"),
                [
                    "{}. Link a pad to an element that accepts one of these forms \
                     (e.g. videoconvert, audioconvert or a depayloader).",
                    pads.join("; ")
                ]
            );
        }
        combined
    }

    /// A session's webrtcbin produced an RTP pad: depayload/decode it as its
    /// output needs, into a sink pad of no element whose chain function
    /// offers each buffer to the output. Not an appsink: a basesink holds
    /// its preroll lock while rendering, so a push that downstream held
    /// (a sink going PAUSED waits for its preroll) would deadlock with the
    /// appsink's own PLAYING→PAUSED.
    fn route_stream(&self, id: SessionId, pad: &gst::Pad) -> Result<(), String> {
        let rtp = pad.current_caps().ok_or("RTP pad without caps")?;
        let codec =
            codec::from_rtp_caps(&rtp).ok_or_else(|| format!("unsupported RTP caps {rtp}"))?;
        let output = self.output_for(codec, &rtp)?;
        let mut chain = match output.kind {
            OutputKind::Rtp => Vec::new(),
            OutputKind::Encoded => codec.depayload_chain().map_err(|e| e.to_string())?,
            OutputKind::Raw => {
                let mut c = codec.depayload_chain().map_err(|e| e.to_string())?;
                c.push(codec.decoder().map_err(|e| e.to_string())?);
                c
            }
        };
        let (last_media, timeline, peer) = {
            let state = self.state.lock().unwrap();
            state
                .sessions
                .get(&id)
                .map(|s| {
                    (
                        s.last_media.clone(),
                        s.peer.timeline().clone(),
                        s.peer.clone(),
                    )
                })
                .ok_or("session already retired")?
        };
        let ssrc = rtp.structure(0).and_then(|s| s.get::<u32>("ssrc").ok());
        match ssrc.and_then(|ssrc| peer.jitterbuffer(ssrc)) {
            Some(jb) => output.guard_jitterbuffer(&jb),
            None => gst::warning!(CAT, imp = self, "no jitterbuffer for {rtp}: unguarded"),
        }
        let weak = self.obj().downgrade();
        let end = gst::Pad::builder(gst::PadDirection::Sink)
            .name(format!("session{id}_{}", codec.media))
            .chain_function(move |pad, _, buffer| {
                let (Some(caps), Some(segment)) = (
                    pad.current_caps(),
                    pad.sticky_event::<gst::event::Segment>(0),
                ) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                last_media.store(EPOCH.elapsed().as_millis() as u64, Ordering::Relaxed);
                timeline.mark(Phase::FirstFrame);
                let (fed, flow) = output.feed(id, buffer, &caps, segment.segment());
                if let Some(obj) = weak.upgrade() {
                    if let Some(flow) = flow {
                        // Not passed upstream: an unlinked or ended pad
                        // must not stop the session itself.
                        let _ = obj.imp().combine_flow(flow);
                    }
                    obj.imp().after_feed(pad, fed);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build();
        end.set_active(true).map_err(|e| e.to_string())?;
        if !chain.is_empty() {
            codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
        }
        let out = match chain.last() {
            Some(last) => last.static_pad("src").ok_or("chain without src pad")?,
            None => pad.clone(),
        };
        out.link(&end).map_err(|e| format!("{e:?}"))?;
        if let Some(first) = chain.first() {
            pad.link(&first.static_pad("sink").unwrap())
                .map_err(|e| format!("{e:?}"))?;
        }
        if let Some(s) = self.state.lock().unwrap().sessions.get_mut(&id) {
            s.elements.append(&mut chain);
            s.ends.push(end);
        }
        Ok(())
    }

    fn after_feed(&self, end: &gst::Pad, fed: Fed) {
        gst::trace!(CAT, imp = self, "{fed:?}");
        match fed {
            Fed::Switched {
                gap: Some(gap),
                frame,
                planned,
            } => {
                let lost = (gap.nseconds() + frame.nseconds() / 2) / frame.nseconds().max(1);
                let lost = lost.saturating_sub(1);
                gst::info!(
                    CAT,
                    imp = self,
                    "output moved to a new session: gap {gap}, ~{lost} frames lost"
                );
                messages::post_renewed(
                    self.obj().upcast_ref(),
                    Duration::from_nanos(gap.nseconds()),
                    lost,
                    planned,
                );
            }
            Fed::NeedKeyframe => {
                // Through the depayloader to the jitterbuffer: webrtcbin turns
                // it into an RTCP PLI to the server.
                let fku = gst::event::CustomUpstream::new(
                    gst::Structure::builder("GstForceKeyUnit")
                        .field("all-headers", true)
                        .build(),
                );
                let _ = end.push_event(fku);
            }
            _ => {}
        }
    }
}
