//! The relay's rules (issue 16.6): one publisher per name, and offers the
//! wrong way round refused with a problem body that names the right
//! endpoint; none of these refusals disturbs what is already served.
//! Real whipsink/whepsrc peers over loopback, ICE pinned to 127.0.0.1; the
//! relay is the example's own wiring, in this process.

mod common;

#[allow(dead_code)]
#[path = "../examples/common/relay.rs"]
mod relay;

use std::time::Duration;

use common::e2e::{init, wait_until, Client, Player, RT, VP8_SRC};
use gst::prelude::*;

const MEDIA_WAIT: Duration = Duration::from_secs(10);

/// A relay with "test" published by a whipsink and played by a whepsrc.
struct Live {
    relay: gst::Pipeline,
    base: String,
    removed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    publisher: Client,
    viewer: Player,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.viewer.pipeline.set_state(gst::State::Null);
        let _ = self.publisher.pipeline.set_state(gst::State::Null);
        let _ = self.relay.set_state(gst::State::Null);
    }
}

impl Live {
    fn start() -> Live {
        init();
        // The relay's bus watch runs on the default main context, as in the
        // example's main loop.
        static MAIN_LOOP: std::sync::Once = std::sync::Once::new();
        MAIN_LOOP.call_once(|| {
            std::thread::spawn(|| glib::MainLoop::new(None, false).run());
        });
        let relay = gst::Pipeline::new();
        let address = relay::build_relay(&relay, "127.0.0.1:0", "127.0.0.1");
        // Who left, by path (publisher-removed), seen on a sync handler so
        // that the relay's own bus watch still gets every message.
        let removed = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let r = removed.clone();
        relay.bus().unwrap().enable_sync_message_emission();
        relay
            .bus()
            .unwrap()
            .connect_sync_message(None, move |_, msg| {
                if let Some(s) = msg.structure().filter(|s| s.name() == "publisher-removed") {
                    r.lock()
                        .unwrap()
                        .push(s.get::<String>("path").unwrap_or_default());
                }
            });
        relay.set_state(gst::State::Playing).unwrap();
        let base = format!("http://{address}");
        let publisher = Client::start(&format!(
            "{VP8_SRC} ! whipsink whip-endpoint={base}/whip/test ice-addresses=127.0.0.1"
        ));
        assert!(
            wait_until(MEDIA_WAIT, || relay.by_name("whep-test").is_some()),
            "test never went live: {:?}",
            publisher.messages.errors()
        );
        let viewer = Player::launch(&format!(
            "whepsrc whep-endpoint={base}/whep/test ice-addresses=127.0.0.1 \
             ! videoconvert ! fakesink"
        ));
        let live = Live {
            relay,
            base,
            removed,
            publisher,
            viewer,
        };
        live.assert_still_served("at first");
        live
    }

    /// The viewer gets new frames, the publisher is still the one, and the
    /// name is still live.
    fn assert_still_served(&self, when: &str) {
        let before = self.viewer.counters.video();
        assert!(
            self.viewer.wait_frames(MEDIA_WAIT, before + 10, 0),
            "{when}: the viewer got {} frames, then no more; viewer errors {:?}",
            before,
            self.viewer.messages.errors()
        );
        assert!(
            self.viewer.messages.errors().is_empty(),
            "{when}: {:?}",
            self.viewer.messages.errors()
        );
        assert!(
            self.publisher.messages.errors().is_empty(),
            "{when}: {:?}",
            self.publisher.messages.errors()
        );
        assert_eq!(
            self.publisher.messages.element("session-started").len(),
            1,
            "{when}: the publisher had to reconnect"
        );
        assert!(
            self.removed.lock().unwrap().is_empty(),
            "{when}: publishers removed: {:?}",
            self.removed.lock().unwrap()
        );
        assert!(
            self.relay.by_name("whep-test").is_some(),
            "{when}: test is not live any more"
        );
    }
}

/// A canned offer (VP8 video, and Opus audio) in one direction.
fn offer(direction: &str) -> String {
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0 1\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na={direction}\r\n\
         a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
         a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na={direction}\r\n\
         a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    )
}

