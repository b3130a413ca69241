//! The traced consumer: one `process` span per message (or per batch),
//! queue wait as its own span and histogram, offsets stored only when the
//! caller says the message is done.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Histogram};
use opentelemetry::trace::{Link, SpanBuilder, SpanContext, SpanKind, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use spanline_core::propagation::Extracted;
use spanline_core::semconv::messaging::{self as m, header as h, metric as mm};
use spanline_core::semconv::spanline::SEGMENT_TYPE;
use spanline_core::{RequestContext, StageError, Telemetry};

use crate::headers::{HeaderExtractor, extract_headers};
use crate::names::TopicNames;
use crate::{EmbeddedBroker, KafkaConfig, KafkaError};

/// How a consumer gets its partitions.
#[derive(Debug, Clone)]
pub enum Assignment {
    /// Join the consumer group and share the topics' partitions with its
    /// other members (scale-out; joining takes a few seconds).
    Subscribe(Vec<String>),
    /// Read these `(topic, partition)`s directly, from the group's
    /// committed offsets (else `auto.offset.reset`). Starts in well under a
    /// second; no rebalancing.
    Assign(Vec<(String, i32)>),
}

/// Record the interval a message waited in the broker: a span
/// `spanline.queue {topic}` (`spanline.segment.type = queue`) from the
/// sender's `spanline-sent-at` to `now`, child of the message's creation
/// context, and a `spanline.messaging.queue.wait` sample. Returns the wait.
pub(crate) fn record_queue_wait(
    telemetry: &Telemetry,
    parent: &RequestContext,
    topic: &str,
    headers: &HeaderExtractor<'_>,
    now: SystemTime,
    histogram: &Histogram,
) -> Option<Duration> {
    let sent_us: u64 = headers.get_str(h::SENT_AT)?.parse().ok()?;
    let sent_at = UNIX_EPOCH.checked_add(Duration::from_micros(sent_us))?;
    // Clocks of two hosts may disagree: never a negative wait.
    let (start, wait) = match now.duration_since(sent_at) {
        Ok(wait) => (sent_at, wait),
        Err(_) => (now, Duration::ZERO),
    };
    histogram.record(wait.as_secs_f64());
    if telemetry.is_enabled() {
        let names = crate::names::topic(topic);
        let builder = SpanBuilder::from_name(names.queue.clone())
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new(SEGMENT_TYPE, m::segment::QUEUE),
                KeyValue::new(m::SYSTEM, m::SYSTEM_KAFKA),
                KeyValue::new(m::DESTINATION_NAME, names.destination.clone()),
            ]);
        let span = parent.start_span(telemetry, builder);
        span.otel_context().span().end_with_timestamp(now);
    }
    Some(wait)
}

pub(crate) struct ConsumerMetrics {
    pub(crate) consumed: Counter,
    pub(crate) queue_wait: Histogram,
    pub(crate) process_ok: Histogram,
    pub(crate) process_err: Histogram,
}

impl ConsumerMetrics {
    pub(crate) fn new() -> Self {
        ConsumerMetrics {
            consumed: metrics::counter!(mm::CONSUMED_MESSAGES),
            queue_wait: metrics::histogram!(mm::QUEUE_WAIT),
            process_ok: metrics::histogram!(mm::PROCESS_DURATION, mm::LABEL_OUTCOME => "ok"),
            process_err: metrics::histogram!(mm::PROCESS_DURATION, mm::LABEL_OUTCOME => "error"),
        }
    }
}

pub(crate) struct ConsumerInner {
    pub(crate) consumer: StreamConsumer,
    pub(crate) telemetry: Telemetry,
    pub(crate) group: String,
    /// `messaging.consumer.group.name`, built once.
    group_value: Value,
    pub(crate) metrics: ConsumerMetrics,
    _broker: Option<Arc<EmbeddedBroker>>,
}

/// A Kafka consumer that continues each message's trace.
///
/// For every message, [`TracedConsumer::recv`] extracts the trace headers
/// (strictly), records the queue wait, and opens a CONSUMER span
/// `process {topic}` whose **parent** is the message's `send` span (the
/// rule for single messages; batches link instead, see
/// [`TracedConsumer::recv_batch`]). Offsets are stored only by
/// [`Received::done`] and committed by librdkafka's auto-commit (stored
/// offsets only: `enable.auto.offset.store=false`), and on
/// [`TracedConsumer::commit`]: at-least-once.
#[derive(Clone)]
pub struct TracedConsumer {
    pub(crate) inner: Arc<ConsumerInner>,
}

