use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_webrtc::WebRTCRTPTransceiverDirection;

use super::Media;
use crate::codec::{self, Codec};
use crate::peer::{Peer, PeerError};
use crate::runtime::RUNTIME;
use crate::session::{
    self, messages, ClientSettings, Negotiation, Resource, SessionError, SessionHandle,
};

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

/// What a src pad carries, chosen from what downstream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    Rtp,
    Encoded,
    Raw,
}

/// A src pad, which outlives the WebRTC sessions that feed it: an
/// input-selector whose inputs are the sessions' streams.
struct Output {
    media: &'static str,
    ghost: gst::GhostPad,
    selector: gst::Element,
    kind: OutputKind,
}

/// The session currently feeding the outputs.
struct Live {
    peer: Arc<Peer>,
    handle: SessionHandle,
    /// Depayload/decode elements and the selector pads they feed.
    elements: Vec<gst::Element>,
}

#[derive(Default)]
struct State {
    outputs: Vec<Output>,
    live: Option<Live>,
    next_pad: u32,
    next_session: u32,
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
    let mut caps = gst::Caps::new_empty();
    for c in codec::ALL
        .into_iter()
        .filter(|c| c.media == media && c.can_decode())
    {
        caps.get_mut()
            .unwrap()
            .append_structure(gst::Structure::new_empty(c.encoded));
    }
    caps
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            client: ClientSettings::default(),
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
        wanted
            .iter()
            .filter_map(|s| {
                codec::ALL
                    .into_iter()
                    .find(|c| c.encoded == s.name().as_str() && c.media == media)
            })
            .collect()
    }
}

#[derive(Default)]
pub struct WhepSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for WhepSrc {
    const NAME: &'static str = "GstWhipwhepWhepSrc";
    type Type = super::WhepSrc;
    type ParentType = gst::Bin;
    type Interfaces = (gst::ChildProxy,);
}

impl ObjectImpl for WhepSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = ClientSettings::properties(
                "whep-endpoint",
                "URL of the WHEP endpoint to POST the offer to, e.g. https://host/whep/stream",
            );
            props.extend([
                glib::ParamSpecBoxed::builder::<gst::Caps>("video-caps")
                    .nick("Video codecs")
                    .blurb(
                        "Video codecs to offer, as encoded caps in preference order, e.g. \
                         \"video/x-h264;video/x-vp8\". Default: every codec with an installed decoder. \
                         Empty caps offer no video.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Caps>("audio-caps")
                    .nick("Audio codecs")
                    .blurb("Audio codecs to offer, as encoded caps, e.g. \"audio/x-opus\". Empty caps offer no audio.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("media", Media::AudioVideo)
                    .nick("Media")
                    .blurb(
                        "Which media to ask for. \"video\" offers no audio transceiver: device \
                         endpoints such as Ring reject one with \"Incompatible send direction\".",
                    )
                    .mutable_ready()
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
            props
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "video-caps" => {
                settings.video_caps = value
                    .get::<Option<gst::Caps>>()
                    .unwrap()
                    .unwrap_or_else(gst::Caps::new_empty)
            }
            "audio-caps" => {
                settings.audio_caps = value
                    .get::<Option<gst::Caps>>()
                    .unwrap()
                    .unwrap_or_else(gst::Caps::new_empty)
            }
            "media" => settings.media = value.get().unwrap(),
            "latency" => settings.latency_ms = value.get().unwrap(),
            _ => {
                settings.client.set(value, pspec);
                if pspec.name() == "auth-token" {
                    if let Some(live) = &self.state.lock().unwrap().live {
                        live.handle
                            .resource()
                            .client()
                            .set_auth_token(settings.client.auth_token.clone());
                    }
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
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

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SOURCE);
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
            let mut caps = gst::Caps::builder("application/x-rtp").build();
            caps.merge(codec::encoded_caps());
            caps.merge(gst::Caps::builder("video/x-raw").build());
            caps.merge(gst::Caps::builder("audio/x-raw").build());
            vec![gst::PadTemplate::new(
                "src_%u",
                gst::PadDirection::Src,
                gst::PadPresence::Sometimes,
                &caps,
            )
            .unwrap()]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => {
                if let Err(msg) = self
                    .settings
                    .lock()
                    .unwrap()
                    .client
                    .endpoint_url("whep-endpoint")
                {
                    gst::element_imp_error!(self, gst::ResourceError::Settings, ["{}", msg]);
                    return Err(gst::StateChangeError);
                }
                crate::peer::certificate::prewarm();
            }
            gst::StateChange::PausedToReady => self.stop_session("stopped"),
            _ => {}
        }
        let mut ret = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => {
                self.start_session();
                ret = gst::StateChangeSuccess::NoPreroll;
            }
            gst::StateChange::PlayingToPaused => ret = gst::StateChangeSuccess::NoPreroll,
            gst::StateChange::ReadyToNull => self.remove_outputs(),
            _ => {}
        }
        Ok(ret)
    }

    fn send_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            // The application ends the stream: DELETE, then EOS downstream.
            self.stop_session("end of stream");
            let ghosts: Vec<gst::GhostPad> = self
                .state
                .lock()
                .unwrap()
                .outputs
                .iter()
                .map(|o| o.ghost.clone())
                .collect();
            for g in ghosts {
                g.push_event(gst::event::Eos::new());
            }
            return true;
        }
        self.parent_send_event(event)
    }
}

