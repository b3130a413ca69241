//! What a processor counts: spans exported, and spans dropped by reason.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;
use spanline_core::semconv::metric;

/// A snapshot of a processor's counters. Every span a sampled trace ended
/// lands in exactly one of them once the processor has shut down.
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
    /// Spans still waiting in the queue when the shutdown deadline passed.
    pub dropped_shutdown_queued: u64,
    /// Spans whose export was still in flight when the shutdown deadline
    /// passed.
    pub dropped_shutdown_in_flight: u64,
}

impl ExportStats {
    /// All dropped spans, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_export_failed
            + self.dropped_after_shutdown
            + self.dropped_shutdown_queued
            + self.dropped_shutdown_in_flight
    }

    /// Exported plus dropped: every span the processor was handed, once it
    /// has shut down.
    pub fn accounted(&self) -> u64 {
        self.exported + self.dropped()
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
            dropped_shutdown_queued: self.dropped_shutdown_queued + o.dropped_shutdown_queued,
            dropped_shutdown_in_flight: self.dropped_shutdown_in_flight
                + o.dropped_shutdown_in_flight,
        }
    }
}

/// Why spans left the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Exported,
    QueueFull,
    ExportFailed,
    AfterShutdown,
    ShutdownQueued,
    ShutdownInFlight,
}

/// One atomic and one `metrics` counter per fate.
struct Tally {
    count: AtomicU64,
    metric: Counter,
}

impl Tally {
    fn new(metric: Counter) -> Self {
        Tally {
            count: AtomicU64::new(0),
            metric,
        }
    }
    fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

pub(super) struct Counters {
    exported: Tally,
    queue_full: Tally,
    export_failed: Tally,
    after_shutdown: Tally,
    shutdown_queued: Tally,
    shutdown_in_flight: Tally,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    /// Registers the `metrics` counters with the recorder current now.
    pub(super) fn new() -> Self {
        let dropped = |reason: &'static str| {
            Tally::new(metrics::counter!(metric::SPANS_DROPPED, metric::LABEL_REASON => reason))
        };
        Counters {
            exported: Tally::new(metrics::counter!(metric::SPANS_EXPORTED)),
            queue_full: dropped(metric::REASON_QUEUE_FULL),
            export_failed: dropped(metric::REASON_EXPORT_FAILED),
            after_shutdown: dropped(metric::REASON_AFTER_SHUTDOWN),
            shutdown_queued: dropped(metric::REASON_SHUTDOWN_QUEUED),
            shutdown_in_flight: dropped(metric::REASON_SHUTDOWN_IN_FLIGHT),
            last_error: Mutex::new(None),
        }
    }

    pub(super) fn add(&self, fate: Fate, n: usize) {
        if n == 0 {
            return;
        }
        let t = match fate {
            Fate::Exported => &self.exported,
            Fate::QueueFull => &self.queue_full,
            Fate::ExportFailed => &self.export_failed,
            Fate::AfterShutdown => &self.after_shutdown,
            Fate::ShutdownQueued => &self.shutdown_queued,
            Fate::ShutdownInFlight => &self.shutdown_in_flight,
        };
        let n = n as u64;
        t.count.fetch_add(n, Ordering::Relaxed);
        t.metric.increment(n);
    }

    pub(super) fn set_last_error(&self, why: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(why.to_owned());
        }
    }

    fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.get(),
            dropped_queue_full: self.queue_full.get(),
            dropped_export_failed: self.export_failed.get(),
            dropped_after_shutdown: self.after_shutdown.get(),
            dropped_shutdown_queued: self.shutdown_queued.get(),
            dropped_shutdown_in_flight: self.shutdown_in_flight.get(),
        }
    }
}

/// A cheap, cloneable view of one processor's counters.
#[derive(Clone)]
pub struct ProcessorStats(pub(super) std::sync::Arc<super::Shared>);

impl ProcessorStats {
    /// Current counter values.
    pub fn snapshot(&self) -> ExportStats {
        self.0.counters.snapshot()
    }

    /// The last export error, if any (for diagnostics only).
    pub fn last_export_error(&self) -> Option<String> {
        self.0
            .counters
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
    }
}

impl fmt::Debug for ProcessorStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProcessorStats")
            .field(&self.snapshot())
            .finish()
    }
}
