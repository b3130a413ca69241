//! Request/reply over Kafka: a stage that sends its input to workers and
//! awaits their reply, and the handler that runs a stage for them.
//!
//! Payloads are JSON (`serde_json`): the request is the stage input, the
//! reply the stage output. Headers carry the correlation id
//! (`spanline-correlation-id`), the reply topic (`spanline-reply-to`), the
//! caller's deadline (`spanline-deadline`, µs since the Unix epoch), and on
//! the reply a status (`spanline-status`: `ok` or an `error.type`) with
//! `spanline-error-message`.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spanline_core::semconv::messaging::{self as m, header as h, metric as mm};
use spanline_core::semconv::spanline::SEGMENT_TYPE;
use spanline_core::{ErrorKind, RequestContext, Stage, StageDescriptor, StageError, Telemetry};
use tokio::sync::oneshot;

use crate::consumer::{Received, record_queue_wait};
use crate::headers::HeaderExtractor;
use crate::producer::{Outgoing, TracedProducer, now_micros};
use crate::worker::Handler;
use crate::{EmbeddedBroker, KafkaConfig, KafkaError};

/// Where requests go and replies come from.
#[derive(Debug, Clone)]
pub struct RequestReplyConfig {
    /// The stage as the pipeline sees it (marked remote).
    pub descriptor: StageDescriptor,
    /// The topic workers consume.
    pub request_topic: String,
    /// The topic this client reads replies from.
    pub reply_topic: String,
    /// The longest wait for a reply when the request has no earlier
    /// deadline.
    pub timeout: Duration,
}

impl RequestReplyConfig {
    /// A stage described by `descriptor`, requests to `request_topic`,
    /// replies on `reply_topic`, waiting at most 30 s.
    pub fn new(
        descriptor: StageDescriptor,
        request_topic: impl Into<String>,
        reply_topic: impl Into<String>,
    ) -> Self {
        RequestReplyConfig {
            descriptor: descriptor.remote(),
            request_topic: request_topic.into(),
            reply_topic: reply_topic.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Set the longest wait.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

struct Reply {
    payload: Vec<u8>,
    status: String,
    message: Option<String>,
}

type Pending = Mutex<HashMap<String, oneshot::Sender<Reply>>>;

struct Shared {
    pending: Pending,
    late: AtomicU64,
    late_counter: Counter,
    queue_wait: Histogram,
    telemetry: Telemetry,
}

struct Dispatcher(tokio::task::JoinHandle<()>);

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A pipeline stage served by Kafka workers: publishes its input to the
/// request topic and awaits the reply.
///
/// The stage's span (the layer's CLIENT span) is marked
/// `spanline.segment.type = hop` and records the correlation id as
/// `messaging.message.conversation_id`. The wait is bounded by the request
/// context's deadline and by [`RequestReplyConfig::timeout`]; past it the
/// call fails with [`KafkaError::ReplyTimeout`] (kind `deadline_exceeded`
/// or `timeout`), and a reply that arrives later is discarded and counted
/// in `spanline.messaging.late_replies`.
///
/// Every caller reads the whole reply topic from its end at connect time
/// and keeps only replies it is waiting for: give each client process its
/// own reply topic (or partition it) when replies are many.
pub struct RequestReply<I, O> {
    config: RequestReplyConfig,
    producer: TracedProducer,
    shared: Arc<Shared>,
    id_prefix: String,
    next_id: AtomicU64,
    _dispatcher: Dispatcher,
    _broker: Option<Arc<EmbeddedBroker>>,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> std::fmt::Debug for RequestReply<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestReply")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unique_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now_micros(SystemTime::now()).into());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

impl<I, O> RequestReply<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Connect: start the reply reader at the reply topic's current end
    /// (so no reply to a request sent after this returns is missed) and
    /// the producer (`linger.ms=1` unless configured).
    ///
    /// The reply topic must exist.
    ///
    /// Metrics handles are registered when `connect` is called (not when
    /// the future is first polled), with the `metrics` recorder current
    /// then.
    pub fn connect(
        kafka: &KafkaConfig,
        telemetry: Telemetry,
        config: RequestReplyConfig,
    ) -> impl Future<Output = Result<Self, KafkaError>> + Send + 'static {
        let producer =
            TracedProducer::with_defaults(kafka, telemetry.clone(), &[("linger.ms", "1")]);
        let late_counter = metrics::counter!(mm::LATE_REPLIES);
        let queue_wait = metrics::histogram!(mm::QUEUE_WAIT);
        let kafka = kafka.clone();
        async move {
            Self::connect_with(
                kafka,
                telemetry,
                config,
                producer?,
                late_counter,
                queue_wait,
            )
            .await
        }
    }

    async fn connect_with(
        kafka: KafkaConfig,
        telemetry: Telemetry,
        config: RequestReplyConfig,
        producer: TracedProducer,
        late_counter: Counter,
        queue_wait: Histogram,
    ) -> Result<Self, KafkaError> {
        let prefix = unique_prefix();
        let group = format!("spanline-reply-{prefix}");
        let resolved = kafka.resolve(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("fetch.wait.max.ms", "10"),
        ])?;
        let consumer: StreamConsumer = resolved.config.create()?;
        let consumer = Arc::new(consumer);
        let topic = config.reply_topic.clone();
        let c = consumer.clone();
        let tpl = tokio::task::spawn_blocking(move || -> Result<TopicPartitionList, KafkaError> {
            let timeout = Duration::from_secs(10);
            let md = c.fetch_metadata(Some(topic.as_str()), timeout)?;
            let parts: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if parts.is_empty() {
                return Err(KafkaError::Config(format!(
                    "reply topic {topic:?} not found"
                )));
            }
            let mut tpl = TopicPartitionList::new();
            for p in parts {
                let (_low, high) = c.fetch_watermarks(&topic, p, timeout)?;
                tpl.add_partition_offset(&topic, p, Offset::Offset(high))?;
            }
            Ok(tpl)
        })
        .await
        .map_err(|_| KafkaError::Shutdown)??;
        consumer.assign(&tpl)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            late: AtomicU64::new(0),
            late_counter,
            queue_wait,
            telemetry,
        });
        let task = tokio::spawn(dispatch(consumer, shared.clone()));
        Ok(RequestReply {
            config,
            producer,
            shared,
            id_prefix: prefix,
            next_id: AtomicU64::new(0),
            _dispatcher: Dispatcher(task),
            _broker: resolved.broker,
            _types: PhantomData,
        })
    }

    /// Replies that arrived after their caller had given up.
    pub fn late_replies(&self) -> u64 {
        self.shared.late.load(Ordering::Relaxed)
    }

    /// Requests awaiting a reply right now.
    pub fn in_flight(&self) -> usize {
        self.shared.pending.lock().map_or(0, |p| p.len())
    }
}

