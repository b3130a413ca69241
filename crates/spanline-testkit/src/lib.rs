//! Test support for spanline: a tracer provider exporting to memory, a local
//! metrics recorder, and assertions over the recorded span tree and
//! histograms. Panics here are test failures with a readable message.
//!
//! ```
//! use spanline_core::{Pipeline, Query, RequestContext, Preprocess, basic::Normalizer};
//! use spanline_testkit::TestTelemetry;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let t = TestTelemetry::new();
//! let pipeline = t.build(|| {
//!     Pipeline::builder("p").telemetry(t.telemetry()).then(Preprocess(Normalizer::default())).build()
//! });
//! pipeline.run(Query::new("Hi"), &RequestContext::new()).await.unwrap();
//! let spans = t.spans();
//! let stage = spans.named("spanline.preprocess normalize");
//! assert_eq!(spans.parent_of(stage).unwrap().name, "invoke_workflow p");
//! assert_eq!(t.metrics().histogram_count("spanline.stage.duration", &[("outcome", "ok")]), 1);
//! # }
//! ```

pub mod bench;
pub mod otlp;

use std::collections::HashSet;
use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry::{Value, trace::TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use spanline_core::Telemetry;

/// An SDK tracer provider that exports synchronously to memory, and a
/// metrics recorder local to the test.
pub struct TestTelemetry {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    recorder: Arc<DebuggingRecorder>,
    capture: bool,
}

impl std::fmt::Debug for TestTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTelemetry").finish_non_exhaustive()
    }
}

impl Default for TestTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl TestTelemetry {
    /// Sample everything.
    pub fn new() -> Self {
        Self::with_sampler(Sampler::AlwaysOn)
    }

    /// Use `sampler`.
    pub fn with_sampler(sampler: Sampler) -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler)
            .build();
        TestTelemetry {
            provider,
            exporter,
            recorder: Arc::new(DebuggingRecorder::new()),
            capture: false,
        }
    }

    /// Turn the content-capture switch on for [`TestTelemetry::telemetry`].
    pub fn capturing_content(mut self) -> Self {
        self.capture = true;
        self
    }

    /// The handle pipelines emit through.
    pub fn telemetry(&self) -> Telemetry {
        Telemetry::from_provider(&self.provider).with_content_capture(self.capture)
    }

    /// The SDK provider (to create spans around a pipeline).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// A tracer from the provider.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("spanline-test")
    }

    /// Run `f` with this test's metrics recorder as the current one: build
    /// pipelines inside it so their histogram handles record here.
    pub fn build<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// Every finished span so far.
    pub fn spans(&self) -> Spans {
        Spans(self.exporter.get_finished_spans().unwrap_or_default())
    }

    /// Forget the spans recorded so far.
    pub fn reset_spans(&self) {
        self.exporter.reset();
    }

    /// A snapshot of the metrics recorded since the last snapshot
    /// (histogram samples are drained by each snapshot).
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot(
            self.recorder
                .snapshotter()
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }
}

/// Finished spans, with lookups for assertions.
#[derive(Debug, Clone)]
pub struct Spans(pub Vec<SpanData>);

impl Spans {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The one span called `name` (panics if there is not exactly one).
    pub fn named(&self, name: &str) -> &SpanData {
        let found = self.all_named(name);
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "expected exactly one span named {name:?}, found {}; spans: {:?}",
                found.len(),
                self.names()
            ),
        }
    }
    /// Every span called `name`.
    pub fn all_named(&self, name: &str) -> Vec<&SpanData> {
        self.0.iter().filter(|s| s.name == name).collect()
    }
    /// Every span whose `key` attribute equals `value`.
    pub fn with_attr(&self, key: &str, value: &str) -> Vec<&SpanData> {
        self.0
            .iter()
            .filter(|s| s.str_attr(key).as_deref() == Some(value))
            .collect()
    }
    /// All span names.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|s| s.name.as_ref()).collect()
    }
    /// The recorded parent of `span`, if recorded here.
    pub fn parent_of(&self, span: &SpanData) -> Option<&SpanData> {
        self.by_id(span.parent_span_id)
    }
    /// The span with `id`.
    pub fn by_id(&self, id: SpanId) -> Option<&SpanData> {
        self.0.iter().find(|s| s.span_context.span_id() == id)
    }
    /// The children of `span`, by start time.
    pub fn children_of(&self, span: &SpanData) -> Vec<&SpanData> {
        let id = span.span_context.span_id();
        let mut c: Vec<&SpanData> = self.0.iter().filter(|s| s.parent_span_id == id).collect();
        c.sort_by_key(|s| s.start_time);
        c
    }
    /// Distinct trace ids.
    pub fn trace_ids(&self) -> HashSet<TraceId> {
        self.0.iter().map(|s| s.span_context.trace_id()).collect()
    }
    /// Whether `needle` appears anywhere: names, attribute values, event
    /// names and attributes, status messages, link attributes.
    pub fn contain_text(&self, needle: &str) -> bool {
        self.0.iter().any(|s| {
            let value_has = |v: &Value| v.as_str().contains(needle);
            s.name.contains(needle)
                || s.attributes.iter().any(|kv| value_has(&kv.value))
                || s.events.events.iter().any(|e| {
                    e.name.contains(needle) || e.attributes.iter().any(|kv| value_has(&kv.value))
                })
                || matches!(&s.status, Status::Error { description } if description.contains(needle))
                || s.links.links.iter().any(|l| l.attributes.iter().any(|kv| value_has(&kv.value)))
        })
    }
}

/// Attribute lookups on a span.
pub trait SpanDataExt {
    /// The value of attribute `key`.
    fn attr(&self, key: &str) -> Option<&Value>;
    /// The value of `key` as a string (any type, formatted).
    fn str_attr(&self, key: &str) -> Option<String> {
        self.attr(key).map(|v| v.as_str().into_owned())
    }
    /// The value of `key` if it is an integer.
    fn i64_attr(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            Value::I64(v) => Some(*v),
            _ => None,
        }
    }
    /// The value of `key` if it is a boolean.
    fn bool_attr(&self, key: &str) -> Option<bool> {
        match self.attr(key)? {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }
}

impl SpanDataExt for SpanData {
    fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }
}

/// Metrics recorded by a test.
#[derive(Debug)]
pub struct MetricsSnapshot(Vec<Series>);

/// One metric series: name, labels, value.
type Series = (String, Vec<(String, String)>, DebugValue);

impl MetricsSnapshot {
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a DebugValue> + 'a {
        self.0.iter().filter_map(move |(n, l, v)| {
            let all = labels
                .iter()
                .all(|(k, want)| l.iter().any(|(lk, lv)| lk == k && lv == want));
            (n == name && all).then_some(v)
        })
    }
    /// Samples recorded in histogram `name` over all series whose labels
    /// include `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.histogram_values(name, labels).len()
    }
    /// The samples themselves.
    pub fn histogram_values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|v| match v {
                DebugValue::Histogram(xs) => xs.iter().map(|x| x.into_inner()).collect(),
                _ => Vec::new(),
            })
            .collect()
    }
    /// The sum of counter `name` over series whose labels include `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|v| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum()
    }
    /// The label sets of every series of `name`.
    pub fn series(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, _)| l.clone())
            .collect()
    }
}
