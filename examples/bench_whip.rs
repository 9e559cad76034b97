//! Benchmark: time from PLAYING to the first frame the WHIP server receives,
//! whipsink against bare webrtcbin → webrtcbin in the same run, and stop →
//! NULL times. Prints one JSON object.
//!
//!     cargo run --release --example bench_whip -- [--runs 7]
//!
//! Every sample is a fresh client process (this binary, re-executed), so
//! one-off costs such as webrtcbin's RSA key generation are counted. The
//! server (whipserversrc) runs in this process and timestamps the first
//! buffer each publisher delivers, on the same clock the child reads
//! (wall clock, microseconds).

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, init, read_until, read_value, spawn_self, Phases, Stats};

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--client") => client_whipsink(&args[2], args.get(3).map_or("--cold", |a| a.as_str())),
        Some("--baseline") => {
            init();
            bench::print_baseline(bench::bare_webrtcbin(
                VIDEO,
                "rtpvp8depay ! fakesink name=first sync=false",
            ))
        }
        _ => parent(arg("--runs", 7)),
    }
}

/// Child: publish with whipsink; print `t0`, wait for "stop" on stdin,
/// print how long NULL took.
/// `--warm` waits a second before PLAYING, so that the one-off DTLS key
/// generation the element starts at creation is done: what remains is the
/// cost of a session itself. `--second` measures the second session of the
/// process, after a first one ran and stopped.
fn client_whipsink(endpoint: &str, mode: &str) {
    init();
    let make = || {
        gst::parse::launch(&format!(
            "{VIDEO} ! whipsink whip-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=5"
        ))
        .unwrap()
    };
    if mode == "--second" {
        let first = make();
        first.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        first.set_state(gst::State::Null).unwrap();
    }
    let pipeline = make();
    bench::print_timelines(&pipeline);
    if mode == "--warm" {
        // As an application that prepares its pipeline ahead: the
        // elements prewarm when they leave NULL.
        pipeline.set_state(gst::State::Ready).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("t0 {}", bench::now_us());
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let start = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    println!("stop_ms {:.3}", start.elapsed().as_secs_f64() * 1000.0);
    std::io::stdout().flush().unwrap();
}

/// One whipsink run against `endpoint`: TTFF (if `first` is given) and stop
/// time; its session's timeline into `phases`.
fn run_whipsink(
    endpoint: &str,
    first: Option<&AtomicU64>,
    hold: Duration,
    mode: &str,
    phases: &mut Phases,
) -> (f64, f64) {
    let mut child = spawn_self(&["--client", endpoint, mode]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let t0 = read_value(&mut lines, "t0");
    // After t0: a `--second` client's first session is over by then.
    if let Some(f) = first {
        f.store(0, Ordering::SeqCst);
    }
    let mut ttff = f64::NAN;
    if let Some(f) = first {
        let deadline = Instant::now() + Duration::from_secs(10);
        while f.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let at = f.load(Ordering::SeqCst);
        if at != 0 {
            ttff = (at as f64 - t0) / 1000.0;
        }
    }
    std::thread::sleep(hold);
    writeln!(child.stdin.as_mut().unwrap(), "stop").unwrap();
    let seen = read_until(&mut lines, "stop_ms");
    let stop = seen
        .get("stop_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    phases.add(seen.get("timeline"));
    let _ = child.wait();
    (ttff, stop)
}

fn parent(runs: usize) {
    init();
    let server = gst::ElementFactory::make("whipserversrc")
        .property("address", "127.0.0.1:0")
        .property("ice-addresses", "127.0.0.1")
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add(&server).unwrap();
    let first = Arc::new(AtomicU64::new(0));
    bench::note_first_frame(&server, &pipeline, &first);
    pipeline.set_state(gst::State::Playing).unwrap();
    let endpoint = format!(
        "http://{}/whip/bench",
        server.property::<String>("bound-address")
    );

    // A server that accepts TCP and never answers.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_endpoint = format!("http://{}/whip", mute.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in mute.incoming() {
            held.push(s);
        }
    });

    let (mut whip, mut base, mut stop_up, mut stop_mute, mut warm, mut second) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut cold_phases, mut warm_phases, mut second_phases) =
        (Phases::default(), Phases::default(), Phases::default());
    // Interleave the kinds so that machine noise hits them alike.
    for i in 0..runs {
        let (ttff, stop) = run_whipsink(
            &endpoint,
            Some(&first),
            Duration::from_millis(500),
            "--cold",
            &mut cold_phases,
        );
        let (warm_ttff, _) = run_whipsink(
            &endpoint,
            Some(&first),
            Duration::from_millis(300),
            "--warm",
            &mut warm_phases,
        );
        warm.push(warm_ttff);
        let (second_ttff, _) = run_whipsink(
            &endpoint,
            Some(&first),
            Duration::from_millis(300),
            "--second",
            &mut second_phases,
        );
        second.push(second_ttff);
        whip.push(ttff);
        stop_up.push(stop);
        let mut child = spawn_self(&["--baseline"]);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        base.push(read_value(&mut lines, "ttff_ms"));
        let _ = child.wait();
        let (_, stop) = run_whipsink(
            &mute_endpoint,
            None,
            Duration::from_millis(1500),
            "--cold",
            &mut Phases::default(),
        );
        stop_mute.push(stop);
        eprintln!(
            "run {i}: whipsink {:.1} ms, baseline {:.1} ms",
            whip[i], base[i]
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "{{\n  \"runs\": {runs},\n  \"ttff_ms_whipsink\": {},\n  \"ttff_ms_whipsink_key_pregenerated\": {},\n  \"ttff_ms_whipsink_second_session\": {},\n  \"ttff_ms_bare_webrtcbin\": {},\n  \"ratio_to_bare_webrtcbin\": {{\"first_session\": {:.2}, \"key_pregenerated\": {:.2}, \"second_session\": {:.2}}},\n  \"timeline_ms_first_session\": {},\n  \"timeline_ms_key_pregenerated\": {},\n  \"timeline_ms_second_session\": {},\n  \"stop_to_null_ms_server_up\": {},\n  \"stop_to_null_ms_mute_server\": {}\n}}",
        Stats(whip.clone()).json(),
        Stats(warm.clone()).json(),
        Stats(second.clone()).json(),
        Stats(base.clone()).json(),
        Stats(whip).median() / Stats(base.clone()).median(),
        Stats(warm).median() / Stats(base.clone()).median(),
        Stats(second).median() / Stats(base).median(),
        cold_phases.json(),
        warm_phases.json(),
        second_phases.json(),
        Stats(stop_up).json(),
        Stats(stop_mute).json()
    );
}
