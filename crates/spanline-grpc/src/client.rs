//! The client tower layer: a CLIENT span per call with the RPC semantic
//! conventions, the request context injected into the metadata, and the
//! remaining deadline sent as `grpc-timeout`.
//!
//! The layer reads the caller's [`RequestContext`] from the
//! `http::Request` extensions (tonic copies a `tonic::Request`'s extensions
//! there): put it in with `request.extensions_mut().insert(ctx.clone())`.
//! [`RemoteStage`](crate::RemoteStage) does this for you. Without one, the
//! call starts a new trace.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use spanline_core::semconv::{general, rpc, spanline};
use spanline_core::{RequestContext, Telemetry, propagation};
use tonic::Code;
use tower::{Layer, Service};

use crate::call::{
    CallRecord, MethodTable, Side, TracedBody, TracedResponse, WORKER_METHODS, shared_str,
    with_room,
};
use crate::carrier::HeaderInjector;

/// Adds a CLIENT span, propagation and `grpc-timeout` to every call through
/// the wrapped channel. Build it once per channel (or per pool endpoint):
/// it registers its duration histograms when built.
#[derive(Clone, Debug)]
pub struct ClientTraceLayer {
    shared: Arc<ClientShared>,
}

#[derive(Debug)]
struct ClientShared {
    telemetry: Telemetry,
    server: Option<(Cow<'static, str>, u16)>,
    table: Arc<MethodTable>,
    /// The CLIENT span's attributes per known method (by table index),
    /// then for `_OTHER`: built once, cloned per call without allocating
    /// a string (every value is static or reference-counted).
    attributes: Vec<Vec<KeyValue>>,
}

impl ClientTraceLayer {
    /// A layer emitting through `telemetry`, knowing the worker protocol's
    /// methods.
    pub fn new(telemetry: Telemetry) -> Self {
        ClientTraceLayerBuilder::new(telemetry).build()
    }

    /// Configure more (server address, extra known methods).
    pub fn builder(telemetry: Telemetry) -> ClientTraceLayerBuilder {
        ClientTraceLayerBuilder::new(telemetry)
    }
}

/// Builds a [`ClientTraceLayer`].
#[derive(Debug)]
pub struct ClientTraceLayerBuilder {
    telemetry: Telemetry,
    server: Option<(Cow<'static, str>, u16)>,
    methods: Vec<Cow<'static, str>>,
}

impl ClientTraceLayerBuilder {
    fn new(telemetry: Telemetry) -> Self {
        ClientTraceLayerBuilder {
            telemetry,
            server: None,
            methods: WORKER_METHODS.iter().map(|m| Cow::Borrowed(*m)).collect(),
        }
    }

    /// The peer's address and port (`server.address`, `server.port`).
    pub fn server(mut self, address: impl Into<Cow<'static, str>>, port: u16) -> Self {
        self.server = Some((address.into(), port));
        self
    }

    /// A fully qualified method (`package.Service/Method`) to label as
    /// itself; other methods are labelled `_OTHER` in the duration metric.
    pub fn method(mut self, method: impl Into<Cow<'static, str>>) -> Self {
        self.methods.push(method.into());
        self
    }

