//! What the four elements do alike as bins: flags, and pad names.

use gst::glib;
use gst::prelude::*;

/// A bin element's setup in `constructed()`: it is a source or a sink to its
/// parent whatever its children are. webrtcbin (nicesink) inside
/// would otherwise make a source bin a sink too, and the pipeline would wait
/// for an EOS from it that never comes.
pub fn set_up_bin(bin: &gst::Bin, role: gst::ElementFlags) {
    bin.set_suppressed_flags(gst::ElementFlags::SINK | gst::ElementFlags::SOURCE);
    bin.set_element_flags(role);
}

/// What every element does first in `change_state`: `prewarm` when it
/// leaves NULL. Not when it is created: an element only inspected
/// (gst-inspect-1.0) or never started costs nothing, and no thread of ours
/// is still loading plugins when such a process exits.
pub fn before_transition(transition: gst::StateChange) {
    if transition == gst::StateChange::NullToReady {
        prewarm();
    }
}

/// Moves one-off costs off the first session's critical path, once per
/// process, on threads of its own: the shared HTTP client (the system's CA
/// certificates), the plugins a session loads, and the DTLS certificate
/// work (`certificate::prepare`). From NULL→READY, so that a session
/// started a moment later (PLAYING) finds them ready.
fn prewarm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Two threads: the DTLS key is the long one (see `prepare`); the
        // HTTP client and the plugins a session's webrtcbin loads go
        // beside it, not after it.
        let _ = std::thread::Builder::new()
            .name("whipwhep-prewarm".into())
            .spawn(crate::peer::certificate::prepare);
        let _ = std::thread::Builder::new()
            .name("whipwhep-prewarm".into())
            .spawn(|| {
                crate::protocol::prewarm_http();
                crate::peer::load_plugins();
            });
    });
}

/// The name for a new request pad: the one asked for, if it fits the
/// template and is free (`w.sink_1` in gst-launch), else the next free
/// `prefix_N`.
pub fn request_pad_name(
    element: &gst::Element,
    templ: &gst::PadTemplate,
    requested: Option<&str>,
    next: &mut u32,
) -> Option<String> {
    let prefix = templ.name_template().trim_end_matches("%u").to_string();
    if let Some(name) = requested {
        let fits = name
            .strip_prefix(prefix.as_str())
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !fits || element.static_pad(name).is_some() {
            return None;
        }
        if let Ok(n) = name[prefix.len()..].parse::<u32>() {
            *next = (*next).max(n + 1);
        }
        return Some(name.to_string());
    }
    loop {
        let name = format!("{prefix}{next}");
        *next += 1;
        if element.static_pad(&name).is_none() {
            return Some(name);
        }
    }
}

/// What a client element's dispose does when an application dropped its
/// pipeline without setting it to NULL: what stopping would have done. The
/// supervisor stops, every session is DELETEd (waiting as a stop does), and
/// the children (webrtcbins with their threads and sockets) stop. Nothing is
/// posted: the element is going.
pub fn dispose_client(
    bin: &gst::Bin,
    supervisor: Option<tokio::task::JoinHandle<()>>,
    sessions: Option<crate::session::supervisor::Sessions>,
) {
    if let Some(task) = supervisor {
        task.abort();
    }
    if let Some(sessions) = sessions {
        let resources = sessions.lock().unwrap().clone();
        crate::session::teardown_all(
            &crate::session::Host::detached(&bin.name()),
            &resources,
            "element disposed",
            crate::session::TEARDOWN_WAIT,
        );
    }
    for child in bin.children() {
        let _ = child.set_state(gst::State::Null);
    }
}

/// Stops `element`, which its bin is about to lose, for good: locked
/// first, so that the bin changing state at the same time (stopping, say)
/// cannot start it again between this and its removal. Such an element,
/// left running outside any bin, kept its streaming threads, and
/// `gst_deinit` at the end of gst-launch-1.0 waited for them forever.
pub fn stop(element: &gst::Element) {
    element.set_locked_state(true);
    let _ = element.set_state(gst::State::Null);
}

/// Parses a comma-separated list property.
pub fn split_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

/// The ICE address-pinning property, shared by all four elements.
pub fn ice_addresses_pspec() -> glib::ParamSpec {
    glib::ParamSpecString::builder("ice-addresses")
        .nick("ICE local addresses")
        .blurb(
            "Comma-separated local IP addresses that ICE gathers host candidates on, \
             e.g. \"127.0.0.1\" or \"192.0.2.10,::1\". When set, only these are used and \
             UPnP discovery is switched off (multi-homed hosts, privacy, tests). \
             Empty: every interface but loopback, libnice's default.",
        )
        .mutable_ready()
        .build()
}

/// `video-caps` and `audio-caps`: the codecs a client offers, in preference
/// order (whepsrc: to decode; whipsink: to encode raw input). `default`
/// says what the default holds.
pub fn codec_caps_pspecs(default: &str) -> [glib::ParamSpec; 2] {
    [
        glib::ParamSpecBoxed::builder::<gst::Caps>("video-caps")
            .nick("Video codecs")
            .blurb(&format!(
                "Video codecs to offer, as encoded caps in preference order, e.g. \
                 \"video/x-h264;video/x-vp8\". Default: {default}. Empty caps offer no video."
            ))
            .mutable_ready()
            .build(),
        glib::ParamSpecBoxed::builder::<gst::Caps>("audio-caps")
            .nick("Audio codecs")
            .blurb(&format!(
                "Audio codecs to offer, as encoded caps, e.g. \"audio/x-opus\". Default: \
                 {default}. Empty caps offer no audio."
            ))
            .mutable_ready()
            .build(),
    ]
}

/// A `video-caps`/`audio-caps` value as set: None means empty caps.
pub fn caps_value(value: &glib::Value) -> gst::Caps {
    value
        .get::<Option<gst::Caps>>()
        .ok()
        .flatten()
        .unwrap_or_else(gst::Caps::new_empty)
}
