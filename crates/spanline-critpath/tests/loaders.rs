//! Loaders: every format round-trips, and malformed input yields one
//! diagnostic per problem while the rest is still analysed.

mod common;

use common::*;
use spanline_critpath::encode::{
    to_console_json_line, to_otlp_json_line, to_otlp_proto, to_otlp_proto_delimited,
};
use spanline_critpath::{DiagnosticKind, Format, Location, Span, analyze, load_reader};

fn sample_path() -> Vec<(String, &'static str, u64)> {
    path(&sample_pipeline(1).analyze())
}

/// Attribute order is not significant (JSON objects are unordered).
fn norm(spans: &[Span]) -> Vec<Span> {
    let mut v = spans.to_vec();
    for s in &mut v {
        s.attributes.0.sort_by(|a, b| a.0.cmp(&b.0));
    }
    v
}

fn console(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| to_console_json_line(s) + "\n")
        .collect()
}

#[test]
fn console_json_lines_round_trip() {
    let t = sample_pipeline(1);
    let loaded = load_reader(console(&t.spans).as_bytes(), Format::Auto).expect("readable");
    assert_eq!(loaded.format, Some(Format::JsonLines));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(norm(&loaded.spans), norm(&t.spans));
    let reports = analyze(&loaded.spans);
    assert_eq!(path(&reports[0]), sample_path());
}

#[test]
fn otlp_json_round_trip_with_services() {
    let mut t = sample_pipeline(1);
    for (i, s) in t.spans.iter_mut().enumerate() {
        s.service_name = Some(if i % 2 == 0 { "api" } else { "worker" }.into());
    }
    let text = to_otlp_json_line(&t.spans[..4]) + "\n" + &to_otlp_json_line(&t.spans[4..]) + "\n";
    let loaded = load_reader(text.as_bytes(), Format::Auto).expect("readable");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let mut got = loaded.spans.clone();
    got.sort_by_key(|s| s.span_id);
    let mut want = t.spans.clone();
    want.sort_by_key(|s| s.span_id);
    assert_eq!(got, want);
    assert_eq!(path(&analyze(&loaded.spans)[0]), sample_path());
}

#[test]
fn otlp_json_with_base64_ids_and_string_ints() {
    let line = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeSpans":[{"spans":[
        {"traceId":"CvdlGRbNQ92ESOshHIAxnA==","spanId":"t61rcWkgMwE=","name":"root","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1000","endTimeUnixNano":"5000",
         "attributes":[{"key":"spanline.step.index","value":{"intValue":"3"}},{"key":"x","value":{"arrayValue":{"values":[{"intValue":"1"},{"intValue":"2"}]}}}],
         "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;
    let loaded = load_reader(line.replace('\n', "").as_bytes(), Format::Auto).expect("readable");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let s = &loaded.spans[0];
    assert_eq!(s.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(s.span_id.to_string(), "b7ad6b7169203301");
    assert_eq!(s.kind, spanline_critpath::SpanKind::Server);
    assert_eq!(s.status.code, spanline_critpath::StatusCode::Error);
    assert_eq!(
        s.attributes
            .get("spanline.step.index")
            .and_then(|v| v.as_i64()),
        Some(3)
    );
    assert_eq!(s.service_name.as_deref(), Some("svc"));
}

#[test]
fn console_field_names_are_tolerant() {
    let lines = [
        r#"{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"0000000000000001","parentSpanId":"","name":"root","kind":"Server","startTimeUnixNano":"0","endTimeUnixNano":"100","status":"Ok","serviceName":"a"}"#,
        r#"{"trace_id":"0AF7651916CD43DD8448EB211C80319C","span_id":"0000000000000002","parent_span_id":"0000000000000001","name":"child","kind":3,"start_time_unix_nano":10,"end_time_unix_nano":90.0,"status":{"Error":{"description":"bad"}},"attributes":{"spanline.stage.name":"s","n":1.5,"b":true,"l":[1,2]},"events":[],"links":[{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"0000000000000009"}],"service_name":null}"#,
    ];
    let loaded = load_reader(lines.join("\n").as_bytes(), Format::JsonLines).expect("readable");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.spans.len(), 2);
    let c = &loaded.spans[1];
    assert_eq!(c.parent_span_id, Some(loaded.spans[0].span_id));
    assert_eq!(c.status.code, spanline_critpath::StatusCode::Error);
    assert_eq!(c.status.message, "bad");
    assert_eq!(c.kind, spanline_critpath::SpanKind::Client);
    assert_eq!(c.links.len(), 1);
    assert_eq!(loaded.spans[0].parent_span_id, None);
}

#[test]
fn bad_json_line_is_reported_and_the_rest_analysed() {
    let t = sample_pipeline(1);
    let mut lines: Vec<String> = t.spans.iter().map(to_console_json_line).collect();
    lines.insert(
        3,
        r#"{"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "#.to_owned(),
    );
    lines.insert(5, "[1, 2".to_owned());
    lines.insert(6, r#"{"trace_id":"zz","span_id":"0000000000000001","start_time_unix_nano":1,"end_time_unix_nano":2}"#.to_owned());
    let text = lines.join("\n");
    let loaded = load_reader(text.as_bytes(), Format::Auto).expect("readable");
    let kinds: Vec<(DiagnosticKind, Location)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.kind, d.location))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (DiagnosticKind::BadJson, Location::Line(4)),
            (DiagnosticKind::BadJson, Location::Line(6)),
            (DiagnosticKind::BadSpan, Location::Line(7)),
        ]
    );
    assert!(loaded.diagnostics[0].message.contains("invalid JSON"));
    assert_eq!(loaded.spans.len(), t.spans.len());
    assert_eq!(path(&analyze(&loaded.spans)[0]), sample_path());
}

