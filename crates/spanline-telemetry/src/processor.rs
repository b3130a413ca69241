//! A bounded batch span processor whose export never blocks a request.
//!
//! `on_end` does one non-blocking `try_send` into a bounded queue. When the
//! queue is full the span is dropped and counted. A dedicated worker thread
//! owns the exporter and a small current-thread tokio runtime: the exporter
//! is built inside that runtime (the OTLP gRPC exporter needs one), each
//! export runs under `tokio::time::timeout`, and `force_flush` / `shutdown`
//! are messages whose replies the caller awaits with a bounded, plain
//! (non-async) wait. So the caller's runtime flavour does not matter: the
//! guard can be dropped inside a current-thread runtime, a multi-thread one,
//! or with no runtime at all.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use metrics::Counter;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use spanline_core::semconv::metric;
use tokio::sync::mpsc;

use crate::error::TelemetryError;

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

/// A snapshot of a processor's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportStats {
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Spans dropped because their export failed or timed out.
    pub dropped_export_failed: u64,
    /// Spans ended after the processor shut down.
    pub dropped_after_shutdown: u64,
}

impl ExportStats {
    /// All dropped spans, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_failed + self.dropped_after_shutdown
    }
}

impl std::ops::Add for ExportStats {
    type Output = ExportStats;
    fn add(self, o: ExportStats) -> ExportStats {
        ExportStats {
            exported: self.exported + o.exported,
            dropped_queue_full: self.dropped_queue_full + o.dropped_queue_full,
            dropped_export_failed: self.dropped_export_failed + o.dropped_export_failed,
            dropped_after_shutdown: self.dropped_after_shutdown + o.dropped_after_shutdown,
        }
    }
}

struct Counters {
    exported: AtomicU64,
    queue_full: AtomicU64,
    export_failed: AtomicU64,
    after_shutdown: AtomicU64,
    last_error: Mutex<Option<String>>,
    m_exported: Counter,
    m_queue_full: Counter,
    m_export_failed: Counter,
    m_after_shutdown: Counter,
}

impl Counters {
    fn new() -> Self {
        Counters {
            exported: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            export_failed: AtomicU64::new(0),
            after_shutdown: AtomicU64::new(0),
            last_error: Mutex::new(None),
            m_exported: metrics::counter!(metric::SPANS_EXPORTED),
            m_queue_full: metrics::counter!(metric::SPANS_DROPPED, metric::LABEL_REASON => "queue_full"),
            m_export_failed: metrics::counter!(metric::SPANS_DROPPED, metric::LABEL_REASON => "export_failed"),
            m_after_shutdown: metrics::counter!(metric::SPANS_DROPPED, metric::LABEL_REASON => "shutdown"),
        }
    }

    fn exported(&self, n: u64) {
        self.exported.fetch_add(n, Ordering::Relaxed);
        self.m_exported.increment(n);
    }

    fn export_failed(&self, n: u64, why: String) {
        self.export_failed.fetch_add(n, Ordering::Relaxed);
        self.m_export_failed.increment(n);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(why);
        }
    }
}

/// A cheap, cloneable view of one processor's counters.
#[derive(Clone)]
pub struct ProcessorStats(Arc<Counters>);

impl ProcessorStats {
    /// Current counter values.
    pub fn snapshot(&self) -> ExportStats {
        let c = &self.0;
        ExportStats {
            exported: c.exported.load(Ordering::Relaxed),
            dropped_queue_full: c.queue_full.load(Ordering::Relaxed),
            dropped_export_failed: c.export_failed.load(Ordering::Relaxed),
            dropped_after_shutdown: c.after_shutdown.load(Ordering::Relaxed),
        }
    }

    /// The last export error, if any (for diagnostics only).
    pub fn last_export_error(&self) -> Option<String> {
        self.0.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl fmt::Debug for ProcessorStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProcessorStats")
            .field(&self.snapshot())
            .finish()
    }
}

enum Control {
    SetResource(Resource),
    Flush {
        deadline: Instant,
        ack: std_mpsc::SyncSender<Result<(), String>>,
    },
    Shutdown {
        deadline: Instant,
        ack: std_mpsc::SyncSender<Result<(), String>>,
    },
}

/// The bounded batch span processor (see the module docs).
pub struct BoundedBatchProcessor {
    name: String,
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    counters: Arc<Counters>,
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
        let (span_tx, span_rx) = mpsc::channel(config.max_queue_size);
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::new());
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<(), TelemetryError>>(1);
        let worker_counters = counters.clone();
        let thread_name = format!("spanline-export-{name}");
        std::thread::Builder::new()
            .name(thread_name)
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
                rt.block_on(worker_loop(
                    exporter,
                    span_rx,
                    ctrl_rx,
                    config,
                    worker_counters,
                ));
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
            spans: span_tx,
            control: ctrl_tx,
            counters,
            config,
            is_shutdown: AtomicBool::new(false),
        })
    }

    /// A handle on this processor's counters, valid after it is moved into
    /// a provider.
    pub fn stats(&self) -> ProcessorStats {
        ProcessorStats(self.counters.clone())
    }

    /// The effective configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    fn request(
        &self,
        operation: &'static str,
        bound: Duration,
        make: impl FnOnce(Instant, std_mpsc::SyncSender<Result<(), String>>) -> Control,
    ) -> OTelSdkResult {
        let (ack_tx, ack_rx) = std_mpsc::sync_channel(1);
        let deadline = Instant::now() + bound;
        self.control
            .send(make(deadline, ack_tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
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
        match self.spans.try_send(span) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                self.counters.m_queue_full.increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.after_shutdown.fetch_add(1, Ordering::Relaxed);
                self.counters.m_after_shutdown.increment(1);
            }
        }
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
        let bound = timeout.min(self.config.export_timeout);
        self.request("shutdown", bound, |deadline, ack| Control::Shutdown {
            deadline,
            ack,
        })
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.control.send(Control::SetResource(resource.clone()));
    }
}

