//! Benchmark: many whepsrc in one process (issue 11.8). One whepserversink
//! (VP8 320x240 30 fps) in this process; a fresh child process holds N
//! pipelines `whepsrc ! videoconvert ! fakesink sync=false` and starts them
//! from its main thread, element i at i × stagger after the first (at once
//! when the previous set_state(PLAYING) returned later than that), then lets
//! all play for `--seconds` after the last one started. Prints one JSON
//! object.
//!
//!     cargo run --release --example bench_many -- [--count 50] [--stagger 50] [--runs 3] [--seconds 15]
//!     cargo run --release --example bench_many -- --probe [--load 0] [--reps 10]
//!     cargo run --release --features anchor --example bench_many -- --anchor --count 100 [--runs 3]
//!
//! `--anchor` (feature `anchor`): each run starts N of ours, then N of the
//! anchor's whepsrc (gst-plugin-webrtchttp), each set in its own child
//! process against the same server, the order alternating between runs, and
//! the JSON holds both and their ratios. The anchor's whepsrc gives RTP, ours
//! decoded video, so the anchor's child decodes with the same elements ours
//! runs inside (`rtpvp8depay ! vp8dec`), and both end in
//! `videoconvert ! fakesink sync=false`. The anchor registers its element as
//! `whepsrc`, so its child registers only the anchor's plugin; its webrtcbin
//! gets ICE pinned to loopback as ours does through `ice-addresses`.
//!
//! `--window S`: the steady CPU and fps are measured over the last S seconds
//! of each run (default 5); a longer one evens out a noisy machine.
//!
//! `--retransmission off`: ours with `do-retransmission=false`, the
//! anchor's feature set (its whepsrc asks for no lost packet: no NACK, no
//! RTX), for a like-for-like CPU comparison; the default keeps ours' NACK
//! and RTX, which cost both ends a little per packet.
//!
//! `--rtcp-interval MS`: ours' `rtcp-interval` (0: RTP's own pace, as the
//! anchor's clients report); ours reports every second by default.
//!
//! `--latency MS` sets the jitterbuffer latency of both kinds (ours: the
//! whepsrc property, default 50; the anchor: its webrtcbin's, default 200).
//!
//! Each child also reports its threads by name (digits folded: "queueN:src")
//! with their CPU over the fps window, and the parent its own (the server's)
//! over the run: which thread saturates when the sessions stop keeping up.
//!
//! Per run: how long each set_state(PLAYING) blocked its caller, the wall
//! time from the first call to the last one returning, each element's time
//! to its first decoded frame, every `session-reconnecting` message (by
//! reason) and the `viewer-added` messages of the server (one per session
//! it saw), the lowest decoded fps over the last 5 s, the child's CPU and
//! RSS.
//!
//! `--probe`: where set_state(PLAYING) blocks. One child times, in a fresh
//! pipeline each time, NULL→PLAYING and the three steps on their own for
//! `fakesrc ! fakesink`, a bare `webrtcbin`, `whepsrc ! fakesink` and
//! `whepsrc ! videoconvert ! fakesink`, and building the HTTP client the way
//! whepsrc does when it goes PLAYING (reqwest with native-tls) and a bare
//! OpenSSL connector. `--load K`: the same with K whepsrc already playing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, clk_tck, cpu_seconds, init, rss_kib, spawn_self, Stats};

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";
/// The window of `decoded_fps_min` and of the steady CPU figure, at the end
/// of the run (`--window S`, default 5).
fn fps_window() -> Duration {
    Duration::from_secs(arg("--window", 5u64))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child") => child(
            &args[2],
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
            args.get(6).map_or("ours", String::as_str),
        ),
        #[cfg(feature = "anchor")]
        Some("--anchor-version") => {
            gst::init().unwrap();
            gstwebrtchttp::plugin_register_static().unwrap();
            if let Some(p) = gst::Registry::get().find_plugin("webrtchttp") {
                println!("{}", p.version());
            }
        }
        Some("--probe-child") => {
            probe_child(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap())
        }
        _ if args.iter().any(|a| a == "--probe") => {
            probe_parent(arg("--load", 0usize), arg("--reps", 10usize))
        }
        _ => parent(
            arg("--count", 50usize),
            arg("--stagger", 50u64),
            arg("--runs", 3usize),
            arg("--seconds", 15u64),
            args.iter().any(|a| a == "--anchor"),
        ),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A reason with its numbers replaced by N, so that alike reasons count
/// together ("nothing heard for N ms (media-timeout)").
fn normalize(reason: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in reason.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// median, p90 and max of samples pooled over elements (no sample list).
fn pooled(v: &[f64]) -> String {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return "{\"median\": null, \"p90\": null, \"max\": null, \"n\": 0}".into();
    }
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "{{\"median\": {:.1}, \"p90\": {:.1}, \"max\": {:.1}, \"n\": {}}}",
        Stats(v.clone()).median(),
        p(0.9),
        v[v.len() - 1],
        v.len()
    )
}