impl std::fmt::Debug for TracedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedConsumer")
            .field("group", &self.inner.group)
            .finish_non_exhaustive()
    }
}

impl TracedConsumer {
    /// A consumer in `group` reading `assignment`. Call it inside a tokio
    /// runtime (rdkafka's stream consumer spawns a task when created).
    ///
    /// Defaults (each overridable through the configuration):
    /// `enable.auto.offset.store=false`, `enable.auto.commit=true`,
    /// `auto.commit.interval.ms=200`, `auto.offset.reset=earliest`,
    /// `fetch.wait.max.ms=10`.
    pub fn new(
        config: &KafkaConfig,
        telemetry: Telemetry,
        group: &str,
        assignment: Assignment,
    ) -> Result<Self, KafkaError> {
        let resolved = config.resolve(&[
            ("group.id", group),
            ("enable.auto.offset.store", "false"),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "200"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "10"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ])?;
        let consumer: StreamConsumer = resolved.config.create()?;
        match &assignment {
            Assignment::Subscribe(topics) => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&topics)?;
            }
            Assignment::Assign(parts) => {
                let mut tpl = TopicPartitionList::new();
                for (topic, partition) in parts {
                    tpl.add_partition_offset(topic, *partition, Offset::Stored)?;
                }
                consumer.assign(&tpl)?;
            }
        }
        Ok(TracedConsumer {
            inner: Arc::new(ConsumerInner {
                consumer,
                group: group.to_owned(),
                group_value: Value::from(Arc::<str>::from(group)),
                metrics: ConsumerMetrics::new(),
                telemetry,
                _broker: resolved.broker,
            }),
        })
    }

    /// The underlying rdkafka consumer.
    pub fn inner(&self) -> &StreamConsumer {
        &self.inner.consumer
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Wait for the next message and start processing it.
    pub async fn recv(&self) -> Result<Received<'_>, KafkaError> {
        let msg = self.inner.consumer.recv().await?;
        Ok(self.begin(msg))
    }

    fn begin<'c>(&'c self, msg: BorrowedMessage<'c>) -> Received<'c> {
        let inner = &*self.inner;
        inner.metrics.consumed.increment(1);
        let now = SystemTime::now();
        let headers = HeaderExtractor::new(msg.headers());
        let extracted = spanline_core::propagation::extract(&headers);
        let creation = extracted.parent.clone();
        let parent = extracted.into_context();
        let queue_wait = record_queue_wait(
            &inner.telemetry,
            &parent,
            msg.topic(),
            &headers,
            now,
            &inner.metrics.queue_wait,
        );
        let ctx = if inner.telemetry.is_enabled() {
            let names = crate::names::topic(msg.topic());
            let mut attrs = self.process_attributes(&names);
            attrs.push(KeyValue::new(
                m::DESTINATION_PARTITION_ID,
                crate::names::partition(msg.partition()),
            ));
            attrs.push(KeyValue::new(m::KAFKA_OFFSET, msg.offset()));
            if let Some(id) = headers.get_str(h::CORRELATION_ID) {
                attrs.push(KeyValue::new(m::CONVERSATION_ID, id.to_owned()));
            }
            let builder = SpanBuilder::from_name(names.process.clone())
                .with_kind(SpanKind::Consumer)
                .with_start_time(now)
                .with_attributes(attrs);
            parent.start_span(&inner.telemetry, builder)
        } else {
            parent
        };
        Received {
            msg,
            ctx,
            consumer: self,
            queue_wait,
            creation,
            started: Instant::now(),
        }
    }

    fn process_attributes(&self, names: &TopicNames) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(9);
        attrs.extend([
            KeyValue::new(m::SYSTEM, m::SYSTEM_KAFKA),
            KeyValue::new(m::OPERATION_NAME, m::op::PROCESS),
            KeyValue::new(m::OPERATION_TYPE, m::op::PROCESS),
            KeyValue::new(m::DESTINATION_NAME, names.destination.clone()),
            KeyValue::new(m::CONSUMER_GROUP_NAME, self.inner.group_value.clone()),
        ]);
        attrs
    }

    /// Receive up to `max` messages, waiting at most `wait` after the first,
    /// and process them as one batch: one CONSUMER span `process {topic}`
    /// with `messaging.batch.message_count`, a **link** to each message's
    /// creation context (a batch has many parents), and a queue-wait span
    /// per message under that message's creation context. The span is a
    /// child of `ctx` (the consumer's own context).
    pub async fn recv_batch(
        &self,
        ctx: &RequestContext,
        max: usize,
        wait: Duration,
    ) -> Result<Batch<'_>, KafkaError> {
        let inner = &*self.inner;
        let first = inner.consumer.recv().await?;
        let mut msgs = vec![first];
        let deadline = tokio::time::Instant::now() + wait;
        while msgs.len() < max.max(1) {
            match tokio::time::timeout_at(deadline, inner.consumer.recv()).await {
                Ok(Ok(m)) => msgs.push(m),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        let now = SystemTime::now();
        let mut links = Vec::with_capacity(msgs.len());
        for msg in &msgs {
            inner.metrics.consumed.increment(1);
            let headers = HeaderExtractor::new(msg.headers());
            let extracted: Extracted = spanline_core::propagation::extract(&headers);
            if let Some(parent) = &extracted.parent {
                links.push(Link::with_context(parent.clone()));
            }
            let parent = extracted.into_context();
            record_queue_wait(
                &inner.telemetry,
                &parent,
                msg.topic(),
                &headers,
                now,
                &inner.metrics.queue_wait,
            );
        }
        let span = if inner.telemetry.is_enabled() {
            let names = crate::names::topic(msgs[0].topic());
            let mut attrs = self.process_attributes(&names);
            attrs.push(KeyValue::new(
                m::BATCH_MESSAGE_COUNT,
                i64::try_from(msgs.len()).unwrap_or(i64::MAX),
            ));
            let builder = SpanBuilder::from_name(names.process.clone())
                .with_kind(SpanKind::Consumer)
                .with_start_time(now)
                .with_attributes(attrs)
                .with_links(links);
            ctx.start_span(&inner.telemetry, builder)
        } else {
            ctx.clone()
        };
        Ok(Batch {
            msgs,
            ctx: span,
            consumer: self,
            started: Instant::now(),
        })
    }

    /// Commit the stored offsets now (synchronously, on a blocking thread).
    pub async fn commit(&self) -> Result<(), KafkaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            match inner.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => Ok(()),
                // Nothing stored since the last commit.
                Err(e)
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) =>
                {
                    Ok(())
                }
                Err(e) => Err(KafkaError::from_rdkafka(e)),
            }
        })
        .await
        .map_err(|_| KafkaError::Shutdown)?
    }

    fn store(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        self.inner
            .consumer
            .store_offset(topic, partition, offset)
            .map_err(KafkaError::from_rdkafka)
    }
}

