//! Benchmark: how long media stops when the network path breaks, with an
//! ICE restart on the same session (whepsrc's default) against a full
//! reconnect (a new session: `ice-restart-timeout=0`), in the same run,
//! runs interleaved. The path is a veth link between two network
//! namespaces the program makes for itself (it re-runs itself inside
//! `unshare -rnm`; see tests/common/netns.rs), taken down for `--outage`
//! ms and brought back. The interruption is the longest gap between two
//! decoded frames after the cut, at the player. Prints one JSON object.
//!
//!     cargo run --release --example bench_ice_restart -- [--runs 5] [--outage 1000]

#[path = "common/bench.rs"]
mod bench;
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::{arg, record_arrivals, Stats};
use common::e2e::{init, wait_until};
use common::netns::{endpoint, link_down, server, server_says, A, C};
use gst::prelude::*;

/// One run: the interruption (ms), the outcome the element reported, and
/// how many sessions the server saw.
fn run(extra: &str, outage: Duration) -> (f64, String, usize) {
    let server = server();
    let pipeline = gst::parse::launch(&format!(
        "whepsrc name=src whep-endpoint={} ice-addresses=\"{A},{C}\" {extra} \
         ! rtpvp8depay ! vp8dec ! fakesink name=out sync=false",
        endpoint()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let arrivals: Arc<Mutex<Vec<Instant>>> = Default::default();
    record_arrivals(&pipeline, "out", &arrivals);
    let messages = common::e2e::Messages::attach(&pipeline);
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(wait_until(Duration::from_secs(10), || arrivals
        .lock()
        .unwrap()
        .len()
        > 30));
    let cut = Instant::now();
    link_down(outage);
    let seen = arrivals.lock().unwrap().len();
    // Media back, and a second of it.
    wait_until(Duration::from_secs(15), || {
        arrivals.lock().unwrap().len() > seen + 30
    });
    let frames = arrivals.lock().unwrap().clone();
    let gap = frames
        .windows(2)
        .filter(|w| w[1] > cut)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let outcome = messages
        .element("session-ice-restarted")
        .first()
        .and_then(|s| s.get::<String>("outcome").ok())
        .unwrap_or_else(|| "reconnected".into());
    pipeline.set_state(gst::State::Null).unwrap();
    let sessions = server_says(&server, "viewer-added");
    (gap, outcome, sessions)
}

fn main() {
    let runs: u64 = arg("--runs", 5);
    let outage: u64 = arg("--outage", 1000);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if !common::netns::inside(&args) {
        return;
    }
    init();
    let outage_d = Duration::from_millis(outage);
    let (mut restart, mut reconnect) = (Vec::new(), Vec::new());
    let (mut restart_runs, mut reconnect_runs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (gap, outcome, sessions) = run("", outage_d);
        restart.push(gap);
        restart_runs.push(format!(
            "{{\"gap_ms\": {gap:.0}, \"outcome\": \"{outcome}\", \"sessions\": {sessions}}}"
        ));
        let (gap, outcome, sessions) = run("ice-restart-timeout=0", outage_d);
        reconnect.push(gap);
        reconnect_runs.push(format!(
            "{{\"gap_ms\": {gap:.0}, \"outcome\": \"{outcome}\", \"sessions\": {sessions}}}"
        ));
    }
    println!(
        "{{\"bench\": \"ice_restart\", \"outage_ms\": {outage}, \"runs\": {runs}, \
         \"media_timeout_ms\": 500, \
         \"ice_restart\": {{\"median_gap_ms\": {:.0}, \"runs\": [{}]}}, \
         \"reconnect\": {{\"median_gap_ms\": {:.0}, \"runs\": [{}]}}}}",
        Stats(restart).median(),
        restart_runs.join(", "),
        Stats(reconnect).median(),
        reconnect_runs.join(", ")
    );
}
