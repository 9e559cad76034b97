use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::codec;
use crate::peer::stats::ServerStats;
use crate::peer::{sdp, Peer, PeerError};
use crate::runtime::RUNTIME;
use crate::server::claims::{Claim, PathClaims, Slot, Slots};
use crate::server::direction::{check_offer, Endpoint};
use crate::server::settings::ServerSettings;
use crate::server::{Answered, BoxFuture, Handler, HttpServer, IceSession, Refusal};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "whipserversrc",
        gst::DebugColorFlags::empty(),
        Some("WHIP server source"),
    )
});

/// How often publishers hear from us (receiver reports): their sign that
/// the session is alive (whipsink's media-timeout).
const RTCP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

struct Publisher {
    path: String,
    peer: Arc<Peer>,
    /// Its trickle and ICE restart PATCHes.
    ice: Arc<IceSession>,
    pads: Vec<gst::GhostPad>,
    /// How many src pads it will have: the streams its answer accepted.
    streams: u32,
    elements: Vec<gst::Element>,
    /// Its path, unless allow-multiple-publishers.
    claim: Option<Claim>,
    /// Its place among max-sessions.
    _slot: Slot,
}

#[derive(Default)]
struct State {
    server: Option<HttpServer>,
    /// By Location path.
    publishers: HashMap<String, Publisher>,
    next_video_pad: u32,
    next_audio_pad: u32,
    next_peer: u32,
}

#[derive(Default)]
pub struct WhipServerSrc {
    settings: Mutex<ServerSettings>,
    state: Mutex<State>,
    claims: PathClaims,
    slots: Slots,
    /// The flows of all src pads, combined (see `combine_flow`).
    flows: Mutex<gst_base::UniqueFlowCombiner>,
    /// Whether the user was told that no pad is linked.
    told_unlinked: std::sync::atomic::AtomicBool,
    stats: ServerStats,
}

#[glib::object_subclass]
impl ObjectSubclass for WhipServerSrc {
    // GStreamer names instances after the type, less a "Gst" prefix:
    // this one's are `whipserversrc0`, `whipserversrc1`..., and the type
    // cannot clash with gst-plugins-rs' own, whose names start with "Gst".
    const NAME: &'static str = "WhipServerSrc";
    type Type = super::WhipServerSrc;
    type ParentType = gst::Bin;
}

/// `f` of the publisher whose src pad is the action signal's argument.
fn publisher_of<T>(args: &[glib::Value], f: impl Fn(&Publisher) -> T) -> Option<T> {
    let obj = args[0].get::<super::WhipServerSrc>().ok()?;
    let pad = args[1].get::<gst::Pad>().ok()?;
    let state = obj.imp().state.lock().unwrap();
    state
        .publishers
        .values()
        .find(|p| p.pads.iter().any(|g| g.upcast_ref::<gst::Pad>() == &pad))
        .map(f)
}

