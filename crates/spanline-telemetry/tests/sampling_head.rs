//! Head sampling: the configured ratio holds over a fixed set of trace ids
//! (from the builder and from the environment), parent-based variants follow
//! the parent, and every rule of the rule-based sampler decides as written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, SamplingDecision, ShouldSample};
use spanline_core::semconv::sampling as names;
use spanline_core::{Pipeline, RequestAttributes, RequestContext, StageDescriptor, StageKind};
use spanline_telemetry::sampling::{Condition, RemoteParents, Rule, RuleSampler};
use spanline_telemetry::{SamplerConfig, TelemetryBuilder, TelemetryConfig};

const N: u64 = 20_000;

/// A fixed, well-mixed sequence (splitmix64): the same ids on every run.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn trace_ids(n: u64) -> Vec<TraceId> {
    let mut s = 42;
    (0..n)
        .map(|_| {
            let hi = splitmix(&mut s);
            let lo = splitmix(&mut s);
            TraceId::from((u128::from(hi) << 64) | u128::from(lo))
        })
        .collect()
}

/// Deterministic ids for a real provider.
#[derive(Debug)]
struct FixedIds {
    state: AtomicU64,
}

impl IdGenerator for FixedIds {
    fn new_trace_id(&self) -> TraceId {
        let mut s = self.state.fetch_add(2, Ordering::Relaxed);
        let hi = splitmix(&mut s);
        let lo = splitmix(&mut s);
        TraceId::from((u128::from(hi) << 64) | u128::from(lo))
    }
    fn new_span_id(&self) -> SpanId {
        let mut s = self.state.fetch_add(1, Ordering::Relaxed) ^ 0xABCD;
        SpanId::from(splitmix(&mut s) | 1)
    }
}

fn sampled_fraction(sampler: &dyn ShouldSample, attrs: &[KeyValue]) -> f64 {
    let kept = trace_ids(N)
        .into_iter()
        .filter(|id| {
            sampler
                .should_sample(None, *id, "root", &SpanKind::Internal, attrs, &[])
                .decision
                == SamplingDecision::RecordAndSample
        })
        .count();
    kept as f64 / N as f64
}

/// ±2.5 points around the ratio: over 20,000 ids the standard deviation is
/// at most 0.35 points, so this is ~7σ, and the ids are fixed anyway.
fn assert_near(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 0.025,
        "sampled fraction {got:.4} is not near the configured {want}"
    );
}

#[test]
fn ratio_sampler_matches_its_ratio() {
    for ratio in [0.01, 0.1, 0.25, 0.5, 0.9] {
        let s = SamplerConfig::TraceIdRatio(ratio).to_sampler();
        assert_near(sampled_fraction(&s, &[]), ratio);
    }
    assert_eq!(
        sampled_fraction(&SamplerConfig::TraceIdRatio(0.0).to_sampler(), &[]),
        0.0
    );
    assert_eq!(
        sampled_fraction(&SamplerConfig::AlwaysOn.to_sampler(), &[]),
        1.0
    );
    assert_eq!(
        sampled_fraction(&SamplerConfig::AlwaysOff.to_sampler(), &[]),
        0.0
    );
}

#[test]
fn environment_ratio_through_a_real_provider() {
    let env: HashMap<&str, &str> = [
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.2"),
    ]
    .into();
    let config =
        TelemetryConfig::from_lookup(|k| env.get(k).map(|v| (*v).to_owned())).expect("valid");
    assert_eq!(config.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.2));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(config.sampler.to_sampler())
        .with_id_generator(FixedIds {
            state: AtomicU64::new(7),
        })
        .build();
    let tracer = provider.tracer("ratio");
    let mut roots = 0u64;
    let mut children_follow = true;
    for _ in 0..N {
        tracer.in_span("root", |cx| {
            let sampled = cx.span().span_context().is_sampled();
            roots += u64::from(sampled);
            tracer.in_span("child", |child| {
                children_follow &= child.span().span_context().is_sampled() == sampled;
            });
        });
    }
    assert_near(roots as f64 / N as f64, 0.2);
    assert!(children_follow, "children follow their root's decision");
}

fn remote(sampled: bool) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
        SpanId::from(0xb7ad_6b71_6920_3331),
        flags,
        true,
        TraceState::default(),
    ))
}

fn decide(sampler: &dyn ShouldSample, parent: Option<&Context>, attrs: &[KeyValue]) -> bool {
    sampler
        .should_sample(
            parent,
            TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c),
            "span",
            &SpanKind::Internal,
            attrs,
            &[],
        )
        .decision
        == SamplingDecision::RecordAndSample
}

#[test]
fn parent_based_variants_follow_the_parent() {
    for cfg in [
        SamplerConfig::ParentBasedAlwaysOn,
        SamplerConfig::ParentBasedAlwaysOff,
        SamplerConfig::ParentBasedTraceIdRatio(0.0),
        SamplerConfig::ParentBasedTraceIdRatio(1.0),
    ] {
        let s = cfg.to_sampler();
        assert!(decide(&s, Some(&remote(true)), &[]), "{cfg:?}");
        assert!(!decide(&s, Some(&remote(false)), &[]), "{cfg:?}");
    }
    assert!(decide(
        &SamplerConfig::ParentBasedAlwaysOn.to_sampler(),
        None,
        &[]
    ));
    assert!(!decide(
        &SamplerConfig::ParentBasedAlwaysOff.to_sampler(),
        None,
        &[]
    ));
}

