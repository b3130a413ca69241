//! Typed composition: sequences the compiler checks, parallel groups,
//! batch calls, and the pipeline with its `invoke_workflow` root span.

use std::borrow::Cow;
use std::future::Future;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, future};
use metrics::Histogram;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};

use crate::context::RequestContext;
use crate::error::StageError;
use crate::layer::{Guarded, Instrumented, NoRecovery, Outcome, Placement, RecoverySpec, Step};
use crate::semconv::{gen_ai, metric, spanline};
use crate::stage::{Stage, StageDescriptor, StageKind};
use crate::telemetry::Telemetry;

/// Anything that becomes a pipeline step: every [`Stage`], a [`Guarded`]
/// stage (timeout, fallback), a [`Batch`].
pub trait IntoStep {
    /// What the step takes.
    type Input: Send + 'static;
    /// What it gives.
    type Output: Send + 'static;
    /// The runtime step.
    type Step: Step<Input = Self::Input, Output = Self::Output>;
    /// Instrument it at `placement`.
    fn into_step(self, placement: &Placement) -> Self::Step;
}

impl<S: Stage> IntoStep for S {
    type Input = S::Input;
    type Output = S::Output;
    type Step = Instrumented<S, NoRecovery>;
    fn into_step(self, placement: &Placement) -> Self::Step {
        Instrumented::new(self, None, NoRecovery, placement)
    }
}

impl<S, R> IntoStep for Guarded<S, R>
where
    S: Stage,
    R: RecoverySpec<S::Input, S::Output>,
{
    type Input = S::Input;
    type Output = S::Output;
    type Step = Instrumented<S, R::Built>;
    fn into_step(self, placement: &Placement) -> Self::Step {
        let recovery = self.recovery.build(&self.stage.describe(), placement);
        Instrumented::new(self.stage, self.timeout, recovery, placement)
    }
}

/// Two steps in sequence: the output of `A` feeds `B`.
pub struct Then<A, B> {
    first: A,
    second: B,
}

impl<A, B> Step for Then<A, B>
where
    A: Step,
    B: Step<Input = A::Output>,
{
    type Input = A::Input;
    type Output = B::Output;
    #[inline]
    async fn call(&self, input: A::Input, ctx: &RequestContext) -> Result<B::Output, StageError> {
        let mid = self.first.call(input, ctx).await?;
        self.second.call(mid, ctx).await
    }
}

/// A tuple of steps run concurrently on clones of one input; the output is
/// the tuple of their outputs. If a branch fails the group fails and the
/// other branches are cancelled (their spans end as cancelled).
pub struct Parallel<T>(T);

/// A tuple of stages that can form a parallel group.
pub trait IntoParallel<I> {
    /// The joined output.
    type Output: Send + 'static;
    /// The runtime step.
    type Step: Step<Input = I, Output = Self::Output>;
    /// Instrument every branch; the group sits at `placement`.
    fn into_parallel(self, placement: &Placement) -> Self::Step;
}

macro_rules! parallel_group {
    ($width:literal; $($T:ident $idx:tt),+) => {
        impl<I, $($T),+> IntoParallel<I> for ($($T,)+)
        where
            I: Clone + Send + Sync + 'static,
            $($T: IntoStep<Input = I>,)+
        {
            type Output = ($($T::Output,)+);
            type Step = Parallel<($($T::Step,)+)>;
            fn into_parallel(self, placement: &Placement) -> Self::Step {
                let group = placement.index;
                Parallel(($(self.$idx.into_step(&Placement {
                    group: Some((group, $idx, $width)),
                    ..placement.clone()
                }),)+))
            }
        }

        impl<I, $($T),+> Step for Parallel<($($T,)+)>
        where
            I: Clone + Send + Sync + 'static,
            $($T: Step<Input = I>,)+
        {
            type Input = I;
            type Output = ($($T::Output,)+);
            async fn call(&self, input: I, ctx: &RequestContext) -> Result<Self::Output, StageError> {
                let branches = ($(self.0.$idx.call(input.clone(), ctx),)+);
                parallel_group!(@join branches; $($idx),+)
            }
        }
    };
    (@join $b:ident; 0, 1) => { future::try_join($b.0, $b.1).await };
    (@join $b:ident; 0, 1, 2) => { future::try_join3($b.0, $b.1, $b.2).await };
    (@join $b:ident; 0, 1, 2, 3) => { future::try_join4($b.0, $b.1, $b.2, $b.3).await };
    (@join $b:ident; 0, 1, 2, 3, 4) => { future::try_join5($b.0, $b.1, $b.2, $b.3, $b.4).await };
}
parallel_group!(2; A 0, B 1);
parallel_group!(3; A 0, B 1, C 2);
parallel_group!(4; A 0, B 1, C 2, D 3);
parallel_group!(5; A 0, B 1, C 2, D 3, E 4);

