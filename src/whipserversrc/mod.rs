//! `whipserversrc`: a WHIP server. Publishers POST offers to
//! `http://<address>/<any path>`; each publisher gets its own webrtcbin, and
//! its streams come out of `video_%u` and `audio_%u` pads as depayloaded encoded media
//! (video/x-vp8, video/x-vp9, video/x-h264, audio/x-opus).
//!
//! ```text
//! gst-launch-1.0 whipserversrc address=127.0.0.1:8190 ice-addresses=127.0.0.1 name=s \
//!     s. ! queue ! decodebin ! videoconvert ! autovideosink
//! ```
//!
//! A GET of its path answers with a WHIP publisher page (camera and
//! microphone, plain JavaScript) that publishes to that same path.

mod imp;

use gst::glib;
use gst::prelude::*;

glib::wrapper! {
    pub struct WhipServerSrc(ObjectSubclass<imp::WhipServerSrc>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "whipserversrc",
        gst::Rank::MARGINAL,
        WhipServerSrc::static_type(),
    )
}
