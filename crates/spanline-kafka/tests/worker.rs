//! The at-least-once worker: redelivery after a crash, dead letters,
//! graceful shutdown, batches.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{Broker, topic};
use opentelemetry::trace::SpanKind;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use spanline_core::semconv::messaging as m;
use spanline_core::{RequestContext, StageDescriptor, StageError, StageKind, Telemetry, stage_fn};
use spanline_kafka::{
    Assignment, Handler, Outgoing, Received, StageHandler, TracedConsumer, TracedProducer, Worker,
    WorkerConfig,
};
use spanline_testkit::{SpanDataExt, TestTelemetry};

async fn produce(broker: &Broker, topic: &str, payloads: &[&[u8]]) {
    let producer = TracedProducer::new(&broker.config(), Telemetry::disabled()).unwrap();
    for p in payloads {
        producer
            .send(&RequestContext::new(), Outgoing::new(topic, p).partition(0))
            .await
            .unwrap();
    }
}

/// The group's committed offset on partition 0 of `topic`.
async fn committed(broker: &Broker, group: &str, topic: &str) -> Option<i64> {
    let consumer = TracedConsumer::new(
        &broker.config(),
        Telemetry::disabled(),
        group,
        Assignment::Assign(vec![]),
    )
    .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let c = consumer.clone();
    let tpl = tokio::task::spawn_blocking(move || {
        c.inner().committed_offsets(tpl, Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    match tpl.find_partition(topic, 0)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Blocks forever on the first message after saying so.
struct Hang(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

#[async_trait]
impl Handler for Hang {
    async fn handle(&self, message: &Received<'_>) -> Result<(), StageError> {
        let _ = self.0.send(message.payload().to_vec());
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Records what it handled.
struct Record(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

#[async_trait]
impl Handler for Record {
    async fn handle(&self, message: &Received<'_>) -> Result<(), StageError> {
        let _ = self.0.send(message.payload().to_vec());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_before_storing_its_offset_leads_to_redelivery() {
    redelivery(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_on_a_real_broker() {
    if let Some(broker) = Broker::real("redelivery") {
        redelivery(broker).await;
    }
}

async fn redelivery(broker: Broker) {
    let name = topic("crash");
    broker.create_topic(&name, 1).await;
    produce(&broker, &name, &[b"job-1"]).await;
    let config = WorkerConfig::assign("crashers", &name, &[0]);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let first = Worker::new(
        &broker.config(),
        Telemetry::disabled(),
        config.clone(),
        Hang(tx),
    )
    .unwrap();
    let task = tokio::spawn(first.run(std::future::pending()));
    assert_eq!(rx.recv().await.unwrap(), b"job-1");
    // The process dies mid-message: no graceful shutdown, no offset stored.
    task.abort();
    let _ = task.await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let second = Worker::new(&broker.config(), Telemetry::disabled(), config, Record(tx)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(second.run(async {
        let _ = stopped.await;
    }));
    assert_eq!(rx.recv().await.unwrap(), b"job-1", "redelivered");
    let _ = stop.send(());
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.processed, 1);
    // Graceful shutdown committed it.
    assert_eq!(committed(&broker, "crashers", &name).await, Some(1));
}

/// Fails every time.
struct AlwaysFails(Arc<AtomicU32>);

#[async_trait]
impl Handler for AlwaysFails {
    async fn handle(&self, _message: &Received<'_>) -> Result<(), StageError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Err(StageError::unavailable("downstream is gone"))
    }
}

async fn read_one(broker: &Broker, topic: &str) -> rdkafka::message::OwnedMessage {
    let consumer = TracedConsumer::new(
        &broker.config(),
        Telemetry::disabled(),
        "dlq-reader",
        Assignment::Assign(vec![(topic.to_owned(), 0)]),
    )
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("a dead letter")
        .unwrap();
    msg.message().detach()
}

fn header(msg: &rdkafka::message::OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Message as _;
    let h = msg.headers()?;
    spanline_kafka::HeaderExtractor::owned(h)
        .get_str(key)
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_land_in_the_dead_letter_topic() {
    dead_letters(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_a_real_broker() {
    if let Some(broker) = Broker::real("dead_letters") {
        dead_letters(broker).await;
    }
}

async fn dead_letters(broker: Broker) {
    let t = TestTelemetry::new();
    let requests = topic("poison");
    let dlq = topic("poison.dlq");
    let failing = topic("failing");
    let failing_dlq = format!("{failing}.dlq");
    for (name, p) in [(&requests, 1), (&dlq, 1), (&failing, 1), (&failing_dlq, 1)] {
        broker.create_topic(name, p).await;
    }
    // 1. An undecodable payload for a stage worker.
    produce(&broker, &requests, &[b"{not json"]).await;
    let worker = t.build(|| {
        Worker::build(
            &broker.config(),
            t.telemetry(),
            WorkerConfig::assign("poison-workers", &requests, &[0]).dead_letter_topic(&dlq),
            |p| {
                StageHandler::new(
                    stage_fn(
                        StageDescriptor::new("echo", StageKind::Custom),
                        |s: String, _ctx| async move { Ok(s) },
                    ),
                    p.clone(),
                )
            },
        )
        .unwrap()
    });
    let processed = worker.processed();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let dead = read_one(&broker, &dlq).await;
    assert_eq!(dead.payload(), Some(&b"{not json"[..]));
    assert_eq!(
        header(&dead, "spanline-error-type").as_deref(),
        Some("invalid_input")
    );
    assert_eq!(
        header(&dead, "spanline-original-topic"),
        Some(requests.clone())
    );
    assert_eq!(
        header(&dead, "spanline-original-offset").as_deref(),
        Some("0")
    );
    assert_eq!(header(&dead, "spanline-attempts").as_deref(), Some("1"));
    let _ = stop.send(());
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(processed.load(Ordering::Relaxed), 0);
    // Nothing stuck: its offset was stored and committed.
    assert_eq!(
        committed(&broker, "poison-workers", &requests).await,
        Some(1)
    );
    // The dead letter continues the trace: its send span is a child of the
    // failed process span.
    let spans = t.spans();
    let process = spans.named(&format!("process {requests}"));
    assert_eq!(
        process.str_attr("error.type").as_deref(),
        Some("invalid_input")
    );
    let send = spans.named(&format!("send {dlq}"));
    assert_eq!(
        spans.parent_of(send).unwrap().span_context,
        process.span_context
    );

    // 2. A handler that still fails after its retries.
    produce(&broker, &failing, &[b"job"]).await;
    let attempts = Arc::new(AtomicU32::new(0));
    let worker = Worker::new(
        &broker.config(),
        Telemetry::disabled(),
        WorkerConfig::assign("failing-workers", &failing, &[0])
            .max_attempts(3)
            .retry_backoff(Duration::from_millis(5)),
        AlwaysFails(attempts.clone()),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // Default dead-letter topic: `{topic}.dlq`.
    let dead = read_one(&broker, &failing_dlq).await;
    assert_eq!(dead.payload(), Some(&b"job"[..]));
    assert_eq!(
        header(&dead, "spanline-error-type").as_deref(),
        Some("unavailable")
    );
    assert_eq!(header(&dead, "spanline-attempts").as_deref(), Some("3"));
    // Content capture is off: the error text stays out of the header.
    assert_eq!(
        header(&dead, "spanline-error-message").as_deref(),
        Some("a dependency was unavailable")
    );
    assert_eq!(attempts.load(Ordering::Relaxed), 3);
    let _ = stop.send(());
    let report = task.await.unwrap().unwrap();
    assert_eq!((report.dead_lettered, report.retries), (1, 2));
    assert_eq!(
        committed(&broker, "failing-workers", &failing).await,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_and_commits() {
    graceful_shutdown(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_on_a_real_broker() {
    if let Some(broker) = Broker::real("graceful_shutdown") {
        graceful_shutdown(broker).await;
    }
}

async fn graceful_shutdown(broker: Broker) {
    let name = topic("drain");
    broker.create_topic(&name, 1).await;
    produce(&broker, &name, &[b"a", b"b", b"c"]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::new(
        &broker.config(),
        Telemetry::disabled(),
        WorkerConfig::assign("drainers", &name, &[0]),
        Record(tx),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    for want in [b"a", b"b", b"c"] {
        assert_eq!(rx.recv().await.unwrap(), want);
    }
    let _ = stop.send(());
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.processed, 3);
    assert_eq!(committed(&broker, "drainers", &name).await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_links_to_every_message() {
    batch(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_on_a_real_broker() {
    if let Some(broker) = Broker::real("batch") {
        batch(broker).await;
    }
}

async fn batch(broker: Broker) {
    let t = TestTelemetry::new();
    let name = topic("batch");
    broker.create_topic(&name, 1).await;
    let producer = t
        .build(|| TracedProducer::new(&broker.config(), t.telemetry()))
        .unwrap();
    let mut sends = Vec::new();
    for i in 0..3u8 {
        let d = producer
            .send(
                &RequestContext::new(),
                Outgoing::new(&name, &[i]).partition(0),
            )
            .await
            .unwrap();
        sends.push(d.span_context);
    }
    let consumer = t
        .build(|| {
            TracedConsumer::new(
                &broker.config(),
                t.telemetry(),
                "batchers",
                Assignment::Assign(vec![(name.clone(), 0)]),
            )
        })
        .unwrap();
    let mut got = 0;
    let mut batches = 0;
    while got < 3 {
        let batch = consumer
            .recv_batch(&RequestContext::new(), 3, Duration::from_millis(500))
            .await
            .unwrap();
        got += batch.messages().len();
        batches += 1;
        batch.done().unwrap();
    }
    let spans = t.spans();
    let process = spans.all_named(&format!("process {name}"));
    assert_eq!(process.len(), batches);
    let links: usize = process.iter().map(|p| p.links.len()).sum();
    assert_eq!(links, 3);
    let count: i64 = process
        .iter()
        .map(|p| p.i64_attr(m::BATCH_MESSAGE_COUNT).unwrap())
        .sum();
    assert_eq!(count, 3);
    for p in &process {
        assert_eq!(p.span_kind, SpanKind::Consumer);
        assert_eq!(p.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        for link in p.links.iter() {
            // The same span, seen from the consumer's side (remote).
            assert!(
                sends
                    .iter()
                    .any(|s| s.span_id() == link.span_context.span_id()
                        && s.trace_id() == link.span_context.trace_id())
            );
        }
    }
    // One queue span per message, each under its message's send span.
    let queues = spans.all_named(&format!("spanline.queue {name}"));
    assert_eq!(queues.len(), 3);
    for q in queues {
        assert!(sends.iter().any(|s| s.span_id() == q.parent_span_id));
    }
}
