//! Pieces the benchmarks share: an exporter that drops what it gets and a
//! `metrics` recorder whose handles cost what a real one's do on the hot
//! path, so a benchmark measures the request path and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Key, KeyName, Metadata, SharedString, Unit};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Drops every batch: an exporter's cost is off the request path, and
/// keeping the spans would grow the heap for the whole run.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// A recorder whose counters and histograms are one atomic update each, so
/// per-call records are not free (as with a real recorder) but nothing
/// accumulates.
#[derive(Debug, Default, Clone, Copy)]
pub struct AtomicRecorder;

#[derive(Debug, Default)]
struct AtomicHandle(AtomicU64);

impl metrics::HistogramFn for AtomicHandle {
    fn record(&self, value: f64) {
        self.0.fetch_add(value.to_bits() & 1, Ordering::Relaxed);
    }
}

impl metrics::CounterFn for AtomicHandle {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl metrics::Recorder for AtomicRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(AtomicHandle::default()))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(AtomicHandle::default()))
    }
}
