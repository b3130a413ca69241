//! The instrumentation layer around every stage call (DESIGN decision 3):
//! span, latency histogram, error recording, timeout and fallback.
//!
//! A stage never writes this code itself. The pipeline builder wraps each
//! stage in an [`Instrumented`] step once, registering its histogram handles
//! and precomputing its span name and attributes, so the per-call work is a
//! span start/end and a histogram record.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quanta::Instant;

use futures_util::future::Either;
use metrics::Histogram;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Array, KeyValue, Value};

use crate::context::RequestContext;
use crate::error::{ErrorKind, StageError};
use crate::semconv::{gen_ai, general, metric, spanline};
use crate::stage::{Annotations, Stage, StageDescriptor};
use crate::telemetry::Telemetry;
use crate::types::TokenUsage;

/// The runtime form of a pipeline step: a stage wrapped in its layer, or a
/// composition of steps. Built by [`PipelineBuilder`](crate::PipelineBuilder);
/// users rarely implement it.
pub trait Step: Send + Sync {
    /// What it takes.
    type Input: Send + 'static;
    /// What it gives.
    type Output: Send + 'static;
    /// Run the step.
    fn call(
        &self,
        input: Self::Input,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<Self::Output, StageError>> + Send;
}

/// How a call ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok = 0,
    Error = 1,
    Timeout = 2,
    Cancelled = 3,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::Cancelled,
    ];
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
        }
    }
    pub(crate) fn of(error: &StageError) -> Outcome {
        match error.kind() {
            ErrorKind::Timeout | ErrorKind::DeadlineExceeded => Outcome::Timeout,
            ErrorKind::Cancelled => Outcome::Cancelled,
            _ => Outcome::Error,
        }
    }
}

/// Where a step sits in its pipeline: recorded on its span for the
/// critical-path analyser (see `docs/span-structure.md`).
#[derive(Debug, Clone)]
pub struct Placement {
    pub(crate) pipeline: Cow<'static, str>,
    pub(crate) telemetry: Telemetry,
    pub(crate) index: usize,
    pub(crate) group: Option<(usize, usize, usize)>,
    pub(crate) fallback_for: Option<Cow<'static, str>>,
}

impl Placement {
    pub(crate) fn attributes(&self) -> Vec<KeyValue> {
        let mut attrs = vec![
            KeyValue::new(spanline::PIPELINE_NAME, shared(&self.pipeline)),
            KeyValue::new(spanline::STEP_INDEX, self.index as i64),
        ];
        // `spanline.step.blocking` is left out: every pipeline step blocks
        // its parent, and an absent value means `true` (only a span its
        // parent did not wait for says `false`).
        // One dependency is a plain int: an array value is a `Vec` that
        // every span would clone (an allocation per stage call). Step 0
        // depends on nothing: an empty array, which clones for free.
        let depends = match &self.fallback_for {
            Some(_) => Value::I64(self.index as i64),
            None if self.index == 0 => Value::Array(Array::I64(Vec::new())),
            None => Value::I64(self.index as i64 - 1),
        };
        attrs.push(KeyValue::new(spanline::STEP_DEPENDS_ON, depends));
        if let Some((group, branch, width)) = self.group {
            attrs.push(KeyValue::new(spanline::PARALLEL_GROUP, group as i64));
            attrs.push(KeyValue::new(spanline::PARALLEL_BRANCH, branch as i64));
            attrs.push(KeyValue::new(spanline::PARALLEL_WIDTH, width as i64));
        }
        if let Some(primary) = &self.fallback_for {
            attrs.push(KeyValue::new(spanline::FALLBACK_FOR, shared(primary)));
        }
        attrs
    }
}

/// A string attribute value that clones without allocating: static text
/// stays static, owned text becomes reference-counted.
#[allow(
    clippy::ptr_arg,
    reason = "borrowed vs owned is the point: static text stays static"
)]
pub(crate) fn shared(s: &Cow<'static, str>) -> Value {
    match s {
        Cow::Borrowed(b) => Value::from(*b),
        Cow::Owned(o) => Value::from(Arc::<str>::from(o.as_str())),
    }
}

