//! whepserversink → whepsrc over real WebRTC on loopback (webrtcbin, ICE,
//! DTLS, SRTP), counting the frames the client DECODES, and checking that
//! every session is DELETEd. The refusal cases run against a canned HTTP
//! server, and the counter-offer case against a bare webrtcbin that the test
//! drives itself.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gst::prelude::*;

use common::e2e::{init, wait_until, Player, WhepServer, OPUS_SRC, RT, VP8_SRC};
use common::front::{Canned, Front};
use common::http_server::{Reply, TestServer};

const MEDIA_WAIT: Duration = Duration::from_secs(10);

/// H.264 as a constrained-baseline encoder sends it (x264 with sliced
/// threads makes openh264dec 2.3.1 drop every frame after a lost IDR).
const H264_CB_SRC: &str = "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency sliced-threads=false speed-preset=ultrafast key-int-max=30 ! video/x-h264,profile=constrained-baseline";

/// Decoded media of either kind, whichever the pad carries: whepsrc then
/// decodes itself (raw output).
const ANY_RAW: &str = "queue ! capsfilter caps=\"video/x-raw;audio/x-raw\"";

fn whepsrc(endpoint: &str, extra: &str) -> String {
    format!("whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 {extra}")
}

/// Waits for `video`/`audio` decoded frames, with a helpful failure.
fn assert_frames(player: &Player, video: u64, audio: u64) {
    let arrived = player.wait_frames(MEDIA_WAIT, video, audio);
    // Not held while the assert panics: the counting probes take it.
    let caps = player.counters.caps.lock().unwrap().clone();
    assert!(
        arrived,
        "decoded media did not arrive: video {} audio {}, errors {:?}, caps {caps:?}",
        player.counters.video(),
        player.counters.audio(),
        player.messages.errors(),
    );
    assert!(
        player.messages.errors().is_empty(),
        "{:?}",
        player.messages.errors()
    );
}

/// Stops `player` and checks the server saw its DELETE.
fn stop_and_expect_delete(server: &WhepServer, player: &Player) {
    assert!(
        server.messages.errors().is_empty(),
        "server errors: {:?}",
        server.messages.errors()
    );
    let deletes = server.deletes();
    let took = player.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
    assert!(
        wait_until(Duration::from_secs(2), || server.deletes() == deletes + 1),
        "the server saw no DELETE: {:?}",
        server.viewers_removed()
    );
}

fn has_caps(caps: &[String], prefix: &str) -> bool {
    caps.iter().any(|c| c.starts_with(prefix))
}

#[test]
fn vp8_is_played_and_decoded() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let player = Player::launch(&format!(
        "{} ! rtpvp8depay ! vp8dec ! fakesink sync=false",
        whepsrc(&server.endpoint(), "")
    ));
    assert_frames(&player, 30, 0);
    assert!(has_caps(
        &player.counters.caps.lock().unwrap(),
        "video/x-raw"
    ));
    assert_eq!(player.messages.element("session-started").len(), 1);
    assert_eq!(server.viewers_added().len(), 1);
    stop_and_expect_delete(&server, &player);
}

/// What became of `DROPS` video packets dropped at the viewer.
struct Losses {
    dropped: u64,
    /// Summed over the viewer's jitterbuffers.
    asked: u64,
    recovered: u64,
    frames: u64,
    /// Formats in each RTX sender's and receiver's payload-type map.
    rtx_senders: Vec<u32>,
    rtx_receivers: Vec<u32>,
}

const DROPS: u64 = 20;

/// A whepsrc with `props` on `server`, decoding into a fakesink, not
/// started; and its count of decoded frames.
fn decoding_viewer(
    server: &WhepServer,
    props: &str,
) -> (gst::Pipeline, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "{} ! videoconvert ! fakesink name=sink sync=false",
        whepsrc(&server.endpoint(), props)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = common::e2e::count_buffers(&pipeline.by_name("sink").unwrap());
    (pipeline, frames)
}