async fn dispatch(consumer: Arc<StreamConsumer>, shared: Arc<Shared>) {
    loop {
        let msg = match consumer.recv().await {
            Ok(m) => m,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await; // allow-sleep: back off briefly after a transient consumer error.
                continue;
            }
        };
        let now = SystemTime::now();
        let headers = HeaderExtractor::new(msg.headers());
        let Some(id) = headers.get_str(h::CORRELATION_ID) else {
            continue;
        };
        let waiter = shared.pending.lock().ok().and_then(|mut p| p.remove(id));
        let Some(waiter) = waiter else {
            shared.late.fetch_add(1, Ordering::Relaxed);
            shared.late_counter.increment(1);
            continue;
        };
        let parent = spanline_core::propagation::extract(&headers).into_context();
        record_queue_wait(
            &shared.telemetry,
            &parent,
            msg.topic(),
            &headers,
            now,
            &shared.queue_wait,
        );
        let reply = Reply {
            payload: msg.payload().unwrap_or_default().to_vec(),
            status: headers.get_str(h::STATUS).unwrap_or("ok").to_owned(),
            message: headers.get_str(h::ERROR_MESSAGE).map(str::to_owned),
        };
        // The caller may have given up in between: then it is late.
        if waiter.send(reply).is_err() {
            shared.late.fetch_add(1, Ordering::Relaxed);
            shared.late_counter.increment(1);
        }
    }
}

/// Removes a pending entry when the caller stops waiting (timeout or
/// cancellation), so a late reply finds nobody.
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(self.id);
        }
    }
}

fn kind_from_str(s: &str) -> ErrorKind {
    ErrorKind::from_name(s).unwrap_or(ErrorKind::Internal)
}

#[async_trait]
impl<I, O> Stage for RequestReply<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
{
    type Input = I;
    type Output = O;

    fn describe(&self) -> StageDescriptor {
        self.config.descriptor.clone()
    }

    async fn run(&self, input: I, ctx: &RequestContext) -> Result<O, StageError> {
        let id = format!(
            "{}-{:x}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        ctx.set_attribute(KeyValue::new(SEGMENT_TYPE, m::segment::HOP));
        ctx.set_attribute(KeyValue::new(m::CONVERSATION_ID, id.clone()));
        let payload = serde_json::to_vec(&input).map_err(|source| KafkaError::Payload {
            what: "encoding",
            source,
        })?;
        let (wait, deadline_bound) = match ctx.remaining() {
            Some(left) if left <= self.config.timeout => (left, true),
            _ => (self.config.timeout, false),
        };
        let until = tokio::time::Instant::now() + wait;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.shared.pending.lock() {
            p.insert(id.clone(), tx);
        }
        let _guard = PendingGuard {
            pending: &self.shared.pending,
            id: &id,
        };
        let deadline_us = now_micros(SystemTime::now() + wait).to_string();
        let headers = OwnedHeaders::new_with_capacity(8)
            .insert(Header {
                key: h::CORRELATION_ID,
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: h::REPLY_TO,
                value: Some(self.config.reply_topic.as_str()),
            })
            .insert(Header {
                key: h::DEADLINE,
                value: Some(deadline_us.as_str()),
            });
        let exchange = async {
            let out = Outgoing::new(&self.config.request_topic, &payload)
                .key(id.as_bytes())
                .headers(headers)
                .conversation_id(&id);
            self.producer.send(ctx, out).await?;
            rx.await.map_err(|_| KafkaError::Shutdown)
        };
        let reply = match tokio::time::timeout_at(until, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(KafkaError::ReplyTimeout {
                    after: wait,
                    deadline: deadline_bound,
                }
                .into());
            }
        };
        if reply.status != "ok" {
            let kind = kind_from_str(&reply.status);
            return Err(StageError::new(
                kind,
                reply
                    .message
                    .unwrap_or_else(|| kind.description().to_owned()),
            ));
        }
        serde_json::from_slice(&reply.payload).map_err(|source| {
            KafkaError::Payload {
                what: "decoding",
                source,
            }
            .into()
        })
    }
}

