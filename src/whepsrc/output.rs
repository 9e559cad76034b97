//! whepsrc's src pads and what keeps them continuous across sessions.
//!
//! Each output is a src pad of the element with one TIME segment for the
//! element's life. Every session's stream for that output ends in a sink
//! pad of its own whose buffers are offered here; the output decides which
//! session it takes buffers from and pushes them from that session's
//! streaming thread (the jitterbuffer's): no thread or queue of its own. Timestamps
//! are running times, so they stay monotonic across sessions; a switch
//! happens only at a point the output can be decoded from (a key frame for
//! RTP/encoded output, any frame for decoded output) and strictly after the
//! last buffer pushed, so a planned renewal neither repeats nor skips a
//! frame. DISCONT marks real gaps only.
//!
//! A downstream that stalls holds that streaming thread; packets then wait
//! in the session's jitterbuffer, which `guard_jitterbuffer` bounds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// What a src pad carries, chosen from what downstream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Rtp,
    Encoded,
    Raw,
}

/// Identifies a session (one webrtcbin) feeding outputs.
pub type SessionId = u32;

#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Pushed from the active session.
    Pushed,
    /// The output switched to this session with this buffer; `gap` is the
    /// time since the previous buffer pushed, if there was one, `frame` the
    /// usual time between buffers, `planned` whether another session was
    /// still being served (make-before-break).
    Switched {
        gap: Option<gst::ClockTime>,
        frame: gst::ClockTime,
        planned: bool,
    },
    /// Dropped: not the session being served, or not a point to start from.
    Dropped,
    /// Dropped a key frame that came too early to switch at: ask the session
    /// for another.
    NeedKeyframe,
}

struct Switch {
    active: Option<SessionId>,
    /// The session outputs should move to (the newest).
    preferred: Option<SessionId>,
    last_pts: Option<gst::ClockTime>,
    frame: gst::ClockTime,
    /// The next buffer follows a real gap.
    discont: bool,
}

/// How long downstream may hold a push before the sessions' jitterbuffers
/// start dropping their oldest packets (keeping the newest, as a leaky
/// queue would).
const STALL: Duration = Duration::from_secs(1);

pub struct Output {
    pub media: &'static str,
    /// The RTP encoding name, "none" before a session said.
    pub encoding: &'static str,
    pub kind: OutputKind,
    /// The forms the pad offers (RTP, encoded, raw), for messages.
    pub forms: gst::Caps,
    pub pad: gst::Pad,
    group: gst::GroupId,
    /// Which session feeds the pad; held only to decide, never across a push.
    switch: Mutex<Switch>,
    /// Held across a push, so that buffers from two sessions go out in the
    /// order they were decided in.
    pushing: Mutex<()>,
    epoch: Instant,
    /// Milliseconds since `epoch` when the push in progress began, plus one;
    /// 0 while none is.
    push_began: AtomicU64,
}

/// RTP caps without the per-session fields, so a new session doesn't look
/// like a format change.
fn stable_caps(caps: &gst::Caps) -> gst::Caps {
    let mut caps = caps.clone();
    if let Some(s) = caps.make_mut().structure_mut(0) {
        for f in [
            "ssrc",
            "timestamp-offset",
            "seqnum-offset",
            "clock-base",
            "seqnum-base",
            "rtcp-fb-nack-pli",
        ] {
            s.remove_field(f);
        }
    }
    caps
}

impl Output {
    pub fn new(
        media: &'static str,
        encoding: &'static str,
        kind: OutputKind,
        forms: gst::Caps,
        pad: gst::Pad,
        group: gst::GroupId,
    ) -> Self {
        let frame = if media == "video" {
            33_333_333
        } else {
            20_000_000
        };
        Output {
            media,
            encoding,
            kind,
            forms,
            pad,
            group,
            switch: Mutex::new(Switch {
                active: None,
                preferred: None,
                last_pts: None,
                frame: gst::ClockTime::from_nseconds(frame),
                discont: false,
            }),
            pushing: Mutex::new(()),
            epoch: Instant::now(),
            push_began: AtomicU64::new(0),
        }
    }

    /// Whether downstream has held a push for longer than `STALL`.
    fn stalled(&self) -> bool {
        let began = self.push_began.load(Ordering::Relaxed);
        began != 0
            && self.epoch.elapsed().as_millis() as u64 + 1 >= began + STALL.as_millis() as u64
    }

