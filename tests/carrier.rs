//! Behaviour: the carrier validates W3C headers strictly before trusting
//! them; anything invalid starts a new trace and never panics.

use std::collections::BTreeMap;

use opentelemetry::propagation::Extractor;
use spanline_core::propagation::{TraceparentError, extract};
use spanline_core::{RequestAttributes, RequestContext, TraceCarrier};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn carrier(pairs: &[(&str, String)]) -> TraceCarrier {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect::<BTreeMap<_, _>>()
        .into()
}

#[test]
fn vectors() {
    let cases: Vec<(&str, String, Option<TraceparentError>)> = vec![
        ("valid", TP.into(), None),
        (
            "all-zero trace id",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
            Some(TraceparentError::ZeroId),
        ),
        (
            "all-zero parent id",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".into(),
            Some(TraceparentError::ZeroId),
        ),
        (
            "short trace id",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01".into(),
            Some(TraceparentError::Shape),
        ),
        (
            "long for version 00",
            format!("{TP}-00"),
            Some(TraceparentError::Shape),
        ),
        (
            "uppercase hex",
            TP.to_uppercase(),
            Some(TraceparentError::NotLowercaseHex),
        ),
        (
            "version ff",
            TP.replacen("00", "ff", 1),
            Some(TraceparentError::InvalidVersion),
        ),
        (
            "oversize",
            format!("cc-{}", "a".repeat(100_000)),
            Some(TraceparentError::TooLong),
        ),
    ];
    for (what, value, want) in cases {
        let got = extract(&carrier(&[
            ("traceparent", value),
            ("tracestate", "vendor=x".into()),
        ]));
        match want {
            None => {
                let p = got.parent.expect(what);
                assert_eq!(p.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
                assert!(p.is_remote() && p.is_sampled());
                assert_eq!(p.trace_state().get("vendor"), Some("x"));
            }
            Some(e) => {
                assert!(got.parent.is_none(), "{what}");
                assert_eq!(got.rejected.traceparent, Some(e), "{what}");
                assert!(
                    got.rejected.tracestate,
                    "{what}: tracestate goes with an invalid traceparent"
                );
                assert!(
                    !got.clone().into_context().span_context().is_valid(),
                    "{what}: a new trace starts"
                );
            }
        }
    }
}

#[test]
fn a_future_version_is_read_by_its_first_four_fields() {
    let got = extract(&carrier(&[(
        "traceparent",
        format!("{}-extra", TP.replacen("00", "cc", 1)),
    )]));
    assert_eq!(
        got.parent.unwrap().span_id().to_string(),
        "00f067aa0ba902b7"
    );
}

#[test]
fn tracestate_over_32_members_is_dropped_but_the_parent_kept() {
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let got = extract(&carrier(&[
        ("traceparent", TP.into()),
        ("tracestate", members.join(",")),
    ]));
    let p = got.parent.unwrap();
    assert_eq!(p.trace_state().header(), "");
    assert!(got.rejected.tracestate);
}

/// Two `traceparent` values (Kafka and HTTP allow repeated headers).
struct Repeated(Vec<(&'static str, String)>);
impl Extractor for Repeated {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        (!all.is_empty()).then_some(all)
    }
}

#[test]
fn duplicate_traceparents_start_a_new_trace() {
    let other = TP.replace("00f067aa0ba902b7", "1111111111111111");
    let got = extract(&Repeated(vec![
        ("traceparent", TP.into()),
        ("traceparent", other),
    ]));
    assert!(got.parent.is_none());
    assert_eq!(got.rejected.traceparent, Some(TraceparentError::Duplicate));
}

#[test]
fn baggage_over_8192_bytes_keeps_whole_members_within_the_limit() {
    let members: Vec<String> = (0..40)
        .map(|i| format!("spanline.meta.k{i}={}", "v".repeat(300)))
        .collect();
    let header = members.join(",");
    assert!(header.len() > 8192);
    let got = extract(&carrier(&[("baggage", header)]));
    let kept = got.attributes.metadata_iter().count();
    assert!(kept > 20 && kept < 40, "{kept}");
    assert_eq!(kept + got.rejected.baggage_members, 40);
    assert!(
        got.attributes.metadata_iter().all(|(_, v)| v.len() == 300),
        "no member is cut in half"
    );
}

#[test]
fn hostile_bytes_never_panic() {
    let nasty = [
        "",
        "-",
        "00-",
        "\u{0}\u{0}",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{e9}",
        "😀😀😀",
        "%%%,=,;;,=%zz",
    ];
    for n in nasty {
        let got = extract(&carrier(&[
            ("traceparent", n.into()),
            ("tracestate", n.into()),
            ("baggage", n.into()),
        ]));
        assert!(got.parent.is_none());
    }
}

#[test]
fn inject_then_extract_continues_the_same_trace() {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let parent = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
    );
    let attrs = RequestAttributes::builder().user_id("u").build().unwrap();
    let ctx = RequestContext::new()
        .with_remote_parent(parent.clone())
        .with_attributes(attrs.clone());
    let got = TraceCarrier::from_context(&ctx).extract();
    let p = got.parent.unwrap();
    assert_eq!(
        (p.trace_id(), p.span_id()),
        (parent.trace_id(), parent.span_id())
    );
    assert_eq!(p.trace_state().get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(got.attributes, attrs);
}
