//! One trace through a request/reply with two workers in one consumer
//! group: caller stage → send → queue wait → process (the worker's stage
//! spans) → reply send → queue wait → caller resumes.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Broker, topic, wait_until};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::consumer::Consumer as _;
use spanline_core::semconv::messaging as m;
use spanline_core::semconv::spanline::SEGMENT_TYPE;
use spanline_core::{Pipeline, RequestContext, StageDescriptor, StageKind, stage_fn};
use spanline_kafka::{RequestReply, RequestReplyConfig, StageHandler, Worker, WorkerConfig};
use spanline_testkit::{SpanDataExt, Spans, TestTelemetry};

const REQUESTS: usize = 8;

async fn one_trace_through_two_workers(broker: Broker) {
    let t = TestTelemetry::new();
    let requests = topic("rr.requests");
    let replies = topic("rr.replies");
    broker.create_topic(&requests, 2).await;
    broker.create_topic(&replies, 1).await;
    let kafka = broker.config();

    // Two workers, one group, a two-partition request topic.
    let mut processed = Vec::new();
    let mut consumers = Vec::new();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let worker = t.build(|| {
            let stage = Pipeline::builder("worker")
                .telemetry(t.telemetry())
                .then(stage_fn(
                    StageDescriptor::new("lookup", StageKind::Retrieve),
                    |q: String, _ctx| async move { Ok(format!("docs for {q}")) },
                ))
                .build();
            Worker::build(
                &kafka,
                t.telemetry(),
                WorkerConfig::subscribe("rr-workers", &requests),
                |producer| StageHandler::new(stage, producer.clone()),
            )
            .unwrap()
        });
        processed.push(worker.processed());
        consumers.push(worker.consumer().clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(worker.run(async {
            let _ = rx.await;
        })));
    }
    // Both members joined and own one partition each.
    let joined = wait_until(Duration::from_secs(30), || {
        consumers.iter().all(|c| {
            c.inner()
                .assignment()
                .map(|a| a.count() == 1)
                .unwrap_or(false)
        })
    })
    .await;
    assert!(joined, "both workers should own one partition");

    let caller = t
        .build(|| {
            RequestReply::<String, String>::connect(
                &kafka,
                t.telemetry(),
                RequestReplyConfig::new(
                    StageDescriptor::new("remote-lookup", StageKind::Retrieve),
                    &requests,
                    &replies,
                )
                .timeout(Duration::from_secs(20)),
            )
        })
        .await
        .unwrap();
    let pipeline = t.build(|| {
        Pipeline::builder("caller")
            .telemetry(t.telemetry())
            .then(caller)
            .build()
    });
    for i in 0..REQUESTS {
        let out = pipeline
            .run(format!("q{i}"), &RequestContext::new())
            .await
            .unwrap();
        assert_eq!(out, format!("docs for q{i}"));
    }
    // Each worker's process span ends after its reply is delivered.
    let done = wait_until(Duration::from_secs(10), || {
        t.spans().all_named(&format!("process {requests}")).len() == REQUESTS
    })
    .await;
    assert!(done);
    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Scale-out: both workers served requests.
    let counts: Vec<u64> = processed
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), REQUESTS as u64);
    assert!(
        counts.iter().all(|&c| c > 0),
        "both workers served: {counts:?}"
    );

    let spans = t.spans();
    let roots = spans.all_named("invoke_workflow caller");
    assert_eq!(roots.len(), REQUESTS);
    for root in roots {
        check_trace(&spans, root, &requests, &replies);
    }
    // Queue wait: one sample per request and one per reply.
    let metrics = t.metrics();
    assert_eq!(
        metrics.histogram_count(m::metric::QUEUE_WAIT, &[]),
        2 * REQUESTS,
        "{}",
        broker.name
    );
}

fn in_trace<'a>(spans: &'a Spans, trace: TraceId, name: &str) -> &'a SpanData {
    let found: Vec<_> = spans
        .0
        .iter()
        .filter(|s| s.span_context.trace_id() == trace && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {name:?} in the trace");
    found[0]
}

fn parent<'a>(spans: &'a Spans, span: &SpanData) -> &'a SpanData {
    spans
        .parent_of(span)
        .unwrap_or_else(|| panic!("{} has a recorded parent", span.name))
}

fn check_trace(spans: &Spans, root: &SpanData, requests: &str, replies: &str) {
    let trace = root.span_context.trace_id();
    let all: Vec<_> = spans
        .0
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    let stage = in_trace(spans, trace, "retrieval remote-lookup");
    let send = in_trace(spans, trace, &format!("send {requests}"));
    let queue = in_trace(spans, trace, &format!("spanline.queue {requests}"));
    let process = in_trace(spans, trace, &format!("process {requests}"));
    let worker = in_trace(spans, trace, "invoke_workflow worker");
    let lookup = in_trace(spans, trace, "retrieval lookup");
    let reply = in_trace(spans, trace, &format!("send {replies}"));
    let reply_queue = in_trace(spans, trace, &format!("spanline.queue {replies}"));
    assert_eq!(
        all.len(),
        9,
        "{:?}",
        all.iter().map(|s| &s.name).collect::<Vec<_>>()
    );

    assert_eq!(parent(spans, stage).span_context, root.span_context);
    assert_eq!(stage.span_kind, SpanKind::Client);
    assert_eq!(stage.str_attr(SEGMENT_TYPE).as_deref(), Some("hop"));
    let conversation = stage.str_attr(m::CONVERSATION_ID).unwrap();

    assert_eq!(parent(spans, send).span_context, stage.span_context);
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(send.str_attr(m::SYSTEM).as_deref(), Some("kafka"));
    assert_eq!(
        send.str_attr(m::CONVERSATION_ID),
        Some(conversation.clone())
    );
    assert!(send.i64_attr(m::KAFKA_OFFSET).is_some());
    assert!(send.str_attr(m::DESTINATION_PARTITION_ID).is_some());

    // Queue wait: its own span under the message's creation context,
    // starting at send time and ending when the consumer picked it up.
    assert_eq!(parent(spans, queue).span_context, send.span_context);
    assert_eq!(queue.str_attr(SEGMENT_TYPE).as_deref(), Some("queue"));
    assert!(queue.start_time >= send.start_time);
    assert!(queue.end_time <= process.start_time);

    // Single messages: the process span is the send span's child.
    assert_eq!(parent(spans, process).span_context, send.span_context);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        process.str_attr(m::CONVERSATION_ID),
        Some(conversation.clone())
    );
    assert_eq!(
        process.str_attr(m::CONSUMER_GROUP_NAME).as_deref(),
        Some("rr-workers")
    );

    assert_eq!(parent(spans, worker).span_context, process.span_context);
    assert_eq!(parent(spans, lookup).span_context, worker.span_context);
    assert_eq!(parent(spans, reply).span_context, process.span_context);
    assert_eq!(reply.str_attr(m::CONVERSATION_ID), Some(conversation));
    assert_eq!(parent(spans, reply_queue).span_context, reply.span_context);
    assert_eq!(reply_queue.str_attr(SEGMENT_TYPE).as_deref(), Some("queue"));
    // The caller resumed after the reply's queue wait.
    assert!(reply_queue.end_time <= stage.end_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_through_two_workers_on_the_embedded_broker() {
    one_trace_through_two_workers(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_through_two_workers_on_a_real_broker() {
    if let Some(broker) = Broker::real("one_trace_through_two_workers") {
        one_trace_through_two_workers(broker).await;
    }
}
