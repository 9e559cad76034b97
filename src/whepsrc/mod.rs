//! `whepsrc`: plays a WHEP endpoint into a pipeline.
//!
//! Offers recvonly transceivers for every codec it can decode (or those in
//! `video-caps` / `audio-caps`; `media=video` for video only, as device
//! endpoints such as Ring's require). Each stream comes out of a `video_%u` or `audio_%u`
//! pad in the form downstream accepts: RTP (as gst-plugins-rs whepsrc),
//! encoded elementary streams, or decoded raw media.
//!
//! ```text
//! gst-launch-1.0 whepsrc whep-endpoint=https://host/whep auth-token=SECRET ! videoconvert ! autovideosink
//! gst-launch-1.0 whepsrc whep-endpoint=https://host/whep media=video ! h264parse ! fakesink
//! gst-launch-1.0 whepsrc whep-endpoint=https://host/whep ! rtpvp8depay ! vp8dec ! videoconvert ! autovideosink
//! ```

mod imp;
mod output;

use gst::glib;
use gst::prelude::*;

glib::wrapper! {
    pub struct WhepSrc(ObjectSubclass<imp::WhepSrc>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

/// Which media whepsrc asks for.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWhepSrcMedia")]
pub enum Media {
    #[default]
    #[enum_value(name = "Audio and video", nick = "audio-video")]
    AudioVideo = 0,
    #[enum_value(
        name = "Video only (device endpoints such as Ring reject audio)",
        nick = "video"
    )]
    Video = 1,
    #[enum_value(name = "Audio only", nick = "audio")]
    Audio = 2,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Media::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "whepsrc",
        gst::Rank::MARGINAL,
        WhepSrc::static_type(),
    )
}
