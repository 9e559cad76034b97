//! Congestion control for what whipsink sends: Google Congestion Control
//! (draft-ietf-rmcat-gcc-02) as gst-plugins-rs implements it in
//! `rtpgccbwe`, driven by transport-wide congestion control feedback
//! (TWCC, draft-holmer-rmcat-transport-wide-cc-extensions-01). Its
//! estimate becomes the encoders' target bitrate.
//!
//! - Each payloader we make stamps the TWCC header extension, and its caps
//!   ask for `a=rtcp-fb:<pt> transport-cc`, so the offer carries both.
//! - webrtcbin asks for an element in front of each transport's sender
//!   (`request-aux-sender`): the estimator goes there, paces what is sent
//!   and reads the receiver's TWCC feedback.
//! - Each new estimate goes to the video encoders (`encoder::set_target_bitrate`),
//!   less what the audio streams take.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst_rtp::prelude::*;

use super::Peer;

/// The TWCC RTP header extension (RFC 8285 URI).
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Its extension id in our offers (the payloaders we make use no other).
const TWCC_ID: u32 = 1;

/// The estimator's element name.
const GCC: &str = "rtpgccbwe";

/// What an Opus stream is assumed to take from the estimate: its encoder
/// runs at its own bitrate (opusenc's default is 64 kbit/s for stereo).
const AUDIO_SHARE: u32 = 64_000;

/// whipsink's congestion-control properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    /// Also drive the encoder upstream of encoded input (the user's).
    pub upstream: bool,
    /// bit/s
    pub min: u32,
    pub start: u32,
    pub max: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            upstream: false,
            min: 100_000,
            start: 1_000_000,
            max: 8_192_000,
        }
    }
}

impl Settings {
    pub fn properties() -> Vec<glib::ParamSpec> {
        let d = Settings::default();
        let rate = |name: &str, nick: &str, blurb: &str, default: u32| {
            glib::ParamSpecUInt::builder(name)
                .nick(nick)
                .blurb(blurb)
                .minimum(10_000)
                .maximum(100_000_000)
                .default_value(default)
                .mutable_ready()
                .build()
        };
        vec![
            glib::ParamSpecBoolean::builder("congestion-control")
                .nick("Congestion control")
                .blurb(
                    "Make the bitrate follow the available bandwidth: Google Congestion Control \
                     (gst-plugins-rs' rtpgccbwe) estimates it from transport-wide congestion \
                     control feedback (TWCC) and sets the target bitrate of whipsink's own \
                     video encoder (raw input), between min-bitrate and max-bitrate, less \
                     64 kbit/s per audio stream. With encoded input it estimates (stats' \
                     target-bitrate) but leaves the encoder upstream alone unless \
                     congestion-control-upstream is set. With RTP input (the first stream's) \
                     it is off.",
                )
                .default_value(d.enabled)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("congestion-control-upstream")
                .nick("Congestion control upstream")
                .blurb(
                    "Also set the bitrate of the encoder upstream of encoded input (vp8enc, \
                     vp9enc, x264enc, openh264enc, found through parsers, queues and \
                     capsfilters) to congestion control's estimate. Off by default: whipsink \
                     does not touch the user's elements unasked.",
                )
                .default_value(d.upstream)
                .mutable_ready()
                .build(),
            rate(
                "min-bitrate",
                "Minimum bitrate",
                "Lowest total bitrate (bit/s) congestion control goes down to",
                d.min,
            ),
            rate(
                "start-bitrate",
                "Start bitrate",
                "Total bitrate (bit/s) congestion control starts from, until the first \
                 feedback says more",
                d.start,
            ),
            rate(
                "max-bitrate",
                "Maximum bitrate",
                "Highest total bitrate (bit/s) congestion control goes up to",
                d.max,
            ),
        ]
    }

    /// Handles this module's properties; false for others.
    pub fn set(&mut self, value: &glib::Value, pspec: &glib::ParamSpec) -> bool {
        match pspec.name() {
            "congestion-control" => self.enabled = value.get().unwrap_or(true),
            "congestion-control-upstream" => self.upstream = value.get().unwrap_or(false),
            "min-bitrate" => self.min = value.get().unwrap_or(self.min),
            "start-bitrate" => self.start = value.get().unwrap_or(self.start),
            "max-bitrate" => self.max = value.get().unwrap_or(self.max),
            _ => return false,
        }
        true
    }

    pub fn get(&self, pspec: &glib::ParamSpec) -> Option<glib::Value> {
        Some(match pspec.name() {
            "congestion-control" => self.enabled.to_value(),
            "congestion-control-upstream" => self.upstream.to_value(),
            "min-bitrate" => self.min.to_value(),
            "start-bitrate" => self.start.to_value(),
            "max-bitrate" => self.max.to_value(),
            _ => return None,
        })
    }

