//! Stopping the servers (issue 15.3): the relay example and
//! `gst-launch-1.0 -e whipserversrc ...` exit within 3 s of one SIGINT with
//! status 0 after serving sessions, the server elements reach NULL within a
//! second however many sessions they serve, one element stopping leaves the
//! sessions of another on the same port alone, and the port closes with the
//! last of them. Real whipsink/whepsrc peers over loopback, ICE pinned to
//! 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::e2e::{init, wait_until, Client, Player, VP8_SRC};
use gst::prelude::*;

const MEDIA_WAIT: Duration = Duration::from_secs(10);
/// The acceptance bound for a process after one SIGINT.
const EXIT_LIMIT: Duration = Duration::from_secs(3);
/// The bound for an element's stop, whatever it serves.
const STOP_LIMIT: Duration = Duration::from_secs(1);

/// `target/<profile>/`: test binaries live in its `deps/`.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A private directory with only a copy of the plugin cargo built with this
/// test (see tests/inspect.rs for why not `deps/` itself), and a registry.
fn plugin_env() -> Vec<(&'static str, PathBuf)> {
    const PLUGIN: &str = "libgstwhipwhep.so";
    let build = build_dir();
    let plugin = [build.join("deps").join(PLUGIN), build.join(PLUGIN)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{PLUGIN} not found under {build:?}"));
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("server-stop-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    std::fs::copy(&plugin, dir.join("plugins").join(PLUGIN)).unwrap();
    vec![
        ("GST_PLUGIN_PATH", dir.join("plugins")),
        ("GST_REGISTRY", dir.join("registry.bin")),
    ]
}

/// A child process whose output lines are kept.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("GST_PLUGIN_PATH_1_0")
            .env_remove("GST_REGISTRY_1_0")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let lines = Arc::<Mutex<Vec<String>>>::default();
        let out: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in out {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Proc { child, lines }
    }

    fn find(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// One SIGINT, then how long until it exited, and how (None: still
    /// running after `limit`; it is killed then).
    fn interrupt(&mut self, limit: Duration) -> (Duration, Option<ExitStatus>) {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -INT failed");
        while sent.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (sent.elapsed(), Some(status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (sent.elapsed(), None)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn refused(addr: &str) -> bool {
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)).is_err()
}

fn whipsink(endpoint: &str) -> Client {
    Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint={endpoint} ice-addresses=127.0.0.1 auth-token=X"
    ))
}

fn whepsrc(endpoint: &str) -> Player {
    Player::launch(&format!(
        "whepsrc whep-endpoint={endpoint} ice-addresses=127.0.0.1 ! videoconvert ! fakesink"
    ))
}

#[test]
fn relay_exits_0_within_3_s_of_one_sigint_while_serving() {
    init();
    let relay_bin = build_dir().join("examples").join("relay");
    assert!(
        relay_bin.is_file(),
        "{relay_bin:?} is missing: build it (cargo test --all-targets builds the examples)"
    );
    let mut relay = Proc::spawn(
        Command::new(&relay_bin)
            .args(["--address", "127.0.0.1:0", "--ice-addresses", "127.0.0.1"])
            .envs(plugin_env()),
    );
    assert!(
        wait_until(Duration::from_secs(10), || relay
            .find("relay: publish to")
            .is_some()),
        "the relay did not start: {}",
        relay.output()
    );
    // "relay: publish to http://127.0.0.1:PORT/whip/<name>, ..."
    let line = relay.find("relay: publish to").unwrap();
    let addr = line
        .trim_start_matches("relay: publish to http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let publisher = Client::start(&format!(
        "{VP8_SRC} ! whipsink whip-endpoint=http://{addr}/whip/test ice-addresses=127.0.0.1"
    ));
    assert!(
        wait_until(MEDIA_WAIT, || relay.find("relay: test is live").is_some()),
        "not live: {:?}\n{}",
        publisher.messages.errors(),
        relay.output()
    );
    let viewers: Vec<Player> = (0..3)
        .map(|_| whepsrc(&format!("http://{addr}/whep/test")))
        .collect();
    for v in &viewers {
        assert!(
            v.wait_frames(MEDIA_WAIT, 10, 0),
            "a viewer got no frames: {:?}",
            v.messages.errors()
        );
    }

    let (took, status) = relay.interrupt(EXIT_LIMIT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the relay still runs {took:?} after SIGINT:\n{}",
            relay.output()
        )
    });
    println!(
        "relay exited {took:?} after SIGINT ({}), serving 1 publisher and 3 viewers",
        relay
            .find("relay: stopped in")
            .unwrap_or_else(|| "no stop time".into())
    );
    assert!(status.success(), "{status:?}:\n{}", relay.output());
    assert!(refused(&addr), "{addr} still accepts connections");
}

