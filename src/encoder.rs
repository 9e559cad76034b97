//! Encoding raw input for whipsink: which codecs can be encoded here, which
//! encoder element makes each one (a documented ranking, or the one the user
//! names), and how it is set up for real-time use: no frame lag, no
//! B-frames, a bounded key-frame interval, key frames on request.
//!
//! The ranking, best first (the first one installed is used):
//!
//! | codec | encoders |
//! |---|---|
//! | VP8 | vp8enc |
//! | VP9 | vp9enc |
//! | H.264 | x264enc, openh264enc |
//! | Opus | opusenc |
//!
//! Any other encoder (a hardware one, say) can be named with whipsink's
//! `video-encoder`; it gets the settings below whose property names it has.
//! AV1 is not offered: GStreamer 1.22 has no AV1 RTP payloader
//! (`rtpav1pay` is in gst-plugins-rs).

use gst::prelude::*;

use crate::codec::{self, Codec, MissingElement};

/// Encoders of each codec, best first.
fn ranking(codec: &Codec) -> &'static [&'static str] {
    match codec.encoding_name {
        "VP8" => &["vp8enc"],
        "VP9" => &["vp9enc"],
        "H264" => &["x264enc", "openh264enc"],
        "OPUS" => &["opusenc"],
        _ => &[],
    }
}

/// Bitrate an encoder starts with until something (congestion control,
/// the user in `encoder-setup`) sets another, in bit/s.
pub fn default_bitrate(codec: &Codec) -> u32 {
    match codec.media {
        "video" => 2_000_000,
        _ => 64_000,
    }
}

/// At most this long between key frames, whatever happens: a viewer whose
/// key-frame request was lost, or a server that records or transcodes
/// (HLS segments), gets one at least this often.
pub const MAX_KEY_FRAME_INTERVAL_S: u32 = 2;

/// libvpx's cap on a key frame, in % of an average frame's bits.
const MAX_INTRA_PERCENT: i32 = 300;

/// Frame rate assumed when the input does not say (variable rate, 0/1).
const DEFAULT_FPS: u32 = 30;

/// Whether `factory` makes `codec`'s elementary stream.
fn produces(factory: &gst::ElementFactory, codec: &Codec) -> bool {
    let wanted = gst::Caps::new_empty_simple(codec.encoded);
    factory
        .static_pad_templates()
        .iter()
        .any(|t| t.direction() == gst::PadDirection::Src && t.caps().can_intersect(&wanted))
}

/// The encoder factory for `codec`: `preferred` if it makes this codec, else
/// the first installed one of the ranking.
pub fn factory_for(codec: &Codec, preferred: Option<&str>) -> Option<gst::ElementFactory> {
    if let Some(f) = preferred
        .and_then(gst::ElementFactory::find)
        .filter(|f| produces(f, codec))
    {
        return Some(f);
    }
    ranking(codec)
        .iter()
        .find_map(|name| gst::ElementFactory::find(name))
}

/// Whether `codec` can be encoded and payloaded with the installed elements.
pub fn can_encode(codec: &Codec, preferred: Option<&str>) -> bool {
    factory_for(codec, preferred).is_some() && gst::ElementFactory::find(codec.payloader).is_some()
}

/// Encodable codecs of `media` ("video", "audio") as encoded caps, in the
/// ranking order of `codec::ALL`: whipsink's default `video-caps` and
/// `audio-caps`.
pub fn encodable_caps(media: &str) -> gst::Caps {
    codec::caps_of(
        codec::ALL
            .into_iter()
            .filter(|c| c.media == media && can_encode(c, None)),
    )
}

/// What the server's answer chose for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub codec: &'static Codec,
    pub payload_type: u32,
    /// H.264 profile-level-id the answer (or our offer) gave.
    pub profile: Option<String>,
}

/// The H.264 `profile` caps value of a `profile-level-id` (RFC 6184 §8.1:
/// profile_idc, then the constraint flags).
pub fn h264_profile_name(profile_level_id: &str) -> Option<&'static str> {
    let idc = u8::from_str_radix(profile_level_id.get(0..2)?, 16).ok()?;
    let iop = u8::from_str_radix(profile_level_id.get(2..4)?, 16).ok()?;
    Some(match idc {
        // constraint_set1: decodable by a Main decoder too.
        0x42 if iop & 0x40 != 0 => "constrained-baseline",
        0x42 => "baseline",
        0x4d => "main",
        0x58 => "extended",
        // constraint_set4 and 5: no B slices.
        0x64 if iop & 0x0c == 0x0c => "constrained-high",
        0x64 => "high",
        _ => return None,
    })
}

