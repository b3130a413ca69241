//! What the sentence embedder and the cross-encoder share: loading a BERT
//! checkpoint (config, tokenizer, safetensors weights) with errors that name
//! the file, and turning texts into padded batches.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{
    EncodeInput, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy,
};

use crate::error::ModelError;

/// The smallest file accepted as weights: a safetensors header alone is
/// longer than this.
const MIN_WEIGHTS_BYTES: u64 = 16;

/// A loaded BERT checkpoint.
pub(crate) struct BertParts {
    pub(crate) model: BertModel,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) config: Config,
    /// The weights, for heads beyond the encoder (pooler, classifier).
    pub(crate) weights: VarBuilder<'static>,
    pub(crate) max_tokens: usize,
}

/// A tokenised batch, ready for the model.
pub(crate) struct Batch {
    pub(crate) ids: Tensor,
    pub(crate) type_ids: Tensor,
    pub(crate) mask: Tensor,
    /// Inputs cut to the model's limit.
    pub(crate) truncated: usize,
    /// Real (non-padding) tokens over the batch.
    pub(crate) tokens: usize,
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile { path: path.into() },
        _ => ModelError::corrupt(path, e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::corrupt(path, e))
}

impl BertParts {
    /// Load `config.json`, `tokenizer.json` and `model.safetensors` from
    /// `dir`. `max_tokens` caps the sequence length (else the model's
    /// `max_position_embeddings`).
    pub(crate) fn load(dir: &Path, max_tokens: Option<usize>) -> Result<Self, ModelError> {
        let device = Device::Cpu;
        let config_path = dir.join("config.json");
        let config: Config = read_json(&config_path)?;
        if config.hidden_size == 0 || config.num_attention_heads == 0 {
            return Err(ModelError::corrupt(
                &config_path,
                "zero hidden size or heads",
            ));
        }
        let limit = max_tokens
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if limit < 2 {
            return Err(ModelError::Config(format!(
                "a sequence limit of {limit} tokens leaves no room for text"
            )));
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&tokenizer_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::MissingFile {
                path: tokenizer_path.clone(),
            },
            _ => ModelError::corrupt(&tokenizer_path, e),
        })?;
        let mut tokenizer =
            Tokenizer::from_bytes(&bytes).map_err(|e| ModelError::corrupt(&tokenizer_path, e))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token: "[PAD]".into(),
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: limit,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| ModelError::Config(format!("truncation: {e}")))?;

        let weights_path = dir.join("model.safetensors");
        let weights = load_safetensors(&weights_path, &device)?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model = BertModel::load(vb.clone(), &config)
            .map_err(|e| ModelError::corrupt(&weights_path, e))?;
        Ok(BertParts {
            model,
            tokenizer,
            config,
            weights: vb,
            max_tokens: limit,
        })
    }

    /// Tokenise `inputs` (texts, or text pairs for a cross-encoder) into one
    /// batch padded to its longest member.
    pub(crate) fn batch<'s, E>(&self, inputs: Vec<E>) -> Result<Batch, ModelError>
    where
        E: Into<EncodeInput<'s>> + Send,
    {
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| ModelError::InvalidInput(format!("tokenizer: {e}")))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut type_ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        let (mut truncated, mut tokens) = (0, 0);
        for e in &encodings {
            if e.get_ids().len() != width {
                return Err(ModelError::Inference(
                    "tokenizer did not pad the batch".into(),
                ));
            }
            ids.extend_from_slice(e.get_ids());
            type_ids.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
            tokens += e.get_attention_mask().iter().filter(|&&m| m == 1).count();
            truncated += usize::from(!e.get_overflowing().is_empty());
        }
        let device = &self.model.device;
        Ok(Batch {
            ids: Tensor::from_vec(ids, (rows, width), device)?,
            type_ids: Tensor::from_vec(type_ids, (rows, width), device)?,
            mask: Tensor::from_vec(mask, (rows, width), device)?,
            truncated,
            tokens,
        })
    }

    /// The encoder's last hidden states, `(batch, tokens, hidden)`.
    pub(crate) fn forward(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        Ok(self
            .model
            .forward(&batch.ids, &batch.type_ids, Some(&batch.mask))?)
    }
}

/// Read a safetensors file whole (no memory map: this crate has no unsafe
/// code), naming the file in every error.
pub(crate) fn load_safetensors(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, ModelError> {
    match std::fs::metadata(path) {
        Err(_) => return Err(ModelError::MissingFile { path: path.into() }),
        Ok(m) if m.len() < MIN_WEIGHTS_BYTES => {
            return Err(ModelError::corrupt(path, "too short to be safetensors"));
        }
        Ok(_) => {}
    }
    let data = std::fs::read(path).map_err(|e| ModelError::corrupt(path, e))?;
    candle_core::safetensors::load_buffer(&data, device).map_err(|e| ModelError::corrupt(path, e))
}

/// Fail if any value is NaN or infinite: they must never reach a caller
/// silently.
pub(crate) fn check_finite(values: &[f32], what: &str) -> Result<(), ModelError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(ModelError::Inference(format!(
            "the model produced NaN or infinite {what}"
        )))
    }
}
