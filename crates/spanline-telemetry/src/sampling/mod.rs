//! Sampling: head sampling (ratio and parent-based, from `OTEL_TRACES_SAMPLER`
//! or the builder), a rule-based head sampler over what is known when a
//! root span starts, and a tail-sampling span processor that decides per
//! trace once its local root has ended.
//!
//! - [`RuleSampler`]: an OpenTelemetry [`ShouldSample`] that keeps forced
//!   requests (`spanline.sampling.force`), applies the first matching
//!   [`Rule`] (user tier, workflow name, customer, any attribute), and
//!   falls back to a trace-id ratio. Children follow their parent.
//! - [`TailSamplingProcessor`]: a [`SpanProcessor`] that buffers the spans
//!   of each trace (bounded), keeps failed, slow and rule-matching traces
//!   plus a baseline ratio, and forwards kept spans to a downstream
//!   processor. It never blocks the thread ending a span.
//!
//! See `docs/sampling.md` for configuration, trade-offs and recipes.
//!
//! [`ShouldSample`]: opentelemetry_sdk::trace::ShouldSample
//! [`SpanProcessor`]: opentelemetry_sdk::trace::SpanProcessor

pub(crate) mod buffer;
pub(crate) mod handoff;
mod head;
mod rules;
mod tail;

pub use head::{baseline_ratio_keeps, trace_id_ratio_keeps};
pub use rules::{Condition, RemoteParents, Rule, RuleAction, RuleSampler, RuleSamplerBuilder};
pub use tail::{
    TailConfig, TailDecision, TailEngine, TailRule, TailSamplingProcessor, TailStats,
    TailStatsHandle,
};
