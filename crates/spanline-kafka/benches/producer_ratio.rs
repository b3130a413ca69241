//! Producer throughput, traced vs raw rdkafka, interleaved so the machine's
//! load drifts over all variants alike (budget: traced ≥ 95 % of raw).
//!
//! `cargo bench -p spanline-kafka --bench producer_ratio` runs `ROUNDS`
//! rounds; each round sends one batch of 1,000 × 1 KiB messages through
//! every variant (the order rotates from round to round), each batch fully
//! in flight and every delivery report awaited, on the embedded mock
//! cluster. The report is each variant's median batch time, its throughput
//! and its ratio to `raw_rdkafka` (median batch time of raw / of the
//! variant), plus the ratio of medians of the per-round ratios (each round's
//! variants ran back to back, so this one is the least sensitive to load
//! swings).
//!
//! Telemetry is built as `spanline::telemetry::init()` builds it
//! (`TelemetryBuilder::from_env()`: spanline's `BoundedBatchProcessor` with
//! a discarding exporter in place of OTLP, the Prometheus recorder, nothing
//! installed globally). The producers' counters and histograms are
//! registered with that shipped Prometheus recorder. Unless its name ends in
//! `_sdk_batch`, every variant that makes spans makes them through the
//! shipped processor — the SDK floors too, so traced − floor is the
//! layer's own cost.
//!
//! Variants: `raw_rdkafka` (`FutureProducer::send_result`),
//! `raw_with_headers` (the same, each message carrying a fixed
//! `traceparent` and send-timestamp header: what the headers alone cost),
//! `floor_sdk_span` (the raw send inside a bare SDK span per message, no
//! headers: what the SDK alone costs), `floor_sdk_span_w3c` (the same
//! plus the headers any traced send needs: `traceparent` through
//! `inject_headers` and a send timestamp, built the plain rdkafka way),
//! `traced_sampled` (`TracedProducer::enqueue`, a `send` span per message,
//! always-on), `traced_unsampled` (an always-off sampler: no span
//! recorded, but the `traceparent` header is still sent, flags `00`),
//! `traced_disabled` (`Telemetry::disabled()`: no span and, with no parent
//! in the request context, no `traceparent`: only the send-timestamp
//! header). Reference rows with the SDK's own `BatchSpanProcessor` (same
//! exporter and recorder): `floor_sdk_span_w3c_sdk_batch`,
//! `traced_sampled_sdk_batch`.
//!
//! After the run the bench prints the shipped processor's export counters
//! and the histogram samples the Prometheus recorder holds.
//!
//! Environment: `SPANLINE_BENCH_ROUNDS` (default 60), `SPANLINE_BENCH_ONLY`
//! (one variant, for `perf stat` / callgrind); the `OTEL_*` / `SPANLINE_*`
//! variables `init()` reads.

mod support;

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::join_all;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use spanline_core::{RequestContext, Telemetry};
use spanline_kafka::{EmbeddedBroker, KafkaConfig, Outgoing, TracedProducer, inject_headers};
use spanline_telemetry::SamplerConfig;
use spanline_testkit::bench::histogram_samples;
use support::{sdk_batch, shipped};

const BATCH: usize = 1_000;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

enum Variant {
    /// Raw rdkafka; with a telemetry handle, each message inside a bare SDK
    /// PRODUCER span (started before the send, ended on its delivery report
    /// with partition and offset), no headers: the SDK's own cost.
    Raw(FutureProducer, Option<Telemetry>, bool),
    Traced(TracedProducer),
}

