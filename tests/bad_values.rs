//! Values that can never work fail at once, in NULL→READY, with a bus ERROR
//! naming the property and the value, instead of a timeout much later (a bad
//! `ice-addresses` entry used to fail only when ICE gathering gave up) or
//! nothing at all (a bad `stun-server` was ignored).
//!
//! No network: the endpoint is a loopback URL that is never contacted,
//! because the state change stops before any session starts.

use std::time::{Duration, Instant};

use gst::prelude::*;

/// The ERROR must come this fast: NULL→READY does no I/O.
const LIMIT: Duration = Duration::from_secs(1);

fn init() {
    gst::init().unwrap();
    gstwhipwhep::plugin_register_static().unwrap();
}

/// Starts `element` with `props` alone in a pipeline; returns the ERROR text
/// and how long it took to arrive. Panics if the state change succeeds.
fn start_fails(element: &str, props: &str) -> (String, Duration) {
    init();
    let endpoint = match element {
        "whipsink" => "whip-endpoint=http://127.0.0.1:9/whip",
        _ => "whep-endpoint=http://127.0.0.1:9/whep",
    };
    let pipeline = in_pipeline(&format!("{element} {endpoint} {props}"));
    let started = Instant::now();
    let result = pipeline.set_state(gst::State::Playing);
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
    let elapsed = started.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        result.is_err(),
        "{element} {props}: the state change succeeded ({result:?})"
    );
    let Some(msg) = msg else {
        panic!("{element} {props}: no ERROR on the bus within 5 s");
    };
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    (err.error().to_string(), elapsed)
}

/// The element `description` (gst-launch syntax) alone in a pipeline: a
/// lone element is what `gst::parse::launch` returns, without a bus.
fn in_pipeline(description: &str) -> gst::Pipeline {
    let element = gst::parse::launch(description).unwrap_or_else(|e| panic!("{description}: {e}"));
    let pipeline = gst::Pipeline::new();
    pipeline.add(&element).unwrap();
    pipeline
}

fn check(element: &str, props: &str, expected: &[&str]) {
    let (text, elapsed) = start_fails(element, props);
    for part in expected {
        assert!(
            text.contains(part),
            "{element} {props}: ERROR {text:?} does not mention {part:?}"
        );
    }
    assert!(
        elapsed < LIMIT,
        "{element} {props}: ERROR after {elapsed:?}, want < {LIMIT:?}"
    );
    eprintln!("{element} {props}: {text:?} after {elapsed:?}");
}

#[test]
fn whipsink_rejects_ice_address_that_is_no_ip() {
    check(
        "whipsink",
        "ice-addresses=127.0.0.1,banana",
        &["ice-addresses", "\"banana\"", "not an IP address"],
    );
}

#[test]
fn whepsrc_rejects_ice_address_that_is_no_ip() {
    check(
        "whepsrc",
        "ice-addresses=banana",
        &["ice-addresses", "\"banana\"", "not an IP address"],
    );
}

#[test]
fn whipsink_rejects_stun_server_that_is_no_stun_uri() {
    check(
        "whipsink",
        "stun-server=foo",
        &["stun-server", "\"foo\"", "stun://host[:port]"],
    );
}

#[test]
fn whepsrc_rejects_stun_server_that_is_no_stun_uri() {
    check(
        "whepsrc",
        "stun-server=foo",
        &["stun-server", "\"foo\"", "stun://host[:port]"],
    );
}

#[test]
fn turn_server_without_credentials_is_rejected_and_password_never_shown() {
    check(
        "whepsrc",
        "turn-server=turn://turn.example:3478",
        &["turn-server", "user name and password"],
    );
    let (text, _) = start_fails(
        "whipsink",
        "turn-server=turn://user:hunter2@turn.example?transport=sctp",
    );
    assert!(text.contains("turn-server"), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[test]
fn bad_endpoint_is_still_rejected() {
    init();
    let pipeline = in_pipeline("whepsrc whep-endpoint=ftp://127.0.0.1/x");
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        .expect("an ERROR");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert!(
        err.error().to_string().contains("whep-endpoint"),
        "{}",
        err.error()
    );
}

#[test]
fn good_values_pass_null_to_ready() {
    init();
    for element in ["whipsink", "whepsrc"] {
        let endpoint = if element == "whipsink" {
            "whip-endpoint"
        } else {
            "whep-endpoint"
        };
        let el = gst::ElementFactory::make(element)
            .property(endpoint, "http://127.0.0.1:9/x")
            .property("ice-addresses", "127.0.0.1,::1")
            .property("stun-server", "stun://127.0.0.1:3478")
            .property("turn-server", "turn://u:p@127.0.0.1:3478?transport=udp")
            .build()
            .unwrap();
        el.set_state(gst::State::Ready)
            .unwrap_or_else(|_| panic!("{element}: NULL→READY failed with good values"));
        el.set_state(gst::State::Null).unwrap();
    }
}
