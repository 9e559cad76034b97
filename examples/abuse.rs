//! Abuse: what `--requests` hostile or broken HTTP requests leave in a
//! server element (issue 11). One whepserversink (`--server whep`, the
//! default) or whipserversrc (`--server whip`) in this process; the
//! requests cycle through: garbage SDP, an empty body, a wrong content
//! type, a body over the limit, an offer with 400 unbundled m-lines, a
//! DELETE and a PATCH of unknown sessions, an unknown path, headers cut off
//! half way (left open), and a connection closed at once. Prints one JSON
//! object: the statuses seen per kind, and the server process's threads,
//! fds and RSS before, right after (with the client ends of the half-sent
//! requests, which this process holds), and 6 s later, once those are
//! closed (the server's header timeout is 5 s).
//!
//!     cargo run --release --example abuse -- [--server whep|whip] [--requests 300]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, init, pipeline_of, rss_kib, WHIP_SERVER};
#[path = "../tests/common/offers.rs"]
mod offers;

const VIDEO: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";

/// Sends `raw` on a fresh connection and returns the status (0: none, the
/// server closed the connection without answering).
fn send(addr: &str, raw: &[u8], then_close: bool) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(raw);
    if then_close {
        return 0;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn request(path: &str, method: &str, ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: abuse\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn main() {
    let requests: usize = arg("--requests", 300);
    let server: String = arg("--server", "whep".into());
    init();
    let (desc, path, direction) = match server.as_str() {
        "whip" => (WHIP_SERVER.to_string(), "/whip/abuse", "sendonly"),
        "whep" => (
            format!(
                "{VIDEO} ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1"
            ),
            "/whep",
            "recvonly",
        ),
        other => panic!("--server whep or whip, not {other}"),
    };
    let pipeline = pipeline_of(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let element = pipeline.by_name("server").unwrap();
    let addr = element.property::<String>("bound-address");
    std::thread::sleep(Duration::from_secs(1));
    let measure = || (threads(), fds(), rss_kib());
    let before = measure();

    let big = vec![b'v'; 300 * 1024];
    let many = offers::video_offer(400, false, direction);
    let kinds: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "garbage sdp",
            request(path, "POST", "application/sdp", b"this is not SDP\r\n"),
            false,
        ),
        (
            "empty body",
            request(path, "POST", "application/sdp", b""),
            false,
        ),
        (
            "wrong content type",
            request(path, "POST", "text/plain", b"v=0\r\n"),
            false,
        ),
        (
            "body over the limit",
            request(path, "POST", "application/sdp", &big),
            false,
        ),
        (
            "400 unbundled m-lines",
            request(path, "POST", "application/sdp", many.as_bytes()),
            false,
        ),
        (
            "DELETE unknown session",
            request(
                &format!("{path}/nosuchsession"),
                "DELETE",
                "text/plain",
                b"",
            ),
            false,
        ),
        (
            "PATCH unknown session",
            request(
                &format!("{path}/nosuchsession"),
                "PATCH",
                "application/trickle-ice-sdpfrag",
                b"a=ice-ufrag:x\r\n",
            ),
            false,
        ),
        (
            "GET of any other path (the browser page)",
            request("/nothing/here", "GET", "text/plain", b""),
            false,
        ),
        (
            "headers cut off",
            b"POST /whep HTTP/1.1\r\nHost: abuse\r\nContent-Le".to_vec(),
            true,
        ),
        ("closed at once", Vec::new(), true),
    ];
    let mut statuses: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    let started = Instant::now();
    let mut held = Vec::new();
    for i in 0..requests {
        let (name, raw, close) = &kinds[i % kinds.len()];
        if *close && !raw.is_empty() {
            // Half a request, left open: the server must time it out.
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let _ = s.write_all(raw);
                held.push(s);
            }
            *statuses.entry(name).or_default().entry(0).or_default() += 1;
            continue;
        }
        let status = send(&addr, raw, *close);
        *statuses.entry(name).or_default().entry(status).or_default() += 1;
    }
    let took = started.elapsed();
    // Right after: with both ends of the cut-off requests (the client
    // ends are this process's too). 6 s later the server has timed its
    // ends out; then the client ends go.
    let right_after = measure();
    std::thread::sleep(Duration::from_secs(6));
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let later = measure();
    let still_serves = send(
        &addr,
        &request(path, "POST", "application/sdp", b"still garbage\r\n"),
        false,
    );
    pipeline.set_state(gst::State::Null).unwrap();

    let statuses: Vec<String> = statuses
        .iter()
        .map(|(k, v)| {
            let inner: Vec<String> = v.iter().map(|(s, n)| format!("\"{s}\": {n}")).collect();
            format!("\"{k}\": {{{}}}", inner.join(", "))
        })
        .collect();
    println!(
        "{{\n  \"server\": \"{server}\",\n  \"requests\": {requests},\n  \"seconds\": {:.2},\n  \"statuses_by_kind (0: no answer, by design)\": {{{}}},\n  \"server_threads_before_after_6s_later\": [{}, {}, {}],\n  \"server_fds_before_after_6s_later\": [{}, {}, {}],\n  \"server_rss_kib_before_after_6s_later\": [{:.0}, {:.0}, {:.0}],\n  \"a_request_after_it_all\": {still_serves}\n}}",
        took.as_secs_f64(),
        statuses.join(", "),
        before.0,
        right_after.0,
        later.0,
        before.1,
        right_after.1,
        later.1,
        before.2,
        right_after.2,
        later.2,
    );
}
