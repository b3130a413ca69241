//! The JSON of the chat completions API: the request body spanline sends,
//! and the lenient shape of the chunks it reads back (unknown fields are
//! ignored, missing or `null` fields are absent).

use serde::{Deserialize, Serialize};
use spanline_core::{FinishReason, Message, SamplingParams, TokenUsage};

/// `POST {base}/chat/completions` body.
#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: &'a [Message],
    pub(crate) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_options: Option<StreamOptions>,
    pub(crate) max_tokens: u32,
    pub(crate) temperature: f32,
    pub(crate) top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_k: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<u64>,
    /// vLLM's and TGI's name for the repetition penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) repetition_penalty: Option<f32>,
    /// llama.cpp's (and llama-cpp-python's) name for the same penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) repeat_penalty: Option<f32>,
}

/// `stream_options`.
#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub(crate) include_usage: bool,
}

impl<'a> ChatRequest<'a> {
    /// The streaming request for `messages` under `params`. Non-standard
    /// fields (`top_k`, the repetition penalty) are sent only when they
    /// change the default behaviour; the penalty goes under both names in
    /// use (`repetition_penalty`, `repeat_penalty`), since servers ignore
    /// the field they do not know.
    pub(crate) fn new(
        model: &'a str,
        messages: &'a [Message],
        params: &'a SamplingParams,
        include_usage: bool,
    ) -> Self {
        let penalty = (params.repetition_penalty != 1.0).then_some(params.repetition_penalty);
        ChatRequest {
            model,
            messages,
            stream: true,
            stream_options: include_usage.then_some(StreamOptions {
                include_usage: true,
            }),
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            stop: &params.stop,
            seed: params.seed,
            repetition_penalty: penalty,
            repeat_penalty: penalty,
        }
    }
}

/// One streamed chunk (`chat.completion.chunk`), or a whole non-streamed
/// `chat.completion` (which has `message` where a chunk has `delta`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatChunk {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) choices: Option<Vec<Choice>>,
    #[serde(default)]
    pub(crate) usage: Option<Usage>,
    /// An error reported inside the stream (`{"error": {...}}`).
    #[serde(default)]
    pub(crate) error: Option<serde_json::Value>,
    /// `"error"` on servers that send a bare error object.
    #[serde(default)]
    pub(crate) object: Option<String>,
    /// The message of a bare error object.
    #[serde(default)]
    pub(crate) message: Option<serde_json::Value>,
}

/// One choice of a chunk.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub(crate) index: Option<u64>,
    #[serde(default)]
    pub(crate) delta: Option<Delta>,
    #[serde(default)]
    pub(crate) message: Option<Delta>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    /// vLLM: the stop string (or token id) that ended the generation.
    #[serde(default)]
    pub(crate) stop_reason: Option<serde_json::Value>,
}

/// The content of a delta (or of a whole message).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub(crate) content: Option<String>,
}

/// Token counts as servers report them.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub(crate) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) completion_tokens: Option<u64>,
}

impl ChatChunk {
    /// Whether the chunk reports an error instead of content.
    pub(crate) fn is_error(&self) -> bool {
        self.error.as_ref().is_some_and(|e| !e.is_null()) || self.object.as_deref() == Some("error")
    }

    /// The error's message, when the server gave one.
    pub(crate) fn error_message(&self) -> Option<String> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match &self.error {
            Some(serde_json::Value::Object(o)) => o.get("message").map(text),
            Some(serde_json::Value::Null) | None => self.message.as_ref().map(text),
            Some(other) => Some(text(other)),
        }
    }

    /// The first choice (index 0 or unnumbered): spanline never asks for
    /// more than one.
    pub(crate) fn first_choice(&self) -> Option<&Choice> {
        self.choices
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.index.unwrap_or(0) == 0)
    }
}

impl Choice {
    /// The text this choice carries (`delta.content` or `message.content`).
    pub(crate) fn text(&self) -> Option<&str> {
        self.delta
            .as_ref()
            .or(self.message.as_ref())
            .and_then(|d| d.content.as_deref())
    }

    /// The finish reason, mapped; `None` while the generation goes on.
    pub(crate) fn finish(&self) -> Option<FinishReason> {
        let reason = self.finish_reason.as_deref()?;
        let stopped_by_string = matches!(self.stop_reason, Some(serde_json::Value::String(_)));
        Some(map_finish_reason(reason, stopped_by_string))
    }
}

