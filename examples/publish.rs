//! Publish a test pattern with a tone to any WHIP endpoint.
//!
//!     cargo run --release --example publish -- https://host/whip [TOKEN]

use gst::prelude::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().expect("usage: publish <whip-endpoint> [token]");
    let token = args.next();
    gst::init().expect("GStreamer");
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");

    let pipeline = gst::parse::launch(
        "whipsink name=whip \
         videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1 \
           ! vp8enc deadline=1 cpu-used=8 target-bitrate=2000000 ! whip. \
         audiotestsrc is-live=true ! opusenc ! whip.",
    )
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .unwrap();
    let whip = pipeline.by_name("whip").unwrap();
    whip.set_property("whip-endpoint", &endpoint);
    if let Some(token) = token {
        whip.set_property("auth-token", token);
    }
    pipeline.set_state(gst::State::Playing).expect("PLAYING");
    for msg in pipeline.bus().unwrap().iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                eprintln!("error: {}", e.error());
                break;
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    println!("{s}");
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
}
