//! The server ends a session (its cap, a restart, a device's 30 s limit):
//! the clients see it within a second and carry on with a new session.
//! Our server elements end a session the way a browser's
//! RTCPeerConnection.close() does, with a DTLS close_notify (and RTCP BYE
//! from whepserversink); a server that vanishes without a word is noticed
//! by the silence of its RTCP, judged against the interval it uses.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{wait_until, Client, Player, WhepServer, WhipServer, OPUS_SRC, VP8_SRC};

/// Pairs each server-side end with the client's first reaction after (or
/// just before: the client may hear the close_notify before the server
/// posts its message) and returns the delays, in ms.
fn detection_ms(ends: &[Instant], reactions: &[Instant]) -> Vec<i64> {
    ends.iter()
        .filter_map(|end| {
            reactions
                .iter()
                .map(|r| {
                    if r >= end {
                        r.duration_since(*end).as_millis() as i64
                    } else {
                        -(end.duration_since(*r).as_millis() as i64)
                    }
                })
                .filter(|d| *d > -500)
                .min()
        })
        .collect()
}

#[test]
fn whipsink_publishes_again_within_a_second_of_each_server_close() {
    let server = WhipServer::start("max-session-duration=5");
    // Default settings: no media-timeout to tune.
    let client = Client::start(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 \
         ! whipsink whip-endpoint={}/whip/cam ice-addresses=127.0.0.1",
        server.base
    ));
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || server
            .messages
            .element("publisher-added")
            .len()
            >= 3),
        "publishers in 20 s: {}, client errors {:?}",
        server.messages.element("publisher-added").len(),
        client.messages.errors()
    );
    let took = start.elapsed();
    let ends = server.messages.arrivals("publisher-removed");
    let reactions = client.messages.arrivals("session-reconnecting");
    let delays = detection_ms(&ends, &reactions);
    eprintln!("3 sessions in {took:?}; cut detected after {delays:?} ms");
    assert!(delays.len() >= 2, "ends {ends:?} reactions {reactions:?}");
    assert!(delays.iter().all(|d| *d < 1000), "{delays:?} ms");
    let reasons: Vec<String> = client
        .messages
        .element("session-reconnecting")
        .iter()
        .map(|s| s.get::<String>("reason").unwrap())
        .collect();
    assert!(
        reasons.iter().all(|r| r.contains("close_notify")),
        "{reasons:?}"
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
}

#[test]
fn whepsrc_reconnects_within_a_second_of_each_server_close() {
    let server = WhepServer::start(
        &format!("{VP8_SRC} ! queue ! server. {OPUS_SRC} ! queue ! server."),
        "max-session-duration=5",
    );
    // No max-session-duration on the client: every end is unannounced.
    let player = Player::launch(&format!(
        "whepsrc whep-endpoint={} ice-addresses=127.0.0.1 ! videoconvert ! fakesink sync=false",
        server.endpoint()
    ));
    assert!(
        wait_until(Duration::from_secs(20), || server.viewers_added().len()
            >= 3),
        "viewers in 20 s: {}, errors {:?}",
        server.viewers_added().len(),
        player.messages.errors()
    );
    let ends = server.messages.arrivals("viewer-removed");
    let reactions = player.messages.arrivals("session-reconnecting");
    let delays = detection_ms(&ends, &reactions);
    assert!(
        wait_until(Duration::from_secs(3), || player
            .messages
            .element("session-renewed")
            .len()
            >= 2),
        "{:?}",
        player.messages.errors()
    );
    let gaps: Vec<u64> = player
        .messages
        .element("session-renewed")
        .iter()
        .map(|s| s.get::<u64>("gap-ms").unwrap())
        .collect();
    eprintln!("cut detected after {delays:?} ms; output gap per cut {gaps:?} ms");
    assert!(
        delays.len() >= 2 && delays.iter().all(|d| *d < 1000),
        "{delays:?}"
    );
    assert!(gaps.iter().all(|g| *g < 1000), "{gaps:?}");
    assert!(
        player.messages.errors().is_empty(),
        "{:?}",
        player.messages.errors()
    );
}

#[test]
fn whipsink_notices_a_server_that_vanishes_by_the_silence_of_its_rtcp() {
    use common::launch::{tempdir, Launch};
    common::e2e::init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempdir();
    let server = Launch::start(
        &format!(
            "whipserversrc address=127.0.0.1:{port} ice-addresses=127.0.0.1 name=s s. ! fakesink silent=false"
        )
        .split_whitespace()
        .map(String::from)
        .collect::<Vec<_>>(),
        &dir,
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    // Straight to a new session (no ICE restart first, whose PATCH would
    // wait on the frozen server): this test is about noticing.
    let client = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint=http://127.0.0.1:{port}/whip ice-addresses=127.0.0.1 timeout=2 ice-restart-timeout=0"
    ));
    assert!(
        wait_until(Duration::from_secs(10), || server.sink_buffers() >= 60),
        "{:?}",
        client.messages.errors()
    );
    // Frozen: no close_notify, no BYE, no more RTCP (it reports every 0.5 s).
    let pid = server.child.id().to_string();
    let frozen = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let noticed = wait_until(Duration::from_secs(5), || {
        !client.messages.element("session-reconnecting").is_empty()
    });
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert!(
        noticed,
        "not noticed in 5 s: {:?}",
        client.messages.errors()
    );
    let after = client.messages.arrivals("session-reconnecting")[0].duration_since(frozen);
    let reason = client.messages.element("session-reconnecting")[0]
        .get::<String>("reason")
        .unwrap();
    eprintln!("vanished server noticed after {after:?}: {reason}");
    assert!(reason.contains("no RTCP"), "{reason}");
    assert!(after < Duration::from_secs(3), "{after:?}");
    client.stop();
}
