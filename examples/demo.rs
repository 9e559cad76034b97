//! The one-command demo: a WHIP server (whipserversrc) on loopback, and a
//! moving test pattern with a tone published to it through whipsink. Prints
//! what arrives once a second, then stops cleanly: the session is DELETEd
//! and the exit code is 0.
//!
//!     cargo run --release --example demo -- [--seconds 10]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[derive(Default)]
struct Stream {
    caps: std::sync::OnceLock<String>,
    frames: AtomicU64,
    bytes: AtomicU64,
}

fn main() {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    gst::init().expect("GStreamer");
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");

    // The server: every publisher's streams come out as encoded media.
    let server = gst::ElementFactory::make("whipserversrc")
        .property("address", "127.0.0.1:0")
        .property("ice-addresses", "127.0.0.1")
        .build()
        .expect("whipserversrc");
    let server_pipeline = gst::Pipeline::new();
    server_pipeline.add(&server).unwrap();
    let streams: Arc<Mutex<Vec<Arc<Stream>>>> = Arc::default();
    let first_frame: Arc<Mutex<Option<Instant>>> = Arc::default();
    {
        let (bin, streams, first_frame) = (
            server_pipeline.clone(),
            streams.clone(),
            first_frame.clone(),
        );
        server.connect_pad_added(move |_, pad| {
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
                .unwrap();
            bin.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            pad.link(&sink.static_pad("sink").unwrap()).unwrap();
            let stream = Arc::new(Stream::default());
            streams.lock().unwrap().push(stream.clone());
            let first_frame = first_frame.clone();
            sink.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::BUFFER,
                move |pad, info| {
                    if let Some(buf) = info.buffer() {
                        stream.caps.get_or_init(|| {
                            pad.current_caps()
                                .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
                                .unwrap_or_default()
                        });
                        stream.frames.fetch_add(1, Ordering::Relaxed);
                        stream.bytes.fetch_add(buf.size() as u64, Ordering::Relaxed);
                        first_frame.lock().unwrap().get_or_insert_with(Instant::now);
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        });
    }
    server_pipeline
        .set_state(gst::State::Playing)
        .expect("server PLAYING");
    let endpoint = format!(
        "http://{}/whip/demo",
        server.property::<String>("bound-address")
    );
    println!("WHIP server listening; publishing to {endpoint}");

    let publisher = gst::parse::launch(&format!(
        "whipsink name=whip whip-endpoint={endpoint} ice-addresses=127.0.0.1 \
         videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 \
           ! vp8enc deadline=1 cpu-used=8 target-bitrate=1000000 ! whip. \
         audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! opusenc ! whip."
    ))
    .expect("publisher pipeline")
    .downcast::<gst::Pipeline>()
    .unwrap();
    let started = Instant::now();
    publisher
        .set_state(gst::State::Playing)
        .expect("publisher PLAYING");

    let mut ok = true;
    let bus = publisher.bus().unwrap();
    let mut last_bytes: Vec<u64> = Vec::new();
    'run: for second in 1..=seconds {
        let tick = started + Duration::from_secs(second);
        while let Some(left) = tick.checked_duration_since(Instant::now()) {
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                &[gst::MessageType::Error, gst::MessageType::Element],
            ) else {
                break;
            };
            match msg.view() {
                gst::MessageView::Error(e) => {
                    eprintln!("ERROR: {} ({:?})", e.error(), e.debug());
                    ok = false;
                    break 'run;
                }
                gst::MessageView::Element(e) => {
                    if let Some(s) = e.structure().filter(|s| s.name().starts_with("session-")) {
                        println!("bus: {s}");
                    }
                }
                _ => {}
            }
        }
        let streams = streams.lock().unwrap();
        let line: Vec<String> = streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let bytes = s.bytes.load(Ordering::Relaxed);
                let prev = last_bytes.get(i).copied().unwrap_or(0);
                format!(
                    "{} {} frames {:.0} kbit/s",
                    s.caps.get().map(String::as_str).unwrap_or("?"),
                    s.frames.load(Ordering::Relaxed),
                    (bytes - prev) as f64 * 8.0 / 1000.0
                )
            })
            .collect();
        last_bytes = streams
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .collect();
        let ttff = first_frame
            .lock()
            .unwrap()
            .map(|t| format!("{} ms", (t - started).as_millis()));
        println!(
            "[{second:>3}s] time to first frame: {} | {}",
            ttff.as_deref().unwrap_or("-"),
            if line.is_empty() {
                "waiting for media".to_string()
            } else {
                line.join(" | ")
            }
        );
    }

    let stop = Instant::now();
    publisher.set_state(gst::State::Null).unwrap();
    println!(
        "publisher stopped in {} ms (session DELETEd)",
        stop.elapsed().as_millis()
    );
    server_pipeline.set_state(gst::State::Null).unwrap();

    let frames: u64 = streams
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.frames.load(Ordering::Relaxed))
        .sum();
    let ttff = first_frame
        .lock()
        .unwrap()
        .map(|t| (t - started).as_millis());
    println!("frames received: {frames}");
    match ttff {
        Some(ms) => println!("time to first frame: {ms} ms"),
        None => println!("time to first frame: none"),
    }
    if !ok || frames == 0 {
        std::process::exit(1);
    }
}
