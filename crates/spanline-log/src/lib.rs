//! Log correlation: every log event emitted inside a spanline stage carries
//! the `trace_id` and `span_id` of that stage, so a log line leads to its
//! trace.
//!
//! spanline's context is explicit (DESIGN decision 2): a stage's span lives
//! in its [`RequestContext`](https://docs.rs/spanline-core), not in a
//! thread-local. Log events find it through the OpenTelemetry *current*
//! context, which spanline's stage layer sets while it polls a sampled
//! stage's future, and which `RequestContext::instrument`, `spawn` and
//! `spawn_blocking` set for work a stage hands off. Two pieces:
//!
//! - [`Correlated`]: wraps any `tracing_subscriber` event format (the
//!   default text format or JSON) and adds ` trace_id=… span_id=…` to text
//!   lines, or `"trace_id":"…","span_id":"…"` to JSON objects.
//! - [`CorrelationLayer`]: a [`Layer`](tracing_subscriber::Layer) that
//!   remembers, on every `tracing` span, the stage current when it was
//!   created; an event inside that `tracing` span is stamped with it even
//!   when it is polled where no OpenTelemetry context is current.
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! let subscriber = tracing_subscriber::registry()
//!     .with(spanline_log::CorrelationLayer::new())
//!     .with(spanline_log::fmt_layer().with_writer(std::io::stderr));
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!("outside any stage: no ids");
//! });
//! ```
//!
//! For other loggers (the `log` crate with `env_logger`, `fern`, …), call
//! [`current`] in the logger's format function, or forward `log` records to
//! `tracing` with `tracing-log`'s `LogTracer` and use the layer. See
//! `docs/sampling.md` ("Log correlation").

use std::cell::RefCell;
use std::fmt;

use opentelemetry::Context;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

/// Log field name of the trace id.
pub const TRACE_ID_FIELD: &str = "trace_id";
/// Log field name of the span id.
pub const SPAN_ID_FIELD: &str = "span_id";

/// The ids of a stage's span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceIds {
    /// The trace.
    pub trace_id: TraceId,
    /// The stage's span.
    pub span_id: SpanId,
    /// Whether the head sampler sampled the trace (a log line of an
    /// unsampled trace points to no stored trace).
    pub sampled: bool,
}

impl TraceIds {
    /// The ids in `cx`, when it holds a valid span context.
    pub fn from_context(cx: &Context) -> Option<Self> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| TraceIds {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
        })
    }
}

/// `trace_id=<32 hex> span_id=<16 hex>`.
impl fmt::Display for TraceIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TRACE_ID_FIELD}={} {SPAN_ID_FIELD}={}",
            self.trace_id, self.span_id
        )
    }
}

/// The ids of the stage whose future is being polled on this thread (the
/// OpenTelemetry current context), if any. Cheap: a thread-local read.
pub fn current() -> Option<TraceIds> {
    Context::map_current(TraceIds::from_context)
}

/// Remembers on every new `tracing` span the stage current when it was
/// created, for [`Correlated`] to find.
#[derive(Clone, Copy, Debug, Default)]
pub struct CorrelationLayer {
    _private: (),
}

impl CorrelationLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tracing_subscriber::Layer<S> for CorrelationLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        if let (Some(ids), Some(span)) = (current(), ctx.span(id)) {
            span.extensions_mut().insert(ids);
        }
    }
}

/// The ids for an event: the current OpenTelemetry context, else the
/// innermost `tracing` span that recorded one.
fn ids_for<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<TraceIds>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    current().or_else(|| {
        ctx.event_scope()?
            .find_map(|span| span.extensions().get::<TraceIds>().copied())
    })
}

/// An event format that adds the current stage's ids to what `inner`
/// writes: ` trace_id=… span_id=…` at the end of a text line, or two
/// members at the end of a JSON object. Events outside any stage are
/// written unchanged. The inner format writes without ANSI colours.
#[derive(Clone, Debug, Default)]
pub struct Correlated<F> {
    inner: F,
}

impl<F> Correlated<F> {
    /// Wrap `inner` (e.g. `tracing_subscriber::fmt::format()` or
    /// `…::format().json()`).
    pub fn new(inner: F) -> Self {
        Correlated { inner }
    }
}

thread_local! {
    static BUF: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N, F> FormatEvent<S, N> for Correlated<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(ids) = ids_for(ctx) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let write = |buf: &mut String, writer: &mut Writer<'_>| -> fmt::Result {
            buf.clear();
            self.inner.format_event(ctx, Writer::new(buf), event)?;
            let body = buf.trim_end_matches('\n');
            if body.starts_with('{') && body.ends_with('}') {
                let open = &body[..body.len() - 1];
                let sep = if open.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                writeln!(
                    writer,
                    "{open}{sep}\"{TRACE_ID_FIELD}\":\"{}\",\"{SPAN_ID_FIELD}\":\"{}\"}}",
                    ids.trace_id, ids.span_id
                )
            } else {
                writeln!(writer, "{body} {ids}")
            }
        };
        // A thread-local buffer; a nested log call (inside a formatter)
        // falls back to a fresh one.
        BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => write(&mut buf, &mut writer),
            Err(_) => write(&mut String::new(), &mut writer),
        })
    }
}

/// `tracing_subscriber::fmt::layer()` with the default text format wrapped
/// in [`Correlated`]; add `.with_writer(…)` and the usual settings.
pub fn fmt_layer<S>() -> tracing_subscriber::fmt::Layer<S, DefaultFields, Correlated<Format>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(Correlated::new(
            tracing_subscriber::fmt::format().with_ansi(false),
        ))
}
