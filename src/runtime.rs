//! The plugin's one tokio runtime.
//!
//! Every HTTP exchange and every session task runs here. Streaming threads and
//! the application thread never `block_on` it; they hand work over with
//! `spawn` and wait, when they must, on a bounded channel.

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
