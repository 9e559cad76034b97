//! whipsink fed raw video and audio: it offers what it can encode, encodes
//! into the codec whipserversrc's answer picks, and makes a key frame when
//! the server asks for one. Real WebRTC on loopback; frames counted where
//! they come out of the server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use common::e2e::{publish_and_count, wait_until, whipsink, Client, WhipServer, MEDIA_WAIT};

const RAW_VIDEO: &str =
    "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1";
const RAW_AUDIO: &str = "audiotestsrc is-live=true";

/// whipsink publishing raw video to `server`, `extra` its properties.
fn publish_raw_video(server: &WhipServer, extra: &str) -> Client {
    Client::start(&format!(
        "{RAW_VIDEO} ! {}",
        whipsink(&server.endpoint(), extra)
    ))
}

/// Whether `factory` is installed; says so when it is not (the test has
/// nothing to check then).
fn installed(factory: &str) -> bool {
    common::e2e::init();
    let found = gst::ElementFactory::find(factory).is_some();
    if !found {
        eprintln!("{factory} is not installed: nothing to test");
    }
    found
}

/// The `encoder-selected` message whipsink posted for `pad`.
fn selected(client: &Client, pad: &str) -> gst::Structure {
    client
        .messages
        .element("encoder-selected")
        .into_iter()
        .find(|s| s.get::<String>("pad").is_ok_and(|p| p == pad))
        .unwrap_or_else(|| panic!("no encoder-selected for {pad}"))
}

#[test]
fn raw_video_is_encoded_and_published_without_an_encoder_in_the_pipeline() {
    let server = WhipServer::start("");
    let client = publish_raw_video(&server, "");
    publish_and_count(&server, &client, 30, 0);
    // Nothing asked for a codec: the first of the default preference.
    let s = selected(&client, "sink_0");
    assert_eq!(s.get::<String>("encoding-name").unwrap(), "VP8");
    assert_eq!(s.get::<String>("encoder").unwrap(), "vp8enc");
    server.counters.assert_caps("video/x-vp8");
}

#[test]
fn raw_audio_is_encoded_and_published_without_an_encoder_in_the_pipeline() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{RAW_AUDIO} ! {}",
        whipsink(&server.endpoint(), "")
    ));
    publish_and_count(&server, &client, 0, 20);
    server.counters.assert_caps("audio/x-opus");
}

#[test]
fn raw_audio_and_video_together() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{} {RAW_VIDEO} ! whip.sink_0 {RAW_AUDIO} ! whip.sink_1",
        whipsink(&server.endpoint(), "")
    ));
    publish_and_count(&server, &client, 30, 20);
}

#[test]
fn video_caps_h264_gets_h264_in_the_answered_profile() {
    let server = WhipServer::start("");
    let client = publish_raw_video(&server, "video-caps=video/x-h264");
    publish_and_count(&server, &client, 30, 0);
    let s = selected(&client, "sink_0");
    assert_eq!(s.get::<String>("encoding-name").unwrap(), "H264");
    // whipserversrc answers with the offer's profile: Constrained Baseline
    // 3.1, and the stream it receives is in it (h264parse reads the SPS).
    assert_eq!(
        s.get::<String>("profile-level-id").unwrap(),
        "42e01f",
        "{s}"
    );
    let caps = server.counters.caps();
    assert!(
        caps.iter()
            .any(|c| c.starts_with("video/x-h264")
                && c.contains("profile=(string)constrained-baseline")),
        "{caps:?}"
    );
}

#[test]
fn a_server_answering_only_vp9_gets_vp9() {
    if !installed("vp9enc") {
        return;
    }
    let server = WhipServer::start("video-caps=video/x-vp9");
    let client = publish_raw_video(&server, "");
    publish_and_count(&server, &client, 30, 0);
    assert_eq!(
        selected(&client, "sink_0")
            .get::<String>("encoding-name")
            .unwrap(),
        "VP9"
    );
    server.counters.assert_caps("video/x-vp9");
}

#[test]
fn a_server_accepting_no_offered_codec_refuses_and_the_client_says_so() {
    let server = WhipServer::start("video-caps=video/x-vp9");
    let client = publish_raw_video(
        &server,
        "video-caps=video/x-vp8 max-retries=0 reconnect=false",
    );
    let err = client
        .wait_error(Duration::from_secs(10))
        .expect("an ERROR");
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("VP8") && err.contains("VP9"), "{err}");
}

#[test]
fn video_encoder_names_the_h264_encoder() {
    if !installed("openh264enc") {
        return;
    }
    let server = WhipServer::start("");
    let client = publish_raw_video(&server, "video-caps=video/x-h264 video-encoder=openh264enc");
    publish_and_count(&server, &client, 30, 0);
    assert_eq!(
        selected(&client, "sink_0")
            .get::<String>("encoder")
            .unwrap(),
        "openh264enc"
    );
}

