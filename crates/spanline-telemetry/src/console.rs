//! The console span exporter: one JSON object per span and line.
//!
//! The format (documented in `docs/telemetry.md`, read back by spanline's
//! critical-path loader):
//!
//! ```json
//! {"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",
//!  "parent_span_id":null,"parent_is_remote":false,"name":"invoke_workflow rag",
//!  "kind":"internal","start_time_unix_nano":1700000000000000000,
//!  "end_time_unix_nano":1700000000001000000,"status":{"code":"unset"},
//!  "attributes":{"spanline.pipeline.name":"rag"},"events":[],"links":[],
//!  "resource":{"service.name":"svc"},"scope":{"name":"spanline","version":"0.1.0"},
//!  "dropped_attributes_count":0,"dropped_events_count":0,"dropped_links_count":0}
//! ```

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value as Json, json};

/// Where the console exporter writes.
enum Sink {
    Stdout,
    Writer(Box<dyn Write + Send>),
}

/// A [`SpanExporter`] writing one JSON object per span and line to stdout
/// or any [`Write`] (a file, a buffer).
///
/// Cheap to clone: clones share the sink.
#[derive(Clone)]
pub struct ConsoleExporter {
    sink: Arc<Mutex<Sink>>,
    resource: Arc<Mutex<Json>>,
}

impl fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleExporter").finish_non_exhaustive()
    }
}

impl Default for ConsoleExporter {
    fn default() -> Self {
        Self::stdout()
    }
}

impl ConsoleExporter {
    /// Write to standard output.
    pub fn stdout() -> Self {
        Self::with_sink(Sink::Stdout)
    }

    /// Write to `writer`.
    pub fn new<W: Write + Send + 'static>(writer: W) -> Self {
        Self::with_sink(Sink::Writer(Box::new(writer)))
    }

    /// Append to the file at `path` (created if missing).
    pub fn to_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::new(file))
    }

    fn with_sink(sink: Sink) -> Self {
        ConsoleExporter {
            sink: Arc::new(Mutex::new(sink)),
            resource: Arc::new(Mutex::new(Json::Object(Map::new()))),
        }
    }

    fn write_lines(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut sink = self
            .sink
            .lock()
            .map_err(|_| std::io::Error::other("console exporter sink poisoned"))?;
        match &mut *sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Sink::Writer(w) => {
                w.write_all(buf)?;
                w.flush()
            }
        }
    }
}

impl SpanExporter for ConsoleExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let resource = self
            .resource
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|_| Json::Object(Map::new()));
        let mut buf = Vec::with_capacity(batch.len() * 512);
        for span in &batch {
            let mut line = span_to_json(span);
            if let Json::Object(map) = &mut line {
                map.insert("resource".into(), resource.clone());
            }
            // Serializing a `serde_json::Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, &line);
            buf.push(b'\n');
        }
        let result = self
            .write_lines(&buf)
            .map_err(|e| OTelSdkError::InternalFailure(format!("console exporter: {e}")));
        std::future::ready(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.write_lines(&[])
            .map_err(|e| OTelSdkError::InternalFailure(format!("console exporter: {e}")))
    }

    fn set_resource(&mut self, resource: &Resource) {
        let mut map = Map::new();
        for (k, v) in resource.iter() {
            map.insert(k.as_str().to_owned(), value_to_json(v));
        }
        if let Ok(mut r) = self.resource.lock() {
            *r = Json::Object(map);
        }
    }
}

/// The JSON object for one span, without the `resource` member.
pub fn span_to_json(span: &SpanData) -> Json {
    let ctx = &span.span_context;
    let parent = if span.parent_span_id == opentelemetry::trace::SpanId::INVALID {
        Json::Null
    } else {
        Json::String(format!("{:016x}", span.parent_span_id))
    };
    let status = match &span.status {
        Status::Unset => json!({"code": "unset"}),
        Status::Ok => json!({"code": "ok"}),
        Status::Error { description } => json!({"code": "error", "message": description}),
    };
    let events: Vec<Json> = span
        .events
        .events
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "time_unix_nano": unix_nanos(e.timestamp),
                "attributes": attributes_to_json(&e.attributes),
            })
        })
        .collect();
    let links: Vec<Json> = span
        .links
        .links
        .iter()
        .map(|l| {
            json!({
                "trace_id": format!("{:032x}", l.span_context.trace_id()),
                "span_id": format!("{:016x}", l.span_context.span_id()),
                "attributes": attributes_to_json(&l.attributes),
            })
        })
        .collect();
    let scope = &span.instrumentation_scope;
    json!({
        "trace_id": format!("{:032x}", ctx.trace_id()),
        "span_id": format!("{:016x}", ctx.span_id()),
        "parent_span_id": parent,
        "parent_is_remote": span.parent_span_is_remote,
        "name": span.name,
        "kind": kind_str(&span.span_kind),
        "start_time_unix_nano": unix_nanos(span.start_time),
        "end_time_unix_nano": unix_nanos(span.end_time),
        "status": status,
        "attributes": attributes_to_json(&span.attributes),
        "events": events,
        "links": links,
        "scope": {"name": scope.name(), "version": scope.version()},
        "dropped_attributes_count": span.dropped_attributes_count,
        "dropped_events_count": span.events.dropped_count,
        "dropped_links_count": span.links.dropped_count,
    })
}

fn kind_str(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn attributes_to_json(attrs: &[KeyValue]) -> Json {
    let mut map = Map::with_capacity(attrs.len());
    for kv in attrs {
        map.insert(kv.key.as_str().to_owned(), value_to_json(&kv.value));
    }
    Json::Object(map)
}

fn f64_to_json(f: f64) -> Json {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(f.to_string()))
}

fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => f64_to_json(*f),
        Value::String(s) => Json::String(s.as_str().to_owned()),
        Value::Array(Array::Bool(a)) => Json::Array(a.iter().map(|b| Json::Bool(*b)).collect()),
        Value::Array(Array::I64(a)) => Json::Array(a.iter().map(|i| Json::from(*i)).collect()),
        Value::Array(Array::F64(a)) => Json::Array(a.iter().map(|f| f64_to_json(*f)).collect()),
        Value::Array(Array::String(a)) => Json::Array(
            a.iter()
                .map(|s| Json::String(s.as_str().to_owned()))
                .collect(),
        ),
        other => Json::String(other.to_string()),
    }
}