/// Plays with `props` on whepsrc while every 10th video packet reaching the
/// viewer is dropped as it arrives (before SRTP, whose RTP header is
/// clear), after a clean start; until `DROPS` were dropped and, if
/// `recover`, 3/4 of them came back, or 20 s.
fn play_with_losses(props: &str, recover: bool) -> Losses {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let (pipeline, frames) = decoding_viewer(&server, props);
    let dropped = Arc::new(AtomicU64::new(0));
    let d = dropped.clone();
    pipeline.connect_deep_element_added(move |_, _, el| {
        if el.factory().is_none_or(|f| f.name() != "nicesrc") {
            return;
        }
        // (the video payload type: the first one seen, as the server sends
        // only video and RTX comes only once asked for; video packets seen)
        let seen = Arc::new(Mutex::new((None::<u8>, 0u64)));
        let d = d.clone();
        el.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(buffer) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                let Ok(map) = buffer.map_readable() else {
                    return gst::PadProbeReturn::Ok;
                };
                // RTP: version 2 (RFC 7983), not RTCP (types 192-223, RFC 5761).
                if map.len() < 12 || map[0] >> 6 != 2 || (192..=223).contains(&map[1]) {
                    return gst::PadProbeReturn::Ok;
                }
                let pt = map[1] & 0x7f;
                let mut seen = seen.lock().unwrap();
                if *seen.0.get_or_insert(pt) != pt {
                    return gst::PadProbeReturn::Ok;
                }
                seen.1 += 1;
                if seen.1 > 60 && seen.1.is_multiple_of(10) && d.load(Ordering::SeqCst) < DROPS {
                    d.fetch_add(1, Ordering::SeqCst);
                    return gst::PadProbeReturn::Drop;
                }
                gst::PadProbeReturn::Ok
            });
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let stats = || {
        let mut sum = [0u64; 2];
        for jb in pipeline.iterate_recurse().into_iter().flatten() {
            if jb.factory().is_some_and(|f| f.name() == "rtpjitterbuffer") {
                let s = jb.property::<gst::Structure>("stats");
                for (i, f) in ["rtx-count", "rtx-success-count"].iter().enumerate() {
                    sum[i] += s.get::<u64>(*f).unwrap_or(0);
                }
            }
        }
        sum
    };
    wait_until(Duration::from_secs(20), || {
        dropped.load(Ordering::SeqCst) == DROPS && (!recover || stats()[1] >= DROPS * 3 / 4)
    });
    if !recover {
        // Time for the last drop to have been asked for, had it been.
        std::thread::sleep(Duration::from_millis(500));
    }
    let [asked, recovered] = stats();
    let rtx_formats = |factory: &str| -> Vec<u32> {
        pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == factory))
            .map(|e| {
                e.property::<Option<gst::Structure>>("payload-type-map")
                    .map_or(0, |m| m.n_fields() as u32)
            })
            .collect()
    };
    let losses = Losses {
        dropped: dropped.load(Ordering::SeqCst),
        asked,
        recovered,
        frames: frames.load(Ordering::SeqCst),
        rtx_senders: rtx_formats("rtprtxsend"),
        rtx_receivers: rtx_formats("rtprtxreceive"),
    };
    let _ = pipeline.set_state(gst::State::Null);
    losses
}

/// NACK and RTX, end to end (whepserversink resends, whepsrc asks).
#[test]
fn lost_video_packets_are_asked_for_again_and_come_back() {
    let l = play_with_losses("", true);
    assert!(
        l.dropped == DROPS && l.recovered >= DROPS * 3 / 4,
        "dropped {} packets: {} asked again, {} came back",
        l.dropped,
        l.asked,
        l.recovered
    );
    assert!(l.frames > 100);
    // The viewer sends nothing: its RTX sender resends no format (and so
    // runs no thread of its own).
    assert!(l.rtx_senders.iter().all(|n| *n == 0), "{:?}", l.rtx_senders);
    assert!(
        l.rtx_receivers.iter().any(|n| *n > 0),
        "{:?}",
        l.rtx_receivers
    );
}

