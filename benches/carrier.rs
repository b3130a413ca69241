//! Inject + extract through the transport-neutral carrier (DESIGN budget:
//! ≤ 400 ns), beside the bare map copy of the same headers and the SDK's own
//! (lax) W3C propagator.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use spanline_core::propagation::{extract, inject};
use spanline_core::{RequestAttributes, RequestContext, TraceCarrier};

fn context() -> RequestContext {
    let parent = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap(),
    );
    let attrs = RequestAttributes::builder()
        .user_id("user-42")
        .session_id("thread-7")
        .build()
        .unwrap();
    RequestContext::new()
        .with_remote_parent(parent)
        .with_attributes(attrs)
}

fn bench_carrier(c: &mut Criterion) {
    let ctx = context();
    let headers = TraceCarrier::from_context(&ctx).headers().clone();
    let sdk = TraceContextPropagator::new();

    let mut g = c.benchmark_group("carrier_inject_extract");
    g.bench_function("bare_map_copy", |b| {
        b.iter(|| {
            let mut m: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in black_box(&headers) {
                m.insert(k.clone(), v.clone());
            }
            black_box(m.get("traceparent").map(String::len))
        })
    });
    g.bench_function("spanline_strict", |b| {
        b.iter(|| {
            let mut carrier = TraceCarrier::default();
            inject(black_box(&ctx), &mut carrier);
            black_box(extract(&carrier))
        })
    });
    let p = ctx.span_context();
    let plain = SpanContext::new(
        p.trace_id(),
        p.span_id(),
        p.trace_flags(),
        true,
        TraceState::default(),
    );
    let bare_ctx = RequestContext::new().with_remote_parent(plain);
    g.bench_function("spanline_strict_traceparent_only", |b| {
        b.iter(|| {
            let mut carrier = TraceCarrier::default();
            inject(black_box(&bare_ctx), &mut carrier);
            black_box(extract(&carrier))
        })
    });
    g.bench_function("sdk_trace_context_lax", |b| {
        b.iter(|| {
            let mut m: std::collections::HashMap<String, String> = Default::default();
            sdk.inject_context(black_box(ctx.otel_context()), &mut m);
            let cx = sdk.extract(&m);
            black_box(cx.span().span_context().is_valid())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_carrier);
criterion_main!(benches);
