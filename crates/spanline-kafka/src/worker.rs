//! The at-least-once worker loop: handler, retries, dead letters,
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use metrics::Counter;
use rdkafka::message::{Header, OwnedHeaders};
use spanline_core::semconv::header as w3c;
use spanline_core::semconv::messaging::{header as h, metric as mm};
use spanline_core::{ErrorKind, StageError, Telemetry};

use crate::consumer::{Assignment, Received, TracedConsumer};
use crate::producer::{Outgoing, TracedProducer};
use crate::{KafkaConfig, KafkaError};

/// What a worker does with one message.
///
/// Return `Ok` when the message is handled (its offset is then stored).
/// An error of kind [`ErrorKind::InvalidInput`] marks the message as poison:
/// it goes to the dead-letter topic at once. Any other error is retried
/// (up to [`WorkerConfig::max_attempts`] attempts in all) and then
/// dead-lettered.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handle `message`; its context (`message.ctx()`) holds the `process`
    /// span.
    async fn handle(&self, message: &Received<'_>) -> Result<(), StageError>;
}

#[async_trait]
impl<H: Handler + ?Sized> Handler for Arc<H> {
    async fn handle(&self, message: &Received<'_>) -> Result<(), StageError> {
        (**self).handle(message).await
    }
}

/// How a worker consumes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The consumer group.
    pub group: String,
    /// What to read.
    pub assignment: Assignment,
    /// Where poison messages go (`None`: `{topic}.dlq`).
    pub dead_letter_topic: Option<String>,
    /// Handler attempts per message before it is dead-lettered (≥ 1).
    pub max_attempts: u32,
    /// Pause between attempts (doubled each time).
    pub retry_backoff: Duration,
    /// How long shutdown waits for the producer to flush.
    pub flush_timeout: Duration,
}

impl WorkerConfig {
    /// Join `group` and share `topic`'s partitions with its other members.
    pub fn subscribe(group: impl Into<String>, topic: impl Into<String>) -> Self {
        Self::with(group, Assignment::Subscribe(vec![topic.into()]))
    }

    /// Read `partitions` of `topic` directly (from `group`'s committed
    /// offsets).
    pub fn assign(group: impl Into<String>, topic: &str, partitions: &[i32]) -> Self {
        Self::with(
            group,
            Assignment::Assign(partitions.iter().map(|p| (topic.to_owned(), *p)).collect()),
        )
    }

    fn with(group: impl Into<String>, assignment: Assignment) -> Self {
        WorkerConfig {
            group: group.into(),
            assignment,
            dead_letter_topic: None,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(50),
            flush_timeout: Duration::from_secs(5),
        }
    }

    /// Set the dead-letter topic.
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Set the attempts per message.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Set the pause between attempts.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Messages handled successfully.
    pub processed: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Handler attempts that failed and were retried.
    pub retries: u64,
}

/// Consumes messages and runs a [`Handler`] on each, at least once.
///
/// One message at a time per worker, in partition order; scale out with
/// more workers in the same group over more partitions. The offset of a
/// message is stored only after its handler succeeded or it was
/// dead-lettered. Shutdown (when the future given to [`Worker::run`]
/// resolves) stops polling, lets the message in hand finish, commits the
/// stored offsets and flushes the producer.
pub struct Worker<H> {
    consumer: TracedConsumer,
    producer: TracedProducer,
    handler: H,
    config: WorkerConfig,
    processed: Arc<AtomicU64>,
    dead_lettered: Counter,
}

impl<H> std::fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Worker<H> {
    /// A worker for `config` running `handler`.
    pub fn new(
        kafka: &KafkaConfig,
        telemetry: Telemetry,
        config: WorkerConfig,
        handler: H,
    ) -> Result<Self, KafkaError> {
        Self::build(kafka, telemetry, config, |_| handler)
    }

    /// A worker whose handler is made from the worker's own producer (a
    /// [`StageHandler`](crate::StageHandler) replies through it).
    pub fn build(
        kafka: &KafkaConfig,
        telemetry: Telemetry,
        config: WorkerConfig,
        make: impl FnOnce(&TracedProducer) -> H,
    ) -> Result<Self, KafkaError> {
        let consumer = TracedConsumer::new(
            kafka,
            telemetry.clone(),
            &config.group,
            config.assignment.clone(),
        )?;
        let producer = TracedProducer::with_defaults(kafka, telemetry, &[("linger.ms", "1")])?;
        let handler = make(&producer);
        Ok(Worker {
            consumer,
            producer,
            handler,
            config,
            processed: Arc::new(AtomicU64::new(0)),
            dead_lettered: metrics::counter!(mm::DEAD_LETTERED),
        })
    }