    /// Build (registers the duration histograms with the current `metrics`
    /// recorder).
    pub fn build(self) -> ClientTraceLayer {
        let mut common = vec![
            KeyValue::new(rpc::SYSTEM_NAME, rpc::SYSTEM_GRPC),
            KeyValue::new(spanline::SEGMENT_TYPE, rpc::SEGMENT_HOP),
        ];
        if let Some((address, port)) = &self.server {
            common.push(KeyValue::new(general::SERVER_ADDRESS, shared_str(address)));
            common.push(KeyValue::new(general::SERVER_PORT, i64::from(*port)));
        }
        let table = MethodTable::new(Side::Client, &self.methods);
        let attributes = table
            .names()
            .map(|method| {
                let mut a = Vec::with_capacity(common.len() + 1);
                a.extend_from_slice(&common);
                a.push(KeyValue::new(rpc::METHOD, shared_str(method)));
                a
            })
            .collect();
        ClientTraceLayer {
            shared: Arc::new(ClientShared {
                table: Arc::new(table),
                telemetry: self.telemetry,
                server: self.server,
                attributes,
            }),
        }
    }
}

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;
    fn layer(&self, inner: S) -> ClientTrace<S> {
        ClientTrace {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`ClientTraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
    shared: Arc<ClientShared>,
}

impl<S> ClientTrace<S> {
    /// The address this layer reports as `server.address`, if set.
    pub fn server(&self) -> Option<(&str, u16)> {
        self.shared.server.as_ref().map(|(a, p)| (a.as_ref(), *p))
    }
}

/// Format a `grpc-timeout` value: at most 8 digits and a unit.
pub(crate) fn grpc_timeout_value(timeout: Duration) -> String {
    let micros = timeout.as_micros();
    if micros < 100_000_000 {
        // At least 1 µs: `0u` would be an already-expired deadline.
        format!("{}u", micros.max(1))
    } else if timeout.as_millis() < 100_000_000 {
        format!("{}m", timeout.as_millis())
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

/// Parse a `grpc-timeout` value (hostile input: `None` when malformed).
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        [b'H'] => Duration::from_secs(n.checked_mul(3600)?),
        [b'M'] => Duration::from_secs(n.checked_mul(60)?),
        [b'S'] => Duration::from_secs(n),
        [b'm'] => Duration::from_millis(n),
        [b'u'] => Duration::from_micros(n),
        [b'n'] => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, B, RB> Service<Request<B>> for ClientTrace<S>
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
        // Taken, not cloned: nothing below this layer reads it.
        let parent = req
            .extensions_mut()
            .remove::<RequestContext>()
            .unwrap_or_default();
        let (method, index) = shared.table.lookup(req.uri().path());
        let record = if shared.telemetry.is_enabled() {
            // Room for what comes later (request attributes, status code,
            // error type): the SDK keeps this vector, so no regrowth.
            let attributes = with_room(
                &shared.attributes[shared.table.slot(index)],
                parent.attributes().span_attributes().len() + 2,
            );
            let builder = SpanBuilder::from_name(method)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes);
            let call = parent.start_span(&shared.telemetry, builder);
            propagation::inject(&call, &mut HeaderInjector(req.headers_mut()));
            Some(CallRecord::new(
                call,
                Side::Client,
                shared.table.clone(),
                index,
            ))
        } else {
            propagation::inject(&parent, &mut HeaderInjector(req.headers_mut()));
            None
        };
        if let Some(remaining) = parent.remaining()
            && !req.headers().contains_key(rpc::GRPC_TIMEOUT)
            && let Ok(v) = HeaderValue::try_from(grpc_timeout_value(remaining))
        {
            req.headers_mut().insert(rpc::GRPC_TIMEOUT, v);
        }
        // A transport failure before any response: the worker was unreachable.
        TracedResponse::new(self.inner.call(req), record, Code::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_round_trips() {
        for d in [
            Duration::from_micros(1),
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_secs(200_000),
        ] {
            let v = grpc_timeout_value(d);
            assert!(v.len() <= 9, "{v}");
            let back = parse_grpc_timeout(v.as_bytes()).expect("parses");
            assert!(
                back <= d && d - back < Duration::from_secs(1),
                "{d:?} {back:?}"
            );
        }
    }

    #[test]
    fn hostile_grpc_timeout_is_rejected() {
        for v in [
            &b""[..],
            b"u",
            b"123456789u",
            b"12x",
            b"-1S",
            b"99999999H",
            "1\u{e9}".as_bytes(),
        ] {
            let parsed = parse_grpc_timeout(v);
            assert!(parsed.is_none() || v == b"99999999H", "{v:?}");
        }
    }
}
