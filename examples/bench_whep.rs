//! Benchmark: time from PLAYING to the first DECODED frame, whepsrc against
//! bare webrtcbin → webrtcbin in the same run; stop → NULL times; and one
//! whepserversink serving 20 viewers (their decoded fps, the server's CPU
//! and memory per viewer). Prints one JSON object.
//!
//!     cargo run --release --example bench_whep -- [--runs 7]
//!
//! The server (whepserversink) runs in this process. Every client is a fresh
//! process (this binary, re-executed), so one-off costs such as webrtcbin's
//! RSA key generation are counted; each client times itself, from just
//! before set_state(PLAYING) to the first buffer reaching its fakesink.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{
    arg, clk_tck, cpu_seconds, init, read_line_after, read_until, read_value, rss_kib, spawn_self,
    Phases, Stats,
};

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";
const VIEWERS: usize = 20;
const VIEWER_WINDOW: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--client") => client_whepsrc(&args[2], args.get(3).map_or("--cold", |a| a.as_str())),
        Some("--baseline") => {
            init();
            bench::print_baseline(bench::bare_webrtcbin(
                VIDEO,
                "rtpvp8depay ! vp8dec ! fakesink name=first sync=false",
            ))
        }
        Some("--viewers") => client_viewers(&args[2], args[3].parse().unwrap()),
        _ => parent(arg("--runs", 7)),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Counts the buffers reaching `sink` and notes when the first one came.
fn count(sink: &gst::Element, frames: Arc<AtomicU64>, first: Option<Arc<AtomicU64>>, t0: Instant) {
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if frames.fetch_add(1, Ordering::SeqCst) == 0 {
                if let Some(first) = &first {
                    first.store(t0.elapsed().as_micros() as u64 + 1, Ordering::SeqCst);
                }
            }
            gst::PadProbeReturn::Ok
        });
}

