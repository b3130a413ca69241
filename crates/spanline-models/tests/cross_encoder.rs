//! The cross-encoder reranker on small randomly initialised checkpoints the
//! test writes itself (no cross-encoder weights can be fetched here): the
//! Hugging Face `BertForSequenceClassification` layout loads, the forward
//! pass runs, the classifier head decides the score, and a checkpoint
//! without the head is a typed error naming the file.
#![cfg(feature = "candle")]

use std::path::Path;

use spanline_core::{Document, Pipeline, Query, RequestContext, Rerank, Retrieved, ScoredDocument};
use spanline_models::candle::core::{DType, Device, Tensor};
use spanline_models::candle::nn::{VarBuilder, VarMap};
use spanline_models::candle::transformers::models::bert;
use spanline_models::{CrossEncoderReranker, InferenceThreads, ModelError, ModelResolver};

/// A config for a tiny BERT that uses MiniLM's uncased WordPiece vocabulary.
fn bert_config(labels: usize) -> serde_json::Value {
    let mut c = serde_json::json!({
        "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "max_position_embeddings": 64, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "position_embedding_type": "absolute", "use_cache": false,
        "classifier_dropout": null, "model_type": "bert",
    });
    if labels == 2 {
        c["id2label"] = serde_json::json!({"0": "irrelevant", "1": "relevant"});
    }
    c
}

struct Head {
    labels: usize,
    bias: Vec<f32>,
    zero_weights: bool,
}

/// Write `config.json`, `tokenizer.json` (MiniLM's) and a random
/// `model.safetensors` into a fresh temporary directory; `head: None` leaves out the
/// pooler and classifier.
fn write_checkpoint(head: Option<Head>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let labels = head.as_ref().map_or(1, |h| h.labels);
    let config = bert_config(labels);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let minilm = ModelResolver::from_env()
        .resolve(&spanline_models::ALL_MINILM_L6_V2)
        .unwrap();
    std::fs::copy(minilm.file("tokenizer.json"), dir.join("tokenizer.json")).unwrap();

    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg: bert::Config = serde_json::from_value(config).unwrap();
    bert::BertModel::load(vb.pp("bert"), &cfg).unwrap();
    if let Some(h) = &head {
        spanline_models::candle::nn::linear(32, 32, vb.pp("bert.pooler.dense")).unwrap();
        spanline_models::candle::nn::linear(32, h.labels, vb.pp("classifier")).unwrap();
        if h.zero_weights {
            varmap
                .set_one(
                    "classifier.weight",
                    Tensor::zeros((h.labels, 32), DType::F32, &Device::Cpu).unwrap(),
                )
                .unwrap();
        }
        varmap
            .set_one(
                "classifier.bias",
                Tensor::new(h.bias.as_slice(), &Device::Cpu).unwrap(),
            )
            .unwrap();
    }
    varmap.save(dir.join("model.safetensors")).unwrap();
    tmp
}

fn load(dir: &Path) -> Result<CrossEncoderReranker, ModelError> {
    CrossEncoderReranker::load(dir, "tiny-cross-encoder", InferenceThreads::new(1).unwrap())
}

const PASSAGES: &[&str] = &[
    "Kafka headers carry the traceparent.",
    "Bread needs flour, water, salt and yeast.",
    "",
    "The critical path is the chain of spans the request waited on.",
];

#[test]
fn random_checkpoint_loads_and_scores_every_pair() {
    let dir = write_checkpoint(Some(Head {
        labels: 1,
        bias: vec![0.1],
        zero_weights: false,
    }));
    let reranker = load(dir.path()).unwrap();
    let a = reranker
        .score_blocking("how do traces cross kafka?", PASSAGES)
        .unwrap();
    let b = reranker
        .score_blocking("how do traces cross kafka?", PASSAGES)
        .unwrap();
    assert_eq!(a.scores.len(), PASSAGES.len());
    assert!(a.scores.iter().all(|s| s.is_finite()));
    assert_eq!(a, b, "the forward pass is deterministic");
    // Different passages give different scores: the encoder reads them.
    assert!(a.scores[0] != a.scores[1]);
    assert_eq!(a.truncated, 0);

    // A pair longer than the 64-position model is truncated, not an error.
    let long = "tracing ".repeat(500);
    let c = reranker.score_blocking("query", &[long.as_str()]).unwrap();
    assert_eq!(c.truncated, 1);
    assert_eq!(c.tokens, 64);
}

#[test]
fn the_classifier_head_decides_the_score() {
    // Zero weights: every pair scores the bias.
    let dir = write_checkpoint(Some(Head {
        labels: 1,
        bias: vec![0.5],
        zero_weights: true,
    }));
    let s = load(dir.path())
        .unwrap()
        .score_blocking("q", PASSAGES)
        .unwrap();
    assert!(
        s.scores.iter().all(|&x| (x - 0.5).abs() < 1e-6),
        "{:?}",
        s.scores
    );

    // Two labels: the score is the margin of "relevant" over "irrelevant".
    let dir = write_checkpoint(Some(Head {
        labels: 2,
        bias: vec![0.2, 0.9],
        zero_weights: true,
    }));
    let s = load(dir.path())
        .unwrap()
        .score_blocking("q", PASSAGES)
        .unwrap();
    assert!(
        s.scores.iter().all(|&x| (x - 0.7).abs() < 1e-6),
        "{:?}",
        s.scores
    );
}

#[test]
fn a_checkpoint_without_the_head_names_the_weights_file() {
    let dir = write_checkpoint(None);
    let err = load(dir.path()).unwrap_err();
    match err {
        ModelError::CorruptFile { path, reason } => {
            assert!(path.ends_with("model.safetensors"));
            assert!(reason.contains("bert.pooler.dense"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn as_a_rerank_stage_it_orders_by_score() {
    let dir = write_checkpoint(Some(Head {
        labels: 1,
        bias: vec![0.0],
        zero_weights: false,
    }));
    let reranker = load(dir.path()).unwrap();
    let expected = reranker.score_blocking("which passage?", PASSAGES).unwrap();
    let pipeline = Pipeline::builder("xenc")
        .telemetry(spanline_core::Telemetry::disabled())
        .then(Rerank::new(reranker))
        .build();
    let documents = PASSAGES
        .iter()
        .enumerate()
        .map(|(i, t)| ScoredDocument::new(Document::new(i.to_string(), *t), 0.0))
        .collect();
    let out = pipeline
        .run(
            Retrieved {
                query: Query::new("which passage?"),
                documents,
            },
            &RequestContext::new(),
        )
        .await
        .unwrap();
    for pair in out.documents.windows(2) {
        assert!(pair[0].score >= pair[1].score);
    }
    for d in &out.documents {
        let i: usize = d.document.id.parse().unwrap();
        assert_eq!(d.score, expected.scores[i]);
    }
}
