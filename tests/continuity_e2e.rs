//! One continuous stream across capped WebRTC sessions: whepserversink with
//! `max-session-duration`, whepsrc renewing ahead of it or reconnecting
//! after each cut; whipsink republishing after whipserversrc drops it.
//! Frames carry a counter drawn into the picture, read back after decoding.

mod common;

use std::time::Duration;

use common::e2e::{wait_until, Client, WhipServer, RT};
use common::front::Front;
use gst::prelude::*;

use common::stamp::{play, StampedServer};

fn assert_monotonic(frames: &[(u16, gst::ClockTime, bool)]) {
    for w in frames.windows(2) {
        assert!(
            w[1].1 > w[0].1,
            "timestamps go back: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn renewal_below_the_cap_loses_no_frame() {
    let server = StampedServer::start("max-session-duration=3");
    let (client, frames) = play(
        &format!("{}/whep", server.base),
        "max-session-duration=3 renew-lead=1800",
    );
    std::thread::sleep(Duration::from_secs(20));
    client.stop();
    std::thread::sleep(Duration::from_millis(500));

    let started = client.messages.element("session-started").len();
    assert!(started >= 6, "only {started} sessions in 20 s");
    assert!(
        client.messages.errors().is_empty(),
        "{:?}",
        client.messages.errors()
    );
    assert!(!client.messages.has_eos());
    // Every session was DELETEd by the client or expired at the server.
    let added = server.messages.element("viewer-added").len();
    let removed = server.messages.element("viewer-removed");
    assert_eq!(added, removed.len(), "sessions left on the server");
    assert!(added >= started);

    let frames = frames.lock().unwrap().clone();
    assert!(frames.len() > 400, "{} frames", frames.len());
    let missing: Vec<_> = frames
        .windows(2)
        .filter(|w| w[1].0 != w[0].0.wrapping_add(1))
        .map(|w| (w[0].0, w[1].0))
        .collect();
    eprintln!(
        "{} sessions, {} frames {}..{}, renewals {:?}",
        started,
        frames.len(),
        frames[0].0,
        frames.last().unwrap().0,
        client
            .messages
            .element("session-renewed")
            .iter()
            .map(|s| s.get::<u64>("gap-ms").unwrap())
            .collect::<Vec<_>>()
    );
    assert!(missing.is_empty(), "frame sequence breaks at {missing:?}");
    assert_monotonic(&frames);
    assert!(frames.iter().skip(1).all(|f| !f.2), "DISCONT without a gap");
    let renewed = client.messages.element("session-renewed");
    assert!(renewed.len() >= 5);
    assert!(renewed.iter().all(|s| s.get::<bool>("planned").unwrap()));
}

#[test]
fn unannounced_cuts_are_bridged_within_a_second() {
    let server = StampedServer::start("max-session-duration=3");
    let (client, frames) = play(&format!("{}/whep", server.base), "");
    std::thread::sleep(Duration::from_secs(20));
    let frames = frames.lock().unwrap().clone();
    client.stop();

    assert!(
        client.messages.errors().is_empty(),
        "{:?}",
        client.messages.errors()
    );
    assert!(!client.messages.has_eos());
    let resumed = client.messages.element("session-renewed");
    assert!(resumed.len() >= 4, "{} reconnections", resumed.len());
    assert!(frames.len() > 300, "{} frames", frames.len());
    assert_monotonic(&frames);
    // The frame after each cut says so; gaps stay under a second.
    let mut gaps = Vec::new();
    for w in frames.windows(2) {
        let gap = w[1].1 - w[0].1;
        if gap > gst::ClockTime::from_mseconds(100) {
            gaps.push(gap.mseconds());
            assert!(w[1].2, "a gap of {gap} without DISCONT");
        }
    }
    eprintln!("{} frames, gaps {gaps:?} ms", frames.len());
    assert!(gaps.iter().all(|&g| g <= 1000), "gaps {gaps:?} ms");
    // Playback continued past every cut: the last frame is recent.
    assert!(frames.last().unwrap().1 > frames[0].1 + gst::ClockTime::from_seconds(17));
}

#[test]
fn a_new_token_is_used_by_the_next_session() {
    let server = StampedServer::start("max-session-duration=2");
    let front = RT.block_on(Front::start(server.base.clone(), |l| l.to_string()));
    let (client, frames) = play(&format!("{}/whep", front.base()), "auth-token=first-token");
    let src = client.pipeline.by_name("src").unwrap();
    assert!(wait_until(Duration::from_secs(5), || !frames
        .lock()
        .unwrap()
        .is_empty()));
    src.set_property("auth-token", "second-token");
    assert!(wait_until(Duration::from_secs(8), || client
        .messages
        .element("session-started")
        .len()
        >= 2));
    std::thread::sleep(Duration::from_millis(300));
    client.stop();
    let posts: Vec<_> = front
        .passed()
        .into_iter()
        .filter(|p| p.method == "POST")
        .collect();
    assert_eq!(
        posts[0].authorization.as_deref(),
        Some("Bearer first-token")
    );
    assert_eq!(
        posts.last().unwrap().authorization.as_deref(),
        Some("Bearer second-token")
    );
    let deletes: Vec<_> = front
        .passed()
        .into_iter()
        .filter(|p| p.method == "DELETE")
        .collect();
    assert!(!deletes.is_empty());
    assert!(deletes
        .iter()
        .all(|d| d.authorization.as_deref() == Some("Bearer second-token")));
}

#[test]
fn whipsink_republishes_after_the_server_drops_it() {
    let server = WhipServer::start("max-session-duration=3");
    let client = Client::start(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 \
         ! whipsink whip-endpoint={}/whip/cam ice-addresses=127.0.0.1 media-timeout=1500",
        server.base
    ));
    assert!(
        wait_until(Duration::from_secs(15), || server
            .messages
            .element("publisher-added")
            .len()
            >= 3),
        "publishers: {}, client errors {:?}",
        server.messages.element("publisher-added").len(),
        client.messages.errors()
    );
    let before = server.counters.video();
    std::thread::sleep(Duration::from_secs(1));
    assert!(server.counters.video() > before, "media stopped");
    client.stop();
    assert!(
        client.messages.errors().is_empty(),
        "{:?}",
        client.messages.errors()
    );
    assert!(client.messages.element("session-reconnecting").len() >= 2);
}
