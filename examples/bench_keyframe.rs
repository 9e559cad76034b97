//! Benchmark: time from a key-frame request at the WHIP server (an upstream
//! force-key-unit event, which its RTP session sends as PLI) to the next
//! key frame coming out of the server, for raw input that whipsink encodes
//! (VP8, H.264) and, as the baseline in the same run, for encoded input
//! whose encoder is the user's (the request goes upstream out of whipsink).
//! Prints one JSON object.
//!
//!     cargo run --release --example bench_keyframe -- [--requests 15] [--size 1280x720]
//!
//! Periodic key frames are off in every encoder, so only requests make one.
//! Each case is one publisher; requests are 1 s apart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, fakesink_for, init, pipeline_of, Stats, WHIP_SERVER};

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// Publishes `source ! whipsink extra` to a whipserversrc in the same
/// process and measures `requests` key-frame requests, in ms; and the
/// frames per second the server received meanwhile.
fn measure(source: &str, extra: &str, requests: usize) -> (Stats, f64) {
    let spipe = pipeline_of(WHIP_SERVER);
    let server = spipe.by_name("server").unwrap();
    let keys: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let video_pad: Arc<Mutex<Option<gst::Pad>>> = Arc::default();
    {
        let (keys, frames, video_pad) = (keys.clone(), frames.clone(), video_pad.clone());
        let bin = spipe.clone();
        server.connect_pad_added(move |_, pad| {
            let sinkpad = fakesink_for(&bin, pad);
            if pad.name().starts_with("video") {
                *video_pad.lock().unwrap() = Some(sinkpad.clone());
                let (keys, frames) = (keys.clone(), frames.clone());
                sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                        frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                            keys.lock().unwrap().push(Instant::now());
                        }
                    }
                    gst::PadProbeReturn::Ok
                });
            }
        });
    }
    spipe.set_state(gst::State::Playing).unwrap();
    let addr = server.property::<Option<String>>("bound-address").unwrap();
    let client = gst::parse::launch(&format!(
        "{source} ! whipsink name=whip whip-endpoint=http://{addr}/whip/bench ice-addresses=127.0.0.1 {extra}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    client
        .by_name("whip")
        .unwrap()
        .connect("encoder-setup", false, |args| {
            let enc = args[2].get::<gst::Element>().unwrap();
            for (name, value) in [
                ("keyframe-max-dist", 1_000_000i64),
                ("key-int-max", 1_000_000),
            ] {
                if let Some(p) = enc.find_property(name) {
                    if let Ok(v) = value.to_value().transform_with_type(p.value_type()) {
                        enc.set_property(name, v);
                    }
                }
            }
            None
        });
    client.set_state(gst::State::Playing).unwrap();
    let mut samples = Vec::new();
    let mut fps = f64::NAN;
    if wait_until(Duration::from_secs(15), || {
        frames.load(std::sync::atomic::Ordering::Relaxed) >= 30
    }) {
        let pad = video_pad.lock().unwrap().clone().unwrap();
        let (start, at) = (
            frames.load(std::sync::atomic::Ordering::Relaxed),
            Instant::now(),
        );
        for _ in 0..requests {
            std::thread::sleep(Duration::from_secs(1));
            let asked = Instant::now();
            pad.push_event(gst::event::CustomUpstream::new(
                gst::Structure::builder("GstForceKeyUnit")
                    .field("all-headers", true)
                    .build(),
            ));
            let after = || keys.lock().unwrap().iter().copied().find(|k| *k >= asked);
            samples.push(
                if wait_until(Duration::from_secs(2), || after().is_some()) {
                    (after().unwrap() - asked).as_secs_f64() * 1000.0
                } else {
                    f64::NAN
                },
            );
        }
        fps = (frames.load(std::sync::atomic::Ordering::Relaxed) - start) as f64
            / at.elapsed().as_secs_f64();
    }
    let _ = client.set_state(gst::State::Null);
    let _ = spipe.set_state(gst::State::Null);
    (Stats(samples), fps)
}

fn main() {
    init();
    let requests: usize = arg("--requests", 15);
    let size: String = arg("--size", "1280x720".into());
    let (w, h) = size.split_once('x').expect("--size WxH");
    let raw =
        format!("videotestsrc is-live=true ! video/x-raw,width={w},height={h},framerate=30/1");
    // The baseline first: a later case cannot be favoured by running
    // when the machine warmed up.
    let cases = [
        (
            "encoded_vp8_users_encoder_baseline",
            format!("{raw} ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist=1000000 lag-in-frames=0 end-usage=cbr target-bitrate=2000000"),
            "",
        ),
        ("raw_vp8_whipsink_encoder", raw.clone(), "video-caps=video/x-vp8"),
        ("raw_h264_whipsink_encoder", raw.clone(), "video-caps=video/x-h264"),
    ];
    let mut out = vec![
        format!("  \"requests_per_case\": {requests}"),
        format!("  \"size\": \"{size}\""),
        "  \"frame_interval_ms\": 33.3".to_string(),
    ];
    for (name, source, extra) in cases {
        let (stats, fps) = measure(&source, extra, requests);
        out.push(format!(
            "  \"request_to_key_frame_ms_{name}\": {}",
            stats.json()
        ));
        out.push(format!("  \"received_fps_{name}\": {fps:.1}"));
    }
    println!("{{\n{}\n}}", out.join(",\n"));
}
