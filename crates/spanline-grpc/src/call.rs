//! What the client and server layers share: the per-call record that ends
//! the span and records the duration once the gRPC status is known, and the
//! response body that finds that status (in the headers of a trailers-only
//! response, or in the trailers).

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use metrics::Histogram;
use opentelemetry::trace::{Status as SpanStatus, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use spanline_core::RequestContext;
use spanline_core::semconv::{general, rpc};
use tonic::Code;

/// The canonical upper-case name of a gRPC status code (`rpc.status_code`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

const CODES: usize = 17;

fn code_index(code: Code) -> usize {
    (code as i32).clamp(0, CODES as i32 - 1) as usize
}

fn code_from_headers(headers: &HeaderMap) -> Option<Code> {
    headers
        .get(rpc::GRPC_STATUS)
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// A string attribute value that clones without allocating: static text
/// stays static, owned text becomes reference-counted.
#[allow(
    clippy::ptr_arg,
    reason = "borrowed vs owned is the point: static text stays static"
)]
pub(crate) fn shared_str(s: &Cow<'static, str>) -> Value {
    match s {
        Cow::Borrowed(b) => Value::from(*b),
        Cow::Owned(o) => Value::from(Arc::<str>::from(o.as_str())),
    }
}

/// `base` copied into a vector with room for `extra` more attributes.
pub(crate) fn with_room(base: &[KeyValue], extra: usize) -> Vec<KeyValue> {
    let mut v = Vec::with_capacity(base.len() + extra);
    v.extend_from_slice(base);
    v
}

/// Which side of the call a layer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// Duration histograms for the methods a layer knows, one handle per
/// status code, registered when the layer is built (so a test's local
/// recorder sees them and the hot path never registers).
#[derive(Debug)]
pub(crate) struct MethodTable {
    methods: Vec<(Cow<'static, str>, Cow<'static, str>, [Histogram; CODES])>,
    other: [Histogram; CODES],
}

/// The worker protocol's methods, known to every layer by default.
pub(crate) const WORKER_METHODS: [&str; 2] = [
    "spanline.worker.v1.StageWorker/Run",
    "spanline.worker.v1.StageWorker/Generate",
];

impl MethodTable {
    pub(crate) fn new(side: Side, methods: &[Cow<'static, str>]) -> Self {
        let name = match side {
            Side::Client => rpc::CLIENT_CALL_DURATION,
            Side::Server => rpc::SERVER_CALL_DURATION,
        };
        let handles = |method: &str| -> [Histogram; CODES] {
            std::array::from_fn(|i| {
                metrics::histogram!(
                    name,
                    rpc::METHOD => method.to_owned(),
                    rpc::STATUS_CODE => code_name(Code::from(i as i32)),
                )
            })
        };
        MethodTable {
            methods: methods
                .iter()
                .map(|m| (Cow::Owned(format!("/{m}")), m.clone(), handles(m)))
                .collect(),
            other: handles(rpc::METHOD_OTHER),
        }
    }

    /// `(rpc.method, histograms)` for a request path; unknown paths map to
    /// `_OTHER` (bounded labels against hostile paths).
    pub(crate) fn lookup(&self, path: &str) -> (Cow<'static, str>, Option<usize>) {
        for (i, (p, m, _)) in self.methods.iter().enumerate() {
            if p == path {
                return (m.clone(), Some(i));
            }
        }
        (Cow::Borrowed(rpc::METHOD_OTHER), None)
    }

    /// The method names, in table order, then `_OTHER`: index a per-method
    /// array built from these with [`MethodTable::slot`].
    pub(crate) fn names(&self) -> impl Iterator<Item = &Cow<'static, str>> {
        static OTHER: Cow<'static, str> = Cow::Borrowed(rpc::METHOD_OTHER);
        self.methods
            .iter()
            .map(|(_, m, _)| m)
            .chain(std::iter::once(&OTHER))
    }

    /// The position of a [`MethodTable::lookup`] result in
    /// [`MethodTable::names`].
    pub(crate) fn slot(&self, method: Option<usize>) -> usize {
        method.unwrap_or(self.methods.len())
    }

    fn histogram(&self, method: Option<usize>, code: Code) -> &Histogram {
        let set = match method.and_then(|i| self.methods.get(i)) {
            Some((_, _, h)) => h,
            None => &self.other,
        };
        &set[code_index(code)]
    }
}

