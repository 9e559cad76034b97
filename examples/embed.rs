//! An application that links the elements in (no plugin .so needed) and
//! follows whepsrc's sessions on the bus: started, ended, reconnecting,
//! renewed. Point it at a device endpoint with capped sessions and watch one
//! continuous stream go through the renewals.
//!
//!     cargo run --release --example embed -- https://host/whep [TOKEN] [--cap SECONDS] [--seconds N] [--ice-addresses 127.0.0.1]

use gst::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let endpoint = args
        .first()
        .expect("usage: embed <whep-endpoint> [token] [--cap S] [--seconds N]");
    gst::init().expect("GStreamer");
    // Registers whipsink, whepsrc, whipserversrc and whepserversink in this process.
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");

    let src = gst::ElementFactory::make("whepsrc")
        .property("whep-endpoint", endpoint)
        .property_from_str("media", "video")
        .build()
        .expect("whepsrc");
    if let Some(token) = args.get(1).filter(|a| !a.starts_with("--")) {
        src.set_property("auth-token", token);
    }
    if let Some(addresses) = value("--ice-addresses") {
        src.set_property("ice-addresses", addresses);
    }
    if let Some(cap) = value("--cap").and_then(|c| c.parse::<u32>().ok()) {
        // Renew one second ahead of the device's cap: no frame lost.
        src.set_property("max-session-duration", cap);
        src.set_property("renew-lead", 1000u32);
    }
    let sink =
        gst::parse::bin_from_description("videoconvert ! fakesink sync=false", true).unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([&src, sink.upcast_ref()]).unwrap();
    src.connect_pad_added(move |_, pad| {
        let _ = pad.link(&sink.static_pad("sink").unwrap());
    });
    pipeline.set_state(gst::State::Playing).expect("PLAYING");

    let limit = value("--seconds")
        .and_then(|s| s.parse().ok())
        .map(gst::ClockTime::from_seconds);
    let deadline =
        limit.map(|l| std::time::Instant::now() + std::time::Duration::from_nanos(l.nseconds()));
    let bus = pipeline.bus().unwrap();
    loop {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(e) => {
                eprintln!("gave up: {}", e.error());
                break;
            }
            gst::MessageView::Element(e) => match e.structure() {
                Some(s) if s.name() == "session-started" => {
                    println!(
                        "started: {}",
                        s.get::<Option<String>>("location")
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    )
                }
                Some(s) if s.name() == "session-ended" => {
                    println!("ended: {}", s.get::<String>("reason").unwrap_or_default())
                }
                Some(s) if s.name() == "session-reconnecting" => println!(
                    "reconnecting: attempt {} in {} ms ({})",
                    s.get::<u32>("attempt").unwrap_or(0),
                    s.get::<u64>("delay-ms").unwrap_or(0),
                    s.get::<String>("reason").unwrap_or_default()
                ),
                Some(s) if s.name() == "session-renewed" => println!(
                    "renewed: output gap {} ms, {} frames lost ({})",
                    s.get::<u64>("gap-ms").unwrap_or(0),
                    s.get::<u64>("frames-lost").unwrap_or(0),
                    if s.get::<bool>("planned").unwrap_or(false) {
                        "planned"
                    } else {
                        "after a cut"
                    }
                ),
                _ => {}
            },
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
}
