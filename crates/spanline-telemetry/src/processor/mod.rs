//! A bounded batch span processor whose export never blocks a request and
//! never wakes a thread per span.
//!
//! `on_end` takes an uncontended lock, appends the span to a bounded queue
//! and returns; when the queue is full the span is dropped and counted. The
//! worker thread is signalled only when a batch's worth is queued (once per
//! batch, not per span), otherwise it wakes when the schedule delay passes
//! or for a flush or shutdown (see `docs/telemetry.md`, "The export path").
//!
//! The worker owns the exporter and a small current-thread tokio runtime:
//! the exporter is built inside it (the OTLP gRPC exporter needs one).
//! `force_flush` and `shutdown` are messages whose answers the caller awaits
//! with a plain (non-async) bounded wait, so the caller's runtime flavour
//! does not matter. Both are bounded by their own deadline, including an
//! export already in flight. At shutdown every span is accounted for:
//! exported, or dropped with a reason ([`ExportStats`]) — still queued at
//! the deadline, in flight at the deadline, or ended after shutdown.
//!
//! Memory is bounded by `max_queue_size` spans in all: the queue and the
//! batches the worker holds count against the same bound.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{Notify, mpsc};

use crate::error::TelemetryError;

mod stats;
mod worker;

use stats::{Counters, Fate};
pub use stats::{ExportStats, ProcessorStats};
use worker::Control;

/// Extra time a caller waits beyond the worker's own deadline, so a reply
/// sent right at the deadline is still received.
const GRACE: Duration = Duration::from_millis(500);

/// Queue and batching settings (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Longest time a span waits in a partial batch (default 5 s).
    pub schedule_delay: Duration,
    /// Bound on one export call (default 30 s).
    pub export_timeout: Duration,
    /// Queue capacity; spans beyond it are dropped (default 2048).
    pub max_queue_size: usize,
    /// Largest batch handed to the exporter (default 512; never more than
    /// the queue size).
    pub max_export_batch_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            schedule_delay: Duration::from_millis(5_000),
            export_timeout: Duration::from_millis(30_000),
            max_queue_size: 2_048,
            max_export_batch_size: 512,
        }
    }
}

impl BatchConfig {
    /// Clamp to usable values: sizes at least 1, the batch no larger than
    /// the queue, the export timeout at least 1 ms.
    pub fn normalized(mut self) -> Self {
        self.max_queue_size = self.max_queue_size.max(1);
        self.max_export_batch_size = self.max_export_batch_size.clamp(1, self.max_queue_size);
        self.export_timeout = self.export_timeout.max(Duration::from_millis(1));
        self
    }
}

/// The queue the request threads append to and the worker drains.
struct Queue {
    spans: Vec<SpanData>,
    /// Spans the worker took and has not yet accounted for.
    held: usize,
    /// No more spans are taken (shutdown began).
    closed: bool,
    /// A caller stopped waiting for shutdown and accounted for every span
    /// queued or held; the worker must not count them again.
    abandoned: bool,
}

/// State shared by the processor handle and its worker.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Signalled once per batch's worth of queued spans.
    ready: Notify,
    counters: Counters,
    max_queue_size: usize,
    max_export_batch_size: usize,
}

impl Shared {
    /// The queue, even if a thread panicked while holding it (every update
    /// under the lock leaves it consistent).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Close the queue and count everything queued or held as dropped at
    /// shutdown: for a caller whose wait ran out (the worker is stuck in an
    /// exporter that ignores its deadline, or gone).
    fn abandon(&self) {
        let (queued, held) = {
            let mut q = self.lock();
            if q.abandoned {
                return;
            }
            q.abandoned = true;
            q.closed = true;
            let held = std::mem::take(&mut q.held);
            (std::mem::take(&mut q.spans), held)
        };
        self.counters.add(Fate::ShutdownQueued, queued.len());
        self.counters.add(Fate::ShutdownInFlight, held);
    }
}

/// The bounded batch span processor (see the module docs).
pub struct BoundedBatchProcessor {
    name: String,
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    config: BatchConfig,
    is_shutdown: AtomicBool,
}

