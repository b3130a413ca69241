//! Header vectors through a real produce/consume: valid, invalid,
//! duplicate and oversized trace headers; the consumer never panics and
//! starts a new trace for anything it cannot trust.

mod common;

use std::time::Duration;

use common::{Broker, topic};
use opentelemetry::trace::{SpanId, TraceId};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use spanline_core::{AttributeError, RequestAttributes};
use spanline_kafka::{Assignment, TracedConsumer};
use spanline_testkit::TestTelemetry;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";
const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A labelled header set, and whether the consumer should continue `TRACE`.
type Vector = (&'static str, Vec<(&'static str, Vec<u8>)>, bool);

fn vectors() -> Vec<Vector> {
    let big = vec![b'a'; 900 * 1024];
    let mut big_baggage = b"user.id=".to_vec();
    big_baggage.extend_from_slice(&big);
    vec![
        ("valid", vec![("traceparent", TP.into())], true),
        (
            "valid with tracestate and baggage",
            vec![
                ("traceparent", TP.into()),
                ("tracestate", b"vendor=v1".to_vec()),
                ("baggage", b"user.id=u-1".to_vec()),
            ],
            true,
        ),
        (
            "uppercase hex",
            vec![("traceparent", TP.to_uppercase().into())],
            false,
        ),
        (
            "zero trace id",
            vec![(
                "traceparent",
                b"00-00000000000000000000000000000000-b7ad6b7169203331-01".to_vec(),
            )],
            false,
        ),
        (
            "garbage",
            vec![("traceparent", b"\x00\x01garbage".to_vec())],
            false,
        ),
        (
            "not UTF-8",
            vec![("traceparent", vec![0xff, 0xfe, 0xfd])],
            false,
        ),
        (
            "duplicate",
            vec![("traceparent", TP.into()), ("traceparent", TP.into())],
            false,
        ),
        (
            "oversized traceparent",
            vec![("traceparent", big.clone())],
            false,
        ),
        (
            "oversized baggage beside a valid parent",
            vec![("traceparent", TP.into()), ("baggage", big_baggage)],
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_vectors_never_panic_and_untrusted_parents_start_new_traces() {
    header_vectors(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_vectors_on_a_real_broker() {
    if let Some(broker) = Broker::real("header_vectors") {
        header_vectors(broker).await;
    }
}

async fn header_vectors(broker: Broker) {
    let t = TestTelemetry::new();
    let name = topic("vectors");
    broker.create_topic(&name, 1).await;
    let bootstrap = broker.bootstrap();
    let raw: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let cases = vectors();
    for (label, headers, _) in &cases {
        let h = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        });
        raw.send(
            FutureRecord::<(), [u8]>::to(&name)
                .payload(label.as_bytes())
                .partition(0)
                .headers(h),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
    let consumer = t
        .build(|| {
            TracedConsumer::new(
                &broker.config().set("fetch.max.bytes", "4000000"),
                t.telemetry(),
                "vectors",
                Assignment::Assign(vec![(name.clone(), 0)]),
            )
        })
        .unwrap();
    for (label, _, continues) in &cases {
        let msg = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload(), label.as_bytes());
        let cx = msg.ctx().span_context();
        assert!(cx.is_valid(), "{label}: a process span is always recorded");
        let continued = cx.trace_id() == TraceId::from_hex(TRACE).unwrap();
        assert_eq!(continued, *continues, "{label}");
        if label.contains("baggage") && !label.contains("oversized") {
            assert_eq!(msg.ctx().attributes().user_id(), Some("u-1"), "{label}");
        }
        if label.starts_with("oversized baggage") {
            assert!(
                msg.ctx().attributes().is_empty(),
                "{label}: baggage dropped"
            );
        }
        msg.done().unwrap();
    }
    // Continued traces hang under the remote send span.
    let spans = t.spans();
    let process = spans.all_named(&format!("process {name}"));
    assert_eq!(process.len(), cases.len());
    let under_remote = process
        .iter()
        .filter(|s| s.parent_span_id == SpanId::from_hex(SPAN).unwrap())
        .count();
    assert_eq!(under_remote, cases.iter().filter(|c| c.2).count());
}

#[test]
fn a_megabyte_of_baggage_is_a_clear_error_before_anything_is_sent() {
    let err = RequestAttributes::builder()
        .metadata("blob", "x".repeat(1 << 20))
        .build()
        .unwrap_err();
    assert!(matches!(err, AttributeError::TooLarge { .. }), "{err}");
}