#[test]
fn an_unknown_video_encoder_is_an_error_naming_it() {
    common::e2e::init();
    let el = gst::ElementFactory::make("whipsink")
        .property("whip-endpoint", "http://127.0.0.1:9/whip")
        .property("video-encoder", "nosuchenc")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert!(el.set_state(gst::State::Ready).is_err());
    let msg = bus
        .pop_filtered(&[gst::MessageType::Error])
        .expect("an ERROR");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert!(err.error().to_string().contains("nosuchenc"), "{err:?}");
    let _ = el.set_state(gst::State::Null);
}

/// Key frames as they reach the server's output: when each came.
#[derive(Clone, Default)]
struct KeyFrames(Arc<Mutex<Vec<Instant>>>);

impl KeyFrames {
    /// Watches the buffers leaving `pad` (a server src pad's peer).
    fn watch(&self, pad: &gst::Pad) {
        let seen = self.0.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    seen.lock().unwrap().push(Instant::now());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    fn after(&self, t: Instant) -> Option<Instant> {
        self.0.lock().unwrap().iter().copied().find(|k| *k >= t)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Publishes `source` (which must make no key frame of its own after the
/// first), asks for a key frame from the server side the way a receiver
/// does (an upstream force-key-unit event: its RTP session sends PLI), and
/// returns how long the key frame took to arrive.
fn key_frame_on_request(source: &str, extra: &str) -> Duration {
    let server = WhipServer::start("");
    let keys = KeyFrames::default();
    let k = keys.clone();
    let server_el = server
        .pipeline
        .by_name("server")
        .expect("the server element");
    server_el.connect_pad_added(move |_, pad| {
        // Linked by the harness's own pad-added handler (connected first).
        if let Some(peer) = pad.peer() {
            k.watch(&peer);
        }
    });
    let client = Client::start(&format!(
        "{source} ! {}",
        whipsink(&server.endpoint(), extra)
    ));
    if let Some(whip) = client.pipeline.by_name("whip") {
        // Raw input: no periodic key frames either, so that only the
        // request can make one.
        whip.connect("encoder-setup", false, |args| {
            let enc = args[2].get::<gst::Element>().unwrap();
            if enc.find_property("keyframe-max-dist").is_some() {
                enc.set_property("keyframe-max-dist", 100_000i32);
            }
            if enc.find_property("key-int-max").is_some() {
                enc.set_property("key-int-max", 100_000u32);
            }
            None
        });
    }
    // The session's first key frame, then 1.5 s of delta frames only.
    assert!(
        wait_until(MEDIA_WAIT, || keys.count() >= 1
            && server.counters.video() >= 45),
        "no video: {} frames, errors {:?} {:?}",
        server.counters.video(),
        client.messages.errors(),
        server.messages.errors()
    );
    let quiet_since = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        keys.after(quiet_since),
        None,
        "the encoder made key frames by itself: the request could not be measured"
    );

    let pad = server_el
        .src_pads()
        .into_iter()
        .find(|p| p.name().starts_with("video"))
        .unwrap();
    let fku = gst::event::CustomUpstream::new(
        gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .build(),
    );
    let asked = Instant::now();
    assert!(pad.peer().unwrap().push_event(fku));
    assert!(
        wait_until(Duration::from_secs(3), || keys.after(asked).is_some()),
        "no key frame came after the request"
    );
    let took = keys.after(asked).unwrap() - asked;
    eprintln!(
        "{source}: key frame {} ms after the request",
        took.as_millis()
    );
    client.stop();
    took
}

#[test]
fn a_pli_makes_our_encoder_send_a_key_frame_within_1_s() {
    let took = key_frame_on_request(RAW_VIDEO, "");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_pli_makes_our_h264_encoder_send_a_key_frame_within_1_s() {
    let took = key_frame_on_request(RAW_VIDEO, "video-caps=video/x-h264");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_pli_reaches_the_users_encoder_upstream_within_1_s() {
    let took = key_frame_on_request(
        &format!("{RAW_VIDEO} ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist=100000"),
        "",
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn the_offer_asks_for_nack_and_offers_rtx_for_video() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{} {RAW_VIDEO} ! whip.sink_0 {RAW_AUDIO} ! whip.sink_1",
        whipsink(&server.endpoint(), "")
    ));
    assert!(
        wait_until(MEDIA_WAIT, || server.counters.video() >= 10),
        "no video"
    );
    let whip = client.pipeline.by_name("whip").unwrap();
    let bin = whip.downcast_ref::<gst::Bin>().unwrap();
    let webrtcbin = bin
        .children()
        .into_iter()
        .find(|e| e.factory().is_some_and(|f| f.name() == "webrtcbin"))
        .unwrap();
    let offer = webrtcbin
        .property::<gst_webrtc::WebRTCSessionDescription>("local-description")
        .sdp()
        .as_text()
        .unwrap();
    // The video m-section, whichever stream's caps came first.
    let at = offer.find("m=video").expect("a video m-section");
    let video = &offer[at..];
    let video = &video[..video[2..].find("m=").map_or(video.len(), |e| e + 2)];
    assert!(video.contains("a=rtcp-fb:96 nack\r\n"), "{offer}");
    assert!(video.contains("a=rtcp-fb:96 nack pli"), "{offer}");
    // webrtcbin 1.22 adds RTX for the first codec offered.
    assert!(video.contains(" rtx/90000\r\na=fmtp:97 apt=96"), "{offer}");
    // Every codec that can be encoded here is offered, in preference order.
    let m = video.lines().find(|l| l.starts_with("m=video")).unwrap();
    assert!(m.contains(" 96 ") && m.contains(" 102"), "{m}");
    // The answer keeps NACK and RTX for the codec it picked.
    let answer = webrtcbin
        .property::<gst_webrtc::WebRTCSessionDescription>("remote-description")
        .sdp()
        .as_text()
        .unwrap();
    let at = answer
        .find("m=video")
        .expect("a video m-section in the answer");
    let video = &answer[at..];
    assert!(video.contains("a=rtcp-fb:96 nack\r\n"), "{answer}");
    assert!(video.contains(" rtx/90000"), "{answer}");
    // And the server's jitterbuffer asks for lost video packets.
    let server_el = server.pipeline.by_name("server").unwrap();
    let server_webrtcbin = server_el
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .children()
        .into_iter()
        .find(|e| e.factory().is_some_and(|f| f.name() == "webrtcbin"))
        .unwrap();
    let video = (0..)
        .map_while(|i: i32| {
            server_webrtcbin
                .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&i])
        })
        .find(|t| t.property::<gst_webrtc::WebRTCKind>("kind") == gst_webrtc::WebRTCKind::Video)
        .expect("a video transceiver at the server");
    assert!(video.property::<bool>("do-nack"));
    client.stop();
}

/// Raw video published to a server that ends each session after 2 s
/// (whipsink publishes again), once 20 frames arrived.
fn sessions_of_2_s() -> (WhipServer, Client) {
    let server = WhipServer::start("max-session-duration=2");
    let client = publish_raw_video(&server, "");
    assert!(
        wait_until(MEDIA_WAIT, || server.counters.video() >= 20),
        "no video: {:?}",
        client.messages.errors()
    );
    (server, client)
}

#[test]
fn the_next_session_may_pick_another_codec_and_the_encoder_follows() {
    if !installed("vp9enc") {
        return;
    }
    let (server, client) = sessions_of_2_s();
    // From the next session on, this server takes VP9 only.
    let server_el = server.pipeline.by_name("server").unwrap();
    server_el.set_property("video-caps", gst::Caps::new_empty_simple("video/x-vp9"));
    assert!(
        wait_until(MEDIA_WAIT, || server.counters.has_caps("video/x-vp9")),
        "no VP9 after the reconnection: caps {:?}, errors {:?}",
        server.counters.caps(),
        client.messages.errors()
    );
    let vp9_from = server.counters.video();
    assert!(
        wait_until(MEDIA_WAIT, || server.counters.video() >= vp9_from + 20),
        "VP9 did not keep flowing"
    );
    let chosen: Vec<String> = client
        .messages
        .element("encoder-selected")
        .iter()
        .map(|s| s.get::<String>("encoding-name").unwrap())
        .collect();
    assert_eq!(
        chosen.first().map(String::as_str),
        Some("VP8"),
        "{chosen:?}"
    );
    assert_eq!(chosen.last().map(String::as_str), Some("VP9"), "{chosen:?}");
    assert!(
        client.messages.errors().is_empty(),
        "{:?}",
        client.messages.errors()
    );
}

#[test]
fn a_reconnection_with_the_same_codec_keeps_the_encoder() {
    let (server, client) = sessions_of_2_s();
    let whip = client
        .pipeline
        .by_name("whip")
        .unwrap()
        .downcast::<gstwhipwhep::whipsink::WhipSink>()
        .unwrap();
    let first = whip.encoders();
    assert_eq!(first.len(), 1);
    assert!(
        wait_until(MEDIA_WAIT, || server
            .messages
            .element("publisher-added")
            .len()
            >= 2),
        "no second session"
    );
    let at = server.counters.video();
    assert!(
        wait_until(MEDIA_WAIT, || server.counters.video() >= at + 20),
        "video did not flow in the second session: errors {:?}, warnings {:?}, \
         reconnections {:?}, publishers removed {:?}",
        client.messages.errors(),
        client.messages.warnings(),
        client.messages.element("session-reconnecting"),
        server.messages.element("publisher-removed")
    );
    assert_eq!(whip.encoders(), first, "the encoder was replaced");
    assert_eq!(client.messages.element("encoder-selected").len(), 1);
}
