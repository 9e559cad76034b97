//! Where one session's start spends its time: the moments from the start of
//! a session (its supervisor deciding to make one) to its first frame, as
//! this process saw them. Posted as the `session-timeline` element message
//! and logged in the `whipwhep-timeline` debug category, once per session.
//! Measured inside the elements so that benchmarks and users see the same
//! phases (README, "Where the time to first frame goes").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "whipwhep-timeline",
        gst::DebugColorFlags::empty(),
        Some("WHIP/WHEP session start, phase by phase"),
    )
});

/// The phases, in the order a session passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The webrtcbin exists, with its DTLS transport, in the element's bin
    /// (`Peer::join`).
    PeerReady,
    /// webrtcbin replied to create-offer (or create-answer).
    DescriptionCreated,
    /// Gathering done (or its bound passed): the description can go out.
    Gathered,
    /// The POST left (clients only).
    PostSent,
    /// The POST's answer came (clients only).
    AnswerReceived,
    /// webrtcbin took the remote description.
    AnswerApplied,
    IceConnected,
    DtlsConnected,
    /// The first RTP packet: received (whepsrc) or sent (whipsink).
    FirstRtp,
    /// The first frame out of the element (whepsrc), or sent (whipsink).
    FirstFrame,
}

const PHASES: [Phase; 10] = [
    Phase::PeerReady,
    Phase::DescriptionCreated,
    Phase::Gathered,
    Phase::PostSent,
    Phase::AnswerReceived,
    Phase::AnswerApplied,
    Phase::IceConnected,
    Phase::DtlsConnected,
    Phase::FirstRtp,
    Phase::FirstFrame,
];

impl Phase {
    /// The field name in `session-timeline` (ms since the session's start).
    pub fn field(self) -> &'static str {
        match self {
            Phase::PeerReady => "peer-ready-ms",
            Phase::DescriptionCreated => "description-created-ms",
            Phase::Gathered => "gathered-ms",
            Phase::PostSent => "post-sent-ms",
            Phase::AnswerReceived => "answer-received-ms",
            Phase::AnswerApplied => "answer-applied-ms",
            Phase::IceConnected => "ice-connected-ms",
            Phase::DtlsConnected => "dtls-connected-ms",
            Phase::FirstRtp => "first-rtp-ms",
            Phase::FirstFrame => "first-frame-ms",
        }
    }

    fn index(self) -> usize {
        PHASES.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Whether a session of this process has reported its timeline yet: the
/// first one pays for one-off work (plugin loading, the first DTLS key).
static FIRST_REPORTED: AtomicBool = AtomicBool::new(false);

pub struct Timeline {
    created: Instant,
    /// The session's start, set by its supervisor; the peer's creation
    /// until then.
    origin: Mutex<Option<Instant>>,
    marks: Mutex<[Option<Instant>; PHASES.len()]>,
    first_frame: watch::Sender<bool>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            created: Instant::now(),
            origin: Mutex::new(None),
            marks: Mutex::new([None; PHASES.len()]),
            first_frame: watch::channel(false).0,
        }
    }
}

impl Timeline {
    /// When the session started: `at`, or the peer's creation if that
    /// came first (whipsink makes its first peer when its input's caps
    /// come, before the session starts).
    pub fn set_origin(&self, at: Instant) {
        *self.origin.lock().unwrap() = Some(at.min(self.created));
    }

    /// Records `phase` now, unless it was recorded already.
    pub fn mark(&self, phase: Phase) {
        let now = Instant::now();
        let fresh = {
            let mut marks = self.marks.lock().unwrap();
            let slot = &mut marks[phase.index()];
            slot.is_none() && {
                *slot = Some(now);
                true
            }
        };
        if fresh && phase == Phase::FirstFrame {
            self.first_frame.send_replace(true);
        }
    }

    pub fn has(&self, phase: Phase) -> bool {
        self.marks.lock().unwrap()[phase.index()].is_some()
    }

    /// Waits for the first frame, at most `limit`; whether it came.
    pub async fn first_frame(&self, limit: Duration) -> bool {
        let mut rx = self.first_frame.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|v| *v))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// `session-timeline`: each phase reached, in ms since the session's
    /// start, and whether this was the process's first session to report.
    pub fn to_structure(&self) -> gst::Structure {
        let origin = self.origin.lock().unwrap().unwrap_or(self.created);
        let marks = *self.marks.lock().unwrap();
        let first = !FIRST_REPORTED.swap(true, Ordering::Relaxed);
        let mut s = gst::Structure::builder("session-timeline")
            .field("first-of-process", first)
            .build();
        for (phase, at) in PHASES.iter().zip(marks) {
            if let Some(at) = at {
                let ms = at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
                s.set(phase.field(), (ms * 10.0).round() / 10.0);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_reported_once_in_ms_since_the_origin() {
        gst::init().unwrap();
        let t = Timeline::default();
        t.set_origin(Instant::now() - Duration::from_millis(40));
        t.mark(Phase::PostSent);
        std::thread::sleep(Duration::from_millis(5));
        t.mark(Phase::PostSent);
        t.mark(Phase::FirstFrame);
        let s = t.to_structure();
        let post = s.get::<f64>("post-sent-ms").unwrap();
        let frame = s.get::<f64>("first-frame-ms").unwrap();
        assert!((40.0..45.0).contains(&post), "{post}");
        assert!(frame >= post + 5.0, "{frame} vs {post}");
        assert!(!s.has_field("ice-connected-ms"));
    }
}
