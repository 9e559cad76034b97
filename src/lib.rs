//! GStreamer WHIP and WHEP elements: `whipsink`, `whepsrc`, `whipserversrc`
//! and `whepserversink`.
//!
//! Layers (see docs/design.md): `protocol` speaks HTTP, `peer` drives one
//! webrtcbin, `session` decides when, `server` is the HTTP side of the server
//! elements; the element modules hold properties, pads and the media chains
//! around webrtcbin.

use gst::glib;

pub mod codec;
pub(crate) mod element;
pub mod encoder;
pub mod peer;
pub mod protocol;
pub mod resolution;
pub mod runtime;
pub mod server;
pub mod session;
pub mod whepserversink;
pub mod whepsrc;
pub mod whipserversrc;
pub mod whipsink;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    use gst::prelude::*;
    session::settings::RedirectAuthMode::static_type()
        .mark_as_plugin_api(gst::PluginAPIFlags::empty());
    whipsink::register(plugin)?;
    whipserversrc::register(plugin)?;
    whepserversink::register(plugin)?;
    whepsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    whipwhep,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // The origin (gst-inspect's "Origin URL"): the project has not been
    // published anywhere, so there is no URL to give. Say that rather than
    // invent one. (A literal: the macro concat!s it.)
    "unpublished: built from a local gst-plugin-whipwhep source tree",
    env!("BUILD_REL_DATE")
);

// `gst::plugin_define!` also defines `pub fn plugin_register_static()`, for
// applications that link the elements in rather than load the .so.
