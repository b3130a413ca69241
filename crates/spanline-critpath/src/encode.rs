//! Writers for the formats the loaders read: handy for fixtures, for tests and
//! for converting between formats.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use serde_json::{Value, json};

use crate::load::pb;
use crate::model::{AttrValue, Attributes, Span, StatusCode};

fn pb_value(v: &AttrValue) -> pb::AnyValue {
    use pb::any_value::Value as V;
    pb::AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => V::StringValue(s.to_string()),
            AttrValue::Int(i) => V::IntValue(*i),
            AttrValue::Double(d) => V::DoubleValue(*d),
            AttrValue::Bool(b) => V::BoolValue(*b),
            AttrValue::Array(a) => V::ArrayValue(pb::ArrayValue {
                values: a.iter().map(pb_value).collect(),
            }),
        }),
    }
}

fn pb_attrs(a: &Attributes) -> Vec<pb::KeyValue> {
    a.iter()
        .map(|(k, v)| pb::KeyValue {
            key: k.to_owned(),
            value: Some(pb_value(v)),
        })
        .collect()
}

fn status_num(c: StatusCode) -> i32 {
    match c {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}

/// Groups spans by service name, in first-seen order.
fn by_service(spans: &[Span]) -> Vec<(Option<Arc<str>>, Vec<&Span>)> {
    let mut out: Vec<(Option<Arc<str>>, Vec<&Span>)> = Vec::new();
    for s in spans {
        match out.iter_mut().find(|(svc, _)| *svc == s.service_name) {
            Some((_, v)) => v.push(s),
            None => out.push((s.service_name.clone(), vec![s])),
        }
    }
    out
}

/// Encodes spans as one OTLP protobuf `TracesData` message (one
/// `ResourceSpans` per service name).
pub fn to_otlp_proto(spans: &[Span]) -> Vec<u8> {
    let data = pb::TracesData {
        resource_spans: by_service(spans)
            .into_iter()
            .map(|(svc, spans)| pb::ResourceSpans {
                resource: Some(pb::Resource {
                    attributes: svc
                        .map(|s| {
                            vec![pb::KeyValue {
                                key: crate::semconv::SERVICE_NAME.to_owned(),
                                value: Some(pb_value(&AttrValue::Str(s))),
                            }]
                        })
                        .unwrap_or_default(),
                }),
                scope_spans: vec![pb::ScopeSpans {
                    spans: spans
                        .into_iter()
                        .map(|s| pb::Span {
                            trace_id: s.trace_id.to_bytes().to_vec(),
                            span_id: s.span_id.to_bytes().to_vec(),
                            parent_span_id: s
                                .parent_span_id
                                .map(|p| p.to_bytes().to_vec())
                                .unwrap_or_default(),
                            name: s.name.to_string(),
                            kind: s.kind.to_otlp(),
                            start_time_unix_nano: s.start_ns,
                            end_time_unix_nano: s.end_ns,
                            attributes: pb_attrs(&s.attributes),
                            links: s
                                .links
                                .iter()
                                .map(|l| pb::Link {
                                    trace_id: l.trace_id.to_bytes().to_vec(),
                                    span_id: l.span_id.to_bytes().to_vec(),
                                    attributes: pb_attrs(&l.attributes),
                                })
                                .collect(),
                            status: Some(pb::Status {
                                message: s.status.message.clone(),
                                code: status_num(s.status.code),
                            }),
                        })
                        .collect(),
                }],
            })
            .collect(),
    };
    data.encode_to_vec()
}

/// Encodes spans as one varint-length-prefixed `TracesData` message (append
/// several to build a delimited stream).
pub fn to_otlp_proto_delimited(spans: &[Span]) -> Vec<u8> {
    let body = to_otlp_proto(spans);
    let mut out = Vec::with_capacity(body.len() + 10);
    let mut n = body.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(&body);
    out
}

fn json_any(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({ "stringValue": &**s }),
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttrValue::Double(d) => json!({ "doubleValue": d }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
        AttrValue::Array(a) => {
            json!({ "arrayValue": { "values": a.iter().map(json_any).collect::<Vec<_>>() } })
        }
    }
}

/// Encodes spans as one OTLP JSON line (the Collector `file` exporter shape:
/// hex ids, string nanosecond times), without the trailing newline.
pub fn to_otlp_json_line(spans: &[Span]) -> String {
    let rs: Vec<Value> = by_service(spans)
        .into_iter()
        .map(|(svc, spans)| {
            let res_attrs: Vec<Value> = svc
                .iter()
                .map(|s| json!({ "key": crate::semconv::SERVICE_NAME, "value": { "stringValue": &**s } }))
                .collect();
            let spans: Vec<Value> = spans
                .into_iter()
                .map(|s| {
                    json!({
                        "traceId": s.trace_id.to_string(),
                        "spanId": s.span_id.to_string(),
                        "parentSpanId": s.parent_span_id.map(|p| p.to_string()).unwrap_or_default(),
                        "name": &*s.name,
                        "kind": s.kind.to_otlp(),
                        "startTimeUnixNano": s.start_ns.to_string(),
                        "endTimeUnixNano": s.end_ns.to_string(),
                        "attributes": s.attributes.iter().map(|(k, v)| json!({ "key": k, "value": json_any(v) })).collect::<Vec<_>>(),
                        "links": s.links.iter().map(|l| json!({ "traceId": l.trace_id.to_string(), "spanId": l.span_id.to_string() })).collect::<Vec<_>>(),
                        "status": { "code": status_num(s.status.code), "message": s.status.message },
                    })
                })
                .collect();
            json!({
                "resource": { "attributes": res_attrs },
                "scopeSpans": [{ "scope": { "name": "spanline" }, "spans": spans }],
            })
        })
        .collect();
    json!({ "resourceSpans": rs }).to_string()
}

fn plain(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.to_string()),
        AttrValue::Int(i) => json!(i),
        AttrValue::Double(d) => json!(d),
        AttrValue::Bool(b) => json!(b),
        AttrValue::Array(a) => Value::Array(a.iter().map(plain).collect()),
    }
}

/// Encodes one span in spanline's console JSON-lines shape, without the
/// trailing newline.
pub fn to_console_json_line(s: &Span) -> String {
    let attrs: BTreeMap<&str, Value> = s.attributes.iter().map(|(k, v)| (k, plain(v))).collect();
    json!({
        "trace_id": s.trace_id.to_string(),
        "span_id": s.span_id.to_string(),
        "parent_span_id": s.parent_span_id.map(|p| p.to_string()),
        "name": &*s.name,
        "kind": format!("{:?}", s.kind),
        "start_time_unix_nano": s.start_ns,
        "end_time_unix_nano": s.end_ns,
        "status": { "code": format!("{:?}", s.status.code), "message": s.status.message },
        "attributes": attrs,
        "events": [],
        "links": s.links.iter().map(|l| json!({ "trace_id": l.trace_id.to_string(), "span_id": l.span_id.to_string() })).collect::<Vec<_>>(),
        "service_name": s.service_name.as_deref(),
    })
    .to_string()
}
