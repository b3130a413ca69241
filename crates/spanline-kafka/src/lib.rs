//! Kafka for spanline: the trace crosses the broker.
//!
//! - [`TracedProducer`]: a PRODUCER span `send {topic}` per message; the
//!   message carries `traceparent`, `tracestate`, `baggage` and a send
//!   timestamp.
//! - [`TracedConsumer`]: a CONSUMER span `process {topic}` per message,
//!   child of the producer's span; the time the message waited in the
//!   broker as a span of its own (`spanline.segment.type = queue`) and a
//!   histogram; offsets stored only when processing is done.
//! - [`Worker`]: the at-least-once loop (retries, dead-letter topic,
//!   graceful shutdown) around a [`Handler`].
//! - [`RequestReply`] and [`StageHandler`]: a pipeline stage served by
//!   Kafka workers, one trace end to end.
//! - [`EmbeddedBroker`]: with no bootstrap servers configured, librdkafka's
//!   mock cluster runs in-process.
//! - [`HeaderInjector`] / [`HeaderExtractor`]: header carriers through the
//!   core's strict W3C propagation; hostile headers never panic.
//!
//! ```
//! use spanline_core::{RequestContext, Telemetry};
//! use spanline_kafka::{Assignment, KafkaConfig, Outgoing, TracedConsumer, TracedProducer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), spanline_kafka::KafkaError> {
//! // No bootstrap servers configured: an embedded broker starts.
//! let kafka = KafkaConfig::new().without_env();
//! let telemetry = Telemetry::global();
//!
//! let producer = TracedProducer::new(&kafka, telemetry.clone())?;
//! let ctx = RequestContext::new();
//! let delivered = producer.send(&ctx, Outgoing::new("docs", b"hello")).await?;
//!
//! let consumer = TracedConsumer::new(
//!     &kafka,
//!     telemetry,
//!     "readers",
//!     Assignment::Assign(vec![("docs".into(), delivered.partition)]),
//! )?;
//! let message = consumer.recv().await?;
//! assert_eq!(message.payload(), b"hello");
//! assert!(message.queue_wait().is_some());
//! message.done()?; // at-least-once: the offset is stored only now
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/kafka.md` for configuration, delivery semantics, the tracing
//! rules and scale-out.

mod config;
mod consumer;
mod embedded;
mod error;
pub mod headers;
mod names;
mod producer;
#[allow(unsafe_code)]
mod raw;
mod reqrep;
mod worker;

pub use config::{BOOTSTRAP_ENV, KafkaConfig};
pub use consumer::{Assignment, Batch, Received, TracedConsumer, message_context};
pub use embedded::{Cluster, EmbeddedBroker};
pub use error::KafkaError;
pub use headers::{HeaderExtractor, HeaderInjector, extract_headers, inject_headers};
pub use producer::{Delivered, Outgoing, PendingDelivery, TracedProducer};
pub use reqrep::{RequestReply, RequestReplyConfig, StageHandler};
pub use worker::{Handler, Worker, WorkerConfig, WorkerReport};

/// rdkafka, re-exported for its types (headers, messages, mock cluster).
pub use rdkafka;
