//! JSON lines: OTLP JSON (`resourceSpans`) and spanline console spans.

use std::io::{self, BufRead};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{LineRead, Sink, read_line_capped};
use crate::diag::{DiagnosticKind, Location};
use crate::model::{
    AttrValue, Attributes, Link, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};

type Obj = Map<String, Value>;

pub(super) fn read_lines<R: BufRead>(r: &mut R, sink: &mut Sink<'_>, max: usize) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        let read = read_line_capped(r, &mut buf, max)?;
        line_no += 1;
        let loc = Location::Line(line_no);
        match read {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                sink.diag(
                    DiagnosticKind::LineTooLong,
                    loc,
                    format!("line longer than {max} bytes skipped"),
                );
                continue;
            }
            LineRead::Line => {}
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_slice(text) {
            Ok(v) => v,
            Err(e) => {
                sink.diag(
                    DiagnosticKind::BadJson,
                    loc,
                    format!("invalid JSON ({e}); line skipped"),
                );
                continue;
            }
        };
        match value {
            Value::Object(obj) => object(obj, sink, loc),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Object(obj) => object(obj, sink, loc),
                        _ => sink.diag(
                            DiagnosticKind::BadSpan,
                            loc,
                            "array element is not an object; skipped",
                        ),
                    }
                }
            }
            _ => sink.diag(
                DiagnosticKind::BadJson,
                loc,
                "expected a JSON object (an OTLP request or a span); line skipped",
            ),
        }
    }
}

fn object(obj: Obj, sink: &mut Sink<'_>, loc: Location) {
    if let Some(rs) = field(&obj, &["resourceSpans", "resource_spans"]) {
        otlp_request(rs, sink, loc);
    } else {
        console_span(&obj, sink, loc);
    }
}

/// The first present field among `names`.
fn field<'a>(obj: &'a Obj, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| obj.get(*n))
        .filter(|v| !v.is_null())
}

fn str_field<'a>(obj: &'a Obj, names: &[&str]) -> Option<&'a str> {
    field(obj, names).and_then(Value::as_str)
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

// ---------------------------------------------------------------- ids, times

fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Hex (the Collector's choice) or base64 (protobuf's JSON mapping).
pub(super) fn trace_id(s: &str) -> Option<TraceId> {
    let s = s.trim();
    TraceId::from_hex(s).or_else(|| base64(s).and_then(|b| TraceId::from_bytes(&b)))
}

pub(super) fn span_id(s: &str) -> Option<SpanId> {
    let s = s.trim();
    SpanId::from_hex(s).or_else(|| base64(s).and_then(|b| SpanId::from_bytes(&b)))
}

fn time(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

fn kind(v: Option<&Value>) -> SpanKind {
    match v {
        Some(Value::Number(n)) => SpanKind::from_otlp(n.as_i64().unwrap_or(0)),
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => SpanKind::from_otlp(n),
            Err(_) => SpanKind::parse(s),
        },
        _ => SpanKind::Unspecified,
    }
}

fn status_code(v: &Value) -> StatusCode {
    let parse = |s: &str| {
        let s = s.trim();
        let s = s.strip_prefix("STATUS_CODE_").unwrap_or(s);
        match s.to_ascii_lowercase().as_str() {
            "ok" | "1" => StatusCode::Ok,
            "error" | "2" => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    };
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(1) => StatusCode::Ok,
            Some(2) => StatusCode::Error,
            _ => StatusCode::Unset,
        },
        Value::String(s) => parse(s),
        _ => StatusCode::Unset,
    }
}

/// `"Error"`, `{"code": 2, "message": ".."}`, `{"Error": {"description": ".."}}`, …
fn status(v: Option<&Value>) -> Status {
    match v {
        None => Status::default(),
        Some(Value::Object(o)) => {
            if let Some(c) = field(o, &["code", "status_code", "statusCode"]) {
                let message = str_field(o, &["message", "description"])
                    .unwrap_or("")
                    .to_owned();
                return Status {
                    code: status_code(c),
                    message,
                };
            }
            // Rust enum shape: {"Error": {"description": "..."}}
            if let Some((k, inner)) = o.iter().next() {
                let message = inner
                    .as_object()
                    .and_then(|i| str_field(i, &["description", "message"]))
                    .or_else(|| inner.as_str())
                    .unwrap_or("")
                    .to_owned();
                return Status {
                    code: status_code(&Value::String(k.clone())),
                    message,
                };
            }
            Status::default()
        }
        Some(other) => Status {
            code: status_code(other),
            message: String::new(),
        },
    }
}

