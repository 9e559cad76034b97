//! Each session reports where its start went (`session-timeline`, issue 14):
//! whipsink → whipserversrc and whepserversink → whepsrc over real WebRTC on
//! loopback, each phase present and in order (for whepsrc, a renewal too).

mod common;

use std::time::Duration;

use common::e2e::{wait_until, Client, Messages, Player, WhepServer, WhipServer, VP8_SRC};

/// The phases a client passes, in order.
const PHASES: [&str; 10] = [
    "peer-ready-ms",
    "description-created-ms",
    "gathered-ms",
    "post-sent-ms",
    "answer-received-ms",
    "answer-applied-ms",
    "ice-connected-ms",
    "dtls-connected-ms",
    "first-rtp-ms",
    "first-frame-ms",
];

/// Waits for `n` timelines and checks each: every phase, in order.
fn timelines(messages: &Messages, n: usize) -> Vec<gst::Structure> {
    assert!(
        wait_until(Duration::from_secs(20), || messages
            .element("session-timeline")
            .len()
            >= n),
        "{} timelines, errors {:?}",
        messages.element("session-timeline").len(),
        messages.errors()
    );
    let all = messages.element("session-timeline");
    for t in &all {
        let ms: Vec<f64> = PHASES
            .iter()
            .map(|p| {
                t.get::<f64>(*p)
                    .unwrap_or_else(|_| panic!("{p} missing in {t}"))
            })
            .collect();
        // ICE may complete in the same millisecond as DTLS starts, and the
        // first RTP out of webrtcbin is the first frame's packet: allow equal.
        assert!(ms.windows(2).all(|w| w[0] <= w[1]), "out of order: {t}");
        assert!(ms[0] >= 0.0 && ms[9] < 10_000.0, "{t}");
        println!("{t}");
    }
    all
}

#[test]
fn whipsink_sessions_report_their_timeline_in_phase_order() {
    let server = WhipServer::start("");
    // One session: a renewal (make before break) would be a second
    // publisher on the path, which whipserversrc refuses.
    let client = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint={}/whip/cam ice-addresses=127.0.0.1",
        server.base
    ));
    timelines(&client.messages, 1);
    client.stop();
}

#[test]
fn whepsrc_sessions_report_their_timeline_in_phase_order() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let player = Player::launch(&format!(
        "whepsrc whep-endpoint={} ice-addresses=127.0.0.1 max-session-duration=3 \
         renew-lead=1000 ! videoconvert ! fakesink",
        server.endpoint()
    ));
    let all = timelines(&player.messages, 2);
    assert!(!all[1].get::<bool>("first-of-process").unwrap());
    player.stop();
}