/// `do-retransmission=false`: the offer has neither NACK nor RTX, as the
/// anchor's; nothing is asked for, and play goes on.
#[test]
fn without_retransmission_lost_packets_are_not_asked_for() {
    let l = play_with_losses("do-retransmission=false", false);
    assert_eq!(l.dropped, DROPS);
    assert_eq!((l.asked, l.recovered), (0, 0));
    // (fewer than with RTX: a frame with a hole waits for the next key frame)
    assert!(l.frames > 50, "{} frames", l.frames);
    assert!(
        l.rtx_receivers.iter().all(|n| *n == 0),
        "{:?}",
        l.rtx_receivers
    );
}

/// `rtcp-interval`: how often a viewer reports (RTCP is all it sends), at
/// the default and at RTP's own pace, two viewers side by side. Counted as
/// the packets leave (SRTCP keeps the header clear), after the start's key
/// frame requests.
#[test]
fn rtcp_interval_sets_how_often_a_viewer_reports() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let counting = Arc::new(AtomicBool::new(false));
    let viewer = |props: &str| {
        let (pipeline, frames) = decoding_viewer(&server, props);
        let reports = Arc::new(AtomicU64::new(0));
        let (r, on) = (reports.clone(), counting.clone());
        pipeline.connect_deep_element_added(move |_, _, el| {
            if el.factory().is_none_or(|f| f.name() != "nicesink") {
                return;
            }
            let (r, on) = (r.clone(), on.clone());
            el.static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    let rtcp = info
                        .buffer()
                        .and_then(|b| b.map_readable().ok())
                        .is_some_and(
                            // RTCP: version 2, packet types 192-223 (RFC 5761).
                            |m| m.len() >= 8 && m[0] >> 6 == 2 && (192..=223).contains(&m[1]),
                        );
                    if rtcp && on.load(Ordering::SeqCst) {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                    gst::PadProbeReturn::Ok
                });
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        (pipeline, frames, reports)
    };
    let default = viewer("");
    let rtp_pace = viewer("rtcp-interval=0");
    wait_until(MEDIA_WAIT, || {
        [&default, &rtp_pace]
            .iter()
            .all(|v| v.1.load(Ordering::SeqCst) > 30)
    });
    std::thread::sleep(Duration::from_secs(2));
    counting.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(6));
    counting.store(false, Ordering::SeqCst);
    let counts = [&default, &rtp_pace].map(|v| v.2.load(Ordering::SeqCst));
    for v in [&default, &rtp_pace] {
        v.0.set_state(gst::State::Null).unwrap();
    }
    eprintln!("RTCP reports in 6 s (default, rtcp-interval=0): {counts:?}");
    // 1 s, randomised (0.5-1.5 times, RFC 3550 6.3.1): about 7 in 6 s; RTP's
    // pace: 5 s, so one or two.
    assert!(counts[0] >= 4, "default: {} reports in 6 s", counts[0]);
    assert!(
        counts[1] <= 3,
        "rtcp-interval=0: {} reports in 6 s",
        counts[1]
    );
    assert!(counts[0] > counts[1] * 2, "{counts:?}");
}

#[test]
fn h264_constrained_baseline_is_played_and_decoded() {
    let server = WhepServer::start(&format!("{H264_CB_SRC} ! server."), "");
    let player = Player::launch(&format!(
        "{} ! h264parse ! avdec_h264 ! fakesink sync=false",
        whepsrc(&server.endpoint(), "")
    ));
    assert_frames(&player, 30, 0);
    let out = player.output_caps();
    assert!(has_caps(&out, "video/x-h264"), "{out:?}");
    stop_and_expect_delete(&server, &player);
}

#[test]
fn opus_and_vp8_come_out_of_two_pads_and_both_decode() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server. {OPUS_SRC} ! server."), "");
    let player = Player::dynamic(&whepsrc(&server.endpoint(), ""), ANY_RAW);
    assert_frames(&player, 30, 20);
    let out = player.output_caps();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(has_caps(&out, "video/x-raw"), "{out:?}");
    assert!(has_caps(&out, "audio/x-raw"), "{out:?}");
    stop_and_expect_delete(&server, &player);
}