/// The H.264 profiles (caps names) the encoder may make for an answer
/// naming `profile`: those its decoders decode. Constrained Baseline, a
/// subset of them all, comes first: x264enc at `ultrafast` makes it
/// whatever it is allowed, and openh264enc 2.3 fails to start when asked
/// for Main (cmInitParaError), though its caps list it. x264enc has no
/// constrained-high.
pub fn h264_profiles_within(profile: &str) -> &'static [&'static str] {
    match profile {
        "baseline" => &["constrained-baseline", "baseline"],
        "main" => &["constrained-baseline", "main"],
        "extended" => &["constrained-baseline", "baseline", "extended"],
        "constrained-high" => &["constrained-baseline", "constrained-high"],
        "high" => &["constrained-baseline", "main", "high"],
        _ => &["constrained-baseline"],
    }
}

/// libvpx threads for `raw` frames: one unless the picture is large and
/// cores are to spare. A second thread on a 2-core machine made 720p VP8
/// lose frames when other work took a core (examples/bench_keyframe.rs).
fn vpx_threads(raw: &gst::CapsRef) -> i32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pixels = raw
        .structure(0)
        .and_then(|s| Some(s.get::<i32>("width").ok()? * s.get::<i32>("height").ok()?))
        .unwrap_or(0);
    match (pixels, cpus) {
        (p, c) if p >= 1920 * 1080 && c >= 8 => 4,
        (p, c) if p > 640 * 480 && c >= 4 => 2,
        _ => 1,
    }
}

/// Frames in `MAX_KEY_FRAME_INTERVAL_S` at the rate of `raw` caps.
fn key_frame_distance(raw: &gst::CapsRef) -> u32 {
    let fps = raw
        .structure(0)
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map(|f| (f.numer() as u32).div_ceil(f.denom() as u32))
        .unwrap_or(DEFAULT_FPS);
    fps.max(1) * MAX_KEY_FRAME_INTERVAL_S
}

fn set_if_present(el: &gst::Element, name: &str, value: impl Into<glib::Value>) {
    let value = value.into();
    if let Some(pspec) = el.find_property(name) {
        if pspec.value_type() == value.type_() {
            el.set_property(name, value);
        } else if let Ok(v) = value.transform_with_type(pspec.value_type()) {
            el.set_property(name, v);
        }
    }
}

fn set_str_if_present(el: &gst::Element, name: &str, value: &str) {
    if el.find_property(name).is_some() {
        el.set_property_from_str(name, value);
    }
}

/// Sets `encoder`'s target bitrate, in bit/s, in the units of its own
/// property; returns false for an encoder whose bitrate property is unknown.
/// Safe while it runs: these properties are mutable in PLAYING.
pub fn set_target_bitrate(encoder: &gst::Element, bps: u32) -> bool {
    let factory = encoder.factory().map(|f| f.name().to_string());
    let (property, value): (&str, glib::Value) = match factory.as_deref() {
        Some("vp8enc" | "vp9enc") => ("target-bitrate", (bps.min(i32::MAX as u32) as i32).into()),
        Some("x264enc") => ("bitrate", bps.div_ceil(1000).max(1).into()),
        Some("openh264enc") => ("bitrate", bps.into()),
        Some("opusenc") => ("bitrate", (bps.clamp(4000, 650_000) as i32).into()),
        Some("av1enc" | "svtav1enc") => ("target-bitrate", bps.div_ceil(1000).into()),
        _ => return false,
    };
    if encoder.find_property(property).is_none() {
        return false;
    }
    encoder.set_property(property, value);
    true
}

