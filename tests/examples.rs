//! The example programs as a user runs them: exit statuses, messages,
//! `play --count` and Ctrl-C.
//!
//! Cargo gives integration tests the path of the crate's binaries
//! (`CARGO_BIN_EXE_<name>`) but not of its examples. `cargo test` builds the
//! examples too, into `target/<profile>/examples/`, next to the `deps/`
//! directory this test binary runs from: they are looked up there. Run
//! `cargo test --test examples` (or `cargo build --examples` first) so they
//! are current.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/");
    let path = dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} not found: build the examples (cargo test builds them)",
        path.display()
    );
    path
}

/// Waits at most `limit` for `child`; kills it after that and panics.
fn wait_with_limit(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            let mut stderr = String::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_string(&mut stdout).unwrap();
            }
            if let Some(mut err) = child.stderr.take() {
                err.read_to_string(&mut stderr).unwrap();
            }
            return Output {
                status,
                stdout: stdout.into_bytes(),
                stderr: stderr.into_bytes(),
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(name: &str, args: &[&str]) -> Child {
    Command::new(example(name))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn relay_on_a_busy_port_exits_1_with_the_elements_error() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    for name in ["relay", "demo"] {
        let child = spawn(name, &["--address", &address, "--seconds", "1"]);
        let out = wait_with_limit(child, Duration::from_secs(20), name);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot serve /whip on {address}")),
            "{name}: stderr lacks the element's message: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
            "{name} panicked: {stderr}"
        );
    }
    drop(busy);
}

#[test]
fn play_help_documents_count() {
    let out = wait_with_limit(
        spawn("play", &["--help"]),
        Duration::from_secs(10),
        "play --help",
    );
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--count N"));
    let out = wait_with_limit(spawn("play", &[]), Duration::from_secs(10), "play");
    assert_eq!(out.status.code(), Some(2), "no endpoint is a usage error");
}

/// A WHEP server in this process, on loopback, serving a VP8 test pattern.
struct Server {
    pipeline: gst::Pipeline,
    endpoint: String,
}

impl Server {
    fn start() -> Server {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            gst::init().unwrap();
            gstwhipwhep::plugin_register_static().unwrap();
        });
        let pipeline = gst::parse::launch(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 \
             ! vp8enc deadline=1 ! whepserversink name=server address=127.0.0.1:0 \
             ice-addresses=127.0.0.1",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bound: String = pipeline
            .by_name("server")
            .unwrap()
            .property("bound-address");
        Server {
            pipeline,
            endpoint: format!("http://{bound}/"),
        }
    }

    /// Whether a viewer-removed message came, within `limit`.
    fn viewer_removed(&self, limit: Duration) -> bool {
        let bus = self.pipeline.bus().unwrap();
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                &[gst::MessageType::Element],
            ) else {
                return false;
            };
            if msg
                .structure()
                .is_some_and(|s| s.name() == "viewer-removed")
            {
                return true;
            }
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[test]
fn play_count_exits_0_after_n_decoded_frames() {
    let server = Server::start();
    let child = spawn(
        "play",
        &[
            &server.endpoint,
            "--count",
            "10",
            "--ice-addresses",
            "127.0.0.1",
        ],
    );
    let out = wait_with_limit(child, Duration::from_secs(30), "play --count 10");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "play --count: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let decoded: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("decoded ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no \"decoded N video frames\" line in {stdout:?}"));
    // Frames decoded while the EOS went through may add a few.
    assert!(decoded >= 10, "{stdout}");
    eprintln!("{}", stdout.trim());
}

#[test]
fn play_stops_cleanly_on_ctrl_c() {
    let server = Server::start();
    let child = spawn(
        "play",
        &[
            &server.endpoint,
            "--count",
            "1000000",
            "--ice-addresses",
            "127.0.0.1",
        ],
    );
    // Let the session start, then Ctrl-C (SIGINT) it.
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let sent = Instant::now();
    let out = wait_with_limit(child, Duration::from_secs(10), "play after SIGINT");
    let took = sent.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "play after SIGINT: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // 3 s for EOS at most, then NULL: the session is DELETEd on the way.
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(
        server.viewer_removed(Duration::from_secs(5)),
        "the server never saw the viewer go"
    );
    eprintln!("play stopped {took:?} after SIGINT");
}
