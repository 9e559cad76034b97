//! whepsrc's src pads and what keeps them continuous across sessions.
//!
//! Each output is an appsrc behind a ghost pad, with one TIME segment for
//! the element's life. Every session's stream for that output ends in an
//! appsink whose samples are offered here; the output decides which session
//! it takes buffers from. Timestamps are running times, so they stay
//! monotonic across sessions; a switch happens only at a point the output
//! can be decoded from (a key frame for RTP/encoded output, any frame for
//! decoded output) and strictly after the last buffer pushed, so a planned
//! renewal neither repeats nor skips a frame. DISCONT marks real gaps only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    caps: Option<gst::Caps>,
}

pub struct Output {
    pub media: &'static str,
    /// The RTP encoding name, "none" before a session said.
    pub encoding: &'static str,
    pub kind: OutputKind,
    /// The forms the pad offers (RTP, encoded, raw), for messages.
    pub forms: gst::Caps,
    pub ghost: gst::GhostPad,
    pub appsrc: gst_app::AppSrc,
    switch: Mutex<Switch>,
    /// Buffers pushed into the appsrc, and those that left it: the rest
    /// were dropped by its bounded queue or still wait in it.
    pushed: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
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
        ghost: gst::GhostPad,
        appsrc: gst_app::AppSrc,
    ) -> Self {
        let frame = if media == "video" {
            33_333_333
        } else {
            20_000_000
        };
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        if let Some(src) = appsrc.static_pad("src") {
            src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        Output {
            pushed: Arc::new(AtomicU64::new(0)),
            sent,
            media,
            encoding,
            kind,
            forms,
            ghost,
            appsrc,
            switch: Mutex::new(Switch {
                active: None,
                preferred: None,
                last_pts: None,
                frame: gst::ClockTime::from_nseconds(frame),
                discont: false,
                caps: None,
            }),
        }
    }

    /// Buffers dropped because downstream did not take them in time (the
    /// queue keeps `OUTPUT_QUEUE_TIME`, dropping the oldest beyond it).
    pub fn dropped(&self) -> u64 {
        let queued = self.appsrc.current_level_buffers();
        self.pushed
            .load(Ordering::Relaxed)
            .saturating_sub(self.sent.load(Ordering::Relaxed) + queued)
    }

    /// What the pad carries and where it goes, for an error message.
    pub fn describe(&self) -> String {
        let forms: Vec<String> = self.forms.iter().map(|s| s.name().to_string()).collect();
        let linked = match self.ghost.peer() {
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
            self.ghost.name(),
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
        sw.caps = None;
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

    /// Offers a sample from `session`'s stream.
    pub fn feed(&self, session: SessionId, sample: &gst::Sample) -> Fed {
        let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
            return Fed::Dropped;
        };
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>());
        let running = |t: Option<gst::ClockTime>| match (segment, t) {
            (Some(seg), Some(t)) => seg.to_running_time(t),
            _ => t,
        };
        let Some(pts) = running(buffer.pts()) else {
            return Fed::Dropped;
        };
        let mut sw = self.switch.lock().unwrap();
        let after_last =
            |margin: gst::ClockTime| sw.last_pts.is_none_or(|last| pts > last + margin);
        let outcome = if sw.active == Some(session) {
            // The packets of one RTP frame share its timestamp.
            let repeat_ok = self.kind == OutputKind::Rtp && sw.last_pts == Some(pts);
            if !repeat_ok && !after_last(gst::ClockTime::ZERO) {
                return Fed::Dropped;
            }
            Fed::Pushed
        } else if sw.preferred == Some(session) || sw.active.is_none() {
            if !self.can_start_at(buffer) {
                return Fed::Dropped;
            }
            // Half a frame apart: a later frame, not the same frame seen
            // through another session.
            if !after_last(sw.frame / 2) {
                return if self.can_start_at(buffer)
                    && self.kind != OutputKind::Raw
                    && self.media == "video"
                {
                    Fed::NeedKeyframe
                } else {
                    Fed::Dropped
                };
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
            return Fed::Dropped;
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
        let caps = if self.kind == OutputKind::Rtp {
            stable_caps(&caps.to_owned())
        } else {
            caps.to_owned()
        };
        if sw.caps.as_ref() != Some(&caps) {
            self.appsrc.set_caps(Some(&caps));
            sw.caps = Some(caps);
        }
        let mut out = buffer.copy();
        {
            let out = out.make_mut();
            out.set_pts(pts);
            out.set_dts(running(buffer.dts()));
            if sw.discont {
                out.set_flags(gst::BufferFlags::DISCONT);
            } else {
                out.unset_flags(gst::BufferFlags::DISCONT);
            }
        }
        sw.discont = false;
        // appsrc queues without blocking: pushing under the lock keeps the
        // order the decision was made in.
        if self.appsrc.push_buffer(out).is_ok() {
            self.pushed.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}
