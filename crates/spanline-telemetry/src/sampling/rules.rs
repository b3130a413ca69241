//! The rule-based head sampler.

use std::fmt;
use std::sync::Arc;

use metrics::Counter;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use spanline_core::semconv::{gen_ai, general, sampling as names, spanline};

use crate::error::TelemetryError;
use crate::sampling::head::trace_id_ratio_keeps;

/// A predicate over span attributes (the request attributes a root span
/// starts with, or any span's attributes in the tail sampler).
///
/// Values are compared as text: a string attribute by its value, a bool as
/// `true`/`false`, a number in its decimal form.
///
/// ```
/// use opentelemetry::KeyValue;
/// use spanline_telemetry::sampling::Condition;
///
/// let premium = Condition::metadata("tier", "premium");
/// let attrs = [KeyValue::new("spanline.metadata.tier", "premium")];
/// assert!(premium.matches(&attrs));
/// assert!(!Condition::workflow("rag").matches(&attrs));
/// assert!(Condition::any([Condition::workflow("rag"), premium]).matches(&attrs));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The attribute `key` is present with the value `value`.
    Equals {
        /// The attribute key.
        key: Key,
        /// The expected value, as text.
        value: String,
    },
    /// The attribute `key` is present with one of `values`.
    OneOf {
        /// The attribute key.
        key: Key,
        /// The accepted values, as text.
        values: Vec<String>,
    },
    /// The attribute `key` is present (any value).
    Exists(Key),
    /// Every condition holds (true when empty).
    All(Vec<Condition>),
    /// At least one condition holds (false when empty).
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// The explicit force flag: `spanline.sampling.force = true`.
    pub fn forced() -> Self {
        Condition::attribute(names::FORCE, "true")
    }

    /// `key == value`.
    pub fn attribute(key: impl Into<Key>, value: impl Into<String>) -> Self {
        Condition::Equals {
            key: key.into(),
            value: value.into(),
        }
    }

    /// `key` is one of `values`.
    pub fn attribute_in<I, V>(key: impl Into<Key>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        Condition::OneOf {
            key: key.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// `key` is present.
    pub fn exists(key: impl Into<Key>) -> Self {
        Condition::Exists(key.into())
    }

    /// The request's user id (`user.id`) is `id`.
    pub fn user_id(id: impl Into<String>) -> Self {
        Condition::attribute(general::USER_ID, id)
    }

    /// The request's user id is one of `ids`.
    pub fn user_in<I, V>(ids: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        Condition::attribute_in(general::USER_ID, ids)
    }

    /// The request's customer id (`spanline.customer.id`) is `id`.
    pub fn customer_id(id: impl Into<String>) -> Self {
        Condition::attribute(spanline::CUSTOMER_ID, id)
    }

    /// The request's session id (`session.id`) is `id`.
    pub fn session_id(id: impl Into<String>) -> Self {
        Condition::attribute(general::SESSION_ID, id)
    }

    /// The workflow (`gen_ai.workflow.name`) is `name`. A pipeline's root
    /// span carries its pipeline name here unless the request named one.
    pub fn workflow(name: impl Into<String>) -> Self {
        Condition::attribute(gen_ai::WORKFLOW_NAME, name)
    }

    /// Request metadata `key` (`spanline.metadata.<key>`) is `value`, e.g.
    /// `Condition::metadata("tier", "premium")`.
    pub fn metadata(key: &str, value: impl Into<String>) -> Self {
        Condition::attribute(format!("{}{key}", spanline::METADATA_PREFIX), value)
    }

    /// Every condition holds.
    pub fn all(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Condition::All(conditions.into_iter().collect())
    }

    /// At least one condition holds.
    pub fn any(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Condition::Any(conditions.into_iter().collect())
    }

    /// The negation of `condition`.
    pub fn negate(condition: Condition) -> Self {
        Condition::Not(Box::new(condition))
    }

    /// Whether `attributes` satisfy the condition. The last value of a
    /// repeated key wins (as in the SDK).
    pub fn matches(&self, attributes: &[KeyValue]) -> bool {
        match self {
            Condition::Equals { key, value } => {
                find(attributes, key).is_some_and(|v| value_is(v, value))
            }
            Condition::OneOf { key, values } => {
                find(attributes, key).is_some_and(|v| values.iter().any(|x| value_is(v, x)))
            }
            Condition::Exists(key) => find(attributes, key).is_some(),
            Condition::All(cs) => cs.iter().all(|c| c.matches(attributes)),
            Condition::Any(cs) => cs.iter().any(|c| c.matches(attributes)),
            Condition::Not(c) => !c.matches(attributes),
        }
    }

    /// Whether this condition is exactly [`Condition::forced`].
    fn is_force(&self) -> bool {
        matches!(self, Condition::Equals { key, value } if key.as_str() == names::FORCE && value == "true")
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &Key) -> Option<&'a Value> {
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key == *key)
        .map(|kv| &kv.value)
}

