//! What a sending server (whepserversink) answers for a codec's parameters:
//! only what it sends. The offer lists the formats a viewer can decode; the
//! server picks one that fits the stream it has, and answers with the
//! stream's own parameters, or refuses (406) when none fits. Answering the
//! viewer's profile and then sending another one is what a software decoder
//! may forgive and a hardware decoder that trusts the answer may not.
//!
//! - H.264 (RFC 6184 §8.1): `profile-level-id`. A format fits when its
//!   profile decodes the stream's (Constrained Baseline by every profile
//!   known here; Constrained High by High; a High or Main stream only by
//!   High) and its level is at least the stream's. The
//!   answer keeps the format's profile bytes (a viewer matches answers to
//!   offers by profile) with the stream's level.
//! - VP9 (RFC 9628 §6): `profile-id` (absent: 0) must be the stream's.

use crate::codec::Codec;
use crate::peer::sdp::{fmtp_field, offered_formats, FmtpParams, OfferedFormat};

use super::Refusal;

/// The format to send a stream with, and the parameters to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub format: OfferedFormat,
    pub params: Vec<(&'static str, String)>,
}

/// H.264 profiles, as far as deciding who decodes what goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    Extended,
    ConstrainedHigh,
    ProgressiveHigh,
    High,
    /// Any other profile_idc: only the same one decodes it.
    Other(u8),
}

impl Profile {
    /// From profile_idc and the constraint flags byte (RFC 6184 §8.1).
    fn from_idc(idc: u8, iop: u8) -> Profile {
        match idc {
            66 if iop & 0x40 != 0 => Profile::ConstrainedBaseline,
            66 => Profile::Baseline,
            77 if iop & 0x80 != 0 => Profile::ConstrainedBaseline,
            77 => Profile::Main,
            88 if iop & 0xc0 == 0xc0 => Profile::ConstrainedBaseline,
            88 => Profile::Extended,
            100 if iop & 0x0c == 0x0c => Profile::ConstrainedHigh,
            100 if iop & 0x08 != 0 => Profile::ProgressiveHigh,
            100 => Profile::High,
            other => Profile::Other(other),
        }
    }

    /// From the `profile` field of h264parse's caps.
    fn from_caps(name: &str) -> Profile {
        match name {
            "constrained-baseline" => Profile::ConstrainedBaseline,
            "baseline" => Profile::Baseline,
            "main" => Profile::Main,
            "extended" => Profile::Extended,
            "constrained-high" => Profile::ConstrainedHigh,
            "progressive-high" => Profile::ProgressiveHigh,
            "high" => Profile::High,
            "high-10" | "high-10-intra" => Profile::Other(110),
            "high-4:2:2" | "high-4:2:2-intra" => Profile::Other(122),
            "high-4:4:4" | "high-4:4:4-intra" => Profile::Other(244),
            "cavlc-4:4:4-intra" => Profile::Other(44),
            "multiview-high" => Profile::Other(118),
            "stereo-high" => Profile::Other(128),
            _ => Profile::Other(0),
        }
    }

    /// Whether a decoder of this profile decodes a `stream` of that one.
    fn decodes(self, stream: Profile) -> bool {
        use Profile::*;
        self == stream
            || match stream {
                ConstrainedBaseline => !matches!(self, Other(_)),
                ConstrainedHigh => matches!(self, ProgressiveHigh | High),
                ProgressiveHigh | Main => self == High,
                _ => false,
            }
    }

    fn name(self) -> String {
        match self {
            Profile::ConstrainedBaseline => "Constrained Baseline".into(),
            Profile::Baseline => "Baseline".into(),
            Profile::Main => "Main".into(),
            Profile::Extended => "Extended".into(),
            Profile::ConstrainedHigh => "Constrained High".into(),
            Profile::ProgressiveHigh => "Progressive High".into(),
            Profile::High => "High".into(),
            Profile::Other(idc) => format!("profile_idc {idc}"),
        }
    }
}