#[test]
fn a_viewer_that_comes_before_an_inputs_first_caps_still_gets_that_input() {
    // The audio input's caps come 1.5 s after the viewer starts, its offer
    // long at the server by then: answered with what flows at that moment,
    // the viewer would get video only, for its whole session (a relay's
    // second stream starts a frame after the first).
    let gate_after = Duration::from_millis(1500);
    let server = WhepServer::start(
        &format!(
            "{VP8_SRC} ! server. audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 \
             ! valve name=gate drop=true ! opusenc ! server."
        ),
        "",
    );
    let gate = server.pipeline.by_name("gate").unwrap();
    let player = Player::dynamic(&whepsrc(&server.endpoint(), ""), ANY_RAW);
    std::thread::sleep(gate_after);
    gate.set_property("drop", false);
    assert_frames(&player, 30, 20);
    assert_eq!(player.output_caps().len(), 2, "{:?}", player.output_caps());
    // The premise: the offer went out before the audio's caps existed.
    let timeline = &player.messages.element("session-timeline")[0];
    let post_sent = timeline.get::<f64>("post-sent-ms").unwrap();
    assert!(post_sent < gate_after.as_millis() as f64, "{timeline}");
    stop_and_expect_delete(&server, &player);
}

#[test]
fn media_video_gets_only_video_from_an_audio_video_server() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server. {OPUS_SRC} ! server."), "");
    let player = Player::dynamic(&whepsrc(&server.endpoint(), "media=video"), ANY_RAW);
    assert_frames(&player, 30, 0);
    // Audio would have had a second and a half to show up by now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(player.counters.audio(), 0);
    let out = player.output_caps();
    assert_eq!(player.whepsrc().src_pads().len(), 1, "{out:?}");
    assert!(has_caps(&out, "video/x-raw"), "{out:?}");
    stop_and_expect_delete(&server, &player);
}

#[test]
fn output_kind_follows_what_downstream_accepts_rtp_encoded_raw() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let src = whepsrc(&server.endpoint(), "");
    let cases = [
        ("application/x-rtp", "rtpvp8depay ! vp8dec"),
        ("video/x-vp8", "queue ! video/x-vp8 ! vp8dec"),
        ("video/x-raw", "videoconvert"),
    ];
    let players: Vec<(&str, Player)> = cases
        .iter()
        .map(|(kind, chain)| {
            (
                *kind,
                Player::launch(&format!("{src} ! {chain} ! fakesink sync=false")),
            )
        })
        .collect();
    for (kind, player) in &players {
        assert_frames(player, 30, 0);
        let out = player.output_caps();
        assert_eq!(out.len(), 1, "{kind}: {out:?}");
        assert!(out[0].starts_with(kind), "expected {kind}, got {out:?}");
        // What reached the fakesink was decoded in every case.
        assert!(
            has_caps(&player.counters.caps.lock().unwrap(), "video/x-raw"),
            "{kind}"
        );
    }
    for (_, player) in &players {
        stop_and_expect_delete(&server, player);
    }
}

#[test]
fn five_viewers_play_at_once_and_one_leaving_does_not_disturb_the_others() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let players = playing_viewers(&server, 5, "", 20);
    assert_eq!(server.viewers_added().len(), 5);

    let leaving = &players[2];
    let location = leaving.location().expect("session-started has a Location");
    leaving.stop();
    assert!(
        wait_until(Duration::from_secs(2), || server.deletes() == 1),
        "no DELETE seen: {:?}",
        server.viewers_removed()
    );
    let (removed, reason) = server.viewers_removed().remove(0);
    assert_eq!(reason, "DELETE");
    assert!(
        location.ends_with(&removed),
        "{location} is not the removed {removed}"
    );

    let before: Vec<u64> = players.iter().map(|p| p.counters.video()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    for (i, p) in players.iter().enumerate() {
        if i == 2 {
            continue;
        }
        let gained = p.counters.video() - before[i];
        assert!(
            gained >= 15,
            "viewer {i} got only {gained} frames after the leave: {:?}",
            p.messages.errors()
        );
        assert!(p.messages.errors().is_empty(), "{:?}", p.messages.errors());
    }
    assert_eq!(server.viewers_removed().len(), 1);
}