/// Most span names interned; past this (a program building pipelines with
/// generated stage names) names are kept owned instead of leaked.
const MAX_INTERNED: usize = 4096;

/// Intern a span name: names derive from stage names, which are constants
/// by contract (they are metric labels), so the set is small. Interning at
/// build time saves an allocation per span; the set is capped so a misuse
/// costs an allocation per span rather than unbounded memory.
pub(crate) fn intern(name: String) -> Cow<'static, str> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = match NAMES.get_or_init(Default::default).lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(existing) = names.get(name.as_str()) {
        return Cow::Borrowed(existing);
    }
    if names.len() >= MAX_INTERNED {
        return Cow::Owned(name);
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    Cow::Borrowed(leaked)
}

/// Per-stage telemetry state, built once.
struct StepTelemetry {
    tracer: Arc<dyn crate::telemetry::SpanStarter>,
    span_name: Cow<'static, str>,
    span_kind: SpanKind,
    attributes: Vec<KeyValue>,
    durations: [Histogram; 4],
    gen_ai: Option<GenAiMetrics>,
    capture_default: bool,
}

struct GenAiMetrics {
    labels: Vec<(&'static str, String)>,
    duration_ok: Histogram,
    input_tokens: Histogram,
    output_tokens: Histogram,
}

impl GenAiMetrics {
    fn new(d: &StageDescriptor) -> Option<Self> {
        let provider = d.provider.as_ref()?;
        let mut labels = vec![
            (gen_ai::OPERATION_NAME, d.kind.operation().to_owned()),
            (gen_ai::PROVIDER_NAME, provider.to_string()),
        ];
        if let Some(model) = &d.model {
            labels.push((gen_ai::REQUEST_MODEL, model.to_string()));
        }
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut l: Vec<metrics::Label> = labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, v.clone()))
                .collect();
            l.extend(extra.iter().map(|(k, v)| metrics::Label::new(*k, *v)));
            l
        };
        Some(GenAiMetrics {
            duration_ok: metrics::histogram!(metric::GEN_AI_OPERATION_DURATION, with(&[])),
            input_tokens: metrics::histogram!(
                metric::GEN_AI_TOKEN_USAGE,
                with(&[(gen_ai::TOKEN_TYPE, "input")])
            ),
            output_tokens: metrics::histogram!(
                metric::GEN_AI_TOKEN_USAGE,
                with(&[(gen_ai::TOKEN_TYPE, "output")])
            ),
            labels,
        })
    }

    fn record(&self, elapsed: f64, result: Result<Option<TokenUsage>, ErrorKind>) {
        match result {
            Ok(usage) => {
                self.duration_ok.record(elapsed);
                if let Some(u) = usage {
                    self.input_tokens.record(u.input_tokens as f64);
                    self.output_tokens.record(u.output_tokens as f64);
                }
            }
            Err(kind) => {
                // Error path: register on demand (bounded by ErrorKind).
                let mut labels: Vec<metrics::Label> = self
                    .labels
                    .iter()
                    .map(|(k, v)| metrics::Label::new(*k, v.clone()))
                    .collect();
                labels.push(metrics::Label::new(general::ERROR_TYPE, kind.as_str()));
                metrics::histogram!(metric::GEN_AI_OPERATION_DURATION, labels).record(elapsed);
            }
        }
    }
}

