//! Element messages for the application. Names and fields are part of the
//! public interface: this list, the README's "Bus messages" and
//! docs/design.md say the same. Every message is an element message whose
//! source is the element itself. URLs in them are redacted (userinfo
//! dropped, query values replaced by `***`); the token never appears.
//!
//! whipsink and whepsrc (posted from this module):
//!
//! - `session-started`: a session's answer was applied.
//!   - `location` (string, or null when the server sent no Location): the
//!     session URL.
//!   - `answered-url` (string): the URL that answered, after redirects.
//!   - `protocol-version` (string or null): the server's `protocol-version`
//!     header.
//!   - `extensions` (array of strings, `"<rel> <url>"`): the answer's Link
//!     relations other than `ice-server`.
//!   - `status` (uint): the HTTP status of the answer (201, or another 2xx;
//!     406 for a WHEP counter-offer).
//! - `session-ended`: a session is over and its DELETE was sent (or there
//!   was nothing to DELETE).
//!   - `location` (string or null), `reason` (string).
//! - `session-timeline`: where a session's start went, once its first
//!   frame came out (whepsrc) or was sent (whipsink). Fields in ms (double)
//!   since the session's start, each present once reached:
//!   `peer-ready-ms`, `description-created-ms`, `gathered-ms`,
//!   `post-sent-ms`, `answer-received-ms`, `answer-applied-ms`,
//!   `ice-connected-ms`, `dtls-connected-ms`, `first-rtp-ms`,
//!   `first-frame-ms`; and `first-of-process` (boolean). Also logged in the
//!   `whipwhep-timeline` debug category (INFO).
//! - `session-reconnecting`: another attempt is coming.
//!   - `attempt` (uint, from 1): one counter for POST retries and
//!     reconnections, reset when a session connects.
//!   - `delay-ms` (uint64): how long until the attempt.
//!   - `reason` (string): why the last one ended or failed.
//!
//!   A retry of a refused POST or of a failed reconnection also posts a
//!   WARNING with the same reason, e.g. `HTTP 503 ...: Device Unavailable —
//!   retrying in 8 s (2 of 5)` ([`post_retrying`]).
//! - `session-renewed` (whepsrc only): the output moved to a new session.
//!   - `gap-ms` (uint64): time between the last buffer of the old session and
//!     the first of the new; one frame period when nothing was lost.
//!   - `frames-lost` (uint64): the frames that gap stands for.
//!   - `planned` (boolean): a make-before-break renewal (true) or a
//!     reconnection after a cut (false).
//! - `session-ice-restarted`: the path of a session broke (ICE/DTLS
//!   disconnected or failed, media-timeout, the server's RTCP silent) and an
//!   ICE restart was tried first (`ice-restart-timeout`).
//!   - `outcome` (string): `restarted` (the same session, Location and DTLS
//!     go on) or `new-session` (the restart was refused or timed out: a new
//!     session replaced it).
//!   - `interrupted-ms` (uint64): from the last media (whipsink: the
//!     server's last RTCP report) before the cut to the first after it;
//!     posted once media is back.
//!   - `location` (string or null): the session restarted (or replaced).
//!   - `reason` (string): why the path was judged broken, and for
//!     `new-session` why the restart failed.
//!
//! whipserversrc (posted by `post_publisher_message` in
//! `src/whipserversrc/imp.rs`):
//!
//! - `publisher-added`: `path` (string: the path POSTed to), `location`
//!   (string: the session's path).
//! - `publisher-removed`: `path`, `location`, `reason` (string: `DELETE`, or
//!   why its connection ended).
//!
//! whepserversink (posted by `post_viewer_message` in
//! `src/whepserversink/imp.rs`):
//!
//! - `viewer-added`: `location` (string: the session's path).
//! - `viewer-removed`: `location`, `reason` (string: `DELETE`, or why its
//!   connection ended).
//!
//! All four (posted by `crate::peer::stats`): `session-stats`, every
//! `stats-interval` ms when set, one per session: the structure the `stats`
//! property holds for that session (README, "Statistics").

use gst::prelude::*;

