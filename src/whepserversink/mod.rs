//! `whepserversink`: a WHEP server. Serves the streams linked to its
//! `sink_%u` pads (encoded H.264/VP8/VP9/Opus, or RTP) to any number of
//! viewers, each with its own webrtcbin fed from one shared input: no
//! re-encode per viewer, only per-viewer payloading with the payload type
//! the viewer offered.
//!
//! ```text
//! gst-launch-1.0 videotestsrc is-live=true ! vp8enc deadline=1 ! \
//!     whepserversink address=127.0.0.1:8190 ice-addresses=127.0.0.1
//! # then play http://127.0.0.1:8190/whep with whepsrc or a browser
//! ```
//!
//! A GET of its path answers with a WHEP player page (plain JavaScript) that
//! plays that same path.

mod imp;

use gst::glib;
use gst::prelude::*;

glib::wrapper! {
    pub struct WhepServerSink(ObjectSubclass<imp::WhepServerSink>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "whepserversink",
        gst::Rank::MARGINAL,
        WhepServerSink::static_type(),
    )
}
