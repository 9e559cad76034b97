//! Trickle ICE and ICE restart against the server elements (issue 13):
//! PATCH of a session with an sdpfrag, its ETag / If-Match rules, clients
//! whose offer carries no candidate and trickles them, and an ICE restart
//! that keeps the session and its media. The clients here are real
//! webrtcbin peers (the plugin's `Peer`), over 127.0.0.1.

mod common;

use std::time::Duration;

use common::e2e::{wait_until, WhepServer, WhipServer, RT, VP8_SRC};
use common::peer_client::{post, request, PeerClient, Reply, SDPFRAG};
use gstwhipwhep::peer::ice;
use gstwhipwhep::protocol::{parse_sdpfrag, trickle_sdpfrag};

#[test]
fn trickle_patch_rules_on_whipserversrc() {
    let server = WhipServer::start("");
    let endpoint = format!("{}/whip", server.base);
    let options = request("OPTIONS", &endpoint, &[], "");
    assert_eq!(options.header("accept-patch").as_deref(), Some(SDPFRAG));

    let client = PeerClient::publisher();
    let (location, etag, created) = post(&endpoint, &client.offer);
    assert_eq!(created.header("accept-patch").as_deref(), Some(SDPFRAG));
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let session = format!("{}{location}", server.base);
    let frag = client.all_candidates();
    let patch = |headers: &[(&str, &str)], body: &str| request("PATCH", &session, headers, body);
    let json = |r: &Reply| -> serde_json::Value {
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        serde_json::from_str(&r.body).unwrap()
    };

    // No If-Match: 428; another ETag: 412; not an sdpfrag: 415.
    let r = patch(&[("Content-Type", SDPFRAG)], &frag);
    assert_eq!(r.status, 428, "{}", r.body);
    assert!(json(&r)["detail"].as_str().unwrap().contains("If-Match"));
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", "\"stale\"")],
        &frag,
    );
    assert_eq!(r.status, 412, "{}", r.body);
    json(&r);
    let r = patch(
        &[("Content-Type", "application/sdp"), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(r.header("accept-patch").as_deref(), Some(SDPFRAG));

    // Candidates for an m-line the offer lacks, or of an unknown ufrag.
    let (ufrag, pwd) = client.credentials();
    let cand = ["candidate:1 1 UDP 2122260223 127.0.0.1 40000 typ host".to_string()];
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &trickle_sdpfrag("nope", &ufrag, &pwd, &cand, false),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(json(&r)["detail"].as_str().unwrap().contains("nope"));
    let bad_ufrag = format!(
        "a=ice-ufrag:whoisthis\r\nm=audio 9 RTP/AVP 0\r\na=mid:{}\r\n{}\r\n",
        client.mid(),
        "a=candidate:1 1 UDP 2122260223 127.0.0.1 40000 typ host"
    );
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &bad_ufrag,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(json(&r)["detail"].as_str().unwrap().contains("whoisthis"));
    let r = patch(
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        "m=audio 9 RTP/AVP 0\r\na=candidate:broken\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    json(&r);

    // The real candidates, with end-of-candidates: 204, and media flows
    // (the offer had no candidate: only the trickled ones can connect).
    let r = patch(&[("Content-Type", SDPFRAG), ("If-Match", &etag)], &frag);
    assert_eq!(r.status, 204, "{}", r.body);
    client.apply_answer(&created.body);
    assert!(
        wait_until(Duration::from_secs(10), || server.counters.video() > 30),
        "no media after trickle: {:?}",
        server.messages.errors()
    );
    // Unknown session: 404.
    let r = request(
        "PATCH",
        &format!("{endpoint}/nosuchsession"),
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 404);
    assert_eq!(request("DELETE", &session, &[], "").status, 200);
    let r = patch(&[("Content-Type", SDPFRAG), ("If-Match", &etag)], &frag);
    assert_eq!(r.status, 404, "a deleted session takes no PATCH");
}

/// A viewer whose offer has no candidate connects by trickle alone, before
/// its gathering completes: the answer comes first, the candidates after.
#[test]
fn viewer_trickling_its_candidates_plays() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let client = PeerClient::viewer();
    let (location, etag, created) = post(&server.endpoint(), &client.offer);
    client.apply_answer(&created.body);
    let frag = client.all_candidates();
    let r = request(
        "PATCH",
        &format!("{}{location}", server.base),
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        wait_until(Duration::from_secs(10), || client.frames() > 30),
        "no frames after trickle: {:?}",
        server.messages.errors()
    );
}

/// An ICE restart by PATCH (RFC 9725 §4.3.3): 200 with the server's new
/// credentials and candidates and a new ETag; the session, its Location and
/// its media go on; the old ETag and the old ufrag are stale after it.
#[test]
fn ice_restart_keeps_the_session_and_its_media() {
    let server = WhepServer::start(&format!("{VP8_SRC} ! server."), "");
    let client = PeerClient::viewer();
    let (location, etag, created) = post(&server.endpoint(), &client.offer);
    client.apply_answer(&created.body);
    let session = format!("{}{location}", server.base);
    let frag = client.all_candidates();
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 204);
    assert!(wait_until(Duration::from_secs(10), || client.frames() > 30));
    let (server_ufrag, _) = ice::credentials(&created.body).unwrap();
    let (old_ufrag, old_pwd) = client.credentials();

    // The client restarts: new credentials, its candidates, If-Match: *.
    let offer = RT.block_on(client.peer.offer_ice_restart()).unwrap();
    let (ufrag, pwd) = ice::credentials(&offer).unwrap();
    assert_ne!(ufrag, old_ufrag);
    let restart = trickle_sdpfrag(
        &client.mid(),
        &ufrag,
        &pwd,
        &client.peer.local_candidates(),
        true,
    );
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", "\"*\"")],
        &restart,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type").as_deref(), Some(SDPFRAG));
    let new_etag = r.header("etag").unwrap();
    assert_ne!(new_etag, etag);
    let answer = parse_sdpfrag(&r.body).unwrap();
    let (new_ufrag, new_pwd) = (answer.ufrag.unwrap(), answer.pwd.unwrap());
    assert_ne!(new_ufrag, server_ufrag);
    assert!(new_pwd.len() >= 22);
    let candidates: Vec<String> = answer
        .media
        .iter()
        .flat_map(|m| m.candidates.clone())
        .collect();
    assert!(!candidates.is_empty());
    assert!(
        candidates.iter().all(|c| c.contains("127.0.0.1")),
        "{candidates:?}"
    );

    // The client applies it: the same remote description, new ICE.
    let remote = client.peer.description("remote-description").unwrap();
    let remote = ice::with_candidates(
        &ice::with_credentials(&remote, &new_ufrag, &new_pwd),
        None,
        &candidates,
    );
    client.apply_answer(&remote);
    let before = client.frames();
    assert!(
        wait_until(Duration::from_secs(10), || client.frames() > before + 60),
        "media stopped after the ICE restart ({before} → {})",
        client.frames()
    );
    assert_eq!(
        server.viewers_added(),
        vec![location.clone()],
        "one session throughout"
    );
    assert!(server.viewers_removed().is_empty());

    // Stale: the 201's ETag, and a trickle with the old ufrag.
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", &etag)],
        &frag,
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let r = request(
        "PATCH",
        &session,
        &[("Content-Type", SDPFRAG), ("If-Match", &new_etag)],
        &trickle_sdpfrag(&client.mid(), &old_ufrag, &old_pwd, &[], true),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("earlier ICE generation"), "{}", r.body);
}
