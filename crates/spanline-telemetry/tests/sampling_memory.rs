//! Memory stays within the configured bounds while 1,000,000 spans pass
//! (counted, not timed): traces held ≤ `max_traces`, spans held ≤
//! `max_traces × max_spans_per_trace`, remembered decisions ≤
//! `decision_cache`, and every span is accounted for.

mod sampling_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use sampling_support::{epoch, failed, span};
use spanline_telemetry::sampling::{TailConfig, TailEngine, TailSamplingProcessor};

const SPANS: u64 = 1_000_000;
const MAX_TRACES: usize = 200;
const MAX_SPANS: usize = 8;
const CACHE: usize = 1_000;

/// 1M spans: 12-span traces, 400 open at once (twice the trace bound), the
/// root last; every 5th trace never sends its root (abandoned elsewhere),
/// every 7th fails, every 3rd is slow. Spans beyond 8 per trace hit the span limit.
fn workload(mut f: impl FnMut(SpanData)) {
    let per_trace = 12u64;
    let open = 400u64;
    let traces = SPANS / per_trace + 1;
    let mut sent = 0u64;
    let mut next = 0u64;
    'outer: while next < traces {
        // Send span k of traces [next, next + open) round-robin.
        for k in 0..per_trace {
            for t in next..(next + open).min(traces) {
                if sent == SPANS {
                    break 'outer;
                }
                let trace = u128::from(t + 1) * 0x9E37_79B9_7F4A_7C15;
                let is_root = k == per_trace - 1;
                let s = if is_root {
                    if t % 5 == 0 {
                        // Abandoned: send a child instead of the root.
                        span(trace, 100 + k, 1, 0, 1)
                    } else {
                        span(trace, 1, 0, 0, if t % 3 == 0 { 50 } else { 20 })
                    }
                } else {
                    span(trace, 2 + k, 1, k, 1)
                };
                let s = if t % 7 == 0 && k == 3 { failed(s) } else { s };
                f(s);
                sent += 1;
            }
        }
        next += open;
    }
    assert_eq!(sent, SPANS);
}

fn config() -> TailConfig {
    TailConfig::new()
        .max_traces(MAX_TRACES)
        .max_spans_per_trace(MAX_SPANS)
        .decision_cache(CACHE)
        .decision_wait(Duration::from_secs(3_600))
        .latency_threshold(Duration::from_millis(40))
        .baseline_ratio(0.1)
}

#[test]
fn engine_stays_within_its_bounds_over_a_million_spans() {
    let mut engine = TailEngine::new(config()).expect("valid");
    let now = epoch();
    let mut kept = 0u64;
    let mut max_traces = 0;
    let mut max_spans = 0;
    let mut i = 0u64;
    workload(|s| {
        engine.ingest(s, now, &mut |_| kept += 1);
        i += 1;
        if i.is_multiple_of(1_000) {
            let st = engine.stats();
            max_traces = max_traces.max(st.buffered_traces);
            max_spans = max_spans.max(st.buffered_spans);
            assert!(st.cached_decisions <= CACHE as u64);
        }
    });
    engine.finish(&mut |_| kept += 1);
    let s = engine.stats();
    assert_eq!(s.spans_seen, SPANS);
    assert!(s.peak_traces <= MAX_TRACES as u64, "{s:?}");
    assert!(s.peak_spans <= (MAX_TRACES * MAX_SPANS) as u64, "{s:?}");
    assert!(max_traces <= MAX_TRACES as u64 && max_spans <= (MAX_TRACES * MAX_SPANS) as u64);
    assert!(s.traces_evicted > 0, "the trace bound was exercised");
    assert!(
        s.spans_dropped_span_limit > 0,
        "the span bound was exercised"
    );
    assert_eq!(
        s.spans_kept + s.spans_dropped_decision + s.spans_dropped_span_limit,
        SPANS,
        "every span accounted for: {s:?}"
    );
    assert_eq!(kept, s.spans_kept);
    assert!(s.traces_dropped > 0 && s.traces_kept > 0, "{s:?}");
    assert_eq!(s.traces_kept + s.traces_dropped, s.traces_seen);
    assert_eq!(
        (s.buffered_spans, s.buffered_traces, s.buffered_bytes),
        (0, 0, 0)
    );
    // The byte estimate is bounded by the span bound times a span's size.
    let one = s.peak_bytes / s.peak_spans.max(1);
    assert!(s.peak_bytes <= (MAX_TRACES * MAX_SPANS) as u64 * one.max(1) + 1);
    eprintln!("engine: {s:?}");
}

#[derive(Debug, Default, Clone)]
struct Count(Arc<AtomicU64>);

impl SpanProcessor for Count {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, _span: SpanData) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn processor_stays_within_its_bounds_over_a_million_spans() {
    let count = Count::default();
    let tail =
        TailSamplingProcessor::new(config().queue_capacity(4_096), count.clone()).expect("valid");
    let stats = tail.stats();
    workload(|s| tail.on_end(s));
    tail.shutdown().expect("shut down");
    let s = stats.snapshot();
    assert_eq!(s.spans_seen, SPANS);
    assert!(s.peak_traces <= MAX_TRACES as u64, "{s:?}");
    assert!(s.peak_spans <= (MAX_TRACES * MAX_SPANS) as u64, "{s:?}");
    assert!(s.cached_decisions <= CACHE as u64);
    assert_eq!(s.spans_kept + s.spans_dropped(), SPANS, "{s:?}");
    assert_eq!(count.0.load(Ordering::Relaxed), s.spans_kept);
    eprintln!("processor: {s:?}");
}
