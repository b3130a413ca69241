//! The request context every stage receives explicitly (DESIGN decision 2).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::trace::{SpanBuilder, SpanContext, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use tokio::time::Instant;

use crate::Telemetry;
use crate::error::{AttributeError, StageError};
use crate::propagation::baggage;
use crate::semconv;

/// Everything a stage knows about the request it serves: the parent span,
/// the request attributes, the deadline, the content-capture policy and the
/// telemetry of the pipeline (or transport) that is running it.
///
/// Cheap to clone (a few reference counts). Nothing in spanline reads a
/// thread-local "current" context across an `.await`, a spawn or a process
/// hop; this value is passed instead. For third-party code that does read
/// the current OpenTelemetry context, wrap its future with
/// [`RequestContext::instrument`] or run it through
/// [`RequestContext::spawn_blocking`].
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    otel: Context,
    attributes: RequestAttributes,
    deadline: Option<Instant>,
    capture: Option<bool>,
    telemetry: Option<Telemetry>,
}

impl RequestContext {
    /// A context with no parent (the pipeline starts a new trace), no
    /// attributes and no deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Continue a trace whose parent span lives elsewhere (another process).
    pub fn with_remote_parent(mut self, parent: SpanContext) -> Self {
        self.otel = if parent.is_valid() {
            Context::new().with_remote_span_context(parent)
        } else {
            Context::new()
        };
        self
    }

    /// Use an OpenTelemetry context as the parent (for example one a web
    /// framework's middleware extracted).
    pub fn with_otel_context(mut self, otel: Context) -> Self {
        self.otel = otel;
        self
    }

