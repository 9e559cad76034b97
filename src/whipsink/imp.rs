use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_webrtc::WebRTCRTPTransceiverDirection;

use crate::codec::{self, Codec};
use crate::encoder;
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
    /// "video" or "audio", once caps arrived.
    media: &'static str,
    /// Caps arrived and the stream's input chain is in place.
    ready: bool,
    /// [parser ! payloader !] queue: what we added (the payloader only for
    /// encoded input); for raw input, the queue before the encoder.
    elements: Vec<gst::Element>,
    /// The pad feeding the current webrtcbin: the queue's src pad, or for
    /// raw input the payloader's, once a session chose the codec.
    out: Option<gst::Pad>,
    /// Between two sessions: a probe dropping what `out` sends, so that
    /// an unlinked pad never stops the stream upstream (not-linked).
    parked: Option<gst::PadProbeId>,
    eos: bool,
    /// Raw input, which whipsink encodes.
    raw: Option<RawInput>,
}

/// A raw stream: queue ! [convert ! encoder ! payloader], the encoding part
/// built once the server's answer picked the codec.
struct RawInput {
    caps: gst::Caps,
    /// The queue's src pad, into the encoder chain.
    queue_src: gst::Pad,
    /// While there is no encoder chain: drops what the queue sends.
    idle: Option<gst::PadProbeId>,
    /// The codecs offered, in preference order.
    codecs: Vec<&'static Codec>,
    encoding: Option<Encoding>,
    /// The webrtcbin sink pad of the session being negotiated, whose
    /// transceiver offers `codecs`; linked once the answer came.
    pending: Option<gst::Pad>,
}

/// The encoding part of a raw stream's chain.
struct Encoding {
    format: encoder::Format,
    encoder: gst::Element,
    /// Video: where congestion control sets the size sent (`resolution`).
    scaler: Option<gst::Element>,
    /// See `encoder::EncodeChain`.
    elements: Vec<gst::Element>,
}

#[derive(Clone)]
struct Settings {
    client: ClientSettings,
    video_caps: gst::Caps,
    audio_caps: gst::Caps,
    video_encoder: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            client: ClientSettings::new(crate::session::settings::Kind::Whip),
            video_caps: encoder::encodable_caps("video"),
            audio_caps: encoder::encodable_caps("audio"),
            video_encoder: None,
        }
    }
}

impl Settings {
    /// Codecs to offer for raw `media` input, in preference order: those
    /// of `video-caps`/`audio-caps` that can be encoded here.
    fn codecs(&self, media: &str) -> Vec<&'static Codec> {
        let (wanted, preferred) = match media {
            "video" => (&self.video_caps, self.video_encoder.as_deref()),
            _ => (&self.audio_caps, None),
        };
        codec::preferred(wanted, media, |c| encoder::can_encode(c, preferred))
    }

    fn preferred_encoder(&self, codec: &Codec) -> Option<&str> {
        (codec.media == "video")
            .then_some(self.video_encoder.as_deref())
            .flatten()
    }

    fn validate(&self) -> Result<(), String> {
        self.client.validate("whip-endpoint")?;
        if let Some(name) = &self.video_encoder {
            let makes_one = codec::ALL
                .into_iter()
                .filter(|c| c.media == "video")
                .any(|c| encoder::factory_for(c, Some(name)).is_some_and(|f| f.name() == *name));
            if !makes_one {
                return Err(format!(
                    "video-encoder {name:?} is not an installed VP8, VP9 or H.264 encoder"
                ));
            }
        }
        Ok(())
    }
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