// ---------------------------------------------------------------- values

/// An OTLP JSON `AnyValue` (`{"stringValue": ..}`) or a plain JSON value.
fn value(v: &Value, sink: &mut Sink<'_>) -> AttrValue {
    match v {
        Value::String(s) => AttrValue::Str(sink.intern(s)),
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(a) => AttrValue::Array(a.iter().map(|x| value(x, sink)).collect()),
        Value::Null => AttrValue::Str(sink.intern("")),
        Value::Object(o) => {
            if o.len() == 1
                && let Some((k, inner)) = o.iter().next()
            {
                match k.as_str() {
                    "stringValue" | "string_value" | "String" | "Str" => {
                        return match inner {
                            Value::String(s) => AttrValue::Str(sink.intern(s)),
                            other => value(other, sink),
                        };
                    }
                    "intValue" | "int_value" | "I64" | "Int" => {
                        return match inner {
                            Value::String(s) => s
                                .trim()
                                .parse::<i64>()
                                .map(AttrValue::Int)
                                .unwrap_or_else(|_| AttrValue::Str(sink.intern(s))),
                            other => value(other, sink),
                        };
                    }
                    "doubleValue" | "double_value" | "F64" | "Double" => {
                        return match inner {
                            Value::String(s) => s
                                .trim()
                                .parse::<f64>()
                                .map(AttrValue::Double)
                                .unwrap_or_else(|_| AttrValue::Str(sink.intern(s))),
                            Value::Number(n) => AttrValue::Double(n.as_f64().unwrap_or(0.0)),
                            other => value(other, sink),
                        };
                    }
                    "boolValue" | "bool_value" | "Bool" => return value(inner, sink),
                    "arrayValue" | "array_value" | "Array" => {
                        let items = match inner {
                            Value::Object(a) => array(a.get("values")),
                            Value::Array(a) => a.as_slice(),
                            _ => &[],
                        };
                        return AttrValue::Array(items.iter().map(|x| value(x, sink)).collect());
                    }
                    "bytesValue" | "bytes_value" => return value(inner, sink),
                    "kvlistValue" | "kvlist_value" => {
                        return AttrValue::Str(Arc::from(inner.to_string()));
                    }
                    _ => {}
                }
            }
            if o.is_empty() {
                return AttrValue::Str(sink.intern(""));
            }
            AttrValue::Str(Arc::from(v.to_string()))
        }
    }
}

/// `[{"key": k, "value": AnyValue}]` (OTLP) or `{k: value}` (console).
fn attributes(v: Option<&Value>, sink: &mut Sink<'_>) -> Attributes {
    let mut out = Attributes::new();
    match v {
        Some(Value::Array(items)) => {
            out.0.reserve(items.len());
            for item in items {
                if let Some(o) = item.as_object()
                    && let Some(k) = str_field(o, &["key", "Key"])
                {
                    let val = o
                        .get("value")
                        .or_else(|| o.get("Value"))
                        .unwrap_or(&Value::Null);
                    let val = value(val, sink);
                    out.0.push((sink.intern(k), val));
                }
            }
        }
        Some(Value::Object(o)) => {
            out.0.reserve(o.len());
            for (k, val) in o {
                let val = value(val, sink);
                out.0.push((sink.intern(k), val));
            }
        }
        _ => {}
    }
    out
}

fn links(v: Option<&Value>, sink: &mut Sink<'_>) -> Vec<Link> {
    let mut out = Vec::new();
    for l in array(v) {
        let Some(o) = l.as_object() else { continue };
        let t = str_field(o, &["traceId", "trace_id"]).and_then(trace_id);
        let s = str_field(o, &["spanId", "span_id"]).and_then(span_id);
        if let (Some(trace_id), Some(span_id)) = (t, s) {
            out.push(Link {
                trace_id,
                span_id,
                attributes: attributes(o.get("attributes"), sink),
            });
        }
    }
    out
}

