//! whipsink → whipserversrc over real WebRTC on loopback (webrtcbin, ICE,
//! DTLS, SRTP), counting the frames that reach the server and checking that
//! every session is DELETEd.

mod common;

use std::time::{Duration, Instant};

use gst::prelude::*;

use common::e2e::{
    publish_and_count, wait_until, whipsink, Client, WhipServer, H264_SRC, OPUS_SRC, RT, VP8_SRC,
};
use common::front::Front;
use common::http_server::{Reply, TestServer};

#[test]
fn vp8_is_published_and_deleted_on_stop() {
    let server = WhipServer::start("");
    let client = Client::start(&format!("{VP8_SRC} ! {}", whipsink(&server.endpoint(), "")));
    publish_and_count(&server, &client, 30, 0);
    server.counters.assert_caps("video/x-vp8");
}

#[test]
fn rtp_input_is_accepted_like_gst_plugins_rs_whipsink() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{VP8_SRC} ! rtpvp8pay ! {}",
        whipsink(&server.endpoint(), "")
    ));
    publish_and_count(&server, &client, 30, 0);
}

#[test]
fn h264_is_published_with_profile_and_packetization_mode() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{H264_SRC} ! {}",
        whipsink(&server.endpoint(), "")
    ));
    publish_and_count(&server, &client, 30, 0);
    server.counters.assert_caps("video/x-h264");
}

#[test]
fn opus_and_vp8_are_published_together() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "{} {VP8_SRC} ! whip.sink_0 {OPUS_SRC} ! whip.sink_1",
        whipsink(&server.endpoint(), "")
    ));
    publish_and_count(&server, &client, 30, 20);
}

#[test]
fn correct_token_is_accepted() {
    let server = WhipServer::start("auth-token=s3cret");
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&server.endpoint(), "auth-token=s3cret")
    ));
    publish_and_count(&server, &client, 10, 0);
}

#[test]
fn wrong_token_gives_an_error_naming_401_and_no_secret() {
    let server = WhipServer::start("auth-token=s3cret");
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&server.endpoint(), "auth-token=wrong-token")
    ));
    let err = client.wait_error(Duration::from_secs(5)).expect("an ERROR");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("Unauthorized"), "{err}");
    assert!(err.contains("/whip/cam"), "the error names the URL: {err}");
    assert!(!err.contains("wrong-token"), "{err}");
    assert_eq!(server.counters.video(), 0);
}

#[test]
fn redirect_307_is_followed_with_body_and_token() {
    let server = WhipServer::start("auth-token=s3cret");
    let front = RT.block_on(TestServer::start());
    front.on(
        "POST",
        "/whip/old",
        Reply::new(307).header("location", &server.endpoint()),
    );
    // Another port is another origin, and http: the token goes along only
    // because redirect-auth says so (docs/protocol.md P6).
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(
            &format!("{}/whip/old", front.base()),
            "auth-token=s3cret redirect-auth=keep"
        )
    ));
    publish_and_count(&server, &client, 10, 0);
    let reqs = front.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer s3cret"));
}

#[test]
fn token_is_dropped_on_a_cross_origin_redirect_to_http() {
    let server = WhipServer::start("auth-token=s3cret");
    let front = RT.block_on(TestServer::start());
    front.on(
        "POST",
        "/whip/old",
        Reply::new(307).header("location", &server.endpoint()),
    );
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip/old", front.base()), "auth-token=s3cret")
    ));
    // The server never saw the token, so it refused.
    let err = client.wait_error(Duration::from_secs(5)).expect("an ERROR");
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(
        front.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );
}

