//! The relay's wiring, shared by the relay and the demo: whipserversrc on
//! `/whip`, a whepserversink per published name on `/whep/<name>`, and one
//! on `/whep` that answers 409 for names nobody publishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// Builds the relay in `pipeline`; returns the address it listens on.
pub fn build_relay(pipeline: &gst::Pipeline, address: &str, ice_addresses: &str) -> String {
    let whip = gst::ElementFactory::make("whipserversrc")
        .property("address", address)
        .property("path", "/whip")
        .property("ice-addresses", ice_addresses)
        .build()
        .expect("whipserversrc");
    // Answers names with no publisher: nothing to serve yet → 409.
    let waiting = gst::ElementFactory::make("whepserversink")
        .property("address", address)
        .property("path", "/whep")
        .build()
        .expect("whepserversink");
    pipeline.add_many([&whip, &waiting]).unwrap();
    whip.set_state(gst::State::Ready).expect("listen");
    let bound = whip.property::<String>("bound-address");
    // Port 0 picked a port: the other elements share it.
    let address = bound.clone();
    waiting.set_property("address", &address);

    let sinks: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
    let (bin, s, ice) = (pipeline.clone(), sinks.clone(), ice_addresses.to_string());
    let addr = address.clone();
    whip.connect_pad_added(move |whip, pad| {
        let path = whip
            .emit_by_name::<Option<String>>("publisher-path", &[pad])
            .unwrap_or_default();
        let streams = whip.emit_by_name::<u32>("publisher-streams", &[pad]);
        let name = path
            .trim_start_matches("/whip")
            .trim_matches('/')
            .to_string();
        let name = if name.is_empty() {
            "default".to_string()
        } else {
            name
        };
        let mut sinks = s.lock().unwrap();
        let served = sinks.entry(name.clone()).or_insert_with(|| {
            let sink = gst::ElementFactory::make("whepserversink")
                .name(format!("whep-{name}"))
                .property("address", &addr)
                .property("path", format!("/whep/{name}"))
                .property("ice-addresses", &ice)
                .build()
                .expect("whepserversink");
            bin.add(&sink).unwrap();
            // An input for each of the publisher's streams from the start:
            // the sink answers viewers once all have caps, so a viewer
            // that comes before the last stream's pad still gets it.
            let queues: Vec<_> = (0..streams.max(1)).map(|_| input(&bin, &sink)).collect();
            sink.sync_state_with_parent().unwrap();
            println!("relay: {name} is live at http://{addr}/whep/{name}");
            Served {
                sink,
                unlinked: queues.clone(),
                queues,
            }
        });
        let queue = served.unlinked.pop().unwrap_or_else(|| {
            let queue = input(&bin, &served.sink);
            served.queues.push(queue.clone());
            queue
        });
        pad.link(&queue.static_pad("sink").unwrap()).unwrap();
    });

    // A publisher that leaves takes its name's viewers with it: they get
    // 409 until someone publishes that name again.
    let bus = pipeline.bus().unwrap();
    let (bin, s) = (pipeline.clone(), sinks);
    bus.add_signal_watch();
    bus.connect_message(Some("element"), move |_, msg| {
        let Some(st) = msg.structure().filter(|s| s.name() == "publisher-removed") else {
            return;
        };
        let path = st.get::<String>("path").unwrap_or_default();
        let name = path.trim_start_matches("/whip").trim_matches('/');
        let name = if name.is_empty() { "default" } else { name };
        if let Some(Served { sink, queues, .. }) = s.lock().unwrap().remove(name) {
            for element in queues.iter().chain([&sink]) {
                let _ = element.set_state(gst::State::Null);
                let _ = bin.remove(element);
            }
            println!("relay: {name} ended");
        }
    });
    address
}

/// A published name's whepserversink and the queues into its inputs.
struct Served {
    sink: gst::Element,
    queues: Vec<gst::Element>,
    /// Those no publisher pad is linked to yet.
    unlinked: Vec<gst::Element>,
}

/// A queue into a new input of `sink`.
fn input(bin: &gst::Pipeline, sink: &gst::Element) -> gst::Element {
    let queue = gst::ElementFactory::make("queue").build().unwrap();
    bin.add(&queue).unwrap();
    queue.sync_state_with_parent().unwrap();
    queue.link(sink).unwrap();
    queue
}