/// A message being processed. Its offset is stored only by
/// [`Received::done`]; dropping it without calling `done` leaves the
/// message to be redelivered (after a restart or rebalance).
pub struct Received<'c> {
    msg: BorrowedMessage<'c>,
    ctx: RequestContext,
    consumer: &'c TracedConsumer,
    queue_wait: Option<Duration>,
    creation: Option<SpanContext>,
    started: Instant,
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("topic", &self.msg.topic())
            .field("partition", &self.msg.partition())
            .field("offset", &self.msg.offset())
            .finish_non_exhaustive()
    }
}

impl<'c> Received<'c> {
    /// The message.
    pub fn message(&self) -> &BorrowedMessage<'c> {
        &self.msg
    }
    /// Its payload (empty when null).
    pub fn payload(&self) -> &[u8] {
        self.msg.payload().unwrap_or_default()
    }
    /// Its key.
    pub fn key(&self) -> Option<&[u8]> {
        self.msg.key()
    }
    /// Its topic.
    pub fn topic(&self) -> &str {
        self.msg.topic()
    }
    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.msg.partition()
    }
    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.msg.offset()
    }
    /// Its headers, read defensively.
    pub fn headers(&self) -> HeaderExtractor<'_> {
        HeaderExtractor::new(self.msg.headers())
    }
    /// The processing context: the `process` span, the producer's request
    /// attributes. Pass it to the stages that handle the message.
    pub fn ctx(&self) -> &RequestContext {
        &self.ctx
    }
    /// Replace the processing context (for example to add a deadline).
    pub fn set_ctx(&mut self, ctx: RequestContext) {
        self.ctx = ctx;
    }
    /// How long the message waited in the broker (when it carried
    /// `spanline-sent-at`).
    pub fn queue_wait(&self) -> Option<Duration> {
        self.queue_wait
    }
    /// The message's creation context (its `send` span), when valid.
    pub fn creation_context(&self) -> Option<&SpanContext> {
        self.creation.as_ref()
    }

    /// Processing succeeded: store the offset (committed by the next
    /// auto-commit or [`TracedConsumer::commit`]) and end the span.
    pub fn done(self) -> Result<(), KafkaError> {
        let m = &self.consumer.inner.metrics;
        m.process_ok.record(self.started.elapsed().as_secs_f64());
        self.ctx.end_span();
        self.consumer
            .store(self.msg.topic(), self.msg.partition(), self.msg.offset())
    }

    /// Processing failed and the message stays unacknowledged: record the
    /// error, end the span, do not store the offset.
    pub fn failed(self, error: &StageError) {
        let m = &self.consumer.inner.metrics;
        m.process_err.record(self.started.elapsed().as_secs_f64());
        self.ctx.record_error(error);
        self.ctx.end_span();
    }
}