/// `n` players of `server`, decoding to raw video, each once it has
/// decoded `frames` frames.
fn playing_viewers(server: &WhepServer, n: usize, extra: &str, frames: u64) -> Vec<Player> {
    let players: Vec<Player> = (0..n)
        .map(|_| {
            Player::launch(&format!(
                "{} ! videoconvert ! fakesink sync=false",
                whepsrc(&server.endpoint(), extra)
            ))
        })
        .collect();
    for p in &players {
        assert_frames(p, frames, 0);
    }
    players
}

/// Posts what a DTLS alert looks like, an ERROR from the dtlsdec inside the
/// first webrtcbin under `bin`; returns that webrtcbin's name.
fn fail_a_peer_inside(bin: &gst::Bin) -> String {
    let webrtcbin = bin
        .children()
        .into_iter()
        .find(|c| c.factory().is_some_and(|f| f.name() == "webrtcbin"))
        .expect("a webrtcbin")
        .downcast::<gst::Bin>()
        .unwrap();
    let dtlsdec = webrtcbin
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "dtlsdec"))
        .expect("a dtlsdec in the webrtcbin");
    gst::element_error!(dtlsdec, gst::ResourceError::Read, ["Fatal SSL error"]);
    webrtcbin.name().to_string()
}

#[test]
fn a_failed_session_mid_stream_reconnects_instead_of_stopping_the_pipeline() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let player = playing_viewers(&server, 1, "", 10).remove(0);

    let bin = player.whepsrc().downcast::<gst::Bin>().unwrap();
    fail_a_peer_inside(&bin);
    assert!(
        wait_until(Duration::from_secs(3), || !player
            .messages
            .element("session-ended")
            .is_empty()),
        "the failed session did not end"
    );
    let ended = player.messages.element("session-ended");
    let reason = ended[0].get::<String>("reason").unwrap();
    assert!(reason.contains("Fatal SSL error"), "{reason}");
    let before = player.counters.video();
    assert!(
        wait_until(Duration::from_secs(5), || player.counters.video()
            >= before + 30),
        "no frames after the reconnection: {:?}",
        player.messages.errors()
    );
    assert!(
        player.messages.errors().is_empty(),
        "{:?}",
        player.messages.errors()
    );
    assert!(
        wait_until(Duration::from_secs(2), || server.deletes() == 1),
        "the failed session was not DELETEd"
    );
    player.stop();
}

#[test]
fn a_failed_session_without_reconnect_is_an_error_that_says_why() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let player = playing_viewers(&server, 1, "reconnect=false", 10).remove(0);
    let bin = player.whepsrc().downcast::<gst::Bin>().unwrap();
    fail_a_peer_inside(&bin);
    let error = player
        .wait_error(Duration::from_secs(3))
        .expect("an ERROR once the session failed");
    assert!(error.contains("Fatal SSL error"), "{error}");
    assert_eq!(
        player.messages.errors().len(),
        1,
        "{:?}",
        player.messages.errors()
    );
    assert!(
        wait_until(Duration::from_secs(2), || server.deletes() == 1),
        "the failed session was not DELETEd"
    );
}

#[test]
fn one_viewers_failure_ends_only_that_viewer_with_a_warning() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let players = playing_viewers(&server, 2, "", 10);

    let bin = server
        .pipeline
        .by_name("server")
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    let viewer = fail_a_peer_inside(&bin);

    assert!(
        wait_until(Duration::from_secs(2), || server.viewers_removed().len()
            == 1),
        "the failed viewer was not removed"
    );
    let (_, reason) = server.viewers_removed().remove(0);
    assert!(reason.contains(&viewer), "{reason}");
    assert!(
        server.messages.errors().is_empty(),
        "{:?}",
        server.messages.errors()
    );
    let warnings = server
        .messages
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|m| matches!(m.view(), gst::MessageView::Warning(_)))
        .count();
    assert_eq!(warnings, 1);

    // The server goes on serving the other viewer.
    let before: Vec<u64> = players.iter().map(|p| p.counters.video()).collect();
    assert!(
        wait_until(Duration::from_secs(3), || players
            .iter()
            .zip(&before)
            .any(|(p, b)| p.counters.video() >= b + 30)),
        "no viewer kept playing"
    );
    assert_eq!(
        server.pipeline.current_state(),
        gst::State::Playing,
        "the server stopped"
    );
}

