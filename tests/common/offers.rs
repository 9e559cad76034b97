//! Hand-made SDP offers for server limits: what no real client sends.
#![allow(dead_code)]

/// An offer of `media` video m-lines (VP8), grouped in one BUNDLE or not,
/// with fixed ICE credentials and a dummy fingerprint.
pub fn video_offer(media: usize, bundle: bool, direction: &str) -> String {
    let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
    if bundle {
        let mids: Vec<String> = (0..media).map(|i| i.to_string()).collect();
        sdp.push_str(&format!("a=group:BUNDLE {}\r\n", mids.join(" ")));
    }
    for i in 0..media {
        sdp.push_str(&format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
             a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
             a=setup:actpass\r\na=rtcp-mux\r\na={direction}\r\na=rtpmap:96 VP8/90000\r\n"
        ));
    }
    sdp
}
