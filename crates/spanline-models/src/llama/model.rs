//! The llama forward pass over GGUF weights, with two copies of each
//! projection where memory allows: the quantised one for decoding and a
//! dense f32 one for the prompt.
//!
//! candle's quantised CPU matmul computes a row of the output at a time
//! (quantise the activation row, dot it with every weight row), so a
//! 350-token prompt costs about 350 times one token: measured here on one
//! thread, Q8_0 prefill ran at ~25 ms per prompt token, dense f32 GEMM at
//! ~7 ms. Decoding one token is the other way round (reading 4-byte
//! weights costs more than the quantised dot products), so the prompt goes
//! through the dense copy and every later token through the quantised one.
//! Both write the same per-request KV cache.
//!
//! The layer arithmetic follows candle-transformers' `quantized_llama`
//! (dense llama architecture; interleaved rotary embedding as llama.cpp
//! uses for `llama`), so the quantised path gives the same logits.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_transformers::models::quantized_llama::MAX_SEQ_LEN;

/// A prompt shorter than this goes through the quantised weights: the
/// dense GEMM pays off only over several rows. A conservative choice, not a
/// tuned one (a 37-token prompt already prefills 1.8× faster dense).
pub(crate) const DENSE_MIN_TOKENS: usize = 8;

/// One projection: the quantised matrix and, optionally, its f32 copy.
struct Projection {
    quantized: QMatMul,
    dense: Option<QMatMul>,
}

impl Projection {
    fn forward(&self, x: &Tensor, dense: bool) -> Result<Tensor> {
        match (&self.dense, dense) {
            (Some(d), true) => d.forward(x),
            _ => self.quantized.forward(x),
        }
    }
}

struct Layer {
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    gate: Projection,
    up: Projection,
    down: Projection,
    attn_norm: Tensor,
    ffn_norm: Tensor,
}

/// Loaded weights, shared by every request (read-only).
pub(crate) struct Model {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    eps: f32,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
    dense_bytes: u64,
}

/// One request's attention keys and values, per layer.
pub(crate) struct Cache {
    kv: Vec<Option<(Tensor, Tensor)>>,
}

const PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl Model {
    /// Read a llama-architecture GGUF. The dense prompt copies are made
    /// when they take at most `dense_limit` bytes (0: never).
    pub(crate) fn from_gguf<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        dense_limit: u64,
    ) -> Result<Model> {
        let device = &Device::Cpu;
        let md = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("no `{key}` in the metadata")))
        };
        let arch = md("general.architecture")?.to_string()?.clone();
        if arch != "llama" {
            candle_core::bail!("architecture `{arch}` is not supported (llama only)");
        }
        if md("llama.expert_count")
            .and_then(|v| v.to_u32())
            .unwrap_or(0)
            > 1
        {
            candle_core::bail!("mixture-of-experts llama models are not supported");
        }
        let n_head = md("llama.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let blocks = md("llama.block_count")?.to_u32()? as usize;
        let hidden = md("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let freq_base = md("llama.rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);
        // The header is untrusted: check it against the file before sizing
        // anything by it (a bogus block count or rotary width would
        // otherwise ask for gigabytes before the first tensor read fails).
        if n_head == 0
            || n_kv_head == 0
            || hidden == 0
            || !n_head.is_multiple_of(n_kv_head)
            || !hidden.is_multiple_of(n_head)
        {
            candle_core::bail!(
                "inconsistent sizes ({hidden} wide, {n_head} heads, {n_kv_head} kv heads)"
            );
        }
        if rope_dim != hidden / n_head {
            candle_core::bail!(
                "rotary width {rope_dim} differs from the head width {}",
                hidden / n_head
            );
        }
        let per_block = PROJECTIONS.len() + 2;
        if blocks == 0 || blocks.saturating_mul(per_block) > content.tensor_infos.len() {
            candle_core::bail!(
                "block_count {blocks} does not match the {} tensors in the file",
                content.tensor_infos.len()
            );
        }

        let dense_bytes: u64 = (0..blocks)
            .flat_map(|i| PROJECTIONS.map(|p| format!("blk.{i}.{p}.weight")))
            .map(|name| {
                content
                    .tensor_infos
                    .get(&name)
                    .map_or(0, |t| t.shape.elem_count() as u64 * 4)
            })
            .sum();
        let dense = dense_limit > 0 && dense_bytes <= dense_limit;

        let mut tensor = |name: &str| content.tensor(reader, name, device);
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(device)?;
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let output = match tensor("output.weight") {
            Ok(t) => t,
            Err(_) => embed_q,
        };
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut projection = |part: &str| -> Result<Projection> {
                let q = tensor(&format!("blk.{i}.{part}.weight"))?;
                Ok(Projection {
                    dense: match dense {
                        true => Some(QMatMul::Tensor(q.dequantize(device)?)),
                        false => None,
                    },
                    quantized: quantized(q)?,
                })
            };
            let (q, k, v, o) = (
                projection("attn_q")?,
                projection("attn_k")?,
                projection("attn_v")?,
                projection("attn_output")?,
            );
            let (gate, up, down) = (
                projection("ffn_gate")?,
                projection("ffn_up")?,
                projection("ffn_down")?,
            );
            layers.push(Layer {
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
                attn_norm: tensor(&format!("blk.{i}.attn_norm.weight"))?.dequantize(device)?,
                ffn_norm: tensor(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(device)?,
            });
        }

        let (cos, sin) = rotary_tables(rope_dim, freq_base, MAX_SEQ_LEN)?;
        Ok(Model {
            embed,
            layers,
            norm,
            output: quantized(output)?,
            eps,
            n_head,
            n_kv_head,
            head_dim: hidden / n_head,
            cos,
            sin,
            dense_bytes: if dense { dense_bytes } else { 0 },
        })
    }

    /// Bytes of dense prompt weights held (0 when prompts run quantised).
    pub(crate) fn dense_bytes(&self) -> u64 {
        self.dense_bytes
    }

    /// An empty KV cache for one request.
    pub(crate) fn cache(&self) -> Cache {
        Cache {
            kv: vec![None; self.layers.len()],
        }
    }

    /// Run `tokens` (shape `(1, n)`) at positions `pos..pos + n`, extending
    /// `cache`; the logits of the last position, shape `(1, vocab)`.
    pub(crate) fn forward(&self, cache: &mut Cache, tokens: &Tensor, pos: usize) -> Result<Tensor> {
        self.forward_with(cache, tokens, pos, true)
    }

    /// [`Model::forward`], choosing whether a prompt may use the dense
    /// weights (`false` forces the quantised ones; for comparisons).
    pub(crate) fn forward_with(
        &self,
        cache: &mut Cache,
        tokens: &Tensor,
        pos: usize,
        allow_dense: bool,
    ) -> Result<Tensor> {
        let (_, n) = tokens.dims2()?;
        if n == 0 {
            candle_core::bail!("no tokens to run");
        }
        let dense = allow_dense && n >= DENSE_MIN_TOKENS;
        let mask = if n > 1 {
            Some(candle_transformers::utils::build_causal_mask(
                n,
                pos,
                tokens.device(),
            )?)
        } else {
            None
        };
        let ids = tokens.flatten_all()?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?;
        for (layer, kv) in self.layers.iter().zip(cache.kv.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.eps)?;
            let h = self.attention(layer, kv, &h, mask.as_ref(), pos, dense)?;
            x = (h + &x)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.eps)?;
            let gate = candle_nn::ops::silu(&layer.gate.forward(&h, dense)?)?;
            let h = layer
                .down
                .forward(&(gate * layer.up.forward(&h, dense)?)?, dense)?;
            x = (h + &x)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        self.output.forward(&x.i((.., n - 1, ..))?)
    }

    fn attention(
        &self,
        layer: &Layer,
        kv: &mut Option<(Tensor, Tensor)>,
        x: &Tensor,
        mask: Option<&Tensor>,
        pos: usize,
        dense: bool,
    ) -> Result<Tensor> {
        let (b, n, hidden) = x.dims3()?;
        let heads = |t: Tensor, count: usize| {
            t.reshape((b, n, count, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(layer.q.forward(x, dense)?, self.n_head)?;
        let k = heads(layer.k.forward(x, dense)?, self.n_kv_head)?;
        let v = heads(layer.v.forward(x, dense)?, self.n_kv_head)?;
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
        let (k, v) = match kv.take() {
            Some((kc, vc)) if pos > 0 => (Tensor::cat(&[&kc, &k], 2)?, Tensor::cat(&[&vc, &v], 2)?),
            _ => (k, v),
        };
        *kv = Some((k.clone(), v.clone()));

        let rep = self.n_head / self.n_kv_head;
        let k = candle_transformers::utils::repeat_kv(k, rep)?;
        let v = candle_transformers::utils::repeat_kv(v, rep)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = match mask {
            Some(mask) => {
                let mask = mask.broadcast_as(scores.shape())?;
                let blocked = Tensor::new(f32::NEG_INFINITY, scores.device())?
                    .broadcast_as(scores.shape())?;
                mask.where_cond(&blocked, &scores)?
            }
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = weights.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape((b, n, hidden))?;
        layer.o.forward(&y, dense)
    }
}

fn quantized(t: QTensor) -> Result<QMatMul> {
    // Not `QMatMul::from_qtensor`: that dequantises everything when the
    // `CANDLE_DEQUANTIZE_ALL` variable is set, which would silently undo
    // the quantised decode path.
    match t.dtype() {
        candle_core::quantized::GgmlDType::F32 | candle_core::quantized::GgmlDType::F16 => {
            Ok(QMatMul::Tensor(t.dequantize(&Device::Cpu)?))
        }
        _ => Ok(QMatMul::QTensor(Arc::new(t))),
    }
}

/// Rotary cos/sin tables, `(positions, dim / 2)`.
fn rotary_tables(dim: usize, base: f32, positions: usize) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    let inv = Tensor::new(inv.as_slice(), &Device::Cpu)?;
    let angles = Tensor::arange(0, positions as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?
        .matmul(&inv.reshape((1, inv.elem_count()))?)?;
    Ok((angles.cos()?, angles.sin()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::{LlamaGenerator, LoadOptions, gguf};
    use crate::resolve::{ModelResolver, SMOLLM2_135M_INSTRUCT};
    use candle_transformers::models::quantized_llama::ModelWeights;

    #[test]
    fn rotary_tables_start_at_identity() {
        let (cos, sin) = rotary_tables(8, 10_000.0, 4).unwrap();
        assert_eq!(cos.dims(), [4, 4]);
        let c0: Vec<f32> = cos.i(0).unwrap().to_vec1().unwrap();
        let s0: Vec<f32> = sin.i(0).unwrap().to_vec1().unwrap();
        assert!(c0.iter().all(|&c| c == 1.0) && s0.iter().all(|&s| s == 0.0));
        // Position 1, first pair: an angle of one radian.
        let c1: f32 = cos.i((1, 0)).unwrap().to_scalar().unwrap();
        assert!((c1 - 1f32.cos()).abs() < 1e-6);
    }

    fn vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn argmax(v: &[f32]) -> usize {
        (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// On the real SmolLM2 file: the quantised path gives candle's logits;
    /// the dense prompt path agrees with it; a cache written by the dense
    /// prompt serves quantised decoding.
    /// SmolLM2 from the shared cache, its dense copy capped at `limit`.
    fn smollm2(limit: u64) -> LlamaGenerator {
        let resolver = ModelResolver::from_env();
        let files = resolver.resolve(&SMOLLM2_135M_INSTRUCT).unwrap();
        let options = LoadOptions {
            dense_prefill_limit: limit,
            ..LoadOptions::cached_in(&resolver)
        };
        LlamaGenerator::load(
            &files.file(SMOLLM2_135M_INSTRUCT.files[0]),
            "smollm2",
            &options,
            crate::InferenceThreads::new(1).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn dense_prefill_agrees_with_the_quantised_path_and_candle() {
        let generator = smollm2(LoadOptions::DEFAULT_DENSE_PREFILL_LIMIT);
        let path = generator.model_path().to_path_buf();
        let prompt = generator
            .tokenize("<|im_start|>user\nWhat carries the trace context across a Kafka hop, and why does it matter?<|im_end|>\n<|im_start|>assistant\n")
            .unwrap();
        assert!(prompt.len() >= DENSE_MIN_TOKENS);
        let model = &generator.inner.weights;
        assert!(model.dense_bytes() > 100 << 20, "{}", model.dense_bytes());
        let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();

        let mut dense_cache = model.cache();
        let mut quant_cache = model.cache();
        let dense = vec(&model
            .forward_with(&mut dense_cache, &input, 0, true)
            .unwrap());
        let quant = vec(&model
            .forward_with(&mut quant_cache, &input, 0, false)
            .unwrap());
        let (content, mut reader) = gguf::read_content(&path).unwrap();
        let mut reference = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
        let want = vec(&reference.forward(&input, 0).unwrap());

        let worst = quant
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "quantised path vs candle: max |Δ| {worst}");
        // Not equal: the quantised path also rounds each activation row to
        // 8 bits before its dot products; the dense one does not.
        assert!(cosine(&dense, &quant) > 0.995, "{}", cosine(&dense, &quant));
        let first = argmax(&dense);
        assert_eq!(first, argmax(&quant));

        // The next token, decoded with the quantised weights over each cache.
        let next = Tensor::new(&[first as u32], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let a = vec(&model
            .forward(&mut dense_cache, &next, prompt.len())
            .unwrap());
        let b = vec(&model
            .forward(&mut quant_cache, &next, prompt.len())
            .unwrap());
        assert!(cosine(&a, &b) > 0.995, "{}", cosine(&a, &b));
        assert_eq!(argmax(&a), argmax(&b));
    }

    #[test]
    fn a_lying_header_is_refused_before_anything_is_sized_by_it() {
        use gguf_file::Value;
        let header = |blocks: u32, rope: u32| {
            let values = [
                ("general.architecture", Value::String("llama".into())),
                ("llama.attention.head_count", Value::U32(4)),
                ("llama.attention.head_count_kv", Value::U32(2)),
                ("llama.block_count", Value::U32(blocks)),
                ("llama.embedding_length", Value::U32(64)),
                ("llama.rope.dimension_count", Value::U32(rope)),
                ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ];
            let metadata: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (*k, v)).collect();
            let mut file = std::io::Cursor::new(Vec::new());
            gguf_file::write(&mut file, &metadata, &[]).unwrap();
            file.set_position(0);
            let content = gguf_file::Content::read(&mut file).unwrap();
            Model::from_gguf(&content, &mut file, 0)
                .err()
                .expect("refused")
                .to_string()
        };
        let err = header(1_000_000_000, 16);
        assert!(err.contains("block_count 1000000000"), "{err}");
        let err = header(1, 1 << 30);
        assert!(err.contains("rotary width"), "{err}");
    }

    #[test]
    fn a_zero_limit_keeps_no_dense_copy() {
        assert_eq!(smollm2(0).dense_prefill_bytes(), 0);
    }
}