/// An encoder for `codec` set up for real time; `raw` is the input's caps.
pub fn make_encoder(
    codec: &Codec,
    preferred: Option<&str>,
    raw: &gst::CapsRef,
) -> Result<gst::Element, MissingElement> {
    let missing = || MissingElement(ranking(codec).first().copied().unwrap_or("encoder"));
    let factory = factory_for(codec, preferred).ok_or_else(missing)?;
    let enc = factory.create().build().map_err(|_| missing())?;
    let key_dist = key_frame_distance(raw);
    let threads = vpx_threads(raw);
    match factory.name().as_str() {
        "vp8enc" | "vp9enc" => {
            // Realtime deadline, no look-ahead (each frame out as it comes
            // in), constant bitrate, partitions decodable after a loss.
            set_if_present(&enc, "deadline", 1i64);
            set_if_present(&enc, "lag-in-frames", 0i32);
            set_str_if_present(&enc, "end-usage", "cbr");
            set_str_if_present(&enc, "error-resilient", "default");
            set_if_present(&enc, "keyframe-max-dist", key_dist as i32);
            set_if_present(&enc, "threads", threads);
            // Speed over quality (libvpx: higher is faster; 8 is VP9's
            // fastest and mid-range for VP8): 720p stays real time on 2
            // cores shared with the rest of the pipeline.
            set_if_present(&enc, "cpu-used", 8i32);
            // A key frame at most 3 frames' budget: an uncapped one (16 kB
            // at 720p) bursts past what a congested link's queue holds, is
            // lost whole, and the picture freezes until the next
            // (examples/bench_shaped.rs --whipsink-defaults).
            set_if_present(&enc, "max-intra-bitrate", MAX_INTRA_PERCENT);
            if factory.name() == "vp9enc" {
                set_if_present(&enc, "row-mt", true);
                set_if_present(&enc, "tile-columns", 2i32);
            }
        }
        "x264enc" => {
            // zerolatency: no B-frames, no look-ahead. Sliced threads off:
            // a receiver's openh264dec drops every frame after a lost IDR
            // when slices are threaded. Then one thread: each frame thread
            // holds a frame back (3 threads cost 3 frames, ~100 ms, before
            // a requested key frame left), and ultrafast encodes 720p30 on
            // one core with room to spare.
            enc.set_property_from_str("tune", "zerolatency");
            enc.set_property_from_str("speed-preset", "ultrafast");
            set_if_present(&enc, "bframes", 0u32);
            set_if_present(&enc, "b-adapt", false);
            set_if_present(&enc, "sliced-threads", false);
            set_if_present(&enc, "threads", 1u32);
            set_if_present(&enc, "key-int-max", key_dist);
            set_if_present(&enc, "aud", false);
        }
        "openh264enc" => {
            set_str_if_present(&enc, "complexity", "low");
            set_str_if_present(&enc, "rate-control", "bitrate");
            set_str_if_present(&enc, "usage-type", "camera");
            set_if_present(&enc, "gop-size", key_dist);
        }
        "opusenc" => {
            // 20 ms frames (WebRTC's usual packet time) and in-band FEC (we
            // offer useinbandfec=1). Not audio-type=restricted-lowdelay: it
            // saves about 20 ms of look-ahead but allows only the CELT mode,
            // and in-band FEC exists only in the SILK and hybrid modes.
            set_if_present(&enc, "frame-size", 20i32);
            set_if_present(&enc, "inband-fec", true);
            set_if_present(&enc, "packet-loss-percentage", 5i32);
        }
        // An encoder the user named: the settings most encoders share.
        _ => {
            set_if_present(&enc, "bframes", 0u32);
            set_if_present(&enc, "b-frames", 0u32);
            set_if_present(&enc, "key-int-max", key_dist);
            set_if_present(&enc, "gop-size", key_dist);
        }
    }
    set_target_bitrate(&enc, default_bitrate(codec));
    Ok(enc)
}

/// Raw input to RTP in `format`: convert ! encoder ! [profile caps !]
/// [parser !] payloader. Returns the chain and the encoder in it.
pub fn encode_chain(
    format: &Format,
    preferred: Option<&str>,
    raw: &gst::CapsRef,
) -> Result<EncodeChain, MissingElement> {
    let codec = format.codec;
    let make = |f: &'static str| {
        gst::ElementFactory::make(f)
            .build()
            .map_err(|_| MissingElement(f))
    };
    let mut chain = Vec::new();
    let mut scaler = None;
    if codec.media == "video" {
        let [scale, filter] = crate::resolution::scaler().map_err(MissingElement)?;
        scaler = Some(filter.clone());
        chain.extend([scale, filter]);
        chain.push(make("videoconvert")?);
    } else {
        chain.push(make("audioconvert")?);
        chain.push(make("audioresample")?);
    }
    let encoder = make_encoder(codec, preferred, raw)?;
    chain.push(encoder.clone());
    if codec.encoding_name == "H264" {
        // The profile the server answered; the level is left to the
        // encoder (level-asymmetry-allowed=1 is offered).
        let profile = format
            .profile
            .as_deref()
            .and_then(h264_profile_name)
            .unwrap_or("constrained-baseline");
        let filter = make("capsfilter")?;
        filter.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field(
                    "profile",
                    gst::List::new(h264_profiles_within(profile).iter().copied()),
                )
                .build(),
        );
        chain.push(filter);
    }
    let mut pay = codec.payload_chain()?;
    if let Some(p) = pay.last() {
        p.set_property("pt", format.payload_type);
    }
    chain.append(&mut pay);
    Ok(EncodeChain {
        elements: chain,
        encoder,
        scaler,
    })
}

