//! Edits to the SDP text this plugin sends. webrtcbin 1.22 leaves out things
//! strict servers require; these functions add them, on a parsed
//! `gst_sdp::SDPMessage`. They only touch the text sent over HTTP, never what
//! webrtcbin holds as its local description.

use gst_sdp::{SDPAttribute, SDPMediaRef, SDPMessage};

/// Parses `sdp`, applies `f`, and writes it out again. Text webrtcbin made
/// always parses; anything else goes out as it came.
fn edit(sdp: &str, f: impl FnOnce(&mut SDPMessage)) -> String {
    let Ok(mut msg) = SDPMessage::parse_buffer(sdp.as_bytes()) else {
        return sdp.to_string();
    };
    f(&mut msg);
    msg.as_text().unwrap_or_else(|_| sdp.to_string())
}

/// Indices and values of `media`'s attributes named `key`.
fn attributes_named<'a>(
    media: &'a SDPMediaRef,
    key: &'a str,
) -> impl Iterator<Item = (u32, &'a str)> + 'a {
    media
        .attributes()
        .enumerate()
        .filter(move |(_, a)| a.key() == key)
        .map(|(i, a)| (i as u32, a.value().unwrap_or("")))
}

/// Replaces every `a=fingerprint:` with ours (see `certificate`).
pub fn set_fingerprint(sdp: &str, fingerprint: &str) -> String {
    edit(sdp, |msg| {
        let ours = SDPAttribute::new("fingerprint", Some(fingerprint));
        let at: Vec<u32> = msg
            .attributes()
            .enumerate()
            .filter(|(_, a)| a.key() == "fingerprint")
            .map(|(i, _)| i as u32)
            .collect();
        for i in at {
            let _ = msg.replace_attribute(i, ours.clone());
        }
        for media in msg.medias_mut() {
            let at: Vec<u32> = attributes_named(media, "fingerprint")
                .map(|(i, _)| i)
                .collect();
            for i in at {
                let _ = media.replace_attribute(i, ours.clone());
            }
        }
    })
}

/// webrtcbin writes the H.264 fmtp from the caps it had when the offer was
/// made, which may predate the first SPS: strict servers (Cloudflare, LiveKit,
/// browsers) reject an H.264 format without `packetization-mode=1` and
/// `profile-level-id`. Constrained Baseline 3.1 is the common ground
/// (RFC 7742, docs/protocol.md P15). An answer takes the profile of the
/// offer's format with the same payload type (`offer`), since webrtcbin's
/// answers drop it.
pub fn complete_h264_fmtp(sdp: &str, offer: Option<&str>) -> String {
    edit(sdp, |msg| {
        for media in msg.medias_mut() {
            let h264: Vec<(u32, String)> = attributes_named(media, "rtpmap")
                .filter_map(|(i, v)| {
                    let (pt, codec) = v.split_once(' ')?;
                    codec
                        .to_ascii_uppercase()
                        .starts_with("H264/")
                        .then(|| (i, pt.to_string()))
                })
                .collect();
            // From the last, so that inserting keeps earlier indices right.
            for (rtpmap_at, pt) in h264.into_iter().rev() {
                let prefix = format!("{pt} ");
                let fmtp = attributes_named(media, "fmtp")
                    .find(|(_, v)| v.starts_with(&prefix))
                    .map(|(i, v)| (i, v[prefix.len()..].to_string()));
                let profile = profile_in(offer, &pt);
                match fmtp {
                    Some((i, params)) => {
                        let value = format!("{pt} {}", complete_h264_params(&params, profile));
                        let _ = media.replace_attribute(i, SDPAttribute::new("fmtp", Some(&value)));
                    }
                    None => {
                        let value = format!("{pt} {}", complete_h264_params("", profile));
                        // Right after its rtpmap (None: at the end).
                        let at = Some(rtpmap_at + 1).filter(|i| *i < media.attributes_len());
                        let _ = media.insert_attribute(at, SDPAttribute::new("fmtp", Some(&value)));
                    }
                }
            }
        }
    })
}

/// `profile-level-id` of payload type `pt` in `sdp`, if any.
fn profile_in(sdp: Option<&str>, pt: &str) -> Option<String> {
    let msg = SDPMessage::parse_buffer(sdp?.as_bytes()).ok()?;
    let prefix = format!("{pt} ");
    msg.medias().find_map(|m| {
        attributes_named(m, "fmtp").find_map(|(_, v)| {
            v.strip_prefix(&prefix)?.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.eq_ignore_ascii_case("profile-level-id")
                    .then(|| v.to_string())
            })
        })
    })
}