#[test]
fn an_answer_accepting_none_of_the_offered_codecs_is_an_error_and_deleted() {
    let server = WhipServer::start("");
    // The answer's video formats are renamed to a codec nobody offered.
    let front = RT.block_on(Front::start_with(
        server.base.clone(),
        |loc| loc.to_string(),
        |sdp| {
            if !sdp.contains("a=sendonly") {
                // Only the answer (recvonly) is mangled; the offer passes.
                sdp.replace(" VP8/90000", " MANGLED/90000")
            } else {
                sdp.to_string()
            }
        },
    ));
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip/cam", front.base()), "")
    ));
    let err = client.wait_error(Duration::from_secs(8)).expect("an ERROR");
    assert!(
        err.contains("the answer accepts none of the offered codecs"),
        "{err}"
    );
    assert!(err.contains("VP8/90000 pt 96"), "{err}");
    assert!(err.contains("MANGLED/90000"), "{err}");
    assert!(
        wait_until(Duration::from_secs(3), || front
            .passed()
            .iter()
            .any(|p| p.method == "DELETE" && p.status == 200)),
        "the session was not DELETEd: {:?}",
        front.passed()
    );
    assert_eq!(server.counters.video(), 0);
}

#[test]
fn relative_location_is_resolved_and_deleted() {
    let server = WhipServer::start("");
    // whipserversrc answers "/whip/cam/<id>"; the front makes it "cam/<id>",
    // relative to the POST URL http://front/whip/cam.
    let front = RT.block_on(Front::start(server.base.clone(), |loc| {
        loc.trim_start_matches("/whip/").to_string()
    }));
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip/cam", front.base()), "")
    ));
    publish_and_count(&server, &client, 10, 0);
    let passed = front.passed();
    let delete = passed
        .iter()
        .find(|p| p.method == "DELETE")
        .expect("a DELETE");
    assert!(delete.path.starts_with("/whip/cam/"), "{delete:?}");
    assert_eq!(delete.status, 200);
}

#[test]
fn json_api_503_shows_title_and_detail() {
    let front = RT.block_on(TestServer::start());
    front.on(
        "POST",
        "/whip",
        Reply::new(503).header("retry-after", "3").json(
            r#"{"errors":[{"status":"503","title":"Device Unavailable","detail":"Device is currently offline"}]}"#,
        ),
    );
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip", front.base()), "max-retries=0")
    ));
    let err = client.wait_error(Duration::from_secs(5)).expect("an ERROR");
    assert!(err.contains("503"), "{err}");
    assert!(err.contains("Device Unavailable"), "{err}");
    assert!(err.contains("Device is currently offline"), "{err}");
}

#[test]
fn connection_refused_errors_within_timeout() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = std::time::Instant::now();
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("http://127.0.0.1:{port}/whip"), "timeout=2")
    ));
    let err = client
        .wait_error(Duration::from_secs(3))
        .expect("an ERROR within the timeout");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn stop_during_the_post_reaches_null_within_a_second() {
    let mute = RT.block_on(TestServer::mute());
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip", mute.base()), "timeout=30")
    ));
    assert!(
        wait_until(Duration::from_secs(5), || mute.connections() > 0),
        "no POST was sent"
    );
    std::thread::sleep(Duration::from_millis(200));
    let took = client.stop();
    assert!(took < Duration::from_secs(1), "NULL took {took:?}");
}

#[test]
fn eos_deletes_the_session_before_eos_is_posted() {
    let server = WhipServer::start("");
    let client = Client::start(&format!(
        "videotestsrc is-live=true num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 ! {}",
        whipsink(&server.endpoint(), "")
    ));
    assert!(
        wait_until(Duration::from_secs(10), || client.messages.has_eos()),
        "no EOS"
    );
    assert_eq!(server.deletes(), 1, "EOS came before the DELETE");
    assert!(server.counters.video() > 0);
    let ended = client.messages.element("session-ended");
    assert_eq!(ended.len(), 1);
    client.stop();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.deletes(), 1, "DELETE must be sent once");
}