/// Child: play with whepsrc; print the time to the first decoded frame
/// (or nan after 10 s), and on "stop" from stdin how long NULL took.
/// With `warm`, waits a second before PLAYING, so that the one-off DTLS key
/// generation the element starts at creation is done.
/// `--warm`: the element exists a second before PLAYING (one-off key work
/// done); `--second`: the second session of the process, after a first one
/// played and stopped.
fn client_whepsrc(endpoint: &str, mode: &str) {
    init();
    let make = || {
        gst::parse::launch(&format!(
            "whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=5 ! videoconvert ! fakesink name=sink sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
    };
    if mode == "--second" {
        let first = make();
        first.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        first.set_state(gst::State::Null).unwrap();
    }
    let pipeline = make();
    bench::print_timelines(pipeline.upcast_ref());
    if mode == "--warm" {
        // As an application that prepares its pipeline ahead: the
        // elements prewarm when they leave NULL.
        pipeline.set_state(gst::State::Ready).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let first = Arc::new(AtomicU64::new(0));
    println!("started");
    let t0 = Instant::now();
    count(
        &pipeline.by_name("sink").unwrap(),
        Arc::new(AtomicU64::new(0)),
        Some(first.clone()),
        t0,
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    bench::print_first_frame_when_seen(first);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let start = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    println!("stop_ms {:.3}", ms(start.elapsed()));
    std::io::stdout().flush().unwrap();
}

/// Child: `n` viewers in one pipeline. Prints "joined <ms>" once each has
/// decoded a frame (or after 30 s), then decodes for `VIEWER_WINDOW` and
/// prints every viewer's decoded fps over it; NULL on "stop".
fn client_viewers(endpoint: &str, n: usize) {
    init();
    let desc: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=10 ! videoconvert ! fakesink name=v{i} sync=false"
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&desc.join(" "))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let t0 = Instant::now();
    let frames: Vec<Arc<AtomicU64>> = (0..n)
        .map(|i| {
            let c = Arc::new(AtomicU64::new(0));
            count(
                &pipeline.by_name(&format!("v{i}")).unwrap(),
                c.clone(),
                None,
                t0,
            );
            c
        })
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while frames.iter().any(|c| c.load(Ordering::SeqCst) == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let joined = frames
        .iter()
        .filter(|c| c.load(Ordering::SeqCst) > 0)
        .count();
    println!("joined {joined} {:.1}", ms(t0.elapsed()));
    std::io::stdout().flush().unwrap();
    let before: Vec<u64> = frames.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let start = Instant::now();
    std::thread::sleep(VIEWER_WINDOW);
    let secs = start.elapsed().as_secs_f64();
    let fps: Vec<String> = frames
        .iter()
        .zip(&before)
        .map(|(c, b)| format!("{:.2}", (c.load(Ordering::SeqCst) - b) as f64 / secs))
        .collect();
    println!("fps {}", fps.join(" "));
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    println!("stopped");
}

/// One whepsrc client: its TTFF (if the server is up, else nan) and the
/// time NULL took when told to stop after `hold` (counted from the first
/// frame when there is one, from the start otherwise); its session's
/// timeline into `phases`.
fn run_whepsrc(
    endpoint: &str,
    expect_media: bool,
    hold: Duration,
    mode: &str,
    phases: &mut Phases,
) -> (f64, f64) {
    let mut child = spawn_self(&["--client", endpoint, mode]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    read_line_after(&mut lines, "started");
    let mut seen = if expect_media {
        read_until(&mut lines, "ttff_ms")
    } else {
        Default::default()
    };
    let ttff = seen
        .get("ttff_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    std::thread::sleep(hold);
    writeln!(child.stdin.as_mut().unwrap(), "stop").unwrap();
    for (k, v) in read_until(&mut lines, "stop_ms") {
        seen.entry(k).or_insert(v);
    }
    let stop = seen
        .get("stop_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    phases.add(seen.get("timeline"));
    let _ = child.wait();
    (ttff, stop)
}

/// One run of `VIEWERS` viewers in one child process.
struct ViewersRun {
    joined: f64,
    join_ms: f64,
    fps_min: f64,
    fps_median: f64,
    server_cpu_percent: f64,
    rss_growth_kib_per_viewer: f64,
}

fn run_viewers(endpoint: &str, clk_tck: f64) -> ViewersRun {
    let rss_before = rss_kib();
    let mut child = spawn_self(&["--viewers", endpoint, &VIEWERS.to_string()]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let joined_line = read_line_after(&mut lines, "joined");
    let (cpu0, wall0) = (cpu_seconds(clk_tck), Instant::now());
    let mut joined = joined_line.split_whitespace();
    let joined_n: f64 = joined
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let join_ms: f64 = joined
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let fps_line = read_line_after(&mut lines, "fps");
    let (cpu1, wall) = (cpu_seconds(clk_tck), wall0.elapsed().as_secs_f64());
    let rss_playing = rss_kib();
    writeln!(child.stdin.as_mut().unwrap(), "stop").unwrap();
    read_line_after(&mut lines, "stopped");
    let _ = child.wait();
    let fps = Stats(
        fps_line
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect(),
    );
    ViewersRun {
        joined: joined_n,
        join_ms,
        fps_min: fps.min(),
        fps_median: fps.median(),
        server_cpu_percent: (cpu1 - cpu0) / wall * 100.0,
        rss_growth_kib_per_viewer: (rss_playing - rss_before) / VIEWERS as f64,
    }
}

fn parent(runs: usize) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "{VIDEO} ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1"
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let server = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("server")
        .unwrap();
    let endpoint = format!("http://{}/whep", server.property::<String>("bound-address"));
    let clk_tck = clk_tck();

    // A server that accepts TCP and never answers.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_endpoint = format!("http://{}/whep", mute.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in mute.incoming() {
            held.push(s);
        }
    });

    let (mut whep, mut base, mut stop_up, mut stop_mute, mut warm, mut second) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut viewers: Vec<ViewersRun> = Vec::new();
    let (mut cold_phases, mut warm_phases, mut second_phases) =
        (Phases::default(), Phases::default(), Phases::default());
    // Interleave the kinds so that machine noise hits them alike.
    for i in 0..runs {
        let hold = Duration::from_millis(300);
        let (ttff, stop) = run_whepsrc(&endpoint, true, hold * 3, "--cold", &mut cold_phases);
        whep.push(ttff);
        warm.push(run_whepsrc(&endpoint, true, hold, "--warm", &mut warm_phases).0);
        second.push(run_whepsrc(&endpoint, true, hold, "--second", &mut second_phases).0);
        stop_up.push(stop);
        let mut child = spawn_self(&["--baseline"]);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        base.push(read_value(&mut lines, "ttff_ms"));
        let _ = child.wait();
        let (_, stop) = run_whepsrc(
            &mute_endpoint,
            false,
            Duration::from_millis(1500),
            "--cold",
            &mut Phases::default(),
        );
        stop_mute.push(stop);
        let v = run_viewers(&endpoint, clk_tck);
        eprintln!(
            "run {i}: whepsrc {:.1} ms, baseline {:.1} ms, stop {:.1}/{:.1} ms, {} viewers: fps min {:.1} median {:.1}, server cpu {:.0}%, rss +{:.0} KiB/viewer",
            whep[i], base[i], stop_up[i], stop_mute[i], v.joined, v.fps_min, v.fps_median, v.server_cpu_percent, v.rss_growth_kib_per_viewer
        );
        viewers.push(v);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let field = |f: fn(&ViewersRun) -> f64| Stats(viewers.iter().map(f).collect()).json();
    println!(
        "{{\n  \"runs\": {runs},\n  \"ttff_ms_whepsrc\": {},\n  \"ttff_ms_whepsrc_key_pregenerated\": {},\n  \"ttff_ms_whepsrc_second_session\": {},\n  \"ttff_ms_bare_webrtcbin\": {},\n  \"ratio_to_bare_webrtcbin\": {{\"first_session\": {:.2}, \"key_pregenerated\": {:.2}, \"second_session\": {:.2}}},\n  \"timeline_ms_first_session\": {},\n  \"timeline_ms_key_pregenerated\": {},\n  \"timeline_ms_second_session\": {},\n  \"stop_to_null_ms_server_up\": {},\n  \"stop_to_null_ms_mute_server\": {},\n  \"viewers_20\": {{\n    \"viewers_joined\": {},\n    \"all_joined_ms\": {},\n    \"decoded_fps_min\": {},\n    \"decoded_fps_median\": {},\n    \"server_cpu_percent_of_one_core\": {},\n    \"server_rss_growth_kib_per_viewer\": {}\n  }}\n}}",
        Stats(whep.clone()).json(),
        Stats(warm.clone()).json(),
        Stats(second.clone()).json(),
        Stats(base.clone()).json(),
        Stats(whep).median() / Stats(base.clone()).median(),
        Stats(warm).median() / Stats(base.clone()).median(),
        Stats(second).median() / Stats(base).median(),
        cold_phases.json(),
        warm_phases.json(),
        second_phases.json(),
        Stats(stop_up).json(),
        Stats(stop_mute).json(),
        field(|v| v.joined),
        field(|v| v.join_ms),
        field(|v| v.fps_min),
        field(|v| v.fps_median),
        field(|v| v.server_cpu_percent),
        field(|v| v.rss_growth_kib_per_viewer),
    );
}
