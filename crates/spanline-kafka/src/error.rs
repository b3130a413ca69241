//! The errors of this crate.

use std::time::Duration;

use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use spanline_core::{ErrorKind, StageError};

/// What went wrong talking to Kafka.
///
/// Converts into [`StageError`] with a matching [`ErrorKind`], so a stage
/// built on this crate returns the core's one error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The configuration is unusable (a bad property, an unknown topic).
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// The embedded broker (librdkafka's mock cluster) could not start.
    #[error("the embedded Kafka broker failed: {0}")]
    EmbeddedBroker(String),
    /// The producer's local queue is full (`queue.buffering.max.messages`
    /// or `queue.buffering.max.kbytes`): back off and retry, or shed load.
    #[error("the producer queue is full (backpressure)")]
    QueueFull,
    /// The message is larger than `message.max.bytes` (payload plus
    /// headers, including oversized trace headers).
    #[error("the message is too large for message.max.bytes")]
    MessageTooLarge,
    /// The broker did not acknowledge the message within
    /// `message.timeout.ms`.
    #[error("the message was not delivered within message.timeout.ms")]
    DeliveryTimeout,
    /// The broker rejected or lost the message.
    #[error("the message was not delivered: {0}")]
    Delivery(RDKafkaErrorCode),
    /// Any other client error.
    #[error("Kafka client error: {0}")]
    Client(#[source] RdKafkaError),
    /// No reply arrived before the request's deadline or the stage's timeout.
    #[error("no reply within {after:?}")]
    ReplyTimeout {
        /// How long the caller waited.
        after: Duration,
        /// Whether the request's deadline (rather than the stage's own
        /// timeout) bounded the wait.
        deadline: bool,
    },
    /// A payload could not be encoded or decoded as JSON.
    #[error("payload {what} failed: {source}")]
    Payload {
        /// `encoding` or `decoding`.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The client was shut down.
    #[error("the Kafka client has shut down")]
    Shutdown,
}

impl KafkaError {
    /// Classify an error from rdkafka.
    pub(crate) fn from_rdkafka(e: RdKafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => KafkaError::QueueFull,
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => KafkaError::MessageTooLarge,
            Some(RDKafkaErrorCode::MessageTimedOut) => KafkaError::DeliveryTimeout,
            _ => match e {
                RdKafkaError::MessageProduction(code) => KafkaError::Delivery(code),
                other => KafkaError::Client(other),
            },
        }
    }

    /// The core error kind this maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KafkaError::Config(_) => ErrorKind::Internal,
            KafkaError::EmbeddedBroker(_) => ErrorKind::Unavailable,
            KafkaError::QueueFull => ErrorKind::ResourceExhausted,
            KafkaError::MessageTooLarge => ErrorKind::InvalidInput,
            KafkaError::DeliveryTimeout => ErrorKind::Unavailable,
            KafkaError::Delivery(_) => ErrorKind::Unavailable,
            KafkaError::Client(_) => ErrorKind::Unavailable,
            KafkaError::ReplyTimeout { deadline: true, .. } => ErrorKind::DeadlineExceeded,
            KafkaError::ReplyTimeout {
                deadline: false, ..
            } => ErrorKind::Timeout,
            KafkaError::Payload {
                what: "encoding", ..
            } => ErrorKind::InvalidInput,
            KafkaError::Payload { .. } => ErrorKind::InvalidOutput,
            KafkaError::Shutdown => ErrorKind::Unavailable,
        }
    }
}

impl From<RdKafkaError> for KafkaError {
    fn from(e: RdKafkaError) -> Self {
        KafkaError::from_rdkafka(e)
    }
}

impl From<KafkaError> for StageError {
    fn from(e: KafkaError) -> Self {
        let kind = e.kind();
        StageError::new(kind, e.to_string()).with_source(e)
    }
}
