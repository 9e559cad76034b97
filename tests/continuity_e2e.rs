//! One continuous stream across capped WebRTC sessions: whepserversink with
//! `max-session-duration`, whepsrc renewing ahead of it or reconnecting
//! after each cut; whipsink republishing after whipserversrc drops it.
//! Frames carry a counter drawn into the picture, read back after decoding.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::e2e::{init, wait_until, Client, Messages, WhipServer, RT};
use common::front::Front;
use gst::prelude::*;

const W: usize = 320;
const H: usize = 240;
const BITS: usize = 16;
const BLOCK: usize = 20;

/// Draws `n` as 16 black/white 20×20 blocks along the top of the Y plane.
fn stamp(frame: &mut [u8], n: u16) {
    for bit in 0..BITS {
        let v = if n >> bit & 1 == 1 { 235 } else { 16 };
        for y in 0..BLOCK {
            let row = y * W + bit * BLOCK;
            frame[row..row + BLOCK].fill(v);
        }
    }
}

/// Reads the counter back from the centre of each block.
fn read_stamp(frame: &[u8]) -> u16 {
    let mut n = 0u16;
    for bit in 0..BITS {
        let mut sum = 0u32;
        for y in 5..15 {
            for x in 5..15 {
                sum += frame[y * W + bit * BLOCK + x] as u32;
            }
        }
        if sum / 100 > 128 {
            n |= 1 << bit;
        }
    }
    n
}

/// whepserversink serving a stamped test pattern.
struct StampedServer {
    pipeline: gst::Pipeline,
    messages: Messages,
    base: String,
}

impl StampedServer {
    fn start(extra: &str) -> StampedServer {
        init();
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc is-live=true pattern=black ! video/x-raw,format=I420,width={W},height={H},framerate=30/1 \
             ! identity name=stamp ! vp8enc deadline=1 cpu-used=8 target-bitrate=1000000 keyframe-max-dist=300 \
             ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1 {extra}"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let n = std::sync::atomic::AtomicU16::new(0);
        pipeline
            .by_name("stamp")
            .unwrap()
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer_mut() {
                    let mut map = buffer.make_mut().map_writable().unwrap();
                    stamp(
                        &mut map,
                        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    );
                }
                gst::PadProbeReturn::Ok
            });
        let messages = Messages::attach(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        let addr = pipeline
            .by_name("server")
            .unwrap()
            .property::<Option<String>>("bound-address")
            .unwrap();
        StampedServer {
            pipeline,
            messages,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for StampedServer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// (counter, pts, discont) of every decoded frame a whepsrc pipeline outputs.
type Frames = Arc<Mutex<Vec<(u16, gst::ClockTime, bool)>>>;

fn play(endpoint: &str, extra: &str) -> (Client, Frames) {
    let client = Client::start(&format!(
        "whepsrc name=src whep-endpoint={endpoint} ice-addresses=127.0.0.1 media=video {extra} \
         ! videoconvert ! video/x-raw,format=I420,width={W},height={H} ! fakesink name=out sync=false"
    ));
    let frames: Frames = Arc::default();
    let f = frames.clone();
    client
        .pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let map = buffer.map_readable().unwrap();
                f.lock().unwrap().push((
                    read_stamp(&map),
                    buffer.pts().unwrap_or_default(),
                    buffer.flags().contains(gst::BufferFlags::DISCONT),
                ));
            }
            gst::PadProbeReturn::Ok
        });
    (client, frames)
}

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
        "max-session-duration=3 renew-lead=1200",
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