/// A [`Handler`] that runs a spanline [`Stage`] over the requests a
/// [`RequestReply`] stage sends, and replies with the result and its trace
/// context.
///
/// The stage runs under the message's `process` span, with the caller's
/// request attributes and deadline (an expired request is skipped:
/// nobody waits for its answer). Pass a [`Pipeline`](spanline_core::Pipeline)
/// to get stage spans and histograms. A stage error is replied (status =
/// its `error.type`; the message only when content capture is on) and the
/// request counts as handled; an undecodable request is replied as
/// `invalid_input` and dead-lettered; a reply that cannot be sent is
/// retried by the worker.
pub struct StageHandler<S> {
    stage: S,
    producer: TracedProducer,
    skipped: AtomicU64,
}

impl<S> std::fmt::Debug for StageHandler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageHandler").finish_non_exhaustive()
    }
}

impl<S: Stage> StageHandler<S> {
    /// Run `stage`, replying through `producer` (a worker's
    /// [`producer`](crate::Worker::producer) will do).
    pub fn new(stage: S, producer: TracedProducer) -> Self {
        StageHandler {
            stage,
            producer,
            skipped: AtomicU64::new(0),
        }
    }

    /// Requests skipped because their deadline had passed.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    async fn reply(
        &self,
        ctx: &RequestContext,
        reply_to: &str,
        id: &str,
        payload: &[u8],
        status: &str,
        message: Option<&str>,
    ) -> Result<(), StageError> {
        let mut headers = OwnedHeaders::new_with_capacity(8)
            .insert(Header {
                key: h::CORRELATION_ID,
                value: Some(id),
            })
            .insert(Header {
                key: h::STATUS,
                value: Some(status),
            });
        if let Some(message) = message {
            headers = headers.insert(Header {
                key: h::ERROR_MESSAGE,
                value: Some(message),
            });
        }
        let out = Outgoing::new(reply_to, payload)
            .key(id.as_bytes())
            .headers(headers)
            .conversation_id(id);
        self.producer.send(ctx, out).await?;
        Ok(())
    }
}

#[async_trait]
impl<S> Handler for StageHandler<S>
where
    S: Stage,
    S::Input: DeserializeOwned,
    S::Output: Serialize,
{
    async fn handle(&self, message: &Received<'_>) -> Result<(), StageError> {
        let headers = message.headers();
        let reply_to = headers.get_str(h::REPLY_TO);
        let id = headers.get_str(h::CORRELATION_ID);
        let mut ctx = message.ctx().clone();
        if let Some(deadline) = headers
            .get_str(h::DEADLINE)
            .and_then(|d| d.parse::<u64>().ok())
        {
            let deadline = UNIX_EPOCH + Duration::from_micros(deadline);
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if left.is_zero() {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            ctx = ctx.with_timeout(left);
        }
        let input: S::Input = match serde_json::from_slice(message.payload()) {
            Ok(input) => input,
            Err(e) => {
                let error = StageError::invalid_input("undecodable request payload").with_source(e);
                if let (Some(to), Some(id)) = (reply_to, id) {
                    // Tell the caller now rather than let it time out; the
                    // request still goes to the dead-letter topic.
                    let _ = self
                        .reply(&ctx, to, id, b"", error.kind().as_str(), None)
                        .await;
                }
                return Err(error);
            }
        };
        let result = self.stage.run(input, &ctx).await;
        let (Some(to), Some(id)) = (reply_to, id) else {
            // A one-way message: nothing to reply to.
            return result.map(|_| ());
        };
        match result {
            Ok(output) => {
                let payload = serde_json::to_vec(&output).map_err(|e| {
                    StageError::invalid_output("unencodable stage output").with_source(e)
                })?;
                self.reply(&ctx, to, id, &payload, "ok", None).await
            }
            Err(e) => {
                let capture = ctx.captures_content();
                self.reply(
                    &ctx,
                    to,
                    id,
                    b"",
                    e.kind().as_str(),
                    Some(e.message_for(capture)),
                )
                .await
            }
        }
    }
}
