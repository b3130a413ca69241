//! The generic stage trait every stage adapts to, and how a stage describes
//! itself to the instrumentation layer.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry::KeyValue;

use crate::context::RequestContext;
use crate::error::StageError;
use crate::semconv::gen_ai::op;
use crate::types::TokenUsage;

/// What a stage does; decides the span's operation name and the `kind`
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StageKind {
    /// Normalise, tokenize, validate.
    Preprocess,
    /// Text to vectors.
    Embed,
    /// Query to documents.
    Retrieve,
    /// Reorder documents by relevance.
    Rerank,
    /// Produce text.
    Generate,
    /// Shape the final answer (citations, filtering).
    Postprocess,
    /// Anything else (fusion, prompt building, …).
    Custom,
}

impl StageKind {
    /// The `kind` label and `spanline.stage.kind` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            StageKind::Preprocess => "preprocess",
            StageKind::Embed => "embed",
            StageKind::Retrieve => "retrieve",
            StageKind::Rerank => "rerank",
            StageKind::Generate => "generate",
            StageKind::Postprocess => "postprocess",
            StageKind::Custom => "custom",
        }
    }

    /// The `gen_ai.operation.name` this kind maps to.
    pub const fn operation(self) -> &'static str {
        match self {
            StageKind::Preprocess => op::PREPROCESS,
            StageKind::Embed => op::EMBEDDINGS,
            StageKind::Retrieve => op::RETRIEVAL,
            StageKind::Rerank => op::RERANK,
            StageKind::Generate => op::CHAT,
            StageKind::Postprocess => op::POSTPROCESS,
            StageKind::Custom => op::STAGE,
        }
    }
}

/// How a stage describes itself, so that the layer names its span and sets
/// its attributes without the stage's help. Read once, when the pipeline is
/// built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDescriptor {
    /// Stage name: the `stage` metric label, so keep it a constant.
    pub name: Cow<'static, str>,
    /// What it does.
    pub kind: StageKind,
    /// The model it runs (`gen_ai.request.model`), if any.
    pub model: Option<Cow<'static, str>>,
    /// Who provides the model (`gen_ai.provider.name`), if any.
    pub provider: Option<Cow<'static, str>>,
    /// The data source it retrieves from (`gen_ai.data_source.id`).
    pub data_source: Option<Cow<'static, str>>,
    /// Where the work runs when it is remote: span kind CLIENT and
    /// `server.address` / `server.port`.
    pub server: Option<(Cow<'static, str>, u16)>,
    /// Whether the work runs in another process (span kind CLIENT).
    pub remote: bool,
}

