//! The traced producer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanContext, SpanKind, TraceContextExt};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use spanline_core::semconv::general;
use spanline_core::semconv::header as w3c;
use spanline_core::semconv::messaging::{self as m, header as h, metric as mm};
use spanline_core::{RequestContext, StageError, Telemetry};

use crate::headers::{HeaderExtractor, HeaderInjector};
use crate::{EmbeddedBroker, KafkaConfig, KafkaError};

/// A message to send.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub(crate) topic: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) partition: Option<i32>,
    pub(crate) headers: Option<OwnedHeaders>,
    pub(crate) conversation_id: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    /// `payload` to `topic`.
    pub fn new(topic: &'a str, payload: &'a [u8]) -> Self {
        Outgoing {
            topic,
            payload,
            key: None,
            partition: None,
            headers: None,
            conversation_id: None,
        }
    }
    /// The message key (decides the partition unless one is set).
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }
    /// Send to this partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    /// Headers of your own; the trace headers and `spanline-sent-at` are
    /// appended after them.
    pub fn headers(mut self, headers: OwnedHeaders) -> Self {
        self.headers = Some(headers);
        self
    }
    /// The correlation id of a request/reply exchange, recorded on the
    /// span as `messaging.message.conversation_id` (the header is yours to
    /// add).
    pub fn conversation_id(mut self, id: &'a str) -> Self {
        self.conversation_id = Some(id);
        self
    }
}

/// Where a message landed.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The context of its `send` span: the message's creation context
    /// (invalid when the span was not recorded).
    pub span_context: SpanContext,
}

struct Inner {
    producer: FutureProducer,
    telemetry: Telemetry,
    server: Option<(String, i64)>,
    /// The attributes every `send` span carries, built once.
    base_attributes: Vec<KeyValue>,
    sent_ok: Counter,
    sent_err: Counter,
    duration_ok: Histogram,
    duration_err: Histogram,
    // Last: the embedded broker outlives the producer.
    _broker: Option<Arc<EmbeddedBroker>>,
}

/// A Kafka producer whose every message carries its trace.
///
/// Each send opens a PRODUCER span `send {topic}` (messaging conventions:
/// `messaging.system`, operation name and type, destination, and on
/// delivery the partition and offset) as a child of the request context,
/// and appends `traceparent`, `tracestate`, `baggage` and a
/// `spanline-sent-at` header (send time, µs since the Unix epoch, so the
/// consumer measures queue wait whatever the broker's timestamp type).
/// Metrics (`messaging.client.sent.messages`,
/// `messaging.client.operation.duration`, label `outcome`) are registered
/// with the `metrics` recorder current when the producer is built.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct TracedProducer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TracedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedProducer")
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

pub(crate) fn first_server(bootstrap: &str) -> Option<(String, i64)> {
    let first = bootstrap.split(',').next()?.trim();
    let first = first.rsplit_once("://").map_or(first, |(_, rest)| rest);
    let (host, port) = first.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

pub(crate) fn now_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl TracedProducer {
    /// A producer for `config`, emitting through `telemetry`.
    pub fn new(config: &KafkaConfig, telemetry: Telemetry) -> Result<Self, KafkaError> {
        Self::with_defaults(config, telemetry, &[])
    }

    pub(crate) fn with_defaults(
        config: &KafkaConfig,
        telemetry: Telemetry,
        defaults: &[(&str, &str)],
    ) -> Result<Self, KafkaError> {
        let resolved = config.resolve(defaults)?;
        let producer: FutureProducer = resolved.config.create()?;
        let server = first_server(&resolved.bootstrap);
        let mut base_attributes = vec![
            KeyValue::new(m::SYSTEM, m::SYSTEM_KAFKA),
            KeyValue::new(m::OPERATION_NAME, m::op::SEND),
            KeyValue::new(m::OPERATION_TYPE, m::op::SEND),
        ];
        if let Some(id) = config.get("client.id") {
            base_attributes.push(KeyValue::new(m::CLIENT_ID, Arc::<str>::from(id)));
        }
        if let Some((host, port)) = &server {
            base_attributes.push(KeyValue::new(
                general::SERVER_ADDRESS,
                Arc::<str>::from(host.as_str()),
            ));
            base_attributes.push(KeyValue::new(general::SERVER_PORT, *port));
        }
        let label = mm::LABEL_OUTCOME;
        Ok(TracedProducer {
            inner: Arc::new(Inner {
                producer,
                server,
                base_attributes,
                sent_ok: metrics::counter!(mm::SENT_MESSAGES, label => "ok"),
                sent_err: metrics::counter!(mm::SENT_MESSAGES, label => "error"),
                duration_ok: metrics::histogram!(mm::CLIENT_OPERATION_DURATION, label => "ok"),
                duration_err: metrics::histogram!(mm::CLIENT_OPERATION_DURATION, label => "error"),
                telemetry,
                _broker: resolved.broker,
            }),
        })
    }

    /// The underlying rdkafka producer.
    pub fn inner(&self) -> &FutureProducer {
        &self.inner.producer
    }

    /// The telemetry handle.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Send and wait for the delivery report.
    pub async fn send(
        &self,
        ctx: &RequestContext,
        message: Outgoing<'_>,
    ) -> Result<Delivered, KafkaError> {
        self.enqueue(ctx, message)?.await
    }

    /// Hand the message to librdkafka's queue and return a future of its
    /// delivery report (`'static`: keep many in flight for throughput).
    ///
    /// Fails at once with [`KafkaError::QueueFull`] when the local queue is
    /// full (backpressure) and [`KafkaError::MessageTooLarge`] when the
    /// message (with its headers) exceeds `message.max.bytes`.
    pub fn enqueue(
        &self,
        ctx: &RequestContext,
        message: Outgoing<'_>,
    ) -> Result<PendingDelivery, KafkaError> {
        let inner = &*self.inner;
        // One clock read for the span's start and `spanline-sent-at`, at the
        // header's precision (µs), so the consumer's queue-wait span starts
        // exactly where the send span does.
        let sent_us = now_micros(SystemTime::now());
        let now = UNIX_EPOCH + Duration::from_micros(sent_us);
        let span = if inner.telemetry.is_enabled() {
            // Names and values built once per topic and partition; one
            // vector, sized for the attributes added on delivery (partition,
            // offset) and the request's own, so the SDK never regrows it.
            let names = crate::names::topic(message.topic);
            let request = ctx.attributes().span_attributes().len();
            let mut attrs = Vec::with_capacity(inner.base_attributes.len() + 4 + request);
            attrs.extend_from_slice(&inner.base_attributes);
            attrs.push(KeyValue::new(
                m::DESTINATION_NAME,
                names.destination.clone(),
            ));
            if let Some(id) = message.conversation_id {
                attrs.push(KeyValue::new(m::CONVERSATION_ID, id.to_owned()));
            }
            let builder = SpanBuilder::from_name(names.send.clone())
                .with_kind(SpanKind::Producer)
                .with_start_time(now)
                .with_attributes(attrs);
            ctx.start_span(&inner.telemetry, builder)
        } else {
            ctx.clone()
        };
        let mut injector = HeaderInjector::new(match message.headers {
            Some(h) => without_trace_headers(h),
            None => OwnedHeaders::new_with_capacity(4),
        });
        spanline_core::propagation::inject(&span, &mut injector);
        let mut digits = [0u8; 20];
        injector.insert_bytes(h::SENT_AT, crate::names::decimal(sent_us, &mut digits));
        let mut record = FutureRecord::<[u8], [u8]>::to(message.topic)
            .payload(message.payload)
            .headers(injector.into_inner());
        if let Some(key) = message.key {
            record = record.key(key);
        }
        if let Some(p) = message.partition {
            record = record.partition(p);
        }
        let started = Instant::now();
        match inner.producer.send_result(record) {
            Ok(fut) => Ok(PendingDelivery {
                fut,
                span,
                started,
                producer: self.inner.clone(),
            }),
            Err((e, _record)) => {
                let e = KafkaError::from_rdkafka(e);
                finish_err(inner, &span, &e, started);
                Err(e)
            }
        }
    }

    /// Wait until every queued message is delivered or `timeout` passes
    /// (on a blocking thread).
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.inner.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| KafkaError::Shutdown)?
            .map_err(KafkaError::from_rdkafka)
    }
}

