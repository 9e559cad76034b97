//! Session statistics, shared by all four elements: the `stats` property and
//! the periodic `session-stats` message, built from webrtcbin's `get-stats`
//! and from frame counters on webrtcbin's RTP pads.
//!
//! Why a cache refreshed off-thread rather than asking webrtcbin when the
//! property is read: `get-stats` is answered on webrtcbin's own thread, so a
//! getter waiting for it could stall the application's (or a streaming)
//! thread, or deadlock when read from a webrtcbin callback; and a bitrate
//! needs two samples anyway. So each element runs one task on the plugin's
//! runtime that samples its sessions every `REFRESH` (or more often, to
//! honour a shorter `stats-interval`), each `get-stats` bounded by
//! `SAMPLE_WAIT`; reading `stats` only clones the latest structure. Nobody
//! reading (and no messages): every `IDLE_REFRESH`, since a hundred sessions
//! sampled every second cost a few percent of a core for nothing; a read
//! wakes the task, which then samples every `REFRESH` for `READ_KEEPS_FRESH`.
//!
//! Field meanings are listed in the README ("Statistics"); this module is
//! the one place that produces them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst_webrtc::WebRTCStatsType;

use super::Peer;
use crate::runtime::RUNTIME;
use crate::session::Host;

/// How often sessions are sampled when `stats-interval` is off (or longer):
/// the `stats` property is at most this old, and bitrates are averaged over
/// this long.
const REFRESH: Duration = Duration::from_secs(1);
/// The shortest `stats-interval` honoured.
const MIN_INTERVAL_MS: u32 = 100;
/// How often sessions are sampled while `stats` is not read and no message
/// is due: what a first read gets is at most this old.
const IDLE_REFRESH: Duration = Duration::from_secs(5);
/// How long after a read of `stats` sampling keeps to `REFRESH`.
const READ_KEEPS_FRESH: Duration = Duration::from_secs(10);
/// How long one `get-stats` may take before that sample is skipped.
const SAMPLE_WAIT: Duration = Duration::from_millis(500);

/// Name of the per-session structure, and of the element message.
pub const SESSION_STATS: &str = "session-stats";

/// Frames and key frames seen on one webrtcbin RTP pad (video only).
#[derive(Default)]
struct FrameCounter {
    /// Set from the pad's caps at the first packet.
    codec: OnceLock<Option<KeyFrameFormat>>,
    frames: AtomicU64,
    key_frames: AtomicU64,
    /// Whether a packet of the frame being received started a key frame.
    in_key_frame: std::sync::atomic::AtomicBool,
}

/// The RTP payload formats whose key frames we can tell (RFC 7741, RFC
/// 9628, RFC 6184).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFrameFormat {
    Vp8,
    Vp9,
    H264,
}

impl KeyFrameFormat {
    fn from_caps(caps: &gst::CapsRef) -> Option<Self> {
        let s = caps.structure(0)?;
        if s.get::<&str>("media").ok()? != "video" {
            return None;
        }
        match s
            .get::<&str>("encoding-name")
            .ok()?
            .to_ascii_uppercase()
            .as_str()
        {
            "VP8" => Some(Self::Vp8),
            "VP9" => Some(Self::Vp9),
            "H264" => Some(Self::H264),
            _ => None,
        }
    }

    /// Whether this packet's payload carries the start of a key frame.
    fn starts_key_frame(self, p: &[u8]) -> bool {
        match self {
            // Payload descriptor (RFC 7741 §4.2), then the VP8 payload
            // header of the frame's first partition, whose P bit is 0 for a
            // key frame (§4.3).
            Self::Vp8 => {
                let Some(&b0) = p.first() else { return false };
                let (start, pid) = (b0 & 0x10 != 0, b0 & 0x07);
                let mut i = 1;
                if b0 & 0x80 != 0 {
                    let Some(&x) = p.get(1) else { return false };
                    i = 2;
                    if x & 0x80 != 0 {
                        i += if p.get(i).is_some_and(|b| b & 0x80 != 0) {
                            2
                        } else {
                            1
                        };
                    }
                    if x & 0x40 != 0 {
                        i += 1;
                    }
                    if x & 0x30 != 0 {
                        i += 1;
                    }
                }
                start && pid == 0 && p.get(i).is_some_and(|h| h & 0x01 == 0)
            }
            // RFC 9628 §4.2: B (start of frame) set, P (inter-picture
            // predicted) clear.
            Self::Vp9 => p.first().is_some_and(|b| b & 0x08 != 0 && b & 0x40 == 0),
            // RFC 6184 §5.6-5.8: an IDR slice (type 5), alone, in a STAP-A
            // or starting an FU-A.
            Self::H264 => match p.first().map(|b| b & 0x1f) {
                Some(5) => true,
                Some(24) => {
                    let mut i = 1;
                    while i + 2 < p.len() {
                        let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                        if p[i + 2] & 0x1f == 5 {
                            return true;
                        }
                        i += 2 + size;
                    }
                    false
                }
                Some(28) => p.get(1).is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
                _ => false,
            },
        }
    }
}