fn complete_h264_params(params: &str, profile: Option<String>) -> String {
    let mut parts: Vec<String> = params
        .split(';')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let has = |parts: &[String], key: &str| {
        parts
            .iter()
            .any(|p| p.to_ascii_lowercase().starts_with(&format!("{key}=")))
    };
    if !has(&parts, "packetization-mode") {
        parts.push("packetization-mode=1".into());
    }
    if !has(&parts, "profile-level-id") {
        let profile = profile.unwrap_or_else(|| "42e01f".into());
        parts.push(format!("profile-level-id={profile}"));
    }
    if !has(&parts, "level-asymmetry-allowed") {
        parts.push("level-asymmetry-allowed=1".into());
    }
    parts.join(";")
}

/// WHIP §4.4.1: every bundled m-section carries `a=rtcp-mux-only`, right
/// after its `a=rtcp-mux`.
pub fn add_rtcp_mux_only(sdp: &str) -> String {
    edit(sdp, |msg| {
        for media in msg.medias_mut() {
            if media.attribute_val("rtcp-mux-only").is_some() {
                continue;
            }
            let only = SDPAttribute::new("rtcp-mux-only", None);
            let mux = attributes_named(media, "rtcp-mux").map(|(i, _)| i).next();
            match mux {
                Some(i) => {
                    let at = Some(i + 1).filter(|at| *at < media.attributes_len());
                    let _ = media.insert_attribute(at, only);
                }
                None => {
                    media.add_attribute("rtcp-mux", None);
                    media.add_attribute("rtcp-mux-only", None);
                }
            }
        }
    })
}

/// Puts the gathered candidates into the first m-section when webrtcbin's
/// description has none (a non-trickle offer must carry them), with
/// `a=end-of-candidates` if gathering completed.
pub fn add_candidates(sdp: &str, candidates: &[String], complete: bool) -> String {
    edit(sdp, |msg| {
        let has_candidates = msg.medias().any(|m| m.attribute_val("candidate").is_some());
        let Some(first) = msg.media_mut(0) else {
            return;
        };
        if !has_candidates {
            for c in candidates {
                let c = c.strip_prefix("a=").unwrap_or(c);
                let c = c.strip_prefix("candidate:").unwrap_or(c);
                first.add_attribute("candidate", Some(c));
            }
        }
        if complete && first.attribute_val("end-of-candidates").is_none() {
            first.add_attribute("end-of-candidates", None);
        }
    })
}

/// A format offered in an m-section (`offered_formats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    /// Index of the m-section.
    pub mline: u32,
    pub payload_type: u32,
    /// H.264 profile-level-id, if given.
    pub profile: Option<String>,
}

/// A format's fmtp parameters, as written (keys lower case).
pub type FmtpParams = Vec<(String, String)>;

