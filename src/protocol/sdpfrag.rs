//! Trickle ICE bodies (`application/trickle-ice-sdpfrag`, RFC 8840).
//!
//! WHIP trickles and restarts ICE with an SDP fragment (RFC 9725 §4.3,
//! docs/protocol.md P11, P12): the ICE credentials at session level, then
//! one media line whose `a=mid` names the first m-section of the offer, then
//! the candidates, then optionally `a=end-of-candidates`. The media line's content does not matter
//! to the server (RFC 8840 §4.4 uses a dummy one); only the mid does.

/// Builds the sdpfrag. `candidates` may be given with or without the `a=`
/// prefix (webrtcbin hands out `candidate:...`). Line breaks inside any input
/// are dropped so that a value can never inject an extra SDP line.
pub fn trickle_sdpfrag(
    mid: &str,
    ufrag: &str,
    pwd: &str,
    candidates: &[String],
    end: bool,
) -> String {
    let mut frag = String::new();
    push_line(&mut frag, "a=ice-ufrag:", ufrag);
    push_line(&mut frag, "a=ice-pwd:", pwd);
    frag.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n");
    push_line(&mut frag, "a=mid:", mid);
    for candidate in candidates {
        let candidate = single_line(candidate);
        let candidate = candidate.trim();
        let candidate = candidate.strip_prefix("a=").unwrap_or(candidate);
        if candidate.is_empty() {
            continue;
        }
        push_line(&mut frag, "a=", candidate);
    }
    if end {
        frag.push_str("a=end-of-candidates\r\n");
    }
    frag
}

fn push_line(frag: &mut String, prefix: &str, value: &str) {
    frag.push_str(prefix);
    frag.push_str(&single_line(value));
    frag.push_str("\r\n");
}

fn single_line(value: &str) -> String {
    value.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let frag = trickle_sdpfrag(
            "0",
            "EsAw",
            "P2uYro0UCOQ4zxjKXaWCBui1",
            &[
                "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host".to_owned(),
                "a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host\r\n"
                    .to_owned(),
                String::new(),
            ],
            true,
        );
        assert_eq!(
            frag,
            "a=ice-ufrag:EsAw\r\n\
             a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
             a=mid:0\r\n\
             a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host\r\n\
             a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host\r\n\
             a=end-of-candidates\r\n"
        );
    }

    #[test]
    fn no_line_injection() {
        let frag = trickle_sdpfrag("0\r\na=x", "u", "p", &[], false);
        assert!(frag.contains("a=mid:0a=x\r\n"));
        assert!(!frag.contains("end-of-candidates"));
    }
}
