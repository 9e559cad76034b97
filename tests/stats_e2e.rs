//! The `stats` property and `session-stats` messages of all four elements,
//! on running sessions: real WebRTC over loopback, whipsink → whipserversrc
//! and whepserversink → whepsrc.

mod common;

use std::time::Duration;

use common::e2e::{wait_until, Client, Player, WhepServer, WhipServer, VP8_SRC};
use gst::prelude::*;

/// The structures in the array `field` of `stats`.
fn structures(stats: &gst::StructureRef, field: &str) -> Vec<gst::Structure> {
    stats
        .get::<gst::Array>(field)
        .unwrap()
        .iter()
        .map(|v| v.get::<gst::Structure>().unwrap())
        .collect()
}

fn streams(session: &gst::StructureRef) -> Vec<gst::Structure> {
    structures(session, "streams")
}

fn sessions(server_stats: &gst::Structure) -> Vec<gst::Structure> {
    assert_eq!(server_stats.name(), "server-stats");
    structures(server_stats, "sessions")
}

/// The one video stream of a session's statistics, once it has a bitrate.
fn video_stream(session: &gst::StructureRef) -> Option<gst::Structure> {
    streams(session)
        .into_iter()
        .find(|s| s.get::<&str>("media").ok() == Some("video"))
        .filter(|s| s.get::<u64>("bitrate").unwrap_or(0) > 0)
}

/// What every stream reports, whichever its direction.
fn assert_common(stream: &gst::StructureRef, direction: &str) {
    assert_eq!(
        stream.get::<&str>("direction").unwrap(),
        direction,
        "{stream}"
    );
    assert_eq!(stream.get::<&str>("codec").unwrap(), "VP8", "{stream}");
    assert!(stream.get::<u32>("payload-type").unwrap() >= 96, "{stream}");
    assert!(stream.get::<u32>("ssrc").unwrap() != 0, "{stream}");
    let bitrate = stream.get::<u64>("bitrate").unwrap();
    // 320x240 VP8 at 30 fps: tens to hundreds of kbit/s.
    assert!((10_000..20_000_000).contains(&bitrate), "{stream}");
    let packets = if direction == "send" {
        "packets-sent"
    } else {
        "packets-received"
    };
    assert!(stream.get::<u64>(packets).unwrap() > 10, "{stream}");
    assert!(stream.get::<u64>("frames").unwrap() > 10, "{stream}");
    assert!(stream.get::<u64>("key-frames").unwrap() >= 1, "{stream}");
    for count in ["packets-lost", "nack-count", "pli-count", "fir-count"] {
        assert!(stream.has_field(count), "{count} missing: {stream}");
    }
    assert!(stream.get::<f64>("jitter-ms").unwrap() >= 0.0, "{stream}");
}

fn assert_pair(session: &gst::StructureRef) {
    let pair = session.get::<gst::Structure>("candidate-pair").unwrap();
    for side in ["local", "remote"] {
        assert_eq!(
            pair.get::<&str>(&format!("{side}-address")).unwrap(),
            "127.0.0.1",
            "{pair}"
        );
        assert!(
            pair.get::<u32>(&format!("{side}-port")).unwrap() > 0,
            "{pair}"
        );
        assert_eq!(pair.get::<&str>(&format!("{side}-type")).unwrap(), "host");
    }
}

#[test]
fn a_publishing_session_reports_bitrate_rtt_frames_and_its_candidate_pair() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{VP8_SRC} ! whipsink name=whip whip-endpoint={}/whip/cam ice-addresses=127.0.0.1 stats-interval=300",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    let whipserversrc = server.pipeline.by_name("server").unwrap();

    // Sender side: RTT comes with the server's receiver reports.
    let mut sent = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            let stats = whip.property::<gst::Structure>("stats");
            sent = video_stream(&stats)
                .filter(|s| s.get::<f64>("rtt-ms").is_ok_and(|r| r > 0.0))
                .map(|s| (stats.clone(), s));
            sent.is_some()
        }),
        "no bitrate/RTT: {} (errors {:?})",
        whip.property::<gst::Structure>("stats"),
        client.messages.errors()
    );
    let (session, stream) = sent.unwrap();
    assert_eq!(session.name(), "session-stats");
    assert!(session
        .get::<Option<String>>("location")
        .unwrap()
        .is_some_and(|l| l.contains("/whip/cam")));
    // Congestion control is on by default: its estimate, from 1 Mbit/s.
    assert!(session.get::<u32>("target-bitrate").unwrap() >= 100_000);
    assert_common(&stream, "send");
    assert!(stream.get::<f64>("rtt-ms").unwrap() < 1000.0, "{stream}");
    assert_pair(&session);

    // Receiver side: one entry per publisher.
    let mut received = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let all = sessions(&whipserversrc.property::<gst::Structure>("stats"));
        received = all
            .first()
            .and_then(|s| video_stream(s).map(|v| (s.clone(), v)));
        all.len() == 1 && received.is_some()
    }));
    let (session, stream) = received.unwrap();
    assert!(session
        .get::<Option<String>>("location")
        .unwrap()
        .is_some_and(|l| l.starts_with("/whip/cam")));
    assert_common(&stream, "receive");
    assert_pair(&session);

    // session-stats messages every 300 ms from whipsink; none from the
    // server, whose stats-interval is 0.
    assert!(wait_until(Duration::from_secs(3), || client
        .messages
        .element("session-stats")
        .len()
        >= 4));
    let posted = client.messages.arrivals("session-stats");
    let gaps: Vec<_> = posted.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|g| *g > Duration::from_millis(150) && *g < Duration::from_millis(1000)),
        "{gaps:?}"
    );
    let last = client.messages.element("session-stats").pop().unwrap();
    assert!(video_stream(&last).is_some(), "{last}");
    assert!(server.messages.element("session-stats").is_empty());

    client.stop();
    // No session: no streams.
    assert!(streams(&whip.property::<gst::Structure>("stats")).is_empty());
    assert!(wait_until(Duration::from_secs(3), || sessions(
        &whipserversrc.property::<gst::Structure>("stats")
    )
    .is_empty()
        || server.deletes() == 1));
}