impl ObjectImpl for WhipServerSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = ServerSettings::whip_properties();
            props.extend(ServerStats::properties());
            props
        });
        PROPS.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            // The path a src pad's publisher POSTed to (e.g. "/whip/cam1"),
            // for applications that route streams by name (the relay).
            vec![
                glib::subclass::Signal::builder("publisher-path")
                    .param_types([gst::Pad::static_type()])
                    .return_type::<Option<String>>()
                    .action()
                    .class_handler(|args| {
                        let path = publisher_of(args, |p| p.path.clone());
                        Some(path.to_value())
                    })
                    .build(),
                // How many src pads a pad's publisher will have (0 if the
                // pad is not a publisher's), so that an application can wait
                // for all of them before serving the streams together: a
                // viewer answered before the last one came would never get it.
                glib::subclass::Signal::builder("publisher-streams")
                    .param_types([gst::Pad::static_type()])
                    .return_type::<u32>()
                    .action()
                    .class_handler(|args| {
                        let streams = publisher_of(args, |p| p.streams).unwrap_or(0);
                        Some(streams.to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
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
        if pspec.name() == "bound-address" {
            return self
                .state
                .lock()
                .unwrap()
                .server
                .as_ref()
                .map(|s| s.local_addr().to_string())
                .to_value();
        }
        self.settings.lock().unwrap().get(pspec)
    }

    fn constructed(&self) {
        self.parent_constructed();
        crate::element::set_up_bin(self.obj().upcast_ref(), gst::ElementFlags::SOURCE);
    }
}

impl GstObjectImpl for WhipServerSrc {}

impl ElementImpl for WhipServerSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "WHIP server source",
                "Source/Network/WebRTC",
                "WHIP server: publishers POST offers to it, and their streams come out of its pads as encoded media",
                "gst-plugin-whipwhep developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Named by media, as whepsrc's: `s.video_0` in gst-launch.
            ["video", "audio"]
                .into_iter()
                .map(|media| {
                    let mut caps = gst::Caps::new_empty();
                    for c in codec::ALL.into_iter().filter(|c| c.media == media) {
                        caps.merge(gst::Caps::new_empty_simple(c.encoded));
                    }
                    gst::PadTemplate::new(
                        &format!("{media}_%u"),
                        gst::PadDirection::Src,
                        gst::PadPresence::Sometimes,
                        &caps,
                    )
                    .unwrap()
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }

    /// EOS (`gst-launch-1.0 -e`, an application ending the stream): every
    /// stream ends at once, out of every src pad. Left to the bin, it would
    /// go to the publishers' ICE sources, and nothing comes out of a live
    /// webrtcbin after that: the pipeline would wait for EOS forever.
    fn send_event(&self, event: gst::Event) -> bool {
        if event.type_() == gst::EventType::Eos {
            gst::info!(CAT, imp = self, "EOS: ending every stream");
            let pads = self.obj().src_pads();
            if pads.is_empty() {
                self.empty_stream(event.clone());
            }
            for pad in pads {
                pad.push_event(event.clone());
            }
            return true;
        }
        self.parent_send_event(event)
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
                Arc::new(WhipHandler(self.obj().downgrade())),
            )?;
            self.state.lock().unwrap().server = Some(server);
            self.stats.start(
                self.obj().upcast_ref(),
                crate::server::stats_sources(&*self.obj(), |obj| {
                    let state = obj.imp().state.lock().unwrap();
                    crate::server::peers_by_location(&state.publishers, |s| &s.peer)
                }),
            );
        }
        if transition == gst::StateChange::ReadyToNull {
            self.stats.stop();
            let publishers: Vec<Publisher> = {
                let mut state = self.state.lock().unwrap();
                state.server = None;
                state.publishers.drain().map(|(_, p)| p).collect()
            };
            for p in publishers {
                self.remove_publisher(p, false);
            }
        }
        let mut ret = self.parent_change_state(transition)?;
        if matches!(
            transition,
            gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused
        ) {
            ret = gst::StateChangeSuccess::NoPreroll;
        }
        Ok(ret)
    }
}

impl BinImpl for WhipServerSrc {
    fn handle_message(&self, message: gst::Message) {
        // One publisher's failure ends that publisher only (see `peer_lifetime`).
        let message = crate::peer::contain_error(self.obj().upcast_ref(), message);
        self.parent_handle_message(message)
    }
}

struct WhipHandler(glib::WeakRef<super::WhipServerSrc>);

impl Handler for WhipHandler {
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
            obj.imp().accept_publisher(path, location, offer).await
        })
    }

    fn ice(&self, location: &str) -> Option<Arc<IceSession>> {
        let obj = self.0.upgrade()?;
        let state = obj.imp().state.lock().unwrap();
        state.publishers.get(location).map(|s| s.ice.clone())
    }

    fn delete(&self, location: &str) -> bool {
        let Some(obj) = self.0.upgrade() else {
            return false;
        };
        obj.imp().end_publisher(location, "DELETE", false)
    }

    /// The publisher page (camera → this path).
    fn get(&self, _path: &str) -> Option<(&'static str, bytes::Bytes)> {
        Some((
            crate::server::HTML,
            bytes::Bytes::from_static(crate::server::WHIP_PUBLISHER_PAGE.as_bytes()),
        ))
    }
}

