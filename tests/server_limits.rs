//! The server elements against abusive or vanished clients (issues 10.7,
//! 11.1, 11.2, 11.3): a slow-loris connection is closed within the header
//! timeout while requests go on; the listener's connections close with the
//! last element; a client SIGKILLed mid-session is reaped within seconds; an
//! offer with 400 m-lines is refused before any thread is made; max-sessions
//! refuses the next offer with 503; idle connections beyond the limit do not
//! keep a viewer out. Everything on 127.0.0.1, ICE pinned to it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::e2e::{init, wait_until, Player, WhepServer, WhipServer, VP8_SRC};
use common::launch::{tempdir, Launch};
use gst::prelude::*;

/// The tests count this process's threads and descriptors: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server's header timeout (`server::HEADER_TIMEOUT`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn connect(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// One request with `Connection: close`; the status and the whole response.
fn request(base: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = connect(base);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// How long until the server closes `s` (None: not within `limit`).
fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

use common::offers::video_offer as offer;

#[test]
fn slow_loris_is_closed_within_the_header_timeout_while_requests_go_on() {
    let _serial = serial();
    let server = WhipServer::start("path=/whip");
    let mut loris = connect(&server.base);
    loris
        .write_all(b"POST /whip HTTP/1.1\r\nHost: test\r\nContent-Type: appl")
        .unwrap();
    // Meanwhile requests are answered at once.
    for _ in 0..3 {
        let start = Instant::now();
        let (status, _) = request(&server.base, "OPTIONS", "/whip", "", "");
        assert_eq!(status, 204);
        assert!(start.elapsed() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(500));
    }
    let closed = closed_after(&mut loris, HEADER_TIMEOUT + Duration::from_secs(3));
    eprintln!("slow-loris closed after {closed:?} (more since its connect)");
    let closed = closed.expect("the stalled connection is still open");
    assert!(closed <= HEADER_TIMEOUT, "closed after {closed:?}");
    // A connection that never sends anything goes the same way.
    let mut silent = connect(&server.base);
    let closed = closed_after(&mut silent, HEADER_TIMEOUT + Duration::from_secs(2));
    assert!(closed.is_some_and(|c| c >= HEADER_TIMEOUT - Duration::from_millis(500)));
}

#[test]
fn connections_close_when_the_last_element_stops() {
    let _serial = serial();
    let server = WhipServer::start("path=/whip");
    let mut kept = connect(&server.base);
    write!(kept, "OPTIONS /whip HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    assert!(kept.read(&mut buf).unwrap() > 0);
    // A keep-alive connection, and one in the middle of a request's head.
    let mut partial = connect(&server.base);
    partial.write_all(b"POST /whip HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.pipeline.set_state(gst::State::Null).unwrap();
    for s in [&mut kept, &mut partial] {
        let closed = closed_after(s, Duration::from_secs(2));
        assert!(
            closed.is_some_and(|c| c < Duration::from_secs(1)),
            "{closed:?}"
        );
    }
    assert!(TcpStream::connect(server.base.trim_start_matches("http://")).is_err());
}

#[test]
fn offers_with_400_media_are_refused_before_any_thread() {
    let _serial = serial();
    let whip = WhipServer::start("path=/whip");
    let whep = WhepServer::start(&format!("{VP8_SRC} ! server."), "path=/whep");
    std::thread::sleep(Duration::from_millis(500));
    let before = threads();
    for (base, path, dir) in [
        (&whip.base, "/whip", "sendonly"),
        (&whep.base, "/whep", "recvonly"),
    ] {
        for bundle in [true, false] {
            let start = Instant::now();
            let (status, text) = request(
                base,
                "POST",
                path,
                "Content-Type: application/sdp\r\n",
                &offer(400, bundle, dir),
            );
            let took = start.elapsed();
            assert_eq!(status, 422, "{text}");
            assert!(text.contains("application/problem+json"), "{text}");
            assert!(text.contains("at most 8"), "{text}");
            assert!(took < Duration::from_millis(500), "{took:?}");
        }
        // More than 2 m-lines need BUNDLE.
        let (status, text) = request(
            base,
            "POST",
            path,
            "Content-Type: application/sdp\r\n",
            &offer(3, false, dir),
        );
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("a=group:BUNDLE"), "{text}");
    }
    let after = threads();
    eprintln!("threads before the 400-m-line offers: {before}, after: {after}");
    assert!(after <= before + 2, "threads {before} → {after}");
    assert!(whip.messages.element("publisher-added").is_empty());
    assert!(whep.viewers_added().is_empty());
}

#[test]
fn max_sessions_refuses_the_next_offer_with_503() {
    let _serial = serial();
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "path=/whep max-sessions=1");
    let player = Player::launch(&format!(
        "whepsrc whep-endpoint={}/whep ice-addresses=127.0.0.1 ! videoconvert ! fakesink",
        server.base
    ));
    assert!(player.wait_frames(Duration::from_secs(10), 5, 0));
    let (status, text) = request(
        &server.base,
        "POST",
        "/whep",
        "Content-Type: application/sdp\r\n",
        &offer(1, true, "recvonly"),
    );
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Retry-After") || text.contains("retry-after"));
    assert!(text.contains("max-sessions"), "{text}");
    assert_eq!(server.viewers_added().len(), 1);
    // The place is free again once the viewer leaves.
    player.stop();
    assert!(wait_until(Duration::from_secs(5), || server.deletes() == 1));
    let again = Player::launch(&format!(
        "whepsrc whep-endpoint={}/whep ice-addresses=127.0.0.1 ! videoconvert ! fakesink",
        server.base
    ));
    assert!(again.wait_frames(Duration::from_secs(10), 5, 0));
}

#[test]
fn idle_connections_beyond_the_limit_do_not_keep_a_viewer_out() {
    let _serial = serial();
    const IDLE: usize = 200; // the limit is 128
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "path=/whep");
    std::thread::sleep(Duration::from_millis(300));
    let fds_before = fds();
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(&server.base)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let fds_idle = fds();
    let start = Instant::now();
    let player = Player::launch(&format!(
        "whepsrc whep-endpoint={}/whep ice-addresses=127.0.0.1 ! videoconvert ! fakesink",
        server.base
    ));
    assert!(
        player.wait_frames(Duration::from_secs(10), 5, 0),
        "{:?}",
        player.messages.errors()
    );
    eprintln!(
        "fds before: {fds_before}, with {IDLE} idle connections: {fds_idle} \
         ({} server-side), viewer playing after {:?}",
        fds_idle - fds_before - IDLE,
        start.elapsed()
    );
    assert!(fds_idle - fds_before - IDLE <= 128);
    assert!(start.elapsed() < HEADER_TIMEOUT, "{:?}", start.elapsed());
    drop(idle);
}

