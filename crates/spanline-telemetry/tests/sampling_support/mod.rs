//! Hand-built spans for the tail-sampler tests (no clock, no provider).

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

/// A span of trace `trace` with id `id`, child of `parent` (0: a root),
/// starting at `start_ms` and lasting `dur_ms`.
pub fn span(trace: u128, id: u64, parent: u64, start_ms: u64, dur_ms: u64) -> SpanData {
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(start_ms);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(trace),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(parent),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "span".into(),
        start_time: start,
        end_time: start + Duration::from_millis(dur_ms),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::default(),
    }
}

/// `span(..)` with attributes.
pub fn with_attrs(mut s: SpanData, attrs: Vec<KeyValue>) -> SpanData {
    s.attributes = attrs;
    s
}

/// `span(..)` failed.
pub fn failed(mut s: SpanData) -> SpanData {
    s.status = Status::error("boom");
    s
}

/// A stage span (`spanline.stage.name`).
pub fn stage(trace: u128, id: u64, parent: u64, name: &'static str, dur_ms: u64) -> SpanData {
    with_attrs(
        span(trace, id, parent, 0, dur_ms),
        vec![KeyValue::new("spanline.stage.name", name)],
    )
}

pub fn epoch() -> std::time::Instant {
    std::time::Instant::now()
}

pub fn _unused(_: SystemTime) {}
