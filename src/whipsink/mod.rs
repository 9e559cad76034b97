//! `whipsink`: publishes the streams linked to its request pads to a WHIP
//! endpoint (RFC 9725).
//!
//! Accepts raw video and audio, which it encodes in the codec the server's
//! answer picks (see `crate::encoder`), RTP (drop-in for gst-plugins-rs
//! whipsink), or encoded H.264, VP8, VP9 and Opus, which it payloads itself.
//!
//! For raw input, `video-caps`/`audio-caps` order the codecs offered,
//! `video-encoder` names the video encoder factory, the `encoder-setup`
//! signal (pad name, encoder) lets the application adjust an encoder before
//! it starts, and the `encoder-selected` element message says what each
//! session's answer picked.
//!
//! ```text
//! gst-launch-1.0 videotestsrc is-live=true ! whipsink whip-endpoint=https://host/whip
//! gst-launch-1.0 videotestsrc is-live=true ! vp8enc deadline=1 ! whipsink \
//!     whip-endpoint=https://host/whip auth-token=SECRET
//! gst-launch-1.0 videotestsrc is-live=true ! vp8enc deadline=1 ! rtpvp8pay ! whipsink \
//!     whip-endpoint=https://host/whip auth-token=SECRET
//! ```

mod imp;

use gst::glib;
use gst::prelude::*;

glib::wrapper! {
    pub struct WhipSink(ObjectSubclass<imp::WhipSink>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

impl WhipSink {
    /// The encoder of each raw input stream, by sink pad name, once a
    /// session chose its codec: for adapting its bitrate
    /// (`crate::encoder::set_target_bitrate`). Encoded and RTP input have
    /// none here (the user's encoder is upstream).
    pub fn encoders(&self) -> Vec<(String, gst::Element)> {
        use gst::subclass::prelude::ObjectSubclassIsExt;
        self.imp().encoders()
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "whipsink",
        gst::Rank::MARGINAL,
        WhipSink::static_type(),
    )
}