impl FrameCounter {
    fn packet(&self, pad: &gst::Pad, buffer: &gst::BufferRef) {
        let Some(format) = *self.codec.get_or_init(|| {
            pad.current_caps()
                .and_then(|c| KeyFrameFormat::from_caps(&c))
        }) else {
            return;
        };
        let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buffer) else {
            return;
        };
        if rtp.payload().is_ok_and(|p| format.starts_key_frame(p)) {
            self.in_key_frame.store(true, Ordering::Relaxed);
        }
        // The marker bit ends a video frame (RFC 7741, 9628, 6184).
        if rtp.is_marker() {
            self.frames.fetch_add(1, Ordering::Relaxed);
            if self.in_key_frame.swap(false, Ordering::Relaxed) {
                self.key_frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A stream's byte count, when it was read, and the bitrate computed then.
type Sample = (u64, Instant, u64);

/// What one peer keeps for its statistics: frame counters on its RTP pads,
/// the previous byte counts (for bitrates), and the congestion controller's
/// target bitrate.
#[derive(Default)]
pub struct PeerStats {
    /// By webrtcbin pad name (`sink_0`, `src_1`): webrtcbin's codec stats
    /// are named after the pad (`codec-stats-sink_0`).
    frames: Mutex<HashMap<String, Arc<FrameCounter>>>,
    /// By (ssrc, sending): the previous sample.
    previous: Mutex<HashMap<(u32, bool), Sample>>,
    /// bit/s, 0 when no congestion controller runs.
    target_bitrate: AtomicU32,
}

impl PeerStats {
    /// Counts frames on every RTP pad webrtcbin gets: its sink pads carry
    /// what we send, its src pads what we receive.
    pub fn attach(webrtcbin: &gst::Element) -> Arc<PeerStats> {
        let stats = Arc::new(PeerStats::default());
        let weak = Arc::downgrade(&stats);
        webrtcbin.connect_pad_added(move |_, pad| {
            let Some(stats) = weak.upgrade() else { return };
            let counter = Arc::new(FrameCounter::default());
            stats
                .frames
                .lock()
                .unwrap()
                .insert(pad.name().to_string(), counter.clone());
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |pad, info| {
                    match &info.data {
                        Some(gst::PadProbeData::Buffer(b)) => counter.packet(pad, b),
                        Some(gst::PadProbeData::BufferList(list)) => {
                            for b in list.iter() {
                                counter.packet(pad, b);
                            }
                        }
                        _ => {}
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        });
        stats
    }

    pub fn set_target_bitrate(&self, bps: u32) {
        self.target_bitrate.store(bps, Ordering::Relaxed);
    }

    /// The congestion controller's latest estimate, bit/s; 0 without one.
    pub fn target_bitrate(&self) -> u32 {
        self.target_bitrate.load(Ordering::Relaxed)
    }

    /// Bits per second since the previous sample of this stream.
    fn bitrate(&self, ssrc: u32, sending: bool, bytes: u64, now: Instant) -> u64 {
        let mut previous = self.previous.lock().unwrap();
        let entry = previous.entry((ssrc, sending)).or_insert((bytes, now, 0));
        let elapsed = now.saturating_duration_since(entry.1);
        // Two reads close together: keep the rate of the last real interval.
        if elapsed >= Duration::from_millis(50) {
            let bits = bytes.saturating_sub(entry.0) * 8;
            *entry = (bytes, now, (bits as f64 / elapsed.as_secs_f64()) as u64);
        }
        entry.2
    }
}

/// Asks webrtcbin for its statistics, waiting at most `SAMPLE_WAIT`.
async fn get_stats(webrtcbin: &gst::Element) -> Option<gst::Structure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let _ = tx.send(reply.ok().flatten().map(|s| s.to_owned()));
    });
    webrtcbin.emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    tokio::time::timeout(SAMPLE_WAIT, rx)
        .await
        .ok()?
        .ok()
        .flatten()
}

/// One session's `session-stats` structure (fields: README "Statistics").
pub async fn sample(peer: &Peer, location: Option<&str>) -> Option<gst::Structure> {
    let raw = get_stats(peer.webrtcbin()).await?;
    Some(summarize(&raw, peer.webrtcbin(), peer.stats(), location))
}

fn stats_type(s: &gst::StructureRef) -> Option<WebRTCStatsType> {
    s.get::<WebRTCStatsType>("type").ok()
}

/// The `gst-rtpsource-stats` of an RTP stats entry: whether it sends.
fn is_sender(s: &gst::StructureRef) -> bool {
    s.get::<gst::Structure>("gst-rtpsource-stats")
        .ok()
        .and_then(|r| r.get::<bool>("is-sender").ok())
        .unwrap_or(true)
}

fn u64_field(s: &gst::StructureRef, name: &str) -> Option<u64> {
    s.value(name).ok().and_then(|v| {
        v.get::<u64>()
            .ok()
            .or_else(|| v.get::<u32>().ok().map(u64::from))
            .or_else(|| v.get::<i64>().ok().map(|n| n.max(0) as u64))
            .or_else(|| v.get::<i32>().ok().map(|n| n.max(0) as u64))
    })
}

fn summarize(
    raw: &gst::StructureRef,
    webrtcbin: &gst::Element,
    peer: &PeerStats,
    location: Option<&str>,
) -> gst::Structure {
    let now = Instant::now();
    let entries: Vec<&gst::StructureRef> = raw
        .iter()
        .filter_map(|(_, v)| v.get::<&gst::StructureRef>().ok())
        .collect();
    let by_id = |id: &str| raw.get::<&gst::StructureRef>(id).ok();
    let remote_inbound = |ssrc: u32| {
        entries.iter().copied().find(|s| {
            stats_type(s) == Some(WebRTCStatsType::RemoteInboundRtp)
                && s.get::<u32>("ssrc").ok() == Some(ssrc)
        })
    };

    let mut streams = Vec::new();
    let mut transport_id = None;
    for s in &entries {
        let sending = match stats_type(s) {
            Some(WebRTCStatsType::OutboundRtp) => true,
            Some(WebRTCStatsType::InboundRtp) => false,
            _ => continue,
        };
        // webrtcbin lists the peer's report-only SSRCs too (a sendonly
        // peer "receives" the remote's receiver reports): not streams.
        if !is_sender(s) {
            continue;
        }
        let Ok(ssrc) = s.get::<u32>("ssrc") else {
            continue;
        };
        let pad_name = s
            .get::<&str>("codec-id")
            .ok()
            .and_then(|id| id.strip_prefix("codec-stats-"))
            .map(String::from);
        let codec_stats = s.get::<&str>("codec-id").ok().and_then(by_id);
        let pad_caps = pad_name
            .as_deref()
            .and_then(|n| webrtcbin.static_pad(n))
            .and_then(|p| p.current_caps());
        let caps = pad_caps.as_ref().and_then(|c| c.structure(0));
        let media = s
            .get::<&str>("kind")
            .ok()
            .or_else(|| caps.and_then(|c| c.get::<&str>("media").ok()))
            .unwrap_or("")
            .to_string();
        let codec = codec_stats
            .and_then(|c| c.get::<&str>("mime-type").ok())
            .and_then(|m| m.split('/').nth(1))
            .or_else(|| caps.and_then(|c| c.get::<&str>("encoding-name").ok()))
            .unwrap_or("")
            .to_ascii_uppercase();
        let payload_type = codec_stats
            .and_then(|c| c.get::<u32>("payload-type").ok())
            .or_else(|| {
                caps.and_then(|c| c.get::<i32>("payload").ok())
                    .map(|p| p as u32)
            })
            .unwrap_or(0);
        if transport_id.is_none() {
            transport_id = s.get::<&str>("transport-id").ok();
        }

        let bytes_field = if sending {
            "bytes-sent"
        } else {
            "bytes-received"
        };
        let packets_field = if sending {
            "packets-sent"
        } else {
            "packets-received"
        };
        let bytes = u64_field(s, bytes_field).unwrap_or(0);
        let mut b = gst::Structure::builder("stream")
            .field("media", &media)
            .field("codec", &codec)
            .field("payload-type", payload_type)
            .field("ssrc", ssrc)
            .field("direction", if sending { "send" } else { "receive" })
            .field("bitrate", peer.bitrate(ssrc, sending, bytes, now))
            .field(bytes_field, bytes)
            .field(packets_field, u64_field(s, packets_field).unwrap_or(0));
        // Loss, jitter and round trip: for what we send, as the receiver
        // reported them (RFC 3550 §6.4.1); for what we receive, as counted
        // here. A receive-only peer has no RTT: RTCP gives it to the sender
        // only, and webrtcbin 1.22 sends no RTCP XR (RFC 3611) that would
        // give it to the receiver.
        if sending {
            if let Some(r) = remote_inbound(ssrc) {
                b = b.field("packets-lost", u64_field(r, "packets-lost").unwrap_or(0));
                if let Ok(f) = r.get::<f64>("fraction-lost") {
                    b = b.field("fraction-lost", f);
                }
                if let Ok(rtt) = r.get::<f64>("round-trip-time") {
                    b = b.field("rtt-ms", rtt * 1000.0);
                }
                let jitter = r.get::<f64>("jitter").ok().or_else(|| {
                    // 1.22 leaves it in the RTP source stats, in clock units.
                    let src = r.get::<gst::Structure>("gst-rtpsource-stats").ok()?;
                    let units = src.get::<u32>("rb-jitter").ok()?;
                    let rate = codec_stats?.get::<u32>("clock-rate").ok()?;
                    (rate > 0).then(|| f64::from(units) / f64::from(rate))
                });
                if let Some(j) = jitter {
                    b = b.field("jitter-ms", j * 1000.0);
                }
            }
        } else {
            b = b.field("packets-lost", u64_field(s, "packets-lost").unwrap_or(0));
            if let Ok(j) = s.get::<f64>("jitter") {
                b = b.field("jitter-ms", j.max(0.0) * 1000.0);
            }
        }
        for count in ["nack-count", "pli-count", "fir-count"] {
            b = b.field(count, s.get::<u32>(count).unwrap_or(0));
        }
        let counter = pad_name.and_then(|n| peer.frames.lock().unwrap().get(&n).cloned());
        if let Some(c) = counter.filter(|c| c.codec.get().is_some_and(|f| f.is_some())) {
            b = b
                .field("frames", c.frames.load(Ordering::Relaxed))
                .field("key-frames", c.key_frames.load(Ordering::Relaxed));
        }
        streams.push(b.build());
    }
    streams.sort_by_key(|s| {
        (
            s.get::<String>("media").unwrap_or_default(),
            s.get::<u32>("ssrc").unwrap_or(0),
        )
    });

    let mut session = gst::Structure::builder(SESSION_STATS)
        .field("location", location)
        .field(
            "target-bitrate",
            peer.target_bitrate.load(Ordering::Relaxed),
        );
    if let Some(pair) = selected_pair(&entries, &by_id, transport_id) {
        session = session.field("candidate-pair", pair);
    }
    session.field("streams", gst::Array::new(streams)).build()
}

/// The selected ICE candidate pair of the streams' transport (or of any
/// transport, before a stream flows).
fn selected_pair<'a>(
    entries: &[&'a gst::StructureRef],
    by_id: &impl Fn(&str) -> Option<&'a gst::StructureRef>,
    transport_id: Option<&str>,
) -> Option<gst::Structure> {
    let pair = entries
        .iter()
        .filter(|s| stats_type(s) == Some(WebRTCStatsType::Transport))
        .filter(|s| transport_id.is_none_or(|id| s.get::<&str>("id").ok() == Some(id)))
        .find_map(|s| by_id(s.get::<&str>("selected-candidate-pair-id").ok()?))?;
    let mut b = gst::Structure::builder("candidate-pair");
    // webrtcbin 1.22 swaps the ids' "local"/"remote" prefixes; the entries'
    // own `type` says which side each candidate is.
    for id in ["local-candidate-id", "remote-candidate-id"] {
        let Some(c) = pair.get::<&str>(id).ok().and_then(by_id) else {
            continue;
        };
        let side = match stats_type(c) {
            Some(WebRTCStatsType::LocalCandidate) => "local",
            Some(WebRTCStatsType::RemoteCandidate) => "remote",
            _ => continue,
        };
        b = b
            .field(
                format!("{side}-address"),
                c.get::<&str>("address").unwrap_or(""),
            )
            .field(format!("{side}-port"), c.get::<u32>("port").unwrap_or(0))
            .field(
                format!("{side}-type"),
                c.get::<&str>("candidate-type").unwrap_or(""),
            )
            .field(
                format!("{side}-protocol"),
                c.get::<&str>("protocol").unwrap_or(""),
            );
    }
    Some(b.build())
}

/// The live sessions of an element: each peer, with its session's location
/// (redacted for clients, the path for servers).
pub type Sources = Arc<dyn Fn() -> Vec<Source> + Send + Sync>;
/// One session to sample: its peer, and its Location if it has one.
pub type Source = (Arc<Peer>, Option<String>);

/// An element's statistics: the `stats` and `stats-interval` properties
/// and the task that keeps them fresh. `PER_SESSION`: a server element,
/// whose `stats` lists one entry per client.
#[derive(Default)]
pub struct Stats<const PER_SESSION: bool> {
    interval_ms: Arc<AtomicU32>,
    latest: Arc<Mutex<Vec<gst::Structure>>>,
    read: Arc<Reads>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// When `stats` was last read, and the sampler to wake when it was idle.
#[derive(Default)]
struct Reads {
    last: Mutex<Option<Instant>>,
    wake: tokio::sync::Notify,
}

impl Reads {
    /// Notes a read; wakes the sampler if nobody read lately.
    fn read(&self) {
        let now = Instant::now();
        let last = self.last.lock().unwrap().replace(now);
        if last.is_none_or(|t| now.duration_since(t) >= READ_KEEPS_FRESH) {
            self.wake.notify_one();
        }
    }

    /// Whether `stats` was read within `READ_KEEPS_FRESH`.
    fn recent(&self) -> bool {
        self.last
            .lock()
            .unwrap()
            .is_some_and(|t| t.elapsed() < READ_KEEPS_FRESH)
    }
}

/// whipsink and whepsrc: `stats` is one `session-stats`.
pub type ClientStats = Stats<false>;
/// whipserversrc and whepserversink: `stats` lists one `session-stats` per
/// client.
pub type ServerStats = Stats<true>;

impl<const PER_SESSION: bool> Stats<PER_SESSION> {
    pub fn properties() -> Vec<glib::ParamSpec> {
        let stats_blurb = if PER_SESSION {
            "Statistics of every client session (read-only): a \"server-stats\" structure \
             whose \"sessions\" array holds one \"session-stats\" per client, as whipsink's \
             and whepsrc's \"stats\". Refreshed off the streaming threads, every second \
             while it is read, every 5 s while it is not. The README lists every field."
        } else {
            "Statistics of the current session (read-only), a \"session-stats\" structure: \
             \"location\", \"target-bitrate\" (bit/s from congestion control, 0 when off), \
             \"candidate-pair\" (the selected ICE pair) and \"streams\", one per RTP stream \
             with media, codec, payload-type, ssrc, direction, bitrate, bytes and packets \
             sent or received, packets-lost, jitter-ms, rtt-ms (send streams), nack/pli/fir \
             counts and, for video, frames and key-frames. Refreshed off the streaming \
             threads, every second while it is read, every 5 s while it is not; empty \
             \"streams\" when no session runs. The README lists every field."
        };
        vec![
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb(stats_blurb)
                .read_only()
                .build(),
            glib::ParamSpecUInt::builder("stats-interval")
                .nick("Statistics message interval")
                .blurb(
                    "Milliseconds between \"session-stats\" element messages on the bus, each \
                     holding one session's statistics (the same structure as in \"stats\"); \
                     0: no messages. At least 100.",
                )
                .default_value(0)
                .mutable_playing()
                .build(),
        ]
    }

    /// Handles `stats-interval`; false for other properties.
    pub fn set_property(&self, value: &glib::Value, pspec: &glib::ParamSpec) -> bool {
        if pspec.name() != "stats-interval" {
            return false;
        }
        let ms = value.get::<u32>().unwrap_or(0);
        let ms = if ms == 0 { 0 } else { ms.max(MIN_INTERVAL_MS) };
        self.interval_ms.store(ms, Ordering::Relaxed);
        true
    }

    /// `stats` and `stats-interval`; None for other properties.
    pub fn property(&self, pspec: &glib::ParamSpec) -> Option<glib::Value> {
        match pspec.name() {
            "stats" => Some(self.structure().to_value()),
            "stats-interval" => Some(self.interval_ms.load(Ordering::Relaxed).to_value()),
            _ => None,
        }
    }

    /// The latest statistics, as the `stats` property gives them.
    pub fn structure(&self) -> gst::Structure {
        self.read.read();
        let latest = self.latest.lock().unwrap();
        if PER_SESSION {
            return gst::Structure::builder("server-stats")
                .field("sessions", gst::Array::new(latest.iter().cloned()))
                .build();
        }
        latest.first().cloned().unwrap_or_else(|| {
            gst::Structure::builder(SESSION_STATS)
                .field("location", None::<String>)
                .field("target-bitrate", 0u32)
                .field("streams", gst::Array::new(Vec::<gst::Structure>::new()))
                .build()
        })
    }

    /// Starts sampling `sources` for `obj` (stopping a previous run).
    pub fn start(&self, obj: &gst::Element, sources: Sources) {
        let host = Host::new(obj);
        let (interval, latest) = (self.interval_ms.clone(), self.latest.clone());
        let read = self.read.clone();
        let task = RUNTIME.spawn(async move {
            let mut since_post = Duration::ZERO;
            loop {
                let ms = interval.load(Ordering::Relaxed);
                let post_every = Duration::from_millis(u64::from(ms));
                // Samples at most REFRESH apart that divide the message
                // interval evenly, so each message is a fresh sample.
                let period = match ms {
                    0 if read.recent() => REFRESH,
                    0 => IDLE_REFRESH,
                    _ => post_every / post_every.as_millis().div_ceil(REFRESH.as_millis()) as u32,
                };
                // Unasked samples wait on the shared grid; messages keep
                // the pace the application set.
                let due = std::time::Instant::now() + period;
                let sleep = async {
                    match ms {
                        0 => crate::runtime::sleep_until_tick(due).await,
                        _ => tokio::time::sleep_until(due.into()).await,
                    }
                };
                tokio::select! {
                    _ = sleep => since_post += period,
                    // A first read: sample now, and every REFRESH from then.
                    _ = read.wake.notified() => {}
                }
                let mut sessions = Vec::new();
                for (peer, location) in sources() {
                    if let Some(s) = sample(&peer, location.as_deref()).await {
                        sessions.push(s);
                    }
                }
                if ms != 0 && since_post + Duration::from_millis(5) >= post_every {
                    since_post = Duration::ZERO;
                    host.with(|obj| {
                        for s in &sessions {
                            let msg = gst::message::Element::builder(s.clone()).src(obj).build();
                            let _ = obj.post_message(msg);
                        }
                    });
                }
                if host.get().is_none() {
                    return;
                }
                *latest.lock().unwrap() = sessions;
            }
        });
        if let Some(old) = self.task.lock().unwrap().replace(task) {
            old.abort();
        }
    }

    /// Stops sampling; `stats` then reports no session.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
        self.latest.lock().unwrap().clear();
    }
}

impl<const PER_SESSION: bool> Drop for Stats<PER_SESSION> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::KeyFrameFormat;

    #[test]
    fn key_frames_are_told_from_rtp_payload_headers() {
        // VP8: S=1, PID=0, no extension; frame header P bit 0 (key) or 1.
        assert!(KeyFrameFormat::Vp8.starts_key_frame(&[0x10, 0x00]));
        assert!(!KeyFrameFormat::Vp8.starts_key_frame(&[0x10, 0x01]));
        // VP8 with X, I (15-bit picture id): the header is 4 bytes in.
        assert!(KeyFrameFormat::Vp8.starts_key_frame(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        // Not the start of a partition.
        assert!(!KeyFrameFormat::Vp8.starts_key_frame(&[0x00, 0x00]));
        // VP9: B set, P clear.
        assert!(KeyFrameFormat::Vp9.starts_key_frame(&[0x08]));
        assert!(!KeyFrameFormat::Vp9.starts_key_frame(&[0x48]));
        // H.264: IDR alone, in a STAP-A after SPS, starting an FU-A.
        assert!(KeyFrameFormat::H264.starts_key_frame(&[0x65, 0x00]));
        assert!(KeyFrameFormat::H264
            .starts_key_frame(&[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x65, 0x88]));
        assert!(KeyFrameFormat::H264.starts_key_frame(&[0x7c, 0x85]));
        assert!(!KeyFrameFormat::H264.starts_key_frame(&[0x7c, 0x05]));
        assert!(!KeyFrameFormat::H264.starts_key_frame(&[0x41, 0x00]));
    }
}
