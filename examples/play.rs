//! Play any WHEP endpoint in a window, or with `--count N` decode without
//! a window and exit 0 after N video frames. Ctrl-C stops cleanly (the
//! session is DELETEd) and exits 0; an ERROR exits 1.
//!
//!     cargo run --release --example play -- https://host/whep [TOKEN] [--video-only]
//!         [--count N] [--ice-addresses 127.0.0.1]

#[path = "common/run.rs"]
mod run;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gst::prelude::*;

const USAGE: &str = "usage: play <whep-endpoint> [token] [--video-only] [--count N] \
                     [--ice-addresses ADDR[,ADDR...]]";

/// Options that take a value.
const WITH_VALUE: &[&str] = &["--count", "--ice-addresses"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        println!("  --video-only           ask the server for video only");
        println!("  --count N              no window: decode, exit 0 after N video frames");
        println!("  --ice-addresses ADDRS  gather ICE candidates on these local addresses only");
        return;
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // Positional arguments: those that are neither options nor their values.
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--") && (*i == 0 || !WITH_VALUE.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    let Some(endpoint) = positional.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let token = positional.get(1);
    let count = match value("--count").map(|c| c.parse::<u64>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            eprintln!("play: --count takes a number of frames > 0\n{USAGE}");
            std::process::exit(2);
        }
    };

    gst::init().expect("GStreamer");
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");

    let src = gst::ElementFactory::make("whepsrc")
        .property("whep-endpoint", endpoint.as_str())
        .build()
        .expect("whepsrc");
    if let Some(token) = token {
        src.set_property("auth-token", token.as_str());
    }
    if let Some(addresses) = value("--ice-addresses") {
        src.set_property("ice-addresses", addresses);
    }
    if args.iter().any(|a| a == "--video-only") {
        src.set_property_from_str("media", "video");
    }
    let pipeline = gst::Pipeline::new();
    pipeline.add(&src).unwrap();

    let interrupted = run::stop_on_ctrl_c();
    // Set once --count frames are decoded.
    let done = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let bin = pipeline.clone();
    let (stop_at_count, counted) = (done.clone(), frames.clone());
    // whepsrc's pads say their media before their caps are fixed; linking a
    // converter makes whepsrc decode.
    src.connect_pad_added(move |_, pad| {
        let video = pad.query_caps(None).to_string().contains("video");
        let desc = match (video, count.is_some()) {
            (true, false) => "videoconvert ! autovideosink",
            (false, false) => "audioconvert ! audioresample ! autoaudiosink",
            (true, true) => "videoconvert ! fakesink sync=false",
            (false, true) => "audioconvert ! fakesink sync=false",
        };
        let sink = gst::parse::bin_from_description(desc, true).unwrap();
        bin.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let sink_pad = sink.static_pad("sink").unwrap();
        if let (true, Some(n)) = (video, count) {
            let (stop, counted) = (stop_at_count.clone(), counted.clone());
            sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if counted.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    stop.store(true, Ordering::SeqCst);
                }
                gst::PadProbeReturn::Ok
            });
        }
        pad.link(&sink_pad).unwrap();
    });

    run::start(&pipeline, "play");
    let status = run::run(
        &pipeline,
        "play",
        || interrupted.load(Ordering::SeqCst) || done.load(Ordering::SeqCst),
        |_| {},
    );
    if let Some(n) = count {
        let decoded = frames.load(Ordering::SeqCst);
        println!(
            "decoded {decoded} video frames in {} ms",
            started.elapsed().as_millis()
        );
        // Ended before N frames, and not by Ctrl-C: say so in the status.
        if status == 0 && decoded < n && !interrupted.load(Ordering::SeqCst) {
            std::process::exit(1);
        }
    }
    std::process::exit(status);
}
