//! The plugin's one tokio runtime.
//!
//! Every HTTP exchange, session supervisor, server listener and timer runs
//! here. Nothing calls `block_on`: streaming threads and the application
//! thread hand work over with `spawn`. The one wait for it is stopping, which
//! waits for its DELETEs on a std channel, with a deadline
//! (`session::teardown_all`). See docs/design.md, "Threads".

use std::sync::LazyLock;

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