/// One call in flight: ends its span and records its duration exactly once.
/// Dropped before a status was seen, the call ends as `CANCELLED`.
pub(crate) struct CallRecord {
    ctx: RequestContext,
    side: Side,
    start: Instant,
    table: Arc<MethodTable>,
    method: Option<usize>,
    header_code: Option<Code>,
    done: bool,
}

impl std::fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecord")
            .field("side", &self.side)
            .field("done", &self.done)
            .finish()
    }
}

impl CallRecord {
    pub(crate) fn new(
        ctx: RequestContext,
        side: Side,
        table: Arc<MethodTable>,
        method: Option<usize>,
    ) -> Self {
        CallRecord {
            ctx,
            side,
            start: Instant::now(),
            table,
            method,
            header_code: None,
            done: false,
        }
    }

    /// Look at the response head: a trailers-only response carries the
    /// status here and the call is complete (the caller may drop the body
    /// unread).
    pub(crate) fn on_headers(&mut self, headers: &HeaderMap) {
        self.header_code = code_from_headers(headers);
        if let Some(code) = self.header_code {
            self.finish(code);
        }
    }

    /// Finish with the status found in the trailers, or in the headers, or
    /// `missing` when neither had one.
    pub(crate) fn finish_from(&mut self, trailers: Option<&HeaderMap>, missing: Code) {
        let code = trailers
            .and_then(code_from_headers)
            .or(self.header_code)
            .unwrap_or(missing);
        self.finish(code);
    }

    /// End the span with `code` and record the duration (once).
    pub(crate) fn finish(&mut self, code: Code) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.start.elapsed().as_secs_f64();
        self.table.histogram(self.method, code).record(elapsed);
        let span = self.ctx.otel_context().span();
        if span.is_recording() {
            let name = code_name(code);
            span.set_attribute(KeyValue::new(rpc::STATUS_CODE, name));
            if code != Code::Ok {
                span.set_attribute(KeyValue::new(general::ERROR_TYPE, name));
            }
            // Per the RPC conventions a server marks only server-side faults
            // as errors; a client marks every non-OK status.
            let is_error = match self.side {
                Side::Client => code != Code::Ok,
                Side::Server => matches!(
                    code,
                    Code::Unknown
                        | Code::DeadlineExceeded
                        | Code::Unimplemented
                        | Code::Internal
                        | Code::Unavailable
                        | Code::DataLoss
                ),
            };
            if is_error {
                // The description is the code name only: status messages
                // may carry content.
                span.set_status(SpanStatus::error(name));
            }
        }
        span.end();
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

pin_project_lite::pin_project! {
    /// The response future of the client and server layers. On a response
    /// it hands the call's record to the [`TracedBody`], which ends the span
    /// when the stream ends; if the inner service fails before responding it
    /// ends the span with its transport-failure code (`UNAVAILABLE` on the
    /// client, `INTERNAL` on the server); dropped first (the caller went
    /// away), the span ends as `CANCELLED`.
    pub struct TracedResponse<F> {
        #[pin]
        inner: F,
        record: Option<CallRecord>,
        on_error: Code,
    }
}

impl<F> TracedResponse<F> {
    pub(crate) fn new(inner: F, record: Option<CallRecord>, on_error: Code) -> Self {
        TracedResponse {
            inner,
            record,
            on_error,
        }
    }
}

impl<F> std::fmt::Debug for TracedResponse<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedResponse").finish_non_exhaustive()
    }
}

impl<F, RB, E> std::future::Future for TracedResponse<F>
where
    F: std::future::Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<TracedBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(response)) => {
                let mut record = this.record.take();
                if let Some(r) = record.as_mut() {
                    r.on_headers(response.headers());
                }
                Poll::Ready(Ok(response.map(|body| TracedBody::new(body, record))))
            }
            Poll::Ready(Err(e)) => {
                if let Some(mut r) = this.record.take() {
                    r.finish(*this.on_error);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends the call's span when the stream ends (with
    /// the status from the trailers) or is dropped (as `CANCELLED`).
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").finish_non_exhaustive()
    }
}

impl<B> TracedBody<B> {
    pub(crate) fn new(inner: B, record: Option<CallRecord>) -> Self {
        TracedBody { inner, record }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(record) = this.record.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        record.finish_from(Some(trailers), Code::Unknown);
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    let code = match record.side {
                        Side::Client => Code::Unavailable,
                        Side::Server => Code::Unknown,
                    };
                    record.finish(code);
                }
                Poll::Ready(None) => record.finish_from(None, Code::Unknown),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
