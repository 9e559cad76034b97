use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_webrtc::WebRTCRTPTransceiverDirection;

use crate::codec::{self, Codec};
use crate::peer::stats::ServerStats;
use crate::peer::{sdp, Peer};
use crate::runtime::RUNTIME;
use crate::server::claims::{Slot, Slots};
use crate::server::codec_params::{self, Choice};
use crate::server::direction::{check_offer, Endpoint};
use crate::server::key_units;
use crate::server::settings::ServerSettings;
use crate::server::{Answered, BoxFuture, Handler, HttpServer, IceSession, Refusal};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "whepserversink",
        gst::DebugColorFlags::empty(),
        Some("WHEP server sink"),
    )
});

/// Time for the RTCP BYE to leave before the peer is torn down. Short: the
/// DTLS close_notify that follows tells the viewer anyway, and until it
/// knows, its picture is frozen (rtpsession may hold a BYE until its next
/// RTCP slot, which cost viewers 400 ms of gap when waited for).
const BYE_GRACE: Duration = Duration::from_millis(20);

/// How long a viewer's offer waits for inputs whose first caps have not
/// come (a stream that starts a frame after the others): answered without
/// them, the viewer would never get those streams.
const INPUT_CAPS_WAIT: Duration = Duration::from_secs(2);

/// One input stream, normalized to encoded media and split by a tee.
struct Input {
    ghost: gst::GhostPad,
    codec: Option<&'static Codec>,
    tee: Option<gst::Element>,
    elements: Vec<gst::Element>,
    eos: bool,
}

/// A viewer's branch of one input: tee pad ! queue ! payloader ! webrtcbin.
struct Branch {
    tee: gst::Element,
    tee_pad: gst::Pad,
    elements: Vec<gst::Element>,
}

/// A refused viewer, and the branches made for it so far (to remove).
type Refused = (Vec<Branch>, Refusal);

struct Viewer {
    peer: Arc<Peer>,
    /// Its trickle and ICE restart PATCHes.
    ice: Arc<IceSession>,
    branches: Vec<Branch>,
    /// Its place among max-sessions.
    _slot: Slot,
}

#[derive(Default)]
struct State {
    server: Option<HttpServer>,
    inputs: Vec<Input>,
    viewers: HashMap<String, Viewer>,
    next_pad: u32,
    next_peer: u32,
}

#[derive(Default)]
pub struct WhepServerSink {
    settings: Mutex<ServerSettings>,
    state: Mutex<State>,
    slots: Slots,
    stats: ServerStats,
    /// Woken when an input's first caps come (see `wait_for_inputs`).
    input_ready: tokio::sync::Notify,
}

#[glib::object_subclass]
impl ObjectSubclass for WhepServerSink {
    // GStreamer names instances after the type, less a "Gst" prefix:
    // this one's are `whepserversink0`, `whepserversink1`..., and the type
    // cannot clash with gst-plugins-rs' own, whose names start with "Gst".
    const NAME: &'static str = "WhepServerSink";
    type Type = super::WhepServerSink;
    type ParentType = gst::Bin;
}

impl ObjectImpl for WhepServerSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = ServerSettings::whep_properties();
            props.extend(ServerStats::properties());
            props
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self.stats.set_property(value, pspec) {
            return;
        }
        self.settings.lock().unwrap().set(value, pspec);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = self.stats.property(pspec) {
            return value;
        }
        match pspec.name() {
            "bound-address" => self
                .state
                .lock()
                .unwrap()
                .server
                .as_ref()
                .map(|s| s.local_addr().to_string())
                .to_value(),
            _ => self.settings.lock().unwrap().get(pspec),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        crate::element::set_up_bin(self.obj().upcast_ref(), gst::ElementFlags::SINK);
    }
}

impl GstObjectImpl for WhepServerSink {}

