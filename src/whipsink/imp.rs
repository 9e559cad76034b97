use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_webrtc::WebRTCRTPTransceiverDirection;

use crate::codec;
use crate::peer::Peer;
use crate::runtime::RUNTIME;
use crate::session::{
    self, messages, ClientSettings, Negotiation, Resource, SessionError, SessionHandle,
};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("whipsink", gst::DebugColorFlags::empty(), Some("WHIP sink"))
});

/// How long to wait for the H.264 payloader to learn the profile from the
/// first SPS, before offering Constrained Baseline as a default.
const H264_PROFILE_WAIT: Duration = Duration::from_secs(1);

struct Stream {
    ghost: gst::GhostPad,
    /// webrtcbin's sink pad for this stream, once caps arrived.
    webrtc_pad: Option<gst::Pad>,
    /// Payloading elements we added (empty for RTP input).
    elements: Vec<gst::Element>,
    eos: bool,
}

#[derive(Default)]
struct State {
    peer: Option<Arc<Peer>>,
    streams: Vec<Stream>,
    session: Option<SessionHandle>,
    started: bool,
    running: bool,
    next_pad: u32,
}

#[derive(Default)]
pub struct WhipSink {
    settings: Mutex<ClientSettings>,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for WhipSink {
    const NAME: &'static str = "GstWhipwhepWhipSink";
    type Type = super::WhipSink;
    type ParentType = gst::Bin;
    type Interfaces = (gst::ChildProxy,);
}

impl ObjectImpl for WhipSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            ClientSettings::properties(
                "whip-endpoint",
                "URL of the WHIP endpoint to POST the offer to, e.g. https://host/whip/stream",
            )
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        settings.set(value, pspec);
        if pspec.name() == "auth-token" {
            // Token refresh: a running session's later requests (DELETE) use it.
            if let Some(session) = &self.state.lock().unwrap().session {
                session
                    .resource()
                    .client()
                    .set_auth_token(settings.auth_token.clone());
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.settings
            .lock()
            .unwrap()
            .get(pspec)
            .unwrap_or_else(|| pspec.default_value().clone())
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SINK);
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
            let mut caps = gst::Caps::builder("application/x-rtp").build();
            caps.merge(codec::encoded_caps());
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
        _name: Option<&str>,
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
        let name = format!("sink_{}", state.next_pad);
        state.next_pad += 1;
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
            webrtc_pad: None,
            elements: Vec::new(),
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
            let _ = el.set_state(gst::State::Null);
            let _ = self.obj().remove(el);
        }
        if let (Some(wpad), Some(peer)) = (stream.webrtc_pad, peer) {
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
                if let Err(msg) = self.settings.lock().unwrap().endpoint_url("whip-endpoint") {
                    gst::element_imp_error!(self, gst::ResourceError::Settings, ["{}", msg]);
                    return Err(gst::StateChangeError);
                }
                crate::peer::certificate::prewarm();
            }
            gst::StateChange::PausedToReady => self.stop_session("stopped"),
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::ReadyToPaused {
            self.state.lock().unwrap().running = true;
            self.maybe_start();
        }
        Ok(ret)
    }
}

impl BinImpl for WhipSink {}

impl ChildProxyImpl for WhipSink {
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

impl WhipSink {
    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                if let Err(err) = self.link_stream(pad, c.caps()) {
                    gst::element_imp_error!(self, gst::StreamError::Format, ["{}", err]);
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

    fn peer(&self) -> Result<Arc<Peer>, String> {
        let mut state = self.state.lock().unwrap();
        if let Some(peer) = &state.peer {
            return Ok(peer.clone());
        }
        // ICE settings are applied when the session starts: properties may
        // still change until then.
        let peer = Peer::new_in(self.obj().upcast_ref(), "webrtcbin", &Default::default())
            .map_err(|e| e.to_string())?;
        state.peer = Some(peer.clone());
        Ok(peer)
    }

    /// First caps on a request pad: route it into webrtcbin, through our
    /// payloader for encoded input.
    fn link_stream(&self, ghost: &gst::GhostPad, caps: &gst::CapsRef) -> Result<(), String> {
        let known = {
            let state = self.state.lock().unwrap();
            state
                .streams
                .iter()
                .find(|s| &s.ghost == ghost)
                .map(|s| s.webrtc_pad.is_some())
                .ok_or("unknown pad")?
        };
        if known {
            return Ok(());
        }
        let chain = if codec::is_rtp(caps) {
            Vec::new()
        } else {
            let codec =
                codec::from_encoded_caps(caps).ok_or_else(|| format!("unsupported caps {caps}"))?;
            codec.payload_chain().map_err(|e| e.to_string())?
        };
        let peer = self.peer()?;
        let wpad = peer
            .webrtcbin()
            .request_pad_simple("sink_%u")
            .ok_or("webrtcbin refused a sink pad")?;
        let transceiver = wpad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
        transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);

        let target = if let (Some(first), Some(last)) = (chain.first(), chain.last()) {
            codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
            last.static_pad("src")
                .unwrap()
                .link(&wpad)
                .map_err(|e| format!("cannot link payloader to webrtcbin: {e:?}"))?;
            first.static_pad("sink").unwrap()
        } else {
            wpad.clone()
        };
        ghost.set_target(Some(&target)).map_err(|e| e.to_string())?;

        let mut state = self.state.lock().unwrap();
        if let Some(s) = state.streams.iter_mut().find(|s| &s.ghost == ghost) {
            s.webrtc_pad = Some(wpad);
            s.elements = chain;
        }
        Ok(())
    }