/// POSTs `sdp` to `url`: (status, content type, problem body).
fn post(url: &str, sdp: &str) -> (u16, String, serde_json::Value) {
    RT.block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .header("Content-Type", "application/sdp")
            .body(sdp.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.text().await.unwrap();
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        (status, ct, json)
    })
}

#[test]
fn a_second_publisher_on_a_live_name_is_refused_and_the_first_keeps_playing() {
    let live = Live::start();

    // Raw: 409 problem+json that says why.
    let (status, ct, body) = post(&format!("{}/whip/test", live.base), &offer("sendonly"));
    assert_eq!(status, 409, "{body}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["title"], "Conflict");
    assert_eq!(body["detail"], "/whip/test already has a publisher");

    // A real whipsink: its ERROR carries the server's reason.
    let second = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint={}/whip/test ice-addresses=127.0.0.1 max-retries=0",
        live.base
    ));
    let err = second
        .wait_error(MEDIA_WAIT)
        .expect("the second publisher got no ERROR");
    assert!(err.contains("409"), "{err}");
    assert!(err.contains("already has a publisher"), "{err}");
    second.stop();

    live.assert_still_served("after the refused publisher");

    // Another name is free.
    let other = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint={}/whip/other ice-addresses=127.0.0.1",
        live.base
    ));
    assert!(
        wait_until(MEDIA_WAIT, || live.relay.by_name("whep-other").is_some()),
        "other never went live: {:?}",
        other.messages.errors()
    );
    other.stop();

    // Once the first publisher leaves, the name takes a new one.
    live.publisher.stop();
    assert!(
        wait_until(MEDIA_WAIT, || live.relay.by_name("whep-test").is_none()),
        "test did not end with its publisher"
    );
    let next = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint={}/whip/test ice-addresses=127.0.0.1",
        live.base
    ));
    assert!(
        wait_until(MEDIA_WAIT, || live.relay.by_name("whep-test").is_some()),
        "test did not take a new publisher: {:?}",
        next.messages.errors()
    );
    next.stop();
}

#[test]
fn a_whep_offer_to_a_whip_endpoint_is_refused_and_the_publisher_unaffected() {
    let live = Live::start();

    let (status, ct, body) = post(&format!("{}/whip/test", live.base), &offer("recvonly"));
    assert_eq!(status, 422, "{body}");
    assert_eq!(ct, "application/problem+json");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("a WHIP endpoint takes offers that send media"),
        "{detail}"
    );
    assert!(detail.contains("use the WHEP endpoint"), "{detail}");

    // A real whepsrc pointed at the WHIP URL by mistake.
    let lost = Player::launch(&format!(
        "whepsrc whep-endpoint={}/whip/test ice-addresses=127.0.0.1 max-retries=0 \
         ! videoconvert ! fakesink",
        live.base
    ));
    let err = lost
        .wait_error(MEDIA_WAIT)
        .expect("the whepsrc got no ERROR");
    assert!(err.contains("422"), "{err}");
    assert!(err.contains("use the WHEP endpoint"), "{err}");
    lost.stop();

    live.assert_still_served("after the WHEP offer to /whip/test");
}

#[test]
fn a_whip_offer_to_a_whep_endpoint_is_refused_naming_the_whip_endpoint() {
    let live = Live::start();

    // A live name and one nobody publishes (the relay's /whep catch-all,
    // which would otherwise say 409 "nothing is being served yet").
    for name in ["test", "nobody"] {
        let (status, ct, body) = post(&format!("{}/whep/{name}", live.base), &offer("sendonly"));
        assert_eq!(status, 422, "/whep/{name}: {body}");
        assert_eq!(ct, "application/problem+json");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("a WHEP endpoint takes offers that receive media"),
            "{detail}"
        );
        assert!(detail.contains("use the WHIP endpoint"), "{detail}");
    }

    // A real whipsink pointed at the WHEP URL by mistake.
    let lost = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint={}/whep/test ice-addresses=127.0.0.1 max-retries=0",
        live.base
    ));
    let err = lost
        .wait_error(MEDIA_WAIT)
        .expect("the whipsink got no ERROR");
    assert!(err.contains("422"), "{err}");
    assert!(err.contains("use the WHIP endpoint"), "{err}");
    lost.stop();

    live.assert_still_served("after the WHIP offers to /whep");
}
