//! A WHIP/WHEP client made in the test from the plugin's own `Peer` (a real
//! webrtcbin, ICE pinned to 127.0.0.1), for tests that need to control
//! what the client sends: an offer without candidates, trickle and ICE
//! restart PATCHes, chosen codec formats. HTTP by reqwest.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use gstwhipwhep::peer::{ice, Peer, PeerSettings};
use gstwhipwhep::protocol::trickle_sdpfrag;

use super::e2e::{init, RT, VP8_SRC};

pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

fn settings() -> PeerSettings {
    PeerSettings {
        ice_addresses: vec!["127.0.0.1".into()],
        latency_ms: 0,
        ..Default::default()
    }
}

pub fn vp8_caps() -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("encoding-name", "VP8")
        .field("payload", 96i32)
        .field("clock-rate", 90000i32)
        .build()
}

/// H.264 formats with these profile-level-ids, packetization-mode 1,
/// payload types from 102.
pub fn h264_caps(profiles: &[&str]) -> gst::Caps {
    let mut caps = gst::Caps::new_empty();
    for (i, profile) in profiles.iter().enumerate() {
        caps.merge(
            gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("encoding-name", "H264")
                .field("payload", 102 + i as i32)
                .field("clock-rate", 90000i32)
                .field("packetization-mode", "1")
                .field("level-asymmetry-allowed", "1")
                .field("profile-level-id", *profile)
                .build(),
        );
    }
    caps
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    RT.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_string()).send().await.unwrap();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    })
}

/// POSTs an offer; the reply, whatever its status.
pub fn post_offer(endpoint: &str, offer: &str) -> Reply {
    request(
        "POST",
        endpoint,
        &[("Content-Type", "application/sdp")],
        offer,
    )
}

/// POSTs an offer that must be accepted: Location, ETag and the reply.
pub fn post(endpoint: &str, offer: &str) -> (String, String, Reply) {
    let reply = post_offer(endpoint, offer);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let location = reply.header("location").unwrap();
    let etag = reply.header("etag").unwrap();
    (location, etag, reply)
}

/// A client: a webrtcbin in its own pipeline and its offer.
pub struct PeerClient {
    pub pipeline: gst::Pipeline,
    pub peer: Arc<Peer>,
    frames: Arc<AtomicU64>,
    /// Caps of what reaches the client's sink.
    pub caps: Arc<Mutex<Option<gst::Caps>>>,
    pub offer: String,
}

impl PeerClient {
    /// A WHEP viewer of VP8 whose offer carries no candidate (they are to
    /// be trickled).
    pub fn viewer() -> PeerClient {
        Self::viewer_of(vp8_caps(), "identity", false)
    }

    /// A WHEP viewer: one recvonly transceiver offering `caps`; what comes
    /// out of webrtcbin goes through `chain` (a bin description) to a
    /// counting sink. `candidates`: the offer carries them (gathering
    /// waited for), else none.
    pub fn viewer_of(caps: gst::Caps, chain: &str, candidates: bool) -> PeerClient {
        init();
        let pipeline = gst::Pipeline::new();
        let peer = Peer::detached("client", &settings()).unwrap();
        peer.join(pipeline.upcast_ref()).unwrap();
        peer.webrtcbin().emit_by_name::<glib::Object>(
            "add-transceiver",
            &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
        );
        let frames = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(None));
        let (bin, count, last, chain) = (
            pipeline.clone(),
            frames.clone(),
            seen.clone(),
            chain.to_string(),
        );
        peer.webrtcbin().connect_pad_added(move |_, pad| {
            let sink =
                gst::parse::bin_from_description(&format!("{chain} ! fakesink sync=false"), true)
                    .unwrap();
            bin.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            let fakesink = sink.iterate_sinks().into_iter().flatten().next().unwrap();
            let (count, last) = (count.clone(), last.clone());
            fakesink.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::BUFFER,
                move |pad, _| {
                    if count.fetch_add(1, Ordering::Relaxed) == 0 {
                        *last.lock().unwrap() = pad.current_caps();
                    }
                    gst::PadProbeReturn::Ok
                },
            );
            pad.link(&sink.static_pad("sink").unwrap()).unwrap();
        });
        Self::offer(pipeline, peer, frames, seen, candidates)
    }

    /// A WHIP publisher of VP8 from a test source, sendonly, whose offer
    /// carries no candidate.
    pub fn publisher() -> PeerClient {
        init();
        let pipeline = gst::Pipeline::new();
        let peer = Peer::detached("client", &settings()).unwrap();
        peer.join(pipeline.upcast_ref()).unwrap();
        let src = gst::parse::bin_from_description(&format!("{VP8_SRC} ! rtpvp8pay pt=96"), true)
            .unwrap();
        pipeline.add(&src).unwrap();
        let pad = peer.webrtcbin().request_pad_simple("sink_%u").unwrap();
        let transceiver = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
        transceiver.set_property(
            "direction",
            gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
        );
        transceiver.set_property("codec-preferences", vp8_caps());
        src.static_pad("src").unwrap().link(&pad).unwrap();
        Self::offer(
            pipeline,
            peer,
            Arc::new(AtomicU64::new(0)),
            Default::default(),
            false,
        )
    }

    fn offer(
        pipeline: gst::Pipeline,
        peer: Arc<Peer>,
        frames: Arc<AtomicU64>,
        caps: Arc<Mutex<Option<gst::Caps>>>,
        candidates: bool,
    ) -> PeerClient {
        pipeline.set_state(gst::State::Playing).unwrap();
        let gather = if candidates {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        let offer = RT.block_on(peer.offer(gather)).unwrap().sdp;
        let offer = if candidates {
            offer
        } else {
            let offer = ice::with_candidates(&offer, None, &[]);
            assert!(!offer.contains("a=candidate"));
            offer
        };
        PeerClient {
            pipeline,
            peer,
            frames,
            caps,
            offer,
        }
    }

    pub fn mid(&self) -> String {
        ice::mids(&self.offer)[0].clone().unwrap()
    }

    pub fn credentials(&self) -> (String, String) {
        ice::credentials(&self.offer).unwrap()
    }

    pub fn apply_answer(&self, answer: &str) {
        RT.block_on(
            self.peer
                .set_remote(gst_webrtc::WebRTCSDPType::Answer, answer),
        )
        .unwrap();
    }

    /// Every candidate, once gathering completed, and end-of-candidates.
    pub fn all_candidates(&self) -> String {
        let (candidates, complete) =
            RT.block_on(self.peer.late_candidates(0, Duration::from_secs(5)));
        assert!(complete && !candidates.is_empty());
        let (ufrag, pwd) = self.credentials();
        trickle_sdpfrag(&self.mid(), &ufrag, &pwd, &candidates, true)
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
