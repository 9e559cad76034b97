//! Soak: many client sessions started and stopped at random points against
//! one server element, to see that nothing is left behind: whepsrc against
//! whepserversink (`--server whep`, the default) or whipsink against
//! whipserversrc (`--server whip`). The server runs in this process; the
//! clients in a child process (so that their threads do not count). Prints
//! one JSON object: sessions the server created and ended (by reason), and
//! the server process's threads, fds and RSS before and after.
//!
//! `--batches` of `--cycles` each (2): the later ones show what a session
//! leaves once the one-off allocations of the first are made.
//!
//!     cargo run --release --example soak -- [--server whep|whip] [--cycles 100] [--batches 2] [--seed 1]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, init, pipeline_of, rss_kib, WHIP_SERVER};

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";

/// xorshift: a reproducible sequence of stop points from `--seed`.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Child: `cycles` sessions, each stopped at a random point between 0 and
/// 1.5 s after PLAYING (during the POST, ICE, DTLS or playing).
fn client(server: &str, endpoint: &str, cycles: u64, seed: u64) {
    init();
    let mut rng = seed.max(1);
    for i in 0..cycles {
        // A path per publisher: one stopped before its 201 keeps its path
        // until the server reaps it.
        let desc = match server {
            "whip" => format!(
                "{VIDEO} ! whipsink whip-endpoint={endpoint}whip/soak{seed}-{i} \
                 ice-addresses=127.0.0.1"
            ),
            _ => format!(
                "whepsrc whep-endpoint={endpoint}whep ice-addresses=127.0.0.1 \
                 ! videoconvert ! fakesink"
            ),
        };
        let pipeline = gst::parse::launch(&desc).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(next(&mut rng) % 1500));
        pipeline.set_state(gst::State::Null).unwrap();
    }
    println!("done");
}

fn proc_count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// This process's fds by kind (`socket`, `anon_inode:[eventfd]`, a path...),
/// as JSON members: what a leak is made of, if fds grow.
fn fd_kinds() -> String {
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for entry in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = target.split(':').next().unwrap_or("").to_string();
        // Paths and anonymous inodes by name; sockets, pipes by kind.
        let kind = if kind.starts_with('/') || kind == "anon_inode" {
            target
        } else {
            kind
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
        .iter()
        .map(|(k, v)| format!("{k:?}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        return client(
            &args[2],
            &args[3],
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
        );
    }
    let (cycles, seed): (u64, u64) = (arg("--cycles", 100), arg("--seed", 1));
    let batches: u64 = arg("--batches", 2);
    let server = args
        .iter()
        .position(|a| a == "--server")
        .and_then(|i| args.get(i + 1))
        .map_or("whep", String::as_str);
    let (desc, added_name, removed_name) = match server {
        "whip" => (
            WHIP_SERVER.to_string(),
            "publisher-added",
            "publisher-removed",
        ),
        "whep" => (
            format!(
                "{VIDEO} ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1"
            ),
            "viewer-added",
            "viewer-removed",
        ),
        other => panic!("--server whep or whip, not {other}"),
    };
    init();
    let pipeline = pipeline_of(&desc);
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
    let element = pipeline.by_name("server").unwrap();
    let endpoint = format!("http://{}/", element.property::<String>("bound-address"));
    std::thread::sleep(Duration::from_secs(1));
    let measure = || -> (usize, usize, f64) {
        (
            proc_count("/proc/self/task"),
            proc_count("/proc/self/fd"),
            rss_kib(),
        )
    };
    // Batches of `cycles`: after the first, one-off allocations are made
    // (codecs, caches, thread pools); the later ones show what each
    // session leaves.
    let mut samples = vec![(measure(), fd_kinds())];
    for batch in 0..batches {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--client",
                server,
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
        samples.push((measure(), fd_kinds()));
    }

    let all = messages.lock().unwrap().clone();
    let added = all.iter().filter(|s| s.name() == added_name).count();
    let removed: Vec<String> = all
        .iter()
        .filter(|s| s.name() == removed_name)
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
    type Sample = ((usize, usize, f64), String);
    let series =
        |f: &dyn Fn(&Sample) -> String| samples.iter().map(f).collect::<Vec<_>>().join(", ");
    println!(
        "{{\n  \"server\": \"{server}\",\n  \"cycles_per_batch\": {cycles},\n  \"batches\": {batches},\n  \"seed\": {seed},\n  \"server_sessions_created\": {added},\n  \"server_sessions_ended\": {},\n  \"ended_by_reason\": {{{}}},\n  \"server_threads_start_then_per_batch\": [{}],\n  \"server_fds_start_then_per_batch\": [{}],\n  \"server_rss_kib_start_then_per_batch\": [{}],\n  \"server_fd_kinds_start_then_per_batch\": [{}]\n}}",
        removed.len(),
        reasons.join(", "),
        series(&|((t, _, _), _)| t.to_string()),
        series(&|((_, f, _), _)| f.to_string()),
        series(&|((_, _, r), _)| r.to_string()),
        series(&|(_, k)| format!("{{{k}}}")),
    );
}
