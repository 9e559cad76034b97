//! ICE restart after a real path change (issue 13). Each test runs in
//! network namespaces of its own: this test binary re-runs itself inside
//! `unshare -rnm` (the client's namespace), which makes a second one for
//! the server (`ip netns add`) and two veth pairs between them: the media
//! path (client A 10.77.1.1, server 10.77.1.9: both sides' `ice-addresses`)
//! and a separate one for HTTP (10.77.9.0/24), so that breaking the media
//! path leaves the PATCH its way. The server is a gst-launch-1.0
//! whepserversink in its namespace (its messages read from `-m`).
//!
//! - The media link goes down and comes back (a Wi-Fi roam, a cable):
//!   whepsrc restarts ICE by PATCH and media resumes on the same session
//!   (same Location, no second POST, the server never removed the viewer);
//! - A is removed and another address, C (10.77.1.4), added: libnice
//!   gathers its host candidates once per session, so UDP stays on A, but
//!   its TCP-active candidate connects from whatever address the kernel
//!   picks now: the restart finds C as a peer-reflexive candidate and the
//!   session goes on over TCP, same Location;
//! - the link stays down longer than `ice-restart-timeout`: the restart
//!   times out and a new session replaces it once the link is back;
//! - a server that refuses the PATCH (405): a new session at once.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{init, wait_until, Client, Messages, Player, RT, VP8_SRC};
use common::front::Front;
use common::launch::{tail, Launch};
use common::netns::{
    endpoint, link_down, new_address, server, server_says, whip_server, A, C, PORT, SERVER_HTTP,
};

/// Runs `test` of this binary in its namespaces (see `netns`); true when
/// already inside (run the test's body).
fn inside_namespace(test: &str) -> bool {
    common::netns::inside(&[test, "--exact", "--nocapture", "--test-threads=1"])
}

fn player(endpoint: &str) -> Player {
    let player = Player::launch(&format!(
        "whepsrc whep-endpoint={endpoint} ice-addresses=\"{A},{C}\" \
         ! rtpvp8depay ! vp8dec ! fakesink sync=false"
    ));
    assert!(
        player.wait_frames(Duration::from_secs(10), 30, 0),
        "no frames before the change: {:?}",
        player.messages.errors()
    );
    player
}

/// The first `session-ice-restarted` among `messages`, within `limit`.
fn restarted(messages: &Messages, limit: Duration) -> gst::Structure {
    let found = wait_until(limit, || {
        !messages.element("session-ice-restarted").is_empty()
    });
    assert!(
        found,
        "no session-ice-restarted: {:?} {:?}",
        messages.errors(),
        messages.element("session-reconnecting")
    );
    let message = messages.element("session-ice-restarted").remove(0);
    eprintln!("{message}");
    message
}

/// `message` says ICE restarted on the session at `location`.
fn assert_same_session(message: &gst::Structure, location: &str) {
    assert_eq!(
        message.get::<&str>("outcome").unwrap(),
        "restarted",
        "{message}"
    );
    assert_eq!(
        message
            .get::<Option<String>>("location")
            .unwrap()
            .as_deref(),
        Some(location)
    );
}

/// `message` says a new session, for a reason containing `why`, replaced
/// the one at `first`.
fn assert_new_session(message: &gst::Structure, first: &str, why: &str) {
    assert_eq!(
        message.get::<&str>("outcome").unwrap(),
        "new-session",
        "{message}"
    );
    assert!(
        message.get::<&str>("reason").unwrap().contains(why),
        "{message}"
    );
    let second = message.get::<Option<String>>("location").unwrap().unwrap();
    assert_ne!(second, first);
}

/// `player` decodes `more` frames within 5 s.
fn assert_media_goes_on(player: &Player, more: u64) {
    let before = player.counters.video();
    assert!(
        player.wait_frames(Duration::from_secs(5), before + more, 0),
        "media did not go on after the restart"
    );
}

/// The server posted `added` once and `removed` never: one session
/// throughout.
fn assert_one_session_on(server: &Launch, added: &str, removed: &str) {
    assert_eq!(server_says(server, added), 1);
    assert_eq!(
        server_says(server, removed),
        0,
        "{}",
        tail(&server.output())
    );
}