impl StageDescriptor {
    /// A local stage with no model.
    pub fn new(name: impl Into<Cow<'static, str>>, kind: StageKind) -> Self {
        StageDescriptor {
            name: name.into(),
            kind,
            model: None,
            provider: None,
            data_source: None,
            server: None,
            remote: false,
        }
    }
    /// Set the model.
    pub fn model(mut self, model: impl Into<Cow<'static, str>>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// Set the provider.
    pub fn provider(mut self, provider: impl Into<Cow<'static, str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }
    /// Set the data source.
    pub fn data_source(mut self, id: impl Into<Cow<'static, str>>) -> Self {
        self.data_source = Some(id.into());
        self
    }
    /// Mark the stage remote, served at `address:port`.
    pub fn server(mut self, address: impl Into<Cow<'static, str>>, port: u16) -> Self {
        self.server = Some((address.into(), port));
        self.remote = true;
        self
    }
    /// Mark the stage remote without a single server address (a pool, a
    /// queue).
    pub fn remote(mut self) -> Self {
        self.remote = true;
        self
    }

    /// The span name per the GenAI conventions: `{operation} {model}`,
    /// `retrieval {data source}`, or `{operation} {stage name}`.
    pub fn span_name(&self) -> String {
        let op = self.kind.operation();
        match (&self.model, &self.data_source) {
            (Some(model), _) => format!("{op} {model}"),
            (None, Some(source)) if self.kind == StageKind::Retrieve => format!("{op} {source}"),
            _ => format!("{op} {}", self.name),
        }
    }
}

/// What a stage reports about its input or output: span attributes, content
/// (only recorded when capture is on) and token usage for the GenAI metrics.
#[derive(Debug)]
pub struct Annotations<'a> {
    attributes: &'a mut Vec<KeyValue>,
    capture: bool,
    usage: Option<TokenUsage>,
    recording: bool,
}

impl<'a> Annotations<'a> {
    pub(crate) fn new(attributes: &'a mut Vec<KeyValue>, capture: bool, recording: bool) -> Self {
        Annotations {
            attributes,
            capture,
            usage: None,
            recording,
        }
    }
    /// Add a span attribute.
    pub fn attribute(&mut self, kv: KeyValue) {
        if self.recording {
            self.attributes.push(kv);
        }
    }
    /// Add a content attribute: `value` runs only when content capture is on.
    pub fn content(&mut self, key: &'static str, value: impl FnOnce() -> String) {
        if self.recording && self.capture {
            self.attributes.push(KeyValue::new(key, value()));
        }
    }
    /// Report token usage: sets the `gen_ai.usage.*` attributes and feeds
    /// the `gen_ai.client.token.usage` histogram.
    pub fn usage(&mut self, usage: TokenUsage) {
        self.usage = Some(usage);
    }
    /// Whether the span is recorded (attributes are discarded otherwise).
    pub fn is_recording(&self) -> bool {
        self.recording
    }
    pub(crate) fn take_usage(&self) -> Option<TokenUsage> {
        self.usage
    }
}

/// One step of a pipeline: takes an input, returns an output, and describes
/// itself. Telemetry is not its business: the layer around it names the
/// span, times the call and records errors.
///
/// The specialised traits ([`Embedder`](crate::Embedder),
/// [`Retriever`](crate::Retriever), …) adapt to this one through the
/// adapters in [`adapters`](crate::adapters); closures adapt through
/// [`stage_fn`].
#[async_trait]
pub trait Stage: Send + Sync {
    /// What it takes.
    type Input: Send + 'static;
    /// What it gives.
    type Output: Send + 'static;

    /// Who it is (read once, when the pipeline is built).
    fn describe(&self) -> StageDescriptor;

    /// Do the work. `ctx` holds this stage's span as its parent context:
    /// pass it on to anything that creates spans or crosses a boundary.
    async fn run(
        &self,
        input: Self::Input,
        ctx: &RequestContext,
    ) -> Result<Self::Output, StageError>;

    /// Describe the input on the span (called before `run`, only when the
    /// span is recorded).
    fn annotate_input(&self, _input: &Self::Input, _annotations: &mut Annotations<'_>) {}

    /// Describe the output on the span and report token usage.
    fn annotate_output(&self, _output: &Self::Output, _annotations: &mut Annotations<'_>) {}
}

macro_rules! forward_stage {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<S: Stage + ?Sized> Stage for $ptr<S> {
            type Input = S::Input;
            type Output = S::Output;
            fn describe(&self) -> StageDescriptor {
                (**self).describe()
            }
            async fn run(&self, input: S::Input, ctx: &RequestContext) -> Result<S::Output, StageError> {
                (**self).run(input, ctx).await
            }
            fn annotate_input(&self, input: &S::Input, a: &mut Annotations<'_>) {
                (**self).annotate_input(input, a)
            }
            fn annotate_output(&self, output: &S::Output, a: &mut Annotations<'_>) {
                (**self).annotate_output(output, a)
            }
        }
    )*};
}
forward_stage!(Box, Arc);

/// A stage made of a closure: `stage_fn(descriptor, |input, ctx| async move { … })`.
/// The closure receives its own clone of the request context.
pub fn stage_fn<I, O, F, Fut>(descriptor: StageDescriptor, f: F) -> FnStage<I, O, F>
where
    F: Fn(I, RequestContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O, StageError>> + Send,
{
    FnStage {
        descriptor,
        f,
        _types: PhantomData,
    }
}

/// The stage [`stage_fn`] builds.
pub struct FnStage<I, O, F> {
    descriptor: StageDescriptor,
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O, F> std::fmt::Debug for FnStage<I, O, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnStage")
            .field("descriptor", &self.descriptor)
            .finish()
    }
}

#[async_trait]
impl<I, O, F, Fut> Stage for FnStage<I, O, F>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(I, RequestContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O, StageError>> + Send,
{
    type Input = I;
    type Output = O;
    fn describe(&self) -> StageDescriptor {
        self.descriptor.clone()
    }
    async fn run(&self, input: I, ctx: &RequestContext) -> Result<O, StageError> {
        (self.f)(input, ctx.clone()).await
    }
}
