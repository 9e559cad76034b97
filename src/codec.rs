//! The codecs the elements payload and depayload themselves, in one table
//! shared by all four elements.

use gst::prelude::*;

#[derive(Debug, PartialEq, Eq)]
pub struct Codec {
    /// RTP `encoding-name`, upper case as GStreamer's payloaders write it.
    pub encoding_name: &'static str,
    pub media: &'static str,
    /// Structure name of the encoded elementary stream.
    pub encoded: &'static str,
    pub payloader: &'static str,
    pub depayloader: &'static str,
    /// Parser placed before the payloader and after the depayloader.
    pub parser: Option<&'static str>,
    pub decoders: &'static [&'static str],
    pub payload_type: u32,
    pub clock_rate: i32,
}

pub const VP8: Codec = Codec {
    encoding_name: "VP8",
    media: "video",
    encoded: "video/x-vp8",
    payloader: "rtpvp8pay",
    depayloader: "rtpvp8depay",
    parser: None,
    decoders: &["vp8dec"],
    payload_type: 96,
    clock_rate: 90000,
};

pub const VP9: Codec = Codec {
    encoding_name: "VP9",
    media: "video",
    encoded: "video/x-vp9",
    payloader: "rtpvp9pay",
    depayloader: "rtpvp9depay",
    parser: None,
    decoders: &["vp9dec"],
    payload_type: 98,
    clock_rate: 90000,
};

pub const H264: Codec = Codec {
    encoding_name: "H264",
    media: "video",
    encoded: "video/x-h264",
    payloader: "rtph264pay",
    depayloader: "rtph264depay",
    parser: Some("h264parse"),
    decoders: &["avdec_h264", "openh264dec"],
    payload_type: 102,
    clock_rate: 90000,
};

pub const OPUS: Codec = Codec {
    encoding_name: "OPUS",
    media: "audio",
    encoded: "audio/x-opus",
    payloader: "rtpopuspay",
    depayloader: "rtpopusdepay",
    parser: None,
    decoders: &["opusdec"],
    payload_type: 111,
    clock_rate: 48000,
};

pub const ALL: [&Codec; 4] = [&VP8, &VP9, &H264, &OPUS];

/// The codec of an encoded stream's caps.
pub fn from_encoded_caps(caps: &gst::CapsRef) -> Option<&'static Codec> {
    let name = caps.structure(0)?.name();
    ALL.into_iter().find(|c| c.encoded == name.as_str())
}

/// The codec of RTP caps, by `encoding-name` (case-insensitive, as in SDP).
pub fn from_rtp_caps(caps: &gst::CapsRef) -> Option<&'static Codec> {
    let s = caps.structure(0)?;
    if s.name() != "application/x-rtp" {
        return None;
    }
    let name = s.get::<&str>("encoding-name").ok()?;
    ALL.into_iter()
        .find(|c| c.encoding_name.eq_ignore_ascii_case(name))
}

pub fn is_rtp(caps: &gst::CapsRef) -> bool {
    caps.structure(0)
        .is_some_and(|s| s.name() == "application/x-rtp")
}

/// What the sink elements take: RTP, or encoded media they payload.
pub fn input_caps() -> gst::Caps {
    let mut caps = gst::Caps::builder("application/x-rtp").build();
    caps.merge(encoded_caps());
    caps
}

pub fn is_raw(caps: &gst::CapsRef) -> bool {
    caps.structure(0)
        .is_some_and(|s| matches!(s.name().as_str(), "video/x-raw" | "audio/x-raw"))
}

/// `codecs` as encoded caps, one structure each, in order: the form of the
/// `video-caps`/`audio-caps` properties.
pub fn caps_of<'a>(codecs: impl IntoIterator<Item = &'a Codec>) -> gst::Caps {
    let mut caps = gst::Caps::new_empty();
    for c in codecs {
        caps.get_mut()
            .unwrap()
            .append_structure(gst::Structure::new_empty(c.encoded));
    }
    caps
}