impl StepTelemetry {
    fn new(d: &StageDescriptor, placement: &Placement, timeout: Option<Duration>) -> Option<Self> {
        let tracer = placement.telemetry.shared_tracer()?;
        let mut attributes = vec![
            KeyValue::new(gen_ai::OPERATION_NAME, d.kind.operation()),
            KeyValue::new(spanline::STAGE_NAME, shared(&d.name)),
            KeyValue::new(spanline::STAGE_KIND, d.kind.as_str()),
        ];
        if let Some(p) = &d.provider {
            attributes.push(KeyValue::new(gen_ai::PROVIDER_NAME, shared(p)));
        }
        if let Some(m) = &d.model {
            attributes.push(KeyValue::new(gen_ai::REQUEST_MODEL, shared(m)));
        }
        if let Some(s) = &d.data_source {
            attributes.push(KeyValue::new(gen_ai::DATA_SOURCE_ID, shared(s)));
        }
        if let Some((addr, port)) = &d.server {
            attributes.push(KeyValue::new(general::SERVER_ADDRESS, shared(addr)));
            attributes.push(KeyValue::new(general::SERVER_PORT, i64::from(*port)));
        }
        if let Some(t) = timeout {
            attributes.push(KeyValue::new(spanline::TIMEOUT_SECONDS, t.as_secs_f64()));
        }
        attributes.extend(placement.attributes());
        let durations = Outcome::ALL.map(|o| {
            metrics::histogram!(
                metric::STAGE_DURATION,
                metric::LABEL_PIPELINE => placement.pipeline.to_string(),
                metric::LABEL_STAGE => d.name.to_string(),
                metric::LABEL_KIND => d.kind.as_str(),
                metric::LABEL_OUTCOME => o.as_str(),
            )
        });
        Some(StepTelemetry {
            tracer,
            span_name: intern(d.span_name()),
            span_kind: if d.remote {
                SpanKind::Client
            } else {
                SpanKind::Internal
            },
            attributes,
            durations,
            gen_ai: GenAiMetrics::new(d),
            capture_default: placement.telemetry.captures_content(),
        })
    }
}

/// What a step does when its stage fails or times out.
pub trait Recovery<I, O>: Send + Sync {
    /// True when there is no recovery at all: an error propagates as it is,
    /// so a disabled, unbounded call can run the stage's future directly.
    const NONE: bool = false;
    /// `fallback`, `skip`, or `None` when there is no recovery.
    fn action(&self) -> Option<&'static str>;
    /// Keep a copy of the input for recovery (only when there is one).
    fn keep(&self, input: &I) -> Option<I>;
    /// Produce an output in place of the failed stage.
    fn recover(
        &self,
        input: I,
        error: StageError,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<O, StageError>> + Send;
}

/// No recovery: the error propagates.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecovery;

impl<I: Send, O: Send> Recovery<I, O> for NoRecovery {
    const NONE: bool = true;
    fn action(&self) -> Option<&'static str> {
        None
    }
    fn keep(&self, _: &I) -> Option<I> {
        None
    }
    fn recover(
        &self,
        _: I,
        error: StageError,
        _: &RequestContext,
    ) -> impl Future<Output = Result<O, StageError>> + Send {
        std::future::ready(Err(error))
    }
}

/// Skip the stage on failure: its input passes through as its output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip;

impl<T: Clone + Send + Sync> Recovery<T, T> for Skip {
    fn action(&self) -> Option<&'static str> {
        Some("skip")
    }
    fn keep(&self, input: &T) -> Option<T> {
        Some(input.clone())
    }
    fn recover(
        &self,
        input: T,
        _: StageError,
        _: &RequestContext,
    ) -> impl Future<Output = Result<T, StageError>> + Send {
        std::future::ready(Ok(input))
    }
}

/// Run another stage on failure (as its own span, marked
/// `spanline.fallback.for`).
#[derive(Debug, Clone)]
pub struct Fallback<F>(pub F);

/// A fallback stage, instrumented.
pub struct FallbackStep<F: Stage>(Instrumented<F, NoRecovery>);

impl<F> Recovery<F::Input, F::Output> for FallbackStep<F>
where
    F: Stage,
    F::Input: Clone + Sync,
{
    fn action(&self) -> Option<&'static str> {
        Some("fallback")
    }
    fn keep(&self, input: &F::Input) -> Option<F::Input> {
        Some(input.clone())
    }
    fn recover(
        &self,
        input: F::Input,
        _: StageError,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<F::Output, StageError>> + Send {
        self.0.call(input, ctx)
    }
}

/// Configuration of a recovery, turned into a [`Recovery`] at build time.
pub trait RecoverySpec<I, O> {
    /// The runtime form.
    type Built: Recovery<I, O>;
    /// Build it for the primary stage `primary` at `placement`.
    fn build(self, primary: &StageDescriptor, placement: &Placement) -> Self::Built;
}