fn reasons_json(m: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {v}", json_str(k)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// What the elements of the child report through their buses.
#[derive(Default)]
struct Counts {
    reconnect_reasons: BTreeMap<String, u64>,
    /// (ms since the first set_state, element) of each reconnection.
    reconnect_at: Vec<(f64, usize)>,
    sessions_started: u64,
    errors: Vec<String>,
}

/// One session of `kind` ("ours" or "anchor") decoding into a fakesink
/// named `sink`; `latency`: the jitterbuffer's (ms), when not 0.
fn session_pipeline(endpoint: &str, kind: &str, latency: u32) -> gst::Pipeline {
    if kind != "anchor" {
        let latency = match latency {
            0 => String::new(),
            l => format!(" latency={l}"),
        };
        let retransmission = if retransmission() {
            ""
        } else {
            " do-retransmission=false"
        };
        let rtcp = rtcp_interval().map_or(String::new(), |ms| format!(" rtcp-interval={ms}"));
        return gst::parse::launch(&format!(
            "whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=10{latency}{retransmission}{rtcp} \
             ! videoconvert ! fakesink name=sink sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    }
    let p = gst::parse::launch(&format!(
        "whepsrc name=client whep-endpoint={endpoint} timeout=10 \
         ! rtpvp8depay ! vp8dec ! videoconvert ! fakesink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let bin = p.by_name("client").unwrap().downcast::<gst::Bin>().unwrap();
    for child in bin.children() {
        if child.factory().is_some_and(|f| f.name() == "webrtcbin") {
            bench::pin_loopback(&child);
            if latency > 0 {
                child.set_property("latency", latency);
            }
        }
    }
    p
}

/// `--retransmission off`: ours without NACK/RTX, as the anchor's whepsrc
/// (its transceivers have `do-nack` off).
fn retransmission() -> bool {
    arg("--retransmission", String::from("on")) != "off"
}

/// `--rtcp-interval MS`: ours' `rtcp-interval` (0: RTP's own pace, as the
/// anchor's); None: the element's default.
fn rtcp_interval() -> Option<u32> {
    arg("--rtcp-interval", String::from("default")).parse().ok()
}

/// Registers the elements of `kind`: only one plugin may own `whepsrc`.
fn init_kind(kind: &str) {
    #[cfg(feature = "anchor")]
    if kind == "anchor" {
        gst::init().unwrap();
        gstwebrtchttp::plugin_register_static().unwrap();
        return;
    }
    assert_eq!(kind, "ours", "the anchor needs --features anchor");
    init();
}

/// This process's threads: tid → (name with digits folded, CPU ticks).
fn thread_census() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ...": comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = normalize(&stat[open + 1..close]);
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after comm.
        let ticks = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        out.insert(tid, (name, ticks));
    }
    out
}

/// Threads alive at `end`, by name: (count, % of one core since `start`).
fn census_by_name(
    start: &BTreeMap<u32, (String, u64)>,
    end: &BTreeMap<u32, (String, u64)>,
    secs: f64,
    clk: f64,
) -> BTreeMap<String, (u64, f64)> {
    let mut by: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for (tid, (name, ticks)) in end {
        let before = start.get(tid).map_or(0, |(_, t)| *t);
        let e = by.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += ticks.saturating_sub(before) as f64 / clk / secs * 100.0;
    }
    by
}

fn whepsrc_pipeline(endpoint: &str, tail: &str) -> gst::Pipeline {
    gst::parse::launch(&format!(
        "whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 timeout=10 ! {tail}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap()
}

/// Counts the buffers reaching `sink`; the first one's time (µs since `t0`,
/// plus one) goes to `first`.
fn count(sink: &gst::Element, frames: Arc<AtomicU64>, first: Arc<AtomicU64>, t0: Instant) {
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if frames.fetch_add(1, Ordering::SeqCst) == 0 {
                first.store(t0.elapsed().as_micros() as u64 + 1, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
}

/// Child: `n` whepsrc pipelines started `stagger` ms apart, then playing for
/// `seconds`. Prints `key value...` lines, then `done`, and stops on stdin.
fn child(endpoint: &str, n: usize, stagger: u64, seconds: u64, kind: &str) {
    init_kind(kind);
    let clk = clk_tck();
    let rss0 = rss_kib();
    let threads0 = threads();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let t0_cell: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    let pipelines: Vec<gst::Pipeline> = (0..n)
        .map(|i| {
            let p = session_pipeline(endpoint, kind, arg("--latency", 0u32));
            let (counts, t0_cell) = (counts.clone(), t0_cell.clone());
            p.bus().unwrap().set_sync_handler(move |_, msg| {
                match msg.view() {
                    gst::MessageView::Element(e) => {
                        if let Some(s) = e.structure() {
                            if s.has_name("session-reconnecting") {
                                let reason = s.get::<String>("reason").unwrap_or_default();
                                let at = t0_cell.get().map_or(f64::NAN, |t| ms(t.elapsed()));
                                let mut c = counts.lock().unwrap();
                                *c.reconnect_reasons.entry(normalize(&reason)).or_default() += 1;
                                c.reconnect_at.push((at, i));
                            } else if s.has_name("session-started") {
                                counts.lock().unwrap().sessions_started += 1;
                            }
                        }
                    }
                    gst::MessageView::Error(e) => {
                        counts.lock().unwrap().errors.push(e.error().to_string());
                    }
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
            p
        })
        .collect();
    let rss_made = rss_kib();
    let frames: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let firsts: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let t0 = Instant::now();
    for (i, p) in pipelines.iter().enumerate() {
        count(
            &p.by_name("sink").unwrap(),
            frames[i].clone(),
            firsts[i].clone(),
            t0,
        );
    }

    let mut block_ms = Vec::with_capacity(n);
    let mut started_at = Vec::with_capacity(n);
    let cpu0 = cpu_seconds(clk);
    let _ = t0_cell.set(t0);
    for (i, p) in pipelines.iter().enumerate() {
        let due = t0 + Duration::from_millis(stagger * i as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let s = Instant::now();
        started_at.push(ms(s - t0));
        p.set_state(gst::State::Playing).unwrap();
        block_ms.push(ms(s.elapsed()));
    }
    // From the first call to the last one returning.
    let all_started = t0.elapsed() - Duration::from_secs_f64(started_at[0] / 1000.0);
    let cpu_started = cpu_seconds(clk);

    let total = Duration::from_secs(seconds);
    let window_start = total.saturating_sub(fps_window());
    std::thread::sleep(window_start);
    let before: Vec<u64> = frames.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let (cpu_w0, w0, census0) = (cpu_seconds(clk), Instant::now(), thread_census());
    // The parent counts the server's key frames over the same window.
    println!("window-start");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(total - window_start);
    println!("window-end");
    std::io::stdout().flush().unwrap();
    let secs = w0.elapsed().as_secs_f64();
    let cpu_w1 = cpu_seconds(clk);
    let census = census_by_name(&census0, &thread_census(), secs, clk);
    let rss_end = rss_kib();
    let threads_end = threads();
    let fps: Vec<f64> = frames
        .iter()
        .zip(&before)
        .map(|(c, b)| (c.load(Ordering::SeqCst) - b) as f64 / secs)
        .collect();

    let first_ms: Vec<f64> = firsts
        .iter()
        .zip(&started_at)
        .map(|(f, s)| match f.load(Ordering::SeqCst) {
            0 => f64::NAN,
            us => (us - 1) as f64 / 1000.0 - s,
        })
        .collect();

    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let c = counts.lock().unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "set_state_ms {}", list(&block_ms)).unwrap();
    writeln!(out, "all_started_s {:.3}", all_started.as_secs_f64()).unwrap();
    writeln!(out, "first_frame_ms {}", list(&first_ms)).unwrap();
    writeln!(out, "fps {}", list(&fps)).unwrap();
    writeln!(
        out,
        "cpu_start {:.1}",
        (cpu_started - cpu0) / all_started.as_secs_f64() * 100.0
    )
    .unwrap();
    writeln!(out, "cpu_steady {:.1}", (cpu_w1 - cpu_w0) / secs * 100.0).unwrap();
    writeln!(out, "rss_made_kib {:.0}", rss_made - rss0).unwrap();
    writeln!(out, "rss_playing_kib {:.0}", rss_end - rss0).unwrap();
    writeln!(
        out,
        "threads_playing {}",
        threads_end.saturating_sub(threads0)
    )
    .unwrap();
    writeln!(out, "sessions_started {}", c.sessions_started).unwrap();
    for (name, (k, cpu)) in &census {
        writeln!(out, "thread {k} {cpu:.2} {name}").unwrap();
    }
    for (reason, k) in &c.reconnect_reasons {
        writeln!(out, "reason {k} {reason}").unwrap();
    }
    let during_start = c
        .reconnect_at
        .iter()
        .filter(|(at, _)| *at <= ms(all_started))
        .count();
    writeln!(out, "reconnects_during_start {during_start}").unwrap();
    let ats: Vec<f64> = c.reconnect_at.iter().map(|(at, _)| *at).collect();
    writeln!(out, "reconnect_at_ms {}", list(&ats)).unwrap();
    for e in c.errors.iter().take(5) {
        writeln!(out, "error {e}").unwrap();
    }
    writeln!(out, "errors {}", c.errors.len()).unwrap();
    writeln!(out, "done").unwrap();
    out.flush().unwrap();
    drop(out);
    drop(c);

    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    println!("stopped");
}

/// The server's view of a run.
#[derive(Default)]
struct ServerCounts {
    viewers_added: u64,
    removed_reasons: BTreeMap<String, u64>,
    /// Key unit requests that reached the encoder, and key frames it made.
    keyframe_requests: u64,
    keyframes: u64,
}

/// The server: whepserversink in this process; its messages, the key unit
/// requests reaching its encoder and the key frames it makes are counted.
/// `peer_timeout`: whepserversink's `peer-timeout`, ms.
fn server(
    max_sessions: u32,
    peer_timeout: u32,
) -> (gst::Element, String, Arc<Mutex<ServerCounts>>) {
    let pipeline = gst::parse::launch(&format!(
        "{VIDEO} name=enc ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1 max-sessions={max_sessions} peer-timeout={peer_timeout}"
    ))
    .unwrap();
    let counts = Arc::new(Mutex::new(ServerCounts::default()));
    let enc_src = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("enc")
        .unwrap()
        .static_pad("src")
        .unwrap();
    let c = counts.clone();
    enc_src.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_UPSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b))
                    if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) =>
                {
                    c.lock().unwrap().keyframes += 1
                }
                Some(gst::PadProbeData::Event(e))
                    if e.structure().is_some_and(|s| s.has_name("GstForceKeyUnit")) =>
                {
                    c.lock().unwrap().keyframe_requests += 1
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    let c = counts.clone();
    pipeline
        .downcast_ref::<gst::Pipeline>()
        .unwrap()
        .bus()
        .unwrap()
        .set_sync_handler(move |_, msg| {
            if let gst::MessageView::Element(e) = msg.view() {
                if let Some(s) = e.structure() {
                    if s.has_name("viewer-added") {
                        c.lock().unwrap().viewers_added += 1;
                    } else if s.has_name("viewer-removed") {
                        let reason = s.get::<String>("reason").unwrap_or_default();
                        *c.lock()
                            .unwrap()
                            .removed_reasons
                            .entry(normalize(&reason))
                            .or_default() += 1;
                    }
                }
            }
            gst::BusSyncReply::Drop
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("server")
        .unwrap();
    let endpoint = format!("http://{}/whep", sink.property::<String>("bound-address"));
    (pipeline, endpoint, counts)
}

fn floats(s: &str) -> Vec<f64> {
    s.split_whitespace()
        .map(|x| x.parse().unwrap_or(f64::NAN))
        .collect()
}

struct Run {
    set_state_ms: Vec<f64>,
    all_started_s: f64,
    first_frame_ms: Vec<f64>,
    fps: Vec<f64>,
    reconnects: u64,
    reasons: BTreeMap<String, u64>,
    reconnects_during_start: f64,
    sessions_started: f64,
    viewers_added: u64,
    viewers_removed: BTreeMap<String, u64>,
    cpu_start: f64,
    cpu_steady: f64,
    rss_made_per_element: f64,
    rss_playing_per_element: f64,
    /// Threads the child gained, per element, while all played.
    threads_per_element: f64,
    errors: f64,
    /// Reconnections per second since the first set_state.
    reconnects_per_second: Vec<u64>,
    /// The server process (this one), % of one core, over the run.
    server_cpu: f64,
    /// At the server's encoder, over the run.
    keyframe_requests_per_second: f64,
    keyframes_per_second: f64,
    /// The same over the child's steady window.
    steady_keyframe_requests_per_second: f64,
    steady_keyframes_per_second: f64,
    /// All cores, over the run: how busy the machine was (others included).
    machine_busy_percent: f64,
    load_before: f64,
    load_after: f64,
    /// The child's threads by name: (count, % of one core over the fps window).
    child_threads: BTreeMap<String, (u64, f64)>,
    /// The server's (this process's) threads by name, over the run.
    server_threads: BTreeMap<String, (u64, f64)>,
}

/// The 1-minute load average.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// (busy, total) jiffies of all cores, from /proc/stat.
fn machine_busy() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

fn run_once(
    endpoint: &str,
    server: &Arc<Mutex<ServerCounts>>,
    n: usize,
    stagger: u64,
    seconds: u64,
    kind: &str,
) -> Run {
    *server.lock().unwrap() = ServerCounts::default();
    let load_before = loadavg();
    let (clk, busy0) = (clk_tck(), machine_busy());
    let (cpu0, wall0, census0) = (cpu_seconds(clk), Instant::now(), thread_census());
    let mut child = spawn_self(&[
        "--child",
        endpoint,
        &n.to_string(),
        &stagger.to_string(),
        &seconds.to_string(),
        kind,
        "--latency",
        &arg("--latency", 0u32).to_string(),
        "--window",
        &arg("--window", 5u64).to_string(),
        "--retransmission",
        if retransmission() { "on" } else { "off" },
        "--rtcp-interval",
        &rtcp_interval().map_or("default".to_string(), |ms| ms.to_string()),
    ]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut child_threads = BTreeMap::new();
    let key_units = || {
        let s = server.lock().unwrap();
        (s.keyframe_requests, s.keyframes, Instant::now())
    };
    let (mut window_start, mut window_end) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "done" {
            break;
        }
        if line == "window-start" {
            window_start = Some(key_units());
            continue;
        }
        if line == "window-end" {
            window_end = Some(key_units());
            continue;
        }
        let (k, v) = line.split_once(' ').unwrap_or((&line, ""));
        match k {
            "reason" => {
                let (c, r) = v.split_once(' ').unwrap_or((v, ""));
                reasons.insert(r.to_string(), c.parse().unwrap_or(0));
            }
            "thread" => {
                let mut f = v.splitn(3, ' ');
                let count = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                let cpu = f.next().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
                child_threads.insert(f.next().unwrap_or("").to_string(), (count, cpu));
            }
            "error" => eprintln!("child error: {v}"),
            _ => {
                kv.insert(k.to_string(), v.to_string());
            }
        }
    }
    let run_secs = wall0.elapsed().as_secs_f64();
    let steady = match (window_start, window_end) {
        (Some((r0, k0, t0)), Some((r1, k1, t1))) => {
            let secs = (t1 - t0).as_secs_f64();
            ((r1 - r0) as f64 / secs, (k1 - k0) as f64 / secs)
        }
        _ => (f64::NAN, f64::NAN),
    };
    let server_cpu = (cpu_seconds(clk) - cpu0) / run_secs * 100.0;
    let server_threads = census_by_name(&census0, &thread_census(), run_secs, clk);
    let busy1 = machine_busy();
    let machine_busy_percent = (busy1.0 - busy0.0) / (busy1.1 - busy0.1) * 100.0;
    let load_after = loadavg();
    // Counted before the child stops: its DELETEs are not sessions lost.
    let (viewers_added, viewers_removed, keyframe_requests, keyframes) = {
        let s = server.lock().unwrap();
        (
            s.viewers_added,
            s.removed_reasons.clone(),
            s.keyframe_requests,
            s.keyframes,
        )
    };
    writeln!(child.stdin.as_mut().unwrap(), "stop").unwrap();
    for line in lines.by_ref() {
        if line.map(|l| l == "stopped").unwrap_or(true) {
            break;
        }
    }
    let _ = child.wait();
    let get = |k: &str| kv.get(k).map(String::as_str).unwrap_or("");
    let num = |k: &str| get(k).trim().parse::<f64>().unwrap_or(f64::NAN);
    Run {
        set_state_ms: floats(get("set_state_ms")),
        all_started_s: num("all_started_s"),
        first_frame_ms: floats(get("first_frame_ms")),
        fps: floats(get("fps")),
        reconnects: reasons.values().sum(),
        reasons,
        reconnects_during_start: num("reconnects_during_start"),
        sessions_started: num("sessions_started"),
        viewers_added,
        viewers_removed,
        cpu_start: num("cpu_start"),
        cpu_steady: num("cpu_steady"),
        rss_made_per_element: num("rss_made_kib") / n as f64,
        rss_playing_per_element: num("rss_playing_kib") / n as f64,
        threads_per_element: num("threads_playing") / n as f64,
        errors: num("errors"),
        reconnects_per_second: {
            let mut h = Vec::new();
            for at in floats(get("reconnect_at_ms")) {
                if at.is_finite() {
                    let b = (at / 1000.0) as usize;
                    if h.len() <= b {
                        h.resize(b + 1, 0);
                    }
                    h[b] += 1;
                }
            }
            h
        },
        server_cpu,
        keyframe_requests_per_second: keyframe_requests as f64 / run_secs,
        keyframes_per_second: keyframes as f64 / run_secs,
        steady_keyframe_requests_per_second: steady.0,
        steady_keyframes_per_second: steady.1,
        machine_busy_percent,
        load_before,
        load_after,
        child_threads,
        server_threads,
    }
}

/// Threads by name, medians over runs (a name missing in a run counts 0):
/// how many per session (or per process with `per` 1) and their CPU
/// together (% of one core), the names with the most CPU first.
fn threads_json(
    runs: &[Run],
    of: fn(&Run) -> &BTreeMap<String, (u64, f64)>,
    per: f64,
    top: usize,
) -> String {
    let names: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|r| of(r).keys()).collect();
    let mut rows: Vec<(String, f64, f64)> = names
        .into_iter()
        .map(|name| {
            let get = |f: fn(&(u64, f64)) -> f64| {
                Stats(
                    runs.iter()
                        .map(|r| of(r).get(name).map_or(0.0, f))
                        .collect(),
                )
                .median()
            };
            (name.clone(), get(|x| x.0 as f64) / per, get(|x| x.1))
        })
        .collect();
    rows.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    let items: Vec<String> = rows
        .iter()
        .take(top)
        .map(|(name, count, cpu)| {
            format!(
                "      {}: {{\"count\": {count:.2}, \"cpu_percent_of_one_core_all\": {cpu:.1}}}",
                json_str(name)
            )
        })
        .collect();
    format!("{{\n{}\n    }}", items.join(",\n"))
}

/// The child's CPU time per frame it decoded over the fps window, ms: what a
/// frame costs, comparable when the sessions no longer keep up.
fn cpu_ms_per_frame(r: &Run) -> f64 {
    r.cpu_steady * 10.0 / r.fps.iter().sum::<f64>()
}

fn run_json(r: &Run) -> String {
    let no_frame = r.first_frame_ms.iter().filter(|x| !x.is_finite()).count();
    format!(
        "    {{\"set_state_playing_ms\": {}, \"all_started_s\": {:.3}, \"first_frame_ms\": {}, \"elements_without_frame\": {no_frame}, \"spurious_reconnects\": {}, \"reconnects_during_start\": {}, \"reconnect_reasons\": {}, \"reconnects_per_second_since_first_start\": {:?}, \"sessions_started\": {}, \"server_viewer_added\": {}, \"server_viewer_removed_before_stop\": {}, \"decoded_fps\": {}, \"child_cpu_percent_start_phase\": {:.1}, \"child_cpu_percent_steady\": {:.1}, \"child_cpu_ms_per_decoded_frame\": {:.3}, \"child_rss_kib_per_element_made\": {:.0}, \"child_rss_kib_per_element_playing\": {:.0}, \"child_threads_per_element_playing\": {:.1}, \"errors\": {}, \"server_cpu_percent_of_one_core\": {:.1}, \"server_keyframe_requests_per_second\": {:.1}, \"server_keyframes_per_second\": {:.1}, \"server_keyframe_requests_per_second_steady\": {}, \"server_keyframes_per_second_steady\": {}, \"machine_busy_percent_all_cores\": {:.1}, \"loadavg_1min_before\": {:.2}, \"loadavg_1min_after\": {:.2}}}",
        pooled(&r.set_state_ms),
        r.all_started_s,
        pooled(&r.first_frame_ms),
        r.reconnects,
        r.reconnects_during_start,
        reasons_json(&r.reasons),
        r.reconnects_per_second,
        r.sessions_started,
        r.viewers_added,
        reasons_json(&r.viewers_removed),
        pooled(&r.fps),
        r.cpu_start,
        r.cpu_steady,
        cpu_ms_per_frame(r),
        r.rss_made_per_element,
        r.rss_playing_per_element,
        r.threads_per_element,
        r.errors,
        r.server_cpu,
        r.keyframe_requests_per_second,
        r.keyframes_per_second,
        bench::json_number(r.steady_keyframe_requests_per_second),
        bench::json_number(r.steady_keyframes_per_second),
        r.machine_busy_percent,
        r.load_before,
        r.load_after,
    )
}

/// The summary fields of one kind's runs (no braces), then `per_run`.
fn summary_json(all: &[Run], n: usize) -> String {
    let over = |f: &dyn Fn(&Run) -> f64| Stats(all.iter().map(f).collect()).json();
    let pool = |f: &dyn Fn(&Run) -> &Vec<f64>| {
        pooled(
            &all.iter()
                .flat_map(|r| f(r).iter().copied())
                .collect::<Vec<_>>(),
        )
    };
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for r in all {
        for (k, v) in &r.reasons {
            *reasons.entry(k.clone()).or_default() += v;
        }
    }
    let per_run: Vec<String> = all.iter().map(run_json).collect();
    format!(
        "  \"set_state_playing_ms_all_elements\": {},\n  \"set_state_playing_ms_median\": {},\n  \"set_state_playing_ms_max\": {},\n  \"all_started_s\": {},\n  \"first_frame_ms_all_elements\": {},\n  \"first_frame_ms_median\": {},\n  \"first_frame_ms_max\": {},\n  \"elements_without_frame\": {},\n  \"spurious_reconnects\": {},\n  \"reconnects_during_start\": {},\n  \"reconnect_reasons_total\": {},\n  \"server_viewer_added\": {},\n  \"decoded_fps_min\": {},\n  \"decoded_fps_median\": {},\n  \"child_cpu_percent_of_one_core_start_phase\": {},\n  \"child_cpu_percent_of_one_core_steady\": {},\n  \"child_cpu_percent_of_one_core_per_session_steady\": {},\n  \"child_cpu_ms_per_decoded_frame\": {},\n  \"child_rss_kib_per_element_made\": {},\n  \"child_rss_kib_per_element_playing\": {},\n  \"child_threads_per_element_playing\": {},\n  \"child_threads_by_name\": {},\n  \"server_cpu_percent_of_one_core\": {},\n  \"server_threads_by_name_busiest\": {},\n  \"server_keyframe_requests_per_second\": {},\n  \"server_keyframes_per_second\": {},\n  \"server_keyframe_requests_per_second_steady\": {},\n  \"server_keyframes_per_second_steady\": {},\n  \"machine_busy_percent_all_cores\": {},\n  \"loadavg_1min_before\": {},\n  \"per_run\": [\n{}\n  ]",
        pool(&|r| &r.set_state_ms),
        over(&|r| Stats(r.set_state_ms.clone()).median()),
        over(&|r| r.set_state_ms.iter().cloned().fold(f64::NAN, f64::max)),
        over(&|r| r.all_started_s),
        pool(&|r| &r.first_frame_ms),
        over(&|r| Stats(r.first_frame_ms.clone()).median()),
        over(&|r| r.first_frame_ms.iter().cloned().fold(f64::NAN, f64::max)),
        over(&|r| r.first_frame_ms.iter().filter(|x| !x.is_finite()).count() as f64),
        over(&|r| r.reconnects as f64),
        over(&|r| r.reconnects_during_start),
        reasons_json(&reasons),
        over(&|r| r.viewers_added as f64),
        over(&|r| Stats(r.fps.clone()).min()),
        over(&|r| Stats(r.fps.clone()).median()),
        over(&|r| r.cpu_start),
        over(&|r| r.cpu_steady),
        over(&|r| r.cpu_steady / n as f64),
        over(&cpu_ms_per_frame),
        over(&|r| r.rss_made_per_element),
        over(&|r| r.rss_playing_per_element),
        over(&|r| r.threads_per_element),
        threads_json(all, |r| &r.child_threads, n as f64, usize::MAX),
        over(&|r| r.server_cpu),
        threads_json(all, |r| &r.server_threads, 1.0, 8),
        over(&|r| r.keyframe_requests_per_second),
        over(&|r| r.keyframes_per_second),
        over(&|r| r.steady_keyframe_requests_per_second),
        over(&|r| r.steady_keyframes_per_second),
        over(&|r| r.machine_busy_percent),
        over(&|r| r.load_before),
        per_run.join(",\n"),
    )
}

fn parent(n: usize, stagger: u64, runs: usize, seconds: u64, anchor: bool) {
    init();
    // The server's default peer-timeout. The anchor reports (RTCP) at RTP's
    // default pace, up to 6.2 s apart: before the server waited longer for
    // clients whose pace it does not know yet, this ended about half of its
    // sessions (`bench_many_anchor_20_before_peer_timeout.json`).
    let peer_timeout = 5000;
    let (pipeline, endpoint, counts) = server((2 * n).max(100) as u32, peer_timeout);
    let kinds: &[&str] = if anchor {
        &["ours", "anchor"]
    } else {
        &["ours"]
    };
    let mut all: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for i in 0..runs {
        // Alternate which kind goes first: neither always runs on the
        // machine the other just left.
        let mut order = kinds.to_vec();
        if i % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            let r = run_once(&endpoint, &counts, n, stagger, seconds, kind);
            let ss = Stats(r.set_state_ms.clone());
            let ff = Stats(r.first_frame_ms.clone());
            let no_frame = r.first_frame_ms.iter().filter(|x| !x.is_finite()).count();
            eprintln!(
                "run {i} {kind}: set_state median {:.1} max {:.1} ms, all started {:.2} s, first frame median {:.0} ms ({} without), reconnects {} {:?}, viewer-added {} of {n}, fps min {:.1} median {:.1}, cpu {:.0}%/{:.0}%, rss {:.0} KiB/element, threads {:.1}/element, server cpu {:.0}%, machine busy {:.0}%, load before {:.1}",
                ss.median(),
                r.set_state_ms.iter().cloned().fold(f64::NAN, f64::max),
                r.all_started_s,
                ff.median(),
                no_frame,
                r.reconnects,
                r.reasons,
                r.viewers_added,
                Stats(r.fps.clone()).min(),
                Stats(r.fps.clone()).median(),
                r.cpu_start,
                r.cpu_steady,
                r.rss_playing_per_element,
                r.threads_per_element,
                r.server_cpu,
                r.machine_busy_percent,
                r.load_before,
            );
            all.entry(kind).or_default().push(r);
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();

    let head = format!(
        "  \"count\": {n},\n  \"stagger_ms\": {stagger},\n  \"runs\": {runs},\n  \"seconds\": {seconds},\n  \"start_schedule\": \"set_state(PLAYING) of element i is called at i*stagger ms after the first, or at once if the previous call returned later\",\n  \"steady_window_s\": {},\n  \"jitterbuffer_latency_ms\": {},\n  \"ours_do_retransmission\": {},\n  \"ours_rtcp_interval_ms\": {},",
        arg("--window", 5u64),
        match arg("--latency", 0u32) {
            0 => "null".to_string(),
            l => l.to_string(),
        },
        retransmission(),
        rtcp_interval().map_or("null".to_string(), |ms| ms.to_string())
    );
    if !anchor {
        println!("{{\n{head}\n{}\n}}", summary_json(&all["ours"], n));
        return;
    }
    let median =
        |kind: &str, f: &dyn Fn(&Run) -> f64| Stats(all[kind].iter().map(f).collect()).median();
    let ratio = |f: &dyn Fn(&Run) -> f64| {
        let r = median("ours", f) / median("anchor", f);
        if r.is_finite() {
            format!("{r:.2}")
        } else {
            "null".to_string()
        }
    };
    let ratios = format!(
        "{{\"cpu_per_session_steady\": {}, \"cpu_per_decoded_frame\": {}, \"rss_per_session_playing\": {}, \"threads_per_session\": {}, \"decoded_fps_median\": {}, \"decoded_fps_min\": {}, \"first_frame_ms_median\": {}, \"server_cpu\": {}, \"server_keyframes_per_second\": {}}}",
        ratio(&|r| r.cpu_steady),
        ratio(&cpu_ms_per_frame),
        ratio(&|r| r.rss_playing_per_element),
        ratio(&|r| r.threads_per_element),
        ratio(&|r| Stats(r.fps.clone()).median()),
        ratio(&|r| Stats(r.fps.clone()).min()),
        ratio(&|r| Stats(r.first_frame_ms.clone()).median()),
        ratio(&|r| r.server_cpu),
        ratio(&|r| r.keyframes_per_second),
    );
    println!(
        "{{\n{head}\n  \"anchor\": \"gst-plugin-webrtchttp {} whepsrc ! rtpvp8depay ! vp8dec ! videoconvert ! fakesink (it gives RTP), ours whepsrc ! videoconvert ! fakesink (it depayloads and decodes with rtpvp8depay ! vp8dec inside)\",\n  \"server_peer_timeout_ms\": {peer_timeout},\n  \"order\": \"ours then anchor in even runs, anchor then ours in odd runs; one child process per kind and run, same server\",\n  \"ratio_ours_to_anchor_of_medians\": {ratios},\n  \"ours\": {{\n{}\n  }},\n  \"anchor\": {{\n{}\n  }}\n}}",
        bench::anchor_version(),
        summary_json(&all["ours"], n),
        summary_json(&all["anchor"], n),
    );
}

/// Times `f` `reps` times; prints `probe <name> <ms...>`.
fn probe(name: &str, reps: usize, mut f: impl FnMut() -> f64) {
    let v: Vec<f64> = (0..reps).map(|_| f()).collect();
    println!(
        "probe {name} {}",
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::io::stdout().flush().unwrap();
}

fn timed(f: impl FnOnce()) -> f64 {
    let s = Instant::now();
    f();
    ms(s.elapsed())
}

/// Child of `--probe`: `load` whepsrc playing (started 50 ms apart, then
/// 3 s to settle), then each piece timed `reps` times in fresh pipelines.
fn probe_child(endpoint: &str, load: usize, reps: usize) {
    init();
    let loaders: Vec<gst::Pipeline> = (0..load)
        .map(|_| {
            let p = whepsrc_pipeline(endpoint, "videoconvert ! fakesink sync=false");
            p.set_state(gst::State::Playing).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            p
        })
        .collect();
    if load > 0 {
        std::thread::sleep(Duration::from_secs(3));
    }
    type Make<'a> = Box<dyn Fn() -> gst::Pipeline + 'a>;
    let kinds: Vec<(&str, Make)> = vec![
        (
            "fakesrc_fakesink",
            Box::new(|| {
                gst::parse::launch("fakesrc is-live=true ! fakesink sync=false")
                    .unwrap()
                    .downcast::<gst::Pipeline>()
                    .unwrap()
            }),
        ),
        (
            "bare_webrtcbin",
            Box::new(|| {
                let p = gst::Pipeline::new();
                let bin = gst::Bin::new();
                bin.add(&gst::ElementFactory::make("webrtcbin").build().unwrap())
                    .unwrap();
                p.add(&bin).unwrap();
                p
            }),
        ),
        (
            "whepsrc_fakesink",
            Box::new(|| whepsrc_pipeline(endpoint, "fakesink sync=false")),
        ),
        (
            "whepsrc_videoconvert_fakesink",
            Box::new(|| whepsrc_pipeline(endpoint, "videoconvert ! fakesink sync=false")),
        ),
    ];
    for (name, make) in &kinds {
        let mut keep = Vec::new();
        probe(&format!("{name}.create"), reps, || {
            let mut p = None;
            let t = timed(|| p = Some(make()));
            keep.push(p.unwrap());
            t
        });
        // Whole NULL→PLAYING, elements made a moment before (as bench_many).
        let mut i = 0;
        probe(&format!("{name}.null_to_playing"), reps, || {
            let p = &keep[i];
            i += 1;
            timed(|| {
                p.set_state(gst::State::Playing).unwrap();
            })
        });
        for p in keep.drain(..) {
            p.set_state(gst::State::Null).unwrap();
        }
        // The steps on their own.
        let made: Vec<gst::Pipeline> = (0..reps).map(|_| make()).collect();
        let mut steps: [Vec<f64>; 3] = Default::default();
        for p in &made {
            for (k, state) in [gst::State::Ready, gst::State::Paused, gst::State::Playing]
                .into_iter()
                .enumerate()
            {
                steps[k].push(timed(|| {
                    p.set_state(state).unwrap();
                }));
            }
        }
        for (k, step) in ["null_to_ready", "ready_to_paused", "paused_to_playing"]
            .iter()
            .enumerate()
        {
            let mut it = steps[k].iter().copied();
            probe(&format!("{name}.{step}"), reps, || it.next().unwrap());
        }
        for p in made {
            p.set_state(gst::State::Null).unwrap();
        }
    }
    // What whepsrc's PAUSED→PLAYING does first: its HTTP client.
    probe("reqwest_native_tls_client_build", reps, || {
        timed(|| {
            let _c = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap();
        })
    });
    probe("openssl_connector_build", reps, || {
        timed(|| {
            let _c = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .unwrap()
                .build();
        })
    });
    println!("done");
    std::io::stdout().flush().unwrap();
    for p in loaders {
        p.set_state(gst::State::Null).unwrap();
    }
}

fn probe_parent(load: usize, reps: usize) {
    init();
    let (pipeline, endpoint, _) = server(200, 5000);
    let mut child = spawn_self(&[
        "--probe-child",
        &endpoint,
        &load.to_string(),
        &reps.to_string(),
    ]);
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut items = Vec::new();
    for line in lines {
        let line = line.unwrap();
        if line == "done" {
            break;
        }
        if let Some(rest) = line.strip_prefix("probe ") {
            let (name, v) = rest.split_once(' ').unwrap_or((rest, ""));
            let v = floats(v);
            let first = v.first().copied().unwrap_or(f64::NAN);
            items.push(format!(
                "  {}: {{\"first\": {first:.2}, \"median\": {:.2}, \"max\": {:.2}, \"n\": {}}}",
                json_str(name),
                Stats(v.clone()).median(),
                v.iter().cloned().fold(f64::NAN, f64::max),
                v.len()
            ));
        }
    }
    let _ = child.wait();
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "{{\n  \"load_whepsrc_playing\": {load},\n  \"reps\": {reps},\n  \"unit\": \"ms\",\n{}\n}}",
        items.join(",\n")
    );
}

/// This process's threads.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}