/// One stage over a batch of inputs, at most `concurrency` at a time; each
/// item gets its own span with `spanline.batch.index` and
/// `spanline.batch.size`. Outputs keep the inputs' order.
#[derive(Debug, Clone)]
pub struct Batch<S> {
    stage: S,
    concurrency: usize,
}

/// Run `stage` over a batch (see [`Batch`]); one item at a time by default.
pub fn batch<S: Stage>(stage: S) -> Batch<S> {
    Batch {
        stage,
        concurrency: 1,
    }
}

impl<S> Batch<S> {
    /// Run up to `n` items at once (at least one).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

/// The runtime form of a [`Batch`].
pub struct BatchStep<S: Stage> {
    inner: Instrumented<S, NoRecovery>,
    concurrency: usize,
}

impl<S: Stage> IntoStep for Batch<S> {
    type Input = Vec<S::Input>;
    type Output = Vec<S::Output>;
    type Step = BatchStep<S>;
    fn into_step(self, placement: &Placement) -> Self::Step {
        BatchStep {
            inner: Instrumented::new(self.stage, None, NoRecovery, placement),
            concurrency: self.concurrency,
        }
    }
}

impl<S: Stage> Step for BatchStep<S> {
    type Input = Vec<S::Input>;
    type Output = Vec<S::Output>;
    async fn call(
        &self,
        inputs: Vec<S::Input>,
        ctx: &RequestContext,
    ) -> Result<Vec<S::Output>, StageError> {
        let size = inputs.len() as i64;
        let concurrency = self.concurrency as i64;
        futures_util::stream::iter(inputs.into_iter().enumerate())
            .map(|(i, input)| async move {
                let extra = [
                    KeyValue::new(spanline::BATCH_INDEX, i as i64),
                    KeyValue::new(spanline::BATCH_SIZE, size),
                    KeyValue::new(spanline::BATCH_CONCURRENCY, concurrency),
                ];
                self.inner.call_with(input, ctx, &extra).await
            })
            .buffered(self.concurrency)
            .try_collect()
            .await
    }
}

/// Marks a builder that has no step yet.
#[derive(Debug, Clone, Copy)]
pub struct Start;

/// Builds a [`Pipeline`]; each `then` changes its type, so a stage whose
/// input does not match the previous output is a compile error.
pub struct PipelineBuilder<S> {
    name: Cow<'static, str>,
    telemetry: Telemetry,
    steps: S,
    next_index: usize,
}

impl<S> std::fmt::Debug for PipelineBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("steps", &self.next_index)
            .finish()
    }
}

impl<S> PipelineBuilder<S> {
    fn placement(&self) -> Placement {
        Placement {
            pipeline: self.name.clone(),
            telemetry: self.telemetry.clone(),
            index: self.next_index,
            group: None,
            fallback_for: None,
        }
    }
    /// Add one step: `f` turns the steps so far into the new chain.
    fn advance<N>(self, f: impl FnOnce(S) -> N) -> PipelineBuilder<N> {
        PipelineBuilder {
            name: self.name,
            telemetry: self.telemetry,
            steps: f(self.steps),
            next_index: self.next_index + 1,
        }
    }
}

impl PipelineBuilder<Start> {
    /// Emit through `telemetry` instead of the global provider. Set it
    /// before adding steps: each step registers its handles when added.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The first step.
    pub fn then<T: IntoStep>(self, step: T) -> PipelineBuilder<T::Step> {
        let built = step.into_step(&self.placement());
        self.advance(|_| built)
    }

    /// The first step is a parallel group over clones of the input.
    pub fn parallel<I, G: IntoParallel<I>>(self, group: G) -> PipelineBuilder<G::Step> {
        let built = group.into_parallel(&self.placement());
        self.advance(|_| built)
    }
}

impl<S: Step> PipelineBuilder<S> {
    /// The next step, fed by the previous one's output.
    pub fn then<T: IntoStep<Input = S::Output>>(
        self,
        step: T,
    ) -> PipelineBuilder<Then<S, T::Step>> {
        let second = step.into_step(&self.placement());
        self.chain(second)
    }

    /// A parallel group fed by clones of the previous output; outputs joined
    /// into a tuple.
    pub fn parallel<G>(self, group: G) -> PipelineBuilder<Then<S, G::Step>>
    where
        S::Output: Clone + Sync,
        G: IntoParallel<S::Output>,
    {
        let second = group.into_parallel(&self.placement());
        self.chain(second)
    }