impl Variant {
    async fn batch(&self, payload: &[u8], ctx: &RequestContext) {
        match self {
            Variant::Raw(p, None, headers) => {
                let futs: Vec<_> = (0..BATCH)
                    .map(|_| {
                        let mut record =
                            FutureRecord::<(), [u8]>::to("bench.produce").payload(payload);
                        if *headers {
                            record = record.headers(
                                OwnedHeaders::new_with_capacity(4)
                                    .insert(Header {
                                        key: "traceparent",
                                        value: Some(TRACEPARENT),
                                    })
                                    .insert(Header {
                                        key: "spanline-sent-at",
                                        value: Some("1763791200123456"),
                                    }),
                            );
                        }
                        p.send_result(record).map_err(|(e, _)| e).expect("enqueue")
                    })
                    .collect();
                for r in join_all(futs).await {
                    r.expect("delivery").map_err(|(e, _)| e).expect("delivered");
                }
            }
            Variant::Raw(p, Some(t), w3c) => {
                let futs: Vec<_> = (0..BATCH)
                    .map(|_| {
                        let span = ctx.start_span(
                            t,
                            SpanBuilder::from_name("send bench.produce")
                                .with_kind(SpanKind::Producer)
                                .with_attributes(vec![
                                    KeyValue::new("messaging.system", "kafka"),
                                    KeyValue::new("messaging.operation.name", "send"),
                                    KeyValue::new("messaging.operation.type", "send"),
                                    KeyValue::new("messaging.destination.name", "bench.produce"),
                                ]),
                        );
                        let mut record =
                            FutureRecord::<(), [u8]>::to("bench.produce").payload(payload);
                        if *w3c {
                            let sent_at = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_micros()
                                .to_string();
                            record = record.headers(
                                inject_headers(&span, OwnedHeaders::new_with_capacity(4)).insert(
                                    Header {
                                        key: "spanline-sent-at",
                                        value: Some(sent_at.as_bytes()),
                                    },
                                ),
                            );
                        }
                        let fut = p.send_result(record).map_err(|(e, _)| e).expect("enqueue");
                        fut.map(move |r| {
                            let d = r.expect("delivery").map_err(|(e, _)| e).expect("delivered");
                            span.otel_context().span().set_attributes([
                                KeyValue::new("messaging.destination.partition.id", "0"),
                                KeyValue::new("messaging.kafka.offset", d.offset),
                            ]);
                            span.end_span();
                            d.partition
                        })
                    })
                    .collect();
                join_all(futs).await;
            }
            Variant::Traced(p) => {
                let futs: Vec<_> = (0..BATCH)
                    .map(|_| {
                        p.enqueue(ctx, Outgoing::new("bench.produce", payload))
                            .expect("enqueue")
                    })
                    .collect();
                for r in join_all(futs).await {
                    r.expect("delivered");
                }
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("SPANLINE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let only = std::env::var("SPANLINE_BENCH_ONLY").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
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
    let sampled = shipped(SamplerConfig::AlwaysOn);
    let unsampled = shipped(SamplerConfig::AlwaysOff);
    let reference = sdk_batch();
    let (t, off, sdk) = (
        sampled.telemetry(),
        unsampled.telemetry(),
        Telemetry::from_provider(&reference),
    );
    let recorder = sampled
        .metrics_recorder()
        .expect("prometheus is on by default");
    // The producers register their handles with the shipped recorder.
    let traced = |t: &Telemetry| {
        metrics::with_local_recorder(recorder, || TracedProducer::new(&kafka, t.clone()))
            .expect("traced producer")
    };
    let variants: Vec<(&str, Variant)> = vec![
        ("raw_rdkafka", Variant::Raw(raw.clone(), None, false)),
        ("raw_with_headers", Variant::Raw(raw.clone(), None, true)),
        (
            "floor_sdk_span",
            Variant::Raw(raw.clone(), Some(t.clone()), false),
        ),
        (
            "floor_sdk_span_w3c",
            Variant::Raw(raw.clone(), Some(t.clone()), true),
        ),
        ("traced_sampled", Variant::Traced(traced(&t))),
        ("traced_unsampled", Variant::Traced(traced(&off))),
        (
            "traced_disabled",
            Variant::Traced(traced(&Telemetry::disabled())),
        ),
        (
            "floor_sdk_span_w3c_sdk_batch",
            Variant::Raw(raw, Some(sdk.clone()), true),
        ),
        ("traced_sampled_sdk_batch", Variant::Traced(traced(&sdk))),
    ]
    .into_iter()
    .filter(|(n, _)| only.as_deref().is_none_or(|o| o == *n))
    .collect();
    let ctx = RequestContext::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    rt.block_on(async {
        for (_, v) in &variants {
            for _ in 0..5 {
                v.batch(&payload, &ctx).await;
            }
        }
        for round in 0..rounds {
            for k in 0..variants.len() {
                let i = (round + k) % variants.len();
                let t = Instant::now();
                variants[i].1.batch(&payload, &ctx).await;
                times[i].push(t.elapsed().as_secs_f64());
            }
        }
    });
    let raw_i = variants.iter().position(|(n, _)| *n == "raw_rdkafka");
    // Per-round ratio raw/variant: the variants of a round ran back to back.
    let per_round: Vec<Option<f64>> = (0..variants.len())
        .map(|i| {
            let r = raw_i?;
            let mut ratios: Vec<f64> = (0..rounds).map(|k| times[r][k] / times[i][k]).collect();
            Some(median(&mut ratios))
        })
        .collect();
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    println!(
        "{:<30} {:>12} {:>14} {:>12} {:>16}",
        "variant", "median ms", "k msg/s", "vs raw", "per-round ratio"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratio = raw_i.map_or(String::from("-"), |r| {
            format!("{:.3}", medians[r] / medians[i])
        });
        let pr = per_round[i].map_or(String::from("-"), |x| format!("{x:.3}"));
        println!(
            "{:<30} {:>12.2} {:>14.1} {:>12} {:>16}",
            name,
            medians[i] * 1e3,
            BATCH as f64 / medians[i] / 1e3,
            ratio,
            pr
        );
    }
    println!("rounds: {rounds} × {BATCH} messages per variant");
    drop(variants);
    let _ = sampled.force_flush();
    println!("shipped processor: {:?}", sampled.export_stats());
    let rendered = sampled.prometheus().map(|h| h.render()).unwrap_or_default();
    let (series, samples) = histogram_samples(&rendered);
    println!("prometheus recorder: {series} histogram series, {samples} samples");
    drop((sampled, unsampled));
    let _ = reference.shutdown();
}