// ---------------------------------------------------------------- spans

fn otlp_request(rs: &Value, sink: &mut Sink<'_>, loc: Location) {
    for r in array(Some(rs)) {
        let Some(r) = r.as_object() else { continue };
        let service = r
            .get("resource")
            .and_then(Value::as_object)
            .map(|res| attributes(res.get("attributes"), sink))
            .and_then(|a| {
                a.get(crate::semconv::SERVICE_NAME)
                    .and_then(AttrValue::as_str)
                    .map(Arc::from)
            });
        let scopes = field(
            r,
            &["scopeSpans", "scope_spans", "instrumentationLibrarySpans"],
        );
        for scope in array(scopes) {
            let Some(scope) = scope.as_object() else {
                continue;
            };
            for s in array(scope.get("spans")) {
                match s.as_object() {
                    Some(o) => span(o, service.clone(), sink, loc),
                    None => sink.diag(
                        DiagnosticKind::BadSpan,
                        loc,
                        "span is not a JSON object; skipped",
                    ),
                }
            }
        }
    }
}

fn console_span(o: &Obj, sink: &mut Sink<'_>, loc: Location) {
    let service = str_field(o, &["service_name", "serviceName", "service"])
        .map(|s| sink.intern(s))
        .or_else(|| {
            let res = o.get("resource")?;
            let attrs = attributes(res.get("attributes").or(Some(res)), sink);
            attrs
                .get(crate::semconv::SERVICE_NAME)
                .and_then(AttrValue::as_str)
                .map(Arc::from)
        });
    span(o, service, sink, loc);
}

/// One span object, in either naming (camelCase OTLP or snake_case console).
fn span(o: &Obj, service: Option<Arc<str>>, sink: &mut Sink<'_>, loc: Location) {
    let name = str_field(o, &["name", "span_name", "operationName"]).unwrap_or("");
    let tid = str_field(o, &["traceId", "trace_id", "traceID"]);
    let Some(trace_id) = tid.and_then(trace_id) else {
        sink.diag(
            DiagnosticKind::BadSpan,
            loc,
            format!("span {name:?}: missing or invalid trace id {tid:?}; skipped"),
        );
        return;
    };
    let sid = str_field(o, &["spanId", "span_id", "spanID"]);
    let Some(span_id) = sid.and_then(span_id) else {
        sink.diag(
            DiagnosticKind::BadSpan,
            loc,
            format!("span {name:?}: missing or invalid span id {sid:?}; skipped"),
        );
        return;
    };
    let parent_span_id = match str_field(
        o,
        &[
            "parentSpanId",
            "parent_span_id",
            "parent_id",
            "parentSpanID",
        ],
    ) {
        None => None,
        Some(p) if p.trim().is_empty() => None,
        Some(p) => match self::span_id(p) {
            Some(id) if id.0 == 0 => None,
            Some(id) => Some(id),
            None => {
                sink.diag(
                    DiagnosticKind::BadSpan,
                    loc,
                    format!("span {name:?}: invalid parent span id {p:?}; treated as a root"),
                );
                None
            }
        },
    };
    let start = field(
        o,
        &[
            "startTimeUnixNano",
            "start_time_unix_nano",
            "start_time_ns",
            "start_ns",
        ],
    )
    .and_then(time);
    let end = field(
        o,
        &[
            "endTimeUnixNano",
            "end_time_unix_nano",
            "end_time_ns",
            "end_ns",
        ],
    )
    .and_then(time);
    let (Some(start_ns), Some(end_ns)) = (start, end) else {
        sink.diag(
            DiagnosticKind::BadSpan,
            loc,
            format!("span {name:?} ({span_id}): missing or invalid start/end time; skipped"),
        );
        return;
    };
    let name = sink.intern(name);
    let attributes = attributes(field(o, &["attributes", "attrs"]), sink);
    let links = links(o.get("links"), sink);
    sink.push(Span {
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind: kind(field(o, &["kind", "span_kind"])),
        start_ns,
        end_ns,
        status: status(o.get("status")),
        attributes,
        links,
        service_name: service,
    });
}
