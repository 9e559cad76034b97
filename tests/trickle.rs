//! Trickle ICE and ICE restart against the server elements (issue 13):
//! PATCH of a session with an sdpfrag, its ETag / If-Match rules, clients
//! whose offer carries no candidate and trickles them, and an ICE restart
//! that keeps the session and its media. The clients here are real
//! webrtcbin peers (the plugin's `Peer`), over 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::e2e::{init, wait_until, WhepServer, WhipServer, RT, VP8_SRC};
use gst::prelude::*;
use gstwhipwhep::peer::{ice, Peer, PeerSettings};
use gstwhipwhep::protocol::{parse_sdpfrag, trickle_sdpfrag};

const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

fn settings() -> PeerSettings {
    PeerSettings {
        ice_addresses: vec!["127.0.0.1".into()],
        latency_ms: 0,
        ..Default::default()
    }
}

fn vp8_caps() -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("encoding-name", "VP8")
        .field("payload", 96i32)
        .field("clock-rate", 90000i32)
        .build()
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
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

/// A client: a webrtcbin in its own pipeline, its offer made without
/// waiting for any candidate, every candidate stripped from it.
struct TrickleClient {
    pipeline: gst::Pipeline,
    peer: Arc<Peer>,
    frames: Arc<AtomicU64>,
    offer: String,
}

impl TrickleClient {
    /// A WHEP viewer: one recvonly VP8 transceiver, frames counted.
    fn viewer() -> TrickleClient {
        init();
        let pipeline = gst::Pipeline::new();
        let peer = Peer::new_in(pipeline.upcast_ref(), "client", &settings()).unwrap();
        let caps = vp8_caps();
        peer.webrtcbin().emit_by_name::<glib::Object>(
            "add-transceiver",
            &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
        );
        let frames = Arc::new(AtomicU64::new(0));
        let (bin, count) = (pipeline.clone(), frames.clone());
        peer.webrtcbin().connect_pad_added(move |_, pad| {
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .build()
                .unwrap();
            bin.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            let count = count.clone();
            sink.static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    count.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            pad.link(&sink.static_pad("sink").unwrap()).unwrap();
        });
        Self::offer(pipeline, peer, frames)
    }

    /// A WHIP publisher: VP8 from a test source, sendonly.
    fn publisher() -> TrickleClient {
        init();
        let pipeline = gst::Pipeline::new();
        let peer = Peer::new_in(pipeline.upcast_ref(), "client", &settings()).unwrap();
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
        Self::offer(pipeline, peer, Arc::new(AtomicU64::new(0)))
    }

    fn offer(pipeline: gst::Pipeline, peer: Arc<Peer>, frames: Arc<AtomicU64>) -> TrickleClient {
        pipeline.set_state(gst::State::Playing).unwrap();
        let offer = RT.block_on(peer.offer(Duration::ZERO)).unwrap().sdp;
        let offer = ice::with_candidates(&offer, None, &[]);
        assert!(!offer.contains("a=candidate"));
        TrickleClient {
            pipeline,
            peer,
            frames,
            offer,
        }
    }

    fn mid(&self) -> String {
        ice::mids(&self.offer)[0].clone().unwrap()
    }

    fn credentials(&self) -> (String, String) {
        ice::credentials(&self.offer).unwrap()
    }

    fn apply_answer(&self, answer: &str) {
        RT.block_on(
            self.peer
                .set_remote(gst_webrtc::WebRTCSDPType::Answer, answer),
        )
        .unwrap();
    }

