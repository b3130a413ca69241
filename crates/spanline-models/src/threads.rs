//! Where inference runs: a dedicated pool of blocking threads, never the
//! async runtime's workers, with the request context carried in.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use spanline_core::{RequestContext, StageError};

use crate::error::ModelError;

/// A pool of threads for CPU inference (a rayon pool: candle's kernels
/// parallelise over the pool they run in).
///
/// Every model stage runs its forward passes here, so async workers keep
/// serving I/O while a model computes. The request context travels into
/// the task explicitly, and is also attached as the current OpenTelemetry
/// context while the work runs, so spans created inside (prefill, decode)
/// and third-party code that reads the current context attach to the
/// calling stage's span.
///
/// Size it to the cores you give inference. On a busy two-core machine two
/// threads collapse quantised decoding (measured 54 → 1.8 tokens/s), so
/// tests and CI use one (`SPANLINE_MODEL_THREADS=1`).
#[derive(Clone)]
pub struct InferenceThreads {
    pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for InferenceThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceThreads")
            .field("threads", &self.threads())
            .finish()
    }
}

impl InferenceThreads {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Result<Self, ModelError> {
        if threads == 0 {
            return Err(ModelError::Config(
                "inference needs at least one thread".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("spanline-infer-{i}"))
            .build()
            .map_err(|e| ModelError::Config(format!("cannot start inference threads: {e}")))?;
        Ok(InferenceThreads {
            pool: Arc::new(pool),
        })
    }

    /// The process-wide default pool, created on first use with
    /// `SPANLINE_MODEL_THREADS` threads (else `RAYON_NUM_THREADS`, else one
    /// per available core).
    pub fn shared() -> Result<Self, ModelError> {
        static SHARED: OnceLock<Result<InferenceThreads, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let from = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse().ok());
                let n = from("SPANLINE_MODEL_THREADS")
                    .or_else(|| from("RAYON_NUM_THREADS"))
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                InferenceThreads::new(n).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(ModelError::Config)
    }

    /// How many threads the pool has.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Run `work` on the pool and wait for it, from synchronous code (an
    /// indexing job, a benchmark): its kernels use exactly these threads.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }

    /// Run `work` on the pool with `ctx` carried in; a panic inside becomes
    /// an internal error instead of taking the process down.
    pub async fn run<R, F>(&self, ctx: &RequestContext, work: F) -> Result<R, StageError>
    where
        F: FnOnce(&RequestContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(ctx, move |ctx| {
            let _ = tx.send(work(ctx));
        });
        rx.await
            .map_err(|_| StageError::internal("inference task panicked"))
    }

    /// Start `work` on the pool with `ctx` carried in and return at once
    /// (for streaming: the work sends its results through a channel). A
    /// panic inside is contained; `work`'s captured senders drop, which the
    /// receiver sees as the end.
    pub fn spawn<F>(&self, ctx: &RequestContext, work: F)
    where
        F: FnOnce(&RequestContext) + Send + 'static,
    {
        let ctx = ctx.clone();
        self.pool.spawn(move || {
            let _attached = ctx.otel_context().clone().attach();
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| work(&ctx)));
        });
    }
}