#[test]
fn wrong_token_gives_an_error_with_401_and_the_servers_detail() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "auth-token=s3cret");
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink",
        whepsrc(&server.endpoint(), "auth-token=wrong-token")
    ));
    let err = player.wait_error(Duration::from_secs(5)).expect("an ERROR");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("missing or wrong Bearer token"), "{err}");
    assert!(!err.contains("wrong-token"), "{err}");
    assert!(server.viewers_added().is_empty());
}

#[test]
fn correct_token_plays() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "auth-token=s3cret");
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink sync=false",
        whepsrc(&server.endpoint(), "auth-token=s3cret")
    ));
    assert_frames(&player, 10, 0);
    stop_and_expect_delete(&server, &player);
}

/// A canned refusal from a TestServer, and the bus ERROR it gives.
fn refused_with(reply: Reply) -> String {
    let front = RT.block_on(TestServer::start());
    front.on("POST", "/whep", reply);
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink",
        whepsrc(&format!("{}/whep", front.base()), "max-retries=0")
    ));
    let err = player.wait_error(Duration::from_secs(5)).expect("an ERROR");
    assert_eq!(player.counters.video(), 0);
    let took = player.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
    err
}

#[test]
fn json_api_404_shows_title_and_detail() {
    let err = refused_with(Reply::new(404).json(
        r#"{"errors":[{"status":"404","title":"Not Found","detail":"No device with id 1234"}]}"#,
    ));
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("Not Found"), "{err}");
    assert!(err.contains("No device with id 1234"), "{err}");
}

#[test]
fn json_api_503_shows_title_and_detail() {
    let err = refused_with(Reply::new(503).header("retry-after", "3").json(
        r#"{"errors":[{"status":"503","title":"Device Unavailable","detail":"Device is currently offline"}]}"#,
    ));
    assert!(err.contains("503"), "{err}");
    assert!(err.contains("Device Unavailable"), "{err}");
    assert!(err.contains("Device is currently offline"), "{err}");
}

#[test]
fn a_503_then_success_is_retried_and_plays() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let front = RT.block_on(Front::start_with_first_posts(
        server.base.clone(),
        |loc| loc.to_string(),
        vec![Canned {
            status: 503,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("retry-after".into(), "1".into()),
            ],
            body: r#"{"errors":[{"status":"503","title":"Device Unavailable","detail":"Device is currently offline"}]}"#.into(),
        }],
    ));
    let start = Instant::now();
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink sync=false",
        whepsrc(&format!("{}/whep", front.base()), "retry-initial-delay=100")
    ));
    assert_frames(&player, 10, 0);
    // Retry-After: 1 wins over the 100 ms initial delay.
    assert!(start.elapsed() >= Duration::from_secs(1));
    let retries = player.messages.element("session-reconnecting");
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].get::<u32>("attempt").unwrap(), 1);
    assert_eq!(retries[0].get::<u64>("delay-ms").unwrap(), 1000);
    // The user is told too: status, title, detail, delay and count.
    let warnings = player.messages.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for part in [
        "503",
        "Device Unavailable",
        "Device is currently offline",
        "retrying in 1 s (1 of 5)",
    ] {
        assert!(warnings[0].contains(part), "{part}: {}", warnings[0]);
    }
    let posts: Vec<u16> = front
        .passed()
        .iter()
        .filter(|p| p.method == "POST")
        .map(|p| p.status)
        .collect();
    assert_eq!(posts, vec![503, 201]);
    stop_and_expect_delete(&server, &player);
}

