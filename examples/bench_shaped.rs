//! Benchmark: 720p video published by whipsink to whipserversrc over a
//! shaped link, with congestion control on and off. The link is loopback
//! in a private network namespace (`unshare -rn`, this binary re-executed),
//! rate-limited by a token bucket (`tc qdisc ... tbf`): 1 Mbit/s, then
//! 300 kbit/s from `--drop-at` seconds on. Per second: frames sent (out of
//! the encoder), frames decoded at the server, RTP bitrate received, and
//! whipsink's target bitrate; per run: decoded/sent after the drop has
//! settled (5 s), and the longest freeze (gap between decoded frames).
//! Prints one JSON object. Raw input by default (whipsink encodes with its
//! own vp8enc); `--encoded` puts vp8enc in the user's pipeline instead.
//!
//!     cargo run --release --example bench_shaped -- [--runs 3] [--seconds 25] [--drop-at 10] [--encoded] [--source "pattern=pinwheel horizontal-speed=4"] [--whipsink-defaults] [--cc-only] [--trace]
//!
//! `--whipsink-defaults`: raw input keeps whipsink's own key frame settings
//! (by default the bench sets keyframe-max-dist=3000 as in `--encoded`);
//! `--cc-only` skips the runs without congestion control; `--trace` prints
//! each run's key frames and freezes around the drop on stderr.
//!
//! Delay and loss are not added: netem is not available in the sandbox
//! (`Specified qdisc kind is unknown`); the token bucket's queue
//! (`QUEUE_MS`) adds the queueing delay and the drops of a real bottleneck.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, init, pipeline_of, record_arrivals, Stats, WHIP_SERVER};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u32 = 30;
/// What the encoder is set to without congestion control: fits 1 Mbit/s
/// with its RTP/UDP/SRTP overhead, not 300 kbit/s.
const FIXED_BITRATE: u32 = 700_000;
/// vp8enc's cap on a key frame, in % of an average frame's budget, as
/// real-time WebRTC encoders set it: an uncapped 720p key frame is larger
/// than the bottleneck's queue at 300 kbit/s, and is lost whole.
const MAX_INTRA: u32 = 300;
/// The bottleneck's queue, as time at its rate: a router's buffer.
const QUEUE_MS: u32 = 200;
/// How long after the drop the figures are judged.
const SETTLE: Duration = Duration::from_secs(5);

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "failed: {cmd}");
}