impl<I: Send, O: Send> RecoverySpec<I, O> for NoRecovery {
    type Built = NoRecovery;
    fn build(self, _: &StageDescriptor, _: &Placement) -> NoRecovery {
        self
    }
}

impl<T: Clone + Send + Sync> RecoverySpec<T, T> for Skip {
    type Built = Skip;
    fn build(self, _: &StageDescriptor, _: &Placement) -> Skip {
        self
    }
}

impl<F> RecoverySpec<F::Input, F::Output> for Fallback<F>
where
    F: Stage,
    F::Input: Clone + Sync,
{
    type Built = FallbackStep<F>;
    fn build(self, primary: &StageDescriptor, placement: &Placement) -> FallbackStep<F> {
        let placement = Placement {
            fallback_for: Some(primary.name.clone()),
            ..placement.clone()
        };
        FallbackStep(Instrumented::new(self.0, None, NoRecovery, &placement))
    }
}

/// A stage with a timeout and a recovery, before the pipeline instruments
/// it. Made by [`StageExt`].
#[derive(Debug, Clone)]
pub struct Guarded<S, R> {
    pub(crate) stage: S,
    pub(crate) timeout: Option<Duration>,
    pub(crate) recovery: R,
}

impl<S: Stage, R> Guarded<S, R> {
    /// Fail the call with a timeout error after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// On timeout or error, run `fallback` instead.
    pub fn with_fallback<F>(self, fallback: F) -> Guarded<S, Fallback<F>>
    where
        F: Stage<Input = S::Input, Output = S::Output>,
    {
        Guarded {
            stage: self.stage,
            timeout: self.timeout,
            recovery: Fallback(fallback),
        }
    }
    /// On timeout or error, pass the input through unchanged.
    pub fn or_skip(self) -> Guarded<S, Skip>
    where
        S: Stage<Output = <S as Stage>::Input>,
    {
        Guarded {
            stage: self.stage,
            timeout: self.timeout,
            recovery: Skip,
        }
    }
}

/// Timeout and recovery for any stage.
pub trait StageExt: Stage + Sized {
    /// Fail the call with a timeout error after `timeout` (the request
    /// deadline applies as well; the earlier wins).
    fn with_timeout(self, timeout: Duration) -> Guarded<Self, NoRecovery> {
        Guarded {
            stage: self,
            timeout: Some(timeout),
            recovery: NoRecovery,
        }
    }
    /// On timeout or error, run `fallback` with the same input.
    fn with_fallback<F>(self, fallback: F) -> Guarded<Self, Fallback<F>>
    where
        F: Stage<Input = Self::Input, Output = Self::Output>,
    {
        Guarded {
            stage: self,
            timeout: None,
            recovery: Fallback(fallback),
        }
    }
    /// On timeout or error, pass the input through unchanged.
    fn or_skip(self) -> Guarded<Self, Skip>
    where
        Self: Stage<Output = <Self as Stage>::Input>,
    {
        Guarded {
            stage: self,
            timeout: None,
            recovery: Skip,
        }
    }
}

impl<S: Stage> StageExt for S {}

/// A stage wrapped in its instrumentation layer.
pub struct Instrumented<S: Stage, R = NoRecovery> {
    stage: S,
    timeout: Option<Duration>,
    recovery: R,
    telemetry: Option<Box<StepTelemetry>>,
}

impl<S: Stage> Instrumented<S, NoRecovery> {
    /// Wrap `stage` on its own, outside a pipeline: for a transport that
    /// hosts a stage (a gRPC worker), whose request already has a span to
    /// parent the stage span (the SERVER span). The span and histograms are
    /// those of step 0 of a pipeline named `pipeline`, without the
    /// pipeline's own root span; the request deadline applies. Registers
    /// the histograms with the current `metrics` recorder.
    pub fn standalone(
        stage: S,
        pipeline: impl Into<Cow<'static, str>>,
        telemetry: Telemetry,
    ) -> Self {
        let placement = Placement {
            pipeline: pipeline.into(),
            telemetry,
            index: 0,
            group: None,
            fallback_for: None,
        };
        Instrumented::new(stage, None, NoRecovery, &placement)
    }
}

