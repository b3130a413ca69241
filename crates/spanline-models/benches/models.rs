//! Model throughput, each next to its bare candle baseline in the same run:
//!
//! - `embed/{bare,stage}/{1,32}`: all-MiniLM-L6-v2 embeddings per second
//!   for batches of 1 and 32 sentences (`benches/data/sentences.txt`, also
//!   read by the Python sentence-transformers baseline in
//!   `benches/python/st_bench.py`). `bare` is the embedder called directly
//!   on the same inference pool; `stage` is a traced pipeline (`EmbedTexts`, sampled spans,
//!   histograms) hopping to the inference thread and back.
//! - `generate/{bare,stage}/decode`: SmolLM2-135M (Q8_0) greedy tokens per
//!   second over 32 new tokens, prompt included; `bare` is
//!   candle-transformers' `quantized_llama` with an argmax loop (what one
//!   would run without spanline), `stage` the streaming generator through a
//!   traced `Generate` stage. The generator prefills through its dense
//!   weight copy, so the stage is faster than bare, not slower.
//! - `generate/{bare,stage}/ttft`: time to first token (prefill of the
//!   same chat prompt + one sampled token).
//!
//! Threads: `SPANLINE_MODEL_THREADS` (default 1, as in CI).
//!
//! ```text
//! cargo bench -p spanline-models --bench models
//! ```

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spanline_core::{
    EmbedTexts, Generate, GenerationRequest, Message, Pipeline, RequestContext, Role,
};
use spanline_models::candle::core::quantized::gguf_file;
use spanline_models::candle::core::{Device, Tensor};
use spanline_models::candle::transformers::models::quantized_llama::ModelWeights;
use spanline_models::{BertEmbedder, InferenceThreads, LlamaGenerator, ModelResolver};
use spanline_testkit::TestTelemetry;

const NEW_TOKENS: u32 = 32;

fn threads() -> InferenceThreads {
    let n = std::env::var("SPANLINE_MODEL_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    InferenceThreads::new(n).expect("inference threads")
}

fn sentences() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/data/sentences.txt");
    std::fs::read_to_string(path)
        .expect("benches/data/sentences.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn embed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = threads();
    let embedder = BertEmbedder::minilm(&ModelResolver::from_env())
        .expect("all-MiniLM-L6-v2")
        .threads(pool.clone());
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("bench-embed")
            .telemetry(t.telemetry())
            .then(EmbedTexts(embedder.clone()))
            .build()
    });
    let all = sentences();
    let mut group = c.benchmark_group("embed");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for size in [1usize, 32] {
        let batch: Vec<String> = all.iter().take(size).cloned().collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("bare", size), &batch, |b, batch| {
            b.iter(|| pool.install(|| embedder.embed_blocking(batch).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("stage", size), &batch, |b, batch| {
            b.iter(|| {
                rt.block_on(pipeline.run(batch.clone(), &RequestContext::new()))
                    .unwrap();
                t.reset_spans();
            })
        });
    }
    group.finish();
}

fn chat() -> GenerationRequest {
    let mut r = GenerationRequest::user("");
    r.messages = vec![
        Message::new(Role::System, "You are a helpful assistant."),
        Message::new(
            Role::User,
            "Tell me a long story about a lighthouse keeper and a storm, with many details.",
        ),
    ];
    r.params.max_tokens = NEW_TOKENS;
    r
}

/// candle alone: prefill `prompt`, then `new` greedy steps; returns the
/// time to the first token and the total.
fn bare_generate(weights: &ModelWeights, prompt: &[u32], new: usize) -> (Duration, Duration) {
    let mut w = weights.clone();
    let start = Instant::now();
    let input = Tensor::new(prompt, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = w.forward(&input, 0).unwrap();
    let mut next = logits
        .squeeze(0)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    let first = start.elapsed();
    for i in 1..new {
        let input = Tensor::new(&[next], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = w.forward(&input, prompt.len() + i - 1).unwrap();
        next = logits
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
    }
    (first, start.elapsed())
}

fn generate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let t = TestTelemetry::new();
    let pool = threads();
    let generator = LlamaGenerator::smollm2(&ModelResolver::from_env())
        .expect("SmolLM2")
        .threads(pool.clone())
        .telemetry(t.telemetry());
    let prompt = generator
        .tokenize(&generator.render_prompt(&chat()))
        .unwrap();
    let weights = {
        let path = generator.model_path();
        let mut file = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap()
    };
    let pipeline = t.build(|| {
        Pipeline::builder("bench-generate")
            .telemetry(t.telemetry())
            .then(Generate::new(generator.clone()))
            .build()
    });
    let run = |max_tokens: u32| {
        let mut request = chat();
        request.params.max_tokens = max_tokens;
        let out = rt
            .block_on(pipeline.run(request, &RequestContext::new()))
            .unwrap();
        t.reset_spans();
        out
    };
    // The stage must generate the full count for the comparison to hold.
    let probe = run(NEW_TOKENS);
    assert_eq!(
        probe.usage.output_tokens,
        u64::from(NEW_TOKENS),
        "the prompt must not end before {NEW_TOKENS} tokens"
    );

    eprintln!(
        "generate: a prompt of {} tokens, {NEW_TOKENS} new tokens; dense prefill copy {} MB",
        prompt.len(),
        generator.dense_prefill_bytes() >> 20
    );
    let mut group = c.benchmark_group("generate");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(u64::from(NEW_TOKENS)));
    group.bench_function("bare/decode", |b| {
        b.iter(|| pool.install(|| bare_generate(&weights, &prompt, NEW_TOKENS as usize)))
    });
    group.bench_function("stage/decode", |b| b.iter(|| run(NEW_TOKENS)));
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare/ttft", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| bare_generate(&weights, &prompt, 1).0)
                .sum()
        })
    });
    group.bench_function("stage/ttft", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let out = run(1);
                    Duration::from_secs_f64(out.timings.time_to_first_token.unwrap_or(0.0))
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, embed, generate);
criterion_main!(benches);
