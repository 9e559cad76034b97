//! What happens when another plugin (gst-plugins-rs's webrtchttp or rswebrtc)
//! registers elements named like ours, and what picks ours: GStreamer keeps
//! one factory per element name, the one registered last. The other plugin
//! is played here by a static plugin, "clash", whose "whipsink" is a plain
//! bin.
//!
//! This file is its own test binary, so its registrations stay out of every
//! other test's process.

use gst::prelude::*;

const ELEMENTS: &[&str] = &["whipsink", "whipserversrc", "whepsrc", "whepserversink"];

mod clash {
    use gst::glib;
    use gst::prelude::*;

    fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
        for name in super::ELEMENTS {
            gst::Element::register(
                Some(plugin),
                name,
                gst::Rank::PRIMARY,
                gst::Bin::static_type(),
            )?;
        }
        Ok(())
    }

    gst::plugin_define!(
        clash,
        "stands for gst-plugins-rs's whipsink, whepsrc, whipserversrc, whepserversink",
        plugin_init,
        "0",
        "MPL",
        "clash",
        "clash",
        "test"
    );
}

fn plugin_of(element: &str) -> String {
    gst::ElementFactory::find(element)
        .unwrap_or_else(|| panic!("no {element} factory"))
        .plugin_name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// One test, because both registrations are process-wide and ordered.
#[test]
fn one_factory_per_name_and_the_last_registration_wins() {
    gst::init().unwrap();
    clash::plugin_register_static().unwrap();
    for element in ELEMENTS {
        assert_eq!(plugin_of(element), "clash", "{element}");
    }

    // A rank does not choose between the two: there is only one factory
    // of each name left to rank.
    let factory = gst::ElementFactory::find("whipsink").unwrap();
    factory.set_rank(gst::Rank::from(i32::MAX));
    assert_eq!(plugin_of("whipsink"), "clash");
    let found: Vec<_> = gst::Registry::get()
        .features(gst::ElementFactory::static_type())
        .into_iter()
        .filter(|f| f.name() == "whipsink")
        .collect();
    assert_eq!(found.len(), 1, "factories named whipsink");

    // What an application does to get ours whatever is installed: register
    // the elements itself, after gst::init().
    gstwhipwhep::plugin_register_static().unwrap();
    for element in ELEMENTS {
        assert_eq!(plugin_of(element), "whipwhep", "{element}");
        let made = gst::ElementFactory::make(element).build().unwrap();
        // Our types are named without gst-plugins-rs' "Gst" prefix.
        assert!(
            made.type_().name().eq_ignore_ascii_case(element),
            "{element} made a {}",
            made.type_().name()
        );
    }
}