/// `profile-level-id` as (profile_idc, constraint flags, level_idc).
fn parse_profile_level_id(value: &str) -> Option<(u8, u8, u8)> {
    if value.len() != 6 {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(value.get(i..i + 2)?, 16).ok();
    Some((byte(0)?, byte(2)?, byte(4)?))
}

/// level_idc of h264parse's `level` ("3.1" → 31; "1b" → 9, between 1 and 1.1).
fn level_idc(level: &str) -> Option<u8> {
    if level == "1b" {
        return Some(9);
    }
    let (major, minor) = level.split_once('.').unwrap_or((level, "0"));
    Some(major.parse::<u8>().ok()? * 10 + minor.parse::<u8>().ok()?)
}

fn level_name(idc: u8) -> String {
    match idc {
        9 => "1b".into(),
        _ => format!("{}.{}", idc / 10, idc % 10),
    }
}

/// The format of `codec` to send the stream (`stream`: its caps' structure,
/// None while unknown) to the viewer whose offer is `offer`. Ok(None): the
/// offer has no format of that codec. Err: it has some, none of which
/// decodes the stream (406, naming both sides).
pub fn choose(
    offer: &str,
    codec: &Codec,
    stream: Option<&gst::StructureRef>,
) -> Result<Option<Choice>, Refusal> {
    let offered = offered_formats(offer, codec.media, codec.encoding_name);
    if offered.is_empty() {
        return Ok(None);
    }
    match codec.encoding_name {
        "H264" => choose_h264(offered, stream).map(Some),
        "VP9" => choose_vp9(offered, stream).map(Some),
        _ => Ok(offered.into_iter().next().map(|(format, _)| Choice {
            format,
            params: Vec::new(),
        })),
    }
}

fn not_acceptable(detail: String) -> Refusal {
    Refusal::new(406, "Not Acceptable", detail)
}

fn choose_h264(
    offered: Vec<(OfferedFormat, FmtpParams)>,
    stream: Option<&gst::StructureRef>,
) -> Result<Choice, Refusal> {
    let profile = stream.and_then(|s| s.get::<&str>("profile").ok());
    let level = stream
        .and_then(|s| s.get::<&str>("level").ok())
        .and_then(level_idc);
    let Some(profile) = profile.map(Profile::from_caps) else {
        // The stream's profile is not known yet: the common ground.
        let pick = offered
            .iter()
            .position(|(f, _)| {
                f.profile
                    .as_deref()
                    .and_then(parse_profile_level_id)
                    .is_some_and(|(i, c, _)| {
                        Profile::from_idc(i, c) == Profile::ConstrainedBaseline
                    })
            })
            .unwrap_or(0);
        let (format, _) = offered.into_iter().nth(pick).expect("not empty");
        return Ok(Choice {
            format,
            params: Vec::new(),
        });
    };
    // Each offered format with its profile and level (no profile-level-id:
    // 420010, Baseline 1, RFC 6184 §8.1).
    let read = |f: &OfferedFormat| {
        let (idc, iop, lvl) = f
            .profile
            .as_deref()
            .and_then(parse_profile_level_id)
            .unwrap_or((66, 0, 10));
        (idc, iop, lvl, Profile::from_idc(idc, iop))
    };
    let fits = |f: &OfferedFormat| {
        let (_, _, lvl, p) = read(f);
        p.decodes(profile) && level.is_none_or(|l| l <= lvl)
    };
    // The stream's own profile first, then any that decodes it.
    let exact = offered
        .iter()
        .find(|(f, _)| fits(f) && read(f).3 == profile);
    let pick = exact.or_else(|| offered.iter().find(|(f, _)| fits(f)));
    let Some((format, _)) = pick else {
        let listed: Vec<String> = offered
            .iter()
            .map(|(f, _)| {
                let (_, _, lvl, p) = read(f);
                format!(
                    "{} level {} ({}, pt {})",
                    p.name(),
                    level_name(lvl),
                    f.profile.as_deref().unwrap_or("no profile-level-id"),
                    f.payload_type
                )
            })
            .collect();
        return Err(not_acceptable(format!(
            "the stream is H.264 {}{}; the offer's H.264 formats cannot decode it: {}",
            profile.name(),
            level
                .map(|l| format!(" level {}", level_name(l)))
                .unwrap_or_default(),
            listed.join(", ")
        )));
    };
    let (idc, iop, lvl, _) = read(format);
    let answered = format!("{idc:02x}{iop:02x}{:02x}", level.unwrap_or(lvl));
    Ok(Choice {
        format: format.clone(),
        params: vec![("profile-level-id", answered)],
    })
}

fn choose_vp9(
    offered: Vec<(OfferedFormat, FmtpParams)>,
    stream: Option<&gst::StructureRef>,
) -> Result<Choice, Refusal> {
    let profile_of = |s: &FmtpParams| fmtp_field(s, "profile-id").unwrap_or_else(|| "0".into());
    let Some(profile) = stream.and_then(|s| s.get::<&str>("profile").ok()) else {
        let (format, _) = offered.into_iter().next().expect("not empty");
        return Ok(Choice {
            format,
            params: Vec::new(),
        });
    };
    match offered.iter().find(|(_, s)| profile_of(s) == profile) {
        Some((format, _)) => Ok(Choice {
            format: format.clone(),
            params: vec![("profile-id", profile.to_string())],
        }),
        None => Err(not_acceptable(format!(
            "the stream is VP9 profile {profile}; the offer's VP9 formats are profile {}",
            offered
                .iter()
                .map(|(f, s)| format!("{} (pt {})", profile_of(s), f.payload_type))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102 108 127\r\na=mid:0\r\na=recvonly\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:127 H264/90000\r\na=fmtp:127 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=640032\r\n";

    fn stream(profile: &str, level: &str) -> gst::Structure {
        gst::Structure::builder("video/x-h264")
            .field("profile", profile)
            .field("level", level)
            .build()
    }

    #[test]
    fn high_is_refused_by_a_baseline_only_offer_naming_the_profiles() {
        gst::init().unwrap();
        // pt 127 is High but packetization-mode 0: not what we send.
        let err = choose(OFFER, &crate::codec::H264, Some(&stream("high", "3"))).unwrap_err();
        assert_eq!(err.status, 406);
        assert!(
            err.detail.contains("H.264 High level 3.0"),
            "{}",
            err.detail
        );
        assert!(
            err.detail.contains("Baseline level 3.1 (42001f, pt 102)"),
            "{}",
            err.detail
        );
        assert!(err
            .detail
            .contains("Constrained Baseline level 3.1 (42e01f, pt 108)"));
    }

    #[test]
    fn the_streams_own_profile_and_level_are_answered() {
        gst::init().unwrap();
        let offer = OFFER.replace(
            "packetization-mode=0;profile-level-id=640032",
            "packetization-mode=1;profile-level-id=640032",
        );
        let c = choose(&offer, &crate::codec::H264, Some(&stream("high", "3")))
            .unwrap()
            .unwrap();
        assert_eq!(c.format.payload_type, 127);
        assert_eq!(c.params, vec![("profile-level-id", "64001e".to_string())]);
        let c = choose(
            &offer,
            &crate::codec::H264,
            Some(&stream("constrained-baseline", "2.1")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.format.payload_type, 108);
        assert_eq!(c.params, vec![("profile-level-id", "42e015".to_string())]);
        // Too high a level for every format.
        assert!(choose(&offer, &crate::codec::H264, Some(&stream("high", "5.1"))).is_err());
        // No H.264 at all: not this codec's business.
        assert_eq!(choose(&offer, &crate::codec::VP8, None).unwrap(), None);
    }

    #[test]
    fn profiles_decode_what_they_contain() {
        use Profile::*;
        assert!(High.decodes(ConstrainedBaseline) && High.decodes(Main));
        assert!(Baseline.decodes(ConstrainedBaseline));
        assert!(!Baseline.decodes(High) && !Main.decodes(High));
        assert!(!ConstrainedBaseline.decodes(Baseline));
        assert_eq!(Profile::from_idc(0x42, 0xe0), ConstrainedBaseline);
        assert_eq!(Profile::from_idc(0x4d, 0x40), Main);
        assert_eq!(Profile::from_idc(0x64, 0x00), High);
        assert_eq!(level_idc("3.1"), Some(31));
        assert_eq!(level_idc("4"), Some(40));
    }
}
