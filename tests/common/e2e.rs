//! End-to-end harness: real webrtcbin peers over loopback, ICE pinned to
//! 127.0.0.1, media counted where it comes out.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;

pub static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstwhipwhep::plugin_register_static().unwrap();
    });
}

/// Polls `f` every 10 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Counts buffers per media kind ("video", "audio") on whatever pads a
/// pipeline links through `count_pad`.
#[derive(Default, Clone)]
pub struct Counters {
    pub video: Arc<AtomicU64>,
    pub audio: Arc<AtomicU64>,
    pub caps: Arc<Mutex<Vec<String>>>,
}

impl Counters {
    pub fn video(&self) -> u64 {
        self.video.load(Ordering::SeqCst)
    }
    pub fn audio(&self) -> u64 {
        self.audio.load(Ordering::SeqCst)
    }

    /// The caps of the streams counted so far.
    pub fn caps(&self) -> Vec<String> {
        self.caps.lock().unwrap().clone()
    }

    /// Whether a stream whose caps begin with `prefix` was counted.
    pub fn has_caps(&self, prefix: &str) -> bool {
        self.caps().iter().any(|c| c.starts_with(prefix))
    }

    /// Asserts that a stream whose caps begin with `prefix` was counted.
    pub fn assert_caps(&self, prefix: &str) {
        assert!(self.has_caps(prefix), "{:?}", self.caps());
    }

    /// Links `pad` to a fakesink in `bin` and counts its buffers.
    pub fn count_pad(&self, bin: &gst::Bin, pad: &gst::Pad) {
        let queue = gst::ElementFactory::make("queue").build().unwrap();
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .unwrap();
        bin.add_many([&queue, &sink]).unwrap();
        queue.link(&sink).unwrap();
        queue.sync_state_with_parent().unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&queue.static_pad("sink").unwrap()).unwrap();
        self.count_sink(&sink);
    }
}

/// Collects bus messages of a pipeline.
#[derive(Default, Clone)]
pub struct Messages(
    pub Arc<Mutex<Vec<gst::Message>>>,
    /// When each message arrived, in the same order.
    Arc<Mutex<Vec<Instant>>>,
);

impl Messages {
    pub fn attach(pipeline: &gst::Pipeline) -> Messages {
        let msgs = Messages::default();
        let sink = msgs.clone();
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            let mut all = sink.0.lock().unwrap();
            sink.1.lock().unwrap().push(Instant::now());
            all.push(msg.clone());
            gst::BusSyncReply::Drop
        });
        msgs
    }

    /// When the element messages named `name` arrived.
    pub fn arrivals(&self, name: &str) -> Vec<Instant> {
        let all = self.0.lock().unwrap();
        let times = self.1.lock().unwrap();
        all.iter()
            .zip(times.iter())
            .filter(|(m, _)| {
                m.structure().is_some_and(|s| s.name() == name)
                    && matches!(m.view(), gst::MessageView::Element(_))
            })
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn errors(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m.view() {
                // The message itself must say what happened, not only the debug text.
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Warning(w) => Some(w.error().to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn element(&self, name: &str) -> Vec<gst::Structure> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Element(e) => e
                    .structure()
                    .filter(|s| s.name() == name)
                    .map(|s| s.to_owned()),
                _ => None,
            })
            .collect()
    }

    pub fn has_eos(&self) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|m| matches!(m.view(), gst::MessageView::Eos(_)))
    }
}

/// whipserversrc on 127.0.0.1, counting what its publishers send.
pub struct WhipServer {
    pub pipeline: gst::Pipeline,
    pub counters: Counters,
    pub messages: Messages,
    pub base: String,
}

