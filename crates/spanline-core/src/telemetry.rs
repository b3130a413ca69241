//! The handle a pipeline emits through: a tracer and the content switch.

use std::sync::Arc;

use opentelemetry::global;
use opentelemetry::trace::{SpanBuilder, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope};

/// Starts spans through a tracer of its concrete type. A type-erased
/// `BoxedTracer` returns a boxed span that the context then boxes again;
/// through this trait the span is boxed once, by the context that holds it
/// (one allocation and one dynamic call less per span; see
/// `docs/benchmarks.md`).
pub(crate) trait SpanStarter: Send + Sync {
    /// Start a span as a child of `parent` and return the context holding it.
    fn start(&self, builder: SpanBuilder, parent: &Context) -> Context;
}

impl<T> SpanStarter for T
where
    T: Tracer + Send + Sync,
    T::Span: Send + Sync + 'static,
{
    #[inline]
    fn start(&self, builder: SpanBuilder, parent: &Context) -> Context {
        parent.with_span(self.build_with_context(builder, parent))
    }
}

/// Where a pipeline's spans go, and whether content may be captured.
///
/// Libraries speak API, applications install SDKs (DESIGN decision 1): this
/// handle holds only an OpenTelemetry API tracer. `spanline-telemetry`
/// builds one from the SDK it installs; [`Telemetry::global`] uses whatever
/// provider the application registered globally. Metrics go through the
/// `metrics` facade to the recorder installed when the pipeline is built.
#[derive(Clone)]
pub struct Telemetry {
    tracer: Option<Arc<dyn SpanStarter>>,
    capture_content: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.is_enabled())
            .field("capture_content", &self.capture_content)
            .finish()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::global()
    }
}

impl Telemetry {
    /// The instrumentation scope spanline's spans carry.
    pub fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("spanline")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    }

    /// Emit through the globally registered tracer provider (at the time
    /// this is called: install telemetry before building pipelines).
    pub fn global() -> Self {
        Self::from_tracer(global::tracer_with_scope(Self::scope()))
    }

    /// Emit through `provider`.
    pub fn from_provider<P>(provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Send + Sync + 'static,
    {
        Self::from_tracer(provider.tracer_with_scope(Self::scope()))
    }

    /// Emit through `tracer`.
    pub fn from_tracer<T>(tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        Telemetry {
            tracer: Some(Arc::new(tracer)),
            capture_content: false,
        }
    }

    /// No spans and no metrics: the layer calls the stage directly.
    pub fn disabled() -> Self {
        Telemetry {
            tracer: None,
            capture_content: false,
        }
    }

    /// The one content-capture switch: prompts, completions, queries and
    /// documents enter spans only when this is on (or a request overrides it).
    pub fn with_content_capture(mut self, capture: bool) -> Self {
        self.capture_content = capture;
        self
    }

    /// Whether spans and metrics are emitted at all.
    pub fn is_enabled(&self) -> bool {
        self.tracer.is_some()
    }

    /// Whether content capture is on by default.
    pub fn captures_content(&self) -> bool {
        self.capture_content
    }

    /// Start a span from `builder` as a child of `parent` and return the
    /// context that holds it; `None` when telemetry is disabled. Transport
    /// crates use [`RequestContext::start_span`](crate::RequestContext::start_span),
    /// which adds the request attributes.
    pub fn start_span(&self, builder: SpanBuilder, parent: &Context) -> Option<Context> {
        self.tracer.as_ref().map(|t| t.start(builder, parent))
    }

    pub(crate) fn shared_tracer(&self) -> Option<Arc<dyn SpanStarter>> {
        self.tracer.clone()
    }
}
