//! What the benchmarks share: command-line options, statistics,
//! re-executing the benchmark as a fresh client process, and the bare
//! webrtcbin → webrtcbin baseline.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

/// A whipserversrc named `server` on a free loopback port, ICE on loopback.
pub const WHIP_SERVER: &str =
    "whipserversrc name=server address=127.0.0.1:0 ice-addresses=127.0.0.1";

/// GStreamer with this crate's elements registered.
pub fn init() {
    gst::init().unwrap();
    gstwhipwhep::plugin_register_static().unwrap();
}

/// The value after `name` on the command line, or `default` when it is
/// missing or does not parse.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A figure for the JSON output: one decimal, `null` when not finite.
pub fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "null".into()
    }
}

/// Links `pad` to a new fakesink (no sync, no preroll) in `bin`, started,
/// and returns the fakesink's sink pad.
pub fn fakesink_for(bin: &gst::Pipeline, pad: &gst::Pad) -> gst::Pad {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .unwrap();
    bin.add(&sink).unwrap();
    sink.sync_state_with_parent().unwrap();
    let sinkpad = sink.static_pad("sink").unwrap();
    pad.link(&sinkpad).unwrap();
    sinkpad
}

/// Adds the time each buffer reaches the sink pad of the element named
/// `name` in `bin` to `arrivals`.
pub fn record_arrivals(bin: &impl IsA<gst::Bin>, name: &str, arrivals: &Arc<Mutex<Vec<Instant>>>) {
    let arrivals = arrivals.clone();
    bin.by_name(name)
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            arrivals.lock().unwrap().push(Instant::now());
            gst::PadProbeReturn::Ok
        });
}

/// Samples of one measure; NaN for a failed run.
pub struct Stats(pub Vec<f64>);

impl Stats {
    fn finite(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.0.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    pub fn median(&self) -> f64 {
        let v = self.finite();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.finite().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.finite().last().copied().unwrap_or(f64::NAN)
    }

    pub fn json(&self) -> String {
        let v = self.finite();
        format!(
            "{{\"median\": {}, \"min\": {}, \"max\": {}, \"n\": {}, \"failed\": {}, \"samples\": [{}]}}",
            json_number(self.median()),
            json_number(self.min()),
            json_number(self.max()),
            v.len(),
            self.0.len() - v.len(),
            v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ")
        )
    }
}

/// This benchmark again, as a fresh client process talking over pipes.
pub fn spawn_self(args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The rest of the first line starting with `key`, skipping other lines.
pub fn read_line_after(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    key: &str,
) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix(key) {
            return v.trim().to_string();
        }
    }
    String::new()
}

pub fn read_value(lines: &mut impl Iterator<Item = std::io::Result<String>>, key: &str) -> f64 {
    read_line_after(lines, key).parse().unwrap_or(f64::NAN)
}

/// Pins `webrtcbin`'s ICE to 127.0.0.1 and turns UPnP off; call it
/// before set-local-description.
pub fn pin_loopback(webrtcbin: &gst::Element) {
    let ice = webrtcbin.property::<gst_webrtc::WebRTCICE>("ice-agent");
    ice.property::<glib::Object>("agent")
        .set_property("upnp", false);
    ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
}

