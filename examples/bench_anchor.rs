//! Benchmark: our whipsink / whepsrc against the anchor, gst-plugins-rs'
//! WHIP/WHEP clients (crate gst-plugin-webrtchttp, elements whipsink and
//! whepsrc), and bare webrtcbin → webrtcbin, in the same run. Prints one
//! JSON object.
//!
//!     cargo run --release --features anchor --example bench_anchor -- [--runs 10]
//!
//! Both directions talk to our servers in this process (whipserversrc for
//! publish, whepserversink for play). Every client is a fresh process (this
//! binary, re-executed), so one-off costs such as webrtcbin's RSA key are
//! counted; the kinds are interleaved so that machine noise hits them alike.
//!
//! The anchor registers its elements as `whipsink` and `whepsrc`, the names
//! of ours, so an anchor client process registers only the anchor's plugin
//! and an our-client process only ours: no name is ever registered twice.
//! The anchor's webrtcbin (a child of its bin) gets ICE pinned to loopback
//! and UPnP off, as ours get through `ice-addresses`; neither has a STUN
//! server (the anchor's `stun-server` defaults to none).
//!
//! `first_dtlsdec_ms`: a fresh process making its first dtlsdec, which on
//! GStreamer 1.22 makes the RSA-2048 key both clients wait for before their
//! offer; with it, what 0.6 × the anchor's publish time leaves for the rest.
//!
//! Publish: from just before PLAYING in the client to the first buffer at the
//! server (wall clock). Play: from just before PLAYING to the first decoded
//! frame at the client's fakesink. Then, with the session flowing, the
//! client process's CPU over a window, its RSS and its threads.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{
    arg, clk_tck, cpu_seconds, json_number, read_until, read_value, rss_kib, spawn_self, threads,
    Phases, Stats,
};

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";
/// After the first frame, before the CPU window: the start settles.
const SETTLE: Duration = Duration::from_millis(500);
/// The window over which a flowing client's CPU is measured.
const WINDOW: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--client") => client(&args[2], &args[3], &args[4]),
        Some("--baseline") => {
            bench::init();
            let receiver = match args[2].as_str() {
                "publish" => "rtpvp8depay ! fakesink name=first sync=false",
                _ => "rtpvp8depay ! vp8dec ! fakesink name=first sync=false",
            };
            bench::print_baseline(bench::bare_webrtcbin(VIDEO, receiver))
        }
        Some("--key") => {
            // GStreamer 1.22's dtlsdec makes its default RSA-2048 key when
            // the process's first one is made; webrtcbin makes one with the
            // transport each offer needs, so every client pays it first.
            gst::init().unwrap();
            let start = Instant::now();
            gst::ElementFactory::make("dtlsdec").build().unwrap();
            println!("key_ms {:.3}", start.elapsed().as_secs_f64() * 1000.0);
        }
        Some("--anchor-version") => {
            gst::init().unwrap();
            gstwebrtchttp::plugin_register_static().unwrap();
            if let Some(p) = gst::Registry::get().find_plugin("webrtchttp") {
                println!("{}", p.version());
            }
        }
        _ => parent(arg("--runs", 10)),
    }
}

/// The client pipeline of `direction` ("publish" or "play") for `kind`
/// ("ours" or "anchor"). The anchor's whipsink takes RTP and its whepsrc
/// gives RTP; ours take and give encoded / decoded video.
fn client_description(direction: &str, kind: &str, endpoint: &str) -> String {
    match (direction, kind) {
        ("publish", "ours") => format!(
            "{VIDEO} ! whipsink name=client whip-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=5"
        ),
        ("publish", _) => format!(
            "{VIDEO} ! rtpvp8pay ! whipsink name=client whip-endpoint={endpoint} timeout=5"
        ),
        (_, "ours") => format!(
            "whepsrc name=client whep-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=5 \
             ! videoconvert ! fakesink name=sink sync=false"
        ),
        _ => format!(
            "whepsrc name=client whep-endpoint={endpoint} timeout=5 \
             ! rtpvp8depay ! vp8dec ! videoconvert ! fakesink name=sink sync=false"
        ),
    }
}

