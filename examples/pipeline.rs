//! A pipeline of honest, model-free stages, traced and timed.
//!
//! normalize → hashing embedder → (dense cosine ∥ BM25) → rank fusion →
//! keyword rerank → prompt → extractive generator
//!
//! Run: `cargo run --example pipeline -- "How does the trace cross Kafka?"`
//!
//! Spans go to an in-memory recorder (and to OTLP or the console when the
//! standard `OTEL_*` variables say so); the example prints the answer, the
//! span tree of the first request, and per-stage latency over 200 requests.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::SpanData;
use spanline::core::basic::{
    Bm25Index, ExtractiveGenerator, HashingEmbedder, KeywordReranker, Normalizer, PromptBuilder,
    ReciprocalRankFusion, VectorIndex,
};
use spanline::core::semconv::spanline as sl;
use spanline::core::{
    Document, Embed, Generate, Preprocess, Query, RequestAttributes, Rerank, Retrieve,
};
use spanline::telemetry::TelemetryBuilder;
use spanline::{Pipeline, RequestContext};

const RUNS: usize = 200;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "How does the trace context cross Kafka?".to_owned());

    let guard = TelemetryBuilder::from_env()?
        .recorder(10 * RUNS * 10)
        .prometheus(true)
        .quiet_unless_configured() // keep the terminal for the report
        .install()?;

    let embedder = HashingEmbedder::new(512);
    let dense = VectorIndex::build(&embedder, corpus(), &RequestContext::new())
        .await?
        .named("corpus-dense");
    let keyword = Bm25Index::new(corpus()).named("corpus-bm25");
    let rag = Pipeline::builder("example")
        .telemetry(guard.telemetry())
        .then(Preprocess(Normalizer::default()))
        .then(Embed(embedder))
        .parallel((Retrieve::new(dense, 4), Retrieve::new(keyword, 4)))
        .then(ReciprocalRankFusion::new(4))
        .then(Rerank::new(KeywordReranker).top_n(2))
        .then(PromptBuilder::default())
        .then(Generate::new(ExtractiveGenerator::default()))
        .build();

    let attributes = RequestAttributes::builder()
        .workflow("example")
        .user_id("demo")
        .build()?;
    let ctx = RequestContext::new()
        .with_attributes(attributes)
        .with_timeout(Duration::from_secs(5));
    let answer = rag.run(Query::new(question.clone()), &ctx).await?;
    println!("Q: {question}\nA: {}\n", answer.text);

    let recorder = guard.recorder().ok_or("the recorder is configured")?;
    let first = recorder.spans();
    println!(
        "Span tree of that request (trace {}):",
        first[0].span_context.trace_id()
    );
    print_tree(&first, SpanId::INVALID, 0);

    for i in 1..RUNS {
        let q = QUESTIONS[i % QUESTIONS.len()];
        rag.run(Query::new(q), &ctx).await?;
    }
    println!("\nPer-stage latency over {RUNS} requests (µs):");
    print_summary(&recorder.spans());

    if let Some(prom) = guard.prometheus() {
        let lines = prom.render();
        let sample = lines
            .lines()
            .find(|l| {
                l.starts_with("spanline_stage_duration_count") && l.contains("outcome=\"ok\"")
            })
            .unwrap_or("(no stage histogram rendered)");
        println!("\nPrometheus, for example: {sample}");
    }
    Ok(())
}

fn print_tree(spans: &[SpanData], parent: SpanId, depth: usize) {
    let mut children: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent)
        .collect();
    children.sort_by_key(|s| s.start_time);
    for s in children {
        let micros = s
            .end_time
            .duration_since(s.start_time)
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6;
        let step = s
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == sl::STEP_INDEX)
            .map(|kv| format!("  [step {}]", kv.value))
            .unwrap_or_default();
        let label = format!("{:indent$}{}", "", s.name, indent = depth * 2);
        println!("{label:<44} {micros:>8.1} µs{step}");
        print_tree(spans, s.span_context.span_id(), depth + 1);
    }
}

fn print_summary(spans: &[SpanData]) {
    let mut by_stage: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in spans {
        let stage = s
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == sl::STAGE_NAME);
        let name = match stage {
            Some(kv) => kv.value.to_string(),
            None => s.name.to_string(),
        };
        let micros = s
            .end_time
            .duration_since(s.start_time)
            .unwrap_or_default()
            .as_secs_f64()
            * 1e6;
        by_stage.entry(name).or_default().push(micros);
    }
    println!(
        "{:<24} {:>6} {:>9} {:>9} {:>9}",
        "stage", "calls", "p50", "p95", "max"
    );
    for (name, mut v) in by_stage {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        println!(
            "{name:<24} {:>6} {:>9.1} {:>9.1} {:>9.1}",
            v.len(),
            q(0.5),
            q(0.95),
            q(1.0)
        );
    }
}

const QUESTIONS: &[&str] = &[
    "How does the trace context cross Kafka?",
    "What does gRPC metadata carry?",
    "Which labels do latency histograms use?",
    "What happens when the collector is down?",
];

fn corpus() -> Vec<Document> {
    [
        ("kafka", "Kafka messages carry the traceparent header. The consumer continues the producer's trace, and queue wait is measured from a send timestamp header."),
        ("grpc", "gRPC metadata carries traceparent, tracestate and baggage. The server layer extracts them and opens a server span."),
        ("metrics", "Every stage records a latency histogram labelled by pipeline, stage, kind and outcome. Labels never hold user text."),
        ("export", "When the collector is down, spans are dropped and counted. Export never blocks a request, and memory stays bounded."),
        ("critical-path", "The critical path shows which stage, hop or queue a request waited on. Parallel branches are joined on the last to finish."),
        ("content", "Prompts and completions enter spans only when content capture is on. It is off by default."),
    ]
    .into_iter()
    .map(|(id, text)| Document::new(id, text))
    .collect()
}