fn shape(rate: &str) {
    sh(&format!(
        "tc qdisc replace dev lo root tbf rate {rate} burst 10k latency {QUEUE_MS}ms"
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--inside") {
        // A private namespace with only loopback, where `tc` may shape it.
        let status = Command::new("unshare")
            .arg("-rn")
            .arg(std::env::current_exe().unwrap())
            .arg("--inside")
            .args(&args[1..])
            .status()
            .expect("unshare");
        std::process::exit(status.code().unwrap_or(1));
    }
    let runs = arg("--runs", 3usize);
    let seconds = arg("--seconds", 25u64);
    let drop_at = arg("--drop-at", 10u64);
    // --encoded: the previous mode, vp8enc in the user's pipeline
    // (congestion-control-upstream); by default raw input, whipsink's own.
    let encoded = args.iter().any(|a| a == "--encoded");
    // videotestsrc's properties. A moving pinwheel follows the encoder's
    // target (vp8enc cpu-used=8 at 720p: 324 kbit/s at 300, 940 at 2000);
    // `pattern=spokes` stays far below it, and moving SMPTE bars far above
    // (1.9 Mbit/s whatever the target): neither shows what the link does.
    let source = arg(
        "--source",
        String::from("pattern=pinwheel horizontal-speed=4"),
    );
    sh("ip link set lo up");
    init();

    // Interleaved, so that other load on the machine falls on both alike.
    // --cc-only: skip the runs without congestion control (quick trials).
    let mut modes: Vec<(bool, Vec<Run>)> = vec![(true, Vec::new()), (false, Vec::new())];
    if args.iter().any(|a| a == "--cc-only") {
        modes.truncate(1);
    }
    // --trace: per run, key frames sent and freezes after the drop, on stderr.
    let trace = args.iter().any(|a| a == "--trace");
    // --whipsink-defaults: raw input keeps whipsink's key frame settings
    // (a key frame at least every 2 s, no cap on its size).
    let whipsink_defaults = args.iter().any(|a| a == "--whipsink-defaults");
    for _ in 0..runs {
        for (cc, results) in modes.iter_mut() {
            results.push(run(
                *cc,
                encoded,
                trace,
                whipsink_defaults,
                &source,
                Duration::from_secs(seconds),
                Duration::from_secs(drop_at),
            ));
        }
    }
    let _ = Command::new("sh")
        .args(["-c", "tc qdisc del dev lo root"])
        .status();

    let mode_json = |cc: bool, results: &[Run]| {
        let ratio = Stats(results.iter().map(|r| r.settled_ratio * 100.0).collect());
        let freeze = Stats(
            results
                .iter()
                .map(|r| r.longest_freeze_after_drop_ms)
                .collect(),
        );
        let freeze_before = Stats(
            results
                .iter()
                .map(|r| r.longest_freeze_before_drop_ms)
                .collect(),
        );
        let decoded = Stats(results.iter().map(|r| r.settled_decoded_fps).collect());
        let sent = Stats(results.iter().map(|r| r.settled_sent_fps).collect());
        let frozen = Stats(results.iter().map(|r| r.frozen_ms_after_drop).collect());
        // The per-second series of the median run (by settled ratio).
        let mut order: Vec<usize> = (0..results.len()).collect();
        order.sort_by(|a, b| {
            results[*a]
                .settled_ratio
                .partial_cmp(&results[*b].settled_ratio)
                .unwrap()
        });
        format!(
            "{{\"congestion_control\": {cc}, \
             \"decoded_over_sent_pct_after_settling\": {}, \
             \"decoded_fps_after_settling\": {}, \"sent_fps_after_settling\": {}, \
             \"longest_freeze_ms_after_drop\": {}, \"longest_freeze_ms_before_drop\": {}, \
             \"frozen_ms_after_drop\": {}, \
             \"median_run\": {}, \"runs\": [{}]}}",
            ratio.json(),
            decoded.json(),
            sent.json(),
            freeze.json(),
            freeze_before.json(),
            frozen.json(),
            order[order.len() / 2],
            results.iter().map(Run::json).collect::<Vec<_>>().join(", ")
        )
    };
    let video = if encoded {
        format!(
            "encoded input: videotestsrc {source} {WIDTH}x{HEIGHT} {FPS} fps, a leaky queue of 2 frames, vp8enc deadline=1 cpu-used=16 end-usage=cbr max-intra-bitrate={MAX_INTRA} keyframe-max-dist=3000 (key frames on PLI) ! whipsink"
        )
    } else {
        let settings = if whipsink_defaults {
            "encoder-setup sets only target-bitrate: a key frame at least every 2 s, uncapped"
                .to_string()
        } else {
            format!("encoder-setup sets max-intra-bitrate={MAX_INTRA} keyframe-max-dist=3000")
        };
        format!(
            "raw input: videotestsrc {source} ! video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1 ! whipsink video-caps=video/x-vp8 (whipsink's own leaky queue of 4 frames and vp8enc; {settings})"
        )
    };
    let upstream = if encoded {
        " congestion-control-upstream=true"
    } else {
        ""
    };
    println!(
        "{{\"benchmark\": \"bench_shaped\", \
         \"video\": \"{video}\", \
         \"path\": \"whipsink -> whipserversrc -> vp8dec, one process, loopback in a private network namespace\", \
         \"shaping\": \"tc tbf on lo (both directions): rate 1mbit burst 10k latency {QUEUE_MS}ms (the queue), then rate 300kbit from {drop_at} s; no added delay or random loss (netem unavailable in the sandbox, no relay)\", \
         \"congestion_control_on\": \"whipsink congestion-control=true{upstream} min-bitrate=100000 start-bitrate={FIXED_BITRATE} max-bitrate=2000000\", \
         \"congestion_control_off\": \"whipsink congestion-control=false, the vp8enc at target-bitrate={FIXED_BITRATE}\", \
         \"seconds\": {seconds}, \"drop_at_s\": {drop_at}, \"settle_s\": {}, \"runs\": {runs}, \
         \"target\": \"with congestion control: decoded >= 90 % of sent from drop+5 s, no freeze > 1 s\", \
         \"results\": [{}]}}",
        SETTLE.as_secs(),
        modes
            .iter()
            .map(|(cc, r)| mode_json(*cc, r))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// One second of a run.
#[derive(Default, Clone)]
struct Second {
    t: u64,
    sent: u64,
    key_frames_sent: u64,
    decoded: u64,
    received_kbps: u64,
    target_kbps: u64,
}

impl Second {
    fn json(&self) -> String {
        format!(
            "{{\"t\": {}, \"sent_fps\": {}, \"key_frames_sent\": {}, \"decoded_fps\": {}, \"received_video_kbps\": {}, \"target_kbps\": {}}}",
            self.t, self.sent, self.key_frames_sent, self.decoded, self.received_kbps, self.target_kbps
        )
    }
}

struct Run {
    /// /proc/loadavg's 1-minute figure when the run started: other work on
    /// the machine's cores starves the 720p encoder and decoder.
    load_before: f64,
    per_second: Vec<Second>,
    settled_ratio: f64,
    settled_decoded_fps: f64,
    settled_sent_fps: f64,
    longest_freeze_after_drop_ms: f64,
    longest_freeze_before_drop_ms: f64,
    /// Time spent in gaps longer than 200 ms (a visible freeze) after the drop.
    frozen_ms_after_drop: f64,
}

impl Run {
    fn json(&self) -> String {
        format!(
            "{{\"load_before\": {:.2}, \"decoded_over_sent_pct_after_settling\": {:.1}, \
             \"longest_freeze_ms_after_drop\": {:.0}, \"per_second\": [{}]}}",
            self.load_before,
            self.settled_ratio * 100.0,
            self.longest_freeze_after_drop_ms,
            self.per_second
                .iter()
                .map(Second::json)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn run(
    cc: bool,
    encoded: bool,
    trace: bool,
    whipsink_defaults: bool,
    source: &str,
    length: Duration,
    drop_at: Duration,
) -> Run {
    let load_before = loadavg();
    shape("1mbit");
    // Server: every decoded frame's arrival time, and RTP bytes received.
    let server_pipeline = pipeline_of(WHIP_SERVER);
    let server = server_pipeline.by_name("server").unwrap();
    let decoded: Arc<Mutex<Vec<Instant>>> = Default::default();
    let received: Arc<Mutex<Vec<(Instant, usize)>>> = Default::default();
    {
        let bin = server_pipeline.clone();
        let decoded = decoded.clone();
        let received = received.clone();
        server.connect_pad_added(move |_, pad| {
            let received = received.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                    received.lock().unwrap().push((Instant::now(), b.size()));
                }
                gst::PadProbeReturn::Ok
            });
            let chain = gst::parse::bin_from_description(
                "queue ! vp8dec ! fakesink name=out sync=false async=false",
                true,
            )
            .unwrap();
            bin.add(&chain).unwrap();
            chain.sync_state_with_parent().unwrap();
            pad.link(&chain.static_pad("sink").unwrap()).unwrap();
            record_arrivals(&chain, "out", &decoded);
        });
    }
    server_pipeline.set_state(gst::State::Playing).unwrap();
    let addr = server.property::<Option<String>>("bound-address").unwrap();

    let encoder = format!(
        "vp8enc name=enc deadline=1 cpu-used=16 end-usage=cbr threads=2 \
         target-bitrate={FIXED_BITRATE} keyframe-max-dist=3000 max-intra-bitrate={MAX_INTRA} error-resilient=partitions"
    );
    let sink = if cc {
        format!(
            "whipsink name=whip congestion-control=true congestion-control-upstream=true \
             min-bitrate=100000 start-bitrate={FIXED_BITRATE} max-bitrate=2000000"
        )
    } else {
        "whipsink name=whip congestion-control=false".to_string()
    };
    let input = if encoded {
        format!(
            "queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! {encoder} ! {sink}"
        )
    } else {
        format!("{sink} video-caps=video/x-vp8")
    };
    let client = gst::parse::launch(&format!(
        "videotestsrc is-live=true {source} ! video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1 \
         ! {input} whip-endpoint=http://{addr}/whip/bench ice-addresses=127.0.0.1"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sent: Arc<Mutex<Vec<Instant>>> = Default::default();
    let key_frames: Arc<Mutex<Vec<Instant>>> = Default::default();
    let key_sizes: Arc<Mutex<Vec<(Instant, usize)>>> = Default::default();
    let count_sent = {
        let (sent, key_frames, key_sizes) = (sent.clone(), key_frames.clone(), key_sizes.clone());
        move |enc: &gst::Element| {
            let (sent, key_frames, key_sizes) =
                (sent.clone(), key_frames.clone(), key_sizes.clone());
            enc.static_pad("src")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    let now = Instant::now();
                    sent.lock().unwrap().push(now);
                    let delta = info
                        .buffer()
                        .is_some_and(|b| b.flags().contains(gst::BufferFlags::DELTA_UNIT));
                    if !delta {
                        key_frames.lock().unwrap().push(now);
                        let size = info.buffer().map_or(0, |b| b.size());
                        key_sizes.lock().unwrap().push((now, size));
                    }
                    gst::PadProbeReturn::Ok
                });
        }
    };
    if encoded {
        count_sent(&client.by_name("enc").unwrap());
    } else {
        // whipsink's own encoder, as the previous mode's (except the key
        // frame cap and threads, which whipsink sets itself).
        client
            .by_name("whip")
            .unwrap()
            .connect("encoder-setup", false, move |args| {
                let enc = args[2].get::<gst::Element>().unwrap();
                enc.set_property("target-bitrate", FIXED_BITRATE as i32);
                if !whipsink_defaults {
                    enc.set_property("keyframe-max-dist", 3000i32);
                    enc.set_property("max-intra-bitrate", MAX_INTRA as i32);
                }
                count_sent(&enc);
                None
            });
    }
    client.set_state(gst::State::Playing).unwrap();
    let whip = client.by_name("whip").unwrap();

    // Start the clock at the first decoded frame.
    let waited = Instant::now();
    while decoded.lock().unwrap().is_empty() && waited.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let mut per_second = Vec::new();
    let mut dropped = false;
    for t in 1..=length.as_secs() {
        if !dropped && Duration::from_secs(t - 1) >= drop_at {
            shape("300kbit");
            gst::info!(gst::CAT_DEFAULT, "bench: the link drops to 300kbit");
            dropped = true;
        }
        std::thread::sleep(
            (start + Duration::from_secs(t)).saturating_duration_since(Instant::now()),
        );
        let target = whip
            .property::<gst::Structure>("stats")
            .get::<u32>("target-bitrate")
            .unwrap_or(0);
        let window = |v: &[Instant]| {
            let (a, b) = (
                start + Duration::from_secs(t - 1),
                start + Duration::from_secs(t),
            );
            v.iter().filter(|i| **i >= a && **i < b).count() as u64
        };
        let (a, b) = (
            start + Duration::from_secs(t - 1),
            start + Duration::from_secs(t),
        );
        let bytes: usize = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| *i >= a && *i < b)
            .map(|(_, n)| n)
            .sum();
        per_second.push(Second {
            t,
            sent: window(&sent.lock().unwrap()),
            key_frames_sent: window(&key_frames.lock().unwrap()),
            decoded: window(&decoded.lock().unwrap()),
            received_kbps: bytes as u64 * 8 / 1000,
            target_kbps: u64::from(target) / 1000,
        });
    }
    let _ = client.set_state(gst::State::Null);
    let _ = server_pipeline.set_state(gst::State::Null);

    let sent = sent.lock().unwrap().clone();
    let decoded = decoded.lock().unwrap().clone();
    let drop_instant = start + drop_at;
    let settled_from = drop_instant + SETTLE;
    let end = start + length;
    let count =
        |v: &[Instant], a: Instant, b: Instant| v.iter().filter(|i| **i >= a && **i < b).count();
    let settled_secs = (end - settled_from).as_secs_f64();
    let settled_sent = count(&sent, settled_from, end) as f64;
    let settled_decoded = count(&decoded, settled_from, end) as f64;
    // Gaps between decoded frames, including to the end of the window.
    let gaps = |a: Instant, b: Instant| {
        let mut times: Vec<Instant> = decoded
            .iter()
            .copied()
            .filter(|i| *i >= a && *i < b)
            .collect();
        times.insert(0, a);
        times.push(b);
        times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
            .collect::<Vec<f64>>()
    };
    let after = gaps(drop_instant, end);
    if trace {
        let ms = |i: Instant| {
            (i.saturating_duration_since(drop_instant).as_millis() as i64)
                - (drop_instant.saturating_duration_since(i).as_millis() as i64)
        };
        let keys: Vec<String> = key_sizes
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| *i + Duration::from_secs(1) >= drop_instant)
            .map(|(i, n)| format!("{}ms:{}B", ms(*i), n))
            .collect();
        let mut last = drop_instant;
        let mut freezes = Vec::new();
        for i in decoded
            .iter()
            .copied()
            .filter(|i| *i >= drop_instant && *i < end)
        {
            if i - last > Duration::from_millis(200) {
                freezes.push(format!("{}..{}ms", ms(last), ms(i)));
            }
            last = i;
        }
        eprintln!("trace cc={cc}: key frames {keys:?}; freezes {freezes:?}");
    }
    let before = gaps(start, drop_instant);
    Run {
        load_before,
        per_second,
        settled_ratio: if settled_sent > 0.0 {
            settled_decoded / settled_sent
        } else {
            0.0
        },
        settled_decoded_fps: settled_decoded / settled_secs,
        settled_sent_fps: settled_sent / settled_secs,
        longest_freeze_after_drop_ms: after.iter().copied().fold(0.0, f64::max),
        longest_freeze_before_drop_ms: before.iter().copied().fold(0.0, f64::max),
        frozen_ms_after_drop: after.iter().filter(|g| **g > 200.0).sum(),
    }
}
