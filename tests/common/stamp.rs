//! A frame counter drawn into the picture and read back after decoding:
//! 16 black/white 20×20 blocks along the top of the Y plane (I420 320×240),
//! which survive lossy coding. Shared by the continuity tests and benchmark.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::e2e::{init, Client, Messages};

pub const W: usize = 320;
pub const H: usize = 240;
const BITS: usize = 16;
const BLOCK: usize = 20;

/// Draws `n` as 16 black/white 20×20 blocks along the top of the Y plane.
pub fn stamp(frame: &mut [u8], n: u16) {
    for bit in 0..BITS {
        let v = if n >> bit & 1 == 1 { 235 } else { 16 };
        for y in 0..BLOCK {
            let row = y * W + bit * BLOCK;
            frame[row..row + BLOCK].fill(v);
        }
    }
}

/// Reads the counter back from the centre of each block.
pub fn read_stamp(frame: &[u8]) -> u16 {
    let mut n = 0u16;
    for bit in 0..BITS {
        let mut sum = 0u32;
        for y in 5..15 {
            for x in 5..15 {
                sum += frame[y * W + bit * BLOCK + x] as u32;
            }
        }
        if sum / 100 > 128 {
            n |= 1 << bit;
        }
    }
    n
}

/// whepserversink serving a stamped test pattern.
pub struct StampedServer {
    pub pipeline: gst::Pipeline,
    pub messages: Messages,
    pub base: String,
}

impl StampedServer {
    pub fn start(extra: &str) -> StampedServer {
        init();
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc is-live=true pattern=black ! video/x-raw,format=I420,width={W},height={H},framerate=30/1 \
             ! identity name=stamp ! vp8enc deadline=1 cpu-used=8 target-bitrate=1000000 keyframe-max-dist=300 \
             ! whepserversink name=server address=127.0.0.1:0 ice-addresses=127.0.0.1 {extra}"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let n = std::sync::atomic::AtomicU16::new(0);
        pipeline
            .by_name("stamp")
            .unwrap()
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer_mut() {
                    let mut map = buffer.make_mut().map_writable().unwrap();
                    stamp(
                        &mut map,
                        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    );
                }
                gst::PadProbeReturn::Ok
            });
        let messages = Messages::attach(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        let addr = pipeline
            .by_name("server")
            .unwrap()
            .property::<Option<String>>("bound-address")
            .unwrap();
        StampedServer {
            pipeline,
            messages,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for StampedServer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// (counter, pts, discont) of every decoded frame a whepsrc pipeline outputs.
pub type Frames = Arc<Mutex<Vec<(u16, gst::ClockTime, bool)>>>;

pub fn play(endpoint: &str, extra: &str) -> (Client, Frames) {
    let client = Client::start(&format!(
        "whepsrc name=src whep-endpoint={endpoint} ice-addresses=127.0.0.1 media=video {extra} \
         ! videoconvert ! video/x-raw,format=I420,width={W},height={H} ! fakesink name=out sync=false"
    ));
    let frames: Frames = Arc::default();
    let f = frames.clone();
    client
        .pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let map = buffer.map_readable().unwrap();
                f.lock().unwrap().push((
                    read_stamp(&map),
                    buffer.pts().unwrap_or_default(),
                    buffer.flags().contains(gst::BufferFlags::DISCONT),
                ));
            }
            gst::PadProbeReturn::Ok
        });
    (client, frames)
}
