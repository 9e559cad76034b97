//! ICE credentials and candidates in SDP text, for trickle and ICE restart
//! (RFC 8839, RFC 8840; RFC 9725 §4.3). webrtcbin 1.22 neither makes new
//! credentials for a restart (create-offer's `ice-restart` option is
//! ignored, create-answer reuses its last ones) nor notices new remote ones
//! as a restart, so a restart is made in the SDP text: fresh credentials in
//! the description set locally, the peer's new ones in the one set
//! remotely, and libnice's checks started over (`Peer::restart_ice`).

/// `ice-char` (RFC 8839 §5.4): ALPHA / DIGIT / "+" / "/".
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The ICE credentials of a description: the first `a=ice-ufrag` and
/// `a=ice-pwd`, at session or media level (bundled: one pair).
pub fn credentials(sdp: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    Some((value("a=ice-ufrag:")?, value("a=ice-pwd:")?))
}

/// `sdp` with every `a=ice-ufrag` and `a=ice-pwd` replaced.
pub fn with_credentials(sdp: &str, ufrag: &str, pwd: &str) -> String {
    map_lines(sdp, |line| {
        if line.starts_with("a=ice-ufrag:") {
            Some(format!("a=ice-ufrag:{ufrag}"))
        } else if line.starts_with("a=ice-pwd:") {
            Some(format!("a=ice-pwd:{pwd}"))
        } else {
            Some(line.to_string())
        }
    })
}

/// `sdp` without candidates and end-of-candidates (those of an earlier ICE
/// generation), with `candidates` (`candidate:...` lines) in the m-section
/// with mid `mid` (or the first one when `mid` is unknown).
pub fn with_candidates(sdp: &str, mid: Option<&str>, candidates: &[String]) -> String {
    let target = mid
        .and_then(|m| mids(sdp).iter().position(|x| x.as_deref() == Some(m)))
        .unwrap_or(0);
    let mut out = String::new();
    let mut mline: Option<usize> = None;
    let flush = |out: &mut String, mline: Option<usize>| {
        if mline == Some(target) {
            for c in candidates {
                out.push_str("a=");
                out.push_str(c.strip_prefix("a=").unwrap_or(c));
                out.push_str("\r\n");
            }
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            flush(&mut out, mline);
            mline = Some(mline.map_or(0, |i| i + 1));
        }
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" || line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    flush(&mut out, mline);
    out
}

/// Each m-section's `a=mid`, in order.
pub fn mids(sdp: &str) -> Vec<Option<String>> {
    let mut mids = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            *last = Some(mid.to_string());
        }
    }
    mids
}

/// New random credentials: a 16-character ufrag and a 32-character
/// password (RFC 8839: at least 4 and 22 characters, 24 and 128 bits of
/// randomness).
pub fn new_credentials() -> (String, String) {
    (random_ice_chars(16), random_ice_chars(32))
}

fn random_ice_chars(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    let _ = openssl::rand::rand_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ICE_CHARS[(*b as usize) % ICE_CHARS.len()] as char)
        .collect()
}

fn map_lines(sdp: &str, f: impl Fn(&str) -> Option<String>) -> String {
    sdp.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .filter_map(f)
        .fold(String::new(), |mut out, l| {
            out.push_str(&l);
            out.push_str("\r\n");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE video0 audio1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=mid:video0\r\n\
a=candidate:1 1 UDP 2122260223 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=mid:audio1\r\n";

    #[test]
    fn credentials_are_read_and_replaced_everywhere() {
        assert_eq!(credentials(SDP), Some(("old".into(), "oldpwd".into())));
        let new = with_credentials(SDP, "nu", "nupwd");
        assert_eq!(credentials(&new), Some(("nu".into(), "nupwd".into())));
        assert!(!new.contains("old"));
        assert_eq!(new.matches("a=ice-ufrag:nu\r\n").count(), 2);
    }

    #[test]
    fn candidates_of_the_old_generation_go() {
        let c = vec!["candidate:9 1 UDP 2122260223 127.0.0.1 6000 typ host".to_string()];
        let new = with_candidates(SDP, Some("audio1"), &c);
        assert!(!new.contains("5000") && !new.contains("end-of-candidates"));
        let audio = new.find("m=audio").unwrap();
        assert!(new.find("6000").unwrap() > audio);
        assert_eq!(
            mids(&new),
            vec![Some("video0".into()), Some("audio1".into())]
        );
    }

    #[test]
    fn fresh_credentials_are_valid_and_differ() {
        let (u, p) = new_credentials();
        assert_eq!((u.len(), p.len()), (16, 32));
        assert!(u.bytes().chain(p.bytes()).all(|b| ICE_CHARS.contains(&b)));
        assert_ne!(new_credentials().0, u);
    }
}
