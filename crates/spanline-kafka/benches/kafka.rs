//! Kafka benches on the embedded mock cluster, each beside its bare
//! rdkafka baseline in the same group:
//!
//! - `producer_1KiB`: 1,000 messages of 1 KiB in flight, all delivery
//!   reports awaited; raw `FutureProducer::send_result` vs
//!   `TracedProducer::enqueue` (sampled, and telemetry disabled). Goal:
//!   traced ≥ 95 % of raw throughput. The interleaved ratio with the SDK's
//!   floor is `benches/producer_ratio.rs`.
//! - `round_trip`: one request/reply exchange; raw (produce → echo
//!   worker → produce → consume, all bare rdkafka) vs `RequestReply` +
//!   `Worker`/`StageHandler`. p50/p99 over 300 sequential calls are
//!   printed as well.
//!
//! Telemetry is built as `spanline::telemetry::init()` builds it
//! (`TelemetryBuilder::from_env()`: spanline's `BoundedBatchProcessor` with
//! a discarding exporter, the Prometheus recorder, always-on sampler, no
//! global state), and the clients' handles are registered with that shipped
//! recorder. Reference rows, `*_sdk_batch`: the same traced variant with
//! the SDK's own `BatchSpanProcessor` in place of spanline's.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use spanline_core::{RequestContext, Stage, StageDescriptor, StageKind, Telemetry, stage_fn};
use spanline_kafka::{
    EmbeddedBroker, KafkaConfig, Outgoing, RequestReply, RequestReplyConfig, StageHandler,
    TracedProducer, Worker, WorkerConfig,
};
use spanline_telemetry::{SamplerConfig, TelemetryGuard};
use support::{sdk_batch, shipped};

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
    let guard = shipped(SamplerConfig::AlwaysOn);
    let reference = sdk_batch();
    let (traced, untraced, traced_sdk) = with_recorder(&guard, || {
        (
            TracedProducer::new(&kafka, guard.telemetry()).expect("traced"),
            TracedProducer::new(&kafka, Telemetry::disabled()).expect("untraced"),
            TracedProducer::new(&kafka, Telemetry::from_provider(&reference)).expect("reference"),
        )
    });
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
    for (name, producer) in [
        ("traced_sampled", &traced),
        ("traced_disabled", &untraced),
        ("traced_sampled_sdk_batch", &traced_sdk),
    ] {
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
    drop((raw, traced, untraced, traced_sdk));
    drop(guard);
    let _ = reference.shutdown();
}

/// `f` with the shipped Prometheus recorder current, so every handle the
/// clients register lands there.
fn with_recorder<T>(guard: &TelemetryGuard, f: impl FnOnce() -> T) -> T {
    let recorder = guard
        .metrics_recorder()
        .expect("prometheus is on by default");
    metrics::with_local_recorder(recorder, f)
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
        "bench.rr-sdk.req",
        "bench.rr-sdk.rep",
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

    // spanline: RequestReply stage served by a StageHandler worker, with
    // the shipped telemetry and (reference) the SDK's batch processor.
    let kafka = KafkaConfig::new().without_env().embedded(broker.clone());
    let guard = shipped(SamplerConfig::AlwaysOn);
    let reference = sdk_batch();
    let (stage, stop, worker) = with_recorder(&guard, || {
        echo_over_kafka(&rt, &kafka, guard.telemetry(), "rr-bench", "bench.rr")
    });
    let (stage_sdk, stop_sdk, worker_sdk) = with_recorder(&guard, || {
        echo_over_kafka(
            &rt,
            &kafka,
            Telemetry::from_provider(&reference),
            "rr-sdk-bench",
            "bench.rr-sdk",
        )
    });
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
    let rr_sdk_call = || async {
        let out = stage_sdk.run(body.clone(), &ctx).await.expect("reply");
        assert_eq!(out.len(), body.len());
    };
    // Warm up (connections, first fetches) before measuring.
    rt.block_on(async {
        for _ in 0..20 {
            raw_call().await;
            rr_call().await;
            rr_sdk_call().await;
        }
    });

    let mut group = c.benchmark_group("round_trip");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("raw_rdkafka_echo", |b| b.to_async(&rt).iter(raw_call));
    group.bench_function("request_reply", |b| b.to_async(&rt).iter(rr_call));
    group.bench_function("request_reply_sdk_batch", |b| {
        b.to_async(&rt).iter(rr_sdk_call)
    });
    group.finish();

    rt.block_on(async {
        let (mut raw, mut rr, mut rr_sdk) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..300 {
            let t = Instant::now();
            raw_call().await;
            raw.push(t.elapsed());
            let t = Instant::now();
            rr_call().await;
            rr.push(t.elapsed());
            let t = Instant::now();
            rr_sdk_call().await;
            rr_sdk.push(t.elapsed());
        }
        for (name, times) in [
            ("raw_rdkafka_echo", raw),
            ("request_reply", rr),
            ("request_reply_sdk_batch", rr_sdk),
        ] {
            let (p50, p99) = percentiles(times);
            println!("round_trip {name:<24} p50 {p50:?} p99 {p99:?}");
        }
    });
    for (stop, worker) in [(stop, worker), (stop_sdk, worker_sdk)] {
        let _ = stop.send(());
        let _ = rt.block_on(worker);
    }
    echo.abort();
    drop(guard);
    let _ = reference.shutdown();
}

type Stop = tokio::sync::oneshot::Sender<()>;
type Running =
    tokio::task::JoinHandle<Result<spanline_kafka::WorkerReport, spanline_kafka::KafkaError>>;

/// A `RequestReply` stage on `{topics}.req` / `{topics}.rep`, answered by
/// an echo `Worker` with a `StageHandler`, both emitting through
/// `telemetry`; the sender stops the worker.
fn echo_over_kafka(
    rt: &tokio::runtime::Runtime,
    kafka: &KafkaConfig,
    telemetry: Telemetry,
    group: &str,
    topics: &str,
) -> (RequestReply<String, String>, Stop, Running) {
    let (req, rep) = (format!("{topics}.req"), format!("{topics}.rep"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::build(
        kafka,
        telemetry.clone(),
        WorkerConfig::assign(group, &req, &[0]),
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
    let stage = rt
        .block_on(RequestReply::connect(
            kafka,
            telemetry,
            RequestReplyConfig::new(
                StageDescriptor::new("remote-echo", StageKind::Custom),
                &req,
                &rep,
            ),
        ))
        .expect("connect");
    (stage, stop, worker)
}

criterion_group!(benches, producer_throughput, round_trip);
criterion_main!(benches);
