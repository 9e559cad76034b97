//! The one-command demo: a local WHIP → WHEP relay, a moving test pattern
//! with a tone published to it through whipsink, and whepsrc playing it
//! back, decoding every frame. Prints a live summary once a second (frames,
//! bitrate, time to first frame) for `--seconds` (default 10) or until
//! Ctrl-C, then stops cleanly: every session DELETEd, exit code 0.
//!
//!     cargo run --release --example demo -- [--seconds 10] [--address 127.0.0.1:8190]
//!
//! While it runs, a browser can watch the same stream at the printed URL.

#[path = "common/listen.rs"]
mod listen;
#[path = "common/relay.rs"]
mod relay;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[derive(Default)]
struct Counter {
    frames: AtomicU64,
    bytes: AtomicU64,
}

/// Decoded buffers per output of the player, by media.
type Counters = Arc<Mutex<Vec<(String, Arc<Counter>)>>>;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// Runs `pipeline`'s ERROR messages through `failed`.
fn watch_errors(pipeline: &gst::Pipeline, who: &'static str, failed: &Arc<AtomicBool>) {
    let failed = failed.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        match msg.view() {
            gst::MessageView::Error(e) => {
                eprintln!("{who}: ERROR {}", e.error());
                failed.store(true, Ordering::SeqCst);
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name().starts_with("session-")) {
                    println!("{who}: {}", s.name());
                }
            }
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
}

fn main() {
    let seconds: u64 = arg("--seconds", "10").parse().unwrap_or(10);
    gst::init().expect("GStreamer");
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");
    let failed = Arc::new(AtomicBool::new(false));

    let address = arg("--address", "127.0.0.1:8190");
    // A busy port: the element's own ERROR and exit status 1, no panic.
    if let Err(error) = listen::check_listen(&address) {
        eprintln!("relay: ERROR {error}");
        std::process::exit(1);
    }
    let relay = gst::Pipeline::new();
    let address = relay::build_relay(&relay, &address, "127.0.0.1");
    relay.set_state(gst::State::Playing).expect("relay PLAYING");
    watch_errors(&relay, "relay", &failed);
    println!("relay on http://{address}: watch in a browser at http://{address}/whep/demo");

    let publisher = gst::parse::launch(&format!(
        "whipsink name=whip whip-endpoint=http://{address}/whip/demo ice-addresses=127.0.0.1 \
         videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 \
           ! vp8enc deadline=1 cpu-used=8 target-bitrate=1000000 ! whip. \
         audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! opusenc ! whip."
    ))
    .expect("publisher")
    .downcast::<gst::Pipeline>()
    .unwrap();
    watch_errors(&publisher, "whipsink", &failed);

    // The player decodes: its outputs are raw video and audio.
    let whepsrc = gst::ElementFactory::make("whepsrc")
        .name("whep")
        .property("whep-endpoint", format!("http://{address}/whep/demo"))
        .property("ice-addresses", "127.0.0.1")
        // The relay answers 409 until the publisher is up: retry soon.
        .property("retry-initial-delay", 100u32)
        .build()
        .expect("whepsrc");
    let player = gst::Pipeline::new();
    player.add(&whepsrc).unwrap();
    watch_errors(&player, "whepsrc", &failed);
    let counters: Counters = Arc::default();
    let first_frame: Arc<Mutex<Option<Instant>>> = Arc::default();
    {
        let (bin, counters, first_frame) = (player.clone(), counters.clone(), first_frame.clone());
        player
            .by_name("whep")
            .unwrap()
            .connect_pad_added(move |_, pad| {
                // whepsrc's pads tell their media before their caps are fixed.
                let video = pad.query_caps(None).to_string().contains("video");
                let convert = gst::ElementFactory::make(if video {
                    "videoconvert"
                } else {
                    "audioconvert"
                })
                .build()
                .unwrap();
                let sink = gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .property("async", false)
                    .build()
                    .unwrap();
                bin.add_many([&convert, &sink]).unwrap();
                convert.link(&sink).unwrap();
                convert.sync_state_with_parent().unwrap();
                sink.sync_state_with_parent().unwrap();
                pad.link(&convert.static_pad("sink").unwrap()).unwrap();
                let counter = Arc::new(Counter::default());
                counters.lock().unwrap().push((
                    if video { "video" } else { "audio" }.to_string(),
                    counter.clone(),
                ));
                let first_frame = first_frame.clone();
                convert.static_pad("sink").unwrap().add_probe(
                    gst::PadProbeType::BUFFER,
                    move |_, info| {
                        if let Some(buf) = info.buffer() {
                            counter.frames.fetch_add(1, Ordering::Relaxed);
                            counter
                                .bytes
                                .fetch_add(buf.size() as u64, Ordering::Relaxed);
                            first_frame.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                        gst::PadProbeReturn::Ok
                    },
                );
            });
    }

    publisher
        .set_state(gst::State::Playing)
        .expect("publisher PLAYING");
    // Play once the stream is published, so the time to first frame is the
    // player's own (before, the relay would answer 409 and it would retry).
    let live = Instant::now() + Duration::from_secs(10);
    while relay.by_name("whep-demo").is_none()
        && Instant::now() < live
        && !failed.load(Ordering::SeqCst)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    player
        .set_state(gst::State::Playing)
        .expect("player PLAYING");

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        gstwhipwhep::runtime::RUNTIME.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
            }
        });
    }

    let mut last = Vec::<u64>::new();
    for second in 1..=seconds {
        let tick = started + Duration::from_secs(second);
        while Instant::now() < tick
            && !interrupted.load(Ordering::SeqCst)
            && !failed.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if interrupted.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
            break;
        }
        let counters = counters.lock().unwrap();
        let line: Vec<String> = counters
            .iter()
            .enumerate()
            .map(|(i, (kind, c))| {
                let frames = c.frames.load(Ordering::Relaxed);
                let delta = frames - last.get(i).copied().unwrap_or(0);
                format!("{kind} {frames} frames ({delta}/s)")
            })
            .collect();
        last = counters
            .iter()
            .map(|(_, c)| c.frames.load(Ordering::Relaxed))
            .collect();
        let ttff = first_frame
            .lock()
            .unwrap()
            .map(|t| format!("{} ms", (t - started).as_millis()));
        println!(
            "[{second:>3}s] time to first frame {} | {}",
            ttff.as_deref().unwrap_or("-"),
            if line.is_empty() {
                "waiting for media".into()
            } else {
                line.join(" | ")
            }
        );
    }

    // Players first, then publishers: each DELETEs its session on the way down.
    let stop = Instant::now();
    player.set_state(gst::State::Null).unwrap();
    publisher.set_state(gst::State::Null).unwrap();
    relay.set_state(gst::State::Null).unwrap();
    println!("stopped in {} ms", stop.elapsed().as_millis());

    // The publisher sends both kinds: the player must have received both.
    let frames_of = |kind: &str| -> u64 {
        counters
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, c)| c.frames.load(Ordering::Relaxed))
            .sum()
    };
    let (video, audio) = (frames_of("video"), frames_of("audio"));
    println!(
        "frames received: {} (video {video}, audio {audio})",
        video + audio
    );
    match *first_frame.lock().unwrap() {
        Some(t) => println!("time to first frame: {} ms", (t - started).as_millis()),
        None => println!("time to first frame: none"),
    }
    if failed.load(Ordering::SeqCst) || video == 0 || audio == 0 {
        if video == 0 || audio == 0 {
            eprintln!("demo: the player did not receive both video and audio");
        }
        std::process::exit(1);
    }
}
