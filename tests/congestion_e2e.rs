//! whipsink's congestion control (rtpgccbwe driven by TWCC) on a real
//! session over loopback: the estimate moves with the feedback and the
//! encoder follows it: whipsink's own (raw input), or the one upstream
//! of encoded input when congestion-control-upstream asks for it.

mod common;

use std::time::Duration;

use common::e2e::{wait_until, Client, WhipServer};
use gst::prelude::*;

const SRC: &str = "videotestsrc is-live=true ! video/x-raw,width=640,height=480,framerate=30/1 ! vp8enc name=enc deadline=1 cpu-used=8";

fn target(whip: &gst::Element) -> u32 {
    whip.property::<gst::Structure>("stats")
        .get::<u32>("target-bitrate")
        .unwrap()
}

#[test]
fn the_encoder_follows_the_estimate_from_twcc_feedback() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{SRC} ! whipsink name=whip whip-endpoint={}/whip/cam ice-addresses=127.0.0.1 \
         start-bitrate=300000 min-bitrate=100000 max-bitrate=900000 \
         congestion-control-upstream=true",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    let enc = client.pipeline.by_name("enc").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || server.counters.video() > 10),
        "{:?}",
        client.messages.errors()
    );
    // Loopback has room: GCC raises the estimate from start-bitrate as
    // feedback comes, up to max-bitrate, and the encoder gets it (one video
    // stream, no audio: all of it).
    assert!(
        wait_until(Duration::from_secs(15), || target(&whip) > 450_000),
        "estimate stuck at {}",
        target(&whip)
    );
    assert!(wait_until(Duration::from_secs(2), || {
        let t = target(&whip) as i32;
        (enc.property::<i32>("target-bitrate") - t).abs() < t / 5
    }));
    std::thread::sleep(Duration::from_secs(3));
    assert!(target(&whip) <= 900_000, "{}", target(&whip));
    assert!(enc.property::<i32>("target-bitrate") <= 900_000);
    assert!(client.messages.errors().is_empty());

    // Only the estimator joined the registry, not the rest of rsrtp (whose
    // payloaders would compete with the installed ones in autoplugging).
    let features: Vec<String> = gst::Registry::get()
        .features_by_plugin("rsrtp")
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    assert_eq!(features, ["rtpgccbwe"]);
    assert!(gst::ElementFactory::find("rtpvp8pay2").is_none());
}

#[test]
fn without_congestion_control_the_encoder_is_left_alone() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{SRC} target-bitrate=400000 ! whipsink name=whip whip-endpoint={}/whip/cam \
         ice-addresses=127.0.0.1 congestion-control=false",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    let enc = client.pipeline.by_name("enc").unwrap();
    assert!(wait_until(Duration::from_secs(10), || server
        .counters
        .video()
        > 60));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(target(&whip), 0);
    assert_eq!(enc.property::<i32>("target-bitrate"), 400_000);
}

#[test]
fn by_default_the_upstream_encoder_is_left_alone_but_the_estimate_runs() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{SRC} target-bitrate=400000 ! whipsink name=whip whip-endpoint={}/whip/cam \
         ice-addresses=127.0.0.1 start-bitrate=300000 max-bitrate=900000",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    let enc = client.pipeline.by_name("enc").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || target(&whip) > 450_000),
        "estimate stuck at {} (errors {:?})",
        target(&whip),
        client.messages.errors()
    );
    assert_eq!(enc.property::<i32>("target-bitrate"), 400_000);
}

const RAW: &str =
    "videotestsrc is-live=true ! video/x-raw,width=640,height=480,framerate=30/1 ! whipsink name=whip";

/// whipsink's own encoder (raw input), once it has one.
fn own_encoder(whip: &gst::Element) -> Option<gst::Element> {
    whip.downcast_ref::<gst::Bin>()?
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "vp8enc"))
}

#[test]
fn raw_input_whipsinks_own_encoder_follows_the_estimate() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{RAW} whip-endpoint={}/whip/cam ice-addresses=127.0.0.1 video-caps=video/x-vp8 \
         start-bitrate=300000 min-bitrate=100000 max-bitrate=900000",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || server.counters.video() > 10),
        "{:?}",
        client.messages.errors()
    );
    let enc = own_encoder(&whip).expect("no vp8enc in whipsink");
    // The encoder's first bitrate is start-bitrate, not its own default;
    // then it follows the estimate up from there.
    let first = enc.property::<i32>("target-bitrate");
    assert!((100_000..=900_000).contains(&first), "{first}");
    assert!(
        wait_until(Duration::from_secs(15), || target(&whip) > 450_000),
        "estimate stuck at {} (errors {:?})",
        target(&whip),
        client.messages.errors()
    );
    assert!(wait_until(Duration::from_secs(2), || {
        let t = target(&whip) as i32;
        (enc.property::<i32>("target-bitrate") - t).abs() < t / 5
    }));
    std::thread::sleep(Duration::from_secs(2));
    assert!(enc.property::<i32>("target-bitrate") <= 900_000);
    assert!(client.messages.errors().is_empty());
}

#[test]
fn raw_input_without_congestion_control_keeps_the_encoders_bitrate() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{RAW} whip-endpoint={}/whip/cam ice-addresses=127.0.0.1 video-caps=video/x-vp8 \
         congestion-control=false",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    assert!(wait_until(Duration::from_secs(10), || server
        .counters
        .video()
        > 60));
    let enc = own_encoder(&whip).expect("no vp8enc in whipsink");
    let first = enc.property::<i32>("target-bitrate");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(target(&whip), 0);
    assert_eq!(enc.property::<i32>("target-bitrate"), first);
}

#[test]
fn a_low_estimate_makes_whipsinks_own_encoder_send_a_smaller_picture() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! whipsink name=whip whip-endpoint={}/whip/cam ice-addresses=127.0.0.1 \
         video-caps=video/x-vp8 start-bitrate=250000 min-bitrate=100000 max-bitrate=300000",
        server.base
    ));
    let whip = client.pipeline.by_name("whip").unwrap();
    let encoded_size = || {
        let caps = own_encoder(&whip)?.static_pad("sink")?.current_caps()?;
        let s = caps.structure(0)?;
        Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
    };
    // 720p30 at 300 kbit/s at most: 640x360 or 320x180 (src/resolution.rs).
    assert!(
        wait_until(Duration::from_secs(10), || encoded_size()
            .is_some_and(|(w, h)| w <= 640 && h <= 360)),
        "encoded at {:?}, estimate {} (errors {:?})",
        encoded_size(),
        target(&whip),
        client.messages.errors()
    );
    let before = server.counters.video();
    assert!(
        wait_until(Duration::from_secs(5), || server.counters.video()
            > before + 30),
        "the smaller picture does not arrive: {} frames",
        server.counters.video()
    );
    assert!(client.messages.errors().is_empty());
}
