//! whepserversink answers only what it sends (issue 13): an H.264 input's
//! real profile decides the answer's profile-level-id, and a viewer whose
//! offer cannot decode it is refused (406 problem+json naming both sides),
//! never answered one profile and sent another. Real webrtcbin viewers, the
//! received stream's own SPS read by h264parse.

mod common;

use std::time::Duration;

use common::e2e::{wait_until, WhepServer};
use common::peer_client::{h264_caps, post, post_offer, PeerClient};

/// A High-profile input (x264's own choice of level).
const H264_HIGH_SRC: &str = "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency sliced-threads=false speed-preset=superfast key-int-max=30 ! video/x-h264,profile=high";

/// The answer's profile-level-id for payload type `pt`.
fn answered_profile(answer: &str, pt: i32) -> Option<String> {
    let prefix = format!("a=fmtp:{pt} ");
    answer
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("profile-level-id="))
        .map(str::to_string)
}

fn started(server: &WhepServer) {
    // The input's caps (its profile) are known once h264parse saw an SPS.
    assert!(wait_until(Duration::from_secs(10), || {
        post_offer(&server.endpoint(), "v=0\r\n").status != 409
    }));
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_baseline_only_viewer_is_refused_a_high_input_naming_the_profiles() {
    let server = WhepServer::start(&format!("{H264_HIGH_SRC} ! server."), "");
    started(&server);
    let client = PeerClient::viewer_of(h264_caps(&["42e01f", "42001f"]), "identity", true);
    let reply = post_offer(&server.endpoint(), &client.offer);
    assert_eq!(reply.status, 406, "{}\n{}", reply.body, client.offer);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("H.264 High"), "{detail}");
    assert!(
        detail.contains("Constrained Baseline level 3.1 (42e01f"),
        "{detail}"
    );
    assert!(detail.contains("Baseline level 3.1 (42001f"), "{detail}");
    assert!(server.viewers_added().is_empty());
}

#[test]
fn a_viewer_offering_high_gets_high_labelled_as_high() {
    let server = WhepServer::start(&format!("{H264_HIGH_SRC} ! server."), "");
    started(&server);
    // Baseline first, as browsers order them: the input decides, not the order.
    let client = PeerClient::viewer_of(
        h264_caps(&["42e01f", "640c1f", "64001f"]),
        "rtph264depay ! h264parse",
        true,
    );
    let (_, _, created) = post(&server.endpoint(), &client.offer);
    let answer = &created.body;
    let pt = [102, 103, 104]
        .into_iter()
        .find(|pt| answered_profile(answer, *pt).is_some())
        .unwrap_or_else(|| panic!("no H.264 format answered:\n{answer}"));
    let answered = answered_profile(answer, pt).unwrap();
    assert!(
        answered.starts_with("64"),
        "answered {answered} for a High input"
    );
    client.apply_answer(answer);
    assert!(
        wait_until(Duration::from_secs(15), || client.frames() > 10),
        "no frames: {:?}",
        server.messages.errors()
    );
    // What arrived is what the answer said.
    let caps = client.caps.lock().unwrap().clone().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<&str>("profile").unwrap(), "high", "{caps}");
    let level: f64 = s.get::<&str>("level").unwrap().parse().unwrap();
    let answered_level = u8::from_str_radix(&answered[4..6], 16).unwrap();
    assert_eq!(
        (level * 10.0).round() as u8,
        answered_level,
        "{caps} vs {answered}"
    );
}

#[test]
fn a_constrained_baseline_input_is_answered_constrained_baseline_when_offered() {
    let src = H264_HIGH_SRC.replace("profile=high", "profile=constrained-baseline");
    let server = WhepServer::start(&format!("{src} ! server."), "");
    started(&server);
    let client = PeerClient::viewer_of(h264_caps(&["640c1f", "42e01f"]), "identity", true);
    let (_, _, created) = post(&server.endpoint(), &client.offer);
    let answered = answered_profile(&created.body, 103);
    assert!(
        answered.as_deref().is_some_and(|p| p.starts_with("42e0")),
        "{answered:?}:\n{}",
        created.body
    );
}
