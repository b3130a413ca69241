//! W3C Trace Context and Baggage across process boundaries, strictly.
//!
//! Transports (Kafka headers, gRPC metadata) implement OpenTelemetry's
//! [`Injector`] and [`Extractor`] on a newtype over their header map and call
//! [`inject`] / [`extract`]. [`TraceCarrier`] is the transport-neutral form:
//! a serialisable map that can ride inside any payload.
//!
//! Extraction validates before it trusts: header sizes are checked before
//! parsing, a malformed or duplicated `traceparent` starts a new trace,
//! `tracestate` is dropped when invalid or when `traceparent` is, and baggage
//! is read member by member within its limits. Nothing here panics on input.

pub(crate) mod baggage;
mod traceparent;

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};
use serde::{Deserialize, Serialize};

pub use baggage::{
    MAX_BYTES as MAX_BAGGAGE_BYTES, MAX_MEMBERS as MAX_BAGGAGE_MEMBERS, percent_decode,
};
pub use traceparent::{
    MAX_TRACEPARENT_LEN, MAX_TRACESTATE_LEN, MAX_TRACESTATE_MEMBERS, TraceparentError,
    format_traceparent, parse_traceparent, parse_tracestate,
};

use crate::context::{RequestAttributes, RequestAttributesBuilder, RequestContext};
use crate::semconv::{header, metric};

/// Write the request's trace context and attributes into `injector`.
///
/// Writes `traceparent` (and `tracestate` when non-empty) when the request
/// has a valid span, and `baggage` when it has attributes.
pub fn inject(ctx: &RequestContext, injector: &mut dyn Injector) {
    let otel = ctx.otel_context();
    let span = otel.span();
    let cx = span.span_context();
    if cx.is_valid() {
        injector.set(header::TRACEPARENT, format_traceparent(cx));
        let state = cx.trace_state().header();
        if !state.is_empty() {
            injector.set(header::TRACESTATE, state);
        }
    }
    let baggage = ctx.attributes().baggage_header();
    if !baggage.is_empty() {
        injector.set(header::BAGGAGE, baggage.to_owned());
    }
}

/// What [`extract`] found.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// The remote parent, when a valid `traceparent` arrived.
    pub parent: Option<SpanContext>,
    /// Request attributes decoded from baggage (untrusted input).
    pub attributes: RequestAttributes,
    /// What was rejected on the way.
    pub rejected: Rejected,
}

/// What extraction rejected (for diagnostics; also counted in the
/// `spanline.propagation.rejected` metric).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejected {
    /// Why `traceparent` was rejected, if it was present and invalid.
    pub traceparent: Option<TraceparentError>,
    /// Whether a present `tracestate` was dropped.
    pub tracestate: bool,
    /// Baggage members dropped (malformed or over the limits).
    pub baggage_members: usize,
}

impl Extracted {
    /// A request context continuing the remote trace with its attributes.
    pub fn into_context(self) -> RequestContext {
        let ctx = RequestContext::new().with_attributes(self.attributes);
        match self.parent {
            Some(parent) => ctx.with_remote_parent(parent),
            None => ctx,
        }
    }
}

/// Read a remote trace context and request attributes from `extractor`.
pub fn extract(extractor: &dyn Extractor) -> Extracted {
    let mut out = Extracted::default();
    let parent = match extractor.get_all(header::TRACEPARENT) {
        None => None,
        Some(values) if values.is_empty() => None,
        Some(values) if values.len() > 1 => Some(Err(TraceparentError::Duplicate)),
        Some(values) => Some(parse_traceparent(values[0].trim())),
    };
    match parent {
        Some(Ok((trace_id, span_id, flags))) => {
            let state = match extractor.get(header::TRACESTATE) {
                Some(v) => parse_tracestate(v).unwrap_or_else(|| {
                    out.rejected.tracestate = true;
                    TraceState::default()
                }),
                None => TraceState::default(),
            };
            out.parent = Some(SpanContext::new(trace_id, span_id, flags, true, state));
        }
        Some(Err(e)) => {
            out.rejected.traceparent = Some(e);
            out.rejected.tracestate = extractor.get(header::TRACESTATE).is_some();
            count_rejection("traceparent");
        }
        None => {}
    }
    if let Some(value) = extractor.get(header::BAGGAGE) {
        let decoded = baggage::decode(value);
        out.rejected.baggage_members = decoded.rejected;
        if decoded.rejected > 0 {
            count_rejection("baggage");
        }
        // Members were bounded by decode, so they are kept as decoded.
        out.attributes = RequestAttributesBuilder::from_baggage(decoded.members).build_decoded();
    }
    out
}

fn count_rejection(what: &'static str) {
    metrics::counter!(metric::CARRIER_REJECTED, metric::LABEL_REASON => what).increment(1);
}

/// Transport-neutral W3C headers: a small map, serialisable, for payloads
/// that carry their own trace context (a job record, a remote call body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceCarrier(BTreeMap<String, String>);

impl TraceCarrier {
    /// Capture `ctx`'s trace context and attributes.
    pub fn from_context(ctx: &RequestContext) -> Self {
        let mut carrier = TraceCarrier::default();
        inject(ctx, &mut carrier);
        carrier
    }

    /// Extract what the carrier holds (strictly).
    pub fn extract(&self) -> Extracted {
        extract(self)
    }

    /// The headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<BTreeMap<String, String>> for TraceCarrier {
    fn from(map: BTreeMap<String, String>) -> Self {
        TraceCarrier(map)
    }
}

impl Injector for TraceCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_ascii_lowercase(), value);
    }
}

impl Extractor for TraceCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