/// Child: one client session. Publish prints `t0 <wall µs>`; play prints
/// `ttff_ms` itself. On "mark" from stdin it starts the CPU window; on "stop"
/// it prints `cpu_percent`, `rss_kib` and `threads`, goes to NULL and prints
/// `stop_ms`.
fn client(direction: &str, kind: &str, endpoint: &str) {
    if kind == "anchor" {
        gst::init().unwrap();
        gstwebrtchttp::plugin_register_static().unwrap();
    } else {
        bench::init();
    }
    let pipeline = gst::parse::launch(&client_description(direction, kind, endpoint))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    if kind == "anchor" {
        let bin = pipeline
            .by_name("client")
            .unwrap()
            .downcast::<gst::Bin>()
            .unwrap();
        for child in bin.children() {
            if child.factory().is_some_and(|f| f.name() == "webrtcbin") {
                bench::pin_loopback(&child);
            }
        }
    }
    if kind == "ours" {
        bench::print_timelines(pipeline.upcast_ref());
    }
    let first = Arc::new(AtomicU64::new(0));
    if direction == "play" {
        let f = first.clone();
        let t0 = Instant::now();
        pipeline
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                f.store(t0.elapsed().as_micros() as u64 + 1, Ordering::SeqCst);
                gst::PadProbeReturn::Remove
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        bench::print_first_frame_when_seen(first.clone());
    } else {
        println!("t0 {}", bench::now_us());
        std::io::stdout().flush().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
    }
    let clk_tck = clk_tck();
    let mut mark = (cpu_seconds(clk_tck), Instant::now());
    for line in std::io::stdin().lock().lines() {
        match line.unwrap().as_str() {
            "mark" => mark = (cpu_seconds(clk_tck), Instant::now()),
            _ => break,
        }
    }
    let cpu = (cpu_seconds(clk_tck) - mark.0) / mark.1.elapsed().as_secs_f64() * 100.0;
    println!("cpu_percent {cpu:.3}");
    println!("rss_kib {}", rss_kib());
    println!("threads {}", threads());
    let start = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    println!("stop_ms {:.3}", start.elapsed().as_secs_f64() * 1000.0);
    std::io::stdout().flush().unwrap();
}

/// What one client run measured; NaN where it failed.
struct Sample {
    ttff: f64,
    cpu_percent: f64,
    rss_kib: f64,
    threads: f64,
    stop_ms: f64,
    /// Ours: the session's `session-timeline`.
    timeline: Option<String>,
}