    /// The bounds in order, whatever order the user set them in.
    pub fn bounds(&self) -> (u32, u32, u32) {
        let (min, max) = (self.min.min(self.max), self.max.max(self.min));
        (min, self.start.clamp(min, max), max)
    }
}

/// Makes `rtpgccbwe` available: the installed one (gst-plugins-rs' rsrtp
/// plugin) if there is one, else the copy linked into this plugin. The
/// gst-plugin-rtp crate registers only its whole plugin, so that is
/// registered (once, and only when no rsrtp plugin is installed: nothing
/// installed is shadowed) and every element of it but `rtpgccbwe` is taken
/// out of the registry again: the process gains that one element only.
fn gcc_available() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    if gst::ElementFactory::find(GCC).is_some() {
        return Ok(());
    }
    REGISTERED
        .get_or_init(|| {
            let registry = gst::Registry::get();
            if registry.find_plugin("rsrtp").is_some() {
                return Err(format!(
                    "the installed gst-plugins-rs rsrtp plugin has no {GCC}; update it"
                ));
            }
            gstrsrtp::plugin_register_static().map_err(|e| e.to_string())?;
            for feature in registry.features_by_plugin("rsrtp") {
                if feature.name() != GCC {
                    registry.remove_feature(&feature);
                }
            }
            Ok(())
        })
        .clone()?;
    gst::ElementFactory::find(GCC)
        .map(|_| ())
        .ok_or_else(|| format!("{GCC} did not register"))
}

/// Makes the payloader ending `chain` (one we made) send TWCC sequence
/// numbers, and appends the caps that make the offer ask for TWCC feedback
/// (`a=rtcp-fb:<pt> transport-cc`).
pub fn stamp_twcc(chain: &mut Vec<gst::Element>) -> Result<(), String> {
    let payloader = chain.last().ok_or("no payloader to stamp TWCC")?;
    let ext = gst_rtp::RTPHeaderExtension::create_from_uri(TWCC_URI)
        .ok_or("rtphdrexttwcc (gst-plugins-good) is missing")?;
    ext.set_id(TWCC_ID);
    payloader.emit_by_name::<()>("add-extension", &[&ext]);
    let mut caps = gst::Caps::new_empty_simple("application/x-rtp");
    ask_feedback(caps.make_mut().structure_mut(0).unwrap());
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", caps)
        .build()
        .map_err(|_| "capsfilter (GStreamer core) is missing")?;
    chain.push(filter);
    Ok(())
}

/// Makes RTP caps ask for TWCC feedback (`a=rtcp-fb:<pt> transport-cc`).
fn ask_feedback(s: &mut gst::StructureRef) {
    s.set("rtcp-fb-transport-cc", true);
}

/// Makes a format of a transceiver's codec preferences offer TWCC: the
/// header extension the payloader will stamp (`stamp_twcc`) and the
/// feedback (webrtcbin offers a codec-preferences transceiver's
/// extensions and feedback from these caps).
pub fn offer_twcc(s: &mut gst::StructureRef) {
    s.set(format!("extmap-{TWCC_ID}").as_str(), TWCC_URI);
    ask_feedback(s);
}

/// An estimate below this share of the one before is a sudden fall: the
/// bottleneck's capacity dropped under what was being sent.
const SUDDEN_FALL: f64 = 0.7;
/// Share of the estimate the encoders get while draining.
const DRAIN_SHARE: f64 = 0.35;
/// How long after a sudden fall they get it.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What the encoders are asked for, from the estimates. By the time the
/// estimator notices that the bottleneck's capacity fell (its feedback
/// waits in the same queue), the queue there is full; sent at the new
/// estimate, it stays full, and the key frame of the smaller picture
/// (`crate::resolution`) or the one the receiver asks for after the first
/// losses is lost too, until the estimate has crept below the capacity:
/// a 1.5-3.5 s freeze at a drop from 1 Mbit/s to 300 kbit/s
/// (examples/bench_shaped.rs). Sending well below the estimate for a
/// moment after a sudden fall drains the queue, and a key frame gets
/// through within about a second.
#[derive(Debug)]
pub struct Drain {
    min: u32,
    last: Option<u32>,
    until: Option<Instant>,
}

impl Drain {
    /// `min`: never ask for less (the estimate's own floor).
    pub fn new(min: u32) -> Self {
        Self {
            min,
            last: None,
            until: None,
        }
    }