impl ElementImpl for WhepServerSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "WHEP server sink",
                "Sink/Network/WebRTC",
                "WHEP server: serves its input streams to any number of viewers",
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
        let name = crate::element::request_pad_name(
            self.obj().upcast_ref(),
            templ,
            name,
            &mut state.next_pad,
        )?;
        let ghost = gst::GhostPad::builder_from_template(templ)
            .name(name.as_str())
            .event_function(|pad, parent, event| {
                WhepServerSink::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .build();
        state.inputs.push(Input {
            ghost: ghost.clone(),
            codec: None,
            tee: None,
            elements: Vec::new(),
            eos: false,
        });
        drop(state);
        ghost.set_active(true).ok()?;
        self.obj().add_pad(&ghost).ok()?;
        Some(ghost.upcast())
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        crate::element::before_transition(transition);
        if transition == gst::StateChange::NullToReady {
            let settings = self.settings.lock().unwrap().clone();
            let server = settings.serve(
                self.obj().upcast_ref(),
                Arc::new(WhepHandler(self.obj().downgrade())),
            )?;
            self.state.lock().unwrap().server = Some(server);
            self.stats.start(
                self.obj().upcast_ref(),
                crate::server::stats_sources(&*self.obj(), |obj| {
                    let state = obj.imp().state.lock().unwrap();
                    crate::server::peers_by_location(&state.viewers, |s| &s.peer)
                }),
            );
        }
        if transition == gst::StateChange::ReadyToNull {
            self.stats.stop();
            let viewers: Vec<Viewer> = {
                let mut state = self.state.lock().unwrap();
                state.server = None;
                state.viewers.drain().map(|(_, v)| v).collect()
            };
            for v in viewers {
                self.remove_viewer_elements(v);
            }
        }
        self.parent_change_state(transition)
    }
}

impl BinImpl for WhepServerSink {
    fn handle_message(&self, message: gst::Message) {
        // A viewer's webrtcbin gets EOS when its session is capped (to send
        // RTCP BYE); that is not the end of what this element serves, which
        // it says itself when all its inputs end.
        if let gst::MessageView::Eos(_) = message.view() {
            return;
        }
        // One viewer's failure ends that viewer only (see `peer_lifetime`).
        let message = crate::peer::contain_error(self.obj().upcast_ref(), message);
        self.parent_handle_message(message)
    }
}

/// The refusal of an offer that came while the element stops.
fn stopping() -> Refusal {
    Refusal::new(503, "Service Unavailable", "the server is stopping")
}

struct WhepHandler(glib::WeakRef<super::WhepServerSink>);

impl Handler for WhepHandler {
    fn offer(
        &self,
        path: String,
        location: String,
        offer: String,
    ) -> BoxFuture<Result<Answered, Refusal>> {
        let weak = self.0.clone();
        Box::pin(async move {
            let obj = weak.upgrade().ok_or_else(|| {
                Refusal::new(503, "Service Unavailable", "the server is stopping")
            })?;
            obj.imp().accept_viewer(path, location, offer).await
        })
    }

    fn ice(&self, location: &str) -> Option<Arc<IceSession>> {
        let obj = self.0.upgrade()?;
        let state = obj.imp().state.lock().unwrap();
        state.viewers.get(location).map(|s| s.ice.clone())
    }

    fn delete(&self, location: &str) -> bool {
        self.0
            .upgrade()
            .is_some_and(|obj| obj.imp().remove_viewer(location, "DELETE", false))
    }

    /// The player page (plays this path).
    fn get(&self, _path: &str) -> Option<(&'static str, bytes::Bytes)> {
        Some((
            crate::server::HTML,
            bytes::Bytes::from_static(crate::server::WHEP_PLAYER_PAGE.as_bytes()),
        ))
    }
}

