//! The picture size whipsink's own video encoder sends at a target bitrate.
//!
//! Congestion control lowers the bitrate, but an encoder cannot make a 720p
//! picture arbitrarily small: measured with vp8enc (cpu-used=8, moving
//! content), a 720p stream asked for 250 kbit/s still makes 345 kbit/s of
//! inter frames and 12.5 kB key frames, which take longer to cross a
//! 300 kbit/s link than a receiver's jitterbuffer waits; losses then ask
//! for key frames that never arrive whole, and the picture freezes for good
//! (examples/bench_shaped.rs). At 640x360 the same encoder makes 222 kbit/s
//! and 5.7 kB key frames. So, as real-time encoders do, the picture is
//! scaled down when the bitrate leaves too few bits per pixel, and back up
//! when it returns.

use gst::prelude::*;

/// Fractions of the input's width and height, largest first.
const SCALES: [(u32, u32); 4] = [(1, 1), (3, 4), (1, 2), (1, 4)];
/// Bits per pixel per frame below which a step down is taken (720p30 at
/// 830 kbit/s; 360p30 at 210 kbit/s).
const MIN_BITS_PER_PIXEL: f64 = 0.03;
/// A step up needs this much more, so that an estimate hovering at a
/// threshold does not switch sizes (each switch costs a key frame).
const STEP_UP_MARGIN: f64 = 1.3;
/// Neither side smaller than this.
const MIN_SIDE: u32 = 64;

/// The input's size and frame rate, as the scaler sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Input {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

/// The size to encode `input` at for `bps`, given the size sent now.
pub fn size_for(input: Input, bps: u32, current: (u32, u32)) -> (u32, u32) {
    let size = |(n, d): (u32, u32)| {
        let side = |v: u32| ((v * n / d) & !1).max(MIN_SIDE.min(v));
        (side(input.width), side(input.height))
    };
    let bits_per_pixel = |(w, h): (u32, u32)| f64::from(bps) / (f64::from(w * h) * input.fps);
    let current_area = current.0 * current.1;
    SCALES
        .iter()
        .map(|s| size(*s))
        .find(|&(w, h)| {
            let needed = match w * h > current_area {
                true => MIN_BITS_PER_PIXEL * STEP_UP_MARGIN,
                false => MIN_BITS_PER_PIXEL,
            };
            bits_per_pixel((w, h)) >= needed
        })
        .unwrap_or_else(|| size(SCALES[SCALES.len() - 1]))
}

/// `videoscale ! capsfilter`, to put before a raw video encoder; the
/// capsfilter is the one `follow_bitrate` sets. Unconstrained (the input's
/// size) until then.
pub fn scaler() -> Result<[gst::Element; 2], &'static str> {
    let scale = gst::ElementFactory::make("videoscale")
        .build()
        .map_err(|_| "videoscale")?;
    let filter = gst::ElementFactory::make("capsfilter")
        .build()
        .map_err(|_| "capsfilter")?;
    Ok([scale, filter])
}

/// Sets the size `filter` (from `scaler`) lets through for `bps`; returns
/// the new size if it changed.
pub fn follow_bitrate(filter: &gst::Element, bps: u32) -> Option<(u32, u32)> {
    // The input's size is on the scaler's sink pad: the filter's own sink
    // pad carries the size it let through last, and sizes taken from it
    // would shrink by 3/4 at each step and never grow back to the input's.
    let caps = filter
        .static_pad("sink")?
        .peer()?
        .parent_element()?
        .static_pad("sink")?
        .current_caps()?;
    let s = caps.structure(0)?;
    let fps = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map_or(30.0, |f| f64::from(f.numer()) / f64::from(f.denom()));
    let input = Input {
        width: s.get::<i32>("width").ok()?.try_into().ok()?,
        height: s.get::<i32>("height").ok()?.try_into().ok()?,
        fps,
    };
    // The size last asked for (it reaches the src pad only with the next
    // frame); none yet: the input's.
    let current = filter
        .property::<Option<gst::Caps>>("caps")
        .and_then(|c| {
            let s = c.structure(0)?;
            Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
        })
        .map_or((input.width, input.height), |(w, h)| (w as u32, h as u32));
    let size = size_for(input, bps, current);
    if size == current {
        return None;
    }
    let caps = if size == (input.width, input.height) {
        gst::Caps::new_any()
    } else {
        gst::Caps::builder("video/x-raw")
            .field("width", size.0 as i32)
            .field("height", size.1 as i32)
            .build()
    };
    filter.set_property("caps", caps);
    Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HD: Input = Input {
        width: 1280,
        height: 720,
        fps: 30.0,
    };

    #[test]
    fn the_size_steps_down_with_the_bitrate() {
        let full = (1280, 720);
        assert_eq!(size_for(HD, 2_000_000, full), full);
        assert_eq!(size_for(HD, 1_000_000, full), full);
        assert_eq!(size_for(HD, 700_000, full), (960, 540));
        assert_eq!(size_for(HD, 300_000, full), (640, 360));
        assert_eq!(size_for(HD, 200_000, full), (320, 180));
        assert_eq!(size_for(HD, 10_000, full), (320, 180));
    }

    #[test]
    fn a_step_up_needs_a_margin() {
        // 360p30 needs 207 kbit/s to stay, 270 to be stepped up to.
        assert_eq!(size_for(HD, 240_000, (320, 180)), (320, 180));
        assert_eq!(size_for(HD, 240_000, (640, 360)), (640, 360));
        assert_eq!(size_for(HD, 280_000, (320, 180)), (640, 360));
    }

    /// Waits until frames of `size` pass `filter`.
    fn frames_at(filter: &gst::Element, size: (u32, u32)) -> bool {
        let pad = filter.static_pad("src").unwrap();
        for _ in 0..200 {
            let now = pad.current_caps().and_then(|c| {
                let s = c.structure(0)?;
                Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
            });
            if now == Some((size.0 as i32, size.1 as i32)) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn the_size_returns_to_the_inputs_once_the_bitrate_does() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc")
            .property("is-live", true)
            .build()
            .unwrap();
        let input = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("width", 1280)
                    .field("height", 720)
                    .field("framerate", gst::Fraction::new(30, 1))
                    .build(),
            )
            .build()
            .unwrap();
        let [scale, filter] = scaler().unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        let chain = [&src, &input, &scale, &filter, &sink];
        pipeline.add_many(chain).unwrap();
        gst::Element::link_many(chain).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        assert!(frames_at(&filter, (1280, 720)));
        assert_eq!(follow_bitrate(&filter, 300_000), Some((640, 360)));
        assert!(frames_at(&filter, (640, 360)));
        // Judged against the input's 720p, not the 360p the filter passes
        // now: one step down, then straight back.
        assert_eq!(follow_bitrate(&filter, 200_000), Some((320, 180)));
        assert!(frames_at(&filter, (320, 180)));
        assert_eq!(follow_bitrate(&filter, 2_000_000), Some((1280, 720)));
        assert!(frames_at(&filter, (1280, 720)));
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn small_inputs_stay_whole_and_sides_stay_even() {
        let small = Input {
            width: 320,
            height: 240,
            fps: 30.0,
        };
        assert_eq!(size_for(small, 300_000, (320, 240)), (320, 240));
        let odd = Input {
            width: 1279,
            height: 719,
            fps: 30.0,
        };
        let (w, h) = size_for(odd, 300_000, (1279, 719));
        assert_eq!((w % 2, h % 2), (0, 0));
    }
}
