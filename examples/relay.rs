//! A local WHIP → WHEP relay, the way MediaMTX is used day to day:
//! publishers POST to `/whip/<name>`, viewers play `/whep/<name>`, several
//! names at once, all on one port. A name nobody publishes gets 409 with
//! Retry-After (WHEP's "no publisher yet"), so players retry until it starts.
//! A name has one publisher: a second one gets 409 until the first leaves.
//! Offers the wrong way round (a player's offer to `/whip/...`, a
//! publisher's to `/whep/...`) get 422 naming the right endpoint. Ctrl-C
//! (SIGINT) or SIGTERM ends every session, closes the port and exits 0.
//!
//!     cargo run --release --example relay -- [--address 127.0.0.1:8190] [--ice-addresses 127.0.0.1]

use gst::prelude::*;

#[path = "common/listen.rs"]
mod listen;
#[path = "common/relay.rs"]
mod relay;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    gst::init().expect("GStreamer");
    gstwhipwhep::plugin_register_static().expect("register the whipwhep elements");
    let address = arg("--address", "127.0.0.1:8190");
    // A busy port: the element's own ERROR and exit status 1, no panic.
    if let Err(error) = listen::check_listen(&address) {
        eprintln!("relay: {error}");
        std::process::exit(1);
    }
    let pipeline = gst::Pipeline::new();
    let address = relay::build_relay(&pipeline, &address, &arg("--ice-addresses", ""));
    if pipeline.set_state(gst::State::Playing).is_err() {
        if let Some(msg) = pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
        {
            if let gst::MessageView::Error(e) = msg.view() {
                eprintln!("relay: {}", e.error());
            }
        }
        std::process::exit(1);
    }
    println!("relay: publish to http://{address}/whip/<name>, play http://{address}/whep/<name>");
    // Runs until Ctrl-C (SIGINT) or SIGTERM, or for --seconds; then stops
    // every session, closes its port and exits 0.
    let main_loop = glib::MainLoop::new(None, false);
    if let Ok(secs) = arg("--seconds", "").parse::<u32>() {
        let ml = main_loop.clone();
        glib::timeout_add_seconds_once(secs, move || ml.quit());
    }
    {
        let ml = main_loop.clone();
        gstwhipwhep::runtime::RUNTIME.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            println!("relay: {name}, stopping");
            ml.quit();
        });
    }
    main_loop.run();
    let started = std::time::Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    println!("relay: stopped in {} ms", started.elapsed().as_millis());
}
