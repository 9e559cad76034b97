//! Every `gst-launch-1.0` line of the README, run as a user runs it: by
//! `gst-launch-1.0 -e` in a process of its own, against our server elements
//! on loopback, with frames counted, then stopped by one SIGINT (Ctrl-C),
//! which must end it with status 0 within 3 s.
//!
//! The lines are read from README.md, so the test and the README cannot
//! drift apart. What is changed, and only that: endpoints and addresses
//! point to a local server, `ice-addresses=127.0.0.1` is added where a line
//! has none (the network rule: loopback only), shell variables get a value,
//! `autovideosink` becomes a `fakesink` that reports its buffers (CI has no
//! display, and there autovideosink crashes), and files go to a temp dir.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use gst::prelude::*;

use common::e2e::{
    count_buffers, init, wait_until, Client, WhepServer, WhipServer, OPUS_SRC, VP8_SRC,
};
use common::launch::{root, tail, tempdir, Launch};

const FRAMES_WAIT: Duration = Duration::from_secs(15);
/// One SIGINT ends a pipeline within this (issue: Ctrl-C that ends it).
const SIGINT_EXIT: Duration = Duration::from_secs(3);

const H264_CB_SRC: &str = "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency sliced-threads=false speed-preset=ultrafast key-int-max=30 ! video/x-h264,profile=constrained-baseline";

/// The README's gst-launch lines: continuation lines joined, comments cut.
fn readme_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut lines = Vec::new();
    let mut current: Option<String> = None;
    for raw in readme.lines() {
        let line = raw.trim();
        let (text, continues) = match line.strip_suffix('\\') {
            Some(t) => (t.trim(), true),
            None => (line, false),
        };
        match current.as_mut() {
            Some(c) => {
                c.push(' ');
                c.push_str(text);
            }
            None if text.starts_with("gst-launch-1.0 ") => current = Some(text.to_string()),
            None => continue,
        }
        if !continues {
            let full = current.take().unwrap();
            let full = full.split(" #").next().unwrap().trim().to_string();
            lines.push(full);
        }
    }
    lines
}

/// What a line needs from the test: which element it is run against.
#[derive(Debug, PartialEq)]
enum Kind {
    /// A WHIP server (whipserversrc) that a publisher is sent to.
    WhipServer,
    /// A WHEP server (whepserversink) that a player watches.
    WhepServer,
    /// A publisher (whipsink), sent to our WHIP server.
    Publisher,
    /// A player (whepsrc) of our WHEP server.
    Player,
}

fn kind(line: &str) -> Kind {
    if line.contains("whipserversrc") {
        Kind::WhipServer
    } else if line.contains("whepserversink") {
        Kind::WhepServer
    } else if line.contains("whipsink") {
        Kind::Publisher
    } else if line.contains("whepsrc") {
        Kind::Player
    } else {
        panic!("a README pipeline this test does not know how to run: {line}")
    }
}