impl WhipServer {
    pub fn start(extra: &str) -> WhipServer {
        init();
        let server = gst::parse::launch(&format!(
            "whipserversrc name=server address=127.0.0.1:0 ice-addresses=127.0.0.1 {extra}"
        ))
        .unwrap();
        let pipeline = gst::Pipeline::new();
        pipeline.add(&server).unwrap();
        let counters = Counters::default();
        let c = counters.clone();
        let bin = pipeline.clone().upcast::<gst::Bin>();
        server.connect_pad_added(move |_, pad| c.count_pad(&bin, pad));
        let messages = Messages::attach(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        let addr = server.property::<Option<String>>("bound-address").unwrap();
        WhipServer {
            pipeline,
            counters,
            messages,
            base: format!("http://{addr}"),
        }
    }

    /// The WHIP endpoint the tests publish to.
    pub fn endpoint(&self) -> String {
        format!("{}/whip/cam", self.base)
    }

    /// Publishers removed by a DELETE.
    pub fn deletes(&self) -> usize {
        self.messages.element("publisher-removed").len()
    }
}

/// A whipsink named `whip` publishing to `endpoint` with ICE on loopback,
/// `extra` properties after.
pub fn whipsink(endpoint: &str, extra: &str) -> String {
    format!("whipsink name=whip whip-endpoint={endpoint} ice-addresses=127.0.0.1 {extra}")
}

/// How long media may take to arrive on loopback.
pub const MEDIA_WAIT: Duration = Duration::from_secs(10);

/// Waits for `video`/`audio` frames at `server` from `client`, then stops
/// the client and checks it ended cleanly: one session, DELETEd, no ERROR.
pub fn publish_and_count(server: &WhipServer, client: &Client, video: u64, audio: u64) {
    let arrived = wait_until(MEDIA_WAIT, || {
        server.counters.video() >= video && server.counters.audio() >= audio
    });
    assert!(
        arrived,
        "media did not arrive: video {} audio {}, client errors {:?}, server errors {:?}",
        server.counters.video(),
        server.counters.audio(),
        client.messages.errors(),
        server.messages.errors()
    );
    assert_eq!(client.messages.element("session-started").len(), 1);
    client.stop();
    assert!(
        wait_until(Duration::from_secs(2), || server.deletes() == 1),
        "the server saw no DELETE"
    );
    assert!(
        client.messages.errors().is_empty(),
        "{:?}",
        client.messages.errors()
    );
}

impl Drop for WhipServer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A client pipeline from a gst-launch description.
pub struct Client {
    pub pipeline: gst::Pipeline,
    pub messages: Messages,
}

impl Client {
    pub fn start(desc: &str) -> Client {
        init();
        let pipeline = gst::parse::launch(desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let messages = Messages::attach(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        Client { pipeline, messages }
    }

    /// Waits for the first ERROR and returns its text.
    pub fn wait_error(&self, limit: Duration) -> Option<String> {
        wait_until(limit, || !self.messages.errors().is_empty());
        self.messages.errors().into_iter().next()
    }

    /// Sets NULL and returns how long it took.
    pub fn stop(&self) -> Duration {
        let start = Instant::now();
        self.pipeline.set_state(gst::State::Null).unwrap();
        start.elapsed()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

pub const VP8_SRC: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! vp8enc deadline=1 cpu-used=8";
pub const H264_SRC: &str = "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency sliced-threads=false speed-preset=ultrafast key-int-max=60";
pub const OPUS_SRC: &str =
    "audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! opusenc";

impl Counters {
    /// Links `pad` to `chain` (a gst-launch fragment, e.g. "rtpvp8depay !
    /// vp8dec") ending in a fakesink, and counts what reaches the fakesink.
    /// Call it from pad-added: whepsrc chooses its output kind from what the
    /// pad is linked to right after.
    pub fn decode_pad(&self, bin: &gst::Bin, pad: &gst::Pad, chain: &str) {
        let decode = gst::parse::bin_from_description(chain, true).unwrap();
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .unwrap();
        bin.add_many([decode.upcast_ref(), &sink]).unwrap();
        decode.link(&sink).unwrap();
        decode.sync_state_with_parent().unwrap();
        sink.sync_state_with_parent().unwrap();
        pad.link(&decode.static_pad("sink").unwrap()).unwrap();
        self.count_sink(&sink);
    }

    /// Counts the buffers reaching `sink`, by the media of their caps.
    pub fn count_sink(&self, sink: &gst::Element) {
        let counters = self.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
                let caps = pad
                    .current_caps()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let counter = if caps.starts_with("audio") || caps.contains("media=(string)audio") {
                    &counters.audio
                } else {
                    &counters.video
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut seen = counters.caps.lock().unwrap();
                if !seen.contains(&caps) {
                    seen.push(caps);
                }
                gst::PadProbeReturn::Ok
            });
    }
}

/// whepserversink on 127.0.0.1 serving `inputs`: gst-launch branches that
/// end in `server.` (e.g. `"{VP8_SRC} ! server."`).
pub struct WhepServer {
    pub pipeline: gst::Pipeline,
    pub messages: Messages,
    pub base: String,
}

impl WhepServer {
    pub fn start(inputs: &str, extra: &str) -> WhepServer {
        init();
        let pipeline = gst::parse::launch(&format!(
            "whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1 {extra} {inputs}"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let messages = Messages::attach(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        let server = pipeline.by_name("server").unwrap();
        let addr = server.property::<Option<String>>("bound-address").unwrap();
        WhepServer {
            pipeline,
            messages,
            base: format!("http://{addr}"),
        }
    }

    /// The WHEP endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("{}/whep", self.base)
    }

    /// Locations of the viewers added so far.
    pub fn viewers_added(&self) -> Vec<String> {
        self.messages
            .element("viewer-added")
            .iter()
            .map(|s| s.get::<String>("location").unwrap())
            .collect()
    }

    /// (location, reason) of the viewers removed so far.
    pub fn viewers_removed(&self) -> Vec<(String, String)> {
        self.messages
            .element("viewer-removed")
            .iter()
            .map(|s| {
                (
                    s.get::<String>("location").unwrap(),
                    s.get::<String>("reason").unwrap(),
                )
            })
            .collect()
    }

    /// Viewers removed by a DELETE.
    pub fn deletes(&self) -> usize {
        self.viewers_removed()
            .iter()
            .filter(|(_, reason)| reason == "DELETE")
            .count()
    }
}

impl Drop for WhepServer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A whepsrc pipeline counting decoded frames.
pub struct Player {
    pub pipeline: gst::Pipeline,
    pub messages: Messages,
    pub counters: Counters,
}

impl Player {
    /// `desc` is a gst-launch pipeline whose fakesinks receive decoded media
    /// (e.g. `whepsrc ... ! videoconvert ! fakesink`); every fakesink is
    /// counted.
    pub fn launch(desc: &str) -> Player {
        init();
        let pipeline = gst::parse::launch(desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let counters = Counters::default();
        for el in pipeline.iterate_recurse().into_iter().flatten() {
            if el.factory().is_some_and(|f| f.name() == "fakesink") {
                counters.count_sink(&el);
            }
        }
        Self::play(pipeline, counters)
    }

    /// A pipeline holding `whepsrc` (its properties after the element name);
    /// each src pad is linked to `chain` (see [`Counters::decode_pad`]).
    pub fn dynamic(whepsrc: &str, chain: &str) -> Player {
        init();
        let pipeline = gst::Pipeline::new();
        // A one-element description gives that element itself.
        let src = gst::parse::launch(whepsrc).unwrap();
        pipeline.add(&src).unwrap();
        let counters = Counters::default();
        let (c, bin, chain) = (
            counters.clone(),
            pipeline.clone().upcast::<gst::Bin>(),
            chain.to_string(),
        );
        src.connect_pad_added(move |_, pad| c.decode_pad(&bin, pad, &chain));
        Self::play(pipeline, counters)
    }

    fn play(pipeline: gst::Pipeline, counters: Counters) -> Player {
        let messages = Messages::attach(&pipeline);
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            panic!("PLAYING failed ({e:?}): {:?}", messages.errors());
        }
        Player {
            pipeline,
            messages,
            counters,
        }
    }

    pub fn whepsrc(&self) -> gst::Element {
        self.pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == "whepsrc"))
            .unwrap()
    }

    /// Caps of whepsrc's src pads, as negotiated.
    pub fn output_caps(&self) -> Vec<String> {
        self.whepsrc()
            .src_pads()
            .iter()
            .filter_map(|p| p.current_caps())
            .map(|c| c.to_string())
            .collect()
    }

    /// Waits until at least `video` video and `audio` audio frames arrived.
    pub fn wait_frames(&self, limit: Duration, video: u64, audio: u64) -> bool {
        wait_until(limit, || {
            self.counters.video() >= video && self.counters.audio() >= audio
        })
    }

    pub fn wait_error(&self, limit: Duration) -> Option<String> {
        wait_until(limit, || !self.messages.errors().is_empty());
        self.messages.errors().into_iter().next()
    }

    /// The session URL of session-started, if any.
    pub fn location(&self) -> Option<String> {
        self.messages
            .element("session-started")
            .first()
            .and_then(|s| s.get::<Option<String>>("location").ok().flatten())
    }

    /// Sets NULL and returns how long it took.
    pub fn stop(&self) -> Duration {
        let start = Instant::now();
        self.pipeline.set_state(gst::State::Null).unwrap();
        start.elapsed()
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Counts the buffers reaching `sink`'s sink pad.
pub fn count_buffers(sink: &gst::Element) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = n.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    n
}
