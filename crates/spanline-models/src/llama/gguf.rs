//! Reading what a GGUF file carries besides weights: the tokenizer (a
//! GPT-2 style byte-level BPE in the metadata), the chat template, special
//! token ids and the context length; and requantising weights whose
//! quantisation has no fast CPU kernel, cached on disk.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use serde_json::json;
use tokenizers::Tokenizer;

use crate::error::ModelError;

/// GGUF metadata keys (llama.cpp's names).
mod key {
    pub(super) const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
    pub(super) const TOKENS: &str = "tokenizer.ggml.tokens";
    pub(super) const TOKEN_TYPES: &str = "tokenizer.ggml.token_type";
    pub(super) const MERGES: &str = "tokenizer.ggml.merges";
    pub(super) const EOS: &str = "tokenizer.ggml.eos_token_id";
    pub(super) const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
    pub(super) const CONTEXT_LENGTH: &str = "llama.context_length";
}

/// llama.cpp token types worth knowing.
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Open and parse a GGUF file's header, naming the file in errors.
pub(crate) fn read_content(path: &Path) -> Result<(Content, BufReader<File>), ModelError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile { path: path.into() },
        _ => ModelError::corrupt(path, e),
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| ModelError::corrupt(path, e))?;
    Ok((content, reader))
}

fn strings<'a>(content: &'a Content, path: &Path, k: &str) -> Result<Vec<&'a str>, ModelError> {
    let values = content
        .metadata
        .get(k)
        .ok_or_else(|| ModelError::corrupt(path, format!("no {k} in the metadata")))?
        .to_vec()
        .map_err(|e| ModelError::corrupt(path, format!("{k}: {e}")))?;
    values
        .iter()
        .map(|v| v.to_string().map(String::as_str))
        .collect::<Result<_, _>>()
        .map_err(|e| ModelError::corrupt(path, format!("{k}: {e}")))
}

/// The metadata spanline needs to run a chat model.
pub(crate) struct ChatMetadata {
    pub(crate) tokenizer: Tokenizer,
    pub(crate) eos: Vec<u32>,
    pub(crate) chat_template: Option<String>,
    pub(crate) context_length: Option<usize>,
}

/// Build the tokenizer from the GGUF metadata: a byte-level BPE with the
/// GPT-2 pre-tokenizer (digits split individually, as SmolLM2 and most
/// llama-family GPT-2 vocabularies do), the byte-level decoder, and the
/// control and user-defined tokens added as special tokens so chat markers
/// in a prompt map to single ids.
pub(crate) fn chat_metadata(content: &Content, path: &Path) -> Result<ChatMetadata, ModelError> {
    let model = content
        .metadata
        .get(key::TOKENIZER_MODEL)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str);
    if model != Some("gpt2") {
        return Err(ModelError::corrupt(
            path,
            format!(
                "tokenizer model {model:?} is not supported (spanline reads GPT-2 style BPE \
                 vocabularies from GGUF)"
            ),
        ));
    }
    let tokens = strings(content, path, key::TOKENS)?;
    let merges = strings(content, path, key::MERGES)?;
    let types: Vec<i32> = match content.metadata.get(key::TOKEN_TYPES) {
        Some(v) => v
            .to_vec()
            .map_err(|e| ModelError::corrupt(path, e))?
            .iter()
            .map(|t| t.to_i32().unwrap_or(1))
            .collect(),
        None => Vec::new(),
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert((*token).to_string(), json!(id));
        let kind = types.get(id).copied().unwrap_or(1);
        if kind == TOKEN_TYPE_CONTROL || kind == TOKEN_TYPE_USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": kind == TOKEN_TYPE_CONTROL,
            }));
        }
    }
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let tokenizer = Tokenizer::from_bytes(spec.to_string().as_bytes())
        .map_err(|e| ModelError::corrupt(path, format!("tokenizer from metadata: {e}")))?;

    let mut eos = Vec::new();
    if let Some(id) = content.metadata.get(key::EOS).and_then(|v| v.to_u32().ok()) {
        eos.push(id);
    }
    // ChatML ends a turn with <|im_end|>; generation stops there too.
    if let Some(id) = tokenizer.token_to_id("<|im_end|>") {
        eos.push(id);
    }
    if eos.is_empty() {
        return Err(ModelError::corrupt(path, "no end-of-sequence token"));
    }
    Ok(ChatMetadata {
        tokenizer,
        eos,
        chat_template: content
            .metadata
            .get(key::CHAT_TEMPLATE)
            .and_then(|v| v.to_string().ok())
            .cloned(),
        context_length: content
            .metadata
            .get(key::CONTEXT_LENGTH)
            .and_then(|v| v.to_u32().ok())
            .map(|n| n as usize),
    })
}

/// Quantisations candle has no fast CPU kernel for, and what to convert
/// them to. Measured here: Q4_1 decodes at 15.8 tokens/s, its Q8_0
/// conversion at ~65 tokens/s.
const SLOW: &[(GgmlDType, GgmlDType)] = &[(GgmlDType::Q4_1, GgmlDType::Q8_0)];

/// The file to load: `path` itself when every tensor has a fast kernel,
/// else a requantised copy in `cache_dir`, written once (atomically) and
/// reused. Returns the path and whether it was converted now.
pub(crate) fn fast_copy(path: &Path, cache_dir: &Path) -> Result<(PathBuf, bool), ModelError> {
    let (content, mut reader) = read_content(path)?;
    let needs = content
        .tensor_infos
        .values()
        .any(|t| SLOW.iter().any(|(slow, _)| *slow == t.ggml_dtype));
    if !needs {
        return Ok((path.to_path_buf(), false));
    }
    let len = std::fs::metadata(path)
        .map_err(|e| ModelError::corrupt(path, e))?
        .len();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let target = cache_dir.join(format!("{stem}.{len}.requantized.gguf"));
    if let Ok((cached, _)) = read_content(&target)
        && cached.tensor_infos.len() == content.tensor_infos.len()
    {
        return Ok((target, false));
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| ModelError::corrupt(cache_dir, e))?;

    let device = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content
            .tensor(&mut reader, name, &device)
            .map_err(|e| ModelError::corrupt(path, format!("tensor {name}: {e}")))?;
        let tensor = match SLOW.iter().find(|(slow, _)| *slow == tensor.dtype()) {
            Some((_, fast)) => {
                let values = tensor.dequantize(&device)?;
                QTensor::quantize(&values, *fast)?
            }
            None => tensor,
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let partial = target.with_extension(format!("partial-{}", std::process::id()));
    let written = File::create(&partial)
        .map_err(|e| ModelError::corrupt(&partial, e))
        .and_then(|f| {
            let mut w = BufWriter::new(f);
            gguf_file::write(&mut w, &metadata, &tensor_refs)
                .map_err(|e| ModelError::corrupt(&partial, e))?;
            w.into_inner()
                .map_err(|e| ModelError::corrupt(&partial, e.error()))?
                .sync_all()
                .map_err(|e| ModelError::corrupt(&partial, e))
        })
        .and_then(|()| {
            std::fs::rename(&partial, &target).map_err(|e| ModelError::corrupt(&target, e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written.map(|()| (target, true))
}