/// The caller's headers minus any `traceparent`, `tracestate`, `baggage`
/// or `spanline-sent-at`: the producer writes those itself, and a second
/// `traceparent` would make the consumer reject both.
fn without_trace_headers(headers: OwnedHeaders) -> OwnedHeaders {
    const OURS: [&str; 4] = [w3c::TRACEPARENT, w3c::TRACESTATE, w3c::BAGGAGE, h::SENT_AT];
    let ours = |k: &[u8]| OURS.iter().any(|o| k.eq_ignore_ascii_case(o.as_bytes()));
    let reader = HeaderExtractor::owned(&headers);
    if !reader.iter().any(|(k, _)| ours(k)) {
        return headers;
    }
    let mut out = OwnedHeaders::new_with_capacity(8);
    for (k, v) in reader.iter() {
        // Keys rdkafka cannot write (not UTF-8) cannot have been written
        // through it either; skip them.
        if let (false, Ok(key)) = (ours(k), std::str::from_utf8(k)) {
            out = out.insert(Header { key, value: v });
        }
    }
    out
}

fn finish_err(inner: &Inner, span: &RequestContext, e: &KafkaError, started: Instant) {
    inner.sent_err.increment(1);
    inner.duration_err.record(started.elapsed().as_secs_f64());
    span.record_error(&StageError::new(e.kind(), e.to_string()));
    span.end_span();
}

/// The delivery report of one message; resolves when the broker
/// acknowledged it (or gave up), and ends its `send` span then.
#[must_use = "the delivery report says whether the message was stored"]
pub struct PendingDelivery {
    fut: DeliveryFuture,
    span: RequestContext,
    started: Instant,
    producer: Arc<Inner>,
}

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery").finish_non_exhaustive()
    }
}

impl PendingDelivery {
    /// The context of the message's `send` span.
    pub fn span_context(&self) -> SpanContext {
        self.span.span_context()
    }
}

impl Future for PendingDelivery {
    type Output = Result<Delivered, KafkaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = match Pin::new(&mut this.fut).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(d))) => Ok(d),
            Poll::Ready(Ok(Err((e, _msg)))) => Err(KafkaError::from_rdkafka(e)),
            Poll::Ready(Err(_canceled)) => Err(KafkaError::Shutdown),
        };
        let inner = &*this.producer;
        Poll::Ready(match result {
            Ok(d) => {
                inner.sent_ok.increment(1);
                inner
                    .duration_ok
                    .record(this.started.elapsed().as_secs_f64());
                let otel = this.span.otel_context();
                let span = otel.span();
                if span.is_recording() {
                    // One call (one lock of the span), no formatting.
                    span.set_attributes([
                        KeyValue::new(
                            m::DESTINATION_PARTITION_ID,
                            crate::names::partition(d.partition),
                        ),
                        KeyValue::new(m::KAFKA_OFFSET, d.offset),
                    ]);
                }
                span.end();
                Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                    span_context: this.span.span_context(),
                })
            }
            Err(e) => {
                finish_err(inner, &this.span, &e, this.started);
                Err(e)
            }
        })
    }
}
