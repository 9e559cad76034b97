//! Network namespaces for path-change tests and benchmarks: the program
//! re-runs itself inside `unshare -rnm` (the client's namespace), which
//! makes a second one for the server (`ip netns add srv`) and two veth
//! pairs between them: the media path (client A 10.77.1.1, server
//! 10.77.1.9: both sides' `ice-addresses`) and a separate one for HTTP
//! (10.77.9.0/24), so that breaking the media path leaves the PATCH its way.
//! The server is a gst-launch-1.0 whepserversink in its namespace (its
//! messages read from `-m`). Nothing leaves these namespaces.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use super::e2e::{wait_until, VP8_SRC};
use super::launch::{tail, tempdir, Launch};

pub const INSIDE: &str = "WHIPWHEP_TEST_NETNS";
pub const A: &str = "10.77.1.1";
pub const C: &str = "10.77.1.4";
pub const SERVER_ICE: &str = "10.77.1.9";
pub const SERVER_HTTP: &str = "10.77.9.9";
pub const PORT: u16 = 8190;

/// Re-runs this program (a test binary, an example) with `args` inside a
/// user, network and mount namespace of its own set up as the module says,
/// and waits for it; true when already inside (the caller does its work).
pub fn inside(args: &[&str]) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let setup = format!(
        "ip link set lo up && mount -t tmpfs tmpfs /run && mkdir -p /run/netns && \
         ip netns add srv && ip netns exec srv ip link set lo up && \
         ip link add v0 type veth peer name v1 && ip link set v1 netns srv && \
         ip link add h0 type veth peer name h1 && ip link set h1 netns srv && \
         ip addr add {A}/24 dev v0 && ip link set v0 up && \
         ip addr add 10.77.9.1/24 dev h0 && ip link set h0 up && \
         ip netns exec srv ip addr add {SERVER_ICE}/24 dev v1 && \
         ip netns exec srv ip link set v1 up && \
         ip netns exec srv ip addr add {SERVER_HTTP}/24 dev h1 && \
         ip netns exec srv ip link set h1 up && exec \"$0\" \"$@\""
    );
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-rnm", "sh", "-c", &setup])
        .arg(exe)
        .args(args)
        .env(INSIDE, "1")
        .status()
        .expect("unshare (util-linux)");
    assert!(status.success(), "{args:?} failed in its network namespace");
    false
}

pub fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The media link is down for `outage`.
pub fn link_down(outage: Duration) {
    ip("link set v0 down");
    std::thread::sleep(outage);
    ip("link set v0 up");
}

/// A goes, C comes.
pub fn new_address() {
    ip(&format!("addr del {A}/24 dev v0"));
    ip(&format!("addr add {C}/24 dev v0"));
}

/// whepserversink in the server's namespace, VP8.
pub fn server() -> Launch {
    in_server_namespace(&format!(
        "-m {VP8_SRC} ! whepserversink address={SERVER_HTTP}:{PORT} ice-addresses={SERVER_ICE}"
    ))
}

/// whipserversrc in the server's namespace, its frames counted by
/// `Launch::sink_buffers`.
pub fn whip_server() -> Launch {
    in_server_namespace(&format!(
        "-m whipserversrc address={SERVER_HTTP}:{PORT} ice-addresses={SERVER_ICE} peer-timeout=10000 name=s \
         s. ! fakesink silent=false"
    ))
}

/// gst-launch-1.0 `pipeline` in the server's namespace, once its HTTP port
/// takes connections.
fn in_server_namespace(pipeline: &str) -> Launch {
    let args: Vec<String> = pipeline.split_whitespace().map(str::to_string).collect();
    let launch = Launch::start_with(&["ip", "netns", "exec", "srv"], &args, &tempdir());
    let up = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect((SERVER_HTTP, PORT)).is_ok()
    });
    assert!(up, "server not up: {}", tail(&launch.output()));
    launch
}

pub fn endpoint() -> String {
    format!("http://{SERVER_HTTP}:{PORT}/whep")
}

/// How many viewer-added / viewer-removed the server posted.
pub fn server_says(server: &Launch, what: &str) -> usize {
    server
        .output()
        .lines()
        .filter(|l| l.contains(&format!(": {what}, ")))
        .count()
}