#[test]
fn a_path_that_comes_back_is_resumed_by_an_ice_restart_on_the_same_session() {
    if !inside_namespace("a_path_that_comes_back_is_resumed_by_an_ice_restart_on_the_same_session")
    {
        return;
    }
    init();
    let server = server();
    let player = player(&endpoint());
    let location = player.location().unwrap();
    let cut = Instant::now();
    // Long enough for whepsrc to see the cut and start the restart.
    link_down(Duration::from_millis(1500));
    let message = restarted(&player.messages, Duration::from_secs(10));
    eprintln!("{:?} after the cut", cut.elapsed());
    assert_same_session(&message, &location);
    let interrupted = message.get::<u64>("interrupted-ms").unwrap();
    assert!((1500..5000).contains(&interrupted), "{message}");
    assert_media_goes_on(&player, 60);
    // One session throughout: one POST, the viewer never removed.
    assert_eq!(player.messages.element("session-started").len(), 1);
    assert!(player.messages.element("session-reconnecting").is_empty());
    assert_one_session_on(&server, "viewer-added", "viewer-removed");
    assert!(player.messages.errors().is_empty());
}

#[test]
fn a_new_address_is_reached_by_an_ice_restart_on_the_same_session() {
    if !inside_namespace("a_new_address_is_reached_by_an_ice_restart_on_the_same_session") {
        return;
    }
    init();
    let server = server();
    let player = player(&endpoint());
    let location = player.location().unwrap();
    new_address();
    let message = restarted(&player.messages, Duration::from_secs(10));
    assert_same_session(&message, &location);
    assert_media_goes_on(&player, 60);
    assert_eq!(player.messages.element("session-started").len(), 1);
    assert_one_session_on(&server, "viewer-added", "viewer-removed");
}

#[test]
fn a_restart_that_times_out_gets_a_new_session() {
    if !inside_namespace("a_restart_that_times_out_gets_a_new_session") {
        return;
    }
    init();
    let server = server();
    let player = player(&endpoint());
    let first = player.location().unwrap();
    // Longer than the detection (media-timeout 0.5 s) plus the restart's
    // 3 s (ice-restart-timeout).
    link_down(Duration::from_millis(4500));
    let message = restarted(&player.messages, Duration::from_secs(15));
    assert_new_session(&message, &first, "not back within");
    assert_media_goes_on(&player, 30);
    assert_eq!(server_says(&server, "viewer-added"), 2);
}

#[test]
fn a_server_refusing_the_ice_restart_gets_a_new_session() {
    if !inside_namespace("a_server_refusing_the_ice_restart_gets_a_new_session") {
        return;
    }
    init();
    let server = server();
    let front = RT.block_on(Front::refusing_patch(
        format!("http://{SERVER_HTTP}:{PORT}"),
        405,
    ));
    let player = player(&format!("{}/whep", front.base()));
    let first = player.location().unwrap();
    link_down(Duration::from_millis(1500));
    let message = restarted(&player.messages, Duration::from_secs(15));
    assert_new_session(&message, &first, "405");
    assert_media_goes_on(&player, 30);
    let passed = front.passed();
    assert!(passed
        .iter()
        .any(|p| p.method == "PATCH" && p.status == 405));
    assert_eq!(passed.iter().filter(|p| p.method == "POST").count(), 2);
    assert_eq!(server_says(&server, "viewer-added"), 2);
}

/// whipsink hears only the server's RTCP: its silence (three times the
/// interval the server uses, at least 1.5 s) says the path broke.
#[test]
fn whipsink_restarts_ice_after_a_link_flap_on_the_same_session() {
    if !inside_namespace("whipsink_restarts_ice_after_a_link_flap_on_the_same_session") {
        return;
    }
    init();
    let server = whip_server();
    let client = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint=http://{SERVER_HTTP}:{PORT}/whip ice-addresses={A}"
    ));
    assert!(
        wait_until(Duration::from_secs(10), || server.sink_buffers() >= 30),
        "{:?}",
        client.messages.errors()
    );
    let location = client.messages.element("session-started")[0]
        .get::<Option<String>>("location")
        .unwrap()
        .unwrap();
    link_down(Duration::from_millis(3500));
    let message = restarted(&client.messages, Duration::from_secs(10));
    assert_same_session(&message, &location);
    let before = server.sink_buffers();
    assert!(
        wait_until(Duration::from_secs(5), || server.sink_buffers()
            >= before + 60),
        "the server got no media after the restart"
    );
    assert_eq!(client.messages.element("session-started").len(), 1);
    assert_one_session_on(&server, "publisher-added", "publisher-removed");
}
