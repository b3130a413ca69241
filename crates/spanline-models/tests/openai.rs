//! The OpenAI-compatible generator against a hand-written loopback HTTP/1.1
//! server: streaming across awkward byte boundaries, the request it sends,
//! error mapping, limits, timeouts, cancellation, and the telemetry it
//! produces inside a pipeline. One opt-in test runs a real llama.cpp server
//! (`SPANLINE_LLAMA_SERVER_PYTHON`, `SPANLINE_LLAMA_SERVER_MODEL`).

mod openai_support;

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use openai_support::{
    Reply, chunk, chunked_response, data, plain, serve, sse_head, text_chunk, usage_chunk,
};
use opentelemetry::Value;
use opentelemetry::trace::SpanKind;
use spanline_core::{
    ErrorKind, FinishReason, Generate, GenerationRequest, Message, Pipeline, RequestContext, Role,
    StageError, Token, TokenStream, TokenUsage,
};
use spanline_models::openai::{Limits, OpenAiError, OpenAiGenerator, Timeouts};
use spanline_testkit::{SpanDataExt, TestTelemetry};

const CANARY: &str = "CANARY-5d1e-server-echo";

/// Everything a stream produced: text pieces, then the end (Done or error).
struct Collected {
    pieces: Vec<String>,
    end: Result<(TokenUsage, FinishReason), StageError>,
}

async fn collect(mut stream: TokenStream) -> Collected {
    let mut pieces = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(Token::Text(t)) => pieces.push(t),
            Ok(Token::Done {
                usage,
                finish_reason,
            }) => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return Collected {
                    pieces,
                    end: Ok((usage, finish_reason)),
                };
            }
            Err(e) => {
                assert!(stream.next().await.is_none(), "nothing after an error");
                return Collected {
                    pieces,
                    end: Err(e),
                };
            }
        }
    }
    panic!("stream ended without Done or an error; pieces {pieces:?}");
}

fn generator(base_url: &str) -> OpenAiGenerator {
    OpenAiGenerator::builder(base_url, "test-model")
        .timeouts(
            Timeouts::default()
                .connect(Duration::from_secs(5))
                .first_byte(Duration::from_secs(10))
                .idle(Duration::from_secs(10)),
        )
        .build()
        .unwrap()
}

/// The whole-stream error of a request that fails before streaming.
async fn start_error(g: &OpenAiGenerator, ctx: &RequestContext) -> OpenAiError {
    match g.stream(&GenerationRequest::user("hello"), ctx).await {
        Ok(_) => panic!("expected the request to fail"),
        Err(e) => e,
    }
}

fn normal_event_stream(model: &str) -> String {
    let mut s = String::new();
    // A role-only first delta, a comment, CRLF line endings in places.
    s += &data(&serde_json::json!({
        "id": "chatcmpl-test-1", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],
    }));
    s += ": keep-alive comment\r\n\r\n";
    s += &data(&text_chunk(model, "Hel", None)).replace('\n', "\r\n");
    s += &data(&text_chunk(model, "lo, wörld 👋", None));
    s += &data(&text_chunk(model, "!", Some("length")));
    s += &data(&usage_chunk(model, 11, 3));
    s += "data: [DONE]\n\n";
    s
}

