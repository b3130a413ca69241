//! The handle a pipeline emits through: a tracer and the content switch.

use std::sync::Arc;

use opentelemetry::InstrumentationScope;
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::{Tracer, TracerProvider};

/// Where a pipeline's spans go, and whether content may be captured.
///
/// Libraries speak API, applications install SDKs (DESIGN decision 1): this
/// handle holds only an OpenTelemetry API tracer. `spanline-telemetry`
/// builds one from the SDK it installs; [`Telemetry::global`] uses whatever
/// provider the application registered globally. Metrics go through the
/// `metrics` facade to the recorder installed when the pipeline is built.
#[derive(Clone)]
pub struct Telemetry {
    tracer: Option<Arc<BoxedTracer>>,
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
            tracer: Some(Arc::new(BoxedTracer::new(Box::new(tracer)))),
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

    /// The tracer, for transport crates that create their own spans (a
    /// Kafka `send`, a gRPC server span); `None` when telemetry is disabled.
    /// Prefer [`RequestContext::start_span`](crate::RequestContext::start_span).
    pub fn tracer(&self) -> Option<&BoxedTracer> {
        self.tracer.as_deref()
    }

    pub(crate) fn shared_tracer(&self) -> Option<Arc<BoxedTracer>> {
        self.tracer.clone()
    }
}