#[test]
fn ice_failure_is_an_error_and_the_session_is_deleted() {
    let server = WhipServer::start("");
    // Offer and answer candidates point to a port nobody listens on.
    let front = RT.block_on(Front::start_with(
        server.base.clone(),
        |loc| loc.to_string(),
        |sdp| {
            sdp.lines()
                .map(|l| {
                    if l.starts_with("a=candidate:") {
                        let mut f: Vec<&str> = l.split(' ').collect();
                        if f.len() > 5 {
                            f[5] = "9";
                        }
                        f.join(" ")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\r\n")
                + "\r\n"
        },
    ));
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip/cam", front.base()), "timeout=3")
    ));
    let err = client.wait_error(Duration::from_secs(8)).expect("an ERROR");
    assert!(err.contains("ICE") || err.contains("connect"), "{err}");
    assert!(
        wait_until(Duration::from_secs(3), || front
            .passed()
            .iter()
            .any(|p| p.method == "DELETE")),
        "the failed session was not DELETEd"
    );
    assert_eq!(server.counters.video(), 0);
}

#[test]
fn stopping_closes_the_pending_post_within_a_second_and_a_late_201_is_deleted() {
    use std::io::Read;
    // A server that reads the POST and never answers: when does the client
    // close the connection?
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = tx.send(Instant::now());
        let mut buf = [0u8; 65536];
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(Instant::now());
    });
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{base}/whip"), "timeout=15")
    ));
    rx.recv_timeout(Duration::from_secs(5)).expect("no POST");
    std::thread::sleep(Duration::from_millis(200));
    let stopped = Instant::now();
    assert!(client.stop() < Duration::from_secs(1));
    let closed = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the POST's connection is still open 5 s after the stop");
    let after = closed.duration_since(stopped);
    eprintln!("POST connection closed {after:?} after the stop");
    assert!(after < Duration::from_millis(1500), "{after:?}");

    // A 201 that comes 600 ms after the stop is DELETEd.
    let front = RT.block_on(TestServer::start());
    front.on(
        "POST",
        "/whip",
        Reply::new(201)
            .header("location", "/whip/late")
            .sdp("v=0\r\n")
            .delay(Duration::from_millis(800)),
    );
    front.on("DELETE", "/whip/late", Reply::new(200));
    let client = Client::start(&format!(
        "{VP8_SRC} ! {}",
        whipsink(&format!("{}/whip", front.base()), "")
    ));
    assert!(wait_until(Duration::from_secs(5), || !front
        .requests()
        .is_empty()));
    std::thread::sleep(Duration::from_millis(200));
    client.stop();
    assert!(
        wait_until(Duration::from_secs(3), || front
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path() == "/whip/late")),
        "the late session was not DELETEd: {:?}",
        front
            .requests()
            .iter()
            .map(|r| &r.method)
            .collect::<Vec<_>>()
    );
}

/// `do-retransmission` (default on): whipsink's video offers NACK and RTX,
/// and its RTX sender keeps a resend history of the video format; off, it
/// offers neither and keeps none, and publishing goes on.
#[test]
fn do_retransmission_decides_whether_video_is_resent_on_request() {
    for (props, resends) in [("", true), ("do-retransmission=false", false)] {
        let server = WhipServer::start("");
        let client = Client::start(&format!(
            "{VP8_SRC} ! {}",
            whipsink(&server.endpoint(), props)
        ));
        assert!(
            wait_until(Duration::from_secs(10), || server.counters.video() >= 30),
            "{props}: published nothing"
        );
        let formats: Vec<u32> = client
            .pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter(|e| e.factory().is_some_and(|f| f.name() == "rtprtxsend"))
            .map(|e| {
                e.property::<Option<gst::Structure>>("payload-type-map")
                    .map_or(0, |m| m.n_fields() as u32)
            })
            .collect();
        assert_eq!(
            formats.iter().any(|n| *n > 0),
            resends,
            "{props}: RTX formats {formats:?}"
        );
        client.stop();
    }
}