    /// The target for a new `estimate` made at `now`.
    pub fn target(&mut self, estimate: u32, now: Instant) -> u32 {
        if self
            .last
            .is_some_and(|last| f64::from(estimate) < SUDDEN_FALL * f64::from(last))
        {
            self.until = Some(now + DRAIN_TIME);
        }
        self.last = Some(estimate);
        match self.until {
            Some(until) if now < until => {
                ((f64::from(estimate) * DRAIN_SHARE) as u32).clamp(self.min.min(estimate), estimate)
            }
            _ => estimate,
        }
    }
}

/// What a new estimate is handed to.
pub type OnEstimate = Arc<dyn Fn(u32) + Send + Sync>;

/// Puts a bandwidth estimator in front of each of `peer`'s transports
/// (webrtcbin's `request-aux-sender`), reporting its estimates to
/// `on_estimate` (on the estimator's thread) and to the peer's statistics.
/// Call before the DTLS transport is made (before any offer).
pub fn install(peer: &Peer, settings: &Settings, on_estimate: OnEstimate) -> Result<(), String> {
    gcc_available()?;
    let (min, start, max) = settings.bounds();
    let stats = peer.stats_handle();
    // The encoders get it when the session starts (whipsink's `activate`).
    stats.set_target_bitrate(start);
    peer.webrtcbin()
        .connect("request-aux-sender", false, move |_| {
            let bwe = gst::ElementFactory::make(GCC)
                .property("min-bitrate", min)
                .property("max-bitrate", max)
                .property("estimated-bitrate", start)
                .build()
                .ok()?;
            let (stats, on_estimate) = (stats.clone(), on_estimate.clone());
            let drain = Mutex::new(Drain::new(min));
            bwe.connect_notify(Some("estimated-bitrate"), move |bwe, _| {
                let estimate = bwe.property::<u32>("estimated-bitrate");
                let bps = drain.lock().unwrap().target(estimate, Instant::now());
                stats.set_target_bitrate(bps);
                on_estimate(bps);
            });
            Some(bwe.to_value())
        });
    Ok(())
}

/// Splits a total estimate between the streams: the audio ones keep their
/// own rate, the video ones share the rest evenly.
pub fn video_share(total: u32, video_streams: usize, audio_streams: usize, min: u32) -> u32 {
    let audio = AUDIO_SHARE.saturating_mul(audio_streams as u32);
    (total.saturating_sub(audio) / video_streams.max(1) as u32).max(min / 2)
}

/// The encoder feeding `pad` (a sink pad), looking upstream through
/// elements with one input (parsers, capsfilters, queues, tees) and ghost
/// pads.
pub fn upstream_encoder(pad: &gst::Pad) -> Option<gst::Element> {
    let mut pad = pad.clone();
    for _ in 0..16 {
        let mut peer = pad.peer()?;
        // Into a bin: its ghost pad's internal pad; out of one: the ghost
        // pad's outer peer.
        if let Some(ghost) = peer
            .parent()
            .and_then(|p| p.downcast::<gst::GhostPad>().ok())
        {
            peer = ghost.peer()?;
        }
        if let Ok(ghost) = peer.clone().downcast::<gst::GhostPad>() {
            peer = ghost.target()?;
        }
        let element = peer.parent_element()?;
        let is_encoder = element
            .factory()
            .is_some_and(|f| f.klass().contains("Encoder"));
        if is_encoder {
            return Some(element);
        }
        let inputs = element.sink_pads();
        if inputs.len() != 1 {
            return None;
        }
        pad = inputs[0].clone();
    }
    None
}

/// Receiving answerer (whipserversrc): the answer keeps the offer's TWCC
/// header extension and `transport-cc` feedback, so that the publisher's
/// congestion control gets TWCC feedback. webrtcbin 1.22 answers only with
/// the extensions of a transceiver's codec preferences, and the transceivers
/// it makes for a remote offer have none. Its receive side already counts
/// the packets: the payload-type caps come from the remote offer, extension
/// included. The edit is made to the SDP, per m-section: adding transceivers
/// instead makes webrtcbin answer Chromium's offers wrongly.
/// `None`: nothing to add.
pub fn keep_twcc_in_answer(
    offer: &gst_sdp::SDPMessageRef,
    answer: &gst_sdp::SDPMessageRef,
) -> Option<gst_sdp::SDPMessage> {
    let mut edited = answer.to_owned();
    let mut changed = false;
    for (index, offered) in offer.medias().enumerate() {
        let Some(id) = twcc_id(offered) else {
            continue;
        };
        let Some(answered) = edited.media_mut(index as u32) else {
            break;
        };
        let ids_taken = answered.attributes().any(|a| {
            a.key() == "extmap"
                && a.value()
                    .and_then(|v| v.split(['/', ' ']).next())
                    .is_some_and(|v| v == id.to_string())
        });
        if answered.port() == 0 || twcc_id(answered).is_some() || ids_taken {
            continue;
        }
        let feedback: Vec<String> = answered
            .formats()
            .filter(|pt| {
                offered.attributes().any(|a| {
                    a.key() == "rtcp-fb" && a.value() == Some(&format!("{pt} transport-cc"))
                })
            })
            .map(|pt| format!("{pt} transport-cc"))
            .collect();
        answered.add_attribute("extmap", Some(&format!("{id} {TWCC_URI}")));
        for value in &feedback {
            answered.add_attribute("rtcp-fb", Some(value));
        }
        changed = true;
    }
    changed.then_some(edited)
}