/// The codecs of `media` named in `wanted` (encoded caps, as the
/// `video-caps`/`audio-caps` properties hold them), in its order, keeping
/// those `usable` accepts.
pub fn preferred(
    wanted: &gst::CapsRef,
    media: &str,
    usable: impl Fn(&Codec) -> bool,
) -> Vec<&'static Codec> {
    let mut out: Vec<&'static Codec> = Vec::new();
    for s in wanted.iter() {
        if let Some(c) = ALL
            .into_iter()
            .find(|c| c.encoded == s.name().as_str() && c.media == media)
        {
            if usable(c) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// Encoded caps of every codec, for pad templates.
pub fn encoded_caps() -> gst::Caps {
    let mut caps = gst::Caps::new_empty();
    {
        let caps = caps.get_mut().unwrap();
        for c in ALL {
            let s = if c.encoding_name == "H264" {
                gst::Structure::builder(c.encoded)
                    .field("stream-format", gst::List::new(["byte-stream", "avc"]))
                    .build()
            } else {
                gst::Structure::new_empty(c.encoded)
            };
            caps.append_structure(s);
        }
    }
    caps
}

/// A codec's element is not installed.
#[derive(Debug, thiserror::Error)]
#[error("GStreamer element {0} is missing; install the package that provides it")]
pub struct MissingElement(pub &'static str);

fn make(factory: &'static str) -> Result<gst::Element, MissingElement> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MissingElement(factory))
}

fn set_if_present(el: &gst::Element, name: &str, value: impl Into<glib::Value>) {
    if el.find_property(name).is_some() {
        el.set_property(name, value.into());
    }
}

impl Codec {
    /// parser? ! payloader, configured for low latency and for receivers
    /// joining late (parameter sets with every key frame).
    pub fn payload_chain(&'static self) -> Result<Vec<gst::Element>, MissingElement> {
        let mut chain = Vec::new();
        if let Some(parser) = self.parser {
            chain.push(make(parser)?);
        }
        let pay = make(self.payloader)?;
        pay.set_property("pt", self.payload_type);
        set_if_present(&pay, "config-interval", -1i32);
        if self.encoding_name == "H264" {
            pay.set_property_from_str("aggregate-mode", "zero-latency");
        }
        if self.encoding_name == "VP8" || self.encoding_name == "VP9" {
            pay.set_property_from_str("picture-id-mode", "15-bit");
        }
        chain.push(pay);
        Ok(chain)
    }

    /// depayloader ! parser?, asking for a key frame whenever one is missing.
    pub fn depayload_chain(&'static self) -> Result<Vec<gst::Element>, MissingElement> {
        let depay = make(self.depayloader)?;
        set_if_present(&depay, "request-keyframe", true);
        set_if_present(&depay, "wait-for-keyframe", true);
        let mut chain = vec![depay];
        if let Some(parser) = self.parser {
            let parse = make(parser)?;
            if self.encoding_name == "H264" {
                set_if_present(&parse, "config-interval", -1i32);
            }
            chain.push(parse);
        }
        Ok(chain)
    }

    /// The first decoder of this codec that is installed.
    pub fn decoder(&'static self) -> Result<gst::Element, MissingElement> {
        self.decoders
            .iter()
            .find_map(|f| gst::ElementFactory::make(f).build().ok())
            .ok_or(MissingElement(self.decoders[0]))
    }
}

impl Codec {
    /// RTP caps for a transceiver's codec preferences, with the feedback
    /// webrtcbin should announce (NACK, PLI, FIR: key frames on request).
    /// `profile` is the H.264 profile-level-id to announce.
    pub fn rtp_caps(&self, payload_type: u32, profile: Option<&str>) -> gst::Structure {
        let mut s = gst::Structure::builder("application/x-rtp")
            .field("media", self.media)
            .field("encoding-name", self.encoding_name)
            .field("clock-rate", self.clock_rate)
            .field("payload", payload_type as i32)
            .build();
        if self.media == "video" {
            s.set("rtcp-fb-nack", true);
            s.set("rtcp-fb-nack-pli", true);
            s.set("rtcp-fb-ccm-fir", true);
        }
        match self.encoding_name {
            "H264" => {
                s.set("packetization-mode", "1");
                s.set("profile-level-id", profile.unwrap_or("42e01f"));
                s.set("level-asymmetry-allowed", "1");
            }
            "OPUS" => {
                s.set("encoding-params", "2");
                s.set("minptime", "10");
                s.set("useinbandfec", "1");
            }
            _ => {}
        }
        s
    }

    /// Whether a decoder for this codec is installed.
    pub fn can_decode(&self) -> bool {
        self.decoders
            .iter()
            .any(|f| gst::ElementFactory::find(f).is_some())
    }
}

/// Adds `chain` to `bin`, links it in order, and syncs its states.
pub fn add_chain(bin: &gst::Bin, chain: &[gst::Element]) -> Result<(), glib::BoolError> {
    bin.add_many(chain)?;
    gst::Element::link_many(chain)?;
    for el in chain {
        el.sync_state_with_parent()?;
    }
    Ok(())
}

use gst::glib;