fn value_is(v: &Value, expected: &str) -> bool {
    match v {
        Value::String(s) => s.as_str() == expected,
        Value::Bool(b) => expected == if *b { "true" } else { "false" },
        other => other.as_str() == expected,
    }
}

/// What a matching [`Rule`] decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RuleAction {
    /// Sample the trace.
    Sample,
    /// Do not sample the trace.
    Drop,
    /// Sample this fraction of the matching traces (by trace id).
    Ratio(f64),
}

/// One rule: when its [`Condition`] holds on a root span's attributes, its
/// [`RuleAction`] decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    condition: Condition,
    action: RuleAction,
}

impl Rule {
    /// A rule with an explicit action.
    pub fn new(condition: Condition, action: RuleAction) -> Self {
        Rule { condition, action }
    }

    /// Sample when `condition` holds.
    pub fn sample_when(condition: Condition) -> Self {
        Rule::new(condition, RuleAction::Sample)
    }

    /// Drop when `condition` holds (health checks, synthetic traffic).
    pub fn drop_when(condition: Condition) -> Self {
        Rule::new(condition, RuleAction::Drop)
    }

    /// Sample `ratio` of the traces for which `condition` holds.
    pub fn ratio_when(condition: Condition, ratio: f64) -> Self {
        Rule::new(condition, RuleAction::Ratio(ratio))
    }

    /// The condition.
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// The action.
    pub fn action(&self) -> RuleAction {
        self.action
    }
}

/// How the [`RuleSampler`] treats a root whose parent is remote (a request
/// that arrived with a `traceparent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RemoteParents {
    /// Follow the caller's sampled flag, so that one trace is sampled in
    /// every process or in none (the default).
    #[default]
    Follow,
    /// Evaluate the rules as for a local root (the caller's decision is
    /// ignored; a trace may then be partial across processes).
    Evaluate,
}

struct Counters {
    sampled_force: Counter,
    sampled_rule: Counter,
    sampled_ratio: Counter,
    dropped_rule: Counter,
    dropped_ratio: Counter,
}

impl Counters {
    fn new() -> Self {
        let c = |decision: &'static str, reason: &'static str| metrics::counter!(names::HEAD_DECISIONS, names::LABEL_DECISION => decision, names::LABEL_REASON => reason);
        Counters {
            sampled_force: c("sampled", names::REASON_FORCE),
            sampled_rule: c("sampled", names::REASON_RULE),
            sampled_ratio: c("sampled", names::REASON_RATIO),
            dropped_rule: c("dropped", names::REASON_RULE),
            dropped_ratio: c("dropped", names::REASON_RATIO),
        }
    }
}

struct Inner {
    honor_force: bool,
    rules: Vec<Rule>,
    fallback: f64,
    remote: RemoteParents,
    counters: Counters,
}

/// A composable head sampler over what is known when a root span starts
/// (its attributes: the request attributes `user.id`,
/// `spanline.customer.id`, `session.id`, `gen_ai.workflow.name`,
/// `spanline.metadata.<key>`, and the force flag
/// `spanline.sampling.force`).
///
/// For a root: the force flag samples (unless disabled with
/// [`RuleSamplerBuilder::honor_force`]); then the first matching rule
/// decides; otherwise the fallback trace-id ratio. A span with a local
/// parent follows the parent; a remote parent is followed or ignored per
/// [`RemoteParents`]. Ratio decisions use the trace id, so every process
/// applying the same ratio decides alike.
///
/// The metrics counter `spanline.sampling.head.decisions{decision,reason}`
/// counts root decisions (registered with the `metrics` recorder current
/// at [`RuleSamplerBuilder::build`]).
///
/// ```
/// use spanline_telemetry::sampling::{Condition, Rule, RuleSampler};
/// use spanline_telemetry::TelemetryBuilder;
///
/// # fn main() -> Result<(), spanline_telemetry::TelemetryError> {
/// let sampler = RuleSampler::builder()
///     .rule(Rule::drop_when(Condition::workflow("healthcheck")))
///     .rule(Rule::sample_when(Condition::metadata("tier", "premium")))
///     .rule(Rule::ratio_when(Condition::workflow("batch-embed"), 0.001))
///     .fallback_ratio(0.05)
///     .build()?;
/// let guard = TelemetryBuilder::new()
///     .traces_exporters([])
///     .prometheus(false)
///     .head_sampler(sampler)
///     .build()?;
/// # drop(guard);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RuleSampler {
    inner: Arc<Inner>,
}