impl fmt::Debug for BoundedBatchProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBatchProcessor")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("stats", &self.stats().snapshot())
            .finish()
    }
}

impl BoundedBatchProcessor {
    /// Start a worker thread named `spanline-export-{name}` that builds its
    /// exporter with `make_exporter` inside its own current-thread tokio
    /// runtime, then batches and exports.
    ///
    /// Returns once the exporter is built (or its error). The `metrics`
    /// counters are registered with the global recorder current at this
    /// call: install the metrics recorder first.
    pub fn spawn<E, F>(
        name: &str,
        config: BatchConfig,
        make_exporter: F,
    ) -> Result<Self, TelemetryError>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E, TelemetryError> + Send + 'static,
    {
        let config = config.normalized();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                spans: Vec::with_capacity(config.max_export_batch_size),
                held: 0,
                closed: false,
                abandoned: false,
            }),
            ready: Notify::new(),
            counters: Counters::new(),
            max_queue_size: config.max_queue_size,
            max_export_batch_size: config.max_export_batch_size,
        });
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<(), TelemetryError>>(1);
        let worker_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("spanline-export-{name}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(TelemetryError::Worker {
                            what: "export worker runtime",
                            reason: e.to_string(),
                        }));
                        return;
                    }
                };
                let exporter = match rt.block_on(async { make_exporter() }) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                rt.block_on(worker::run(exporter, worker_shared, ctrl_rx, config));
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| TelemetryError::Worker {
                what: "export worker",
                reason: e.to_string(),
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(TelemetryError::Worker {
                    what: "export worker",
                    reason: "the exporter was not built within 30 s".into(),
                });
            }
        }
        Ok(BoundedBatchProcessor {
            name: name.to_owned(),
            shared,
            control: ctrl_tx,
            config,
            is_shutdown: AtomicBool::new(false),
        })
    }

    /// A handle on this processor's counters, valid after it is moved into
    /// a provider.
    pub fn stats(&self) -> ProcessorStats {
        ProcessorStats(self.shared.clone())
    }

    /// The effective configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Send a flush or shutdown and wait for its answer, at most `bound`
    /// (plus a short grace for the answer to arrive).
    fn request(
        &self,
        operation: &'static str,
        bound: Duration,
        make: impl FnOnce(Instant, worker::Ack) -> Control,
    ) -> OTelSdkResult {
        let (ack_tx, ack_rx) = std_mpsc::sync_channel(1);
        let deadline = Instant::now() + bound;
        if self.control.send(make(deadline, ack_tx)).is_err() {
            return Err(OTelSdkError::InternalFailure(format!(
                "{operation}: the export worker stopped"
            )));
        }
        match ack_rx.recv_timeout(bound + GRACE) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OTelSdkError::InternalFailure(format!("{operation}: {e}"))),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(bound + GRACE)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(OTelSdkError::InternalFailure(
                format!("{operation}: the export worker stopped"),
            )),
        }
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let shared = &*self.shared;
        let fate = {
            let mut q = shared.lock();
            if q.closed {
                Fate::AfterShutdown
            } else if q.spans.len() + q.held >= shared.max_queue_size {
                Fate::QueueFull
            } else {
                q.spans.push(span);
                let batch_ready = q.spans.len() == shared.max_export_batch_size;
                drop(q);
                if batch_ready {
                    shared.ready.notify_one();
                }
                return;
            }
        };
        // A dropped span is freed here, outside the lock.
        shared.counters.add(fate, 1);
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.is_shutdown.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.request(
            "force_flush",
            self.config.export_timeout,
            |deadline, ack| Control::Flush { deadline, ack },
        )
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.is_shutdown.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let r = self.request("shutdown", timeout, |deadline, ack| Control::Shutdown {
            deadline,
            ack,
        });
        if r.is_err() {
            // Whatever the worker could not settle in time is counted now
            // (a no-op when it answered: it left nothing queued or held).
            self.shared.abandon();
        }
        r
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.control.send(Control::SetResource(resource.clone()));
    }
}