    fn chain<N>(self, second: N) -> PipelineBuilder<Then<S, N>> {
        self.advance(|first| Then { first, second })
    }

    /// Finish.
    pub fn build(self) -> Pipeline<S> {
        let root = self.telemetry.is_enabled().then(|| RootTelemetry {
            span_name: crate::layer::intern(format!(
                "{} {}",
                gen_ai::op::INVOKE_WORKFLOW,
                self.name
            )),
            durations: Outcome::ALL.map(|o| {
                metrics::histogram!(
                    metric::PIPELINE_DURATION,
                    metric::LABEL_PIPELINE => self.name.to_string(),
                    metric::LABEL_OUTCOME => o.as_str(),
                )
            }),
        });
        Pipeline {
            name: self.name,
            telemetry: self.telemetry,
            steps: self.steps,
            root,
        }
    }
}

struct RootTelemetry {
    span_name: Cow<'static, str>,
    durations: [Histogram; 4],
}

/// A built pipeline. Run it with [`Pipeline::run`]; it is also a [`Stage`],
/// so pipelines nest.
pub struct Pipeline<S> {
    name: Cow<'static, str>,
    telemetry: Telemetry,
    steps: S,
    root: Option<RootTelemetry>,
}

impl<S> std::fmt::Debug for Pipeline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

impl Pipeline<Start> {
    /// Start building a pipeline called `name` (the `pipeline` label: keep
    /// it a constant).
    pub fn builder(name: impl Into<Cow<'static, str>>) -> PipelineBuilder<Start> {
        PipelineBuilder {
            name: name.into(),
            telemetry: Telemetry::global(),
            steps: Start,
            next_index: 0,
        }
    }
}

impl<S: Step> Pipeline<S> {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run one request. The root span (`invoke_workflow {name}`) is a child
    /// of `ctx`'s parent, which may be remote; every stage span is its
    /// descendant.
    pub fn run(
        &self,
        input: S::Input,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<S::Output, StageError>> + Send {
        let mut ctx = ctx.clone();
        ctx.enter(&self.telemetry);
        async move {
            let (Some(root), Some(tracer)) = (&self.root, self.telemetry.shared_tracer()) else {
                return self.steps.call(input, &ctx).await;
            };
            let mut attrs = vec![
                KeyValue::new(gen_ai::OPERATION_NAME, gen_ai::op::INVOKE_WORKFLOW),
                KeyValue::new(spanline::PIPELINE_NAME, crate::layer::shared(&self.name)),
            ];
            if ctx.attributes().workflow().is_none() {
                attrs.push(KeyValue::new(
                    gen_ai::WORKFLOW_NAME,
                    crate::layer::shared(&self.name),
                ));
            }
            attrs.extend_from_slice(ctx.attributes().span_attributes());
            let mut builder =
                SpanBuilder::from_name(root.span_name.clone()).with_kind(SpanKind::Internal);
            builder.attributes = Some(attrs);
            let run_ctx = ctx.with_otel(tracer.start(builder, ctx.otel_context()));
            let mut guard = RootGuard {
                root,
                ctx: &run_ctx,
                start: quanta::Instant::now(),
                armed: true,
            };
            let result = self.steps.call(input, &run_ctx).await;
            guard.armed = false;
            let elapsed = guard.start.elapsed().as_secs_f64();
            let span = run_ctx.otel_context().span();
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(e) => {
                    crate::layer::record_error(&span, e, ctx.captures_content());
                    Outcome::of(e)
                }
            };
            span.end();
            root.durations[outcome as usize].record(elapsed);
            result
        }
    }
}

struct RootGuard<'a> {
    root: &'a RootTelemetry,
    ctx: &'a RequestContext,
    start: quanta::Instant,
    armed: bool,
}

impl Drop for RootGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let span = self.ctx.otel_context().span();
            crate::layer::record_error(&span, &StageError::cancelled(), false);
            span.end();
            self.root.durations[Outcome::Cancelled as usize]
                .record(self.start.elapsed().as_secs_f64());
        }
    }
}

#[async_trait]
impl<S: Step> Stage for Pipeline<S> {
    type Input = S::Input;
    type Output = S::Output;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new(self.name.clone(), StageKind::Custom)
    }
    async fn run(&self, input: S::Input, ctx: &RequestContext) -> Result<S::Output, StageError> {
        Pipeline::run(self, input, ctx).await
    }
}
