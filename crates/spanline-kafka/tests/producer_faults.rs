//! Producer faults on the mock cluster: broker down, transient produce
//! errors, a full local queue, an oversized message.

mod common;

use std::time::{Duration, Instant};

use common::{Broker, topic};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use spanline_core::{ErrorKind, RequestContext, StageError};
use spanline_kafka::{KafkaError, Outgoing, TracedProducer};
use spanline_testkit::{SpanDataExt, TestTelemetry};

#[tokio::test]
async fn broker_down_gives_a_typed_error_within_message_timeout() {
    let broker = Broker::mock();
    let embedded = broker.embedded.clone().unwrap();
    embedded
        .with_cluster(|c| c.broker_down(1))
        .unwrap()
        .unwrap();
    let t = TestTelemetry::new();
    let producer = t
        .build(|| {
            TracedProducer::new(
                &broker.config().set("message.timeout.ms", "1000"),
                t.telemetry(),
            )
        })
        .unwrap();
    let started = Instant::now();
    let err = producer
        .send(&RequestContext::new(), Outgoing::new(&topic("down"), b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, KafkaError::DeliveryTimeout), "{err:?}");
    assert_eq!(StageError::from(err).kind(), ErrorKind::Unavailable);
    // Bounded by message.timeout.ms (generous slack for a loaded machine,
    // never "forever").
    assert!(started.elapsed() < Duration::from_secs(15));
    let spans = t.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans.0[0].str_attr("error.type").as_deref(),
        Some("unavailable")
    );
    assert_eq!(
        t.metrics()
            .counter("messaging.client.sent.messages", &[("outcome", "error")]),
        1
    );
}

#[tokio::test]
async fn transient_produce_errors_are_retried_and_delivered_once() {
    let broker = Broker::mock();
    let embedded = broker.embedded.clone().unwrap();
    let name = topic("transient");
    embedded.create_topic(&name, 1).unwrap();
    embedded
        .with_cluster(|c| {
            c.request_errors(
                RDKafkaApiKey::Produce,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                ],
            )
        })
        .unwrap();
    let kafka = broker
        .config()
        .set("enable.idempotence", "true")
        .set("retry.backoff.ms", "10");
    let producer = TracedProducer::new(&kafka, spanline_core::Telemetry::disabled()).unwrap();
    let delivered = producer
        .send(&RequestContext::new(), Outgoing::new(&name, b"once"))
        .await
        .unwrap();
    assert_eq!(delivered.offset, 0);
    // Exactly one copy is stored.
    let bootstrap = resolved_bootstrap(&broker);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "check")
        .create()
        .unwrap();
    let (low, high) = tokio::task::spawn_blocking(move || {
        consumer.fetch_watermarks(&name, 0, Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(high - low, 1);
}

fn resolved_bootstrap(broker: &Broker) -> String {
    broker
        .embedded
        .as_ref()
        .map(|e| e.bootstrap_servers().to_owned())
        .unwrap()
}

#[tokio::test]
async fn a_full_local_queue_is_a_backpressure_error() {
    let broker = Broker::mock();
    let kafka = broker
        .config()
        .set("queue.buffering.max.messages", "10")
        .set("linger.ms", "2000");
    let producer = TracedProducer::new(&kafka, spanline_core::Telemetry::disabled()).unwrap();
    let name = topic("full");
    let ctx = RequestContext::new();
    let mut pending = Vec::new();
    let err = loop {
        match producer.enqueue(&ctx, Outgoing::new(&name, b"x")) {
            Ok(p) => pending.push(p),
            Err(e) => break e,
        }
        assert!(pending.len() <= 10, "the queue never filled");
    };
    assert!(matches!(err, KafkaError::QueueFull), "{err:?}");
    assert_eq!(pending.len(), 10);
    assert_eq!(StageError::from(err).kind(), ErrorKind::ResourceExhausted);
    // What was accepted is still delivered.
    for p in pending {
        p.await.unwrap();
    }
}

#[tokio::test]
async fn an_oversized_message_fails_at_once() {
    let broker = Broker::mock();
    let producer =
        TracedProducer::new(&broker.config(), spanline_core::Telemetry::disabled()).unwrap();
    let huge = "x".repeat(1 << 20);
    let headers = OwnedHeaders::new().insert(Header {
        key: "x-large",
        value: Some(huge.as_str()),
    });
    let started = Instant::now();
    let err = producer
        .send(
            &RequestContext::new(),
            Outgoing::new(&topic("huge"), b"x").headers(headers),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, KafkaError::MessageTooLarge), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
