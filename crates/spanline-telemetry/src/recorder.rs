//! A bounded in-memory span recorder for tests and for in-process analysis.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

struct Inner {
    capacity: usize,
    spans: Mutex<VecDeque<SpanData>>,
    evicted: AtomicU64,
}

/// Keeps the last `capacity` finished (sampled) spans in memory.
///
/// A [`SpanProcessor`] and a cheap [`Clone`] handle: register one clone
/// with the provider (or use
/// [`TelemetryBuilder::recorder`](crate::TelemetryBuilder::recorder)) and
/// read through another. When full, the oldest span is evicted and counted.
/// Unlike the SDK's `InMemorySpanExporter`, shutting the provider down does
/// not clear it.
///
/// ```
/// use opentelemetry::trace::{Tracer, TracerProvider};
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use spanline_telemetry::SpanRecorder;
///
/// let recorder = SpanRecorder::new(100);
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(recorder.clone())
///     .build();
/// let tracer = provider.tracer("example");
/// tracer.in_span("parent", |_| tracer.in_span("child", |_| {}));
/// let parent = recorder.find("parent").expect("recorded");
/// assert_eq!(recorder.children_of(&parent)[0].name, "child");
/// ```
#[derive(Clone)]
pub struct SpanRecorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for SpanRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanRecorder")
            .field("capacity", &self.inner.capacity)
            .field("len", &self.len())
            .field("evicted", &self.evicted())
            .finish()
    }
}

impl SpanRecorder {
    /// A recorder keeping at most `capacity` spans. A capacity of 0 keeps
    /// nothing and counts every span as evicted.
    pub fn new(capacity: usize) -> Self {
        SpanRecorder {
            inner: Arc::new(Inner {
                capacity,
                spans: Mutex::new(VecDeque::with_capacity(capacity.min(4_096))),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<SpanData>> {
        // A panic while holding the lock cannot leave the deque invalid.
        self.inner
            .spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// A copy of the recorded spans, oldest first.
    pub fn spans(&self) -> Vec<SpanData> {
        self.lock().iter().cloned().collect()
    }

    /// Remove and return the recorded spans, oldest first.
    pub fn take(&self) -> Vec<SpanData> {
        self.lock().drain(..).collect()
    }

    /// Forget the recorded spans (the eviction count stays).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of spans held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no span is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spans evicted (or refused, at capacity 0) since creation.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// The most recently finished span called `name`.
    pub fn find(&self, name: &str) -> Option<SpanData> {
        self.lock().iter().rev().find(|s| s.name == name).cloned()
    }

    /// Every span called `name`, oldest first.
    pub fn find_all(&self, name: &str) -> Vec<SpanData> {
        self.filter(|s| s.name == name)
    }

    /// Every span matching `pred`, oldest first.
    pub fn filter(&self, pred: impl Fn(&SpanData) -> bool) -> Vec<SpanData> {
        self.lock().iter().filter(|s| pred(s)).cloned().collect()
    }

    /// The direct children of `parent` (same trace, parent id = its span
    /// id), oldest first.
    pub fn children_of(&self, parent: &SpanData) -> Vec<SpanData> {
        self.children_of_id(
            parent.span_context.trace_id(),
            parent.span_context.span_id(),
        )
    }

    /// The direct children of the span `span_id` in trace `trace_id`.
    pub fn children_of_id(&self, trace_id: TraceId, span_id: SpanId) -> Vec<SpanData> {
        self.filter(|s| s.span_context.trace_id() == trace_id && s.parent_span_id == span_id)
    }

    /// Every span of trace `trace_id`, oldest first.
    pub fn trace(&self, trace_id: TraceId) -> Vec<SpanData> {
        self.filter(|s| s.span_context.trace_id() == trace_id)
    }

    /// Spans with no parent (or a remote parent), oldest first.
    pub fn roots(&self) -> Vec<SpanData> {
        self.filter(|s| s.parent_span_id == SpanId::INVALID || s.parent_span_is_remote)
    }

    /// Wait (polling, without async) until at least `n` spans are held or
    /// `timeout` passes; returns whether `n` was reached. Useful when spans
    /// end on other threads.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.len() >= n {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5)); // allow-sleep: `wait_for` polls the buffer until its deadline.
        }
    }
}

impl SpanProcessor for SpanRecorder {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.inner.capacity == 0 {
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut spans = self.lock();
        while spans.len() >= self.inner.capacity {
            spans.pop_front();
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        }
        spans.push_back(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    #[test]
    fn bound_and_eviction_count() {
        let recorder = SpanRecorder::new(3);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(recorder.clone())
            .build();
        let tracer = provider.tracer("t");
        for i in 0..10 {
            tracer.in_span(format!("s{i}"), |_| {});
        }
        assert_eq!(recorder.len(), 3);
        assert_eq!(recorder.evicted(), 7);
        let names: Vec<_> = recorder
            .spans()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, ["s7", "s8", "s9"]);
        assert_eq!(recorder.take().len(), 3);
        assert!(recorder.is_empty());
        assert_eq!(recorder.evicted(), 7);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let recorder = SpanRecorder::new(0);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(recorder.clone())
            .build();
        provider.tracer("t").in_span("x", |_| {});
        assert!(recorder.is_empty());
        assert_eq!(recorder.evicted(), 1);
    }

    #[test]
    fn tree_helpers() {
        let recorder = SpanRecorder::new(100);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(recorder.clone())
            .build();
        let tracer = provider.tracer("t");
        tracer.in_span("root", |_| {
            tracer.in_span("a", |_| tracer.in_span("a1", |_| {}));
            tracer.in_span("b", |_| {});
        });
        tracer.in_span("other", |_| {});
        let root = recorder.find("root").expect("root");
        let kids: Vec<_> = recorder
            .children_of(&root)
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(recorder.trace(root.span_context.trace_id()).len(), 4);
        assert_eq!(recorder.roots().len(), 2);
        assert_eq!(recorder.find_all("a1").len(), 1);
        recorder.clear();
        assert_eq!(recorder.len(), 0);
    }
}