/// The id a media section gives the TWCC extension.
fn twcc_id(media: &gst_sdp::SDPMediaRef) -> Option<u32> {
    media.attributes().find_map(|a| {
        let value = a.value().filter(|_| a.key() == "extmap")?;
        let (id, uri) = value.split_once(' ')?;
        (uri.trim() == TWCC_URI).then(|| id.split('/').next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sudden_fall_drains_for_a_moment() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut drain = Drain::new(100_000);
        assert_eq!(drain.target(1_500_000, at(0)), 1_500_000);
        // Gradual changes pass as they are.
        assert_eq!(drain.target(1_200_000, at(100)), 1_200_000);
        assert_eq!(drain.target(1_300_000, at(200)), 1_300_000);
        // Below 70 % of the last one: 35 % of it for 2 s, never below min.
        assert_eq!(drain.target(400_000, at(300)), 140_000);
        assert_eq!(drain.target(380_000, at(1_300)), 133_000);
        assert_eq!(drain.target(300_000, at(1_400)), 105_000);
        assert_eq!(drain.target(250_000, at(2_299)), 100_000);
        assert_eq!(drain.target(250_000, at(2_300)), 250_000);
        // A new fall starts a new one; never above the estimate.
        assert_eq!(drain.target(160_000, at(2_400)), 100_000);
        assert_eq!(drain.target(90_000, at(2_500)), 90_000);
        assert_eq!(drain.target(150_000, at(4_399)), 100_000);
        assert_eq!(drain.target(150_000, at(4_500)), 150_000);
    }

    fn parse(text: &str) -> gst_sdp::SDPMessage {
        gst_sdp::SDPMessage::parse_buffer(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    const HEAD: &str = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\n";

    #[test]
    fn the_answer_takes_the_offered_twcc_id_and_feedback() {
        gst::init().unwrap();
        // As Chromium offers: TWCC at id 3, feedback on some formats only.
        let offer = parse(&format!(
            "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\na=rtpmap:111 opus/48000/2\n\
             a=rtcp-fb:111 transport-cc\na=extmap:3 {TWCC_URI}\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\na=mid:1\na=rtpmap:96 VP8/90000\n\
             a=rtcp-fb:96 transport-cc\na=rtpmap:97 rtx/90000\na=extmap:3 {TWCC_URI}\n\
             m=video 0 UDP/TLS/RTP/SAVPF 98\na=mid:2\na=rtpmap:98 H264/90000\n"
        ));
        let answer = parse(&format!(
            "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\na=rtpmap:111 opus/48000/2\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\na=mid:1\na=rtpmap:96 VP8/90000\n\
             a=rtpmap:97 rtx/90000\n\
             m=video 0 UDP/TLS/RTP/SAVPF 98\na=mid:2\n"
        ));
        let edited = keep_twcc_in_answer(&offer, &answer).expect("an edit");
        let text = edited.as_text().unwrap();
        let sections: Vec<&str> = text.split("m=").skip(1).collect();
        for section in &sections[..2] {
            assert!(
                section.contains(&format!("a=extmap:3 {TWCC_URI}")),
                "{text}"
            );
        }
        assert!(sections[0].contains("a=rtcp-fb:111 transport-cc"), "{text}");
        assert!(sections[1].contains("a=rtcp-fb:96 transport-cc"), "{text}");
        assert!(!sections[1].contains("97 transport-cc"), "{text}");
        assert!(!sections[2].contains("extmap"), "rejected section: {text}");
        // Nothing to add the second time.
        assert!(keep_twcc_in_answer(&offer, &edited).is_none());
    }

    #[test]
    fn an_id_the_answer_uses_otherwise_is_left_alone() {
        gst::init().unwrap();
        let offer = parse(&format!(
            "{HEAD}m=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:0\na=rtpmap:96 VP8/90000\n\
             a=extmap:2 {TWCC_URI}\n"
        ));
        let answer = parse(&format!(
            "{HEAD}m=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:0\na=rtpmap:96 VP8/90000\n\
             a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\n"
        ));
        assert!(keep_twcc_in_answer(&offer, &answer).is_none());
    }
}