#[test]
fn gst_launch_e_whipserversrc_exits_0_within_3_s_of_one_sigint() {
    init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let env = plugin_env();
    let launch = |extra: &str| {
        Proc::spawn(
            Command::new("gst-launch-1.0")
                .arg("-e")
                .args(
                    format!(
                        "whipserversrc address={addr} auth-token=X ice-addresses=127.0.0.1 \
                         name=s s. ! queue ! fakesink {extra}"
                    )
                    .split_whitespace(),
                )
                .envs(env.clone()),
        )
    };
    let started = |p: &Proc| {
        wait_until(Duration::from_secs(10), || {
            p.find("Setting pipeline to PLAYING").is_some() && !refused(&addr)
        })
    };

    // 1. While a publisher is live: its stream ends with EOS, then NULL.
    let mut server = launch("");
    assert!(started(&server), "did not start:\n{}", server.output());
    let publisher = whipsink(&format!("http://{addr}/whip"));
    assert!(
        wait_until(MEDIA_WAIT, || publisher
            .messages
            .element("session-started")
            .len()
            == 1),
        "no session: {:?}",
        publisher.messages.errors()
    );
    std::thread::sleep(Duration::from_millis(500));
    let (took, status) = server.interrupt(EXIT_LIMIT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "gst-launch still runs {took:?} after SIGINT:\n{}",
            server.output()
        )
    });
    println!("gst-launch -e whipserversrc with a publisher exited {took:?} after SIGINT");
    assert!(status.success(), "{status:?}:\n{}", server.output());
    assert!(
        server.find("Got EOS from element \"pipeline").is_some(),
        "{}",
        server.output()
    );
    assert!(refused(&addr), "{addr} still accepts connections");
    publisher.stop();

    // 2. With nothing published (yet, or any more): nothing must wait for
    // an EOS that no stream can carry.
    let mut server = launch("");
    assert!(started(&server), "did not start:\n{}", server.output());
    let (took, status) = server.interrupt(EXIT_LIMIT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "gst-launch (no publisher) still runs {took:?} after SIGINT:\n{}",
            server.output()
        )
    });
    println!("gst-launch -e whipserversrc without a publisher exited {took:?} after SIGINT");
    assert!(status.success(), "{status:?}:\n{}", server.output());
}

#[test]
fn gst_launch_e_whepserversink_exits_0_within_3_s_of_one_sigint() {
    init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(
        Command::new("gst-launch-1.0")
            .arg("-e")
            .args(
                format!("{VP8_SRC} ! whepserversink address={addr} ice-addresses=127.0.0.1")
                    .split_whitespace(),
            )
            .envs(plugin_env()),
    );
    assert!(
        wait_until(Duration::from_secs(10), || !refused(&addr)),
        "did not start:\n{}",
        server.output()
    );
    let viewer = whepsrc(&format!("http://{addr}/"));
    assert!(
        viewer.wait_frames(MEDIA_WAIT, 10, 0),
        "no frames: {:?}",
        viewer.messages.errors()
    );
    let (took, status) = server.interrupt(EXIT_LIMIT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "gst-launch still runs {took:?} after SIGINT:\n{}",
            server.output()
        )
    });
    println!("gst-launch -e whepserversink with a viewer exited {took:?} after SIGINT");
    assert!(status.success(), "{status:?}:\n{}", server.output());
    assert!(refused(&addr), "{addr} still accepts connections");
}

/// A pipeline holding `element` on 127.0.0.1 (its gst-launch description).
fn server(desc: &str) -> (gst::Pipeline, gst::Element) {
    init();
    // A one-element description gives that element itself.
    let pipeline = match gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
    {
        Ok(p) => p,
        Err(el) => {
            let p = gst::Pipeline::new();
            p.add(&el).unwrap();
            p
        }
    };
    pipeline.set_state(gst::State::Playing).unwrap();
    let el = pipeline.by_name("server").unwrap();
    (pipeline, el)
}