use crate::protocol::{redact_url, OfferResponse};

/// `session-started`: location, protocol-version, extensions, answered-url.
pub fn post_session_started(obj: &gst::Element, resp: &OfferResponse) {
    let extensions: Vec<String> = resp
        .extensions
        .iter()
        .map(|e| format!("{} {}", e.rel, e.url))
        .collect();
    let s = gst::Structure::builder("session-started")
        .field("location", resp.session_url.as_ref().map(redact_url))
        .field("answered-url", redact_url(&resp.answered_url))
        .field("protocol-version", resp.protocol_version.clone())
        .field("extensions", gst::Array::new(extensions))
        .field("status", resp.status as u32)
        .build();
    let _ = obj.post_message(gst::message::Element::builder(s).src(obj).build());
}

/// `session-ended`: location (if any) and reason.
pub fn post_session_ended(obj: &gst::Element, location: Option<&str>, reason: &str) {
    let s = gst::Structure::builder("session-ended")
        .field("location", location)
        .field("reason", reason)
        .build();
    let _ = obj.post_message(gst::message::Element::builder(s).src(obj).build());
}

/// `session-reconnecting`: attempt (1-based), delay-ms, reason.
pub fn post_reconnecting(
    obj: &gst::Element,
    attempt: u32,
    delay: std::time::Duration,
    reason: &str,
) {
    let s = gst::Structure::builder("session-reconnecting")
        .field("attempt", attempt)
        .field("delay-ms", delay.as_millis() as u64)
        .field("reason", reason)
        .build();
    let _ = obj.post_message(gst::message::Element::builder(s).src(obj).build());
}

/// A refused or failed attempt that will be tried again: a WARNING for the
/// user (`HTTP 503 ...: Device Unavailable — retrying in 8 s (2 of 5)`) and
/// `session-reconnecting` for the application. `of` says how far the
/// retries have gone.
pub fn post_retrying(
    obj: &gst::Element,
    attempt: u32,
    delay: std::time::Duration,
    reason: &str,
    of: &str,
) {
    let text = format!("{reason} — retrying in {} ({of})", human(delay));
    gst::warning!(crate::session::CAT, obj = obj, "{text}");
    let _ = obj.post_message(
        gst::message::Warning::builder(gst::ResourceError::Busy, &text)
            .src(obj)
            .build(),
    );
    post_reconnecting(obj, attempt, delay, reason);
}

/// "8 s", "1.5 s" or "500 ms".
fn human(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `session-ice-restarted`: outcome (`restarted` / `new-session`),
/// interrupted-ms, location, reason.
pub fn post_ice_restarted(
    obj: &gst::Element,
    outcome: &str,
    interrupted: std::time::Duration,
    location: Option<&url::Url>,
    reason: &str,
) {
    let s = gst::Structure::builder("session-ice-restarted")
        .field("outcome", outcome)
        .field("interrupted-ms", interrupted.as_millis() as u64)
        .field("location", location.map(redact_url))
        .field("reason", reason)
        .build();
    let _ = obj.post_message(gst::message::Element::builder(s).src(obj).build());
}

/// `session-renewed`: the output moved to a new session. gap-ms is the
/// time between the last buffer of the old one and the first of the new
/// (one frame duration when nothing was lost), frames-lost the frames that
/// gap stands for, planned whether it was a make-before-break renewal (true)
/// or a reconnection after a cut (false).
pub fn post_renewed(obj: &gst::Element, gap: std::time::Duration, frames_lost: u64, planned: bool) {
    let s = gst::Structure::builder("session-renewed")
        .field("gap-ms", gap.as_millis() as u64)
        .field("frames-lost", frames_lost)
        .field("planned", planned)
        .build();
    let _ = obj.post_message(gst::message::Element::builder(s).src(obj).build());
}

/// `session-timeline`: see `crate::peer::timeline::Timeline::to_structure`.
pub fn post_session_timeline(obj: &gst::Element, timeline: gst::Structure) {
    let _ = obj.post_message(gst::message::Element::builder(timeline).src(obj).build());
}
