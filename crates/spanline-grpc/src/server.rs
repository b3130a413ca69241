//! The server tower layer: extracts the caller's context, opens a SERVER
//! span, records the gRPC status, and hands the handler a
//! [`RequestContext`] in the request extensions.
//!
//! Two trust modes ([`EdgeMode`]):
//!
//! - [`EdgeMode::Trusted`] (default, for calls between your own services):
//!   the SERVER span continues the caller's trace and the request
//!   attributes travel on from the inbound baggage.
//! - [`EdgeMode::Untrusted`] (for a port reachable by callers you do not
//!   control): the SERVER span starts a new trace with a *link* to the
//!   inbound context (so the caller's trace can still be found), and the
//!   inbound baggage is dropped, so a caller cannot inject user ids or
//!   metadata into your spans or force its sampling decision on you.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Link, SpanBuilder, SpanKind};
use spanline_core::semconv::rpc;
use spanline_core::{RequestContext, Telemetry, propagation};
use tonic::Code;
use tower::{Layer, Service};

use crate::call::{
    CallRecord, MethodTable, Side, TracedBody, TracedResponse, WORKER_METHODS, shared_str,
    with_room,
};
use crate::carrier::HeaderExtractor;
use crate::client::parse_grpc_timeout;

/// Whether the server trusts its callers' trace context and baggage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EdgeMode {
    /// Continue the caller's trace; keep its request attributes.
    #[default]
    Trusted,
    /// Start a new root linked to the caller's context; drop its baggage.
    Untrusted,
}

/// Extracts context and opens a SERVER span per call. Build it once per
/// server: it registers its duration histograms when built.
#[derive(Clone, Debug)]
pub struct ServerTraceLayer {
    shared: Arc<ServerShared>,
}

#[derive(Debug)]
struct ServerShared {
    telemetry: Telemetry,
    edge: EdgeMode,
    table: Arc<MethodTable>,
    /// The SERVER span's attributes per method slot (see
    /// [`MethodTable::slot`]), built once.
    attributes: Vec<Vec<KeyValue>>,
}

impl ServerTraceLayer {
    /// A trusted-edge layer emitting through `telemetry`, knowing the worker
    /// protocol's methods.
    pub fn new(telemetry: Telemetry) -> Self {
        ServerTraceLayerBuilder::new(telemetry).build()
    }

    /// Configure more (edge mode, extra known methods).
    pub fn builder(telemetry: Telemetry) -> ServerTraceLayerBuilder {
        ServerTraceLayerBuilder::new(telemetry)
    }
}

/// Builds a [`ServerTraceLayer`].
#[derive(Debug)]
pub struct ServerTraceLayerBuilder {
    telemetry: Telemetry,
    edge: EdgeMode,
    methods: Vec<Cow<'static, str>>,
}

impl ServerTraceLayerBuilder {
    fn new(telemetry: Telemetry) -> Self {
        ServerTraceLayerBuilder {
            telemetry,
            edge: EdgeMode::Trusted,
            methods: WORKER_METHODS.iter().map(|m| Cow::Borrowed(*m)).collect(),
        }
    }

    /// Set the trust mode.
    pub fn edge(mut self, edge: EdgeMode) -> Self {
        self.edge = edge;
        self
    }

    /// A fully qualified method (`package.Service/Method`) this server
    /// serves. Calls to methods not listed are named and labelled `_OTHER`
    /// (a hostile path must not create a metric series).
    pub fn method(mut self, method: impl Into<Cow<'static, str>>) -> Self {
        self.methods.push(method.into());
        self
    }

    /// Build (registers the duration histograms with the current `metrics`
    /// recorder).
    pub fn build(self) -> ServerTraceLayer {
        let table = MethodTable::new(Side::Server, &self.methods);
        let untrusted = self.edge == EdgeMode::Untrusted;
        let attributes = table
            .names()
            .map(|method| {
                let mut a = vec![
                    KeyValue::new(rpc::SYSTEM_NAME, rpc::SYSTEM_GRPC),
                    KeyValue::new(rpc::METHOD, shared_str(method)),
                ];
                if untrusted {
                    a.push(KeyValue::new(rpc::UNTRUSTED_EDGE, true));
                }
                a
            })
            .collect();
        ServerTraceLayer {
            shared: Arc::new(ServerShared {
                table: Arc::new(table),
                telemetry: self.telemetry,
                edge: self.edge,
                attributes,
            }),
        }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;
    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`ServerTraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    shared: Arc<ServerShared>,
}

/// The context a server handler should use: the one the server layer put
/// in the request extensions, or (without the layer) one extracted from the
/// metadata directly.
pub fn request_context<T>(request: &tonic::Request<T>) -> RequestContext {
    match request.extensions().get::<RequestContext>() {
        Some(ctx) => ctx.clone(),
        None => crate::carrier::extract_metadata(request.metadata()).into_context(),
    }
}

impl<S, B, RB> Service<Request<B>> for ServerTrace<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = TracedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let extracted = propagation::extract(&HeaderExtractor::new(req.headers()));
        let (ctx, inbound) = match shared.edge {
            EdgeMode::Trusted => (extracted.into_context(), None),
            EdgeMode::Untrusted => (RequestContext::new(), extracted.parent),
        };
        let mut ctx = ctx.with_content_capture(shared.telemetry.captures_content());
        if let Some(timeout) = req
            .headers()
            .get(rpc::GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        {
            ctx = ctx.with_timeout(timeout);
        }
        let (method, index) = shared.table.lookup(req.uri().path());
        let record = if shared.telemetry.is_enabled() {
            // Room for the request attributes, the worker's stage name, the
            // status code and the error type (the SDK keeps this vector).
            let attributes = with_room(
                &shared.attributes[shared.table.slot(index)],
                ctx.attributes().span_attributes().len() + 3,
            );
            let mut builder = SpanBuilder::from_name(method).with_kind(SpanKind::Server);
            if let Some(parent) = inbound {
                builder = builder.with_links(vec![Link::with_context(parent)]);
            }
            let call = ctx.start_span(&shared.telemetry, builder.with_attributes(attributes));
            ctx = call.clone();
            Some(CallRecord::new(
                call,
                Side::Server,
                shared.table.clone(),
                index,
            ))
        } else {
            None
        };
        req.extensions_mut().insert(ctx);
        // The service failed without a response: an internal error.
        TracedResponse::new(self.inner.call(req), record, Code::Internal)
    }
}