#[test]
fn a_player_started_20_s_before_the_publisher_plays_once_it_starts() {
    // The valve holds back the caps too, so the server has nothing to serve
    // and answers 409 + Retry-After until it opens. A player keeps waiting
    // (publisher-wait is unbounded by default), past max-retries.
    let server = WhepServer::start(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! valve name=gate drop=true ! vp8enc deadline=1 cpu-used=8 ! server.",
        "",
    );
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink sync=false",
        whepsrc(&server.endpoint(), "max-retries=2")
    ));
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        player.messages.errors().is_empty(),
        "{:?}",
        player.messages.errors()
    );
    server
        .pipeline
        .by_name("gate")
        .unwrap()
        .set_property("drop", false);
    assert_frames(&player, 10, 0);
    let attempts: Vec<u32> = player
        .messages
        .element("session-reconnecting")
        .iter()
        .map(|s| s.get::<u32>("attempt").unwrap())
        .collect();
    assert!(attempts.len() > 5, "{attempts:?}");
    let expected: Vec<u32> = (1..=attempts.len() as u32).collect();
    assert_eq!(attempts, expected, "one counter, no interleaving");
    let warnings = player.messages.warnings();
    assert_eq!(warnings.len(), attempts.len(), "a WARNING per retry");
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("409") && w.contains("waiting for a publisher")),
        "{warnings:?}"
    );
    stop_and_expect_delete(&server, &player);
}

#[test]
fn no_publisher_yet_409_is_retried_until_the_input_starts() {
    // The valve holds back the caps too, so the server has nothing to serve
    // and answers 409 + Retry-After until it opens.
    let server = WhepServer::start(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! valve name=gate drop=true ! vp8enc deadline=1 cpu-used=8 ! server.",
        "",
    );
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink sync=false",
        whepsrc(&server.endpoint(), "retry-initial-delay=200")
    ));
    assert!(
        wait_until(Duration::from_secs(5), || !player
            .messages
            .element("session-reconnecting")
            .is_empty()),
        "no retry: {:?}",
        player.messages.errors()
    );
    let reason = player.messages.element("session-reconnecting")[0]
        .get::<String>("reason")
        .unwrap();
    assert!(reason.contains("409"), "{reason}");
    assert_eq!(player.counters.video(), 0);
    server
        .pipeline
        .by_name("gate")
        .unwrap()
        .set_property("drop", false);
    assert_frames(&player, 10, 0);
    stop_and_expect_delete(&server, &player);
}

#[test]
fn garbage_answer_gives_a_clean_error_and_the_session_is_deleted() {
    let front = RT.block_on(TestServer::start());
    front.on(
        "POST",
        "/whep",
        Reply::new(201)
            .header("location", "/whep/s/1")
            .sdp("this is not an SDP answer\r\n\u{1}\u{2}garbage"),
    );
    front.on("DELETE", "/whep/s/1", Reply::new(200));
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink",
        whepsrc(&format!("{}/whep", front.base()), "max-retries=0")
    ));
    let err = player.wait_error(Duration::from_secs(5)).expect("an ERROR");
    assert!(err.contains("answer"), "{err}");
    let took = player.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
    assert_eq!(player.pipeline.current_state(), gst::State::Null);
    assert!(
        wait_until(Duration::from_secs(2), || front
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path() == "/whep/s/1")),
        "the session the server created was not DELETEd"
    );
}

#[test]
fn stop_during_the_post_reaches_null_within_a_second() {
    let mute = RT.block_on(TestServer::mute());
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink",
        whepsrc(&format!("{}/whep", mute.base()), "timeout=30")
    ));
    assert!(
        wait_until(Duration::from_secs(5), || mute.connections() > 0),
        "no POST was sent"
    );
    std::thread::sleep(Duration::from_millis(200));
    let took = player.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
}

#[test]
fn delete_is_seen_by_the_server_on_stop_and_null_is_prompt() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let player = playing_viewers(&server, 1, "", 10).remove(0);
    let location = player.location().expect("a Location");
    let start = Instant::now();
    let took = player.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
    assert!(
        wait_until(Duration::from_secs(2), || server.deletes() == 1),
        "no DELETE within 2 s of NULL: {:?}",
        server.viewers_removed()
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    let (removed, reason) = server.viewers_removed().remove(0);
    assert_eq!(reason, "DELETE");
    assert!(location.ends_with(&removed), "{location} vs {removed}");
    let ended = player.messages.element("session-ended");
    assert_eq!(ended.len(), 1, "{ended:?}");
    // Stopped for good: no second DELETE, no other removal.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.viewers_removed().len(), 1);
}