#[derive(Default)]
pub struct WhipSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Held while a stream gets a transceiver: the first one makes a new
    /// peer's DTLS transport and puts it in the bin, alone (streams' caps
    /// come on their own threads).
    feeding: Mutex<()>,
    congestion: Mutex<congestion::Settings>,
    stats: ClientStats,
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
            props.extend(crate::element::codec_caps_pspecs(
                "every codec with an installed encoder and payloader. For raw input only: \
                 encoded and RTP input offer their own codec",
            ));
            props.push(
                glib::ParamSpecString::builder("video-encoder")
                    .nick("Video encoder")
                    .blurb(
                        "Element factory that encodes raw video when the server picks its \
                         codec, e.g. \"openh264enc\" or a hardware encoder; other codecs \
                         use the ranking (VP8: vp8enc; VP9: vp9enc; H.264: x264enc, then \
                         openh264enc). Unset: the ranking.",
                    )
                    .mutable_ready()
                    .build(),
            );
            props.extend(congestion::Settings::properties());
            props.extend(ClientStats::properties());
            props
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            // An encoder for raw input was made and set up for real time;
            // the handler may change any of its properties before it starts
            // (pad name, encoder). Emitted from a thread of whipsink's.
            vec![glib::subclass::Signal::builder("encoder-setup")
                .param_types([String::static_type(), gst::Element::static_type()])
                .build()]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.stats.set_property(value, pspec)
            || self.congestion.lock().unwrap().set(value, pspec)
        {
            return;
        }
        let token = {
            let mut settings = self.settings.lock().unwrap();
            match pspec.name() {
                "video-caps" => settings.video_caps = crate::element::caps_value(value),
                "audio-caps" => settings.audio_caps = crate::element::caps_value(value),
                "video-encoder" => {
                    settings.video_encoder = value
                        .get::<Option<String>>()
                        .unwrap()
                        .filter(|s| !s.is_empty())
                }
                _ => {
                    settings.client.set(value, pspec);
                }
            }
            settings.client.auth_token.clone()
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
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "video-caps" => settings.video_caps.to_value(),
            "audio-caps" => settings.audio_caps.to_value(),
            "video-encoder" => settings.video_encoder.to_value(),
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
                "Publishes raw, encoded (H.264/VP8/VP9/Opus) or RTP streams to a WHIP endpoint (RFC 9725); raw input is encoded in the codec the server picks",
                "gst-plugin-whipwhep developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut caps = codec::input_caps();
            caps.merge(gst::Caps::new_empty_simple("video/x-raw"));
            caps.merge(gst::Caps::new_empty_simple("audio/x-raw"));
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
            media: "video",
            ready: false,
            elements: Vec::new(),
            out: None,
            parked: None,
            eos: false,
            raw: None,
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
        let (mut stream, peer) = stream;
        let _ = stream.ghost.set_target(None::<&gst::Pad>);
        let mut elements = std::mem::take(&mut stream.elements);
        let mut wpads: Vec<gst::Pad> = stream.out.and_then(|o| o.peer()).into_iter().collect();
        if let Some(raw) = stream.raw.take() {
            wpads.extend(raw.pending);
            elements.extend(raw.encoding.into_iter().flat_map(|e| e.elements));
        }
        for el in &elements {
            crate::element::stop(el);
            let _ = self.obj().remove(el);
        }
        if let Some(peer) = peer {
            for wpad in wpads {
                if wpad.parent_element().as_ref() == Some(peer.webrtcbin()) {
                    peer.webrtcbin().release_request_pad(&wpad);
                }
            }
        }
        let _ = self.obj().remove_pad(pad);
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        crate::element::before_transition(transition);
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self.settings.lock().unwrap().validate() {
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
    /// `request_send_pad` puts it there. Takes no lock of ours.
    fn create_peer(
        &self,
        n: u32,
        congestion: Option<congestion::Settings>,
    ) -> Result<Arc<Peer>, crate::peer::PeerError> {
        let settings = self.settings.lock().unwrap().client.clone();
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

    /// Gives a total target bitrate to the video encoders: whipsink's own
    /// (raw input) and, with congestion-control-upstream, the one upstream
    /// of an encoded stream (see `congestion::video_share`). Audio and
    /// encoded video streams whose encoder is left alone still count.
    fn set_bitrate(&self, total: u32, min: u32) {
        let upstream = self.congestion.lock().unwrap().upstream;
        let (encoders, video, audio) = {
            let state = self.state.lock().unwrap();
            let mut encoders = Vec::new();
            let (mut video, mut audio) = (0, 0);
            for s in state.streams.iter() {
                if s.media == "audio" {
                    audio += 1;
                    continue;
                }
                video += 1;
                let encoder = match &s.raw {
                    Some(raw) => raw
                        .encoding
                        .as_ref()
                        .map(|e| (e.encoder.clone(), e.scaler.clone())),
                    // The user's encoder: only when asked.
                    None if !upstream => None,
                    None => s
                        .elements
                        .first()
                        .and_then(|e| e.static_pad("sink"))
                        .and_then(|pad| congestion::upstream_encoder(&pad))
                        .map(|e| (e, None)),
                };
                encoders.extend(encoder);
            }
            (encoders, video, audio)
        };
        if encoders.is_empty() {
            return;
        }
        let share = congestion::video_share(total, video, audio, min);
        for (encoder, scaler) in &encoders {
            if encoder::set_target_bitrate(encoder, share) {
                gst::debug!(CAT, imp = self, "{}: {share} bit/s", encoder.name());
            }
            // Our own encoder: also the picture size that fits the bitrate.
            let resized = scaler
                .as_ref()
                .and_then(|f| crate::resolution::follow_bitrate(f, share));
            if let Some((w, h)) = resized {
                gst::info!(
                    CAT,
                    imp = self,
                    "{}: {w}x{h} at {share} bit/s",
                    encoder.name()
                );
            }
        }
    }

    /// Detaches the streams from `peer`, which is going away: until the next
    /// session their output is dropped, not refused (a not-linked flow
    /// would stop the sources and no caps would reach the next offer).
    fn park_streams(&self, peer: &Peer) {
        let mut state = self.state.lock().unwrap();
        for s in state.streams.iter_mut() {
            if let Some(raw) = s.raw.as_mut() {
                if raw
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.parent_element().as_ref() == Some(peer.webrtcbin()))
                {
                    raw.pending = None;
                }
            }
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

    /// A sendonly transceiver's sink pad on `peer`. `offer`: the codecs to
    /// offer (raw input: the answer picks one); None: the caps linked to it
    /// say. Video resends what the server asks for (NACK; webrtcbin adds
    /// RTX) unless `do-retransmission` is off.
    /// A peer not in the bin yet gets its DTLS transport first (see
    /// `Peer::join`), from an offer of `offer`, or else of `rtp` (the
    /// stream's RTP caps), and joins the bin.
    fn request_send_pad(
        &self,
        peer: &Peer,
        media: &str,
        offer: Option<&gst::Caps>,
        rtp: Option<&gst::Caps>,
    ) -> Result<gst::Pad, String> {
        let retransmit = self.settings.lock().unwrap().client.do_retransmission;
        let _feeding = self.feeding.lock().unwrap();
        let wpad = peer
            .webrtcbin()
            .request_pad_simple("sink_%u")
            .ok_or("webrtcbin refused a sink pad")?;
        let transceiver = wpad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
        transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
        transceiver.set_property("do-nack", media == "video" && retransmit);
        if let Some(caps) = offer {
            transceiver.set_property("codec-preferences", caps);
        }
        if peer.webrtcbin().parent().is_none() {
            let primed = match (offer, rtp) {
                (Some(_), _) => peer.prime(),
                (None, Some(caps)) => {
                    transceiver.set_property("codec-preferences", caps);
                    let primed = peer.prime();
                    transceiver.set_property("codec-preferences", None::<gst::Caps>);
                    primed
                }
                (None, None) => return Err("no caps to start a session with".into()),
            };
            primed
                .and_then(|_| peer.join(self.obj().upcast_ref()))
                .map_err(|e| e.to_string())?;
        }
        Ok(wpad)
    }

    /// Links `out` to `wpad`, replacing its link to a previous webrtcbin
    /// once `out` is idle.
    fn link_out(out: &gst::Pad, wpad: gst::Pad) -> Result<(), String> {
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

    /// Links a stream's queue to a sendonly transceiver of `peer`, replacing
    /// its link to a previous peer once the queue is idle. `rtp`: the
    /// stream's RTP caps, if `out` has sent none yet.
    fn feed_peer(
        &self,
        out: &gst::Pad,
        media: &str,
        rtp: Option<&gst::Caps>,
        peer: &Peer,
    ) -> Result<(), String> {
        let rtp = out.current_caps().or_else(|| rtp.cloned());
        let wpad = self.request_send_pad(peer, media, None, rtp.as_ref())?;
        Self::link_out(out, wpad)
    }

    /// The codecs a raw stream offers, as RTP caps for codec-preferences,
    /// with the feedback and parameters webrtcbin should announce.
    /// H.264 goes without a profile-level-id: webrtcbin also holds the
    /// payloader's caps to these, and the payloader writes the one of the
    /// SPS, whose constraint flags differ (x264's Constrained Baseline is
    /// 42c0..). The SDP sent gets 42e01f (`sdp::complete_h264_fmtp`), and
    /// the encoder makes the profile the answer names.
    /// With `twcc`, each format also offers TWCC (`congestion::offer_twcc`).
    fn offer_caps(codecs: &[&'static Codec], twcc: bool) -> gst::Caps {
        let mut caps = gst::Caps::new_empty();
        for c in codecs {
            let mut s = c.rtp_caps(c.payload_type, None);
            s.remove_field("profile-level-id");
            if twcc {
                congestion::offer_twcc(&mut s);
            }
            caps.get_mut().unwrap().append_structure(s);
        }
        caps
    }

    /// Gives a raw stream a transceiver on `peer` offering its codecs.
    /// `twcc`: congestion control is on for `peer`.
    fn offer_raw(
        &self,
        raw: &mut RawInput,
        media: &str,
        peer: &Peer,
        twcc: bool,
    ) -> Result<(), String> {
        let offer = Self::offer_caps(&raw.codecs, twcc);
        let wpad = self.request_send_pad(peer, media, Some(&offer), None)?;
        raw.pending = Some(wpad);
        Ok(())
    }

    /// First caps on a request pad: [parse ! payload !] queue, into
    /// webrtcbin; raw input: queue, whose encoder comes with the answer.
    fn link_stream(&self, ghost: &gst::GhostPad, caps: &gst::CapsRef) -> Result<(), String> {
        let known = {
            let state = self.state.lock().unwrap();
            state
                .streams
                .iter()
                .find(|s| &s.ghost == ghost)
                .map(|s| s.ready)
                .ok_or("unknown pad")?
        };
        if known {
            return Ok(());
        }
        let raw = codec::is_raw(caps);
        // RTP caps for a first offer (see `request_send_pad`).
        let mut rtp = None;
        let (mut chain, media) = if raw {
            let media = if caps.structure(0).is_some_and(|s| s.name() == "video/x-raw") {
                "video"
            } else {
                "audio"
            };
            (Vec::new(), media)
        } else if codec::is_rtp(caps) {
            let media = caps
                .structure(0)
                .and_then(|s| s.get::<&str>("media").ok())
                .map(|m| if m == "audio" { "audio" } else { "video" })
                .unwrap_or("video");
            rtp = Some(caps.to_owned());
            (Vec::new(), media)
        } else {
            let codec =
                codec::from_encoded_caps(caps).ok_or_else(|| format!("unsupported caps {caps}"))?;
            rtp = Some(
                gst::Caps::builder_full()
                    .structure(codec.rtp_caps(codec.payload_type, None))
                    .build(),
            );
            let mut chain = codec.payload_chain().map_err(|e| e.to_string())?;
            if self.congestion.lock().unwrap().enabled {
                congestion::stamp_twcc(&mut chain)?;
            }
            (chain, codec.media)
        };
        let codecs = if raw {
            let codecs = self.settings.lock().unwrap().codecs(media);
            if codecs.is_empty() {
                return Err(format!(
                    "raw {media} on {}: no codec to encode it into ({media}-caps names none \
                     with an installed encoder and payloader)",
                    ghost.name()
                ));
            }
            codecs
        } else {
            Vec::new()
        };
        // Keeps upstream live and unblocked while the stream moves between
        // webrtcbins (republishing), and, for raw input, while the encoder
        // falls behind: the oldest frames go. Raw video keeps 4 frames at
        // most: enough to ride out a moment without CPU (with 2, 720p VP8
        // lost frames on a loaded machine, examples/bench_keyframe.rs), and
        // the most latency it adds when the encoder only just keeps up (a
        // 200 ms queue left key frames on request 200 ms late).
        let (buffers, time) = match (raw, media) {
            (true, "video") => (4u32, 0u64),
            (true, _) => (0, 100_000_000),
            (false, _) => (0, 300_000_000),
        };
        chain.push(
            gst::ElementFactory::make("queue")
                .property_from_str("leaky", "downstream")
                .property("max-size-buffers", buffers)
                .property("max-size-bytes", 0u32)
                .property("max-size-time", time)
                .build()
                .map_err(|_| "queue missing")?,
        );
        codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
        let queue_src = chain.last().unwrap().static_pad("src").unwrap();
        let (peer, twcc) = {
            // Streams' caps come on their own threads: one of them makes the
            // first webrtcbin, under the lock, and the others use it.
            let mut state = self.state.lock().unwrap();
            let peer = match state.peer.clone() {
                Some(p) => p,
                None => {
                    state.next_peer += 1;
                    // The payloaders we make (raw and encoded input) stamp
                    // TWCC; RTP input is the user's, without it.
                    let cc = *self.congestion.lock().unwrap();
                    state.congestion = (cc.enabled && !codec::is_rtp(caps)).then_some(cc);
                    let p = self
                        .create_peer(state.next_peer, state.congestion)
                        .map_err(|e| e.to_string())?;
                    state.peer = Some(p.clone());
                    state.peer_fresh = true;
                    p
                }
            };
            (peer, state.congestion.is_some())
        };
        let mut raw_input = None;
        if raw {
            let mut input = RawInput {
                caps: caps.to_owned(),
                queue_src: queue_src.clone(),
                idle: queue_src.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                    |_, _| gst::PadProbeReturn::Drop,
                ),
                codecs,
                encoding: None,
                pending: None,
            };
            self.offer_raw(&mut input, media, &peer, twcc)?;
            raw_input = Some(input);
        } else {
            self.feed_peer(&queue_src, media, rtp.as_ref(), &peer)?;
        }
        ghost
            .set_target(Some(&chain[0].static_pad("sink").unwrap()))
            .map_err(|e| e.to_string())?;
        let mut state = self.state.lock().unwrap();
        if let Some(s) = state.streams.iter_mut().find(|s| &s.ghost == ghost) {
            s.media = media;
            s.ready = true;
            s.out = (!raw).then_some(queue_src);
            s.elements = chain;
            s.raw = raw_input;
        }
        Ok(())
    }

    /// The server answered `peer`'s offer: each raw stream offered on it
    /// gets an encoder for the codec the answer picked (the first format
    /// of its m-section that we offered), or keeps the one it has if the
    /// choice is the same, and feeds `peer`.
    fn encode_answered(&self, peer: &Peer, answer: &str) {
        let offer = peer
            .webrtcbin()
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .and_then(|d| d.sdp().as_text().ok())
            // As sent: with the H.264 profile (see `offer_caps`).
            .map(|o| crate::peer::sdp::complete_h264_fmtp(&o, None));
        let pending: Vec<(gst::GhostPad, gst::Pad, Vec<&'static Codec>)> = {
            let state = self.state.lock().unwrap();
            state
                .streams
                .iter()
                .filter_map(|s| {
                    let raw = s.raw.as_ref()?;
                    let wpad = raw.pending.clone()?;
                    (wpad.parent_element().as_ref() == Some(peer.webrtcbin()))
                        .then(|| (s.ghost.clone(), wpad, raw.codecs.clone()))
                })
                .collect()
        };
        for (ghost, wpad, codecs) in pending {
            let transceiver = wpad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
            let mline = transceiver.property::<u32>("mlineindex");
            let chosen = crate::peer::sdp::formats_of(answer, offer.as_deref(), mline)
                .unwrap_or_default()
                .into_iter()
                .find_map(|f| {
                    let codec = codecs
                        .iter()
                        .find(|c| c.encoding_name.eq_ignore_ascii_case(&f.encoding))?;
                    Some(encoder::Format {
                        codec,
                        payload_type: f.payload_type,
                        profile: f.profile,
                    })
                });
            let Some(format) = chosen else {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::CodecNotFound,
                    (
                        "the server accepted none of the codecs offered for {}: its media is not sent",
                        ghost.name()
                    )
                );
                continue;
            };
            gst::info!(
                CAT,
                imp = self,
                "{}: encoding {} (payload type {}{})",
                ghost.name(),
                format.codec.encoding_name,
                format.payload_type,
                format
                    .profile
                    .as_deref()
                    .map(|p| format!(", profile-level-id {p}"))
                    .unwrap_or_default()
            );
            if let Err(e) = self.encode_into(&ghost, &wpad, format) {
                gst::element_imp_error!(self, gst::StreamError::Encode, ("{}", e));
            }
        }
        // New encoders start from congestion control's current target
        // (start-bitrate at first), not their own default.
        let cc = self.state.lock().unwrap().congestion;
        let target = peer.stats().target_bitrate();
        if let (Some(cc), true) = (cc, target > 0) {
            self.set_bitrate(target, cc.min);
        }
    }

    /// Makes a raw stream feed `wpad` in `format`: the encoder chain it has
    /// if that is the same format, else a new one that replaces it.
    fn encode_into(
        &self,
        ghost: &gst::GhostPad,
        wpad: &gst::Pad,
        format: encoder::Format,
    ) -> Result<(), String> {
        let (same, caps, queue_src, old_out, twcc) = {
            let mut state = self.state.lock().unwrap();
            let twcc = state.congestion.is_some();
            let s = state
                .streams
                .iter_mut()
                .find(|s| &s.ghost == ghost)
                .ok_or("stream released")?;
            let raw = s.raw.as_mut().ok_or("not a raw stream")?;
            raw.pending = None;
            let same = raw.encoding.as_ref().is_some_and(|e| e.format == format);
            (
                same,
                raw.caps.clone(),
                raw.queue_src.clone(),
                s.out.clone(),
                twcc,
            )
        };
        if same {
            let out = old_out.ok_or("encoder without output")?;
            Self::link_out(&out, wpad.clone())?;
            self.unpark(ghost);
            return Ok(());
        }
        let preferred = self
            .settings
            .lock()
            .unwrap()
            .preferred_encoder(format.codec)
            .map(String::from);
        let encoder::EncodeChain {
            elements: mut chain,
            encoder: enc,
            scaler,
        } = encoder::encode_chain(&format, preferred.as_deref(), &caps)
            .map_err(|e| e.to_string())?;
        if twcc {
            congestion::stamp_twcc(&mut chain)?;
        }
        let selected = gst::Structure::builder("encoder-selected")
            .field("pad", ghost.name().to_string())
            .field(
                "encoder",
                enc.factory()
                    .map(|f| f.name().to_string())
                    .unwrap_or_default(),
            )
            .field("encoding-name", format.codec.encoding_name)
            .field("payload-type", format.payload_type)
            .field_if_some("profile-level-id", format.profile.clone())
            .build();
        self.obj()
            .emit_by_name::<()>("encoder-setup", &[&ghost.name().to_string(), &enc]);
        let bin = self.obj();
        bin.add_many(&chain).map_err(|e| e.to_string())?;
        let out = chain.last().unwrap().static_pad("src").unwrap();
        let started = gst::Element::link_many(&chain)
            .map_err(|e| e.to_string())
            .and_then(|_| {
                out.link(wpad)
                    .map_err(|e| format!("cannot link the payloader to webrtcbin: {e:?}"))
            })
            .and_then(|_| {
                // Downstream first: each element is ready for what the
                // one before it pushes.
                chain
                    .iter()
                    .rev()
                    .try_for_each(|el| el.sync_state_with_parent().map(|_| ()))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = started {
            for el in &chain {
                crate::element::stop(el);
                let _ = bin.remove(el);
            }
            return Err(format!(
                "cannot start the {} encoder for {}: {e}",
                format.codec.encoding_name,
                ghost.name()
            ));
        }
        // The queue moves to the new encoder between two frames; the old
        // chain is stopped only after that, so no frame is pushed into a
        // stopping element (a flushing flow would end the queue's task).
        let sink = chain[0].static_pad("sink").unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        queue_src.add_probe(gst::PadProbeType::IDLE, move |src, _| {
            if let Some(old) = src.peer() {
                let _ = src.unlink(&old);
            }
            let _ = src.link(&sink);
            let _ = tx.try_send(());
            gst::PadProbeReturn::Remove
        });
        let moved = rx.recv_timeout(Duration::from_secs(2)).is_ok();
        let old = {
            let mut state = self.state.lock().unwrap();
            let s = state
                .streams
                .iter_mut()
                .find(|s| &s.ghost == ghost)
                .ok_or("stream released")?;
            // A parked output was the old payloader's, which goes.
            s.parked = None;
            s.out = Some(out);
            let raw = s.raw.as_mut().ok_or("not a raw stream")?;
            if let Some(id) = raw.idle.take() {
                raw.queue_src.remove_probe(id);
            }
            raw.encoding.replace(Encoding {
                format,
                encoder: enc.clone(),
                scaler,
                elements: chain,
            })
        };
        if let Some(old) = old {
            if !moved {
                gst::warning!(CAT, imp = self, "the encoder switch waited 2 s for a frame");
            }
            for el in &old.elements {
                crate::element::stop(el);
                let _ = bin.remove(el);
            }
        }
        let _ = bin.post_message(gst::message::Element::builder(selected).src(&*bin).build());
        Ok(())
    }

    /// Removes the drop probe of a stream whose output is linked again.
    fn unpark(&self, ghost: &gst::GhostPad) {
        let mut state = self.state.lock().unwrap();
        if let Some(s) = state.streams.iter_mut().find(|s| &s.ghost == ghost) {
            if let (Some(out), Some(id)) = (&s.out, s.parked.take()) {
                out.remove_probe(id);
            }
        }
    }

    /// The encoder of each raw stream, by pad name: for whoever adapts
    /// their bitrate (`encoder::set_target_bitrate`).
    pub(crate) fn encoders(&self) -> Vec<(String, gst::Element)> {
        self.state
            .lock()
            .unwrap()
            .streams
            .iter()
            .filter_map(|s| {
                let e = s.raw.as_ref()?.encoding.as_ref()?;
                Some((s.ghost.name().to_string(), e.encoder.clone()))
            })
            .collect()
    }

    /// Starts publishing once PAUSED/PLAYING and every stream has caps.
    fn maybe_start(&self) {
        let mut state = self.state.lock().unwrap();
        if state.started
            || !state.running
            || state.streams.is_empty()
            || state.streams.iter().any(|s| !s.ready)
        {
            return;
        }
        state.started = true;
        let settings = self.settings.lock().unwrap().client.clone();
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
        let fresh = {
            let mut state = imp.state.lock().unwrap();
            let fresh = state.peer.clone().filter(|_| state.peer_fresh);
            state.peer_fresh = false;
            fresh
        };
        if let Some(p) = fresh {
            return Ok(p);
        }
        let negotiation = |reason| crate::peer::PeerError::Negotiation {
            what: "move a stream to a new session",
            reason,
        };
        let (n, cc) = {
            let mut state = imp.state.lock().unwrap();
            state.next_peer += 1;
            (state.next_peer, state.congestion)
        };
        let peer = imp.create_peer(n, cc)?;
        let mut state = imp.state.lock().unwrap();
        for s in state.streams.iter_mut() {
            match s.raw.as_mut() {
                // Offered again: the new server may pick another codec.
                // Fed once it answered (see `answered`).
                Some(raw) => imp
                    .offer_raw(raw, s.media, &peer, cc.is_some())
                    .map_err(negotiation)?,
                None => {
                    let Some(out) = s.out.clone() else { continue };
                    imp.feed_peer(&out, s.media, None, &peer)
                        .map_err(negotiation)?;
                    if let Some(id) = s.parked.take() {
                        out.remove_probe(id);
                    }
                }
            }
        }
        state.peer = Some(peer.clone());
        Ok(peer)
    }

    /// Raw streams' transceivers offer their codec preferences; the
    /// others offer the caps linked to them.
    fn before_offer(&self, peer: &Arc<Peer>) -> crate::runtime::BoxFuture<()> {
        let pads = peer
            .webrtcbin()
            .sink_pads()
            .into_iter()
            .filter(|p| {
                p.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver")
                    .property::<Option<gst::Caps>>("codec-preferences")
                    .is_none()
            })
            .collect();
        Box::pin(wait_complete_caps(pads))
    }

    fn answered(&self, peer: &Arc<Peer>, remote_sdp: &str) {
        if let Some(obj) = self.0.upgrade() {
            obj.imp().encode_answered(peer, remote_sdp);
        }
    }

    fn answers_counter_offers(&self) -> bool {
        false
    }

    fn activate(&self, peer: &Arc<Peer>) {
        gst::info!(CAT, "connected, requesting a key frame");
        peer.request_keyframes();
        // Congestion control starts from start-bitrate.
        let target = peer.stats().target_bitrate();
        if let (Some(obj), true) = (self.0.upgrade(), target > 0) {
            let min = obj.imp().congestion.lock().unwrap().min;
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