fn bound(el: &gst::Element) -> String {
    el.property::<Option<String>>("bound-address").unwrap()
}

fn timed_null(pipeline: &gst::Pipeline) -> Duration {
    let start = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    start.elapsed()
}

#[test]
fn whepserversink_with_5_viewers_stops_within_a_second_and_closes_its_port() {
    let (pipeline, sink) = server(&format!(
        "{VP8_SRC} ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1"
    ));
    let addr = bound(&sink);
    let viewers: Vec<Player> = (0..5)
        .map(|_| whepsrc(&format!("http://{addr}/")))
        .collect();
    for v in &viewers {
        assert!(
            v.wait_frames(MEDIA_WAIT, 10, 0),
            "a viewer got no frames: {:?}",
            v.messages.errors()
        );
    }
    let took = timed_null(&pipeline);
    println!("whepserversink with 5 viewers: NULL in {took:?}");
    assert!(took < STOP_LIMIT, "NULL took {took:?}");
    assert!(
        wait_until(STOP_LIMIT, || refused(&addr)),
        "{addr} still accepts connections"
    );
}

#[test]
fn whipserversrc_with_5_publishers_stops_within_a_second_and_closes_its_port() {
    let (pipeline, src) = server(
        "whipserversrc name=server address=127.0.0.1:0 ice-addresses=127.0.0.1 auth-token=X",
    );
    let bin = pipeline.clone().upcast::<gst::Bin>();
    src.connect_pad_added(move |_, pad| {
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .unwrap();
        bin.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    });
    let addr = bound(&src);
    let publishers: Vec<Client> = (0..5)
        .map(|i| whipsink(&format!("http://{addr}/cam{i}")))
        .collect();
    assert!(
        wait_until(MEDIA_WAIT, || src.src_pads().len() == 5),
        "{} streams of 5",
        src.src_pads().len()
    );
    let took = timed_null(&pipeline);
    println!("whipserversrc with 5 publishers: NULL in {took:?}");
    assert!(took < STOP_LIMIT, "NULL took {took:?}");
    assert!(
        wait_until(STOP_LIMIT, || refused(&addr)),
        "{addr} still accepts connections"
    );
    drop(publishers);
}

#[test]
fn one_element_stopping_leaves_the_others_sessions_on_the_same_port_alone() {
    // A relay by hand: whipserversrc on /whip and whepserversink on /whep
    // share one port; the sink serves its own test pattern.
    let (whip_pipeline, whip) = server(
        "whipserversrc name=server address=127.0.0.1:0 path=/whip ice-addresses=127.0.0.1 \
         auth-token=X",
    );
    let addr = bound(&whip);
    let bin = whip_pipeline.clone().upcast::<gst::Bin>();
    whip.connect_pad_added(move |_, pad| {
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        bin.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&sink.static_pad("sink").unwrap()).unwrap();
    });
    let (whep_pipeline, _whep) = server(&format!(
        "{VP8_SRC} ! whepserversink name=server address={addr} path=/whep ice-addresses=127.0.0.1"
    ));
    let publisher = whipsink(&format!("http://{addr}/whip/cam"));
    let viewer = whepsrc(&format!("http://{addr}/whep"));
    assert!(
        wait_until(MEDIA_WAIT, || whip.src_pads().len() == 1),
        "no publisher stream: {:?}",
        publisher.messages.errors()
    );
    assert!(viewer.wait_frames(MEDIA_WAIT, 10, 0), "no frames");

    // The WHIP side stops: the viewer of the WHEP side plays on, and the
    // port still serves /whep.
    let took = timed_null(&whip_pipeline);
    assert!(took < STOP_LIMIT, "NULL took {took:?}");
    let before = viewer.counters.video();
    assert!(
        viewer.wait_frames(MEDIA_WAIT, before + 30, 0),
        "the viewer stopped with the other element: {:?}",
        viewer.messages.errors()
    );
    assert!(viewer.messages.errors().is_empty());
    assert!(!refused(&addr), "the shared port closed with one element");

    // The last one stops: the port closes.
    let took = timed_null(&whep_pipeline);
    assert!(took < STOP_LIMIT, "NULL took {took:?}");
    assert!(
        wait_until(STOP_LIMIT, || refused(&addr)),
        "{addr} still accepts connections"
    );
}