/// A sending webrtcbin the test drives by hand, as a server that answers
/// POST with a counter-offer would.
struct OfferingPeer {
    pipeline: gst::Pipeline,
    webrtcbin: gst::Element,
}

impl OfferingPeer {
    /// VP8 sendonly, ICE pinned to loopback. Returns once its offer is set
    /// and gathering is complete.
    fn start() -> (OfferingPeer, String) {
        init();
        let pipeline = gst::parse::launch(&format!(
            "{VP8_SRC} ! rtpvp8pay pt=96 picture-id-mode=15-bit ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! webrtcbin name=send bundle-policy=max-bundle"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let webrtcbin = pipeline.by_name("send").unwrap();
        let ice = webrtcbin.property::<gst_webrtc::WebRTCICE>("ice-agent");
        ice.property::<glib::Object>("agent")
            .set_property("upnp", false);
        ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        let transceiver =
            webrtcbin.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>("get-transceiver", &[&0i32]);
        transceiver.set_property(
            "direction",
            gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
        );
        pipeline.set_state(gst::State::Playing).unwrap();

        let (tx, rx) = mpsc::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let offer = reply
                .unwrap()
                .unwrap()
                .get::<gst_webrtc::WebRTCSessionDescription>("offer")
                .unwrap();
            tx.send(offer).unwrap();
        });
        webrtcbin.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        let offer = rx.recv_timeout(Duration::from_secs(5)).expect("an offer");
        webrtcbin.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        assert!(
            wait_until(Duration::from_secs(5), || {
                webrtcbin.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                    == gst_webrtc::WebRTCICEGatheringState::Complete
            }),
            "the test peer's gathering did not complete"
        );
        let text = webrtcbin
            .property::<gst_webrtc::WebRTCSessionDescription>("local-description")
            .sdp()
            .as_text()
            .unwrap();
        assert!(text.contains("a=candidate"), "no candidates in\n{text}");
        assert!(text.contains("a=sendonly"), "{text}");
        (
            OfferingPeer {
                pipeline,
                webrtcbin,
            },
            text,
        )
    }

    fn set_answer(&self, sdp: &str) {
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()).unwrap();
        let answer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
        let (tx, rx) = mpsc::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let error = reply
                .ok()
                .flatten()
                .and_then(|s| s.get::<glib::Error>("error").ok())
                .map(|e| e.to_string());
            tx.send(error).unwrap();
        });
        self.webrtcbin
            .emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        let error = rx.recv_timeout(Duration::from_secs(5)).expect("a reply");
        assert!(error.is_none(), "the answer was refused: {error:?}\n{sdp}");
    }
}

impl Drop for OfferingPeer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[test]
fn counter_offer_406_is_answered_by_patch_and_plays() {
    let (peer, offer) = OfferingPeer::start();
    let front = RT.block_on(TestServer::start());
    front.on(
        "POST",
        "/whep",
        Reply::new(406)
            .header("location", "/whep/session/7")
            .sdp(&offer),
    );
    front.on("PATCH", "/whep/session/7", Reply::new(204));
    front.on("DELETE", "/whep/session/7", Reply::new(200));
    let player = Player::launch(&format!(
        "{} ! videoconvert ! fakesink sync=false",
        whepsrc(&format!("{}/whep", front.base()), "")
    ));

    let patch = || {
        front
            .requests()
            .into_iter()
            .find(|r| r.method == "PATCH" && r.path() == "/whep/session/7")
    };
    assert!(
        wait_until(Duration::from_secs(5), || patch().is_some()),
        "no PATCH with the answer: {:?} {:?}",
        front
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect::<Vec<_>>(),
        player.messages.errors()
    );
    let patch = patch().unwrap();
    assert_eq!(patch.header("content-type"), Some("application/sdp"));
    let answer = patch.body_text();
    assert!(answer.contains("a=recvonly"), "{answer}");
    peer.set_answer(&answer);

    assert_frames(&player, 30, 0);
    let took = player.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
    assert!(
        wait_until(Duration::from_secs(2), || front
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path() == "/whep/session/7")),
        "no DELETE to the Location"
    );
}

use gst::glib;