impl<S: Stage, R> Instrumented<S, R> {
    /// Wrap `stage` at `placement`: registers its histograms with the
    /// current `metrics` recorder and precomputes its span.
    pub(crate) fn new(
        stage: S,
        timeout: Option<Duration>,
        recovery: R,
        placement: &Placement,
    ) -> Self {
        let descriptor = stage.describe();
        Instrumented {
            telemetry: StepTelemetry::new(&descriptor, placement, timeout).map(Box::new),
            stage,
            timeout,
            recovery,
        }
    }

    /// The wrapped stage.
    pub fn stage(&self) -> &S {
        &self.stage
    }

    #[inline]
    async fn run_bounded(
        &self,
        input: S::Input,
        ctx: &RequestContext,
    ) -> Result<S::Output, StageError> {
        let (limit, is_deadline) = match (self.timeout, ctx.remaining()) {
            (None, None) => return self.stage.run(input, ctx).await,
            (Some(t), None) => (t, false),
            (None, Some(r)) => (r, true),
            (Some(t), Some(r)) if r < t => (r, true),
            (Some(t), Some(_)) => (t, false),
        };
        if is_deadline && limit.is_zero() {
            return Err(StageError::deadline_exceeded());
        }
        match tokio::time::timeout(limit, self.stage.run(input, ctx)).await {
            Ok(result) => result,
            Err(_) if is_deadline => Err(StageError::deadline_exceeded()),
            Err(_) => Err(StageError::timeout(limit)),
        }
    }

    /// Run with extra per-call attributes (batch index and size). Disabled
    /// telemetry dispatches to a small future that only applies the timeout
    /// and recovery.
    #[inline]
    pub(crate) fn call_with(
        &self,
        input: S::Input,
        ctx: &RequestContext,
        extra: &[KeyValue],
    ) -> impl Future<Output = Result<S::Output, StageError>> + Send
    where
        R: Recovery<S::Input, S::Output>,
    {
        match &self.telemetry {
            None => Either::Left(self.call_plain(input, ctx)),
            Some(t) => Either::Right(self.call_traced(t, input, ctx, extra)),
        }
    }

    #[inline]
    async fn call_plain(
        &self,
        input: S::Input,
        ctx: &RequestContext,
    ) -> Result<S::Output, StageError>
    where
        R: Recovery<S::Input, S::Output>,
    {
        if R::NONE && self.timeout.is_none() && ctx.deadline().is_none() {
            // Nothing to bound or recover: the stage's own future.
            return self.stage.run(input, ctx).await;
        }
        let kept = self.recovery.keep(&input);
        match (self.run_bounded(input, ctx).await, kept) {
            (Ok(out), _) => Ok(out),
            (Err(e), Some(input)) => self.recovery.recover(input, e, ctx).await,
            (Err(e), None) => Err(e),
        }
    }

