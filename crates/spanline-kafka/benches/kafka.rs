//! Kafka benches on the embedded mock cluster, each beside its bare
//! rdkafka baseline in the same group:
//!
//! - `producer_1KiB`: 1,000 messages of 1 KiB in flight, all delivery
//!   reports awaited; raw `FutureProducer::send_result` vs
//!   `TracedProducer::enqueue` (sampled spans into a batch processor with a
//!   discarding exporter, and telemetry disabled). Budget: traced ≥ 95 % of
//!   raw throughput.
//! - `round_trip`: one request/reply exchange; raw (produce → echo
//!   worker → produce → consume, all bare rdkafka) vs `RequestReply` +
//!   `Worker`/`StageHandler`. p50/p99 over 300 sequential calls are
//!   printed as well.

use spanline_testkit::bench::DiscardExporter;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use spanline_core::{RequestContext, Stage, StageDescriptor, StageKind, Telemetry, stage_fn};
use spanline_kafka::{
    EmbeddedBroker, KafkaConfig, Outgoing, RequestReply, RequestReplyConfig, StageHandler,
    TracedProducer, Worker, WorkerConfig,
};

const BATCH: usize = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn producer_throughput(c: &mut Criterion) {
    let rt = runtime();
    let broker = Arc::new(EmbeddedBroker::start(1).expect("mock cluster"));
    broker.create_topic("bench.produce", 1).expect("topic");
    let kafka = KafkaConfig::new()
        .without_env()
        .embedded(broker.clone())
        .set("linger.ms", "5");
    let payload = vec![b'x'; 1024];

    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("linger.ms", "5")
        .create()
        .expect("raw producer");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(DiscardExporter)
        .build();
    let traced = TracedProducer::new(&kafka, Telemetry::from_provider(&provider)).expect("traced");
    let untraced = TracedProducer::new(&kafka, Telemetry::disabled()).expect("untraced");
    let ctx = RequestContext::new();

    let mut group = c.benchmark_group("producer_1KiB");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("raw_rdkafka", |b| {
        b.to_async(&rt).iter(|| async {
            let futs: Vec<_> = (0..BATCH)
                .map(|_| {
                    raw.send_result(
                        FutureRecord::<(), [u8]>::to("bench.produce").payload(&payload[..]),
                    )
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
                })
                .collect();
            for r in join_all(futs).await {
                r.expect("delivery").map_err(|(e, _)| e).expect("delivered");
            }
        })
    });
    for (name, producer) in [("traced_sampled", &traced), ("traced_disabled", &untraced)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let futs: Vec<_> = (0..BATCH)
                    .map(|_| {
                        producer
                            .enqueue(&ctx, Outgoing::new("bench.produce", &payload))
                            .expect("enqueue")
                    })
                    .collect();
                for r in join_all(futs).await {
                    r.expect("delivered");
                }
            })
        });
    }
    group.finish();
    drop((raw, traced, untraced));
    let _ = provider.shutdown();
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    // rdkafka's StreamConsumer spawns its wakeup task on creation.
    let _entered = rt.enter();
    let broker = Arc::new(EmbeddedBroker::start(1).expect("mock cluster"));
    for t in [
        "bench.raw.req",
        "bench.raw.rep",
        "bench.rr.req",
        "bench.rr.rep",
    ] {
        broker.create_topic(t, 1).expect("topic");
    }
    let bootstrap = broker.bootstrap_servers().to_owned();
    let fast = |group: &str| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &bootstrap)
            .set("group.id", group)
            .set("linger.ms", "1")
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false");
        c
    };
    // Fresh, empty topics: read from the beginning (no race with `End`).
    let assign = |c: &StreamConsumer, topic: &str| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("tpl");
        c.assign(&tpl).expect("assign");
    };

    // Raw echo: bare rdkafka both ways.
    let echo_in: StreamConsumer = fast("raw-echo").create().expect("echo consumer");
    assign(&echo_in, "bench.raw.req");
    let echo_out: FutureProducer = fast("raw-echo").create().expect("echo producer");
    let raw_client: FutureProducer = fast("raw-client").create().expect("client producer");
    let raw_replies: StreamConsumer = fast("raw-client").create().expect("client consumer");
    assign(&raw_replies, "bench.raw.rep");
    let echo = rt.spawn(async move {
        loop {
            let Ok(m) = echo_in.recv().await else {
                continue;
            };
            let payload = m.payload().unwrap_or_default().to_vec();
            let _ = echo_out
                .send(
                    FutureRecord::<(), [u8]>::to("bench.raw.rep").payload(&payload[..]),
                    Duration::from_secs(5),
                )
                .await;
        }
    });

    // spanline: RequestReply stage served by a StageHandler worker.
    let kafka = KafkaConfig::new().without_env().embedded(broker.clone());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(DiscardExporter)
        .build();
    let telemetry = Telemetry::from_provider(&provider);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::build(
        &kafka,
        telemetry.clone(),
        WorkerConfig::assign("rr-bench", "bench.rr.req", &[0]),
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
    .expect("worker");
    let worker = rt.spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let stage: RequestReply<String, String> = rt
        .block_on(RequestReply::connect(
            &kafka,
            telemetry,
            RequestReplyConfig::new(
                StageDescriptor::new("remote-echo", StageKind::Custom),
                "bench.rr.req",
                "bench.rr.rep",
            ),
        ))
        .expect("connect");
    let body = "x".repeat(256);
    let raw_call = || async {
        raw_client
            .send(
                FutureRecord::<(), str>::to("bench.raw.req").payload(body.as_str()),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("send");
        let m = raw_replies.recv().await.expect("reply");
        assert_eq!(m.payload().map(<[u8]>::len), Some(body.len()));
    };
    let ctx = RequestContext::new();
    let rr_call = || async {
        let out = stage.run(body.clone(), &ctx).await.expect("reply");
        assert_eq!(out.len(), body.len());
    };
    // Warm up (connections, first fetches) before measuring.
    rt.block_on(async {
        for _ in 0..20 {
            raw_call().await;
            rr_call().await;
        }
    });

    let mut group = c.benchmark_group("round_trip");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("raw_rdkafka_echo", |b| b.to_async(&rt).iter(raw_call));
    group.bench_function("request_reply", |b| b.to_async(&rt).iter(rr_call));
    group.finish();

    rt.block_on(async {
        let (mut raw, mut rr) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            let t = Instant::now();
            raw_call().await;
            raw.push(t.elapsed());
            let t = Instant::now();
            rr_call().await;
            rr.push(t.elapsed());
        }
        let (r50, r99) = percentiles(raw);
        let (s50, s99) = percentiles(rr);
        println!("round_trip raw_rdkafka_echo: p50 {r50:?} p99 {r99:?}");
        println!("round_trip request_reply:    p50 {s50:?} p99 {s99:?}");
    });
    let _ = stop.send(());
    let _ = rt.block_on(worker);
    echo.abort();
    let _ = provider.shutdown();
}

criterion_group!(benches, producer_throughput, round_trip);
criterion_main!(benches);