/// The formats of `encoding` (case-insensitive) in the first m-section of
/// `media` ("video"/"audio") that offers it, in the offer's order, with
/// their fmtp parameters as written (GStreamer's caps from SDP turn an
/// H.264 profile-level-id into a profile name and drop the level). For
/// H.264 only packetization-mode=1 formats qualify (what our payloader
/// sends).
pub fn offered_formats(sdp: &str, media: &str, encoding: &str) -> Vec<(OfferedFormat, FmtpParams)> {
    let Ok(msg) = SDPMessage::parse_buffer(sdp.as_bytes()) else {
        return Vec::new();
    };
    let formats = |m: &SDPMediaRef| -> Vec<(u32, FmtpParams)> {
        m.formats()
            .filter_map(|pt| pt.parse::<u32>().ok())
            .filter(|pt| {
                let prefix = format!("{pt} ");
                attributes_named(m, "rtpmap").any(|(_, v)| {
                    v.strip_prefix(&prefix).is_some_and(|codec| {
                        codec
                            .split('/')
                            .next()
                            .is_some_and(|name| name.trim().eq_ignore_ascii_case(encoding))
                    })
                })
            })
            .map(|pt| {
                let prefix = format!("{pt} ");
                let params = attributes_named(m, "fmtp")
                    .find_map(|(_, v)| v.strip_prefix(&prefix))
                    .map(|p| {
                        p.split(';')
                            .filter_map(|kv| {
                                let (k, v) = kv.trim().split_once('=')?;
                                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (pt, params)
            })
            .collect()
    };
    let Some((mline, found)) = msg
        .medias()
        .enumerate()
        .filter(|(_, m)| m.media() == Some(media))
        .map(|(i, m)| (i as u32, formats(m)))
        .find(|(_, f)| !f.is_empty())
    else {
        return Vec::new();
    };
    found
        .into_iter()
        .filter(|(_, p)| {
            !encoding.eq_ignore_ascii_case("H264")
                || fmtp_field(p, "packetization-mode").as_deref() == Some("1")
        })
        .map(|(payload_type, p)| {
            let format = OfferedFormat {
                mline,
                payload_type,
                profile: fmtp_field(&p, "profile-level-id"),
            };
            (format, p)
        })
        .collect()
}

/// An fmtp parameter of a format read by `offered_formats`, lower case.
pub fn fmtp_field(params: &FmtpParams, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_ascii_lowercase())
}

/// `sdp` with fmtp parameter `key` of payload type `pt` set to `value`
/// (replaced, or added to the format's fmtp, made if there is none).
pub fn set_fmtp_param(sdp: &str, pt: u32, key: &str, value: &str) -> String {
    edit(sdp, |msg| {
        let prefix = format!("{pt} ");
        for media in msg.medias_mut() {
            if !media.formats().any(|f| f == pt.to_string()) {
                continue;
            }
            let fmtp = attributes_named(media, "fmtp")
                .find(|(_, v)| v.starts_with(&prefix))
                .map(|(i, v)| (i, v[prefix.len()..].to_string()));
            let mut params: Vec<String> = fmtp
                .as_ref()
                .map(|(_, p)| p.split(';').map(|x| x.trim().to_string()).collect())
                .unwrap_or_default();
            params.retain(|p| {
                !p.is_empty()
                    && !p
                        .split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case(key)
            });
            params.push(format!("{key}={value}"));
            let attr = SDPAttribute::new("fmtp", Some(&format!("{pt} {}", params.join(";"))));
            match fmtp {
                Some((i, _)) => {
                    let _ = media.replace_attribute(i, attr);
                }
                None => {
                    media.add_attribute("fmtp", attr.value());
                }
            }
        }
    })
}

/// How many streams an offerer will send once answered: the m-lines it
/// sends on that the answer accepted (port not 0; the offer's port says
/// nothing: with max-bundle all but the first m-line offer port 0).
pub fn streams_to_receive(offer: &str, answer: &str) -> usize {
    let (Ok(offer), Ok(answer)) = (
        gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()),
        gst_sdp::SDPMessage::parse_buffer(answer.as_bytes()),
    ) else {
        return 0;
    };
    offer
        .medias()
        .zip(answer.medias())
        .filter(|(o, a)| a.port() != 0 && sends(o))
        .count()
}

/// Whether the side that wrote `media` sends on it (sendonly or sendrecv).
fn sends(media: &gst_sdp::SDPMediaRef) -> bool {
    media
        .attributes()
        .all(|a| !matches!(a.key(), "recvonly" | "inactive"))
}

/// The media the remote will send, from its answer or offer: for each
/// m-line it sends on (sendonly or sendrecv, port not 0), the media type and
/// the encoding name of its preferred (first) format.
pub fn remote_sending_media(sdp: &str) -> Vec<(String, String)> {
    let Ok(msg) = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()) else {
        return Vec::new();
    };
    msg.medias()
        .filter(|m| m.port() != 0 && sends(m))
        .filter_map(|m| {
            let media = m.media()?.to_string();
            let pt = m.format(0)?;
            let encoding = m.attributes().find_map(|a| {
                let value = a.value().filter(|_| a.key() == "rtpmap")?;
                let (p, rest) = value.split_once(' ')?;
                (p == pt).then(|| rest.split('/').next().unwrap_or("").to_string())
            })?;
            Some((media, encoding))
        })
        .collect()
}

/// Encodings that carry no media of their own: an answer keeping only these
/// accepts nothing we send.
const NOT_MEDIA: [&str; 6] = [
    "rtx",
    "red",
    "ulpfec",
    "flexfec-03",
    "telephone-event",
    "cn",
];

/// One format of an m-line: payload type and `NAME/clock` from its rtpmap
/// (none for a static payload type without one).
fn media_formats(sdp: &gst_sdp::SDPMessageRef) -> Vec<(String, Option<String>)> {
    sdp.medias()
        .filter(|m| m.port() != 0 && matches!(m.media(), Some("audio" | "video")))
        .flat_map(|m| {
            m.formats()
                .map(|pt| {
                    let encoding = m.attributes().find_map(|a| {
                        let value = a.value().filter(|_| a.key() == "rtpmap")?;
                        let (p, rest) = value.split_once(' ')?;
                        let mut parts = rest.trim().split('/');
                        let name = parts.next()?;
                        let clock = parts.next().unwrap_or("");
                        (p == pt).then(|| format!("{name}/{clock}"))
                    });
                    (pt.to_string(), encoding)
                })
                .collect::<Vec<_>>()
        })
        .filter(|(_, encoding)| {
            encoding.as_deref().is_none_or(|e| {
                let name = e.split('/').next().unwrap_or("");
                !NOT_MEDIA.iter().any(|n| n.eq_ignore_ascii_case(name))
            })
        })
        .collect()
}

fn describe(formats: &[(String, Option<String>)]) -> String {
    if formats.is_empty() {
        return "none".into();
    }
    formats
        .iter()
        .map(|(pt, encoding)| match encoding {
            Some(e) => format!("{e} pt {pt}"),
            None => format!("pt {pt}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the answer accepts at least one media codec of the offer: a
/// format with the same encoding name and clock rate, or, without an rtpmap,
/// the same (static) payload type. webrtcbin takes an answer whose codecs
/// are mangled and then sends nothing, with no error; this makes it one,
/// naming both sides. An offer or answer that does not parse, or an offer
/// without audio/video formats, passes: there is nothing to judge.
pub fn answer_accepts_an_offered_codec(offer: &str, answer: &str) -> Result<(), String> {
    let (Ok(offer), Ok(answer)) = (
        gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()),
        gst_sdp::SDPMessage::parse_buffer(answer.as_bytes()),
    ) else {
        return Ok(());
    };
    let offered = media_formats(&offer);
    if offered.is_empty() {
        return Ok(());
    }
    let answered = media_formats(&answer);
    let accepted = answered.iter().any(|(pt, encoding)| match encoding {
        Some(e) => offered
            .iter()
            .any(|(_, o)| o.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(e))),
        None => offered.iter().any(|(o, _)| o == pt),
    });
    if accepted {
        return Ok(());
    }
    Err(format!(
        "the answer accepts none of the offered codecs (offered {}; answered {})",
        describe(&offered),
        describe(&answered)
    ))
}

/// A format of one m-section as GStreamer reads it (rtpmap and fmtp as
/// caps fields): payload type, encoding name (upper case) and H.264
/// profile-level-id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFormat {
    pub payload_type: u32,
    pub encoding: String,
    pub profile: Option<String>,
}

/// The formats of m-section `mline`, in the order given, or None if that
/// m-section is missing or rejected (port 0). A profile missing from the
/// answer is taken from `offer`'s format with the same payload type
/// (webrtcbin's answers leave the fmtp out).
pub fn formats_of(sdp: &str, offer: Option<&str>, mline: u32) -> Option<Vec<MediaFormat>> {
    let msg = SDPMessage::parse_buffer(sdp.as_bytes()).ok()?;
    let m = msg.media(mline)?;
    if m.port() == 0 {
        return None;
    }
    Some(
        m.formats()
            .filter_map(|pt| pt.parse::<i32>().ok())
            .filter_map(|pt| {
                let caps = m.caps_from_media(pt)?;
                let s = caps.structure(0)?;
                let encoding = s.get::<&str>("encoding-name").ok()?.to_ascii_uppercase();
                let profile = s
                    .get::<&str>("profile-level-id")
                    .ok()
                    .map(str::to_ascii_lowercase)
                    .or_else(|| profile_in(offer, &pt.to_string()));
                Some(MediaFormat {
                    payload_type: pt as u32,
                    encoding,
                    profile,
                })
            })
            .collect(),
    )
}

/// Restricts the `media` m-sections of an offer to the encodings in
/// `allowed` (upper case), put first in `allowed`'s order so that an
/// answer listing them in the offer's order states this preference; the
/// retransmission formats of removed ones go too. Err names both lists when
/// an m-section keeps none.
pub fn keep_encodings(sdp: &str, media: &str, allowed: &[&str]) -> Result<String, String> {
    let mut msg = SDPMessage::parse_buffer(sdp.as_bytes()).map_err(|e| e.to_string())?;
    for m in msg.medias_mut() {
        if m.media() != Some(media) || m.port() == 0 {
            continue;
        }
        let encoding_of = |m: &SDPMediaRef, pt: &str| {
            attributes_named(m, "rtpmap").find_map(|(_, v)| {
                let (p, rest) = v.split_once(' ')?;
                (p == pt).then(|| rest.split('/').next().unwrap_or("").to_ascii_uppercase())
            })
        };
        let apt_of = |m: &SDPMediaRef, pt: &str| {
            let prefix = format!("{pt} ");
            attributes_named(m, "fmtp").find_map(|(_, v)| {
                v.strip_prefix(&prefix)?.split(';').find_map(|p| {
                    let (k, v) = p.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("apt").then(|| v.to_string())
                })
            })
        };
        let formats: Vec<String> = m.formats().map(String::from).collect();
        let rank = |pt: &str| {
            let e = encoding_of(m, pt).unwrap_or_default();
            allowed.iter().position(|a| a.eq_ignore_ascii_case(&e))
        };
        let is_media = |pt: &str| {
            let e = encoding_of(m, pt).unwrap_or_default();
            !NOT_MEDIA.iter().any(|n| n.eq_ignore_ascii_case(&e))
        };
        let mut kept: Vec<(usize, String)> = formats
            .iter()
            .filter(|pt| is_media(pt))
            .filter_map(|pt| rank(pt).map(|r| (r, pt.clone())))
            .collect();
        if kept.is_empty() {
            let offered: Vec<String> = formats
                .iter()
                .filter(|pt| is_media(pt))
                .filter_map(|pt| encoding_of(m, pt))
                .collect();
            return Err(format!(
                "no {media} codec this server accepts (offered {}; accepted {})",
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                },
                allowed.join(", ")
            ));
        }
        kept.sort_by_key(|(r, _)| *r);
        let kept: Vec<String> = kept.into_iter().map(|(_, pt)| pt).collect();
        // The other formats that stay: those not carrying media of their
        // own, unless they repair a removed one (rtx's apt).
        let others: Vec<String> = formats
            .iter()
            .filter(|pt| !is_media(pt))
            .filter(|pt| apt_of(m, pt).is_none_or(|apt| kept.contains(&apt)))
            .cloned()
            .collect();
        let order: Vec<String> = kept.into_iter().chain(others).collect();
        let removed: Vec<String> = formats
            .iter()
            .filter(|pt| !order.contains(pt))
            .cloned()
            .collect();
        while m.formats_len() > 0 {
            let _ = m.remove_format(0);
        }
        for pt in &order {
            m.add_format(pt);
        }
        let drop: Vec<u32> = m
            .attributes()
            .enumerate()
            .filter(|(_, a)| matches!(a.key(), "rtpmap" | "fmtp" | "rtcp-fb"))
            .filter(|(_, a)| {
                let pt = a.value().unwrap_or("").split(' ').next().unwrap_or("");
                removed.iter().any(|r| r == pt)
            })
            .map(|(i, _)| i as u32)
            .collect();
        for i in drop.into_iter().rev() {
            let _ = m.remove_attribute(i);
        }
    }
    msg.as_text().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE video0 audio1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=fingerprint:sha-256 00:11\r\na=mid:video0\r\na=rtcp-mux\r\na=rtpmap:96 H264/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio1\r\na=rtcp-mux\r\na=rtpmap:111 OPUS/48000/2\r\n";

    #[test]
    fn streams_to_receive_counts_what_the_offerer_sends_and_the_answer_accepts() {
        gst::init().unwrap();
        let answer = OFFER.replace("a=fingerprint", "a=recvonly\r\na=fingerprint");
        assert_eq!(streams_to_receive(OFFER, &answer), 2);
        let rejected = answer.replace("m=audio 9", "m=audio 0");
        assert_eq!(streams_to_receive(OFFER, &rejected), 1);
        let bundle_only = OFFER.replace("m=audio 9", "m=audio 0");
        assert_eq!(streams_to_receive(&bundle_only, &answer), 2);
        let recvonly = OFFER.replace("a=mid:audio1", "a=mid:audio1\r\na=recvonly");
        assert_eq!(streams_to_receive(&recvonly, &answer), 1);
        assert_eq!(streams_to_receive("not sdp", &answer), 0);
    }

    #[test]
    fn h264_without_fmtp_gets_packetization_mode_and_profile() {
        gst::init().unwrap();
        let out = complete_h264_fmtp(OFFER, None);
        assert!(out.contains(
            "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f"
        ));
    }

    #[test]
    fn h264_fmtp_keeps_a_known_profile() {
        gst::init().unwrap();
        let sdp = OFFER.replace(
            "a=rtpmap:96 H264/90000\r\n",
            "a=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=640028\r\n",
        );
        let out = complete_h264_fmtp(&sdp, None);
        assert!(out.contains("a=fmtp:96 profile-level-id=640028;packetization-mode=1"));
        assert_eq!(out.matches("a=fmtp:96").count(), 1);
    }

    #[test]
    fn h264_answer_takes_the_offers_profile() {
        gst::init().unwrap();
        let offer = OFFER.replace(
            "a=rtpmap:96 H264/90000\r\n",
            "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=640c1f\r\n",
        );
        let out = complete_h264_fmtp(OFFER, Some(&offer));
        assert!(out.contains("profile-level-id=640c1f"), "{out}");
    }

    #[test]
    fn offered_formats_keep_packetization_mode_1_and_the_profile_as_written() {
        gst::init().unwrap();
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102 106 108\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
a=rtpmap:106 H264/90000\r\na=fmtp:106 packetization-mode=1;profile-level-id=640c1f\r\n\
a=rtpmap:108 H264/90000\r\na=fmtp:108 packetization-mode=1;profile-level-id=42E01F\r\n";
        let h264: Vec<(u32, u32, Option<String>)> = offered_formats(offer, "video", "H264")
            .into_iter()
            .map(|(f, _)| (f.mline, f.payload_type, f.profile))
            .collect();
        assert_eq!(
            h264,
            vec![
                (1, 106, Some("640c1f".into())),
                (1, 108, Some("42e01f".into()))
            ]
        );
        assert_eq!(offered_formats(offer, "video", "vp8")[0].0.payload_type, 96);
        let (opus, _) = &offered_formats(offer, "audio", "OPUS")[0];
        assert_eq!(
            (opus.mline, opus.payload_type, opus.profile.as_deref()),
            (0, 111, None)
        );
        assert!(offered_formats(offer, "video", "VP9").is_empty());
    }

    #[test]
    fn fingerprint_is_replaced_everywhere() {
        gst::init().unwrap();
        let out = set_fingerprint(OFFER, "sha-256 AA:BB");
        assert!(out.contains("a=fingerprint:sha-256 AA:BB"));
        assert!(!out.contains("00:11"));
    }

    #[test]
    fn every_media_section_gets_rtcp_mux_only() {
        gst::init().unwrap();
        let out = add_rtcp_mux_only(OFFER);
        assert_eq!(out.matches("a=rtcp-mux-only").count(), 2);
        assert!(out.contains("a=rtcp-mux\r\na=rtcp-mux-only\r\na=rtpmap:96"));
        assert_eq!(add_rtcp_mux_only(&out), out);
    }

    #[test]
    fn candidates_go_into_the_first_media_section() {
        gst::init().unwrap();
        let out = add_candidates(
            OFFER,
            &["candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into()],
            true,
        );
        let first = out.find("a=candidate:1").unwrap();
        let second_m = out.find("m=audio").unwrap();
        assert!(first < second_m);
        assert!(out.contains("a=end-of-candidates\r\nm=audio"));
    }

    #[test]
    fn remote_sending_media_skips_receive_only_and_disabled_m_lines() {
        gst::init().unwrap();
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 OPUS/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 97 96\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=recvonly\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(
            remote_sending_media(sdp),
            vec![
                ("audio".to_string(), "OPUS".to_string()),
                ("video".to_string(), "H264".to_string())
            ]
        );
    }

    #[test]
    fn an_answer_with_an_offered_codec_is_accepted() {
        gst::init().unwrap();
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 OPUS/48000/2\r\n";
        // Same codec under another payload type, any case.
        let answer = "v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 100\r\na=rtpmap:100 vp8/90000\r\n\
            m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 OPUS/48000/2\r\n";
        assert_eq!(answer_accepts_an_offered_codec(offer, answer), Ok(()));
        // Only audio accepted, by a static payload type without rtpmap.
        let answer = "v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n";
        assert_eq!(answer_accepts_an_offered_codec(offer, answer), Ok(()));
        // Nothing to judge.
        assert_eq!(answer_accepts_an_offered_codec("garbage", answer), Ok(()));
    }

    #[test]
    fn an_answer_with_none_of_the_offered_codecs_is_refused() {
        gst::init().unwrap();
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n\
            a=fmtp:97 apt=96\r\n";
        for (answer, answered) in [
            // Payload types rewritten to a codec we never offered.
            (
                "m=video 9 UDP/TLS/RTP/SAVPF 120\r\na=rtpmap:120 FOO/90000\r\n",
                "FOO/90000 pt 120",
            ),
            // Same payload type, another codec.
            (
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n",
                "H264/90000 pt 96",
            ),
            // Only the retransmission format left.
            (
                "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 rtx/90000\r\n",
                "none",
            ),
            // Every m-line rejected.
            (
                "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
                "none",
            ),
        ] {
            let answer = format!("v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n{answer}");
            assert_eq!(
                answer_accepts_an_offered_codec(offer, &answer),
                Err(format!(
                    "the answer accepts none of the offered codecs (offered VP8/90000 pt 96; \
                     answered {answered})"
                ))
            );
        }
    }

    const VIDEO_OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102\r\na=mid:video0\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";

    #[test]
    fn keep_encodings_drops_other_codecs_and_their_rtx() {
        gst::init().unwrap();
        let out = keep_encodings(VIDEO_OFFER, "video", &["VP9"]).unwrap();
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\n"),
            "{out}"
        );
        assert!(!out.contains("VP8") && !out.contains("H264") && !out.contains("apt=96"));
        assert!(out.contains("a=fmtp:99 apt=98"));
        // Preference order: the server's, not the offer's.
        let out = keep_encodings(VIDEO_OFFER, "video", &["H264", "VP8"]).unwrap();
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 102 96 97\r\n"),
            "{out}"
        );
        let err = keep_encodings(VIDEO_OFFER, "video", &["AV1"]).unwrap_err();
        assert!(err.contains("offered VP8, VP9, H264"), "{err}");
        // Other media untouched.
        assert_eq!(
            keep_encodings(VIDEO_OFFER, "audio", &["OPUS"]).unwrap(),
            VIDEO_OFFER
        );
    }

    #[test]
    fn formats_of_an_answer_take_the_offers_profile() {
        gst::init().unwrap();
        let answer = VIDEO_OFFER.replace(
            "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n",
            "",
        );
        let f = formats_of(&answer, Some(VIDEO_OFFER), 0).unwrap();
        assert_eq!(f[0].encoding, "VP8");
        let h264 = f.iter().find(|f| f.encoding == "H264").unwrap();
        assert_eq!(
            (h264.payload_type, h264.profile.as_deref()),
            (102, Some("42e01f"))
        );
        assert_eq!(formats_of(&answer, None, 1), None);
    }
}
