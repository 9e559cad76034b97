//! Running an example's pipeline the way a command-line application should:
//! until EOS, an ERROR (printed, exit status 1) or Ctrl-C. Ctrl-C sends EOS
//! so that the elements stop cleanly (whipsink and whepsrc DELETE their
//! session), waits at most 3 s for it to come through, then stops the
//! pipeline and exits 0. A second Ctrl-C exits at once.
//!
//! The SIGINT handler is the application's: the plugin itself never
//! installs one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

/// How long a stop waits for EOS before setting the pipeline to NULL anyway.
const EOS_WAIT: Duration = Duration::from_secs(3);

/// A flag that Ctrl-C (SIGINT) sets.
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // glib 0.22 has no binding for g_unix_signal_add; tokio (already a
    // dependency) has a portable one. Its own small runtime, on its own
    // thread, leaves the plugin's runtime alone.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping (Ctrl-C again to quit at once)");
                flag.store(true, Ordering::SeqCst);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    });
    stop
}

/// Sets `pipeline` to PLAYING; if that fails, prints the ERROR the element
/// posted (with `who` in front) and exits 1.
pub fn start(pipeline: &gst::Pipeline, who: &str) {
    if pipeline.set_state(gst::State::Playing).is_ok() {
        return;
    }
    let error = pipeline
        .bus()
        .and_then(|bus| {
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        })
        .and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        });
    eprintln!(
        "{who}: {}",
        error.as_deref().unwrap_or("the pipeline failed to start")
    );
    pipeline.set_state(gst::State::Null).ok();
    std::process::exit(1);
}

/// Runs `pipeline` (already PLAYING) until EOS, ERROR or `stop()` is true;
/// calls `on_element` with every element message. Returns the exit status:
/// 0, or 1 after an ERROR (which is printed with `who` in front).
pub fn run(
    pipeline: &gst::Pipeline,
    who: &str,
    stop: impl Fn() -> bool,
    mut on_element: impl FnMut(&gst::StructureRef),
) -> i32 {
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut eos_deadline: Option<Instant> = None;
    let status = loop {
        if eos_deadline.is_none() && stop() {
            pipeline.send_event(gst::event::Eos::new());
            eos_deadline = Some(Instant::now() + EOS_WAIT);
        }
        if eos_deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!("{who}: no EOS within {EOS_WAIT:?}, stopping anyway");
            break 0;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break 0,
            gst::MessageView::Error(e) => {
                eprintln!("{who}: {}", e.error());
                break 1;
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    on_element(s);
                }
            }
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null).ok();
    status
}
