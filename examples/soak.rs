//! Soak: many whepsrc sessions started and stopped at random points against
//! one whepserversink, to see that nothing is left behind. The server runs in
//! this process; the clients in a child process (so that their threads do not
//! count). Prints one JSON object: sessions the server created and ended (by
//! reason), and the server process's threads, fds and RSS before and after.
//!
//! Two batches of `--cycles` each: the second shows what a session leaves
//! once the one-off allocations of the first are made.
//!
//!     cargo run --release --example soak -- [--cycles 100] [--seed 1]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::rss_kib;

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn init() {
    gst::init().unwrap();
    gstwhipwhep::plugin_register_static().unwrap();
}

/// xorshift: a reproducible sequence of stop points from `--seed`.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Child: `cycles` sessions, each stopped at a random point between 0 and
/// 1.5 s after PLAYING (during the POST, ICE, DTLS or playing).
fn client(endpoint: &str, cycles: u64, seed: u64) {
    init();
    let mut rng = seed.max(1);
    for _ in 0..cycles {
        let pipeline = gst::parse::launch(&format!(
            "whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 ! videoconvert ! fakesink"
        ))
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(next(&mut rng) % 1500));
        pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("done");
}

fn proc_count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        return client(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
    }
    let (cycles, seed) = (arg(&args, "--cycles", 100), arg(&args, "--seed", 1));
    init();
    let pipeline = gst::parse::launch(&format!(
        "{VIDEO} ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<gst::Structure>::new()));
    let sink = messages.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(e) = msg.view() {
            if let Some(s) = e.structure() {
                sink.lock().unwrap().push(s.to_owned());
            }
        }
        gst::BusSyncReply::Drop
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let server = pipeline.by_name("server").unwrap();
    let endpoint = format!("http://{}/", server.property::<String>("bound-address"));
    std::thread::sleep(Duration::from_secs(1));
    let measure = || {
        (
            proc_count("/proc/self/task"),
            proc_count("/proc/self/fd"),
            rss_kib(),
        )
    };
    let before = measure();
    // Two batches of `cycles`: after the first, one-off allocations are
    // made (codecs, caches, thread pools); the second shows what each
    // session leaves.
    let mut after = Vec::new();
    for batch in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--client",
                &endpoint,
                &cycles.to_string(),
                &(seed + batch).to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let _ = lines.next();
        let _ = child.wait();
        // What a client stopped before its POST was answered leaves is
        // reaped by the server's peer-timeout (5 s); idle blocking threads
        // of the runtime go after 10 s.
        std::thread::sleep(Duration::from_secs(12));
        after.push(measure());
    }

    let all = messages.lock().unwrap().clone();
    let added = all.iter().filter(|s| s.name() == "viewer-added").count();
    let removed: Vec<String> = all
        .iter()
        .filter(|s| s.name() == "viewer-removed")
        .map(|s| s.get::<String>("reason").unwrap_or_default())
        .collect();
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &removed {
        let key = r.split(':').next().unwrap_or(r).chars().take(60).collect();
        *reasons.entry(key).or_default() += 1;
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let reasons: Vec<String> = reasons
        .iter()
        .map(|(k, v)| format!("{:?}: {v}", k))
        .collect();
    println!(
        "{{\n  \"cycles_per_batch\": {cycles},\n  \"batches\": 2,\n  \"seed\": {seed},\n  \"server_sessions_created\": {added},\n  \"server_sessions_ended\": {},\n  \"ended_by_reason\": {{{}}},\n  \"server_threads_start_batch1_batch2\": [{}, {}, {}],\n  \"server_fds_start_batch1_batch2\": [{}, {}, {}],\n  \"server_rss_kib_start_batch1_batch2\": [{}, {}, {}]\n}}",
        removed.len(),
        reasons.join(", "),
        before.0,
        after[0].0,
        after[1].0,
        before.1,
        after[0].1,
        after[1].1,
        before.2,
        after[0].2,
        after[1].2
    );
}
