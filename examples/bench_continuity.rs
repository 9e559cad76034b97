//! Benchmark: frames lost and output gap at each planned renewal and each
//! unannounced cut, over a run against a whepserversink that caps sessions.
//! Frames carry a counter in the picture, read back after decoding, so a
//! lost frame is a missing number. Prints one JSON object.
//!
//!     cargo run --release --example bench_continuity -- [--seconds 60] [--cap 5]

#[path = "common/bench.rs"]
mod bench;
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use bench::{arg, json_number, Stats};
use common::stamp::{play, StampedServer};

fn stats(v: Vec<f64>) -> String {
    let v = Stats(v);
    format!(
        "{{\"median\": {}, \"worst\": {}}}",
        json_number(v.median()),
        json_number(v.max())
    )
}

/// Plays for `seconds` and returns the JSON for each switch between sessions.
fn run(seconds: u64, cap: u64, client_extra: &str) -> String {
    let server = StampedServer::start(&format!("max-session-duration={cap}"));
    let (client, frames) = play(&format!("{}/whep", server.base), client_extra);
    std::thread::sleep(Duration::from_secs(seconds));
    let frames = frames.lock().unwrap().clone();
    client.stop();
    let sessions = client.messages.element("session-started").len();
    let switches = client.messages.element("session-renewed").len();
    // A switch shows in the output as a jump in the counter or a long gap.
    let (mut lost, mut gaps) = (Vec::new(), Vec::new());
    let mut backwards = 0;
    for w in frames.windows(2) {
        let step = w[1].0.wrapping_sub(w[0].0);
        let gap = (w[1].1 - w[0].1).mseconds() as f64;
        if step != 1 || gap > 100.0 {
            lost.push(step.saturating_sub(1) as f64);
            gaps.push(gap);
        }
        if w[1].1 <= w[0].1 {
            backwards += 1;
        }
    }
    // Renewals that lost nothing leave no trace in the counter: their gap is
    // the element's own report (one frame period).
    let reported: Vec<f64> = client
        .messages
        .element("session-renewed")
        .iter()
        .map(|s| s.get::<u64>("gap-ms").unwrap() as f64)
        .collect();
    format!(
        "{{\"sessions\": {sessions}, \"switches\": {switches}, \"frames\": {}, \"discontinuities\": {}, \
         \"frames_lost_per_discontinuity\": {}, \"total_frames_lost\": {}, \"output_gap_ms_at_discontinuities\": {}, \
         \"reported_switch_gap_ms\": {}, \"timestamps_going_back\": {backwards}, \"errors\": {}}}",
        frames.len(),
        lost.len(),
        stats(lost.clone()),
        lost.iter().map(|l| *l as u64).sum::<u64>(),
        stats(gaps),
        stats(reported),
        client.messages.errors().len()
    )
}

fn main() {
    let seconds: u64 = arg("--seconds", 60);
    let cap: u64 = arg("--cap", 5);
    let renewal = run(
        seconds,
        cap,
        &format!("max-session-duration={cap} renew-lead=1500"),
    );
    let cuts = run(seconds, cap, "");
    println!(
        "{{\n  \"seconds\": {seconds},\n  \"server_cap_s\": {cap},\n  \"renewal\": {renewal},\n  \"unannounced_cuts\": {cuts}\n}}"
    );
}