fn premium_sampler() -> RuleSampler {
    RuleSampler::builder()
        .rule(Rule::drop_when(Condition::workflow("healthcheck")))
        .rule(Rule::sample_when(Condition::metadata("tier", "premium")))
        .rule(Rule::sample_when(Condition::user_in(["alice", "bob"])))
        .rule(Rule::sample_when(Condition::customer_id("acme")))
        .rule(Rule::sample_when(Condition::session_id("s-debug")))
        .rule(Rule::ratio_when(Condition::workflow("bulk"), 0.5))
        .fallback_ratio(0.0)
        .build()
        .expect("valid")
}

#[test]
fn each_rule_decides() {
    let s = premium_sampler();
    let kv = KeyValue::new;
    assert!(decide(&s, None, &[kv("spanline.metadata.tier", "premium")]));
    assert!(!decide(&s, None, &[kv("spanline.metadata.tier", "free")]));
    assert!(decide(&s, None, &[kv("user.id", "bob")]));
    assert!(!decide(&s, None, &[kv("user.id", "carol")]));
    assert!(decide(&s, None, &[kv("spanline.customer.id", "acme")]));
    assert!(decide(&s, None, &[kv("session.id", "s-debug")]));
    assert!(!decide(&s, None, &[]), "fallback ratio 0");
    // The first matching rule wins: a premium health check is dropped.
    assert!(!decide(
        &s,
        None,
        &[
            kv("gen_ai.workflow.name", "healthcheck"),
            kv("spanline.metadata.tier", "premium")
        ]
    ));
    // The force flag wins over every rule...
    assert!(decide(
        &s,
        None,
        &[
            kv("gen_ai.workflow.name", "healthcheck"),
            KeyValue::new(names::FORCE, true)
        ]
    ));
    assert!(!decide(&s, None, &[KeyValue::new(names::FORCE, false)]));
    // ...unless disabled.
    let no_force = RuleSampler::builder()
        .honor_force(false)
        .fallback_ratio(0.0)
        .build()
        .expect("valid");
    assert!(!decide(
        &no_force,
        None,
        &[KeyValue::new(names::FORCE, true)]
    ));
    // A ratio rule applies its ratio to the matching traces only.
    assert_near(
        sampled_fraction(&s, &[kv("gen_ai.workflow.name", "bulk")]),
        0.5,
    );
    // Combinators.
    let c = Condition::all([
        Condition::metadata("tier", "premium"),
        Condition::negate(Condition::workflow("healthcheck")),
    ]);
    assert!(c.matches(&[kv("spanline.metadata.tier", "premium")]));
    assert!(!c.matches(&[
        kv("spanline.metadata.tier", "premium"),
        kv("gen_ai.workflow.name", "healthcheck")
    ]));
    assert!(Condition::exists("user.id").matches(&[KeyValue::new("user.id", 7)]));
    assert!(Condition::attribute("retries", "3").matches(&[KeyValue::new("retries", 3)]));
}

#[test]
fn fallback_ratio_matches_its_ratio() {
    let s = RuleSampler::builder()
        .fallback_ratio(0.1)
        .build()
        .expect("valid");
    assert_near(sampled_fraction(&s, &[]), 0.1);
}

#[test]
fn parents_local_and_remote() {
    let s = premium_sampler();
    let free = [KeyValue::new("spanline.metadata.tier", "free")];
    let premium = [KeyValue::new("spanline.metadata.tier", "premium")];
    // Follow (default): the caller's decision wins.
    assert!(decide(&s, Some(&remote(true)), &free));
    assert!(!decide(&s, Some(&remote(false)), &premium));
    // Evaluate: the rules decide.
    let eval = RuleSampler::builder()
        .rule(Rule::sample_when(Condition::metadata("tier", "premium")))
        .fallback_ratio(0.0)
        .remote_parents(RemoteParents::Evaluate)
        .build()
        .expect("valid");
    assert!(!decide(&eval, Some(&remote(true)), &free));
    assert!(decide(&eval, Some(&remote(false)), &premium));
    // A local parent is always followed.
    let local = Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(1),
        SpanId::from(1),
        TraceFlags::default(),
        false,
        TraceState::default(),
    ));
    assert!(!decide(&eval, Some(&local), &premium));
}

#[test]
fn invalid_ratios_are_typed_errors() {
    assert!(RuleSampler::builder().fallback_ratio(1.5).build().is_err());
    assert!(
        RuleSampler::builder()
            .rule(Rule::ratio_when(Condition::workflow("x"), -0.1))
            .build()
            .is_err()
    );
}

/// A real pipeline: request attributes reach the root span's sampler.
#[tokio::test]
async fn pipeline_roots_are_sampled_by_request_attributes() {
    let sampler = RuleSampler::builder()
        .rule(Rule::sample_when(Condition::metadata("tier", "premium")))
        .fallback_ratio(0.0)
        .build()
        .expect("valid");
    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .prometheus(false)
        .recorder(1_000)
        .head_sampler(sampler)
        .build()
        .expect("built");
    let pipeline = Pipeline::builder("rag")
        .telemetry(guard.telemetry())
        .then(spanline_core::stage_fn(
            StageDescriptor::new("echo", StageKind::Custom),
            |x: u32, _ctx| async move { Ok(x) },
        ))
        .build();
    for tier in ["premium", "free", "premium"] {
        let attrs = RequestAttributes::builder()
            .metadata("tier", tier)
            .build()
            .expect("valid");
        let ctx = RequestContext::new().with_attributes(attrs);
        pipeline.run(1, &ctx).await.expect("ran");
    }
    let recorder = guard.recorder().expect("recorder");
    let roots = recorder.roots();
    assert_eq!(roots.len(), 2, "only the premium requests are sampled");
    for root in &roots {
        assert_eq!(recorder.children_of(root).len(), 1, "stage spans follow");
    }
    assert_eq!(recorder.len(), 4);
}