    /// Every candidate, once gathering completed, and end-of-candidates.
    fn all_candidates(&self) -> String {
        let (candidates, complete) =
            RT.block_on(self.peer.late_candidates(0, Duration::from_secs(5)));
        assert!(complete && !candidates.is_empty());
        let (ufrag, pwd) = self.credentials();
        trickle_sdpfrag(&self.mid(), &ufrag, &pwd, &candidates, true)
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for TrickleClient {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn post(endpoint: &str, offer: &str) -> (String, String, Reply) {
    let reply = request(
        "POST",
        endpoint,
        &[("Content-Type", "application/sdp")],
        offer,
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let location = reply.header("location").unwrap();
    let etag = reply.header("etag").unwrap();
    (location, etag, reply)
}

#[test]
fn trickle_patch_rules_on_whipserversrc() {
    let server = WhipServer::start("");
    let endpoint = format!("{}/whip", server.base);
    let options = request("OPTIONS", &endpoint, &[], "");
    assert_eq!(options.header("accept-patch").as_deref(), Some(SDPFRAG));

    let client = TrickleClient::publisher();
    let (location, etag, created) = post(&endpoint, &client.offer);
    assert_eq!(created.header("accept-patch").as_deref(), Some(SDPFRAG));
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let session = format!("{}{location}", server.base);
    let frag = client.all_candidates();
    let patch = |headers: &[(&str, &str)], body: &str| request("PATCH", &session, headers, body);
    let json = |r: &Reply| -> serde_json::Value {
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        serde_json::from_str(&r.body).unwrap()
    };

    // No If-Match: 428; another ETag: 412; not an sdpfrag: 415.
    let r = patch(&[("Content-Type", SDPFRAG)], &frag);
    assert_eq!(r.status, 428, "{}", r.body);
    assert!(json(&r)["detail"].as_str().unwrap().contains("If-Match"));
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", "\"stale\"")],
        &frag,
    );
    assert_eq!(r.status, 412, "{}", r.body);
    json(&r);
    let r = patch(
        &[("Content-Type", "application/sdp"), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(r.header("accept-patch").as_deref(), Some(SDPFRAG));

    // Candidates for an m-line the offer lacks, or of an unknown ufrag.
    let (ufrag, pwd) = client.credentials();
    let cand = ["candidate:1 1 UDP 2122260223 127.0.0.1 40000 typ host".to_string()];
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &trickle_sdpfrag("nope", &ufrag, &pwd, &cand, false),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(json(&r)["detail"].as_str().unwrap().contains("nope"));
    let bad_ufrag = format!(
        "a=ice-ufrag:whoisthis\r\nm=audio 9 RTP/AVP 0\r\na=mid:{}\r\n{}\r\n",
        client.mid(),
        "a=candidate:1 1 UDP 2122260223 127.0.0.1 40000 typ host"
    );
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &bad_ufrag,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(json(&r)["detail"].as_str().unwrap().contains("whoisthis"));
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        "m=audio 9 RTP/AVP 0\r\na=candidate:broken\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    json(&r);

    // The real candidates, with end-of-candidates: 204, and media flows
    // (the offer had no candidate: only the trickled ones can connect).
    let r = patch(&[("Content-Type", SDPFRAG), ("If-Match", &etag)], &frag);
    assert_eq!(r.status, 204, "{}", r.body);
    client.apply_answer(&created.body);
    assert!(
        wait_until(Duration::from_secs(10), || server.counters.video() > 30),
        "no media after trickle: {:?}",
        server.messages.errors()
    );
    // Unknown session: 404.
    let r = request(
        "PATCH",
        &format!("{endpoint}/nosuchsession"),
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 404);
    assert_eq!(request("DELETE", &session, &[], "").status, 200);
    let r = patch(&[("Content-Type", SDPFRAG), ("If-Match", &etag)], &frag);
    assert_eq!(r.status, 404, "a deleted session takes no PATCH");
}

/// A viewer whose offer has no candidate connects by trickle alone, before
/// its gathering completes: the answer comes first, the candidates after.
#[test]
fn viewer_trickling_its_candidates_plays() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let client = TrickleClient::viewer();
    let (location, etag, created) = post(&server.endpoint(), &client.offer);
    client.apply_answer(&created.body);
    let frag = client.all_candidates();
    let r = request(
        "PATCH",
        &format!("{}{location}", server.base),
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        wait_until(Duration::from_secs(10), || client.frames() > 30),
        "no frames after trickle: {:?}",
        server.messages.errors()
    );
}

/// An ICE restart by PATCH (RFC 9725 §4.3.3): 200 with the server's new
/// credentials and candidates and a new ETag; the session, its Location and
/// its media go on; the old ETag and the old ufrag are stale after it.
#[test]
fn ice_restart_keeps_the_session_and_its_media() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let client = TrickleClient::viewer();
    let (location, etag, created) = post(&server.endpoint(), &client.offer);
    client.apply_answer(&created.body);
    let session = format!("{}{location}", server.base);
    let frag = client.all_candidates();
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 204);
    assert!(wait_until(Duration::from_secs(10), || client.frames() > 30));
    let (server_ufrag, _) = ice::credentials(&created.body).unwrap();
    let (old_ufrag, old_pwd) = client.credentials();

    // The client restarts: new credentials, its candidates, If-Match: *.
    let offer = RT.block_on(client.peer.offer_ice_restart()).unwrap();
    let (ufrag, pwd) = ice::credentials(&offer).unwrap();
    assert_ne!(ufrag, old_ufrag);
    let restart = trickle_sdpfrag(
        &client.mid(),
        &ufrag,
        &pwd,
        &client.peer.local_candidates(),
        true,
    );
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", "\"*\"")],
        &restart,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type").as_deref(), Some(SDPFRAG));
    let new_etag = r.header("etag").unwrap();
    assert_ne!(new_etag, etag);
    let answer = parse_sdpfrag(&r.body).unwrap();
    let (new_ufrag, new_pwd) = (answer.ufrag.unwrap(), answer.pwd.unwrap());
    assert_ne!(new_ufrag, server_ufrag);
    assert!(new_pwd.len() >= 22);
    let candidates: Vec<String> = answer
        .media
        .iter()
        .flat_map(|m| m.candidates.clone())
        .collect();
    assert!(!candidates.is_empty());
    assert!(
        candidates.iter().all(|c| c.contains("127.0.0.1")),
        "{candidates:?}"
    );

    // The client applies it: the same remote description, new ICE.
    let remote = client.peer.description("remote-description").unwrap();
    let remote = ice::with_candidates(
        &ice::with_credentials(&remote, &new_ufrag, &new_pwd),
        None,
        &candidates,
    );
    client.apply_answer(&remote);
    let before = client.frames();
    assert!(
        wait_until(Duration::from_secs(10), || client.frames() > before + 60),
        "media stopped after the ICE restart ({before} → {})",
        client.frames()
    );
    assert_eq!(
        server.viewers_added(),
        vec![location.clone()],
        "one session throughout"
    );
    assert!(server.viewers_removed().is_empty());

    // Stale: the 201's ETag, and a trickle with the old ufrag.
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", &new_etag)],
        &trickle_sdpfrag(&client.mid(), &old_ufrag, &old_pwd, &[], true),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("earlier ICE generation"), "{}", r.body);
}
