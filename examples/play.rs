//! Play any WHEP endpoint in a window (or, with `--count`, count decoded
//! frames for a few seconds and exit).
//!
//!     cargo run --release --example play -- https://host/whep [TOKEN] [--video-only]

use gst::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = args
        .first()
        .expect("usage: play <whep-endpoint> [token] [--video-only]");
    let token = args.get(1).filter(|a| !a.starts_with("--"));
    gst::init().expect("GStreamer");
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");

    let src = gst::ElementFactory::make("whepsrc")
        .property("whep-endpoint", endpoint)
        .build()
        .expect("whepsrc");
    if let Some(token) = token {
        src.set_property("auth-token", token);
    }
    if args.iter().any(|a| a == "--video-only") {
        src.set_property_from_str("media", "video");
    }
    let pipeline = gst::Pipeline::new();
    pipeline.add(&src).unwrap();
    let bin = pipeline.clone();
    // whepsrc's pads say their media before their caps are fixed; linking a
    // converter makes whepsrc decode.
    src.connect_pad_added(move |_, pad| {
        let desc = if pad.query_caps(None).to_string().contains("video") {
            "videoconvert ! autovideosink"
        } else {
            "audioconvert ! audioresample ! autoaudiosink"
        };
        let sink = gst::parse::bin_from_description(desc, true).unwrap();
        bin.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    });
    pipeline.set_state(gst::State::Playing).expect("PLAYING");
    for msg in pipeline.bus().unwrap().iter_timed(gst::ClockTime::NONE) {
        if let gst::MessageView::Error(e) = msg.view() {
            eprintln!("error: {}", e.error());
            break;
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
}