impl BinImpl for WhepSrc {}

impl ChildProxyImpl for WhepSrc {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj()
            .children()
            .get(index as usize)
            .map(|c| c.clone().upcast())
    }
    fn children_count(&self) -> u32 {
        self.obj().children().len() as u32
    }
    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        self.obj().by_name(name).map(|c| c.upcast())
    }
}

impl WhepSrc {
    /// A webrtcbin with recvonly transceivers for the codecs to offer, whose
    /// streams are routed to the outputs.
    fn make_peer(
        weak: &glib::WeakRef<super::WhepSrc>,
        settings: &Settings,
    ) -> Result<Arc<Peer>, PeerError> {
        let obj = weak.upgrade().ok_or(PeerError::Negotiation {
            what: "start",
            reason: "element gone".into(),
        })?;
        let name = {
            let mut state = obj.imp().state.lock().unwrap();
            state.next_session += 1;
            format!("session{}", state.next_session)
        };
        let peer = Peer::new_in(
            obj.upcast_ref(),
            &name,
            &settings.client.peer_settings(settings.latency_ms),
        )?;
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
            transceiver.set_property("do-nack", media == "video");
        }
        let weak = weak.clone();
        peer.webrtcbin().connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Some(obj) = weak.upgrade() {
                if let Err(e) = obj.imp().route_stream(pad) {
                    gst::element_error!(obj, gst::StreamError::Decode, ["{}", e]);
                }
            }
        });
        Ok(peer)
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
        let weak = self.obj().downgrade();
        let make_peer = {
            let (weak, settings) = (weak.clone(), settings.clone());
            move || WhepSrc::make_peer(&weak, &settings)
        };
        let peer = match make_peer() {
            Ok(p) => p,
            Err(e) => return fail(e.into()),
        };
        let resource = Resource::new(client);
        let task_resource = resource.clone();
        let task_peer = peer.clone();
        let task = RUNTIME.spawn(async move {
            let context = format!(
                "WHEP session with {}",
                crate::protocol::redact_url(&endpoint)
            );
            let negotiated = Negotiation {
                obj: &obj,
                peer: &task_peer,
                resource: &task_resource,
                endpoint: &endpoint,
                use_link_headers: settings.client.use_link_headers,
                gather_timeout: settings.client.gather_timeout(),
                retry: settings.client.backoff(),
                counter_offer_peer: Some(&make_peer),
            }
            .run()
            .await;
            let negotiated = match negotiated {
                Ok(n) => n,
                Err(e) => return session::post_error(&obj, &context, &e),
            };
            let peer = negotiated.peer;
            if !Arc::ptr_eq(&peer, &task_peer) {
                if let Some(src) = weak.upgrade() {
                    src.imp().replace_peer(&task_peer, peer.clone());
                }
            }
            messages::post_session_started(&obj, &negotiated.response);
            match session::wait_connected(&peer, settings.client.timeout()).await {
                Ok(true) => gst::info!(CAT, obj = obj, "connected"),
                Ok(false) => return,
                Err(e) => return session::post_error(&obj, &context, &e),
            }
            if session::wait_disconnected(&peer).await
                == gst_webrtc::WebRTCPeerConnectionState::Failed
            {
                session::post_error(&obj, &context, &SessionError::ConnectionFailed);
            }
        });
        self.state.lock().unwrap().live = Some(Live {
            peer,
            handle: SessionHandle::new(task, resource),
            elements: Vec::new(),
        });
    }

    /// After a counter-offer the session runs on a new peer: drop the old one.
    fn replace_peer(&self, old: &Arc<Peer>, new: Arc<Peer>) {
        let mut state = self.state.lock().unwrap();
        if let Some(live) = state.live.as_mut().filter(|l| Arc::ptr_eq(&l.peer, old)) {
            live.peer = new;
            drop(state);
            old.remove_from(self.obj().upcast_ref());
        }
    }

    fn stop_session(&self, reason: &str) {
        let live = self.state.lock().unwrap().live.take();
        if let Some(live) = live {
            live.handle.stop(self.obj().upcast_ref(), reason);
            let bin: &gst::Bin = &self.obj().clone().upcast();
            live.peer.remove_from(bin);
            for el in &live.elements {
                let _ = el.set_state(gst::State::Null);
                let _ = bin.remove(el);
            }
        }
    }

    fn remove_outputs(&self) {
        let outputs: Vec<Output> = self.state.lock().unwrap().outputs.drain(..).collect();
        let obj = self.obj();
        for o in outputs {
            let _ = o.ghost.set_active(false);
            let _ = obj.remove_pad(&o.ghost);
            let _ = o.selector.set_state(gst::State::Null);
            let _ = obj.remove(&o.selector);
        }
    }

    /// What downstream of `ghost` accepts: RTP if it takes these RTP caps
    /// (gst-plugins-rs whepsrc's output, and the fallback for ANY), else the
    /// encoded stream, else decoded media.
    fn choose_kind(ghost: &gst::GhostPad, rtp: &gst::Caps, codec: &Codec) -> OutputKind {
        let accepted = ghost.peer_query_caps(None);
        if accepted.is_any() || accepted.can_intersect(rtp) {
            OutputKind::Rtp
        } else if accepted.can_intersect(&gst::Caps::builder(codec.encoded).build()) {
            OutputKind::Encoded
        } else {
            OutputKind::Raw
        }
    }

    /// The output for `media`, made (and exposed) on first use.
    fn output_for(
        &self,
        codec: &'static Codec,
        rtp: &gst::Caps,
    ) -> Result<(gst::Element, OutputKind), String> {
        if let Some(o) = self
            .state
            .lock()
            .unwrap()
            .outputs
            .iter()
            .find(|o| o.media == codec.media)
        {
            return Ok((o.selector.clone(), o.kind));
        }
        let selector = gst::ElementFactory::make("input-selector")
            .property("sync-streams", false)
            .build()
            .map_err(|_| "input-selector missing")?;
        let obj = self.obj();
        obj.add(&selector).map_err(|e| e.to_string())?;
        selector
            .sync_state_with_parent()
            .map_err(|e| e.to_string())?;
        let name = {
            let mut state = self.state.lock().unwrap();
            state.next_pad += 1;
            format!("src_{}", state.next_pad - 1)
        };
        let templ = obj.pad_template("src_%u").unwrap();
        let ghost = gst::GhostPad::builder_from_template_with_target(
            &templ,
            &selector.static_pad("src").unwrap(),
        )
        .map_err(|e| e.to_string())?
        .name(name.as_str())
        .build();
        ghost.set_active(true).map_err(|e| e.to_string())?;
        // The application links the pad in its pad-added handler, so what
        // downstream accepts is known right after.
        obj.add_pad(&ghost).map_err(|e| e.to_string())?;
        let kind = Self::choose_kind(&ghost, rtp, codec);
        gst::info!(
            CAT,
            imp = self,
            "{name}: {} as {kind:?}",
            codec.encoding_name
        );
        self.state.lock().unwrap().outputs.push(Output {
            media: codec.media,
            ghost,
            selector: selector.clone(),
            kind,
        });
        Ok((selector, kind))
    }

    /// A session's webrtcbin produced an RTP pad: depayload/decode it as its
    /// output needs, and feed that output's selector.
    fn route_stream(&self, pad: &gst::Pad) -> Result<(), String> {
        let rtp = pad.current_caps().ok_or("RTP pad without caps")?;
        let codec =
            codec::from_rtp_caps(&rtp).ok_or_else(|| format!("unsupported RTP caps {rtp}"))?;
        let (selector, kind) = self.output_for(codec, &rtp)?;
        let mut chain = match kind {
            OutputKind::Rtp => Vec::new(),
            OutputKind::Encoded => codec.depayload_chain().map_err(|e| e.to_string())?,
            OutputKind::Raw => {
                let mut c = codec.depayload_chain().map_err(|e| e.to_string())?;
                c.push(codec.decoder().map_err(|e| e.to_string())?);
                c
            }
        };
        let sel_pad = selector
            .request_pad_simple("sink_%u")
            .ok_or("input-selector refused a pad")?;
        if chain.is_empty() {
            pad.link(&sel_pad).map_err(|e| format!("{e:?}"))?;
        } else {
            codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
            pad.link(&chain[0].static_pad("sink").unwrap())
                .map_err(|e| format!("{e:?}"))?;
            chain
                .last()
                .unwrap()
                .static_pad("src")
                .unwrap()
                .link(&sel_pad)
                .map_err(|e| format!("{e:?}"))?;
        }
        selector.set_property("active-pad", &sel_pad);
        if let Some(live) = self.state.lock().unwrap().live.as_mut() {
            live.elements.append(&mut chain);
        }
        Ok(())
    }
}