    /// Attach request attributes; they appear on every span of the request
    /// and travel as W3C baggage.
    pub fn with_attributes(mut self, attributes: RequestAttributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Finish by `deadline` at the latest.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Finish within `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let deadline = Instant::now() + timeout;
        self.with_deadline(deadline)
    }

    /// Override the content-capture switch for this request. Without an
    /// override, the pipeline's [`Telemetry`](crate::Telemetry) switch
    /// decides (off unless enabled).
    pub fn with_content_capture(mut self, capture: bool) -> Self {
        self.capture = Some(capture);
        self
    }

    /// The OpenTelemetry context: the current stage's span lives here.
    pub fn otel_context(&self) -> &Context {
        &self.otel
    }

    /// The span context of the current span (invalid when there is none).
    pub fn span_context(&self) -> SpanContext {
        self.otel.span().span_context().clone()
    }

    /// The trace this request belongs to (invalid id when there is none).
    pub fn trace_id(&self) -> TraceId {
        self.otel.span().span_context().trace_id()
    }

    /// The request attributes.
    pub fn attributes(&self) -> &RequestAttributes {
        &self.attributes
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (`Some(ZERO)` once it has passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The telemetry of the pipeline running this request, so a stage can
    /// open child spans in the same provider as its own span (see
    /// [`RequestContext::start_span`]). Set by [`Pipeline::run`] and by
    /// every transport span (a gRPC server span, a Kafka `process` span);
    /// `None` for a context that has been through neither.
    ///
    /// [`Pipeline::run`]: crate::Pipeline::run
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// Run under `telemetry` (for stages called outside a pipeline).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Whether prompts, completions, queries and documents may be recorded.
    pub fn captures_content(&self) -> bool {
        self.capture.unwrap_or(false)
    }

    /// Add an attribute to the current stage's span. For what a stage knows
    /// and the layer cannot (a cache hit, a chosen shard). Never put request
    /// content here: use [`RequestContext::set_content_attribute`].
    pub fn set_attribute(&self, attribute: KeyValue) {
        let span = self.otel.span();
        if span.is_recording() {
            span.set_attribute(attribute);
        }
    }

    /// Add a content attribute (prompt, document, query) to the current span,
    /// only when content capture is on. `value` is not evaluated otherwise.
    pub fn set_content_attribute(&self, key: &'static str, value: impl FnOnce() -> String) {
        if self.captures_content() {
            self.set_attribute(KeyValue::new(key, value()));
        }
    }

    /// Add an event to the current span.
    pub fn add_event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        let span = self.otel.span();
        if span.is_recording() {
            span.add_event(name, attributes);
        }
    }

    /// Start a span as a child of this context's span and return the
    /// context that holds it (for transport crates: a Kafka `send`, a gRPC
    /// client or server span, a model's `prefill`). With telemetry disabled
    /// no span is started. Either way the returned context carries
    /// `telemetry` for what runs under it. End the span with
    /// [`RequestContext::end_span`].
    pub fn start_span(&self, telemetry: &Telemetry, builder: SpanBuilder) -> RequestContext {
        let mut ctx = match telemetry.shared_tracer() {
            Some(tracer) => {
                let mut builder = builder;
                let request = self.attributes.span_attributes();
                if !request.is_empty() {
                    builder
                        .attributes
                        .get_or_insert_with(Vec::new)
                        .extend_from_slice(request);
                }
                self.with_otel(tracer.start(builder, &self.otel))
            }
            None => self.clone(),
        };
        ctx.telemetry = Some(telemetry.clone());
        ctx
    }

    /// Record `error` on the current span: error status, `error.type` and an
    /// exception event; the message only when content capture is on.
    pub fn record_error(&self, error: &StageError) {
        let span = self.otel.span();
        if span.is_recording() {
            crate::layer::record_error(&span, error, self.captures_content());
        }
    }

    /// End the current span (a no-op when there is none or it has ended).
    pub fn end_span(&self) {
        self.otel.span().end();
    }

    /// Make this request's span the "current" OpenTelemetry context while
    /// `future` is polled, for third-party code that reads
    /// `opentelemetry::Context::current()`.
    pub fn instrument<F: Future>(&self, future: F) -> WithContext<F> {
        future.with_context(self.otel.clone())
    }

    /// Run CPU-bound work on tokio's blocking pool, carrying the context:
    /// `work` receives it explicitly, and it is also the current
    /// OpenTelemetry context for the duration of the call.
    pub fn spawn_blocking<R, F>(&self, work: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce(RequestContext) -> R + Send + 'static,
        R: Send + 'static,
    {
        let ctx = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = ctx.otel.clone().attach();
            work(ctx)
        })
    }

    /// Spawn a task that carries the context (explicitly, and as the current
    /// OpenTelemetry context while it is polled).
    pub fn spawn<R, F, Fut>(&self, task: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce(RequestContext) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let otel = self.otel.clone();
        tokio::spawn(task(self.clone()).with_context(otel))
    }

    /// The same request, with `otel` as its parent context.
    pub(crate) fn with_otel(&self, otel: Context) -> Self {
        RequestContext {
            otel,
            attributes: self.attributes.clone(),
            deadline: self.deadline,
            capture: self.capture,
            telemetry: self.telemetry.clone(),
        }
    }

    /// Enter a pipeline: its telemetry runs the request from here on, and
    /// its content-capture switch applies unless the request overrides it.
    pub(crate) fn enter(&mut self, telemetry: &Telemetry) {
        if self.capture.is_none() {
            self.capture = Some(telemetry.captures_content());
        }
        self.telemetry = Some(telemetry.clone());
    }

    pub(crate) fn capture_override(&self) -> Option<bool> {
        self.capture
    }
}

/// Attributes of a request that appear on every span and travel as W3C
/// baggage: workflow name, user, customer, session and a small metadata map.
///
/// Values are user input and may be hostile: the builder enforces the
/// baggage limits (64 members, 8192 bytes encoded) when the attributes are
/// built, so propagation never meets an oversized set. They are labels on
/// spans only, never on metrics (unbounded cardinality).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestAttributes {
    inner: Option<Arc<AttributesInner>>,
}

#[derive(Debug)]
struct AttributesInner {
    workflow: Option<String>,
    user_id: Option<String>,
    customer_id: Option<String>,
    session_id: Option<String>,
    metadata: BTreeMap<String, String>,
    /// Computed on first use: a worker that only forwards never pays.
    span_attributes: OnceLock<Vec<KeyValue>>,
    /// Encoded at build (to enforce the limits), or on first use for
    /// attributes extracted from a header that was already within them.
    baggage: OnceLock<String>,
}

impl PartialEq for AttributesInner {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.workflow,
            &self.user_id,
            &self.customer_id,
            &self.session_id,
            &self.metadata,
        ) == (
            &other.workflow,
            &other.user_id,
            &other.customer_id,
            &other.session_id,
            &other.metadata,
        )
    }
}

impl AttributesInner {
    fn span_attributes(&self) -> &[KeyValue] {
        self.span_attributes.get_or_init(|| {
            let mut attrs = Vec::with_capacity(self.metadata.len() + 5);
            if let Some(v) = &self.workflow {
                attrs.push(KeyValue::new(semconv::gen_ai::WORKFLOW_NAME, rc(v)));
            }
            if let Some(v) = &self.user_id {
                attrs.push(KeyValue::new(semconv::general::USER_ID, rc(v)));
            }
            if let Some(v) = &self.customer_id {
                attrs.push(KeyValue::new(semconv::spanline::CUSTOMER_ID, rc(v)));
            }
            if let Some(v) = &self.session_id {
                attrs.push(KeyValue::new(semconv::general::SESSION_ID, rc(v)));
                attrs.push(KeyValue::new(semconv::gen_ai::CONVERSATION_ID, rc(v)));
            }
            for (k, v) in &self.metadata {
                attrs.push(KeyValue::new(
                    Arc::<str>::from(format!("{}{k}", semconv::spanline::METADATA_PREFIX)),
                    rc(v),
                ));
            }
            attrs
        })
    }

    fn baggage(&self) -> &str {
        self.baggage.get_or_init(|| {
            // Only reached for attributes decoded from a bounded header:
            // re-encoding what was decoded cannot grow past its limits.
            encode_members(&self.members()).unwrap_or_default()
        })
    }

    fn members(&self) -> Vec<(String, &str)> {
        use semconv::baggage as b;
        let mut out = Vec::with_capacity(self.metadata.len() + 4);
        let fixed = [
            (b::WORKFLOW, &self.workflow),
            (b::USER_ID, &self.user_id),
            (b::CUSTOMER_ID, &self.customer_id),
            (b::SESSION_ID, &self.session_id),
        ];
        for (key, value) in fixed {
            if let Some(v) = value {
                out.push((key.to_owned(), v.as_str()));
            }
        }
        for (k, v) in &self.metadata {
            out.push((format!("{}{k}", b::METADATA_PREFIX), v.as_str()));
        }
        out
    }
}

fn encode_members(members: &[(String, &str)]) -> Result<String, AttributeError> {
    baggage::encode(members.iter().map(|(k, v)| (k.as_str(), *v)))
}

impl RequestAttributes {
    /// Start building.
    pub fn builder() -> RequestAttributesBuilder {
        RequestAttributesBuilder::default()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// The workflow name.
    pub fn workflow(&self) -> Option<&str> {
        self.inner.as_ref()?.workflow.as_deref()
    }
    /// The user id.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.as_ref()?.user_id.as_deref()
    }
    /// The customer id.
    pub fn customer_id(&self) -> Option<&str> {
        self.inner.as_ref()?.customer_id.as_deref()
    }
    /// The session or thread id.
    pub fn session_id(&self) -> Option<&str> {
        self.inner.as_ref()?.session_id.as_deref()
    }
    /// A metadata value.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.inner.as_ref()?.metadata.get(key).map(String::as_str)
    }
    /// All metadata.
    pub fn metadata_iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner
            .iter()
            .flat_map(|i| i.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The attributes as span attributes (computed once, at build).
    pub fn span_attributes(&self) -> &[KeyValue] {
        self.inner.as_ref().map_or(&[][..], |i| i.span_attributes())
    }

    /// The W3C `baggage` header value (computed once, at build; empty when
    /// there are no attributes).
    pub fn baggage_header(&self) -> &str {
        self.inner.as_ref().map_or("", |i| i.baggage())
    }
}

/// A reference-counted attribute value: cloned onto every span without
/// allocating.
fn rc(v: &str) -> opentelemetry::Value {
    opentelemetry::Value::from(Arc::<str>::from(v))
}

/// Builds [`RequestAttributes`], enforcing the baggage limits.
#[derive(Debug, Default, Clone)]
pub struct RequestAttributesBuilder {
    workflow: Option<String>,
    user_id: Option<String>,
    customer_id: Option<String>,
    session_id: Option<String>,
    metadata: BTreeMap<String, String>,
}

impl RequestAttributesBuilder {
    /// The workflow name (`gen_ai.workflow.name`).
    pub fn workflow(mut self, v: impl Into<String>) -> Self {
        self.workflow = Some(v.into());
        self
    }
    /// The end user's id (`user.id`).
    pub fn user_id(mut self, v: impl Into<String>) -> Self {
        self.user_id = Some(v.into());
        self
    }
    /// The customer id (`spanline.customer.id`).
    pub fn customer_id(mut self, v: impl Into<String>) -> Self {
        self.customer_id = Some(v.into());
        self
    }
    /// The session or thread id (`session.id`, `gen_ai.conversation.id`).
    pub fn session_id(mut self, v: impl Into<String>) -> Self {
        self.session_id = Some(v.into());
        self
    }
    /// A metadata entry (`spanline.metadata.<key>` on spans). Keys are
    /// letters, digits and `-_.*`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<RequestAttributes, AttributeError> {
        for key in self.metadata.keys() {
            if key.is_empty() || !key.bytes().all(baggage::is_metadata_key_byte) {
                return Err(AttributeError::InvalidKey(key.clone()));
            }
        }
        let Some(inner) = self.into_inner() else {
            return Ok(RequestAttributes::default());
        };
        let encoded = encode_members(&inner.members())?;
        let _ = inner.baggage.set(encoded);
        Ok(RequestAttributes {
            inner: Some(Arc::new(inner)),
        })
    }

    /// Build from members decoded out of a header that was within the
    /// baggage limits: no re-encoding, no re-validation.
    pub(crate) fn build_decoded(self) -> RequestAttributes {
        RequestAttributes {
            inner: self.into_inner().map(Arc::new),
        }
    }

    fn into_inner(self) -> Option<AttributesInner> {
        let empty = self.workflow.is_none()
            && self.user_id.is_none()
            && self.customer_id.is_none()
            && self.session_id.is_none()
            && self.metadata.is_empty();
        (!empty).then(|| AttributesInner {
            workflow: self.workflow,
            user_id: self.user_id,
            customer_id: self.customer_id,
            session_id: self.session_id,
            metadata: self.metadata,
            span_attributes: OnceLock::new(),
            baggage: OnceLock::new(),
        })
    }

    /// Rebuild from decoded baggage members, dropping members that do not
    /// belong to spanline. Used by extraction.
    pub(crate) fn from_baggage<'a>(members: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        use semconv::baggage as b;
        let mut builder = RequestAttributesBuilder::default();
        for (key, value) in members {
            match key {
                b::WORKFLOW => builder.workflow = Some(value),
                b::USER_ID => builder.user_id = Some(value),
                b::CUSTOMER_ID => builder.customer_id = Some(value),
                b::SESSION_ID => builder.session_id = Some(value),
                other => {
                    if let Some(meta) = other.strip_prefix(b::METADATA_PREFIX) {
                        builder.metadata.insert(meta.to_owned(), value);
                    }
                }
            }
        }
        builder
    }
}