/// What `encode_chain` makes.
pub struct EncodeChain {
    /// In stream order: [videoscale ! capsfilter !] convert ! encoder !
    /// [caps !] [parser !] payloader.
    pub elements: Vec<gst::Element>,
    pub encoder: gst::Element,
    /// Video: the capsfilter that sets the size sent (`resolution`).
    pub scaler: Option<gst::Element>,
}

use gst::glib;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_follow_rfc_6184() {
        assert_eq!(h264_profile_name("42e01f"), Some("constrained-baseline"));
        assert_eq!(h264_profile_name("42001f"), Some("baseline"));
        assert_eq!(h264_profile_name("4d001f"), Some("main"));
        assert_eq!(h264_profile_name("640c1f"), Some("constrained-high"));
        assert_eq!(h264_profile_name("640032"), Some("high"));
        assert_eq!(h264_profile_name("zz"), None);
    }

    #[test]
    fn bitrate_is_set_in_each_encoders_units() {
        gst::init().unwrap();
        for (factory, property, expected) in [
            ("vp8enc", "target-bitrate", 1_500_000u64),
            ("x264enc", "bitrate", 1500),
            ("openh264enc", "bitrate", 1_500_000),
        ] {
            let Ok(enc) = gst::ElementFactory::make(factory).build() else {
                continue;
            };
            assert!(set_target_bitrate(&enc, 1_500_000));
            let v = enc.property_value(property);
            let got = v
                .get::<i32>()
                .map(|v| v as u64)
                .or_else(|_| v.get::<u32>().map(|v| v as u64))
                .unwrap();
            assert_eq!(got, expected, "{factory}");
        }
    }

    /// Encodes a few frames with the chain for `profile` and returns the
    /// H.264 caps the parser read from the stream.
    fn h264_caps_for(encoder: &str, profile: &str) -> Option<String> {
        gst::init().unwrap();
        gst::ElementFactory::find(encoder)?;
        let format = Format {
            codec: &codec::H264,
            payload_type: 102,
            profile: Some(profile.into()),
        };
        let raw = gst::Caps::builder("video/x-raw")
            .field("width", 320)
            .field("height", 240)
            .field("framerate", gst::Fraction::new(30, 1))
            .build();
        let EncodeChain {
            elements: chain,
            encoder: enc,
            ..
        } = encode_chain(&format, Some(encoder), &raw).unwrap();
        assert_eq!(enc.factory().unwrap().name(), encoder);
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc")
            .property("num-buffers", 5)
            .build()
            .unwrap();
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", &raw)
            .build()
            .unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add_many([&src, &filter]).unwrap();
        pipeline.add_many(&chain).unwrap();
        pipeline.add(&sink).unwrap();
        gst::Element::link_many([&src, &filter, &chain[0]]).unwrap();
        gst::Element::link_many(&chain).unwrap();
        chain.last().unwrap().link(&sink).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let parser = chain
            .iter()
            .find(|e| e.factory().is_some_and(|f| f.name() == "h264parse"))?;
        let caps = parser
            .static_pad("src")?
            .current_caps()
            .map(|c| c.to_string());
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)),
            "the chain did not run"
        );
        caps
    }

    #[test]
    fn h264_is_encoded_within_the_profile_the_answer_names() {
        gst::init().unwrap();
        for (id, name) in [
            ("42e01f", "constrained-baseline"),
            ("42001f", "baseline"),
            ("4d001f", "main"),
            ("640c1f", "constrained-high"),
            ("640028", "high"),
        ] {
            for encoder in ["x264enc", "openh264enc"] {
                if gst::ElementFactory::find(encoder).is_none() {
                    continue;
                }
                let caps = h264_caps_for(encoder, id)
                    .unwrap_or_else(|| panic!("{encoder} {id}: no H.264 came out"));
                let made = caps
                    .split("profile=(string)")
                    .nth(1)
                    .and_then(|r| r.split(',').next())
                    .unwrap_or("");
                assert!(
                    h264_profiles_within(name).contains(&made),
                    "{encoder} {id}: {caps}"
                );
            }
        }
    }
}