/// The README line made local (see the module doc); `endpoint` replaces
/// the WHIP/WHEP endpoint, `port` the server address's.
fn localize(line: &str, endpoint: &str, port: u16, dir: &Path) -> Vec<String> {
    let ours = ["whipsink", "whepsrc", "whipserversrc", "whepserversink"];
    let pin = !line.contains("ice-addresses=");
    let mut args = Vec::new();
    for token in line.split_whitespace().skip(1) {
        let token = if token.starts_with("whip-endpoint=") || token.starts_with("whep-endpoint=") {
            format!("{}={endpoint}", token.split('=').next().unwrap())
        } else if token.starts_with("address=") {
            format!("address=127.0.0.1:{port}")
        } else if token == "autovideosink" {
            args.push("fakesink".into());
            "silent=false".to_string()
        } else if let Some(file) = token.strip_prefix("location=") {
            format!("location={}", dir.join(file).display())
        } else {
            token
                .replace("$TOKEN", "readme-token")
                .replace("$DEVICE", "readme-device")
                .replace("$STREAM_KEY", "readme-key")
        };
        let is_ours = ours.contains(&token.as_str());
        args.push(token);
        if is_ours && pin {
            args.push("ice-addresses=127.0.0.1".into());
        }
    }
    args
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_interrupted_cleanly(launch: Launch, line: &str) -> String {
    let (code, took, out) = launch.interrupt();
    assert!(
        code == Some(0) && took < SIGINT_EXIT,
        "{line}\nexit {code:?} {took:?} after one SIGINT:\n{}",
        tail(&out)
    );
    out
}

/// Runs one README line against the matching local peer, counts frames,
/// and ends it with one SIGINT.
fn run_line(line: &str) {
    init();
    let dir = tempdir();
    match kind(line) {
        Kind::Publisher => {
            let server = WhipServer::start("");
            let endpoint = format!("{}/whip/readme", server.base);
            let launch = Launch::start(&localize(line, &endpoint, 0, &dir), &dir);
            assert!(
                wait_until(FRAMES_WAIT, || server.counters.video()
                    + server.counters.audio()
                    >= 30),
                "{line}\nthe server got no media:\n{}",
                tail(&launch.output())
            );
            assert_interrupted_cleanly(launch, line);
            assert!(
                wait_until(Duration::from_secs(2), || server.deletes() == 1),
                "{line}\nno DELETE after Ctrl-C"
            );
        }
        Kind::Player => {
            // Every real WHEP stream has audio: so does ours, unless the line
            // plays H.264 (h264parse), which gets H.264 and audio.
            let video = if line.contains("h264") {
                H264_CB_SRC
            } else {
                VP8_SRC
            };
            let server = WhepServer::start(
                &format!("{video} ! queue ! server. {OPUS_SRC} ! queue ! server."),
                "",
            );
            let launch = Launch::start(&localize(line, &server.endpoint(), 0, &dir), &dir);
            let file = dir.join("out.mp4");
            let flowing = || {
                if line.contains("location=") {
                    std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 20_000
                } else {
                    launch.sink_buffers() >= 30
                }
            };
            assert!(
                wait_until(FRAMES_WAIT, flowing),
                "{line}\nnothing played:\n{}",
                tail(&launch.output())
            );
            assert_interrupted_cleanly(launch, line);
            if line.contains("location=") {
                let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                assert!(len > 1000, "{line}\n{} is {len} bytes", file.display());
            }
            assert!(
                wait_until(Duration::from_secs(2), || server.deletes() == 1),
                "{line}\nno DELETE after Ctrl-C: {:?}",
                server.viewers_removed()
            );
        }
        Kind::WhipServer => {
            let port = free_port();
            let launch = Launch::start(&localize(line, "", port, &dir), &dir);
            let publisher = wait_for_server(port, || {
                Client::start(&format!(
                    "whipsink name=w whip-endpoint=http://127.0.0.1:{port}/whip/readme \
                     ice-addresses=127.0.0.1 {VP8_SRC} ! w. {OPUS_SRC} ! w."
                ))
            });
            assert!(
                wait_until(FRAMES_WAIT, || launch.sink_buffers() >= 30),
                "{line}\nnothing came out of the server: publisher errors {:?}\n{}",
                publisher.messages.errors(),
                tail(&launch.output())
            );
            assert_interrupted_cleanly(launch, line);
        }
        Kind::WhepServer => {
            let port = free_port();
            let launch = Launch::start(&localize(line, "", port, &dir), &dir);
            let player = wait_for_server(port, || {
                Client::start(&format!(
                    "whepsrc whep-endpoint=http://127.0.0.1:{port}/ ice-addresses=127.0.0.1 \
                     ! videoconvert ! fakesink name=out"
                ))
            });
            let counted = count_buffers(&player.pipeline.by_name("out").unwrap());
            assert!(
                wait_until(FRAMES_WAIT, || counted
                    .load(std::sync::atomic::Ordering::SeqCst)
                    >= 30),
                "{line}\nthe viewer got nothing: {:?}\n{}",
                player.messages.errors(),
                tail(&launch.output())
            );
            assert_interrupted_cleanly(launch, line);
        }
    }
}

/// Waits for the child's server to listen, then starts `client`.
fn wait_for_server<T>(port: u16, client: impl FnOnce() -> T) -> T {
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the server did not listen on {port}"
    );
    client()
}

fn lines_of(k: Kind) -> Vec<String> {
    readme_lines()
        .into_iter()
        .filter(|l| kind(l) == k)
        .collect()
}

fn run_all(k: Kind) {
    let lines = lines_of(k);
    assert!(!lines.is_empty());
    for line in &lines {
        eprintln!("README: {line}");
        run_line(line);
    }
}

#[test]
fn readme_has_pipelines_and_each_is_run_by_a_test_below() {
    let lines = readme_lines();
    assert!(lines.len() >= 10, "{lines:#?}");
    // kind() panics on a line none of the tests below can run.
    for l in &lines {
        kind(l);
    }
}

#[test]
fn readme_publisher_pipelines_publish_and_end_on_ctrl_c() {
    run_all(Kind::Publisher);
}

#[test]
fn readme_player_pipelines_play_an_audio_video_stream_and_end_on_ctrl_c() {
    run_all(Kind::Player);
}

#[test]
fn readme_server_pipelines_serve_and_end_on_ctrl_c() {
    run_all(Kind::WhipServer);
    run_all(Kind::WhepServer);
}
