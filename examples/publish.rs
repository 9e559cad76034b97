//! Publish a test pattern with a tone to any WHIP endpoint. Ctrl-C stops
//! cleanly (the session is DELETEd) and exits 0; an ERROR exits 1.
//!
//!     cargo run --release --example publish -- https://host/whip [TOKEN] [--ice-addresses 127.0.0.1]

#[path = "common/run.rs"]
mod run;

use std::sync::atomic::Ordering;

use gst::prelude::*;

const USAGE: &str = "usage: publish <whip-endpoint> [token] [--ice-addresses ADDR[,ADDR...]]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        println!("  --ice-addresses ADDRS  gather ICE candidates on these local addresses only");
        return;
    }
    let ice_addresses = args
        .iter()
        .position(|a| a == "--ice-addresses")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--ice-addresses"))
        .map(|(_, a)| a)
        .collect();
    let Some(endpoint) = positional.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let token = positional.get(1);
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
    whip.set_property("whip-endpoint", endpoint.as_str());
    if let Some(token) = token {
        whip.set_property("auth-token", token.as_str());
    }
    if let Some(addresses) = ice_addresses {
        whip.set_property("ice-addresses", addresses);
    }
    let interrupted = run::stop_on_ctrl_c();
    run::start(&pipeline, "publish");
    let status = run::run(
        &pipeline,
        "publish",
        || interrupted.load(Ordering::SeqCst),
        |s| println!("{s}"),
    );
    std::process::exit(status);
}