/// The baseline: `video` (encoded VP8) sent from one plain webrtcbin to
/// another in this process, default settings but ICE pinned to loopback,
/// negotiated in memory. Returns the time from PLAYING to the first buffer
/// at the sink named `first` in `receiver` (what the receiving pad feeds).
pub fn bare_webrtcbin(video: &str, receiver: &str) -> Option<Duration> {
    let pipeline = gst::parse::launch(&format!(
        "{video} ! rtpvp8pay ! application/x-rtp,media=video,encoding-name=VP8,payload=96 \
         ! webrtcbin name=send bundle-policy=max-bundle webrtcbin name=recv bundle-policy=max-bundle"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let send = pipeline.by_name("send").unwrap();
    let recv = pipeline.by_name("recv").unwrap();
    pin_loopback(&send);
    pin_loopback(&recv);
    let first = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let (f, bin, receiver) = (first.clone(), pipeline.clone(), receiver.to_string());
    recv.connect_pad_added(move |_, pad| {
        let tail = gst::parse::bin_from_description(&receiver, true).unwrap();
        bin.add(&tail).unwrap();
        tail.sync_state_with_parent().unwrap();
        let f = f.clone();
        tail.by_name("first")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let _ = f.compare_exchange(
                    0,
                    t0.elapsed().as_micros() as u64 + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                gst::PadProbeReturn::Remove
            });
        pad.link(&tail.static_pad("sink").unwrap()).unwrap();
    });
    for (a, b) in [(&send, &recv), (&recv, &send)] {
        let b = b.clone();
        a.connect("on-ice-candidate", false, move |args| {
            let mline = args[1].get::<u32>().unwrap();
            let cand = args[2].get::<String>().unwrap();
            b.emit_by_name::<()>("add-ice-candidate", &[&mline, &cand]);
            None
        });
    }
    let (s, r) = (send.clone(), recv.clone());
    send.connect("on-negotiation-needed", false, move |_| {
        let (s2, r2) = (s.clone(), r.clone());
        let promise = gst::Promise::with_change_func(move |reply| {
            let offer = reply
                .unwrap()
                .unwrap()
                .get::<gst_webrtc::WebRTCSessionDescription>("offer")
                .unwrap();
            s2.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
            r2.emit_by_name::<()>("set-remote-description", &[&offer, &None::<gst::Promise>]);
            let (s3, r3) = (s2.clone(), r2.clone());
            let promise = gst::Promise::with_change_func(move |reply| {
                let answer = reply
                    .unwrap()
                    .unwrap()
                    .get::<gst_webrtc::WebRTCSessionDescription>("answer")
                    .unwrap();
                r3.emit_by_name::<()>("set-local-description", &[&answer, &None::<gst::Promise>]);
                s3.emit_by_name::<()>("set-remote-description", &[&answer, &None::<gst::Promise>]);
            });
            r2.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        });
        s.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        None
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    match first.load(Ordering::SeqCst) {
        0 => None,
        us => Some(Duration::from_micros(us - 1)),
    }
}

/// Prints the baseline as `ttff_ms <value>` for the parent process.
pub fn print_baseline(ttff: Option<Duration>) {
    use std::io::Write;
    match ttff {
        Some(d) => println!("ttff_ms {:.3}", d.as_secs_f64() * 1000.0),
        None => println!("ttff_ms nan"),
    }
    std::io::stdout().flush().unwrap();
}

/// utime + stime of this process, in seconds.
pub fn cpu_seconds(clk_tck: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clk_tck
}

/// VmRSS of this process, in KiB.
pub fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Threads of this process.
pub fn threads() -> f64 {
    std::fs::read_dir("/proc/self/task").map_or(f64::NAN, |d| d.count() as f64)
}

pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Prints each `session-timeline` message of `pipeline` as a line
/// `timeline <structure>` (see src/peer/timeline.rs), for the parent.
pub fn print_timelines(pipeline: &gst::Element) {
    let bus = pipeline
        .downcast_ref::<gst::Pipeline>()
        .unwrap()
        .bus()
        .unwrap();
    bus.set_sync_handler(|_, msg| {
        if let Some(s) = msg.structure().filter(|s| s.name() == "session-timeline") {
            println!("timeline {s}");
        }
        gst::BusSyncReply::Pass
    });
}

/// Every `key rest` line until (and with) the one starting with `last`:
/// the first value of each key.
pub fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    last: &str,
) -> std::collections::HashMap<String, String> {
    let mut seen = std::collections::HashMap::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let (key, rest) = line.split_once(' ').unwrap_or((&line, ""));
        seen.entry(key.to_string())
            .or_insert_with(|| rest.trim().to_string());
        if key == last {
            break;
        }
    }
    seen
}

/// The phases of many `session-timeline`s: the median of each, in order.
#[derive(Default)]
pub struct Phases(Vec<(String, Vec<f64>)>);

impl Phases {
    /// Adds one `session-timeline` structure, as printed by `print_timelines`.
    pub fn add(&mut self, text: Option<&String>) {
        let Some(s) = text.and_then(|t| t.parse::<gst::Structure>().ok()) else {
            return;
        };
        for (name, value) in s.iter() {
            let Ok(ms) = value.get::<f64>() else { continue };
            match self.0.iter_mut().find(|(n, _)| n == name.as_str()) {
                Some((_, v)) => v.push(ms),
                None => self.0.push((name.to_string(), vec![ms])),
            }
        }
    }

    /// `{"peer-ready-ms": <median>, ...}` in phase order.
    pub fn json(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(n, v)| format!("\"{n}\": {:.1}", Stats(v.clone()).median()))
            .collect();
        format!("{{{}}}", fields.join(", "))
    }
}

/// A pipeline from a gst-launch description; a single element (a server
/// element whose sometimes pads stay unlinked) comes back bare from the
/// parser, and goes into a pipeline of its own.
pub fn pipeline_of(desc: &str) -> gst::Pipeline {
    match gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
    {
        Ok(p) => p,
        Err(element) => {
            let p = gst::Pipeline::new();
            p.add(&element).unwrap();
            p
        }
    }
}

/// Wall-clock microseconds, for times compared across processes.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// In a client process: prints `ttff_ms <ms>` once `first` holds the first
/// frame's time (microseconds since PLAYING, plus 1 so that 0 means none
/// yet), or `ttff_ms nan` after 10 s.
pub fn print_first_frame_when_seen(first: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while first.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        match first.load(Ordering::SeqCst) {
            0 => println!("ttff_ms nan"),
            us => println!("ttff_ms {:.3}", (us - 1) as f64 / 1000.0),
        }
        use std::io::Write;
        std::io::stdout().flush().unwrap();
    });
}

/// In a benchmark's server pipeline: each stream `server` (whipserversrc)
/// exposes goes to a fakesink, and `first` gets the wall-clock time
/// (`now_us`) of the first buffer of any of them.
pub fn note_first_frame(server: &gst::Element, bin: &gst::Pipeline, first: &Arc<AtomicU64>) {
    let (f, bin) = (first.clone(), bin.clone());
    server.connect_pad_added(move |_, pad| {
        let f = f.clone();
        fakesink_for(&bin, pad).add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = f.compare_exchange(0, now_us(), Ordering::SeqCst, Ordering::SeqCst);
            gst::PadProbeReturn::Remove
        });
    });
}

/// The anchor's version, as its plugin reports it: asked of this binary
/// re-executed with `--anchor-version`, which registers the anchor's plugin
/// in that child only (here it would take our elements' names).
pub fn anchor_version() -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--anchor-version")
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "0.15".into())
}
