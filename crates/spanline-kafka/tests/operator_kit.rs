//! The operator kit (`ops/`) queries only metrics that a real spanline
//! service exposes: every metric name, and every label the queries group
//! or filter by, is found in the Prometheus text rendered by the installed
//! recorder after a pipeline run that exercises them — stages, a Kafka
//! request/reply on the embedded broker (queue wait), a `Generate` stage
//! (TTFT/TPOT), tail sampling, online critical-path metrics and a span
//! exporter (the drop counters).
//!
//! One test in this binary: it installs the global recorder.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Broker, topic};
use spanline_core::basic::ExtractiveGenerator;
use spanline_core::{
    Generate, GenerationRequest, Pipeline, RequestContext, StageDescriptor, StageKind, stage_fn,
};
use spanline_kafka::{RequestReply, RequestReplyConfig, StageHandler, Worker, WorkerConfig};
use spanline_telemetry::sampling::TailConfig;
use spanline_telemetry::{ExporterKind, TelemetryBuilder};

const OPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops");

/// The PromQL expressions of the dashboard and of the alerting rules.
fn kit_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dash = std::fs::read_to_string(format!("{OPS}/grafana/spanline-dashboard.json"))
        .expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&dash).expect("dashboard JSON");
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            out.push((
                format!("dashboard: {}", panel["title"].as_str().unwrap_or("?")),
                t["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    let rules =
        std::fs::read_to_string(format!("{OPS}/prometheus/spanline-alerts.yml")).expect("rules");
    // `expr: <inline>` or `expr: |` followed by more-indented lines.
    let lines: Vec<&str> = rules.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(pos) = line.find("expr:") {
            let indent = line.len() - line.trim_start().len();
            let rest = line[pos + 5..].trim();
            let expr = if rest == "|" {
                let mut e = String::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    if next.trim().is_empty() || next.len() - next.trim_start().len() > indent {
                        e.push_str(next.trim());
                        e.push(' ');
                        i += 1;
                    } else {
                        break;
                    }
                }
                e
            } else {
                rest.to_owned()
            };
            out.push((format!("rules line {}", i + 1), expr));
        }
        i += 1;
    }
    out
}

const PREFIXES: [&str; 4] = ["spanline_", "gen_ai_", "messaging_", "rpc_"];

/// `expr` without selectors (`{..}`) and grouping lists (`by (..)`,
/// `ignoring (..)`, `on (..)`): what remains names metrics and functions.
fn without_labels(expr: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    for kw in ["by (", "ignoring (", "on ("] {
        while let Some(start) = out.find(kw) {
            let end = out[start..].find(')').map_or(out.len(), |e| start + e + 1);
            out.replace_range(start..end, " ");
        }
    }
    out
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    without_labels(expr)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| PREFIXES.iter().any(|p| t.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// Labels in `by (..)` / `ignoring (..)` groupings and in selectors.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kw in ["by (", "ignoring (", "on ("] {
        for part in expr.split(kw).skip(1) {
            if let Some(list) = part.split(')').next() {
                out.extend(list.split(',').map(|l| l.trim().to_owned()));
            }
        }
    }
    for part in expr.split('{').skip(1) {
        if let Some(sel) = part.split('}').next() {
            for m in sel.split(',') {
                let name: String = m
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && !name.starts_with('$') {
                    out.insert(name);
                }
            }
        }
    }
    out.remove("le");
    out.retain(|l| !l.is_empty() && !l.starts_with('$'));
    out
}

async fn exercise(broker: &Broker, telemetry: spanline_core::Telemetry) {
    let requests = topic("kit.requests");
    let replies = topic("kit.replies");
    broker.create_topic(&requests, 1).await;
    broker.create_topic(&replies, 1).await;
    let kafka = broker.config();
    let worker_stage = Pipeline::builder("kit-worker")
        .telemetry(telemetry.clone())
        .then(stage_fn(
            StageDescriptor::new("lookup", StageKind::Retrieve),
            |q: String, _ctx| async move { Ok(format!("Spans are kept. {q}")) },
        ))
        .build();
    let worker = Worker::build(
        &kafka,
        telemetry.clone(),
        WorkerConfig::assign("kit-workers", &requests, &[0]),
        |producer| StageHandler::new(worker_stage, producer.clone()),
    )
    .expect("worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let caller = RequestReply::<String, String>::connect(
        &kafka,
        telemetry.clone(),
        RequestReplyConfig::new(
            StageDescriptor::new("remote-lookup", StageKind::Retrieve),
            &requests,
            &replies,
        )
        .timeout(Duration::from_secs(20)),
    )
    .await
    .expect("caller");
    let pipeline = Pipeline::builder("kit")
        .telemetry(telemetry)
        .then(caller)
        .then(stage_fn(
            StageDescriptor::new("prompt", StageKind::Custom),
            |docs: String, _ctx| async move { Ok(GenerationRequest::user(docs)) },
        ))
        .then(Generate::new(ExtractiveGenerator::default()))
        .build();
    for i in 0..3 {
        pipeline
            .run(format!("question {i}"), &RequestContext::new())
            .await
            .expect("run");
    }
    let _ = stop.send(());
    task.await.expect("join").expect("worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_kit_queries_is_in_a_real_scrape() {
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Console])
        .console_writer(std::io::sink())
        .tail_sampling(TailConfig::new())
        .critical_path_metrics(true)
        .install()
        .expect("install");
    let broker = Broker::mock();
    exercise(&broker, guard.telemetry()).await;
    let flush = tokio::task::spawn_blocking(move || {
        guard.force_flush().expect("flush");
        guard
    });
    let guard = flush.await.expect("flush");
    let scrape = guard.prometheus().expect("prometheus").render();

    let queries = kit_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut all = BTreeSet::new();
    for (origin, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{origin}: no metric in {expr}");
        for name in &names {
            let series: Vec<&str> = scrape
                .lines()
                .filter(|l| {
                    l.strip_prefix(name.as_str())
                        .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                })
                .collect();
            assert!(
                !series.is_empty(),
                "{origin}: `{name}` is not in the scrape:\n{scrape}"
            );
            all.insert(name.clone());
        }
        for label in label_names(expr) {
            let found = names.iter().any(|name| {
                scrape
                    .lines()
                    .any(|l| l.starts_with(name.as_str()) && l.contains(&format!("{label}=\"")))
            });
            assert!(
                found,
                "{origin}: label `{label}` of {expr} is on no scraped series:\n{scrape}"
            );
        }
    }
    // The kit covers every area it promises.
    for expected in [
        "spanline_stage_duration_bucket",
        "spanline_stage_duration_count",
        "spanline_pipeline_duration_bucket",
        "spanline_critical_path_duration_sum",
        "spanline_critical_path_duration_count",
        "spanline_messaging_queue_wait_bucket",
        "gen_ai_server_time_to_first_token_bucket",
        "gen_ai_server_time_per_output_token_bucket",
        "spanline_telemetry_spans_dropped",
        "spanline_sampling_spans_dropped",
        "spanline_critical_path_spans_dropped",
    ] {
        assert!(
            all.contains(expected),
            "the kit does not query {expected}: {all:?}"
        );
    }
    // The run reached the critical-path series the dashboard divides.
    assert!(
        scrape.contains("spanline_critical_path_duration_sum{pipeline=\"kit\",key=\"extractive-generator\",type=\"stage\"}"),
        "{scrape}"
    );
    drop(guard);
}
