//! The plugin's one tokio runtime.
//!
//! Every HTTP exchange, session supervisor, server listener and timer runs
//! here. Nothing calls `block_on`: streaming threads and the application
//! thread hand work over with `spawn`. The one wait for it is stopping, which
//! waits for its DELETEs on a std channel, with a deadline
//! (`session::teardown_all`). See docs/design.md, "Threads".

use std::sync::LazyLock;
use std::time::{Duration, Instant};

pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("whipwhep-rt")
        .enable_all()
        .build()
        .expect("the plugin's tokio runtime could not start")
});

/// A boxed future, for trait methods that return one (handlers, roles).
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// The grid the plugin's watch timers wake on (`sleep_until_tick`).
const TICK: Duration = Duration::from_millis(100);
static TICK_EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// `deadline` rounded up to the next `TICK` of a process-wide grid.
fn on_tick(deadline: Instant) -> Instant {
    let epoch = *TICK_EPOCH;
    let since = deadline.saturating_duration_since(epoch).as_nanos();
    let tick = TICK.as_nanos();
    let ticks = since.div_ceil(tick);
    epoch + Duration::from_nanos((ticks * tick) as u64)
}

/// Sleeps until `deadline`, up to `TICK` later: timers that need no
/// precision (media and silence timeouts, stats sampling) of every session
/// in the process then fire together, one wake-up of the runtime for all of
/// them instead of one each (a hundred sessions watching a 500 ms media
/// timeout woke it 200 times a second).
pub async fn sleep_until_tick(deadline: Instant) {
    tokio::time::sleep_until(on_tick(deadline).into()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_a_shared_grid() {
        let base = Instant::now();
        for ms in [0u64, 1, 37, 99, 100, 101, 250, 1234] {
            let t = base + Duration::from_millis(ms);
            let aligned = on_tick(t);
            assert!(aligned >= t, "{ms} ms: woken before its deadline");
            assert!(aligned - t < TICK, "{ms} ms: more than a tick late");
            // On the grid: a deadline already on it stays there, and every
            // deadline in the same tick meets at the same instant.
            assert_eq!(on_tick(aligned), aligned);
            assert_eq!(on_tick(aligned - Duration::from_millis(1)), aligned);
        }
    }
}
