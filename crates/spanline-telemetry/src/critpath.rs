//! The in-memory recorder as a critical-path source: SDK spans converted to
//! `spanline-critpath`'s SDK-independent model, so a process can analyse
//! its own traces without writing them out.
//!
//! ```
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use spanline_telemetry::{TelemetryBuilder, critpath};
//!
//! # fn main() -> Result<(), spanline_telemetry::TelemetryError> {
//! let guard = TelemetryBuilder::new().traces_exporters([]).recorder(100).prometheus(false).build()?;
//! let tracer = guard.tracer_provider().expect("enabled").tracer("doc");
//! tracer.in_span("root", |_| tracer.in_span("child", |_| {}));
//! let spans = critpath::from_recorder(&guard.recorder().expect("configured"));
//! let reports = spanline_critpath::analyze(&spans);
//! assert_eq!(reports.len(), 1);
//! assert_eq!(reports[0].root_name.as_ref(), "root");
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use opentelemetry::trace::{SpanId as OtelSpanId, SpanKind as OtelKind, Status as OtelStatus};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::SpanData;
use spanline_critpath::semconv as sc;
use spanline_critpath::{
    AttrValue, Attributes, Link, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};

use crate::SpanRecorder;

/// Every span the recorder holds, converted.
pub fn from_recorder(recorder: &SpanRecorder) -> Vec<Span> {
    recorder.spans().iter().map(convert).collect()
}

/// The attributes [`spanline_critpath::analyze_trace`] reads: its
/// structural names. Keep in step with the analyser's `structure` pass.
const STRUCTURAL: [&str; 8] = [
    sc::STEP_INDEX,
    sc::STEP_DEPENDS_ON,
    sc::STEP_BLOCKING,
    sc::PARALLEL_BRANCH,
    sc::BATCH_INDEX,
    sc::FALLBACK_FOR,
    sc::STAGE_NAME,
    sc::SEGMENT_TYPE,
];

/// Convert one SDK span.
pub fn convert(span: &SpanData) -> Span {
    convert_with(span, Detail::Full)
}

/// Convert one SDK span with only what the critical-path analysis reads
/// (the structural attributes, no links): the same report as [`convert`]
/// at a fraction of the allocations. The online critical-path metrics use
/// it.
pub fn convert_for_analysis(span: &SpanData) -> Span {
    convert_with(span, Detail::Structural)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    Full,
    Structural,
}

fn convert_with(span: &SpanData, detail: Detail) -> Span {
    let cx = &span.span_context;
    let parent = (span.parent_span_id != OtelSpanId::INVALID)
        .then(|| SpanId(u64::from_be_bytes(span.parent_span_id.to_bytes())));
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    };
    let mut out = Span::new(
        TraceId(u128::from_be_bytes(cx.trace_id().to_bytes())),
        SpanId(u64::from_be_bytes(cx.span_id().to_bytes())),
        parent,
        &span.name,
        nanos(span.start_time),
        nanos(span.end_time),
    );
    out.kind = match span.span_kind {
        OtelKind::Internal => SpanKind::Internal,
        OtelKind::Server => SpanKind::Server,
        OtelKind::Client => SpanKind::Client,
        OtelKind::Producer => SpanKind::Producer,
        OtelKind::Consumer => SpanKind::Consumer,
    };
    out.status = match &span.status {
        OtelStatus::Unset => Status::default(),
        OtelStatus::Ok => Status {
            code: StatusCode::Ok,
            message: String::new(),
        },
        OtelStatus::Error { description } => Status {
            code: StatusCode::Error,
            message: description.to_string(),
        },
    };
    let keep = |k: &str| detail == Detail::Full || STRUCTURAL.contains(&k);
    out.attributes = attributes(
        span.attributes
            .iter()
            .filter(|kv| keep(kv.key.as_str()))
            .map(|kv| (kv.key.as_str(), &kv.value)),
    );
    if detail == Detail::Structural {
        return out;
    }
    out.links = span
        .links
        .links
        .iter()
        .map(|l| Link {
            trace_id: TraceId(u128::from_be_bytes(l.span_context.trace_id().to_bytes())),
            span_id: SpanId(u64::from_be_bytes(l.span_context.span_id().to_bytes())),
            attributes: attributes(l.attributes.iter().map(|kv| (kv.key.as_str(), &kv.value))),
        })
        .collect();
    out
}

fn attributes<'a>(kvs: impl Iterator<Item = (&'a str, &'a Value)>) -> Attributes {
    Attributes(kvs.map(|(k, v)| (Arc::from(k), value(v))).collect())
}

fn value(v: &Value) -> AttrValue {
    match v {
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::I64(i) => AttrValue::Int(*i),
        Value::F64(f) => AttrValue::Double(*f),
        Value::String(s) => AttrValue::Str(Arc::from(s.as_str())),
        Value::Array(Array::Bool(xs)) => {
            AttrValue::Array(xs.iter().map(|b| AttrValue::Bool(*b)).collect())
        }
        Value::Array(Array::I64(xs)) => {
            AttrValue::Array(xs.iter().map(|i| AttrValue::Int(*i)).collect())
        }
        Value::Array(Array::F64(xs)) => {
            AttrValue::Array(xs.iter().map(|f| AttrValue::Double(*f)).collect())
        }
        Value::Array(Array::String(xs)) => AttrValue::Array(
            xs.iter()
                .map(|s| AttrValue::Str(Arc::from(s.as_str())))
                .collect(),
        ),
        other => AttrValue::Str(Arc::from(other.as_str().as_ref())),
    }
}