/// A whepsrc named `whep` playing `server`'s VP8, decoded.
fn play(server: &WhepServer) -> (Player, gst::Element) {
    let player = Player::launch(&format!(
        "whepsrc name=whep whep-endpoint={} ice-addresses=127.0.0.1 ! rtpvp8depay ! vp8dec ! fakesink",
        server.endpoint()
    ));
    let whep = player.pipeline.by_name("whep").unwrap();
    (player, whep)
}

#[test]
fn a_playing_session_reports_bitrate_and_frames_and_the_server_reports_rtt() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "stats-interval=500");
    let (player, whep) = play(&server);
    let whepserversink = server.pipeline.by_name("server").unwrap();
    assert!(player.wait_frames(Duration::from_secs(10), 30, 0));

    let mut received = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let stats = whep.property::<gst::Structure>("stats");
            received = video_stream(&stats).map(|s| (stats.clone(), s));
            received.is_some()
        }),
        "{}",
        whep.property::<gst::Structure>("stats")
    );
    let (session, stream) = received.unwrap();
    assert_common(&stream, "receive");
    assert!(session.get::<Option<String>>("location").unwrap().is_some());
    assert_pair(&session);

    // The sender measures the round trip from the viewer's reports.
    let mut sent = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            sent = sessions(&whepserversink.property::<gst::Structure>("stats"))
                .first()
                .and_then(|s| video_stream(s).map(|v| (s.clone(), v)))
                .filter(|(_, v)| v.get::<f64>("rtt-ms").is_ok_and(|r| r > 0.0));
            sent.is_some()
        }),
        "{}",
        whepserversink.property::<gst::Structure>("stats")
    );
    let (session, stream) = sent.unwrap();
    assert_common(&stream, "send");
    assert_pair(&session);

    // The server's messages: one per viewer, the same structure.
    assert!(wait_until(Duration::from_secs(3), || server
        .messages
        .element("session-stats")
        .iter()
        .any(|s| video_stream(s).is_some())));
    let msg = server.messages.element("session-stats").pop().unwrap();
    assert_eq!(
        msg.get::<Option<String>>("location").unwrap(),
        session.get::<Option<String>>("location").unwrap()
    );
    assert!(player.messages.element("session-stats").is_empty());
}

/// Unread, `stats` is sampled every 5 s; a read wakes the sampler, so that
/// the reads after it are fresh within about a second, not up to 5 s later.
#[test]
fn a_read_of_stats_after_a_quiet_spell_brings_a_fresh_sample_at_once() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let (player, whep) = play(&server);
    let playing = std::time::Instant::now();
    assert!(player.wait_frames(Duration::from_secs(10), 15, 0));
    // Playing, unread: the first sample is not due before 5 s after PLAYING
    // (unless this machine took that long to start).
    let first = whep.property::<gst::Structure>("stats");
    if playing.elapsed() < Duration::from_secs(4) {
        assert!(streams(&first).is_empty(), "{first}");
    }
    let woke = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || {
            streams(&whep.property::<gst::Structure>("stats"))
                .iter()
                .any(|s| s.get::<u64>("packets-received").unwrap_or(0) > 0)
        }),
        "no sample within 2 s of the first read: {}",
        whep.property::<gst::Structure>("stats")
    );
    // Then every second: a bitrate needs two samples.
    assert!(
        wait_until(Duration::from_secs(3), || video_stream(
            &whep.property::<gst::Structure>("stats")
        )
        .is_some()),
        "no bitrate {:?} after the first read",
        woke.elapsed()
    );
}
