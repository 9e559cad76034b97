//! The DTLS certificate's private key never reaches a property-notify watcher
//! (issue 11.4): `gst-launch-1.0 -v` prints every property change in its
//! pipeline, and the PEM webrtcbin's `dtlssrtpdec` is given holds our key.
//! All four elements run in `gst-launch-1.0 -v` processes of their own, with
//! media flowing both ways; their output must show the DTLS elements' other
//! notifications (the remote's certificate, `peer-pem`) and no key.

mod common;

use std::time::Duration;

use common::e2e::{init, wait_until};
use common::launch::{tail, tempdir, Launch};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn launch(desc: &str) -> Launch {
    let args: Vec<String> = desc.split_whitespace().map(String::from).collect();
    Launch::start(&args, &tempdir())
}

/// Runs `server` and then `client` (each `gst-launch-1.0 -v`) until both
/// sinks counted buffers, stops them, and checks both outputs.
fn no_key_printed(server: &str, client: &str, server_counts: bool) {
    init();
    let server = launch(server);
    std::thread::sleep(Duration::from_millis(500));
    let client = launch(client);
    let counter = if server_counts { &server } else { &client };
    let flowed = wait_until(Duration::from_secs(15), || counter.sink_buffers() >= 30);
    let (_, _, client_out) = client.interrupt();
    let (_, _, server_out) = server.interrupt();
    assert!(
        flowed,
        "no media:\n--- server\n{}\n--- client\n{}",
        tail(&server_out),
        tail(&client_out)
    );
    for (who, out) in [("server", &server_out), ("client", &client_out)] {
        assert!(
            out.contains("peer-pem = -----BEGIN CERTIFICATE-----"),
            "{who}: -v printed no DTLS notification at all, so this proves nothing:\n{}",
            tail(out)
        );
        let leaks = out.matches("PRIVATE KEY").count();
        assert_eq!(leaks, 0, "{who}: the private key was printed {leaks} times");
    }
}

#[test]
fn gst_launch_v_never_prints_the_key_of_whipsink_or_whipserversrc() {
    let port = free_port();
    no_key_printed(
        &format!(
            "whipserversrc address=127.0.0.1:{port} ice-addresses=127.0.0.1 \
             ! fakesink silent=false"
        ),
        &format!(
            "videotestsrc is-live=true ! vp8enc deadline=1 ! whipsink \
             whip-endpoint=http://127.0.0.1:{port}/whip/cam ice-addresses=127.0.0.1"
        ),
        true,
    );
}

#[test]
fn gst_launch_v_never_prints_the_key_of_whepsrc_or_whepserversink() {
    let port = free_port();
    no_key_printed(
        &format!(
            "videotestsrc is-live=true ! vp8enc deadline=1 ! whepserversink \
             address=127.0.0.1:{port} ice-addresses=127.0.0.1"
        ),
        &format!(
            "whepsrc whep-endpoint=http://127.0.0.1:{port}/whep ice-addresses=127.0.0.1 \
             ! fakesink silent=false"
        ),
        false,
    );
}
