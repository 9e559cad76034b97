//! The WHIP/WHEP HTTP layer against a local test server. Test names say the
//! rule they show; the rules are those of docs/protocol.md.

mod common;

use std::time::Duration;

use common::http_server::{Reply, TestServer};
use gstwhipwhep::protocol::*;

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=offer\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=answer\r\n";

fn client() -> Client {
    Client::new(ClientConfig {
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn client_with_token(token: &str) -> Client {
    Client::new(ClientConfig {
        auth_token: Some(AuthToken::new(token)),
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn created(location: &str) -> Reply {
    Reply::new(201).sdp(ANSWER).header("location", location)
}

#[tokio::test]
async fn post_uses_exact_application_sdp_content_type() {
    let server = TestServer::start().await;
    server.on("POST", "/whip", created("/whip/1"));
    let answer = client()
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.kind, AnswerKind::Answer);
    assert_eq!(answer.status, 201);
    assert_eq!(answer.sdp, ANSWER);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].headers_named("content-type"),
        ["application/sdp"]
    );
    assert_eq!(requests[0].body_text(), OFFER);
}

#[tokio::test]
async fn no_authorization_header_without_token() {
    let server = TestServer::start().await;
    server.on("OPTIONS", "/whip", Reply::new(204));
    server.on("POST", "/whip", created("/whip/1"));
    server.on("PATCH", "/whip/1", Reply::new(204));
    server.on("DELETE", "/whip/1", Reply::new(200));
    let client = client();
    let endpoint = server.url("/whip");
    let session = server.url("/whip/1");
    client.options(&endpoint).await.unwrap();
    client.post_offer(&endpoint, OFFER).await.unwrap();
    client
        .patch_trickle(&session, None, "a=x\r\n")
        .await
        .unwrap();
    client.delete(&session).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    for request in requests {
        assert_eq!(request.header("authorization"), None, "{}", request.method);
    }
}

#[tokio::test]
async fn bearer_token_sent_on_post_patch_and_delete() {
    let server = TestServer::start().await;
    server.on("OPTIONS", "/whip", Reply::new(204));
    server.on("POST", "/whip", created("/whip/1"));
    server.on("PATCH", "/whip/1", Reply::new(204));
    server.on("DELETE", "/whip/1", Reply::new(200));
    let client = client_with_token("s3cr3t");
    let endpoint = server.url("/whip");
    let session = server.url("/whip/1");
    client.options(&endpoint).await.unwrap();
    client.post_offer(&endpoint, OFFER).await.unwrap();
    client
        .patch_trickle(&session, Some("\"e1\""), "a=x\r\n")
        .await
        .unwrap();
    client.patch_answer(&session, ANSWER).await.unwrap();
    client.delete(&session).await.unwrap();

    let requests = server.requests();
    let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["OPTIONS", "POST", "PATCH", "PATCH", "DELETE"]);
    for request in &requests {
        assert_eq!(
            request.headers_named("authorization"),
            ["Bearer s3cr3t"],
            "{}",
            request.method
        );
    }
}

#[tokio::test]
async fn any_2xx_with_sdp_is_accepted() {
    let server = TestServer::start().await;
    let client = client();
    // Monibuca answers 200; Broadcast Box once did.
    for status in [200, 201, 202] {
        server.on("POST", "/whip", Reply::new(status).sdp(ANSWER));
        let answer = client
            .post_offer(&server.url("/whip"), OFFER)
            .await
            .unwrap();
        assert_eq!((answer.kind, answer.status), (AnswerKind::Answer, status));
    }
    // SDP recognised by its first line even when mislabelled.
    server.on(
        "POST",
        "/whip",
        Reply::new(200)
            .header("content-type", "text/plain")
            .body(ANSWER),
    );
    let answer = client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.sdp, ANSWER);
    // Content type with parameters, any case.
    server.on(
        "POST",
        "/whip",
        Reply::new(201)
            .header("content-type", "Application/SDP; charset=utf-8")
            .body(ANSWER),
    );
    client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();

    // A 2xx without SDP cannot be used.
    for reply in [
        Reply::new(201).header("content-type", "application/sdp"),
        Reply::new(200).json(r#"{"status":"ok"}"#),
        Reply::new(204),
    ] {
        server.on("POST", "/whip", reply);
        let error = client
            .post_offer(&server.url("/whip"), OFFER)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProtocolError::InvalidResponse { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn relative_location_is_resolved_against_the_redirect_target() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let target = second.url("/live/cam/whip?key=1");
    first.on(
        "POST",
        "/whip",
        Reply::new(307).header("location", target.as_str()),
    );
    second.on("POST", "/live/cam/whip", created("session/42?t=9"));

    let answer = client()
        .post_offer(&first.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.answered_url, target);
    assert_eq!(
        answer.session_url.unwrap().as_str(),
        format!("{}/live/cam/session/42?t=9", second.base())
    );
}

#[tokio::test]
async fn location_forms_absolute_rooted_relative_and_query_are_resolved() {
    let server = TestServer::start().await;
    let endpoint = server.url("/rtc/v1/whip/?app=live&stream=cam");
    let client = client();
    let cases = [
        // Ring: absolute.
        (
            "https://sessions.example/v1/s/abc".to_owned(),
            "https://sessions.example/v1/s/abc".to_owned(),
        ),
        // MediaMTX, LiveKit, Twitch, Broadcast Box: rooted path.
        (
            "/cam/whip/0f1e".to_owned(),
            format!("{}/cam/whip/0f1e", server.base()),
        ),
        // SRS: rooted path with a query that must be kept.
        (
            "/rtc/v1/whip/?action=delete&token=t0k&app=live".to_owned(),
            format!(
                "{}/rtc/v1/whip/?action=delete&token=t0k&app=live",
                server.base()
            ),
        ),
        // Relative path.
        (
            "resource/7".to_owned(),
            format!("{}/rtc/v1/whip/resource/7", server.base()),
        ),
        // Query only: replaces the query, keeps the path.
        (
            "?session=9".to_owned(),
            format!("{}/rtc/v1/whip/?session=9", server.base()),
        ),
    ];
    for (location, expected) in cases {
        server.on("POST", "/rtc/v1/whip/", created(&location));
        let answer = client.post_offer(&endpoint, OFFER).await.unwrap();
        assert_eq!(answer.session_url.unwrap().as_str(), expected, "{location}");
    }

    // Something that cannot be a session URL is an invalid response.
    server.on("POST", "/rtc/v1/whip/", created("mailto:x@y"));
    let error = client.post_offer(&endpoint, OFFER).await.unwrap_err();
    assert!(
        matches!(error, ProtocolError::InvalidResponse { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_location_gives_none() {
    let server = TestServer::start().await;
    let client = client();
    server.on("POST", "/whip", Reply::new(201).sdp(ANSWER));
    let answer = client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.session_url, None);
    // A blank header is treated as a missing one.
    server.on("POST", "/whip", created(" "));
    let answer = client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.session_url, None);
}

#[tokio::test]
async fn redirect_307_and_308_resend_body_and_token() {
    let origin = TestServer::start().await;
    let other_host = TestServer::start().await;
    // 307 to another origin, then 308 on by a relative path, then 301 and
    // 302 on the same origin: method and body survive every hop; the token
    // stops at the origin change (http, docs/protocol.md P6).
    origin.on(
        "POST",
        "/whip",
        Reply::new(307).header("location", other_host.url("/a").as_str()),
    );
    other_host.on("POST", "/a", Reply::new(308).header("location", "/b"));
    other_host.on("POST", "/b", Reply::new(301).header("location", "c"));
    other_host.on("POST", "/c", Reply::new(302).header("location", "/final"));
    other_host.on("POST", "/final", created("/final/1"));

    let answer = client_with_token("tok")
        .post_offer(&origin.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.answered_url, other_host.url("/final"));

    let mut requests = origin.requests();
    requests.extend(other_host.requests());
    let paths: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(paths, ["/whip", "/a", "/b", "/c", "/final"]);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body_text(), OFFER);
        assert_eq!(request.header("content-type"), Some("application/sdp"));
    }
    assert_eq!(requests[0].header("authorization"), Some("Bearer tok"));
    for request in &requests[1..] {
        assert_eq!(request.header("authorization"), None, "{}", request.target);
    }

    // PATCH and DELETE are redirected the same way.
    origin.on("DELETE", "/s", Reply::new(307).header("location", "/t"));
    origin.on("DELETE", "/t", Reply::new(200));
    let outcome = client().delete(&origin.url("/s")).await.unwrap();
    assert_eq!(outcome, DeleteOutcome::Deleted);
}

fn client_with_redirect_auth(token: &str, redirect_auth: RedirectAuth) -> Client {
    Client::new(ClientConfig {
        auth_token: Some(AuthToken::new(token)),
        timeout: Duration::from_secs(5),
        redirect_auth,
        ..ClientConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn token_is_kept_on_a_same_origin_redirect() {
    let server = TestServer::start().await;
    server.on("POST", "/whip", Reply::new(307).header("location", "/a"));
    server.on(
        "POST",
        "/a",
        Reply::new(308).header("location", server.url("/b?k=1").as_str()),
    );
    server.on("POST", "/b", Reply::new(301).header("location", "c"));
    server.on("POST", "/c", Reply::new(302).header("location", "/final"));
    server.on("POST", "/final", created("/final/1"));
    server.on(
        "DELETE",
        "/final/1",
        Reply::new(307).header("location", "/gone"),
    );
    server.on("DELETE", "/gone", Reply::new(200));
    // Every policy keeps it: the policies are about other origins.
    for policy in [
        RedirectAuth::Https,
        RedirectAuth::Drop,
        RedirectAuth::Keep,
        RedirectAuth::Refuse,
    ] {
        let client = client_with_redirect_auth("tok", policy);
        let answer = client
            .post_offer(&server.url("/whip"), OFFER)
            .await
            .unwrap();
        client.delete(&answer.session_url.unwrap()).await.unwrap();
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 4 * 7);
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer tok"),
            "{} {}",
            request.method,
            request.target
        );
    }
}

#[tokio::test]
async fn token_is_dropped_on_a_cross_origin_redirect_to_http() {
    // Another port on 127.0.0.1 is another origin.
    let origin = TestServer::start().await;
    let other = TestServer::start().await;
    origin.on(
        "POST",
        "/whip",
        Reply::new(307).header("location", other.url("/whip").as_str()),
    );
    // Back to the origin: the token, once dropped, stays off.
    other.on(
        "POST",
        "/whip",
        Reply::new(307).header("location", origin.url("/back").as_str()),
    );
    origin.on("POST", "/back", created("/s/1"));
    for policy in [RedirectAuth::Https, RedirectAuth::Drop] {
        let answer = client_with_redirect_auth("tok", policy)
            .post_offer(&origin.url("/whip"), OFFER)
            .await
            .unwrap();
        assert_eq!(answer.answered_url, origin.url("/back"));
    }
    let mut requests = origin.requests();
    requests.extend(other.requests());
    let carried: Vec<(&str, Option<&str>)> = requests
        .iter()
        .map(|r| (r.target.as_str(), r.header("authorization")))
        .collect();
    assert_eq!(
        carried,
        [
            ("/whip", Some("Bearer tok")),
            ("/back", None),
            ("/whip", Some("Bearer tok")),
            ("/back", None),
            ("/whip", None),
            ("/whip", None),
        ]
    );
    for request in &requests {
        assert_eq!(request.body_text(), OFFER);
    }
}

#[tokio::test]
async fn token_is_kept_on_a_cross_origin_redirect_with_redirect_auth_keep() {
    let origin = TestServer::start().await;
    let other = TestServer::start().await;
    origin.on(
        "POST",
        "/whip",
        Reply::new(308).header("location", other.url("/whip").as_str()),
    );
    other.on("POST", "/whip", created("/s/1"));
    client_with_redirect_auth("tok", RedirectAuth::Keep)
        .post_offer(&origin.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(
        other.requests()[0].header("authorization"),
        Some("Bearer tok")
    );
}

#[tokio::test]
async fn cross_origin_redirect_is_refused_with_redirect_auth_refuse() {
    const TOKEN: &str = "tok-SECRET-123";
    let origin = TestServer::start().await;
    let other = TestServer::start().await;
    let target = other.url(&format!("/whip?token={TOKEN}"));
    origin.on(
        "POST",
        "/whip",
        Reply::new(307).header("location", target.as_str()),
    );
    let error = client_with_redirect_auth(TOKEN, RedirectAuth::Refuse)
        .post_offer(&origin.url("/whip"), OFFER)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProtocolError::RedirectRefused { status: 307, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "refused the 307 redirect from {}/whip to {}/whip?token=***: it leaves the origin \
             and redirect-auth is \"refuse\"",
            origin.base(),
            other.base()
        )
    );
    assert!(!format!("{error:?}").contains(TOKEN));
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn redirects_are_bounded() {
    let server = TestServer::start().await;
    server.on("POST", "/loop", Reply::new(307).header("location", "/loop"));
    let client = Client::new(ClientConfig {
        max_redirects: 3,
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .unwrap();
    let error = client
        .post_offer(&server.url("/loop"), OFFER)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProtocolError::TooManyRedirects { max: 3, .. }),
        "{error:?}"
    );
    // The first request and three redirects, then it stopped.
    assert_eq!(server.requests().len(), 4);

    // A redirect that does not say where to is an invalid response.
    server.on("POST", "/nowhere", Reply::new(308));
    let error = client
        .post_offer(&server.url("/nowhere"), OFFER)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProtocolError::InvalidResponse { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn link_headers_several_lines_and_comma_joined() {
    let expected = vec![
        IceServer {
            url: "stun:stun.example.net".into(),
            username: None,
            credential: None,
        },
        IceServer {
            url: "turn:turn.example.net?transport=udp".into(),
            username: Some("user".into()),
            credential: Some("pass".into()),
        },
        IceServer {
            url: "turn:turn.example.net?transport=tcp,x".into(),
            username: Some("user".into()),
            credential: Some("p,ss".into()),
        },
    ];
    let lines = [
        r#"<stun:stun.example.net>; rel="ice-server""#,
        r#"<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="pass"; credential-type="password""#,
        r#"<turn:turn.example.net?transport=tcp,x>; rel="ice-server"; username="user"; credential="p,ss"; credential-type="password""#,
    ];
    let (ice, ext) = parse_link_headers(lines);
    assert_eq!(ice, expected);
    assert!(ext.is_empty());
    let joined = lines.join(", ");
    let (ice, ext) = parse_link_headers([joined.as_str()]);
    assert_eq!(ice, expected);
    assert!(ext.is_empty());

    // The same through HTTP: repeated lines and a joined line mixed.
    let server = TestServer::start().await;
    let joined_tail = lines[1..].join(",");
    server.on(
        "POST",
        "/whip",
        created("/whip/1")
            .header("link", lines[0])
            .header("link", &joined_tail),
    );
    server.on(
        "OPTIONS",
        "/whip",
        Reply::new(204)
            .header("link", lines[0])
            .header("link", &joined_tail)
            .header("accept-patch", "application/trickle-ice-sdpfrag")
            .header("allow", "OPTIONS, POST"),
    );
    let client = client();
    let answer = client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.ice_servers, expected);
    let options = client.options(&server.url("/whip")).await.unwrap();
    assert_eq!(options.ice_servers, expected);
    assert_eq!(
        options.accept_patch.as_deref(),
        Some("application/trickle-ice-sdpfrag")
    );
    assert_eq!(options.allow.as_deref(), Some("OPTIONS, POST"));
}

#[test]
fn link_credentials_with_equals_and_colon_and_trailing_semicolon() {
    let (ice, _) = parse_link_headers([
        r#"<turn:t.example:3478?transport=udp>; rel="ice-server"; username="1700000000:user"; credential="aGk=b2s=;x,y:z"; credential-type="password";"#,
        // Unquoted values, odd spacing, rel in capitals.
        "<turns:t.example:5349?transport=tcp> ;REL=ICE-SERVER;username=u:1 ; credential=abc== ;",
        // Escaped quote inside a credential.
        r#"<turn:t.example>; rel="ice-server"; username="u"; credential="a\"b""#,
    ]);
    assert_eq!(ice.len(), 3);
    assert_eq!(ice[0].url, "turn:t.example:3478?transport=udp");
    assert_eq!(ice[0].username.as_deref(), Some("1700000000:user"));
    assert_eq!(ice[0].credential.as_deref(), Some("aGk=b2s=;x,y:z"));
    assert_eq!(ice[1].url, "turns:t.example:5349?transport=tcp");
    assert_eq!(ice[1].username.as_deref(), Some("u:1"));
    assert_eq!(ice[1].credential.as_deref(), Some("abc=="));
    assert_eq!(ice[2].credential.as_deref(), Some("a\"b"));
}

#[tokio::test]
async fn other_link_rels_are_ignored_for_ice() {
    let (ice, ext) = parse_link_headers([
        r#"<https://x.example/sse>; rel="urn:ietf:params:whep:ext:core:server-sent-events"; events="active,inactive""#,
        r#"<https://x.example/next>; rel="next""#,
        r#"<urn:ietf:params:whip:ext:example:unknown>; rel="urn:ietf:params:whip:ext:example""#,
        r#"<stun:s.example>; rel="ice-server preload""#,
    ]);
    assert_eq!(ice.len(), 1);
    assert_eq!(ice[0].url, "stun:s.example");
    let rels: Vec<&str> = ext.iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(
        rels,
        [
            "urn:ietf:params:whep:ext:core:server-sent-events",
            "next",
            "urn:ietf:params:whip:ext:example",
            "preload"
        ]
    );

    // Through HTTP, relative extension targets resolve against the URL that
    // answered, and protocol-version is reported.
    let server = TestServer::start().await;
    server.on(
        "POST",
        "/cam/whep",
        created("/cam/whep/1")
            .header(
                "link",
                r#"</cam/whep/1/sse>; rel="urn:ietf:params:whep:ext:core:server-sent-events""#,
            )
            .header("protocol-version", "draft-murillo-whep-01"),
    );
    let answer = client()
        .post_offer(&server.url("/cam/whep"), OFFER)
        .await
        .unwrap();
    assert!(answer.ice_servers.is_empty());
    assert_eq!(
        answer.extensions,
        [Extension {
            rel: "urn:ietf:params:whep:ext:core:server-sent-events".into(),
            url: format!("{}/cam/whep/1/sse", server.base()),
        }]
    );
    assert_eq!(
        answer.protocol_version.as_deref(),
        Some("draft-murillo-whep-01")
    );
}

#[test]
fn turn_uri_percent_encodes_credentials_and_keeps_transport() {
    let turn = IceServer {
        url: "turn:turn.example.net:3478?transport=udp".into(),
        username: Some("1700000000:us er".into()),
        credential: Some("p@ss/w:rd=%?".into()),
    };
    assert!(turn.is_turn());
    assert_eq!(
        turn.to_webrtcbin_uri().as_deref(),
        Some("turn://1700000000%3Aus%20er:p%40ss%2Fw%3Ard%3D%25%3F@turn.example.net:3478?transport=udp")
    );
    // Default ports.
    let turn = IceServer {
        url: "turn:t.example?transport=tcp".into(),
        username: Some("u".into()),
        credential: Some("p".into()),
    };
    assert_eq!(
        turn.to_webrtcbin_uri().as_deref(),
        Some("turn://u:p@t.example:3478?transport=tcp")
    );
    let turns = IceServer {
        url: "turns:t.example".into(),
        username: Some("u".into()),
        credential: Some("p".into()),
    };
    assert_eq!(
        turns.to_webrtcbin_uri().as_deref(),
        Some("turns://u:p@t.example:5349")
    );
    let stun = IceServer {
        url: "stun:[2001:db8::1]".into(),
        username: None,
        credential: None,
    };
    assert!(!stun.is_turn());
    assert_eq!(
        stun.to_webrtcbin_uri().as_deref(),
        Some("stun://[2001:db8::1]:3478")
    );
    let junk = IceServer {
        url: "https://not-ice".into(),
        username: None,
        credential: None,
    };
    assert_eq!(junk.to_webrtcbin_uri(), None);

    // User properties in either form.
    for (given, url, user, pass, uri) in [
        (
            "stun://stun.l.google.com:19302",
            "stun:stun.l.google.com:19302",
            None,
            None,
            "stun://stun.l.google.com:19302",
        ),
        (
            "stun:stun.example",
            "stun:stun.example",
            None,
            None,
            "stun://stun.example:3478",
        ),
        (
            "turn://us%3Aer:p%40ss@t.example:3479",
            "turn:t.example:3479",
            Some("us:er"),
            Some("p@ss"),
            "turn://us%3Aer:p%40ss@t.example:3479",
        ),
        (
            "turn:t.example:3478?transport=tcp",
            "turn:t.example:3478?transport=tcp",
            None,
            None,
            "turn://t.example:3478?transport=tcp",
        ),
    ] {
        let server = IceServer::parse_user_uri(given).unwrap();
        assert_eq!(server.url, url, "{given}");
        assert_eq!(server.username.as_deref(), user, "{given}");
        assert_eq!(server.credential.as_deref(), pass, "{given}");
        assert_eq!(server.to_webrtcbin_uri().as_deref(), Some(uri), "{given}");
    }
    assert_eq!(IceServer::parse_user_uri("not a uri"), None);
    assert_eq!(IceServer::parse_user_uri("turn://h:70000"), None);
}

#[tokio::test]
async fn etag_is_kept_exactly() {
    let server = TestServer::start().await;
    let client = client();
    // Janus quotes, LiveKit sends an unquoted CRC32, weak tags exist.
    for etag in ["\"xyz-1\"", "1a2b3c4d", "W/\"weak\""] {
        server.on("POST", "/whip", created("/whip/1").header("etag", etag));
        let answer = client
            .post_offer(&server.url("/whip"), OFFER)
            .await
            .unwrap();
        assert_eq!(answer.etag.as_deref(), Some(etag));
    }
    server.on("POST", "/whip", created("/whip/1"));
    let answer = client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.etag, None);

    // The ETag goes back exactly, and a new one from the PATCH is reported.
    server.on(
        "PATCH",
        "/whip/1",
        Reply::new(204).header("etag", "\"xyz-2\""),
    );
    let outcome = client
        .patch_trickle(&server.url("/whip/1"), Some("\"xyz-1\""), "a=x\r\n")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TrickleOutcome::Accepted {
            etag: Some("\"xyz-2\"".into())
        }
    );
    let outcome = client
        .patch_trickle(&server.url("/whip/1"), Some("1a2b3c4d"), "a=x\r\n")
        .await
        .unwrap();
    assert!(matches!(outcome, TrickleOutcome::Accepted { .. }));
    let patches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches[0].headers_named("if-match"), ["\"xyz-1\""]);
    assert_eq!(patches[1].headers_named("if-match"), ["1a2b3c4d"]);
}

#[tokio::test]
async fn problem_json_title_and_detail() {
    let body = br#"{"type":"about:blank","title":"Stream Busy","status":409,"detail":"Another client is publishing"}"#;
    let problem = parse_error_body(Some("application/problem+json"), body);
    assert_eq!(problem.title.as_deref(), Some("Stream Busy"));
    assert_eq!(
        problem.detail.as_deref(),
        Some("Another client is publishing")
    );

    let server = TestServer::start().await;
    server.on(
        "POST",
        "/whep",
        Reply::new(409)
            .header("content-type", "application/problem+json")
            .body(&body[..]),
    );
    let error = client()
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(409));
    assert_eq!(error.problem(), Some(&problem));
    assert_eq!(
        error.to_string(),
        format!(
            "HTTP 409 Conflict from {}/whep: Stream Busy: Another client is publishing",
            server.base()
        )
    );
}

#[tokio::test]
async fn json_api_errors_array_with_string_status() {
    let body = br#"{"errors":[{"status":"503","title":"Device Unavailable","detail":"Device is currently offline"}]}"#;
    let problem = parse_error_body(Some("application/vnd.api+json"), body);
    assert_eq!(problem.title.as_deref(), Some("Device Unavailable"));
    assert_eq!(
        problem.detail.as_deref(),
        Some("Device is currently offline")
    );

    let server = TestServer::start().await;
    server.on(
        "POST",
        "/whep",
        Reply::new(503).json(std::str::from_utf8(body).unwrap()),
    );
    let error = client()
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "HTTP 503 Service Unavailable from {}/whep: Device Unavailable: Device is currently offline",
            server.base()
        )
    );
}

#[test]
fn mediamtx_error_field() {
    let problem = parse_error_body(
        Some("application/json"),
        br#"{"status":"error","error":"codecs not supported by client"}"#,
    );
    assert_eq!(problem.title, None);
    assert_eq!(
        problem.detail.as_deref(),
        Some("codecs not supported by client")
    );
    // JSON is sniffed even when the content type says otherwise.
    let problem = parse_error_body(Some("text/plain"), br#" {"message":"bad offer"}"#);
    assert_eq!(problem.detail.as_deref(), Some("bad offer"));
    let problem = parse_error_body(None, br#"{"error":"stream not found"}"#);
    assert_eq!(problem.detail.as_deref(), Some("stream not found"));
}

#[tokio::test]
async fn plain_text_error_body() {
    let problem = parse_error_body(Some("text/plain"), b"  Unauthorized: invalid token\n");
    assert_eq!(
        problem,
        Problem {
            title: None,
            detail: Some("Unauthorized: invalid token".into())
        }
    );
    // Long pages are cut, garbage and empty bodies never fail.
    let long = "word ".repeat(1000);
    let detail = parse_error_body(Some("text/html"), long.as_bytes())
        .detail
        .unwrap();
    assert!(detail.chars().count() <= 301, "{}", detail.len());
    assert_eq!(parse_error_body(None, b""), Problem::default());
    let _ = parse_error_body(Some("application/json"), &[0xff, 0x00, b'{', 0x80]);

    // Millicast through HTTP; an empty body still gives a clean message.
    let server = TestServer::start().await;
    server.on(
        "POST",
        "/whip",
        Reply::new(400)
            .header("content-type", "text/plain")
            .body("Stream name already in use"),
    );
    server.on("POST", "/empty", Reply::new(500));
    let client = client();
    let error = client
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "HTTP 400 Bad Request from {}/whip: Stream name already in use",
            server.base()
        )
    );
    let error = client
        .post_offer(&server.url("/empty"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "HTTP 500 Internal Server Error from {}/empty",
            server.base()
        )
    );
}

#[tokio::test]
async fn token_echoed_at_the_end_of_a_long_detail_is_redacted() {
    const TOKEN: &str = "tok-SECRET-123";
    let server = TestServer::start().await;
    let detail = format!("{}{TOKEN}", "x".repeat(290));
    server.on(
        "POST",
        "/whip",
        Reply::new(503).json(&format!(r#"{{"title":"Unavailable","detail":"{detail}"}}"#)),
    );
    server.on(
        "POST",
        "/plain",
        Reply::new(503)
            .header("content-type", "text/plain")
            .body(detail.clone()),
    );
    let client = client_with_token(TOKEN);
    for path in ["/whip", "/plain"] {
        let error = client
            .post_offer(&server.url(path), OFFER)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(503));
        for text in [error.to_string(), format!("{error:?}")] {
            for end in 4..=TOKEN.len() {
                assert!(
                    !text.contains(&TOKEN[..end]),
                    "{:?} survived in {text}",
                    &TOKEN[..end]
                );
            }
        }
    }
}

#[tokio::test]
async fn a_refusal_with_a_huge_body_keeps_its_status() {
    let server = TestServer::start().await;
    // Over the 1 MiB the client reads.
    let huge = "x".repeat(4 * 1024 * 1024);
    server.on(
        "POST",
        "/whip",
        Reply::new(503)
            .header("content-type", "text/html")
            .header("retry-after", "7")
            .body(huge.clone()),
    );
    let error = client()
        .post_offer(&server.url("/whip"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        error.to_string(),
        format!(
            "HTTP 503 Service Unavailable from {}/whip (its body, larger than 1048576 bytes, \
             was not read) (retry after 7 s)",
            server.base()
        )
    );

    // An answer cannot do without its body: still an error, with the status.
    server.on(
        "POST",
        "/big",
        Reply::new(201).sdp(&format!("{ANSWER}{huge}")),
    );
    let error = client()
        .post_offer(&server.url("/big"), OFFER)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProtocolError::InvalidResponse { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("status 201 with a body larger than 1048576 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn retry_after_seconds_and_http_date() {
    assert_eq!(parse_retry_after("30"), Some(Duration::from_secs(30)));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(Duration::ZERO)
    );
    let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
    let delay = parse_retry_after(&future).unwrap();
    assert!(
        delay > Duration::from_secs(100) && delay <= Duration::from_secs(120),
        "{delay:?}"
    );
    assert_eq!(parse_retry_after("later"), None);

    // Kept on errors of any status: WHEP 409 (no publisher), 429, 503.
    let server = TestServer::start().await;
    let client = client();
    for (status, value) in [(409, "5"), (429, "1"), (503, future.as_str())] {
        server.on(
            "POST",
            "/whep",
            Reply::new(status).header("retry-after", value),
        );
        let error = client
            .post_offer(&server.url("/whep"), OFFER)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(status));
        assert!(error.retry_after().is_some(), "{status}");
    }
    server.on("POST", "/whep", Reply::new(429).header("retry-after", "7"));
    let error = client
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    server.on("POST", "/whep", Reply::new(503));
    let error = client
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn delete_404_counts_as_done() {
    let server = TestServer::start().await;
    let client = client();
    let session = server.url("/whip/1");
    for (status, outcome) in [
        (200, DeleteOutcome::Deleted),
        (204, DeleteOutcome::Deleted),
        (404, DeleteOutcome::AlreadyGone),
        (410, DeleteOutcome::AlreadyGone),
    ] {
        server.on("DELETE", "/whip/1", Reply::new(status));
        assert_eq!(client.delete(&session).await.unwrap(), outcome, "{status}");
    }
    // Broadcast Box's WHEP has no DELETE: that is an error the caller sees.
    server.on("DELETE", "/whip/1", Reply::new(405));
    let error = client.delete(&session).await.unwrap_err();
    assert_eq!(error.status(), Some(405));
}

#[tokio::test]
async fn trickle_patch_failure_means_not_supported() {
    let server = TestServer::start().await;
    let client = client();
    let session = server.url("/whip/1");
    // LiveKit before the RFC (405), now (422), others (400, 501, ...).
    for status in [400, 403, 404, 405, 422, 500, 501] {
        server.on(
            "PATCH",
            "/whip/1",
            Reply::new(status).json(r#"{"error":"no"}"#),
        );
        let outcome = client
            .patch_trickle(&session, Some("e"), "a=x\r\n")
            .await
            .unwrap();
        assert_eq!(outcome, TrickleOutcome::NotSupported { status });
    }
    let request = server.requests().pop().unwrap();
    assert_eq!(
        request.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert_eq!(request.body_text(), "a=x\r\n");

    // Transport failures are still errors.
    let mute = TestServer::mute().await;
    let quick = Client::new(ClientConfig {
        timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    })
    .unwrap();
    let error = quick
        .patch_trickle(&mute.url("/whip/1"), None, "a=x\r\n")
        .await
        .unwrap_err();
    assert!(matches!(error, ProtocolError::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn trickle_never_sends_if_match_star() {
    let server = TestServer::start().await;
    server.on("PATCH", "/whip/1", Reply::new(204));
    let client = client();
    let session = server.url("/whip/1");
    let frag = trickle_sdpfrag(
        "0",
        "ufrag",
        "pwd",
        &["candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host".to_owned()],
        true,
    );
    // MediaMTX's ETag is a literal `*`: echoing it would ask LiveKit-style
    // servers for an ICE restart, so no If-Match is sent at all.
    for etag in [None, Some("*"), Some("\"*\""), Some("")] {
        client.patch_trickle(&session, etag, &frag).await.unwrap();
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(request.header("if-match"), None);
        assert_eq!(request.body_text(), frag);
    }
    assert!(frag.starts_with("a=ice-ufrag:ufrag\r\na=ice-pwd:pwd\r\nm=audio 9 "));
    assert!(frag.contains("a=mid:0\r\na=candidate:1 1 udp"));
    assert!(frag.ends_with("a=end-of-candidates\r\n"));
}

#[tokio::test]
async fn ice_restart_sends_if_match_star() {
    let server = TestServer::start().await;
    let answer_frag = "a=ice-ufrag:new\r\na=ice-pwd:newpwd\r\n";
    server.on(
        "PATCH",
        "/whip/1",
        Reply::new(200)
            .header("content-type", "application/trickle-ice-sdpfrag")
            .header("etag", "\"restart-2\"")
            .body(answer_frag),
    );
    let client = client_with_token("tok");
    let frag = trickle_sdpfrag("0", "u2", "p2", &[], false);
    let answer = client
        .patch_ice_restart(&server.url("/whip/1"), &frag)
        .await
        .unwrap();
    assert_eq!(
        answer,
        IceRestartAnswer {
            sdpfrag: answer_frag.into(),
            etag: Some("\"restart-2\"".into())
        }
    );
    let request = server.requests().pop().unwrap();
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.headers_named("if-match"), ["\"*\""]);
    assert_eq!(
        request.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert_eq!(request.header("authorization"), Some("Bearer tok"));

    // A restart the server refuses, or answers without a body, is an error.
    server.on("PATCH", "/whip/1", Reply::new(412));
    let error = client
        .patch_ice_restart(&server.url("/whip/1"), &frag)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(412));
    server.on("PATCH", "/whip/1", Reply::new(204));
    let error = client
        .patch_ice_restart(&server.url("/whip/1"), &frag)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProtocolError::InvalidResponse { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn whep_406_with_sdp_is_a_counter_offer_and_plain_406_is_an_error() {
    let server = TestServer::start().await;
    let client = client();
    server.on(
        "POST",
        "/whep",
        Reply::new(406)
            .header(
                "content-type",
                "application/sdp; valid-until=\"2026-01-01T00:00:00Z\"",
            )
            .header("location", "/whep/s1")
            .header("etag", "\"c1\"")
            .body(ANSWER),
    );
    let offer = client
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap();
    assert_eq!(offer.kind, AnswerKind::CounterOffer);
    assert_eq!(offer.status, 406);
    assert_eq!(offer.sdp, ANSWER);
    assert_eq!(offer.session_url, Some(server.url("/whep/s1")));

    // The client's answer goes back as application/sdp; 204 is success.
    server.on("PATCH", "/whep/s1", Reply::new(204));
    client
        .patch_answer(&server.url("/whep/s1"), OFFER)
        .await
        .unwrap();
    let request = server.requests().pop().unwrap();
    assert_eq!(request.headers_named("content-type"), ["application/sdp"]);
    assert_eq!(request.header("if-match"), None);
    assert_eq!(request.body_text(), OFFER);
    server.on("PATCH", "/whep/s1", Reply::new(400));
    let error = client
        .patch_answer(&server.url("/whep/s1"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(400));

    // MediaMTX: 406 with JSON. Janus: 406 for a wrong content type.
    server.on(
        "POST",
        "/whep",
        Reply::new(406)
            .json(r#"{"status":"error","error":"the stream doesn't contain any supported codec"}"#),
    );
    let error = client
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(406));
    assert_eq!(
        error.problem().unwrap().detail.as_deref(),
        Some("the stream doesn't contain any supported codec")
    );
    server.on("POST", "/whep", Reply::new(406));
    let error = client
        .post_offer(&server.url("/whep"), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(406));
}

#[tokio::test]
async fn timeout_is_reported() {
    let mute = TestServer::mute().await;
    let client = Client::new(ClientConfig {
        timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    })
    .unwrap();
    assert_eq!(client.timeout(), Duration::from_millis(300));
    let started = std::time::Instant::now();
    let error = client
        .post_offer(&mute.url("/whip?token=abc"), OFFER)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3));
    assert!(matches!(error, ProtocolError::Timeout { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "no response from {}/whip?token=*** within 0.3 s",
            mute.base()
        )
    );
    assert!(mute.connections() >= 1);

    // The timeout covers the whole redirect chain, not each hop.
    let slow = TestServer::start().await;
    slow.on(
        "POST",
        "/a",
        Reply::new(307)
            .header("location", "/b")
            .delay(Duration::from_millis(200)),
    );
    slow.on(
        "POST",
        "/b",
        Reply::new(307)
            .header("location", "/c")
            .delay(Duration::from_millis(200)),
    );
    slow.on(
        "POST",
        "/c",
        created("/c/1").delay(Duration::from_millis(200)),
    );
    let error = client.post_offer(&slow.url("/a"), OFFER).await.unwrap_err();
    assert!(matches!(error, ProtocolError::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn connection_refused_is_reported() {
    // A port that was just free: bind, note it, release it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/whip?secret=x")).unwrap();
    let error = client_with_token("tok")
        .post_offer(&url, OFFER)
        .await
        .unwrap_err();
    match &error {
        ProtocolError::Connect { url, message } => {
            assert_eq!(url, &format!("http://127.0.0.1:{port}/whip?secret=***"));
            assert!(!message.contains("127.0.0.1"), "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    let text = error.to_string();
    let prefix = format!("could not reach http://127.0.0.1:{port}/whip?secret=***: ");
    assert!(text.starts_with(&prefix), "{text}");
    println!("{text}");
    assert!(!text.contains("secret=x"), "{text}");

    // Not http(s) at all.
    let error = client()
        .post_offer(&url::Url::parse("ftp://127.0.0.1/whip").unwrap(), OFFER)
        .await
        .unwrap_err();
    assert!(matches!(error, ProtocolError::InvalidUrl(_)), "{error:?}");
}

#[tokio::test]
async fn token_never_appears_in_debug_or_errors() {
    const TOKEN: &str = "tok-SECRET-123";
    let token = AuthToken::new(TOKEN);
    assert_eq!(token.expose(), TOKEN);
    assert_eq!(format!("{token:?}"), "AuthToken(<redacted>)");
    let config = ClientConfig {
        auth_token: Some(token.clone()),
        timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    assert!(!format!("{config:?}").contains(TOKEN));
    let client = Client::new(config).unwrap();
    assert!(!format!("{client:?}").contains(TOKEN));

    let mut texts = Vec::new();
    // The server echoes the token in its error body and gets a query secret.
    let server = TestServer::start().await;
    server.on(
        "POST",
        "/whip",
        Reply::new(401).json(&format!(
            r#"{{"title":"Bad token {TOKEN}","detail":"{TOKEN} expired"}}"#
        )),
    );
    let error = client
        .post_offer(&server.url(&format!("/whip?token={TOKEN}")), OFFER)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401));
    texts.push(error.to_string());
    texts.push(format!("{error:?}"));
    // Timeouts and connection failures with secrets in the URL.
    let mute = TestServer::mute().await;
    let error = client
        .post_offer(&mute.url(&format!("/whip?pass={TOKEN}")), OFFER)
        .await
        .unwrap_err();
    texts.push(error.to_string());
    texts.push(format!("{error:?}"));
    let mut url = server.url(&format!("/whip?k={TOKEN}"));
    url.set_port(Some(1)).unwrap();
    url.set_username("user").unwrap();
    url.set_password(Some(TOKEN)).unwrap();
    let error = client.delete(&url).await.unwrap_err();
    texts.push(error.to_string());
    texts.push(format!("{error:?}"));
    // A successful answer whose session URL carries a token (SRS).
    server.on(
        "POST",
        "/srs",
        created(&format!("/srs?action=delete&token={TOKEN}")),
    );
    let answer = client.post_offer(&server.url("/srs"), OFFER).await.unwrap();
    assert!(answer
        .session_url
        .as_ref()
        .unwrap()
        .as_str()
        .contains(TOKEN));
    texts.push(format!("{answer:?}"));
    texts.push(redact_url(answer.session_url.as_ref().unwrap()));
    // ICE server credentials.
    let ice = IceServer {
        url: "turn:t.example".into(),
        username: Some("u".into()),
        credential: Some(TOKEN.into()),
    };
    texts.push(format!("{ice:?}"));

    for text in &texts {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
    // The Authorization header was still sent.
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn header_names_are_case_insensitive() {
    // hyper writes lower-case names, so this server sends raw bytes.
    let sdp = ANSWER;
    let response = format!(
        "HTTP/1.1 201 Created\r\n\
         CONTENT-TYPE: application/sdp\r\n\
         LOCATION: /whip/UPPER\r\n\
         ETAG: \"Up\"\r\n\
         LINK: <stun:s.example:3478>; REL=\"ice-server\"\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{sdp}",
        sdp.len()
    );
    let upper = TestServer::raw(&response).await;
    let answer = client()
        .post_offer(&upper.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.session_url, Some(upper.url("/whip/UPPER")));
    assert_eq!(answer.etag.as_deref(), Some("\"Up\""));
    assert_eq!(answer.ice_servers.len(), 1);
    assert_eq!(answer.sdp, ANSWER);
    assert_eq!(upper.requests()[0].method, "POST");

    let lower = TestServer::start().await;
    lower.on(
        "POST",
        "/whip",
        Reply::new(201)
            .sdp(ANSWER)
            .header("location", "/whip/lower"),
    );
    let answer = client()
        .post_offer(&lower.url("/whip"), OFFER)
        .await
        .unwrap();
    assert_eq!(answer.session_url, Some(lower.url("/whip/lower")));
}

#[tokio::test]
async fn set_auth_token_applies_to_next_request() {
    let server = TestServer::start().await;
    server.on("DELETE", "/s", Reply::new(200));
    let client = client_with_token("old");
    let shared = client.clone();
    client.delete(&server.url("/s")).await.unwrap();
    // Set through a clone: all clones share the token.
    shared.set_auth_token(Some(AuthToken::new("new")));
    client.delete(&server.url("/s")).await.unwrap();
    client.set_auth_token(None);
    client.delete(&server.url("/s")).await.unwrap();
    let auth: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        auth,
        [
            Some("Bearer old".to_owned()),
            Some("Bearer new".to_owned()),
            None
        ]
    );
}

#[tokio::test]
async fn token_with_a_trailing_newline_is_trimmed_and_bad_tokens_are_refused() {
    let server = TestServer::start().await;
    server.on("DELETE", "/s", Reply::new(200));
    client_with_token("tok\n")
        .delete(&server.url("/s"))
        .await
        .unwrap();
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer tok")
    );
    let error = client_with_token("a\nb")
        .delete(&server.url("/s"))
        .await
        .unwrap_err();
    assert!(matches!(error, ProtocolError::Client(_)), "{error:?}");
    assert!(!error.to_string().contains("a\nb"));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn redact_url_drops_userinfo_and_query_values() {
    let url = url::Url::parse("https://user:pw@h.example/rtc/v1/whip/?app=live&token=abc").unwrap();
    assert_eq!(
        redact_url(&url),
        "https://h.example/rtc/v1/whip/?app=***&token=***"
    );
    let url = url::Url::parse("http://h.example/whip").unwrap();
    assert_eq!(redact_url(&url), "http://h.example/whip");
}

/// The elements spawn these futures on the plugin's multi-threaded runtime.
#[test]
fn client_and_its_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<ProtocolError>();
    let client = client();
    let url = url::Url::parse("http://127.0.0.1:9/whip").unwrap();
    assert_send(&client.options(&url));
    assert_send(&client.post_offer(&url, OFFER));
    assert_send(&client.patch_trickle(&url, None, ""));
    assert_send(&client.patch_ice_restart(&url, ""));
    assert_send(&client.patch_answer(&url, ""));
    assert_send(&client.delete(&url));
}

/// A server that closes an idle keep-alive connection just as the next
/// request arrives on it (its idle timer and the request crossed): that
/// request gets no answer. Requests on a fresh connection are answered.
/// Returns the server's base URL and the requests it answered, per
/// connection.
async fn closing_idle_server() -> (url::Url, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = answered.clone();
    tokio::spawn(async move {
        for connection in 0..8 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                socket.read_exact(&mut body).await.unwrap();
                let method = head.split(' ').next().unwrap_or("").to_string();
                let reply = if method == "POST" {
                    format!(
                        "HTTP/1.1 201 Created\r\ncontent-type: application/sdp\r\n\
                         location: /s/1\r\ncontent-length: {}\r\n\r\n{ANSWER}",
                        ANSWER.len()
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
                };
                socket.write_all(reply.as_bytes()).await.unwrap();
                log.lock()
                    .unwrap()
                    .push(format!("{method} on connection {connection}"));
                // The next request on this connection meets the close.
                let _ = socket.read(&mut byte).await;
            });
        }
    });
    (base, answered)
}

/// POSTs to a `closing_idle_server`, waits `idle`, DELETEs the session (which
/// must be deleted); what the server answered, per connection.
async fn post_then_delete_after(idle: Duration) -> Vec<String> {
    let (base, answered) = closing_idle_server().await;
    let client = client();
    let answer = client
        .post_offer(&base.join("/whep").unwrap(), OFFER)
        .await
        .unwrap();
    tokio::time::sleep(idle).await;
    assert_eq!(
        client.delete(&answer.session_url.unwrap()).await.unwrap(),
        DeleteOutcome::Deleted
    );
    let answered = answered.lock().unwrap().clone();
    answered
}

/// Servers close idle keep-alive connections (Apache, Node.js, hyper after
/// 5 s): a session's DELETE (or ICE restart PATCH, seconds after its POST)
/// goes on a fresh connection, not on the POST's idle one.
#[tokio::test]
async fn a_request_after_an_idle_spell_does_not_reuse_the_idle_connection() {
    assert_eq!(
        post_then_delete_after(Duration::from_millis(2500)).await,
        ["POST on connection 0", "DELETE on connection 1"]
    );
}

/// A DELETE that met a server's close of its idle connection (no answer at
/// all) goes once more, on a fresh connection: the session is deleted.
#[tokio::test]
async fn a_delete_cut_by_a_closing_connection_goes_once_more() {
    // At once: the POST's connection is reused, and cut.
    assert_eq!(
        post_then_delete_after(Duration::ZERO).await,
        ["POST on connection 0", "DELETE on connection 1"]
    );
}