async fn worker_loop<E: SpanExporter>(
    mut exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    config: BatchConfig,
    counters: Arc<Counters>,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(config.max_export_batch_size);
    let mut next_export = tokio::time::Instant::now() + config.schedule_delay;
    loop {
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                Some(Control::SetResource(r)) => exporter.set_resource(&r),
                Some(Control::Flush { deadline, ack }) => {
                    drain(&mut spans, &mut batch, config.max_queue_size);
                    let r = export_all(&exporter, &mut batch, &config, &counters, deadline, false).await;
                    let _ = ack.send(r);
                    next_export = tokio::time::Instant::now() + config.schedule_delay;
                }
                Some(Control::Shutdown { deadline, ack }) => {
                    spans.close();
                    drain(&mut spans, &mut batch, usize::MAX);
                    let mut r = export_all(&exporter, &mut batch, &config, &counters, deadline, true).await;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let closed = exporter.shutdown_with_timeout(left.max(Duration::from_millis(1)));
                    if let (Err(e), true) = (closed, r.is_ok()) {
                        r = Err(e.to_string());
                    }
                    let _ = ack.send(r);
                    return;
                }
                None => {
                    // Every handle is gone without a shutdown: last export.
                    spans.close();
                    drain(&mut spans, &mut batch, usize::MAX);
                    let deadline = Instant::now() + config.export_timeout;
                    let _ = export_all(&exporter, &mut batch, &config, &counters, deadline, true).await;
                    let _ = exporter.shutdown_with_timeout(Duration::from_millis(100));
                    return;
                }
            },
            span = spans.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    // Take what else is queued without another select round.
                    while batch.len() < config.max_export_batch_size {
                        match spans.try_recv() {
                            Ok(s) => batch.push(s),
                            Err(_) => break,
                        }
                    }
                    if batch.len() >= config.max_export_batch_size {
                        let chunk = std::mem::take(&mut batch);
                        let _ = export_one(&exporter, chunk, config.export_timeout, &counters).await;
                        next_export = tokio::time::Instant::now() + config.schedule_delay;
                    }
                }
                None => {
                    // The processor is gone without a shutdown: last export.
                    let deadline = Instant::now() + config.export_timeout;
                    let _ = export_all(&exporter, &mut batch, &config, &counters, deadline, true).await;
                    let _ = exporter.shutdown_with_timeout(Duration::from_millis(100));
                    return;
                }
            },
            _ = tokio::time::sleep_until(next_export) => {
                if !batch.is_empty() {
                    let chunk = std::mem::take(&mut batch);
                    let _ = export_one(&exporter, chunk, config.export_timeout, &counters).await;
                }
                next_export = tokio::time::Instant::now() + config.schedule_delay;
            }
        }
    }
}

/// Move up to `limit` queued spans into `batch` without waiting.
fn drain(spans: &mut mpsc::Receiver<SpanData>, batch: &mut Vec<SpanData>, limit: usize) {
    let mut n = 0;
    while n < limit {
        match spans.try_recv() {
            Ok(s) => batch.push(s),
            Err(_) => break,
        }
        n += 1;
    }
}

/// Export everything in `batch` in chunks, each bounded by the export
/// timeout and all by `deadline`. What is left at the deadline is dropped
/// (and counted) when `drop_leftover`, else kept for the next export.
async fn export_all<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    config: &BatchConfig,
    counters: &Counters,
    deadline: Instant,
    drop_leftover: bool,
) -> Result<(), String> {
    let mut result = Ok(());
    while !batch.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if drop_leftover {
                let n = batch.len() as u64;
                batch.clear();
                counters.export_failed(n, "deadline reached before export".into());
            }
            return Err("deadline reached before every span was exported".into());
        }
        let take = batch.len().min(config.max_export_batch_size);
        let chunk: Vec<SpanData> = batch.drain(..take).collect();
        if let Err(e) = export_one(exporter, chunk, config.export_timeout.min(left), counters).await
        {
            result = Err(e);
        }
    }
    result
}

async fn export_one<E: SpanExporter>(
    exporter: &E,
    chunk: Vec<SpanData>,
    timeout: Duration,
    counters: &Counters,
) -> Result<(), String> {
    let n = chunk.len() as u64;
    match tokio::time::timeout(timeout, exporter.export(chunk)).await {
        Ok(Ok(())) => {
            counters.exported(n);
            Ok(())
        }
        Ok(Err(e)) => {
            let why = e.to_string();
            counters.export_failed(n, why.clone());
            Err(why)
        }
        Err(_) => {
            let why = format!("export timed out after {timeout:?}");
            counters.export_failed(n, why.clone());
            Err(why)
        }
    }
}
