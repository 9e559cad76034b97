//! Whether the relay can listen on an address, asked before building it: a
//! busy port must end the relay and the demo with the element's own ERROR
//! and exit status 1, not a panic.

use gst::prelude::*;

/// Binds `address` the way the relay's whipserversrc will (NULL→READY) and
/// lets it go again. Err: the text of the ERROR the element posted, e.g.
/// "cannot serve /whip on 127.0.0.1:8190: Address already in use ...".
pub fn check_listen(address: &str) -> Result<(), String> {
    let pipeline = gst::Pipeline::new();
    let probe = gst::ElementFactory::make("whipserversrc")
        .property("address", address)
        .property("path", "/whip")
        .build()
        .map_err(|e| e.to_string())?;
    pipeline.add(&probe).map_err(|e| e.to_string())?;
    let result = probe.set_state(gst::State::Ready);
    let error = pipeline
        .bus()
        .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
        .and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        });
    probe.set_state(gst::State::Null).ok();
    match (result, error) {
        (Ok(_), _) => Ok(()),
        (Err(_), Some(error)) => Err(error),
        (Err(_), None) => Err(format!("cannot listen on {address}")),
    }
}