/// One client process of `kind` in `direction` against `endpoint`. For
/// publish, `first` is the server's first-buffer time (wall µs), reset here.
fn run_client(direction: &str, kind: &str, endpoint: &str, first: &AtomicU64) -> Sample {
    let mut child = spawn_self(&["--client", direction, kind, endpoint]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ttff = if direction == "publish" {
        let t0 = read_value(&mut lines, "t0");
        first.store(0, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while first.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        match first.load(Ordering::SeqCst) {
            0 => f64::NAN,
            at => (at as f64 - t0) / 1000.0,
        }
    } else {
        read_value(&mut lines, "ttff_ms")
    };
    let stdin = child.stdin.as_mut().unwrap();
    let flowing = ttff.is_finite();
    if flowing {
        std::thread::sleep(SETTLE);
        writeln!(stdin, "mark").unwrap();
        std::thread::sleep(WINDOW);
    }
    writeln!(stdin, "stop").unwrap();
    let seen = read_until(&mut lines, "stop_ms");
    let _ = child.wait();
    let value = |key: &str| {
        seen.get(key)
            .and_then(|v| v.parse().ok())
            .filter(|_| flowing || key == "stop_ms")
            .unwrap_or(f64::NAN)
    };
    Sample {
        ttff,
        cpu_percent: value("cpu_percent"),
        rss_kib: value("rss_kib"),
        threads: value("threads"),
        stop_ms: value("stop_ms"),
        timeline: seen.get("timeline").cloned(),
    }
}

/// The first dtlsdec of a fresh process: the key every client waits for.
fn first_dtlsdec_ms() -> f64 {
    let mut child = spawn_self(&["--key"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ms = read_value(&mut lines, "key_ms");
    let _ = child.wait();
    ms
}

fn baseline(direction: &str) -> f64 {
    let mut child = spawn_self(&["--baseline", direction]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ttff = read_value(&mut lines, "ttff_ms");
    let _ = child.wait();
    ttff
}

/// Our server for `direction` in `pipeline`, its endpoint, and (publish)
/// the time its first buffer of the current session arrived (wall µs).
fn server(direction: &str, pipeline: &gst::Pipeline, first: &Arc<AtomicU64>) -> String {
    if direction == "publish" {
        let server = gst::ElementFactory::make("whipserversrc")
            .property("address", "127.0.0.1:0")
            .property("ice-addresses", "127.0.0.1")
            .build()
            .unwrap();
        pipeline.add(&server).unwrap();
        bench::note_first_frame(&server, pipeline, first);
        pipeline.set_state(gst::State::Playing).unwrap();
        let at = server.property::<String>("bound-address");
        format!("http://{at}/whip/bench")
    } else {
        let bin = gst::parse::bin_from_description(
            &format!(
                "{VIDEO} ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1"
            ),
            false,
        )
        .unwrap();
        pipeline.add(&bin).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let at = bin
            .by_name("server")
            .unwrap()
            .property::<String>("bound-address");
        format!("http://{at}/whep")
    }
}

/// One direction's results as a JSON object.
fn direction_json(ours: &[Sample], anchor: &[Sample], bare: &[f64]) -> String {
    let stats = |s: &[Sample], f: fn(&Sample) -> f64| Stats(s.iter().map(f).collect());
    let ttff = |s: &[Sample]| stats(s, |x| x.ttff);
    let cost = |s: &[Sample]| {
        format!(
            "{{\"cpu_percent_of_one_core\": {}, \"rss_kib\": {}, \"threads\": {}}}",
            stats(s, |x| x.cpu_percent).json(),
            stats(s, |x| x.rss_kib).json(),
            stats(s, |x| x.threads).json()
        )
    };
    let mut phases = Phases::default();
    for s in ours {
        phases.add(s.timeline.as_ref());
    }
    let (o, a, b) = (
        ttff(ours).median(),
        ttff(anchor).median(),
        Stats(bare.to_vec()).median(),
    );
    format!(
        "{{\n    \"ttff_ms_ours\": {},\n    \"ttff_ms_anchor\": {},\n    \"ttff_ms_bare_webrtcbin\": {},\n    \"ratio_ours_to_anchor\": {},\n    \"ratio_ours_to_bare_webrtcbin\": {},\n    \"ratio_anchor_to_bare_webrtcbin\": {},\n    \"client_process_while_flowing_ours\": {},\n    \"client_process_while_flowing_anchor\": {},\n    \"stop_to_null_ms_ours\": {},\n    \"stop_to_null_ms_anchor\": {},\n    \"timeline_ms_ours\": {}\n  }}",
        ttff(ours).json(),
        ttff(anchor).json(),
        Stats(bare.to_vec()).json(),
        ratio(o, a),
        ratio(o, b),
        ratio(a, b),
        cost(ours),
        cost(anchor),
        stats(ours, |x| x.stop_ms).json(),
        stats(anchor, |x| x.stop_ms).json(),
        phases.json(),
    )
}

fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        json_number(r)
    }
}

/// The 1-minute load average: the machine's other work during the run.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "null".into())
}

fn parent(runs: usize) {
    bench::init();
    let load_before = loadavg();
    let pipeline = gst::Pipeline::new();
    let first = Arc::new(AtomicU64::new(0));
    let whip = server("publish", &pipeline, &first);
    let whep = server("play", &pipeline, &first);
    let mut results = Vec::new();
    for (direction, endpoint) in [("publish", &whip), ("play", &whep)] {
        let (mut ours, mut anchor, mut bare, mut keys) = (vec![], vec![], vec![], vec![]);
        for i in 0..runs {
            // Alternate which client goes first, so neither always follows
            // the other's teardown.
            let order = if i % 2 == 0 {
                ["ours", "anchor"]
            } else {
                ["anchor", "ours"]
            };
            for kind in order {
                let s = run_client(direction, kind, endpoint, &first);
                let samples = if kind == "ours" {
                    &mut ours
                } else {
                    &mut anchor
                };
                samples.push(s);
            }
            bare.push(baseline(direction));
            if direction == "publish" {
                keys.push(first_dtlsdec_ms());
            }
            eprintln!(
                "{direction} run {i}: ours {:.1} ms, anchor {:.1} ms, bare webrtcbin {:.1} ms",
                ours[i].ttff, anchor[i].ttff, bare[i]
            );
        }
        results.push(format!(
            "\"{direction}\": {}",
            direction_json(&ours, &anchor, &bare)
        ));
        if direction == "publish" {
            // What a 0.6 x anchor goal leaves for HTTP, ICE, DTLS and the
            // first frame once the key is made.
            let anchor_ms = Stats(anchor.iter().map(|s| s.ttff).collect()).median();
            let key = Stats(keys);
            results.push(format!(
                "\"first_dtlsdec_ms\": {},\n  \"publish_room_after_key_at_0_6_of_anchor_ms\": {}",
                key.json(),
                json_number(0.6 * anchor_ms - key.median())
            ));
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "{{\n  \"runs\": {runs},\n  \"anchor\": \"gst-plugin-webrtchttp {} (whipsink, whepsrc), default features off, rustls-ring\",\n  \"gstreamer\": \"{}\",\n  \"loadavg_1min_before_after\": [{load_before}, {}],\n  {}\n}}",
        bench::anchor_version(),
        gst::version_string(),
        loadavg(),
        results.join(",\n  ")
    );
}