    async fn call_traced(
        &self,
        t: &StepTelemetry,
        input: S::Input,
        ctx: &RequestContext,
        extra: &[KeyValue],
    ) -> Result<S::Output, StageError>
    where
        R: Recovery<S::Input, S::Output>,
    {
        let capture = ctx.capture_override().unwrap_or(t.capture_default);
        let parent = ctx.otel_context();
        let recording = parent.span().span_context().is_sampled();
        let span_ctx;
        let run_ctx = if recording {
            let mut attrs = Vec::with_capacity(t.attributes.len() + extra.len() + 8);
            attrs.extend_from_slice(&t.attributes);
            attrs.extend_from_slice(extra);
            attrs.extend_from_slice(ctx.attributes().span_attributes());
            self.stage
                .annotate_input(&input, &mut Annotations::new(&mut attrs, capture, true));
            // The attribute vector is handed over as it is (`with_attributes`
            // would collect it into a new one).
            let mut builder =
                SpanBuilder::from_name(t.span_name.clone()).with_kind(t.span_kind.clone());
            builder.attributes = Some(attrs);
            span_ctx = ctx.with_otel(t.tracer.start(builder, parent));
            &span_ctx
        } else {
            ctx
        };
        let kept = self.recovery.keep(&input);
        let mut guard = CallGuard {
            t,
            ctx: recording.then_some(run_ctx),
            start: Instant::now(),
            armed: true,
        };
        // While a sampled stage runs, its span is also the "current"
        // OpenTelemetry context on whichever thread polls it, so logs and
        // third-party code inside the stage see it (spanline-log stamps
        // trace and span ids from it). Unsampled calls skip this: there is
        // no recorded span for a log line to lead to.
        // With no timeout and no deadline the stage's own future runs, without
        // the bounding future around it.
        let run = if self.timeout.is_none() && ctx.deadline().is_none() {
            Either::Left(self.stage.run(input, run_ctx))
        } else {
            Either::Right(self.run_bounded(input, run_ctx))
        };
        let result = if recording {
            run.with_context(run_ctx.otel_context().clone()).await
        } else {
            run.await
        };
        guard.armed = false;
        let elapsed = guard.start.elapsed().as_secs_f64();
        let span = run_ctx.otel_context().span();
        match result {
            Ok(output) => {
                let mut attrs = Vec::new();
                let mut annotations = Annotations::new(&mut attrs, capture, recording);
                self.stage.annotate_output(&output, &mut annotations);
                let usage = annotations.take_usage();
                if recording {
                    if let Some(u) = usage {
                        attrs.push(KeyValue::new(
                            gen_ai::USAGE_INPUT_TOKENS,
                            u.input_tokens as i64,
                        ));
                        attrs.push(KeyValue::new(
                            gen_ai::USAGE_OUTPUT_TOKENS,
                            u.output_tokens as i64,
                        ));
                    }
                    if !attrs.is_empty() {
                        span.set_attributes(attrs);
                    }
                    span.end();
                }
                t.durations[Outcome::Ok as usize].record(elapsed);
                if let Some(g) = &t.gen_ai {
                    g.record(elapsed, Ok(usage));
                }
                Ok(output)
            }
            Err(error) => {
                let outcome = Outcome::of(&error);
                let action = kept.as_ref().and(self.recovery.action());
                if recording {
                    record_error(&span, &error, capture);
                    if let Some(action) = action {
                        span.set_attribute(KeyValue::new(spanline::FALLBACK_ACTION, action));
                        span.set_attribute(KeyValue::new(
                            spanline::FALLBACK_REASON,
                            if outcome == Outcome::Timeout {
                                "timeout"
                            } else {
                                "error"
                            },
                        ));
                    }
                    span.end();
                }
                t.durations[outcome as usize].record(elapsed);
                if let Some(g) = &t.gen_ai {
                    g.record(elapsed, Err(error.kind()));
                }
                match kept {
                    Some(input) => self.recovery.recover(input, error, ctx).await,
                    None => Err(error),
                }
            }
        }
    }
}

/// Set error status, `error.type` and an exception event; the message only
/// when content capture is on.
pub(crate) fn record_error(
    span: &opentelemetry::trace::SpanRef<'_>,
    error: &StageError,
    capture: bool,
) {
    let message = error.message_for(capture).to_owned();
    span.set_attribute(KeyValue::new(general::ERROR_TYPE, error.kind().as_str()));
    span.add_event(
        general::EXCEPTION_EVENT,
        vec![
            KeyValue::new(general::EXCEPTION_TYPE, error.kind().as_str()),
            KeyValue::new(general::EXCEPTION_MESSAGE, message.clone()),
        ],
    );
    span.set_status(Status::error(message));
}

/// Ends the span as cancelled if the call's future is dropped mid-flight.
struct CallGuard<'a> {
    t: &'a StepTelemetry,
    ctx: Option<&'a RequestContext>,
    start: Instant,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(ctx) = self.ctx {
            let span = ctx.otel_context().span();
            record_error(&span, &StageError::cancelled(), false);
            span.end();
        }
        self.t.durations[Outcome::Cancelled as usize].record(self.start.elapsed().as_secs_f64());
    }
}

impl<S, R> Step for Instrumented<S, R>
where
    S: Stage,
    R: Recovery<S::Input, S::Output>,
{
    type Input = S::Input;
    type Output = S::Output;
    fn call(
        &self,
        input: S::Input,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<S::Output, StageError>> + Send {
        self.call_with(input, ctx, &[])
    }
}
