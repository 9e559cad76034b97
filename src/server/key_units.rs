//! Key frame requests from many viewers of one shared input, merged.
//!
//! whepserversink encodes (or receives) each input once and a tee hands it to
//! every viewer, so one viewer's PLI or FIR makes a key frame for all of
//! them. A viewer that loses a packet asks again on every frame it cannot
//! decode; with many viewers on a loaded machine the requests came faster
//! than frames and the encoder made nothing but key frames, which made every
//! viewer's stream several times bigger and the machine slower still
//! (examples/bench_many.rs: 100 viewers, 2-11 fps each). Here at most one
//! request per `MIN_INTERVAL` goes upstream; the ones in between become one
//! request at the end of the interval, so that a viewer that asked (one that
//! just connected, say) still gets a key frame made after it asked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::runtime::RUNTIME;

/// The shortest time between two key frame requests sent to an input's
/// source: about 15 frames at 30 fps.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Gate {
    last_sent: Option<Instant>,
    /// A request is due at the end of the interval.
    pending: bool,
}

fn is_key_unit_request(event: &gst::EventRef) -> bool {
    event.type_() == gst::EventType::CustomUpstream
        && event
            .structure()
            .is_some_and(|s| s.has_name("GstForceKeyUnit"))
}

fn request() -> gst::Event {
    gst::event::CustomUpstream::new(
        gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .build(),
    )
}

/// Merges the key frame requests that go upstream through `pad` (the sink
/// pad of an input's tee) for as long as the pad lives.
pub fn merge_requests(pad: &gst::Pad) {
    let gate = Arc::new(Mutex::new(Gate::default()));
    let weak = pad.downgrade();
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        let Some(gst::PadProbeData::Event(event)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        if !is_key_unit_request(event) {
            return gst::PadProbeReturn::Ok;
        }
        let now = Instant::now();
        let mut g = gate.lock().unwrap();
        let wait = match g.last_sent {
            Some(last) if now.duration_since(last) < MIN_INTERVAL => {
                MIN_INTERVAL - now.duration_since(last)
            }
            _ => {
                g.last_sent = Some(now);
                g.pending = false;
                return gst::PadProbeReturn::Ok;
            }
        };
        if !g.pending {
            g.pending = true;
            let (gate, weak) = (gate.clone(), weak.clone());
            // Sending an upstream event only hands the encoder a flag: fine
            // on a runtime worker.
            RUNTIME.spawn(async move {
                tokio::time::sleep(wait).await;
                let due = std::mem::take(&mut gate.lock().unwrap().pending);
                if let (true, Some(pad)) = (due, weak.upgrade()) {
                    // Through this probe again: sent, as the interval is over.
                    pad.push_event(request());
                }
            });
        }
        // Handled, not Drop: the request is consumed here. (With Drop,
        // GStreamer 1.22 unrefs a NULL event on this path: a CRITICAL.)
        gst::PadProbeReturn::Handled
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A src pad counting the key frame requests that reach it, linked to
    /// a sink pad whose requests are merged.
    fn pads() -> (gst::Pad, Arc<AtomicU32>) {
        gst::init().unwrap();
        let seen = Arc::new(AtomicU32::new(0));
        let counter = seen.clone();
        let src = gst::Pad::builder(gst::PadDirection::Src)
            .event_function(move |_, _, event| {
                if is_key_unit_request(&event) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                true
            })
            .build();
        let sink = gst::Pad::builder(gst::PadDirection::Sink).build();
        src.link(&sink).unwrap();
        src.set_active(true).unwrap();
        sink.set_active(true).unwrap();
        merge_requests(&sink);
        // The src pad lives as long as the sink pad's peer link.
        std::mem::forget(src);
        (sink, seen)
    }

    #[test]
    fn a_burst_of_requests_is_one_now_and_one_at_the_end_of_the_interval() {
        let (sink, seen) = pads();
        for _ in 0..20 {
            sink.push_event(request());
        }
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        std::thread::sleep(MIN_INTERVAL + Duration::from_millis(300));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        // Nothing more was asked: nothing more is sent.
        std::thread::sleep(MIN_INTERVAL);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        // Once the interval is over, a request goes through at once.
        sink.push_event(request());
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn other_upstream_events_pass() {
        let (sink, seen) = pads();
        sink.push_event(request());
        assert!(sink.push_event(gst::event::Reconfigure::new()));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