/// Messages processed together under one span.
pub struct Batch<'c> {
    msgs: Vec<BorrowedMessage<'c>>,
    ctx: RequestContext,
    consumer: &'c TracedConsumer,
    started: Instant,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.msgs.len())
            .finish_non_exhaustive()
    }
}

impl<'c> Batch<'c> {
    /// The messages.
    pub fn messages(&self) -> &[BorrowedMessage<'c>] {
        &self.msgs
    }
    /// The batch's processing context.
    pub fn ctx(&self) -> &RequestContext {
        &self.ctx
    }
    /// All processed: store every offset and end the span.
    pub fn done(self) -> Result<(), KafkaError> {
        let m = &self.consumer.inner.metrics;
        m.process_ok.record(self.started.elapsed().as_secs_f64());
        self.ctx.end_span();
        for msg in &self.msgs {
            self.consumer
                .store(msg.topic(), msg.partition(), msg.offset())?;
        }
        Ok(())
    }
}

/// Read the trace of a message's headers (re-exported helper).
pub fn message_context(msg: &BorrowedMessage<'_>) -> Extracted {
    extract_headers(msg.headers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw;
    use opentelemetry::propagation::Extractor as _;
    use rdkafka::message::{Headers as _, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// A header key that is not UTF-8, sent through a broker: rdkafka's own
    /// accessor panics on it; the traced consumer reads past it and still
    /// continues the trace.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_non_utf8_header_key_from_the_network_does_not_panic_the_consumer() {
        let broker = Arc::new(EmbeddedBroker::start(1).unwrap());
        broker.create_topic("hostile", 1).unwrap();
        let kafka = KafkaConfig::new().without_env().embedded(broker.clone());
        let raw_producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .create()
            .unwrap();
        let headers = raw::add_raw(OwnedHeaders::new(), &[0xff, 0xc3, 0x28], b"x");
        let headers = raw::add_raw(headers, b"traceparent", TP.as_bytes());
        raw_producer
            .send(
                FutureRecord::<(), [u8]>::to("hostile")
                    .payload(&b"p"[..])
                    .headers(headers),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();

        let t = spanline_testkit::TestTelemetry::new();
        let consumer = TracedConsumer::new(
            &kafka,
            t.telemetry(),
            "hostile-readers",
            Assignment::Assign(vec![("hostile".into(), 0)]),
        )
        .unwrap();
        let msg = consumer.recv().await.unwrap();
        // The hazard this crate works around: rdkafka's safe accessor
        // unwraps `CStr::to_str` on the key.
        let hdrs = msg.message().headers().unwrap();
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let rdkafka_panics = std::panic::catch_unwind(|| hdrs.try_get(0).is_some()).is_err();
        std::panic::set_hook(prev);
        assert!(
            rdkafka_panics,
            "rdkafka 0.39's try_get panics on a non-UTF-8 key"
        );
        // Ours does not, and the valid traceparent beside it still counts.
        assert_eq!(msg.headers().keys(), vec!["traceparent"]);
        assert_eq!(
            msg.ctx().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        msg.done().unwrap();
    }
}