    /// The number of messages handled so far (shared counter).
    pub fn processed(&self) -> Arc<AtomicU64> {
        self.processed.clone()
    }

    /// The worker's consumer (to watch its assignment).
    pub fn consumer(&self) -> &TracedConsumer {
        &self.consumer
    }

    /// The worker's producer (dead letters; handlers may share it).
    pub fn producer(&self) -> &TracedProducer {
        &self.producer
    }

    /// Run until `shutdown` resolves, then drain and commit.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport, KafkaError> {
        let mut report = WorkerReport::default();
        tokio::pin!(shutdown);
        loop {
            let received = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = self.consumer.recv() => r,
            };
            let msg = match received {
                Ok(m) => m,
                // Transient client errors (broker gone, rebalance): keep polling.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await; // allow-sleep: back off briefly after a transient consumer error.
                    continue;
                }
            };
            self.process(msg, &mut report).await;
        }
        let committed = self.consumer.commit().await;
        let flushed = self.producer.flush(self.config.flush_timeout).await;
        committed.and(flushed).map(|()| report)
    }

    async fn process(&self, msg: Received<'_>, report: &mut WorkerReport) {
        let mut attempt = 0;
        let mut backoff = self.config.retry_backoff;
        let error = loop {
            attempt += 1;
            match self.handler.handle(&msg).await {
                Ok(()) => {
                    report.processed += 1;
                    self.processed.fetch_add(1, Ordering::Relaxed);
                    // A store can fail only if the partition was revoked
                    // meanwhile; the new owner reprocesses (at-least-once).
                    let _ = msg.done();
                    return;
                }
                Err(e) if e.kind() == ErrorKind::InvalidInput => break e,
                Err(e) if attempt >= self.config.max_attempts => break e,
                Err(_) => {
                    report.retries += 1;
                    tokio::time::sleep(backoff).await; // allow-sleep: exponential backoff between handler retries.
                    backoff = backoff.saturating_mul(2);
                }
            }
        };
        // Poison: dead-letter it, then store its offset. If even the dead
        // letter cannot be written, leave the offset unstored: the message
        // is redelivered rather than lost.
        match self.dead_letter(&msg, &error, attempt).await {
            Ok(()) => {
                report.dead_lettered += 1;
                self.dead_lettered.increment(1);
                msg.ctx().record_error(&error);
                let _ = msg.done();
            }
            Err(_) => msg.failed(&error),
        }
    }

    async fn dead_letter(
        &self,
        msg: &Received<'_>,
        error: &StageError,
        attempts: u32,
    ) -> Result<(), KafkaError> {
        let topic = self
            .config
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", msg.topic()));
        let mut headers = OwnedHeaders::new();
        // Keep the original headers whose keys rdkafka can write (UTF-8),
        // except the W3C ones: the dead letter carries its own `send` span.
        for (key, value) in msg.headers().iter() {
            let Ok(key) = std::str::from_utf8(key) else {
                continue;
            };
            if [w3c::TRACEPARENT, w3c::TRACESTATE, w3c::BAGGAGE, h::SENT_AT]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
            {
                continue;
            }
            headers = headers.insert(Header { key, value });
        }
        let capture = msg.ctx().captures_content();
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let attempts = attempts.to_string();
        for (k, v) in [
            (h::ERROR_TYPE, error.kind().as_str()),
            (h::ERROR_MESSAGE, error.message_for(capture)),
            (h::ORIGINAL_TOPIC, msg.topic()),
            (h::ORIGINAL_PARTITION, partition.as_str()),
            (h::ORIGINAL_OFFSET, offset.as_str()),
            (h::ATTEMPTS, attempts.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut out = Outgoing::new(&topic, msg.payload()).headers(headers);
        if let Some(key) = msg.key() {
            out = out.key(key);
        }
        self.producer.send(msg.ctx(), out).await.map(|_| ())
    }
}