impl fmt::Debug for RuleSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSampler")
            .field("honor_force", &self.inner.honor_force)
            .field("rules", &self.inner.rules)
            .field("fallback", &self.inner.fallback)
            .field("remote", &self.inner.remote)
            .finish()
    }
}

/// Builds a [`RuleSampler`].
#[derive(Clone, Debug)]
pub struct RuleSamplerBuilder {
    honor_force: bool,
    rules: Vec<Rule>,
    fallback: f64,
    remote: RemoteParents,
}

impl Default for RuleSamplerBuilder {
    fn default() -> Self {
        RuleSamplerBuilder {
            honor_force: true,
            rules: Vec::new(),
            fallback: 1.0,
            remote: RemoteParents::Follow,
        }
    }
}

impl RuleSamplerBuilder {
    /// Whether `spanline.sampling.force = true` samples before any rule
    /// (default true).
    pub fn honor_force(mut self, honor: bool) -> Self {
        self.honor_force = honor;
        self
    }

    /// Append a rule; rules are tried in the order added.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The ratio for roots no rule matched (default 1.0).
    pub fn fallback_ratio(mut self, ratio: f64) -> Self {
        self.fallback = ratio;
        self
    }

    /// How roots with a remote parent are treated (default: follow).
    pub fn remote_parents(mut self, policy: RemoteParents) -> Self {
        self.remote = policy;
        self
    }

    /// Validate the ratios (each in `[0, 1]`) and build.
    pub fn build(self) -> Result<RuleSampler, TelemetryError> {
        let check = |r: f64, what: &str| {
            if (0.0..=1.0).contains(&r) {
                Ok(())
            } else {
                Err(TelemetryError::InvalidConfig(format!(
                    "{what}: the ratio {r} is not in [0, 1]"
                )))
            }
        };
        check(self.fallback, "RuleSampler fallback")?;
        for (i, rule) in self.rules.iter().enumerate() {
            if let RuleAction::Ratio(r) = rule.action {
                check(r, &format!("RuleSampler rule {i}"))?;
            }
        }
        Ok(RuleSampler {
            inner: Arc::new(Inner {
                honor_force: self.honor_force,
                rules: self.rules,
                fallback: self.fallback,
                remote: self.remote,
                counters: Counters::new(),
            }),
        })
    }
}

impl RuleSampler {
    /// Start building (force flag honoured, no rules, fallback 1.0).
    pub fn builder() -> RuleSamplerBuilder {
        RuleSamplerBuilder::default()
    }

    /// The decision for a root span with `attributes` in trace `trace_id`
    /// (without parent handling), and the reason label.
    pub fn decide_root(&self, trace_id: TraceId, attributes: &[KeyValue]) -> (bool, &'static str) {
        let inner = &self.inner;
        if inner.honor_force && Condition::forced().matches(attributes) {
            return (true, names::REASON_FORCE);
        }
        for rule in &inner.rules {
            if rule.condition.matches(attributes) {
                let reason = if rule.condition.is_force() {
                    names::REASON_FORCE
                } else {
                    names::REASON_RULE
                };
                return match rule.action {
                    RuleAction::Sample => (true, reason),
                    RuleAction::Drop => (false, reason),
                    RuleAction::Ratio(r) => (trace_id_ratio_keeps(trace_id, r), reason),
                };
            }
        }
        (
            trace_id_ratio_keeps(trace_id, inner.fallback),
            names::REASON_RATIO,
        )
    }
}

fn result(sampled: bool, trace_state: TraceState) -> SamplingResult {
    SamplingResult {
        decision: if sampled {
            SamplingDecision::RecordAndSample
        } else {
            SamplingDecision::Drop
        },
        attributes: Vec::new(),
        trace_state,
    }
}

impl ShouldSample for RuleSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let mut trace_state = TraceState::default();
        if let Some(cx) = parent_context.filter(|cx| cx.span().span_context().is_valid()) {
            let span = cx.span();
            let parent = span.span_context();
            trace_state = parent.trace_state().clone();
            if !parent.is_remote() || self.inner.remote == RemoteParents::Follow {
                return result(parent.is_sampled(), trace_state);
            }
        }
        let (sampled, reason) = self.decide_root(trace_id, attributes);
        let c = &self.inner.counters;
        match (sampled, reason) {
            (true, names::REASON_FORCE) => c.sampled_force.increment(1),
            (true, names::REASON_RULE) => c.sampled_rule.increment(1),
            (true, _) => c.sampled_ratio.increment(1),
            (false, names::REASON_RATIO) => c.dropped_ratio.increment(1),
            (false, _) => c.dropped_rule.increment(1),
        }
        result(sampled, trace_state)
    }
}