/// `gst-launch-1.0` with a client element, SIGKILLed once its session
/// started; returns how long the server took to post `removed` after.
fn reap_after_kill(
    pipeline: &[&str],
    added: &dyn Fn() -> bool,
    removed: &dyn Fn() -> Option<String>,
) -> (Duration, String) {
    let dir = tempdir();
    let args: Vec<String> = pipeline.iter().map(|s| s.to_string()).collect();
    let mut child = Launch::start(&args, &dir);
    assert!(
        wait_until(Duration::from_secs(30), added),
        "no session: {}",
        child.output()
    );
    // Media flows for a while, RTCP reports with it: past the client's
    // first 12.3 s, in which the server waits longer (its pace is not known).
    std::thread::sleep(Duration::from_secs(13));
    assert!(
        removed().is_none(),
        "removed early: {removed:?}",
        removed = removed()
    );
    child.child.kill().unwrap();
    let killed = Instant::now();
    let _ = child.child.wait();
    let mut reason = None;
    wait_until(Duration::from_secs(20), || {
        reason = removed();
        reason.is_some()
    });
    (killed.elapsed(), reason.expect("not removed within 20 s"))
}

#[test]
fn killed_viewer_and_publisher_are_reaped_within_seconds() {
    let _serial = serial();
    init();
    let whep = WhepServer::start(&format!("{VP8_SRC} ! server."), "path=/whep");
    let endpoint = format!("whep-endpoint={}/whep", whep.base);
    let (took, reason) = reap_after_kill(
        &[
            "whepsrc",
            &endpoint,
            "ice-addresses=127.0.0.1",
            "!",
            "fakesink",
        ],
        &|| whep.viewers_added().len() == 1,
        &|| whep.viewers_removed().first().map(|(_, r)| r.clone()),
    );
    eprintln!("viewer SIGKILLed: removed after {took:?}: {reason}");
    assert!(reason.contains("peer-timeout"), "{reason}");
    assert!(took < Duration::from_secs(8), "{took:?}");

    let whip = WhipServer::start("path=/whip");
    let endpoint = format!("whip-endpoint={}/whip", whip.base);
    let (took, reason) = reap_after_kill(
        &[
            "videotestsrc",
            "is-live=true",
            "!",
            "vp8enc",
            "deadline=1",
            "!",
            "whipsink",
            &endpoint,
            "ice-addresses=127.0.0.1",
        ],
        &|| whip.messages.element("publisher-added").len() == 1,
        &|| {
            whip.messages
                .element("publisher-removed")
                .first()
                .and_then(|s| s.get::<String>("reason").ok())
        },
    );
    eprintln!("publisher SIGKILLed: removed after {took:?}: {reason}");
    assert!(reason.contains("peer-timeout"), "{reason}");
    assert!(took < Duration::from_secs(8), "{took:?}");
}

#[test]
fn the_port_is_free_as_soon_as_the_server_reaches_null() {
    gst::init().unwrap();
    gstwhipwhep::plugin_register_static().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for _ in 0..5 {
        let server = gst::ElementFactory::make("whipserversrc")
            .property("address", format!("127.0.0.1:{port}"))
            .build()
            .unwrap();
        server.set_state(gst::State::Ready).unwrap();
        server.set_state(gst::State::Null).unwrap();
        // What the relay example does: bind the port again at once.
        std::net::TcpListener::bind(("127.0.0.1", port))
            .expect("the port is still taken after NULL");
    }
}