/// Map a server's `finish_reason` onto [`FinishReason`]:
/// `stop` / `eos` / `eos_token` / `end_turn` → `Stop` (or `StopSequence`
/// when the server says a stop string matched, as vLLM's `stop_reason`
/// does), `stop_sequence` → `StopSequence`, `length` / `max_tokens` →
/// `Length`, `content_filter` / `error` / `abort` / `cancelled` → `Error`,
/// and `tool_calls`, `function_call` or anything unknown → `Stop` (the model
/// ended its turn).
pub(crate) fn map_finish_reason(reason: &str, stopped_by_string: bool) -> FinishReason {
    match reason {
        "length" | "max_tokens" | "model_length" => FinishReason::Length,
        "stop_sequence" => FinishReason::StopSequence,
        "content_filter" | "error" | "abort" | "cancelled" => FinishReason::Error,
        _ if stopped_by_string => FinishReason::StopSequence,
        _ => FinishReason::Stop,
    }
}

impl Usage {
    /// The usage to report: the server's numbers where given, else
    /// `counted` output pieces and 0 input tokens.
    pub(crate) fn resolve(usage: Option<Usage>, counted: u64) -> TokenUsage {
        let u = usage.unwrap_or_default();
        TokenUsage {
            input_tokens: u.prompt_tokens.unwrap_or(0),
            output_tokens: u.completion_tokens.unwrap_or(counted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spanline_core::{GenerationRequest, Role};

    #[test]
    fn request_sends_non_standard_fields_only_when_set() {
        let r = GenerationRequest::user("hi");
        let body =
            serde_json::to_value(ChatRequest::new("m", &r.messages, &r.params, true)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 256,
                "temperature": 0.0,
                "top_p": 1.0,
            })
        );
        let mut p = r.params.clone();
        p.top_k = Some(40);
        p.seed = Some(7);
        p.stop = vec!["\n\n".into()];
        p.repetition_penalty = 1.1;
        let msgs = [Message::new(Role::System, "s")];
        let body = serde_json::to_value(ChatRequest::new("m", &msgs, &p, false)).unwrap();
        assert_eq!(body["top_k"], 40);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["stop"], serde_json::json!(["\n\n"]));
        assert!((body["repetition_penalty"].as_f64().unwrap() - 1.1).abs() < 1e-6);
        assert_eq!(body["repeat_penalty"], body["repetition_penalty"]);
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["messages"][0]["role"], "system");
    }

    #[test]
    fn chunks_parse_leniently() {
        let c: ChatChunk = serde_json::from_str(
            r#"{"id":"x","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"logprobs":null}],"usage":null}"#,
        )
        .unwrap();
        assert_eq!(c.first_choice().and_then(Choice::text), Some("Hi"));
        assert!(c.first_choice().unwrap().finish().is_none());
        assert!(!c.is_error());
        let c: ChatChunk = serde_json::from_str(
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
        )
        .unwrap();
        assert_eq!(
            Usage::resolve(c.usage, 99),
            TokenUsage {
                input_tokens: 5,
                output_tokens: 3
            }
        );
        assert_eq!(
            Usage::resolve(None, 4),
            TokenUsage {
                input_tokens: 0,
                output_tokens: 4
            }
        );
        let e: ChatChunk =
            serde_json::from_str(r#"{"error":{"message":"boom","code":500}}"#).unwrap();
        assert!(e.is_error());
        assert_eq!(e.error_message().as_deref(), Some("boom"));
        let e: ChatChunk = serde_json::from_str(r#"{"object":"error","message":"bad"}"#).unwrap();
        assert!(e.is_error());
        assert_eq!(e.error_message().as_deref(), Some("bad"));
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(map_finish_reason("stop", false), FinishReason::Stop);
        assert_eq!(map_finish_reason("stop", true), FinishReason::StopSequence);
        assert_eq!(map_finish_reason("length", false), FinishReason::Length);
        assert_eq!(
            map_finish_reason("content_filter", false),
            FinishReason::Error
        );
        assert_eq!(map_finish_reason("tool_calls", false), FinishReason::Stop);
        assert_eq!(
            map_finish_reason("something_new", false),
            FinishReason::Stop
        );
        let c: ChatChunk = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":"END"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.first_choice().unwrap().finish(),
            Some(FinishReason::StopSequence)
        );
        let c: ChatChunk = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":128009}]}"#,
        )
        .unwrap();
        assert_eq!(c.first_choice().unwrap().finish(), Some(FinishReason::Stop));
    }
}