impl WhepServerSink {
    fn sink_event(&self, pad: &gst::GhostPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                if let Err(err) = self.link_input(pad, c.caps()) {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("{}", err));
                    return false;
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            gst::EventView::Eos(_) => {
                let all_eos = {
                    let mut state = self.state.lock().unwrap();
                    if let Some(i) = state.inputs.iter_mut().find(|i| &i.ghost == pad) {
                        i.eos = true;
                    }
                    state.inputs.iter().all(|i| i.eos)
                };
                // An input that ends before its caps is not waited for.
                self.input_ready.notify_waiters();
                if all_eos {
                    let obj = self.obj();
                    let _ = obj.post_message(gst::message::Eos::builder().src(&*obj).build());
                }
                true
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// First caps on an input: depayload RTP or parse encoded media into a tee
    /// that viewers' branches hang off.
    fn link_input(&self, ghost: &gst::GhostPad, caps: &gst::CapsRef) -> Result<(), String> {
        let known = {
            let state = self.state.lock().unwrap();
            state
                .inputs
                .iter()
                .find(|i| &i.ghost == ghost)
                .and_then(|i| i.codec)
        };
        if let Some(codec) = known {
            let same = codec::from_rtp_caps(caps).or_else(|| codec::from_encoded_caps(caps));
            return if same == Some(codec) {
                Ok(())
            } else {
                Err(format!("the input changed codec to {caps}; not supported"))
            };
        }
        let (codec, mut chain) = if codec::is_rtp(caps) {
            let codec =
                codec::from_rtp_caps(caps).ok_or_else(|| format!("unsupported RTP caps {caps}"))?;
            (codec, codec.depayload_chain().map_err(|e| e.to_string())?)
        } else {
            let codec =
                codec::from_encoded_caps(caps).ok_or_else(|| format!("unsupported caps {caps}"))?;
            let chain = match codec.parser {
                Some(p) => vec![gst::ElementFactory::make(p)
                    .build()
                    .map_err(|_| format!("{p} missing"))?],
                None => Vec::new(),
            };
            (codec, chain)
        };
        let tee = gst::ElementFactory::make("tee")
            .property("allow-not-linked", true)
            .build()
            .map_err(|_| "tee missing")?;
        // Every viewer's key frame requests meet here: at most one per
        // interval reaches the source.
        key_units::merge_requests(&tee.static_pad("sink").unwrap());
        chain.push(tee.clone());
        codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
        ghost
            .set_target(Some(&chain[0].static_pad("sink").unwrap()))
            .map_err(|e| e.to_string())?;
        let mut state = self.state.lock().unwrap();
        if let Some(i) = state.inputs.iter_mut().find(|i| &i.ghost == ghost) {
            i.codec = Some(codec);
            i.tee = Some(tee);
            i.elements = chain;
        }
        drop(state);
        self.input_ready.notify_waiters();
        gst::info!(
            CAT,
            imp = self,
            "input {} is {}",
            ghost.name(),
            codec.encoding_name
        );
        Ok(())
    }

    async fn accept_viewer(
        &self,
        path: String,
        location: String,
        offer: String,
    ) -> Result<Answered, Refusal> {
        let settings = self.settings.lock().unwrap().clone();
        check_offer(Endpoint::Whep, &offer)?;
        let slot = self.slots.take(settings.max_sessions)?;
        self.wait_for_inputs().await;
        let (inputs, name) = {
            let mut state = self.state.lock().unwrap();
            state.next_peer += 1;
            let inputs: Vec<(&'static Codec, gst::Element)> = state
                .inputs
                .iter()
                .filter_map(|i| Some((i.codec?, i.tee.clone()?)))
                .collect();
            (inputs, format!("viewer{}", state.next_peer))
        };
        if inputs.is_empty() {
            // WHEP: "no live publisher" is 409 with Retry-After.
            let mut r = Refusal::new(409, "Conflict", "nothing is being served yet");
            r.retry_after = Some(1);
            return Err(r);
        }
        let obj = self.obj().clone();
        let peer_settings = settings.peer_settings();
        let peer = crate::server::off_runtime(move || Peer::detached(&name, &peer_settings))
            .await?
            .map_err(|e| Refusal::new(500, "Internal Server Error", e.to_string()))?;
        // Element work, off the runtime (see `off_runtime`).
        let fail = |peer: Arc<Peer>, branches: Vec<Branch>, r: Refusal| {
            let obj = obj.clone();
            async move {
                let bin = obj.clone();
                let _ = crate::server::off_runtime(move || {
                    obj.imp().remove_branches(branches);
                    peer.remove_from(bin.upcast_ref());
                })
                .await;
                r
            }
        };
        if let Err(e) = peer
            .set_remote(gst_webrtc::WebRTCSDPType::Offer, &offer)
            .await
        {
            return Err(fail(
                peer,
                Vec::new(),
                Refusal::new(400, "Bad Request", e.to_string()),
            )
            .await);
        }
        // The remote offer made the DTLS transport: now into the bin (see
        // `Peer::join`).
        let (p, bin) = (peer.clone(), obj.clone());
        if let Err(e) = crate::server::off_runtime(move || p.join(bin.upcast_ref())).await? {
            let r = Refusal::new(500, "Internal Server Error", e.to_string());
            return Err(fail(peer, Vec::new(), r).await);
        }
        // Set once the viewer is connected: until then its branches drop
        // everything (see `add_branch`).
        let connected = Arc::new(AtomicBool::new(false));
        let (o, p, c, sdp_offer, loc) = (
            obj.clone(),
            peer.clone(),
            connected.clone(),
            offer.clone(),
            location.clone(),
        );
        let added = crate::server::off_runtime(move || {
            o.imp().add_branches(&p, &inputs, &sdp_offer, &c, &loc)
        })
        .await?;
        let (branches, choices) = match added {
            Ok(b) => b,
            Err((branches, refusal)) => return Err(fail(peer, branches, refusal).await),
        };
        let answer = match peer
            .answer_remote_offer(&offer, settings.gather_timeout(), false)
            .await
        {
            Ok(a) => Answered {
                // Each format's parameters as the input has them.
                sdp: choices.iter().fold(a.sdp, |sdp, c| {
                    c.params.iter().fold(sdp, |sdp, (key, value)| {
                        sdp::set_fmtp_param(&sdp, c.format.payload_type, key, value)
                    })
                }),
                ice: IceSession::new(peer.clone(), &offer),
            },
            Err(e) => {
                return Err(fail(
                    peer,
                    branches,
                    Refusal::new(400, "Bad Request", e.to_string()),
                )
                .await)
            }
        };
        // Stopped meanwhile (READY→NULL took the viewers already): this one
        // would be left running, its threads holding the process.
        let refused = {
            let mut state = self.state.lock().unwrap();
            if state.server.is_none() {
                Some(branches)
            } else {
                state.viewers.insert(
                    location.clone(),
                    Viewer {
                        peer: peer.clone(),
                        ice: answer.ice.clone(),
                        branches,
                        _slot: slot,
                    },
                );
                None
            }
        };
        if let Some(branches) = refused {
            return Err(fail(peer, branches, stopping()).await);
        }
        gst::info!(CAT, imp = self, "viewer on {path} at {location}");
        self.post_viewer_message("viewer-added", &location, None);
        let weak = obj.downgrade();
        let (max, timeout) = (settings.max_session(), settings.peer_timeout());
        RUNTIME.spawn(async move {
            let at_cap = async {
                if let Some(obj) = weak.upgrade() {
                    // An EOS event waits for the pads' stream locks: not on
                    // a runtime worker.
                    let loc = location.clone();
                    let _ = tokio::task::spawn_blocking(move || obj.imp().say_bye(&loc)).await;
                }
                tokio::time::sleep(BYE_GRACE).await;
            };
            let reason = crate::server::peer_lifetime(
                &peer,
                max,
                timeout,
                || {
                    connected.store(true, Ordering::Release);
                    peer.request_keyframes();
                },
                at_cap,
            )
            .await;
            if let (Some(reason), Some(obj)) = (reason, weak.upgrade()) {
                // State changes: not on a runtime worker. The viewer hears of
                // the end at once (DTLS close_notify), not by its timeouts.
                tokio::task::spawn_blocking(move || {
                    obj.imp().remove_viewer(&location, &reason, true)
                });
            }
        });
        Ok(answer)
    }

    /// While some inputs flow, until the others have their caps too, bounded
    /// by `INPUT_CAPS_WAIT`: what is served when the viewer is answered is
    /// what it gets for its whole session.
    async fn wait_for_inputs(&self) {
        let deadline = tokio::time::Instant::now() + INPUT_CAPS_WAIT;
        loop {
            // Made before the check: a wake-up in between is not lost.
            let woken = self.input_ready.notified();
            let (ready, waiting) = {
                let state = self.state.lock().unwrap();
                let live = state.inputs.iter().filter(|i| !i.eos);
                let ready = live.clone().filter(|i| i.codec.is_some()).count();
                (ready, live.count() - ready)
            };
            // With nothing to serve yet the answer is 409 at once (WHEP's
            // "no live publisher"): the viewer retries when it says.
            if waiting == 0 || ready == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                gst::info!(
                    CAT,
                    imp = self,
                    "{waiting} input(s) without caps after {INPUT_CAPS_WAIT:?}: answering without them"
                );
                return;
            }
        }
    }

    /// A branch for each input the viewer's offer takes, and the codec
    /// parameters to answer for each (`codec_params`: what the input really
    /// is); a refusal (with the branches made so far, to remove) if none,
    /// if one failed, or if the viewer takes an input's codec only in forms
    /// that cannot carry it (an H.264 High input, a Baseline-only offer).
    fn add_branches(
        &self,
        peer: &Peer,
        inputs: &[(&'static Codec, gst::Element)],
        offer: &str,
        connected: &Arc<AtomicBool>,
        location: &str,
    ) -> Result<(Vec<Branch>, Vec<Choice>), Refused> {
        let mut branches = Vec::new();
        let mut choices = Vec::new();
        for (codec, tee) in inputs {
            let caps = tee.static_pad("sink").and_then(|p| p.current_caps());
            let stream = caps.as_ref().and_then(|c| c.structure(0));
            let choice = match codec_params::choose(offer, codec, stream) {
                Ok(Some(choice)) => choice,
                Ok(None) => {
                    gst::info!(
                        CAT,
                        imp = self,
                        "viewer {location} does not take {}",
                        codec.encoding_name
                    );
                    continue;
                }
                Err(refusal) => {
                    gst::info!(CAT, imp = self, "viewer {location}: {}", refusal.detail);
                    return Err((branches, refusal));
                }
            };
            match self.add_branch(peer, codec, tee, &choice.format, connected) {
                Ok(b) => branches.push(b),
                Err(e) => {
                    return Err((branches, Refusal::new(500, "Internal Server Error", e)));
                }
            }
            choices.push(choice);
        }
        if branches.is_empty() {
            let served: Vec<&str> = inputs.iter().map(|(c, _)| c.encoding_name).collect();
            return Err((
                branches,
                Refusal::new(
                    406,
                    "Not Acceptable",
                    format!(
                        "the offer has no format for what is served ({})",
                        served.join(", ")
                    ),
                ),
            ));
        }
        Ok((branches, choices))
    }

    /// tee ! queue ! payloader(pt the viewer offered) ! webrtcbin, sending on
    /// the transceiver of the viewer's m-section.
    fn add_branch(
        &self,
        peer: &Peer,
        codec: &'static Codec,
        tee: &gst::Element,
        format: &sdp::OfferedFormat,
        connected: &Arc<AtomicBool>,
    ) -> Result<Branch, String> {
        // A sendonly transceiver carrying exactly the viewer's format;
        // create-answer pairs it with the viewer's m-section of that kind.
        let wpad = peer
            .webrtcbin()
            .request_pad_simple("sink_%u")
            .ok_or("webrtcbin refused a sink pad")?;
        let transceiver = wpad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
        transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
        // Resend the video packets a viewer asks for again (NACK, and RTX
        // when offered): without it the answer drops both.
        transceiver.set_property("do-nack", codec.media == "video");
        let mut rtp = codec.rtp_caps(format.payload_type, format.profile.as_deref());
        if codec.encoding_name == "H264" {
            // rtph264pay puts the stream's own profile-level-id (from its SPS,
            // e.g. x264's 42c015) in its caps: pinning the viewer's here
            // would make them fail to intersect with webrtcbin's sink pad,
            // not-negotiated, which stops the shared input for every viewer.
            // The answer says the input's profile and level (`codec_params`).
            rtp.remove_field("profile-level-id");
        }
        // The SSRC is chosen here and put in the codec preferences so that
        // webrtcbin 1.22 writes `a=ssrc:` lines into the answer. Without them
        // (and without the MID header extension, which its answer drops)
        // Chromium cannot tell which m-section a bundled RTP packet belongs
        // to and drops them all: connected, bytes in, no inbound-rtp.
        let ssrc = glib::random_int();
        rtp.set("ssrc", ssrc);
        let caps = gst::Caps::builder_full().structure(rtp).build();
        transceiver.set_property("codec-preferences", &caps);

        let queue = gst::ElementFactory::make("queue")
            .property_from_str("leaky", "downstream")
            .property("max-size-buffers", 0u32)
            .property("max-size-bytes", 0u32)
            .property("max-size-time", 500_000_000u64)
            .build()
            .map_err(|_| "queue missing")?;
        let pay_chain = codec.payload_chain().map_err(|e| e.to_string())?;
        // The input is parsed already: keep only the payloader.
        let pay = pay_chain.last().unwrap().clone();
        pay.set_property("pt", format.payload_type);
        pay.set_property("ssrc", ssrc);
        let elements = vec![queue.clone(), pay.clone()];
        codec::add_chain(self.obj().upcast_ref(), &elements).map_err(|e| e.to_string())?;
        pay.static_pad("src")
            .unwrap()
            .link(&wpad)
            .map_err(|e| format!("cannot link the payloader to webrtcbin: {e:?}"))?;
        // Nothing leaves before the viewer is connected: frames from before
        // would wait at webrtcbin's send side for DTLS and reach the viewer
        // late, in a burst, which both adds latency and skews the viewer's
        // jitterbuffer timing for its whole start (a whepsrc renewal then
        // took a frame it already showed for a new one). Video then starts
        // at a key frame (asked for on connect): a viewer can decode nothing
        // before one.
        let video = codec.media == "video";
        let connected = connected.clone();
        queue
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if !connected.load(Ordering::Acquire) {
                    return gst::PadProbeReturn::Drop;
                }
                match info.buffer() {
                    Some(b) if video && b.flags().contains(gst::BufferFlags::DELTA_UNIT) => {
                        gst::PadProbeReturn::Drop
                    }
                    _ => gst::PadProbeReturn::Remove,
                }
            });
        let tee_pad = tee
            .request_pad_simple("src_%u")
            .ok_or("tee refused a pad")?;
        tee_pad
            .link(&queue.static_pad("sink").unwrap())
            .map_err(|e| format!("cannot link the tee: {e:?}"))?;
        Ok(Branch {
            tee: tee.clone(),
            tee_pad,
            elements,
        })
    }

    /// Stops the viewer's media and makes its rtpsession send RTCP BYE (on
    /// EOS), so it learns at once that the session is over, as from a device
    /// cutting it. Its branches drop buffers first: the EOS flow of a dead
    /// branch must not reach the tee and end the input for everyone.
    fn say_bye(&self, location: &str) {
        let state = self.state.lock().unwrap();
        let Some(viewer) = state.viewers.get(location) else {
            return;
        };
        for branch in &viewer.branches {
            branch.tee_pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                |_, _| gst::PadProbeReturn::Drop,
            );
        }
        let peer = viewer.peer.clone();
        drop(state);
        for pad in peer.webrtcbin().sink_pads() {
            pad.send_event(gst::event::Eos::new());
        }
    }

    /// Forgets the viewer at `location` and tears it down; false if unknown.
    /// `notify`: the end is ours, tell the viewer (DTLS close_notify) once
    /// it is out of the map, so that the DELETE it answers with finds nothing.
    fn remove_viewer(&self, location: &str, reason: &str, notify: bool) -> bool {
        let viewer = self.state.lock().unwrap().viewers.remove(location);
        let Some(viewer) = viewer else { return false };
        gst::info!(CAT, imp = self, "viewer {location} removed: {reason}");
        self.post_viewer_message("viewer-removed", location, Some(reason));
        if notify {
            viewer.peer.close_notify();
        }
        self.remove_viewer_elements(viewer);
        true
    }

    fn remove_viewer_elements(&self, viewer: Viewer) {
        self.remove_branches(viewer.branches);
        viewer.peer.remove_from(self.obj().upcast_ref());
    }

    fn remove_branches(&self, branches: Vec<Branch>) {
        let obj = self.obj();
        let bin: &gst::Bin = obj.upcast_ref();
        for branch in branches {
            if let Some(peer) = branch.tee_pad.peer() {
                let _ = branch.tee_pad.unlink(&peer);
            }
            branch.tee.release_request_pad(&branch.tee_pad);
            for el in &branch.elements {
                crate::element::stop(el);
                let _ = bin.remove(el);
            }
        }
    }

    fn post_viewer_message(&self, name: &str, location: &str, reason: Option<&str>) {
        let s = gst::Structure::builder(name)
            .field("location", location)
            .field_if_some("reason", reason)
            .build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }
}