    /// Starts the session once PAUSED/PLAYING and every stream has caps.
    fn maybe_start(&self) {
        let mut state = self.state.lock().unwrap();
        if state.started
            || !state.running
            || state.streams.is_empty()
            || state.streams.iter().any(|s| s.webrtc_pad.is_none())
        {
            return;
        }
        let Some(peer) = state.peer.clone() else {
            return;
        };
        state.started = true;
        let settings = self.settings.lock().unwrap().clone();
        let obj = self.obj().clone().upcast::<gst::Element>();
        let endpoint = match settings.endpoint_url("whip-endpoint") {
            Ok(u) => u,
            Err(e) => {
                drop(state);
                session::post_error(&obj, "WHIP", &SessionError::Config(e));
                return;
            }
        };
        let client = match settings.client() {
            Ok(c) => c,
            Err(e) => {
                drop(state);
                session::post_error(&obj, "WHIP", &e.into());
                return;
            }
        };
        peer.configure(&settings.peer_settings(0));
        let resource = Resource::new(client);
        let webrtc_pads: Vec<gst::Pad> = state
            .streams
            .iter()
            .filter_map(|s| s.webrtc_pad.clone())
            .collect();
        let task_resource = resource.clone();
        let task = RUNTIME.spawn(async move {
            wait_complete_caps(&webrtc_pads).await;
            gst::info!(CAT, obj = obj, "caps complete, negotiating");
            let negotiated = Negotiation {
                obj: &obj,
                peer: &peer,
                resource: &task_resource,
                endpoint: &endpoint,
                use_link_headers: settings.use_link_headers,
                gather_timeout: settings.gather_timeout(),
                retry: settings.backoff(),
                counter_offer_peer: None,
            }
            .run()
            .await;
            let context = format!(
                "WHIP session with {}",
                crate::protocol::redact_url(&endpoint)
            );
            let resp = match negotiated {
                Ok(n) => n.response,
                Err(e) => return session::post_error(&obj, &context, &e),
            };
            messages::post_session_started(&obj, &resp);
            match session::wait_connected(&peer, settings.timeout()).await {
                Ok(true) => {
                    gst::info!(CAT, obj = obj, "connected, requesting a key frame");
                    peer.request_keyframes()
                }
                Ok(false) => return,
                Err(e) => return session::post_error(&obj, &context, &e),
            }
            if session::wait_disconnected(&peer).await
                == gst_webrtc::WebRTCPeerConnectionState::Failed
            {
                session::post_error(&obj, &context, &SessionError::ConnectionFailed);
            }
        });
        state.session = Some(SessionHandle::new(task, resource));
    }

    fn stop_session(&self, reason: &str) {
        let session = {
            let mut state = self.state.lock().unwrap();
            state.running = false;
            state.session.take()
        };
        if let Some(session) = session {
            session.stop(self.obj().upcast_ref(), reason);
        }
    }

    /// EOS on every stream: DELETE the session, then post EOS so the
    /// pipeline finishes only once the server knows.
    fn stream_eos(&self, pad: &gst::GhostPad) {
        let resource = {
            let mut state = self.state.lock().unwrap();
            if let Some(s) = state.streams.iter_mut().find(|s| &s.ghost == pad) {
                s.eos = true;
            }
            if !state.streams.iter().all(|s| s.eos) {
                return;
            }
            state.session.as_ref().map(|s| s.resource().clone())
        };
        let obj = self.obj().clone().upcast::<gst::Element>();
        RUNTIME.spawn(async move {
            if let Some(resource) = resource {
                session::delete_and_report(&obj, &resource, "end of stream").await;
            }
            let _ = obj.post_message(gst::message::Eos::builder().src(&obj).build());
        });
    }
}

/// Waits until webrtcbin holds caps an offer can be made from: for H.264,
/// caps carrying the profile, which the payloader learns from the first SPS.
async fn wait_complete_caps(pads: &[gst::Pad]) {
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