/// Cut points inside `data:`, inside `\r\n`, and inside multi-byte
/// characters.
fn awkward_cuts(s: &str) -> Vec<usize> {
    let b = s.as_bytes();
    let mut cuts = vec![1, 3, 7];
    let find = |needle: &[u8]| b.windows(needle.len()).position(|w| w == needle);
    if let Some(i) = find("ö".as_bytes()) {
        cuts.push(i + 1);
    }
    if let Some(i) = find("👋".as_bytes()) {
        cuts.extend([i + 1, i + 2, i + 3]);
    }
    if let Some(i) = find(b"\r\n\r\n") {
        cuts.extend([i + 1, i + 3]);
    }
    if let Some(i) = find(b"[DONE]") {
        cuts.push(i + 2);
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

#[tokio::test]
async fn streams_text_usage_and_finish_reason_across_awkward_boundaries() {
    let events = normal_event_stream("served-model");
    let cuts = awkward_cuts(&events);
    let pieces = chunked_response(events.as_bytes(), &cuts, true);
    let mut server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let g = OpenAiGenerator::builder(server.base_url(), "test-model")
        .api_key("sk-test-key")
        .header("X-Title", "spanline-tests")
        .build()
        .unwrap();

    let mut request = GenerationRequest {
        messages: vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Say hello."),
        ],
        ..GenerationRequest::user("")
    };
    let p = &mut request.params;
    p.max_tokens = 7;
    p.temperature = 0.5;
    p.top_p = 0.9;
    p.top_k = Some(20);
    p.stop = vec!["\n\n".into(), "END".into()];
    p.seed = Some(42);
    p.repetition_penalty = 1.25;

    let got = collect(g.stream(&request, &RequestContext::new()).await.unwrap()).await;
    assert_eq!(got.pieces.concat(), "Hello, wörld 👋!");
    assert_eq!(got.pieces, ["Hel", "lo, wörld 👋", "!"]);
    let (usage, finish) = got.end.unwrap();
    assert_eq!(
        usage,
        TokenUsage {
            input_tokens: 11,
            output_tokens: 3
        }
    );
    assert_eq!(finish, FinishReason::Length);

    let req = server.request().await;
    assert_eq!(req.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(req.header("authorization"), Some("Bearer sk-test-key"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("accept"), Some("text/event-stream"));
    assert_eq!(req.header("x-title"), Some("spanline-tests"));
    assert!(req.header("baggage").is_none());
    assert_eq!(
        req.json(),
        serde_json::json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello."},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 20,
            "stop": ["\n\n", "END"],
            "seed": 42,
            "repetition_penalty": 1.25,
            "repeat_penalty": 1.25,
        })
    );
}

#[tokio::test]
async fn without_usage_output_tokens_are_counted_chunks_and_input_is_zero() {
    let mut events = String::new();
    for piece in ["a", "b", "c"] {
        events += &data(&text_chunk("m", piece, None));
    }
    events += &data(&text_chunk("m", "", Some("stop")));
    events += "data: [DONE]\n\n";
    let pieces = chunked_response(events.as_bytes(), &[], true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let g = OpenAiGenerator::builder(server.base_url(), "m")
        .stream_usage(false)
        .build()
        .unwrap();
    let got = collect(
        g.stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces.concat(), "abc");
    assert_eq!(
        got.end.unwrap(),
        (
            TokenUsage {
                input_tokens: 0,
                output_tokens: 3
            },
            FinishReason::Stop
        )
    );
}

#[tokio::test]
async fn stream_closed_after_finish_reason_without_done_is_complete() {
    let mut events = data(&text_chunk("m", "ok", Some("stop")));
    events += &data(&usage_chunk("m", 2, 1));
    let pieces = chunked_response(events.as_bytes(), &[], true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let got = collect(
        generator(&server.base_url())
            .stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["ok"]);
    assert_eq!(got.end.unwrap().1, FinishReason::Stop);
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let g = generator(&format!("http://{addr}/v1"));
    let e = start_error(&g, &RequestContext::new()).await;
    assert!(matches!(e, OpenAiError::Connect { .. }), "{e:?}");
    assert_eq!(StageError::from(e).kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn client_error_body_appears_only_with_content_capture() {
    let body = format!(
        r#"{{"error":{{"message":"prompt too long: {CANARY}","type":"invalid_request_error"}}}}"#
    );
    let server = serve(move |_| {
        Reply::Pieces(vec![plain(
            "400 Bad Request",
            "application/json",
            body.as_bytes(),
        )])
    })
    .await;
    let g = generator(&server.base_url());

    let off =
        StageError::from(start_error(&g, &RequestContext::new().with_content_capture(false)).await);
    assert_eq!(off.kind(), ErrorKind::InvalidInput);
    assert!(off.message().contains("400"), "{}", off.message());
    assert!(!off.message().contains(CANARY), "{}", off.message());
    assert!(!format!("{off:?}").contains(CANARY));

    let on = start_error(&g, &RequestContext::new().with_content_capture(true)).await;
    assert_eq!(on.status(), Some(400));
    let on = StageError::from(on);
    assert_eq!(on.kind(), ErrorKind::InvalidInput);
    assert!(on.message().contains(CANARY), "{}", on.message());
}

#[tokio::test]
async fn long_error_bodies_are_truncated() {
    let body = "x".repeat(20_000);
    let server = serve(move |_| {
        Reply::Pieces(vec![plain(
            "422 Unprocessable Entity",
            "text/plain",
            body.as_bytes(),
        )])
    })
    .await;
    let e = start_error(
        &generator(&server.base_url()),
        &RequestContext::new().with_content_capture(true),
    )
    .await;
    match &e {
        OpenAiError::Status {
            status: 422,
            body: Some(b),
        } => assert!(b.len() <= 520, "{}", b.len()),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn too_many_requests_is_resource_exhausted_and_5xx_is_unavailable() {
    let server = serve(|n| {
        let status = match n {
            0 => "429 Too Many Requests",
            1 => "500 Internal Server Error",
            _ => "503 Service Unavailable",
        };
        Reply::Pieces(vec![plain(status, "application/json", b"{}")])
    })
    .await;
    let g = generator(&server.base_url());
    let ctx = RequestContext::new();
    for want in [
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::Unavailable,
    ] {
        assert_eq!(StageError::from(start_error(&g, &ctx).await).kind(), want);
    }
}

#[tokio::test]
async fn malformed_chunk_is_invalid_output_without_leaking_content() {
    let mut events = data(&text_chunk("m", "fine", None));
    events += &format!("data: {{\"choices\": [{CANARY}\n\n");
    let pieces = chunked_response(events.as_bytes(), &[], true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let got = collect(
        generator(&server.base_url())
            .stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["fine"]);
    let e = got.end.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOutput);
    assert!(!e.message().contains(CANARY), "{}", e.message());
}

#[tokio::test]
async fn non_utf8_stream_is_invalid_output() {
    let events = b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\"}}]}\n\n".to_vec();
    let pieces = chunked_response(&events, &[], true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let got = collect(
        generator(&server.base_url())
            .stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.end.unwrap_err().kind(), ErrorKind::InvalidOutput);
}

#[tokio::test]
async fn error_event_in_the_stream_is_a_model_error() {
    let mut events = data(&text_chunk("m", "par", None));
    events += &data(
        &serde_json::json!({"error": {"message": format!("engine died {CANARY}"), "code": 500}}),
    );
    let pieces = chunked_response(events.as_bytes(), &[], true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let g = generator(&server.base_url());
    let got = collect(
        g.stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["par"]);
    let e = got.end.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Model);
    assert!(!e.message().contains(CANARY));
    let got = collect(
        g.stream(
            &GenerationRequest::user("x"),
            &RequestContext::new().with_content_capture(true),
        )
        .await
        .unwrap(),
    )
    .await;
    assert!(got.end.unwrap_err().message().contains(CANARY));
}

#[tokio::test]
async fn mid_stream_disconnect_is_unavailable_not_a_hang() {
    // The chunk announces 0x100 bytes, ten arrive, then the server closes.
    let pieces = vec![
        sse_head(),
        chunk(data(&text_chunk("m", "first", None)).as_bytes()),
        b"100\r\ndata: {\"ch".to_vec(),
    ];
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let got = collect(
        generator(&server.base_url())
            .stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["first"]);
    let e = got.end.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
}

#[tokio::test]
async fn stream_that_ends_without_done_or_finish_is_invalid_output() {
    let events = data(&text_chunk("m", "half", None));
    let pieces = chunked_response(events.as_bytes(), &[], true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let got = collect(
        generator(&server.base_url())
            .stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["half"]);
    assert_eq!(got.end.unwrap_err().kind(), ErrorKind::InvalidOutput);
}

#[tokio::test]
async fn silent_server_times_out_within_the_first_byte_limit() {
    let server = serve(|_| Reply::Silent).await;
    let g = OpenAiGenerator::builder(server.base_url(), "m")
        .timeouts(Timeouts::default().first_byte(Duration::from_millis(300)))
        .build()
        .unwrap();
    let e = start_error(&g, &RequestContext::new()).await;
    assert!(matches!(e, OpenAiError::FirstByteTimeout(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Timeout);

    // The request deadline, when tighter, wins and says so.
    let ctx = RequestContext::new().with_timeout(Duration::from_millis(200));
    let e = start_error(&generator(&server.base_url()), &ctx).await;
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    // Already expired: refused without a request.
    let expired = RequestContext::new().with_timeout(Duration::ZERO);
    assert_eq!(
        start_error(&generator(&server.base_url()), &expired)
            .await
            .kind(),
        ErrorKind::DeadlineExceeded
    );
}

#[tokio::test]
async fn server_that_stalls_mid_stream_hits_the_idle_timeout() {
    let server = serve(move |_| {
        Reply::PiecesThenWatch(
            vec![
                sse_head(),
                chunk(data(&text_chunk("m", "slow", None)).as_bytes()),
            ],
            tokio::sync::oneshot::channel().0,
        )
    })
    .await;
    let g = OpenAiGenerator::builder(server.base_url(), "m")
        .timeouts(Timeouts::default().idle(Duration::from_millis(300)))
        .build()
        .unwrap();
    let got = collect(
        g.stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["slow"]);
    let e = got.end.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
}

#[tokio::test]
async fn oversized_line_is_invalid_output_and_reading_stops() {
    // An endless `data:` line: 64 KiB writes, up to 16 MiB, no newline.
    let server = serve(|_| {
        let mut first = chunk(b"data: {\"x\":\"");
        first.extend(chunk(&vec![b'a'; 64 << 10]));
        Reply::Flood {
            head: [sse_head(), first].concat(),
            chunk: chunk(&vec![b'a'; 64 << 10]),
            repeat: 256,
        }
    })
    .await;
    let g = OpenAiGenerator::builder(server.base_url(), "m")
        .limits(Limits::default().max_line_bytes(256 << 10))
        .build()
        .unwrap();
    let got = collect(
        g.stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    let e = got.end.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOutput);
    assert!(e.message().contains("262144"), "{}", e.message());
}

#[tokio::test]
async fn oversized_response_is_invalid_output() {
    let event = data(&text_chunk("m", "0123456789", None));
    let events = event.repeat(100);
    let cuts: Vec<usize> = (1..100).map(|i| i * event.len()).collect();
    let pieces = chunked_response(events.as_bytes(), &cuts, true);
    let server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let g = OpenAiGenerator::builder(server.base_url(), "m")
        .limits(Limits::default().max_response_bytes(4096))
        .build()
        .unwrap();
    let got = collect(
        g.stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert!(!got.pieces.is_empty());
    assert_eq!(got.end.unwrap_err().kind(), ErrorKind::InvalidOutput);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let server = serve(move |_| {
        let closed = tx
            .lock()
            .ok()
            .and_then(|mut t| t.take())
            .expect("one connection");
        Reply::PiecesThenWatch(
            vec![
                sse_head(),
                chunk(data(&text_chunk("m", "first", None)).as_bytes()),
            ],
            closed,
        )
    })
    .await;
    let g = generator(&server.base_url());
    let mut stream = g
        .stream(&GenerationRequest::user("x"), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Token::Text("first".into())
    );
    drop(stream);
    // Polling with a deadline: the server sees EOF once the client closes.
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the server saw the connection close")
        .unwrap();
}

#[tokio::test]
async fn non_streamed_json_answer_is_accepted() {
    let body = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    })
    .to_string();
    let server =
        serve(move |_| Reply::Pieces(vec![plain("200 OK", "application/json", body.as_bytes())]))
            .await;
    let got = collect(
        generator(&server.base_url())
            .stream(&GenerationRequest::user("x"), &RequestContext::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.pieces, ["whole"]);
    assert_eq!(
        got.end.unwrap(),
        (
            TokenUsage {
                input_tokens: 4,
                output_tokens: 2
            },
            FinishReason::Length
        )
    );
}

fn finish_reasons(span: &opentelemetry_sdk::trace::SpanData) -> Vec<String> {
    match span.attr("gen_ai.response.finish_reasons") {
        Some(Value::Array(opentelemetry::Array::String(v))) => {
            v.iter().map(|s| s.as_str().to_owned()).collect()
        }
        other => panic!("finish reasons: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_records_a_client_span_with_gen_ai_attributes() {
    let events = normal_event_stream("served-model-v2");
    let pieces = chunked_response(events.as_bytes(), &awkward_cuts(&events), true);
    let mut server = serve(move |_| Reply::Pieces(pieces.clone())).await;
    let port = server.addr.port();
    let g = OpenAiGenerator::builder(server.base_url(), "test-model")
        .provider("vllm")
        .api_key("sk-NEVER-ON-SPANS")
        .build()
        .unwrap();

    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("rag")
            .telemetry(t.telemetry())
            .then(Generate::new(g))
            .build()
    });
    let request = GenerationRequest::user(format!("question {CANARY}"));
    let answer = pipeline.run(request, &RequestContext::new()).await.unwrap();
    assert_eq!(answer.text, "Hello, wörld 👋!");
    assert_eq!(answer.usage.output_tokens, 3);
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert!(answer.timings.time_to_first_token.is_some());

    let spans = t.spans();
    let span = spans.named("chat test-model");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        span.str_attr("gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        span.str_attr("gen_ai.provider.name").as_deref(),
        Some("vllm")
    );
    assert_eq!(
        span.str_attr("gen_ai.request.model").as_deref(),
        Some("test-model")
    );
    assert_eq!(
        span.str_attr("gen_ai.response.model").as_deref(),
        Some("served-model-v2")
    );
    assert_eq!(
        span.str_attr("gen_ai.response.id").as_deref(),
        Some("chatcmpl-test-1")
    );
    assert_eq!(
        span.str_attr("server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(span.i64_attr("server.port"), Some(i64::from(port)));
    assert_eq!(span.i64_attr("gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(span.i64_attr("gen_ai.usage.output_tokens"), Some(3));
    assert_eq!(finish_reasons(span), ["length"]);
    assert!(span.attr("gen_ai.server.time_to_first_token").is_some());
    assert!(span.attr("gen_ai.server.time_per_output_token").is_some());
    assert!(
        !spans.contain_text(CANARY),
        "prompt leaked with capture off"
    );
    assert!(!spans.contain_text("NEVER-ON-SPANS"), "API key on a span");

    // The server received this span's trace context.
    let req = server.request().await;
    let traceparent = req.header("traceparent").expect("traceparent sent");
    let cx = &span.span_context;
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", cx.trace_id(), cx.span_id())
    );

    let m = t.metrics();
    assert_eq!(
        m.histogram_count(
            "gen_ai.server.time_to_first_token",
            &[("gen_ai.provider.name", "vllm")]
        ),
        1
    );
    assert_eq!(
        m.histogram_count(
            "gen_ai.server.time_per_output_token",
            &[("gen_ai.provider.name", "vllm")]
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_error_span_is_typed_and_content_free() {
    let body = format!(r#"{{"error":{{"message":"{CANARY}"}}}}"#);
    let server = serve(move |_| {
        Reply::Pieces(vec![plain(
            "429 Too Many Requests",
            "application/json",
            body.as_bytes(),
        )])
    })
    .await;
    let g = generator(&server.base_url());
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("rag")
            .telemetry(t.telemetry())
            .then(Generate::new(g))
            .build()
    });
    let e = pipeline
        .run(GenerationRequest::user("q"), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
    let spans = t.spans();
    let span = spans.named("chat test-model");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        span.str_attr("error.type").as_deref(),
        Some("resource_exhausted")
    );
    assert!(!spans.contain_text(CANARY));
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_to_a_plaintext_server_fails_the_handshake_as_unavailable() {
    let server = serve(|_| Reply::Immediate(plain("200 OK", "text/plain", b"not tls"))).await;
    let g = generator(&format!("https://{}/v1", server.addr));
    assert_eq!(
        spanline_core::Generator::describe(&g).server.map(|s| s.1),
        Some(server.addr.port())
    );
    let e = start_error(&g, &RequestContext::new()).await;
    assert!(matches!(e, OpenAiError::Connect { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_handshake_counts_against_the_connect_timeout() {
    let server = serve(|_| Reply::Mute).await;
    let g = OpenAiGenerator::builder(format!("https://{}/v1", server.addr), "m")
        .timeouts(Timeouts::default().connect(Duration::from_millis(300)))
        .build()
        .unwrap();
    let e = start_error(&g, &RequestContext::new()).await;
    assert!(matches!(e, OpenAiError::ConnectTimeout(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Timeout);
}

#[cfg(not(feature = "tls"))]
#[test]
fn https_without_the_tls_feature_is_refused_at_build() {
    let e = OpenAiGenerator::builder("https://127.0.0.1:1/v1", "m")
        .build()
        .unwrap_err();
    assert!(matches!(e, OpenAiError::TlsUnsupported));
}

// ---- opt-in: any running OpenAI-compatible server ----

/// Streams one greedy completion from the server at
/// `SPANLINE_OPENAI_BASE_URL` (model `SPANLINE_OPENAI_MODEL`, optional
/// `SPANLINE_OPENAI_API_KEY`); skips when unset. For an `https` URL build
/// with `--features tls`; a private CA goes in `SSL_CERT_FILE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_endpoint_streams_a_completion() {
    let (Ok(base), Ok(model)) = (
        std::env::var("SPANLINE_OPENAI_BASE_URL"),
        std::env::var("SPANLINE_OPENAI_MODEL"),
    ) else {
        eprintln!(
            "skipped: set SPANLINE_OPENAI_BASE_URL and SPANLINE_OPENAI_MODEL to run against a server"
        );
        return;
    };
    let g = OpenAiGenerator::builder(base, model)
        .api_key(std::env::var("SPANLINE_OPENAI_API_KEY").unwrap_or_default())
        .build()
        .unwrap();
    let mut request = GenerationRequest::user("Say hello in three words.");
    request.params.max_tokens = 16;
    let got = collect(
        g.stream(
            &request,
            &RequestContext::new().with_timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap(),
    )
    .await;
    let (usage, finish) = got.end.unwrap();
    eprintln!("{:?}: {usage:?} {finish:?}", got.pieces.concat());
    assert!(!got.pieces.concat().trim().is_empty());
    assert!(usage.output_tokens > 0);
}

// ---- opt-in: a real llama.cpp server (llama-cpp-python) ----

/// Starts `python -m llama_cpp.server` with the SmolLM2 GGUF when
/// `SPANLINE_LLAMA_SERVER_PYTHON` (an interpreter with
/// `llama-cpp-python[server]`) and `SPANLINE_LLAMA_SERVER_MODEL` (a GGUF
/// file) are set; skips otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_llama_cpp_server_streams_a_greedy_completion() {
    let (Ok(python), Ok(model)) = (
        std::env::var("SPANLINE_LLAMA_SERVER_PYTHON"),
        std::env::var("SPANLINE_LLAMA_SERVER_MODEL"),
    ) else {
        eprintln!(
            "skipped: set SPANLINE_LLAMA_SERVER_PYTHON and SPANLINE_LLAMA_SERVER_MODEL to run against a real llama.cpp server"
        );
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new(&python)
        .args(["-m", "llama_cpp.server", "--model", &model])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--model_alias",
            "smollm2",
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start llama_cpp.server");
    let _guard = KillOnDrop(child);

    let base = format!("http://127.0.0.1:{port}/v1");
    // Readiness: poll /v1/models until it answers, within a deadline.
    let ready_by = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if models_ready(port).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < ready_by,
            "llama_cpp.server not ready within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let g = OpenAiGenerator::builder(&base, "smollm2")
        .provider("llama.cpp")
        .timeouts(Timeouts::default().first_byte(Duration::from_secs(120)))
        .build()
        .unwrap();
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("real")
            .telemetry(t.telemetry())
            .then(Generate::new(g))
            .build()
    });
    let mut request = GenerationRequest::user("What is the capital of France? Answer in one word.");
    request.params.max_tokens = 24;
    request.params.temperature = 0.0;
    let answer = pipeline
        .run(
            request,
            &RequestContext::new().with_timeout(Duration::from_secs(300)),
        )
        .await
        .unwrap();
    eprintln!(
        "llama.cpp answered {:?}: usage {:?}, finish {:?}, ttft {:?}",
        answer.text, answer.usage, answer.finish_reason, answer.timings.time_to_first_token
    );
    assert!(!answer.text.trim().is_empty());
    // llama-cpp-python's server (0.3.x) ignores `stream_options` and sends
    // no usage in streams: output tokens are then the counted chunks (vLLM
    // sends usage when asked).
    assert!(answer.usage.output_tokens > 0);
    assert!(answer.usage.output_tokens <= 24);
    assert!(matches!(
        answer.finish_reason,
        FinishReason::Stop | FinishReason::Length
    ));
    let spans = t.spans();
    let span = spans.named("chat smollm2");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert!(span.attr("gen_ai.response.model").is_some());
    assert!(span.attr("gen_ai.server.time_to_first_token").is_some());
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `GET /v1/models`; true on a 200.
async fn models_ready(port: u16) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req =
        format!("GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n");
    let mut sent = 0;
    while sent < req.len() {
        if stream.writable().await.is_err() {
            return false;
        }
        match stream.try_write(&req.as_bytes()[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    let mut buf = [0u8; 64];
    let read = async {
        loop {
            stream.readable().await.ok()?;
            match stream.try_read(&mut buf) {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Some(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}