#[test]
fn otlp_protobuf_round_trip() {
    let t = sample_pipeline(1);
    let bytes = to_otlp_proto(&t.spans);
    let loaded = load_reader(bytes.as_slice(), Format::Auto).expect("readable");
    assert_eq!(loaded.format, Some(Format::OtlpProto));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.spans, t.spans);
    assert_eq!(path(&analyze(&loaded.spans)[0]), sample_path());
}

#[test]
fn length_delimited_protobuf_messages() {
    let a = sample_pipeline(1);
    let b = sample_pipeline(2);
    let mut bytes = to_otlp_proto_delimited(&a.spans);
    bytes.extend(to_otlp_proto_delimited(&b.spans));
    let loaded = load_reader(bytes.as_slice(), Format::Auto).expect("readable");
    assert_eq!(loaded.format, Some(Format::OtlpProtoDelimited));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.spans.len(), a.spans.len() + b.spans.len());
    let reports = analyze(&loaded.spans);
    assert_eq!(reports.len(), 2);
    assert_eq!(path(&reports[1]), sample_path());
}

#[test]
fn truncated_protobuf_keeps_every_complete_span() {
    let t = sample_pipeline(1);
    let full = to_otlp_proto(&t.spans);
    // Cut 10 bytes into the last span: everything before it survives.
    let last = to_otlp_proto(&t.spans[t.spans.len() - 1..]);
    let _ = last;
    for cut in [full.len() - 1, full.len() - 25, full.len() / 2] {
        let loaded = load_reader(&full[..cut], Format::OtlpProto).expect("readable");
        assert_eq!(
            loaded
                .diagnostics
                .iter()
                .filter(|d| d.kind == DiagnosticKind::TruncatedProtobuf)
                .count(),
            1,
            "cut at {cut}: {:?}",
            loaded.diagnostics
        );
        assert!(!loaded.spans.is_empty());
        assert!(loaded.spans.len() < t.spans.len());
        assert_eq!(loaded.spans[..], t.spans[..loaded.spans.len()]);
    }
    // Cutting only the final span: the trace minus "chat extractive" is analysed exactly.
    let loaded = load_reader(&full[..full.len() - 1], Format::Auto).expect("readable");
    assert_eq!(loaded.spans.len(), t.spans.len() - 1);
    let r = &analyze(&loaded.spans)[0];
    assert_tiles(r);
    let p = path(r);
    assert_eq!(
        p.last(),
        Some(&("invoke_workflow rag".to_owned(), "self", 15))
    );
    assert_eq!(
        p[p.len() - 2],
        ("spanline.rerank identity".to_owned(), "stage", 4)
    );
}

#[test]
fn truncated_delimited_stream_keeps_earlier_messages() {
    let a = sample_pipeline(1);
    let b = sample_pipeline(2);
    let mut bytes = to_otlp_proto_delimited(&a.spans);
    let second = to_otlp_proto_delimited(&b.spans);
    bytes.extend_from_slice(&second[..second.len() / 3]);
    let loaded = load_reader(bytes.as_slice(), Format::OtlpProtoDelimited).expect("readable");
    assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
    assert_eq!(
        loaded.diagnostics[0].kind,
        DiagnosticKind::TruncatedProtobuf
    );
    assert!(loaded.spans.len() >= a.spans.len());
    assert_eq!(path(&analyze(&loaded.spans)[0]), sample_path());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    for len in [0usize, 1, 2, 7, 64, 1000, 10_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        for f in [
            Format::Auto,
            Format::JsonLines,
            Format::OtlpProto,
            Format::OtlpProtoDelimited,
        ] {
            let loaded = load_reader(bytes.as_slice(), f).expect("reading memory cannot fail");
            let _ = analyze(&loaded.spans);
        }
    }
    // Every prefix of a valid protobuf file.
    let full = to_otlp_proto(&sample_pipeline(1).spans);
    for cut in 0..full.len() {
        let loaded = load_reader(&full[..cut], Format::OtlpProto).expect("readable");
        let _ = analyze(&loaded.spans);
    }
}

#[test]
fn empty_input_is_empty() {
    let loaded = load_reader(&b""[..], Format::Auto).expect("readable");
    assert!(loaded.spans.is_empty() && loaded.diagnostics.is_empty());
    let loaded = load_reader(&b"\n\n  \n"[..], Format::Auto).expect("readable");
    assert!(loaded.spans.is_empty() && loaded.diagnostics.is_empty());
}
