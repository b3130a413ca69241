//! A captured log: events inside a stage carry that stage's trace and span
//! ids (text and JSON formats, async and blocking stages, `tracing` spans
//! created in a stage and entered elsewhere); events outside carry none.

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::TraceContextExt;
use spanline_core::{Pipeline, RequestContext, StageDescriptor, StageKind, stage_fn};
use spanline_log::{Correlated, CorrelationLayer};
use spanline_testkit::{SpanDataExt, TestTelemetry};
use tracing_subscriber::prelude::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
}

#[tokio::test]
async fn text_lines_inside_stages_carry_the_stage_ids() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(CorrelationLayer::new())
        .with(spanline_log::fmt_layer().with_writer(log.clone()));
    let _default = tracing::subscriber::set_default(subscriber);

    let t = TestTelemetry::new();
    let pipeline = Pipeline::builder("rag")
        .telemetry(t.telemetry())
        .then(stage_fn(
            StageDescriptor::new("embed", StageKind::Custom),
            |x: u32, ctx: RequestContext| async move {
                ctx.instrument(async {
                    tracing::info!("embedding inside the stage");
                    // A tracing span created here and entered later, where
                    // no OpenTelemetry context is current.
                    tracing::info_span!("later")
                })
                .await
                .in_scope(|| tracing::info!("event in a span made in the stage"));
                Ok(x)
            },
        ))
        .then(stage_fn(
            StageDescriptor::new("generate", StageKind::Custom),
            |x: u32, ctx: RequestContext| async move {
                // The test's subscriber is thread-local (applications
                // install a global one): carry it to the blocking thread.
                let dispatch = tracing::dispatcher::get_default(|d| d.clone());
                ctx.spawn_blocking(move |_| {
                    tracing::dispatcher::with_default(&dispatch, || {
                        tracing::warn!("generating on a blocking thread")
                    })
                })
                .await
                .map_err(|e| spanline_core::StageError::internal(e.to_string()))?;
                Ok(x + 1)
            },
        ))
        .build();
    tracing::info!("before the request");
    pipeline.run(1, &RequestContext::new()).await.expect("ran");

    let spans = t.spans();
    let embed = spans.with_attr("spanline.stage.name", "embed")[0];
    let generate = spans.with_attr("spanline.stage.name", "generate")[0];
    let trace = embed.span_context.trace_id();
    let lines = log.lines();

    let l = line_with(&lines, "embedding inside the stage");
    assert!(
        l.ends_with(&format!(
            "trace_id={trace} span_id={}",
            embed.span_context.span_id()
        )),
        "{l}"
    );
    let l = line_with(&lines, "event in a span made in the stage");
    assert!(
        l.contains(&format!("span_id={}", embed.span_context.span_id())),
        "{l}"
    );
    let l = line_with(&lines, "generating on a blocking thread");
    assert!(
        l.ends_with(&format!(
            "trace_id={trace} span_id={}",
            generate.span_context.span_id()
        )),
        "{l}"
    );
    let l = line_with(&lines, "before the request");
    assert!(!l.contains("trace_id"), "{l}");
    assert_eq!(
        embed.str_attr("spanline.stage.name").as_deref(),
        Some("embed")
    );
}

#[tokio::test]
async fn json_objects_gain_two_members() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .event_format(Correlated::new(tracing_subscriber::fmt::format().json()))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .with_writer(log.clone()),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    let t = TestTelemetry::new();
    let pipeline = Pipeline::builder("rag")
        .telemetry(t.telemetry())
        .then(stage_fn(
            StageDescriptor::new("retrieve", StageKind::Custom),
            |x: u32, ctx: RequestContext| async move {
                ctx.instrument(async { tracing::info!(top_k = 5, "retrieving") })
                    .await;
                Ok(x)
            },
        ))
        .build();
    pipeline.run(1, &RequestContext::new()).await.expect("ran");
    tracing::info!("after");
    let spans = t.spans();
    let stage = spans.with_attr("spanline.stage.name", "retrieve")[0];
    let lines = log.lines();
    let l = line_with(&lines, "retrieving");
    assert!(
        l.ends_with(&format!(
            ",\"trace_id\":\"{}\",\"span_id\":\"{}\"}}",
            stage.span_context.trace_id(),
            stage.span_context.span_id()
        )),
        "{l}"
    );
    assert!(l.contains("\"top_k\":5"), "{l}");
    assert!(!line_with(&lines, "after").contains("trace_id"));
}

#[test]
fn current_reads_the_attached_context() {
    assert_eq!(spanline_log::current(), None);
    let sc = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from(0xabc),
        opentelemetry::trace::SpanId::from(0xdef),
        opentelemetry::trace::TraceFlags::SAMPLED,
        false,
        Default::default(),
    );
    let _g = opentelemetry::Context::new()
        .with_remote_span_context(sc)
        .attach();
    let ids = spanline_log::current().expect("attached");
    assert_eq!(
        ids.to_string(),
        "trace_id=00000000000000000000000000000abc span_id=0000000000000def"
    );
    assert!(ids.sampled);
}

#[tokio::test]
async fn plain_events_in_a_stage_body_carry_the_stage_ids_across_awaits() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(CorrelationLayer::new())
        .with(spanline_log::fmt_layer().with_writer(log.clone()));
    let _default = tracing::subscriber::set_default(subscriber);

    let t = TestTelemetry::new();
    let pipeline = Pipeline::builder("plain")
        .telemetry(t.telemetry())
        .then(stage_fn(
            StageDescriptor::new("rerank", StageKind::Custom),
            |x: u32, _ctx: RequestContext| async move {
                tracing::info!("plain event before a yield");
                tokio::task::yield_now().await;
                tracing::info!("plain event after a yield");
                Ok(x)
            },
        ))
        .build();
    pipeline.run(1, &RequestContext::new()).await.expect("ran");

    let spans = t.spans();
    let stage = spans.with_attr("spanline.stage.name", "rerank")[0];
    let expected = format!(
        "trace_id={} span_id={}",
        stage.span_context.trace_id(),
        stage.span_context.span_id()
    );
    let lines = log.lines();
    for needle in ["plain event before a yield", "plain event after a yield"] {
        let l = line_with(&lines, needle);
        assert!(l.ends_with(&expected), "{l}");
    }
}
