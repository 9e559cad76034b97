//! Which way an offer's media goes, and whether that fits the endpoint it
//! was POSTed to: a WHIP endpoint takes media from its client, a WHEP
//! endpoint sends media to its client. An offer the wrong way round (a
//! player's recvonly offer POSTed to a WHIP URL, a publisher's sendonly
//! offer POSTed to a WHEP URL) is refused with a problem body that names
//! the right endpoint, before anything is set up for it.

use super::Refusal;

/// What the server element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// whipserversrc: clients publish.
    Whip,
    /// whepserversink: clients play.
    Whep,
}

/// m-sections an offer may have: each unbundled one costs the server an
/// ICE agent and a DTLS connection with their threads (400 of them made
/// 1208 threads), and no WHIP or WHEP client needs more than a few.
pub const MAX_MEDIA: usize = 8;

/// m-sections an offer may have without `a=group:BUNDLE`.
pub const MAX_UNBUNDLED: usize = 2;

/// What an offer's m-sections do, from the client's side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directions {
    /// At least one m-section is sendonly or sendrecv.
    pub sends: bool,
    /// At least one m-section is recvonly or sendrecv.
    pub receives: bool,
    /// How many m-sections there are.
    pub media: usize,
    /// Whether the offer has an `a=group:BUNDLE` line.
    pub bundle: bool,
}

/// Reads the direction attributes of `sdp` (RFC 8866 §6.7: a media-level
/// attribute wins over a session-level one; sendrecv when neither says).
pub fn directions(sdp: &str) -> Directions {
    fn parse(line: &str) -> Option<(bool, bool)> {
        match line.trim() {
            "a=sendrecv" => Some((true, true)),
            "a=sendonly" => Some((true, false)),
            "a=recvonly" => Some((false, true)),
            "a=inactive" => Some((false, false)),
            _ => None,
        }
    }
    let mut session = (true, true);
    let mut current: Option<(bool, bool)> = None;
    let mut out = Directions::default();
    fn finish(m: Option<(bool, bool)>, out: &mut Directions) {
        if let Some((send, recv)) = m {
            out.sends |= send;
            out.receives |= recv;
            out.media += 1;
        }
    }
    for line in sdp.lines() {
        if line.trim_end().starts_with("a=group:BUNDLE") {
            out.bundle = true;
        }
        if line.starts_with("m=") {
            finish(current.take(), &mut out);
            current = Some(session);
        } else if let Some(d) = parse(line) {
            match current.as_mut() {
                Some(m) => *m = d,
                None => session = d,
            }
        }
    }
    finish(current, &mut out);
    out
}

/// Ok if `offer` fits `endpoint`; else a 422 saying which endpoint it is
/// for, or naming the limit it exceeds (`MAX_MEDIA`, `MAX_UNBUNDLED`). An
/// offer without m-sections passes: the element refuses it anyway, with its
/// own reason. Called before anything is made for the offer.
pub fn check_offer(endpoint: Endpoint, offer: &str) -> Result<(), Refusal> {
    let d = directions(offer);
    if d.media == 0 {
        return Ok(());
    }
    if d.media > MAX_MEDIA {
        return Err(Refusal::new(
            422,
            "Unprocessable Content",
            format!(
                "the offer has {} media sections; this server takes at most {MAX_MEDIA}",
                d.media
            ),
        ));
    }
    if d.media > MAX_UNBUNDLED && !d.bundle {
        return Err(Refusal::new(
            422,
            "Unprocessable Content",
            format!(
                "the offer has {} media sections and no a=group:BUNDLE; this server takes \
                 at most {MAX_UNBUNDLED} unbundled",
                d.media
            ),
        ));
    }
    let detail = match endpoint {
        Endpoint::Whip if d.sends => return Ok(()),
        Endpoint::Whep if d.receives => return Ok(()),
        Endpoint::Whip if d.receives => {
            "a WHIP endpoint takes offers that send media; this offer only receives \
             (a WHEP offer: use the WHEP endpoint)"
        }
        Endpoint::Whep if d.sends => {
            "a WHEP endpoint takes offers that receive media; this offer only sends \
             (a WHIP offer: use the WHIP endpoint)"
        }
        Endpoint::Whip => "a WHIP endpoint takes offers that send media; this offer is inactive",
        Endpoint::Whep => "a WHEP endpoint takes offers that receive media; this offer is inactive",
    };
    Err(Refusal::new(422, "Unprocessable Content", detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECVONLY: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n";
    const SENDONLY: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";

    #[test]
    fn whip_takes_senders_only() {
        assert!(check_offer(Endpoint::Whip, SENDONLY).is_ok());
        let r = check_offer(Endpoint::Whip, RECVONLY).unwrap_err();
        assert_eq!(r.status, 422);
        assert!(r.detail.contains("use the WHEP endpoint"), "{}", r.detail);
    }

    #[test]
    fn whep_takes_receivers_only() {
        assert!(check_offer(Endpoint::Whep, RECVONLY).is_ok());
        let r = check_offer(Endpoint::Whep, SENDONLY).unwrap_err();
        assert_eq!(r.status, 422);
        assert!(r.detail.contains("use the WHIP endpoint"), "{}", r.detail);
    }

    #[test]
    fn sendrecv_and_defaults_fit_both() {
        let none = "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        let both = "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n";
        for sdp in [none, both] {
            assert!(check_offer(Endpoint::Whip, sdp).is_ok());
            assert!(check_offer(Endpoint::Whep, sdp).is_ok());
        }
    }

    #[test]
    fn media_level_wins_over_session_level() {
        let sdp = "v=0\r\ns=-\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        let d = directions(sdp);
        assert_eq!((d.sends, d.receives, d.media), (true, true, 2));
    }

    #[test]
    fn too_many_or_unbundled_media_are_refused() {
        let offer = |n: usize, bundle: bool| {
            let mut sdp = String::from("v=0\r\ns=-\r\n");
            if bundle {
                sdp.push_str("a=group:BUNDLE 0 1 2\r\n");
            }
            for _ in 0..n {
                sdp.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n");
            }
            sdp
        };
        assert!(check_offer(Endpoint::Whep, &offer(MAX_MEDIA, true)).is_ok());
        assert!(check_offer(Endpoint::Whep, &offer(MAX_UNBUNDLED, false)).is_ok());
        let r = check_offer(Endpoint::Whep, &offer(400, true)).unwrap_err();
        assert_eq!(r.status, 422);
        assert!(r.detail.contains("400 media sections"), "{}", r.detail);
        assert!(r.detail.contains("at most 8"), "{}", r.detail);
        let r = check_offer(Endpoint::Whep, &offer(3, false)).unwrap_err();
        assert!(r.detail.contains("no a=group:BUNDLE"), "{}", r.detail);
    }

    #[test]
    fn inactive_fits_neither_and_no_media_is_left_to_the_element() {
        let sdp = "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n";
        assert!(check_offer(Endpoint::Whip, sdp).is_err());
        assert!(check_offer(Endpoint::Whep, sdp).is_err());
        assert!(check_offer(Endpoint::Whip, "v=0\r\n").is_ok());
    }
}
