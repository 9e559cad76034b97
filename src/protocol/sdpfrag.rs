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

/// A received sdpfrag, as the server reads it: the ICE credentials
/// (session-level, or those of the first media line that has them) and each
/// media line's mid, candidates and end-of-candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFrag {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub media: Vec<FragMedia>,
    /// `a=end-of-candidates` at session level: for every media line.
    pub end_of_candidates: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragMedia {
    pub mid: Option<String>,
    /// `candidate:...` lines, without `a=`.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

/// Reads an `application/trickle-ice-sdpfrag` body (RFC 8840 §9). Lines it
/// does not know (`a=ice-options`, the media line's content) are skipped.
/// Errors name what is wrong: a candidate before any media line, a
/// malformed candidate, ICE credentials that disagree between levels.
pub fn parse_sdpfrag(text: &str) -> Result<SdpFrag, String> {
    let mut frag = SdpFrag::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            frag.media.push(FragMedia::default());
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (key, value) = attr.split_once(':').unwrap_or((attr, ""));
        match key {
            "ice-ufrag" => set_credential(&mut frag.ufrag, value, "ice-ufrag")?,
            "ice-pwd" => set_credential(&mut frag.pwd, value, "ice-pwd")?,
            "mid" => match frag.media.last_mut() {
                Some(m) => m.mid = Some(value.to_string()),
                None => return Err("a=mid before any m= line".into()),
            },
            "candidate" => {
                let fields: Vec<&str> = value.split_whitespace().collect();
                // foundation component transport priority address port typ type
                if fields.len() < 8 || fields[6] != "typ" || fields[5].parse::<u16>().is_err() {
                    return Err(format!("malformed candidate {attr:?}"));
                }
                match frag.media.last_mut() {
                    Some(m) => m.candidates.push(attr.to_string()),
                    None => return Err("a=candidate before any m= line".into()),
                }
            }
            "end-of-candidates" => match frag.media.last_mut() {
                Some(m) => m.end_of_candidates = true,
                None => frag.end_of_candidates = true,
            },
            _ => {}
        }
    }
    Ok(frag)
}

/// Credentials may be given at both levels (RFC 8840 allows it), but one
/// fragment restarts or trickles one ICE generation: they must agree.
fn set_credential(slot: &mut Option<String>, value: &str, name: &str) -> Result<(), String> {
    match slot {
        Some(old) if old != value => Err(format!("two different a={name} values")),
        _ => {
            *slot = Some(value.to_string());
            Ok(())
        }
    }
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
    fn parse_reads_what_trickle_sdpfrag_writes() {
        let cands = vec![
            "candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host".to_owned(),
            "candidate:2 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active".to_owned(),
        ];
        let frag = parse_sdpfrag(&trickle_sdpfrag("v0", "EsAw", "pwd", &cands, true)).unwrap();
        assert_eq!(frag.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(frag.pwd.as_deref(), Some("pwd"));
        assert_eq!(
            frag.media,
            vec![FragMedia {
                mid: Some("v0".into()),
                candidates: cands,
                end_of_candidates: true
            }]
        );
        assert!(parse_sdpfrag("a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n").is_err());
        assert!(parse_sdpfrag("m=audio 9 RTP/AVP 0\r\na=candidate:bogus\r\n").is_err());
        assert!(
            parse_sdpfrag("a=ice-ufrag:a\r\nm=audio 9 RTP/AVP 0\r\na=ice-ufrag:b\r\n").is_err()
        );
        assert!(
            parse_sdpfrag("a=end-of-candidates\r\n")
                .unwrap()
                .end_of_candidates
        );
    }

    #[test]
    fn no_line_injection() {
        let frag = trickle_sdpfrag("0\r\na=x", "u", "p", &[], false);
        assert!(frag.contains("a=mid:0a=x\r\n"));
        assert!(!frag.contains("end-of-candidates"));
    }
}
