//! Behaviour: request attributes appear on every span of the request and
//! travel as W3C baggage; oversized attribute sets are refused when built.

mod common;

use common::rag_pipeline;
use futures_util::FutureExt;
use spanline_core::propagation::{MAX_BAGGAGE_BYTES, extract};
use spanline_core::{AttributeError, Query, RequestAttributes, RequestContext, TraceCarrier};
use spanline_testkit::{SpanDataExt, TestTelemetry};

fn attributes() -> RequestAttributes {
    RequestAttributes::builder()
        .workflow("support-bot")
        .user_id("user-42")
        .customer_id("acme")
        .session_id("thread-7")
        .metadata("tier", "premium")
        .metadata("region", "eu west/1")
        .build()
        .unwrap()
}

#[tokio::test]
async fn on_every_span() {
    let t = TestTelemetry::new();
    let rag = t.build(|| rag_pipeline(t.telemetry()).now_or_never().unwrap());
    let ctx = RequestContext::new().with_attributes(attributes());
    rag.run(Query::new("kafka headers"), &ctx).await.unwrap();
    let spans = t.spans();
    assert_eq!(spans.len(), 9);
    for s in &spans.0 {
        assert_eq!(
            s.str_attr("gen_ai.workflow.name").as_deref(),
            Some("support-bot"),
            "{}",
            s.name
        );
        assert_eq!(s.str_attr("user.id").as_deref(), Some("user-42"));
        assert_eq!(s.str_attr("spanline.customer.id").as_deref(), Some("acme"));
        assert_eq!(s.str_attr("session.id").as_deref(), Some("thread-7"));
        assert_eq!(
            s.str_attr("gen_ai.conversation.id").as_deref(),
            Some("thread-7")
        );
        assert_eq!(
            s.str_attr("spanline.metadata.tier").as_deref(),
            Some("premium")
        );
        assert_eq!(
            s.str_attr("spanline.metadata.region").as_deref(),
            Some("eu west/1")
        );
    }
}

#[test]
fn travel_as_baggage_and_come_back_equal() {
    let ctx = RequestContext::new().with_attributes(attributes());
    let carrier = TraceCarrier::from_context(&ctx);
    let baggage = &carrier.headers()["baggage"];
    assert!(baggage.contains("user.id=user-42"));
    assert!(
        baggage.contains("spanline.meta.region=eu%20west/1"),
        "{baggage}"
    );
    let json = serde_json::to_string(&carrier).unwrap();
    let back: TraceCarrier = serde_json::from_str(&json).unwrap();
    let extracted = extract(&back);
    assert_eq!(extracted.attributes, attributes());
    assert_eq!(extracted.rejected.baggage_members, 0);
}

#[test]
fn oversized_sets_are_refused_when_built() {
    let big = "x".repeat(MAX_BAGGAGE_BYTES);
    let err = RequestAttributes::builder()
        .metadata("blob", big)
        .build()
        .unwrap_err();
    assert!(matches!(err, AttributeError::TooLarge { .. }), "{err}");
    let mut many = RequestAttributes::builder();
    for i in 0..70 {
        many = many.metadata(format!("k{i}"), "v");
    }
    assert!(matches!(
        many.build().unwrap_err(),
        AttributeError::TooManyMembers { max: 64 }
    ));
    let err = RequestAttributes::builder()
        .metadata("bad key", "v")
        .build()
        .unwrap_err();
    assert!(matches!(err, AttributeError::InvalidKey(_)));
}