    /// Bounds what waits in `jitterbuffer` (one session's stream for this
    /// output) while downstream stalls. Its streaming thread is the one
    /// held; packets keep coming in on the receiving thread, where this
    /// probe turns on `drop-on-latency` from `STALL` on: the jitterbuffer
    /// then drops its oldest packet for each new one, so about `STALL`'s
    /// worth waits, the newest, and posts what it dropped (whepsrc counts
    /// it in `dropped`).
    pub fn guard_jitterbuffer(self: &Arc<Self>, jitterbuffer: &gst::Element) {
        let Some(sink) = jitterbuffer.static_pad("sink") else {
            return;
        };
        jitterbuffer.set_property("drop-messages-interval", 0u32);
        let output = Arc::downgrade(self);
        let jb = jitterbuffer.downgrade();
        let guarding = AtomicBool::new(false);
        sink.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, _| {
                let Some(output) = output.upgrade() else {
                    return gst::PadProbeReturn::Remove;
                };
                let stalled = output.stalled();
                if guarding.swap(stalled, Ordering::Relaxed) != stalled {
                    if let Some(jb) = jb.upgrade() {
                        jb.set_property("drop-on-latency", stalled);
                        jb.set_property("post-drop-messages", stalled);
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    /// What the pad carries and where it goes, for an error message.
    pub fn describe(&self) -> String {
        let forms: Vec<String> = self.forms.iter().map(|s| s.name().to_string()).collect();
        let linked = match self.pad.peer() {
            Some(peer) => format!(
                "linked to {}, which accepts {}",
                peer.parent()
                    .map(|p| format!("{}:{}", p.name(), peer.name()))
                    .unwrap_or_else(|| peer.name().to_string()),
                peer.query_caps(None)
            ),
            None => "not linked".to_string(),
        };
        format!(
            "{} carries {} {} (available as {}), {linked}",
            self.pad.name(),
            self.encoding,
            self.media,
            forms.join(" or ")
        )
    }

    /// Starts over for a new run (NULL, then PLAYING again): running times
    /// start from zero again.
    pub fn reset(&self) {
        let mut sw = self.switch.lock().unwrap();
        sw.active = None;
        sw.preferred = None;
        sw.last_pts = None;
        sw.discont = false;
    }

    /// From now on, move to `session` at the first point possible.
    pub fn prefer(&self, session: SessionId) {
        self.switch.lock().unwrap().preferred = Some(session);
    }

    /// `session` is gone: if it was being served, the next buffer follows a gap.
    pub fn retire(&self, session: SessionId) {
        let mut sw = self.switch.lock().unwrap();
        if sw.active == Some(session) {
            sw.active = None;
            sw.discont = true;
        }
        if sw.preferred == Some(session) {
            sw.preferred = None;
        }
    }

    pub fn serves(&self, session: SessionId) -> bool {
        self.switch.lock().unwrap().active == Some(session)
    }

    fn can_start_at(&self, buffer: &gst::BufferRef) -> bool {
        self.media != "video"
            || self.kind == OutputKind::Raw
            || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
    }

    /// Offers a buffer of `session`'s stream (with the caps and segment it
    /// came with), and pushes it if it is to go out: what came of the offer,
    /// and the push's flow if there was one. Nothing goes out unless the
    /// element is PLAYING, as from any live source.
    pub fn feed(
        &self,
        session: SessionId,
        mut buffer: gst::Buffer,
        caps: &gst::Caps,
        segment: &gst::Segment,
    ) -> (Fed, Option<Result<gst::FlowSuccess, gst::FlowError>>) {
        let segment = segment.downcast_ref::<gst::ClockTime>();
        let running = |t: Option<gst::ClockTime>| match (segment, t) {
            (Some(seg), Some(t)) => seg.to_running_time(t),
            _ => t,
        };
        let Some(pts) = running(buffer.pts()) else {
            return (Fed::Dropped, None);
        };
        let _pushing = self.pushing.lock().unwrap();
        let (outcome, discont) =
            self.decide(&mut self.switch.lock().unwrap(), session, &buffer, pts);
        if !matches!(outcome, Fed::Pushed | Fed::Switched { .. }) {
            return (outcome, None);
        }
        {
            let dts = running(buffer.dts());
            let out = buffer.make_mut();
            out.set_pts(pts);
            out.set_dts(dts);
            if discont {
                out.set_flags(gst::BufferFlags::DISCONT);
            } else {
                out.unset_flags(gst::BufferFlags::DISCONT);
            }
        }
        let playing = self
            .pad
            .parent_element()
            .is_some_and(|e| e.current_state() == gst::State::Playing);
        if !playing {
            return (outcome, None);
        }
        let caps = if self.kind == OutputKind::Rtp {
            stable_caps(&caps.to_owned())
        } else {
            caps.to_owned()
        };
        self.push_began.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
        let flow = self.push(buffer, caps);
        if flow == Err(gst::FlowError::Eos) && self.pad.sticky_event::<gst::event::Eos>(0).is_none()
        {
            // Downstream is done with this pad (`num-buffers`): as from any
            // source, EOS follows, and the sinks end the pipeline.
            self.pad.push_event(gst::event::Eos::new());
        }
        self.push_began.store(0, Ordering::Relaxed);
        (outcome, Some(flow))
    }

    /// Whether `session`'s buffer at `pts` goes out (and so becomes the
    /// last one pushed), and whether it follows a real gap.
    fn decide(
        &self,
        sw: &mut Switch,
        session: SessionId,
        buffer: &gst::BufferRef,
        pts: gst::ClockTime,
    ) -> (Fed, bool) {
        let after_last = |sw: &Switch, margin: gst::ClockTime| {
            sw.last_pts.is_none_or(|last| pts > last + margin)
        };
        let outcome = if sw.active == Some(session) {
            // The packets of one RTP frame share its timestamp.
            let repeat_ok = self.kind == OutputKind::Rtp && sw.last_pts == Some(pts);
            if !repeat_ok && !after_last(sw, gst::ClockTime::ZERO) {
                return (Fed::Dropped, false);
            }
            Fed::Pushed
        } else if sw.preferred == Some(session) || sw.active.is_none() {
            if !self.can_start_at(buffer) {
                return (Fed::Dropped, false);
            }
            // Half a frame apart: a later frame, not the same frame seen
            // through another session.
            if !after_last(sw, sw.frame / 2) {
                let again = self.kind != OutputKind::Raw && self.media == "video";
                return (
                    if again {
                        Fed::NeedKeyframe
                    } else {
                        Fed::Dropped
                    },
                    false,
                );
            }
            let gap = sw.last_pts.map(|last| pts.saturating_sub(last));
            let planned = sw.active.is_some();
            sw.active = Some(session);
            if sw.preferred == Some(session) {
                sw.preferred = None;
            }
            Fed::Switched {
                gap,
                frame: sw.frame,
                planned,
            }
        } else {
            return (Fed::Dropped, false);
        };
        if let Some(last) = sw.last_pts {
            let delta = pts.saturating_sub(last);
            if delta > gst::ClockTime::ZERO
                && delta < gst::ClockTime::from_mseconds(200)
                && outcome == Fed::Pushed
            {
                sw.frame = delta;
            }
        }
        sw.last_pts = Some(pts);
        (outcome, std::mem::take(&mut sw.discont))
    }

    /// Pushes `buffer` with `caps`, after the stream's start and segment if
    /// the pad has none yet (first buffer, or a new run).
    fn push(
        &self,
        buffer: gst::Buffer,
        caps: gst::Caps,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.start(Some(caps));
        self.pad.push(buffer)
    }

    /// Stream-start, caps if they changed, and the segment: what must come
    /// before data, and comes again when a new run cleared the pad's events.
    fn start(&self, caps: Option<gst::Caps>) {
        self.stream_start();
        if let Some(caps) = caps {
            if self.pad.current_caps().as_ref() != Some(&caps) {
                self.pad.push_event(gst::event::Caps::new(&caps));
            }
        }
        if self.pad.sticky_event::<gst::event::Segment>(0).is_none() {
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            self.pad.push_event(gst::event::Segment::new(&segment));
        }
    }

    fn stream_start(&self) {
        if self
            .pad
            .sticky_event::<gst::event::StreamStart>(0)
            .is_some()
        {
            return;
        }
        let Some(element) = self.pad.parent_element() else {
            return;
        };
        let id = self.pad.create_stream_id(&element, Some(self.media));
        self.pad.push_event(
            gst::event::StreamStart::builder(&id)
                .group_id(self.group)
                .build(),
        );
    }

    /// Ends the stream: EOS after what was pushed, with the stream's start
    /// and segment first if nothing was.
    pub fn end_of_stream(&self) {
        let _pushing = self.pushing.lock().unwrap();
        self.start(None);
        self.pad.push_event(gst::event::Eos::new());
    }
}