impl WhipServerSrc {
    async fn accept_publisher(
        &self,
        path: String,
        location: String,
        offer: String,
    ) -> Result<Answered, Refusal> {
        let settings = self.settings.lock().unwrap().clone();
        check_offer(Endpoint::Whip, &offer)?;
        let offer = settings
            .restrict_offer(&offer)
            .map_err(|e| Refusal::new(400, "Bad Request", format!("offer not acceptable: {e}")))?;
        let slot = self.slots.take(settings.max_sessions)?;
        let claim = match settings.allow_multiple_publishers {
            true => None,
            false => Some(self.claims.claim(&path)?),
        };
        let name = {
            let mut state = self.state.lock().unwrap();
            state.next_peer += 1;
            format!("publisher{}", state.next_peer)
        };
        let obj = self.obj();
        let peer_settings = settings.peer_settings();
        let peer = crate::server::off_runtime(move || Peer::detached(&name, &peer_settings))
            .await?
            .map_err(|e| Refusal::new(500, "Internal Server Error", e.to_string()))?;
        peer.receive_only();

        let weak = obj.downgrade();
        let loc = location.clone();
        peer.webrtcbin().connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Some(obj) = weak.upgrade() {
                if let Err(e) = obj.imp().expose_stream(&loc, pad) {
                    gst::element_error!(obj, gst::StreamError::Decode, ("{}", e));
                }
            }
        });

        // The remote offer makes the DTLS transport: before `join` (see it).
        let answered = async {
            peer.set_remote(gst_webrtc::WebRTCSDPType::Offer, &offer)
                .await?;
            let (p, bin) = (peer.clone(), obj.clone());
            crate::server::off_runtime(move || p.join(bin.upcast_ref()))
                .await
                .map_err(|r| PeerError::Negotiation {
                    what: "start",
                    reason: r.detail,
                })??;
            peer.answer_remote_offer(&offer, settings.gather_timeout(), true)
                .await
        };
        match answered.await {
            Ok(answer) => {
                let ice = IceSession::new(peer.clone(), &offer);
                let streams = sdp::streams_to_receive(&offer, &answer.sdp) as u32;
                let answer = Answered {
                    sdp: answer.sdp,
                    ice: ice.clone(),
                };
                // Stopped meanwhile (READY→NULL took the publishers
                // already): this one would be left running.
                let stopped = {
                    let mut state = self.state.lock().unwrap();
                    let stopped = state.server.is_none();
                    if !stopped {
                        state.publishers.insert(
                            location.clone(),
                            Publisher {
                                path: path.clone(),
                                peer: peer.clone(),
                                ice,
                                pads: Vec::new(),
                                streams,
                                elements: Vec::new(),
                                claim,
                                _slot: slot,
                            },
                        );
                    }
                    stopped
                };
                if stopped {
                    let bin = obj.clone();
                    let _ = crate::server::off_runtime(move || peer.remove_from(bin.upcast_ref()))
                        .await;
                    return Err(Refusal::new(
                        503,
                        "Service Unavailable",
                        "the server is stopping",
                    ));
                }
                gst::info!(CAT, imp = self, "publisher on {path} at {location}");
                peer.set_rtcp_interval(RTCP_INTERVAL);
                self.post_publisher_message("publisher-added", &path, &location, None);
                let weak = obj.downgrade();
                let (max, timeout) = (settings.max_session(), settings.peer_timeout());
                RUNTIME.spawn(async move {
                    let reason =
                        crate::server::peer_lifetime(&peer, max, timeout, || (), async {}).await;
                    if let (Some(reason), Some(obj)) = (reason, weak.upgrade()) {
                        // State changes: not on a runtime worker.
                        // The publisher hears of the end at once (DTLS
                        // close_notify), not by its timeouts.
                        tokio::task::spawn_blocking(move || {
                            obj.imp().end_publisher(&location, &reason, true)
                        });
                    }
                });
                Ok(answer)
            }
            Err(e) => {
                let bin = obj.clone();
                let _ =
                    crate::server::off_runtime(move || peer.remove_from(bin.upcast_ref())).await;
                Err(Refusal::new(
                    400,
                    "Bad Request",
                    format!("offer not acceptable: {e}"),
                ))
            }
        }
    }

    /// A publisher's webrtcbin produced an RTP pad: depayload it and expose it.
    fn expose_stream(&self, location: &str, pad: &gst::Pad) -> Result<(), String> {
        let caps = pad.current_caps().ok_or("RTP pad without caps")?;
        let codec =
            codec::from_rtp_caps(&caps).ok_or_else(|| format!("unsupported RTP caps {caps}"))?;
        let chain = codec.depayload_chain().map_err(|e| e.to_string())?;
        codec::add_chain(self.obj().upcast_ref(), &chain).map_err(|e| e.to_string())?;
        pad.link(&chain[0].static_pad("sink").unwrap())
            .map_err(|e| format!("cannot link depayloader: {e:?}"))?;
        let src = chain.last().unwrap().static_pad("src").unwrap();
        let name = {
            let mut state = self.state.lock().unwrap();
            let next = if codec.media == "video" {
                &mut state.next_video_pad
            } else {
                &mut state.next_audio_pad
            };
            *next += 1;
            format!("{}_{}", codec.media, *next - 1)
        };
        let templ = self
            .obj()
            .pad_template(&format!("{}_%u", codec.media))
            .unwrap();
        let weak = self.obj().downgrade();
        let ghost = gst::GhostPad::builder_from_template_with_target(&templ, &src)
            .map_err(|e| e.to_string())?
            .name(name.as_str())
            .proxy_pad_chain_function(move |pad, parent, buffer| {
                let flow = gst::ProxyPad::chain_default(pad, parent, buffer);
                match weak.upgrade() {
                    Some(obj) => obj.imp().combine_flow(flow),
                    None => flow,
                }
            })
            .build();
        self.flows.lock().unwrap().add_pad(&ghost);
        ghost.set_active(true).map_err(|e| e.to_string())?;
        {
            let mut state = self.state.lock().unwrap();
            // The pad may come before the publisher is registered (answer still
            // gathering) only in theory: webrtcbin adds pads once media flows.
            if let Some(p) = state.publishers.get_mut(location) {
                p.pads.push(ghost.clone());
                p.elements.extend(chain.iter().cloned());
            }
        }
        self.obj().add_pad(&ghost).map_err(|e| e.to_string())?;
        gst::info!(
            CAT,
            imp = self,
            "publisher {location}: {} stream on {name}",
            codec.encoding_name
        );
        Ok(())
    }

    /// The flow of all src pads together: a stream nobody linked is dropped
    /// while another flows (a publisher's audio in a video-only pipeline).
    /// Even with none linked, a publisher's session goes on, its media
    /// dropped, with a WARNING: whether anyone listens is not the
    /// publisher's fault, and a pad may be linked later.
    fn combine_flow(
        &self,
        flow: Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let combined = self.flows.lock().unwrap().update_flow(flow);
        if combined != Err(gst::FlowError::NotLinked) {
            return combined;
        }
        if !self
            .told_unlinked
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("no src pad of whipserversrc is linked: publishers' media is dropped")
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// EOS with no publisher: what waits downstream (a sink linked to
    /// `whipserversrc. ! ...` by gst-launch) would never see the end, so a
    /// pad comes and goes with an empty stream: stream-start, segment, `eos`.
    fn empty_stream(&self, eos: gst::Event) {
        let obj = self.obj();
        let name = {
            let mut state = self.state.lock().unwrap();
            state.next_video_pad += 1;
            format!("video_{}", state.next_video_pad - 1)
        };
        let pad = gst::Pad::builder_from_template(&obj.pad_template("video_%u").unwrap())
            .name(name.as_str())
            .build();
        if pad.set_active(true).is_err() || obj.add_pad(&pad).is_err() {
            return;
        }
        let stream_id = pad.create_stream_id(&*obj, Some("empty"));
        pad.push_event(gst::event::StreamStart::new(&stream_id));
        pad.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()));
        pad.push_event(eos);
        let _ = pad.set_active(false);
        let _ = obj.remove_pad(&pad);
    }

    fn remove_publisher(&self, p: Publisher, eos: bool) {
        for pad in &p.pads {
            self.flows.lock().unwrap().remove_pad(pad);
        }
        p.peer.remove_from(self.obj().upcast_ref());
        for el in &p.elements {
            crate::element::stop(el);
        }
        for pad in &p.pads {
            if eos {
                pad.push_event(gst::event::Eos::new());
            }
            let _ = pad.set_active(false);
            let _ = self.obj().remove_pad(pad);
        }
        let obj = self.obj();
        for el in &p.elements {
            let _ = obj.remove(el);
        }
    }

    /// Forgets the publisher at `location` and tears it down (its streams
    /// end with EOS); false if unknown.
    /// `notify`: the end is ours, tell the publisher (DTLS close_notify) once
    /// it is out of the map, so that the DELETE it answers with finds nothing.
    fn end_publisher(&self, location: &str, reason: &str, notify: bool) -> bool {
        let publisher = self.state.lock().unwrap().publishers.remove(location);
        let Some(mut p) = publisher else { return false };
        // The path is free for the publisher's next session at once: it
        // POSTs again as soon as it hears the close_notify below.
        p.claim = None;
        gst::info!(CAT, imp = self, "publisher {location} removed: {reason}");
        self.post_publisher_message("publisher-removed", &p.path, location, Some(reason));
        if notify {
            p.peer.close_notify();
        }
        self.remove_publisher(p, true);
        true
    }

    fn post_publisher_message(&self, name: &str, path: &str, location: &str, reason: Option<&str>) {
        let s = gst::Structure::builder(name)
            .field("path", path)
            .field("location", location)
            .field_if_some("reason", reason)
            .build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }
}
