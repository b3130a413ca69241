//! Every span name, attribute key and metric name spanline emits.
//!
//! This is the one home for names (DESIGN decision 5). GenAI, messaging and
//! RPC names follow the OpenTelemetry semantic conventions; where no
//! convention exists (reranking, preprocessing, pipeline structure) the name
//! carries the `spanline.` prefix. GenAI conventions are at "development"
//! stability: a rename upstream is one edit here.

/// GenAI attribute keys and operation names.
pub mod gen_ai {
    /// `gen_ai.operation.name` (required on GenAI spans).
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `gen_ai.provider.name` (required on GenAI spans).
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// `gen_ai.request.model`.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// `gen_ai.response.model`.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// `gen_ai.request.max_tokens`.
    pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
    /// `gen_ai.request.temperature`.
    pub const REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
    /// `gen_ai.request.top_p`.
    pub const REQUEST_TOP_P: &str = "gen_ai.request.top_p";
    /// `gen_ai.request.top_k`.
    pub const REQUEST_TOP_K: &str = "gen_ai.request.top_k";
    /// `gen_ai.request.stop_sequences`.
    pub const REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
    /// `gen_ai.request.seed`.
    pub const REQUEST_SEED: &str = "gen_ai.request.seed";
    /// `gen_ai.request.stream`.
    pub const REQUEST_STREAM: &str = "gen_ai.request.stream";
    /// `gen_ai.response.finish_reasons`.
    pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    /// `gen_ai.usage.input_tokens`.
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// `gen_ai.usage.output_tokens`.
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// `gen_ai.token.type` (metric attribute: `input` / `output`).
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// `gen_ai.conversation.id` (the request's session/thread id).
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    /// `gen_ai.embeddings.dimension.count`.
    pub const EMBEDDINGS_DIMENSION_COUNT: &str = "gen_ai.embeddings.dimension.count";
    /// `gen_ai.data_source.id`.
    pub const DATA_SOURCE_ID: &str = "gen_ai.data_source.id";
    /// `gen_ai.workflow.name`.
    pub const WORKFLOW_NAME: &str = "gen_ai.workflow.name";
    /// `gen_ai.input.messages` (opt-in content).
    pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
    /// `gen_ai.output.messages` (opt-in content).
    pub const OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
    /// `gen_ai.retrieval.query.text` (opt-in content).
    pub const RETRIEVAL_QUERY_TEXT: &str = "gen_ai.retrieval.query.text";
    /// `gen_ai.retrieval.documents` (opt-in content).
    pub const RETRIEVAL_DOCUMENTS: &str = "gen_ai.retrieval.documents";
    /// `gen_ai.server.time_to_first_token` as a span attribute (seconds).
    pub const TIME_TO_FIRST_TOKEN: &str = "gen_ai.server.time_to_first_token";
    /// `gen_ai.server.time_per_output_token` as a span attribute (seconds).
    pub const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai.server.time_per_output_token";
    /// `gen_ai.response.id`: the completion id a model server returned.
    pub const RESPONSE_ID: &str = "gen_ai.response.id";

    /// Well-known `gen_ai.provider.name` values.
    pub mod provider {
        /// OpenAI (also the default for OpenAI-compatible servers).
        pub const OPENAI: &str = "openai";
    }

    /// Operation names (`gen_ai.operation.name` values).
    pub mod op {
        /// Chat completion.
        pub const CHAT: &str = "chat";
        /// Plain text completion.
        pub const TEXT_COMPLETION: &str = "text_completion";
        /// Embeddings.
        pub const EMBEDDINGS: &str = "embeddings";
        /// Retrieval.
        pub const RETRIEVAL: &str = "retrieval";
        /// A whole workflow (a spanline pipeline run).
        pub const INVOKE_WORKFLOW: &str = "invoke_workflow";
        /// Reranking: the GenAI conventions define no rerank operation.
        pub const RERANK: &str = "spanline.rerank";
        /// Preprocessing: no convention exists.
        pub const PREPROCESS: &str = "spanline.preprocess";
        /// Postprocessing: no convention exists.
        pub const POSTPROCESS: &str = "spanline.postprocess";
        /// Any other stage.
        pub const STAGE: &str = "spanline.stage";
    }
}

/// General attribute keys from the OpenTelemetry conventions.
pub mod general {
    /// `error.type`: the class of error (low cardinality).
    pub const ERROR_TYPE: &str = "error.type";
    /// `exception.type` on an exception event.
    pub const EXCEPTION_TYPE: &str = "exception.type";
    /// `exception.message` on an exception event.
    pub const EXCEPTION_MESSAGE: &str = "exception.message";
    /// The exception event's name.
    pub const EXCEPTION_EVENT: &str = "exception";
    /// `user.id`.
    pub const USER_ID: &str = "user.id";
    /// `session.id`.
    pub const SESSION_ID: &str = "session.id";
    /// `server.address`.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// `server.port`.
    pub const SERVER_PORT: &str = "server.port";
}

/// spanline's own attribute keys: pipeline identity and the structure the
/// critical-path analyser consumes (see `docs/span-structure.md`).
pub mod spanline {
    /// Name of the pipeline a span belongs to.
    pub const PIPELINE_NAME: &str = "spanline.pipeline.name";
    /// Name of the stage.
    pub const STAGE_NAME: &str = "spanline.stage.name";
    /// Kind of the stage (`preprocess`, `embed`, `retrieve`, …).
    pub const STAGE_KIND: &str = "spanline.stage.kind";
    /// Outcome of the stage call (`ok`, `error`, `timeout`, `cancelled`).
    pub const OUTCOME: &str = "spanline.outcome";
    /// Position of this step in its pipeline's sequence (0-based, int).
    pub const STEP_INDEX: &str = "spanline.step.index";
    /// Step indices this span waited on before it started (int array).
    pub const STEP_DEPENDS_ON: &str = "spanline.step.depends_on";
    /// Whether the parent waited for this span to finish (bool).
    pub const STEP_BLOCKING: &str = "spanline.step.blocking";
    /// Set on the spans of a parallel group: the group's step index (int).
    pub const PARALLEL_GROUP: &str = "spanline.parallel.group";
    /// Branch number within a parallel group (int).
    pub const PARALLEL_BRANCH: &str = "spanline.parallel.branch";
    /// Number of branches in the parallel group (int).
    pub const PARALLEL_WIDTH: &str = "spanline.parallel.width";
    /// Index of this item in a batch call (int).
    pub const BATCH_INDEX: &str = "spanline.batch.index";
    /// Size of the batch (int).
    pub const BATCH_SIZE: &str = "spanline.batch.size";
    /// Maximum items of the batch in flight at once (int).
    pub const BATCH_CONCURRENCY: &str = "spanline.batch.concurrency";
    /// On a failed primary stage: what happened next (`fallback` or `skip`).
    pub const FALLBACK_ACTION: &str = "spanline.fallback.action";
    /// Why the fallback was taken (`timeout` or `error`).
    pub const FALLBACK_REASON: &str = "spanline.fallback.reason";
    /// On a fallback stage's span: the stage it stands in for.
    pub const FALLBACK_FOR: &str = "spanline.fallback.for";
    /// The timeout applied to a stage call, in seconds (double).
    pub const TIMEOUT_SECONDS: &str = "spanline.timeout.seconds";
    /// The customer id from the request attributes.
    pub const CUSTOMER_ID: &str = "spanline.customer.id";
    /// Prefix of user metadata attributes (`spanline.metadata.<key>`).
    pub const METADATA_PREFIX: &str = "spanline.metadata.";
    /// Number of items in the input of a stage (int).
    pub const INPUT_COUNT: &str = "spanline.input.count";
    /// Number of items in the output of a stage (int).
    pub const OUTPUT_COUNT: &str = "spanline.output.count";
    /// Whether an input was truncated to fit a model's limit (bool).
    pub const INPUT_TRUNCATED: &str = "spanline.input.truncated";
    /// Span name of a generator's prompt forward pass (a child of the
    /// generate stage's span).
    pub const SPAN_PREFILL: &str = "prefill";
    /// Span name of a generator's token-by-token decoding (a child of the
    /// generate stage's span, after `prefill`).
    pub const SPAN_DECODE: &str = "decode";
    /// Segment type for the critical path: `stage`, `hop`, `queue`.
    pub const SEGMENT_TYPE: &str = "spanline.segment.type";
}

/// Metric names and their label keys.
pub mod metric {
    /// Histogram (s): one sample per stage call.
    pub const STAGE_DURATION: &str = "spanline.stage.duration";
    /// Histogram (s): one sample per pipeline run.
    pub const PIPELINE_DURATION: &str = "spanline.pipeline.duration";
    /// Histogram (s): GenAI client operation duration.
    pub const GEN_AI_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// Histogram ({token}): GenAI token usage.
    pub const GEN_AI_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Histogram (s): time to first token.
    pub const GEN_AI_TIME_TO_FIRST_TOKEN: &str = "gen_ai.server.time_to_first_token";
    /// Histogram (s): time per output token after the first.
    pub const GEN_AI_TIME_PER_OUTPUT_TOKEN: &str = "gen_ai.server.time_per_output_token";
    /// Counter: spans the export pipeline dropped, by `reason` (the `REASON_*` values below).
    pub const SPANS_DROPPED: &str = "spanline.telemetry.spans.dropped";
    /// Counter: spans handed to the exporter successfully.
    pub const SPANS_EXPORTED: &str = "spanline.telemetry.spans.exported";
    /// Counter: propagation values a carrier rejected or could not encode.
    pub const CARRIER_REJECTED: &str = "spanline.propagation.rejected";
    /// Histogram (s): time one key (stage, hop, queue, or a span's own
    /// time) spent on a trace's critical path; one sample per trace and
    /// series (labels `pipeline`, `key`, `type`).
    pub const CRITICAL_PATH_DURATION: &str = "spanline.critical_path.duration";
    /// Counter: traces whose critical path was analysed online.
    pub const CRITICAL_PATH_TRACES_ANALYZED: &str = "spanline.critical_path.traces.analyzed";
    /// Counter: traces left out of the online analysis (label `reason`:
    /// `max_traces`, `timeout`, `shutdown`: evicted before their local root
    /// ended).
    pub const CRITICAL_PATH_TRACES_SKIPPED: &str = "spanline.critical_path.traces.skipped";
    /// Counter: spans the online analysis dropped (label `reason`:
    /// `queue_full`, `span_limit`, `shutdown`).
    pub const CRITICAL_PATH_SPANS_DROPPED: &str = "spanline.critical_path.spans.dropped";
    /// `key` label value for keys beyond the series cap.
    pub const CRITICAL_PATH_KEY_OTHER: &str = "_other";
    /// `pipeline` label value for traces without `spanline.pipeline.name`
    /// (and for pipelines beyond the series cap).
    pub const CRITICAL_PATH_PIPELINE_OTHER: &str = "_other";

    /// Label: pipeline name.
    pub const LABEL_PIPELINE: &str = "pipeline";
    /// Label: stage name.
    pub const LABEL_STAGE: &str = "stage";
    /// Label: stage kind.
    pub const LABEL_KIND: &str = "kind";
    /// Label: outcome (`ok`, `error`, `timeout`, `cancelled`).
    pub const LABEL_OUTCOME: &str = "outcome";
    /// Label: why something was dropped or rejected.
    pub const LABEL_REASON: &str = "reason";
    /// Reason (spans dropped): the export queue was full.
    pub const REASON_QUEUE_FULL: &str = "queue_full";
    /// Reason (spans dropped): the exporter failed or timed out.
    pub const REASON_EXPORT_FAILED: &str = "export_failed";
    /// Reason (spans dropped): the span ended after the processor shut down.
    pub const REASON_AFTER_SHUTDOWN: &str = "after_shutdown";
    /// Reason (spans dropped): still queued when the shutdown deadline passed.
    pub const REASON_SHUTDOWN_QUEUED: &str = "shutdown_queued";
    /// Reason (spans dropped): export in flight when the shutdown deadline passed.
    pub const REASON_SHUTDOWN_IN_FLIGHT: &str = "shutdown_in_flight";
    /// Label: critical-path key (stage name, hop or queue span name, or
    /// span name for its own time).
    pub const LABEL_KEY: &str = "key";
    /// Label: critical-path segment type (`stage`, `hop`, `queue`, `self`).
    pub const LABEL_TYPE: &str = "type";

    /// Bucket boundaries (s) for stage and pipeline durations.
    pub const DURATION_BUCKETS: &[f64] = &[
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    /// Semconv bucket boundaries (s) for `gen_ai.client.operation.duration`.
    pub const GEN_AI_DURATION_BUCKETS: &[f64] = &[
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ];
    /// Semconv bucket boundaries for `gen_ai.client.token.usage`.
    pub const GEN_AI_TOKEN_BUCKETS: &[f64] = &[
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
        4194304.0, 16777216.0, 67108864.0,
    ];
    /// Semconv bucket boundaries (s) for time to first token.
    pub const GEN_AI_TTFT_BUCKETS: &[f64] = &[
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    /// Semconv bucket boundaries (s) for time per output token.
    pub const GEN_AI_TPOT_BUCKETS: &[f64] = &[
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    ];
}

/// W3C propagation header names.
pub mod header {
    /// `traceparent`.
    pub const TRACEPARENT: &str = "traceparent";
    /// `tracestate`.
    pub const TRACESTATE: &str = "tracestate";
    /// `baggage`.
    pub const BAGGAGE: &str = "baggage";
}

/// Baggage keys under which request attributes travel.
pub mod baggage {
    /// The workflow name.
    pub const WORKFLOW: &str = "spanline.workflow";
    /// The user id.
    pub const USER_ID: &str = "user.id";
    /// The customer id.
    pub const CUSTOMER_ID: &str = "spanline.customer.id";
    /// The session/thread id.
    pub const SESSION_ID: &str = "session.id";
    /// The content-capture policy (`on` / `off`).
    pub const CAPTURE: &str = "spanline.capture";
    /// Prefix of user metadata members.
    pub const METADATA_PREFIX: &str = "spanline.meta.";
}

/// Sampling: the head-sampling force flag, the tail sampler's counters and
/// their `reason` label values, and the log-correlation field names.
pub mod sampling {
    /// Bool attribute on a root span: keep this trace whatever the ratio.
    pub const FORCE: &str = "spanline.sampling.force";

    /// Counter: root spans the rule-based head sampler decided, by
    /// `decision` (`sampled` / `dropped`) and `reason` (`rule`, `ratio`).
    pub const HEAD_DECISIONS: &str = "spanline.sampling.head.decisions";
    /// Counter: spans the tail sampler received.
    pub const SPANS_SEEN: &str = "spanline.sampling.spans.seen";
    /// Counter: spans the tail sampler forwarded downstream.
    pub const SPANS_KEPT: &str = "spanline.sampling.spans.kept";
    /// Counter: spans the tail sampler dropped, by `reason`.
    pub const SPANS_DROPPED: &str = "spanline.sampling.spans.dropped";
    /// Counter: traces the tail sampler started buffering.
    pub const TRACES_SEEN: &str = "spanline.sampling.traces.seen";
    /// Counter: traces kept, by `reason` (the first rule that kept it).
    pub const TRACES_KEPT: &str = "spanline.sampling.traces.kept";
    /// Counter: traces dropped, by `reason`.
    pub const TRACES_DROPPED: &str = "spanline.sampling.traces.dropped";
    /// Counter: traces decided early because a bound was reached, by `reason`.
    pub const TRACES_EVICTED: &str = "spanline.sampling.traces.evicted";

    /// Label: the head decision (`sampled` / `dropped`).
    pub const LABEL_DECISION: &str = "decision";
    /// Label: why (values below).
    pub const LABEL_REASON: &str = "reason";

    /// Reason: the explicit force flag.
    pub const REASON_FORCE: &str = "force";
    /// Reason: a configured rule matched.
    pub const REASON_RULE: &str = "rule";
    /// Reason: the fallback ratio.
    pub const REASON_RATIO: &str = "ratio";
    /// Reason: a span of the trace failed.
    pub const REASON_ERROR: &str = "error";
    /// Reason: the trace was slower than its threshold.
    pub const REASON_LATENCY: &str = "latency";
    /// Reason: a stage was slower than its own threshold.
    pub const REASON_STAGE_LATENCY: &str = "stage_latency";
    /// Reason: the baseline ratio kept (or did not keep) the trace.
    pub const REASON_BASELINE: &str = "baseline";
    /// Reason: a critical-path rule matched (a key's share of the critical
    /// path, or the queue time on it, over a threshold).
    pub const REASON_CRITICAL_PATH: &str = "critical_path";
    /// Reason: the hand-off queue to the sampler's worker was full.
    pub const REASON_QUEUE_FULL: &str = "queue_full";
    /// Reason: the trace already held its maximum number of spans.
    pub const REASON_SPAN_LIMIT: &str = "span_limit";
    /// Reason: the sampler held its maximum number of traces.
    pub const REASON_MAX_TRACES: &str = "max_traces";
    /// Reason: the local root did not end within the decision wait.
    pub const REASON_TIMEOUT: &str = "timeout";
    /// Reason: a span arrived after its trace was decided to be dropped.
    pub const REASON_LATE: &str = "late";
    /// Reason: the sampler was shut down.
    pub const REASON_SHUTDOWN: &str = "shutdown";

    /// Log field: the trace id (32 lowercase hex).
    pub const LOG_TRACE_ID: &str = "trace_id";
    /// Log field: the span id of the current stage (16 lowercase hex).
    pub const LOG_SPAN_ID: &str = "span_id";
}

/// Messaging (Kafka) names: OpenTelemetry messaging conventions, plus the
/// `spanline-*` headers and `spanline.messaging.*` metrics that
/// `spanline-kafka` adds (see `docs/kafka.md`).
pub mod messaging {
    /// `messaging.system`.
    pub const SYSTEM: &str = "messaging.system";
    /// The `messaging.system` value for Kafka.
    pub const SYSTEM_KAFKA: &str = "kafka";
    /// `messaging.operation.name` (`send`, `process`, …).
    pub const OPERATION_NAME: &str = "messaging.operation.name";
    /// `messaging.operation.type` (`send`, `receive`, `process`, `settle`).
    pub const OPERATION_TYPE: &str = "messaging.operation.type";
    /// `messaging.destination.name` (the topic).
    pub const DESTINATION_NAME: &str = "messaging.destination.name";
    /// `messaging.destination.partition.id`.
    pub const DESTINATION_PARTITION_ID: &str = "messaging.destination.partition.id";
    /// `messaging.consumer.group.name`.
    pub const CONSUMER_GROUP_NAME: &str = "messaging.consumer.group.name";
    /// `messaging.batch.message_count`.
    pub const BATCH_MESSAGE_COUNT: &str = "messaging.batch.message_count";
    /// `messaging.kafka.offset`.
    pub const KAFKA_OFFSET: &str = "messaging.kafka.offset";
    /// `messaging.kafka.message.key`.
    pub const KAFKA_MESSAGE_KEY: &str = "messaging.kafka.message.key";
    /// `messaging.message.id`.
    pub const MESSAGE_ID: &str = "messaging.message.id";
    /// `messaging.message.conversation_id`: the correlation id of a
    /// request/reply exchange.
    pub const CONVERSATION_ID: &str = "messaging.message.conversation_id";
    /// `messaging.client.id`.
    pub const CLIENT_ID: &str = "messaging.client.id";
    /// `messaging.message.body.size` (opt-in).
    pub const BODY_SIZE: &str = "messaging.message.body.size";

    /// Operation names and types.
    pub mod op {
        /// Publishing a message.
        pub const SEND: &str = "send";
        /// Receiving a message.
        pub const RECEIVE: &str = "receive";
        /// Processing a message.
        pub const PROCESS: &str = "process";
        /// Settling (committing, dead-lettering) a message.
        pub const SETTLE: &str = "settle";
        /// Span name prefix of the interval a message waited in the broker
        /// (`spanline.queue {topic}`); no convention exists.
        pub const QUEUE: &str = "spanline.queue";
    }

    /// `spanline.segment.type` values written by the Kafka crate.
    pub mod segment {
        /// A blocking remote call (request/reply client span).
        pub const HOP: &str = "hop";
        /// Time a message waited in a broker.
        pub const QUEUE: &str = "queue";
    }

    /// Kafka headers spanline writes besides the W3C ones.
    pub mod header {
        /// Send time, microseconds since the Unix epoch (decimal ASCII).
        pub const SENT_AT: &str = "spanline-sent-at";
        /// Correlation id of a request/reply exchange.
        pub const CORRELATION_ID: &str = "spanline-correlation-id";
        /// Topic the reply goes to.
        pub const REPLY_TO: &str = "spanline-reply-to";
        /// Request deadline, microseconds since the Unix epoch.
        pub const DEADLINE: &str = "spanline-deadline";
        /// Reply status: `ok` or an `error.type` value.
        pub const STATUS: &str = "spanline-status";
        /// Dead letter / error reply: the error class.
        pub const ERROR_TYPE: &str = "spanline-error-type";
        /// Dead letter / error reply: the error message.
        pub const ERROR_MESSAGE: &str = "spanline-error-message";
        /// Dead letter: the topic the message came from.
        pub const ORIGINAL_TOPIC: &str = "spanline-original-topic";
        /// Dead letter: its partition.
        pub const ORIGINAL_PARTITION: &str = "spanline-original-partition";
        /// Dead letter: its offset.
        pub const ORIGINAL_OFFSET: &str = "spanline-original-offset";
        /// Dead letter: handler attempts made.
        pub const ATTEMPTS: &str = "spanline-attempts";
    }

    /// Messaging metric names.
    pub mod metric {
        /// Histogram (s): producer send duration (until delivery report).
        pub const CLIENT_OPERATION_DURATION: &str = "messaging.client.operation.duration";
        /// Histogram (s): message processing duration.
        pub const PROCESS_DURATION: &str = "messaging.process.duration";
        /// Counter: messages sent.
        pub const SENT_MESSAGES: &str = "messaging.client.sent.messages";
        /// Counter: messages consumed.
        pub const CONSUMED_MESSAGES: &str = "messaging.client.consumed.messages";
        /// Histogram (s): time a message waited in the broker (consume
        /// time minus the sender's `spanline-sent-at`).
        pub const QUEUE_WAIT: &str = "spanline.messaging.queue.wait";
        /// Counter: messages sent to a dead-letter topic.
        pub const DEAD_LETTERED: &str = "spanline.messaging.dead_lettered";
        /// Counter: replies that arrived after their caller gave up.
        pub const LATE_REPLIES: &str = "spanline.messaging.late_replies";
        /// Label: the topic (bounded: topics are configuration).
        pub const LABEL_TOPIC: &str = "topic";
        /// Label: outcome (`ok`, `error`).
        pub const LABEL_OUTCOME: &str = "outcome";
    }
}

/// RPC (gRPC) names: span attributes, metrics, and the labels and values
/// `spanline-grpc` records.
pub mod rpc {
    /// `rpc.system.name` (the RPC system; always `grpc` in spanline).
    pub const SYSTEM_NAME: &str = "rpc.system.name";
    /// `rpc.system.name` value for gRPC.
    pub const SYSTEM_GRPC: &str = "grpc";
    /// `rpc.method`: fully qualified, e.g. `spanline.worker.v1.StageWorker/Run`.
    pub const METHOD: &str = "rpc.method";
    /// `rpc.method` value for a method the server does not know (bounded
    /// cardinality against hostile paths).
    pub const METHOD_OTHER: &str = "_OTHER";
    /// `rpc.status_code`: the gRPC status as a string (`OK`, `UNAVAILABLE`).
    pub const STATUS_CODE: &str = "rpc.status_code";
    /// The `spanline.segment.type` value of a blocking remote call.
    pub const SEGMENT_HOP: &str = "hop";
    /// Bool on a server span: the call came through an untrusted edge (new
    /// root, linked to the inbound context, inbound baggage dropped).
    pub const UNTRUSTED_EDGE: &str = "spanline.rpc.untrusted_edge";
    /// The stage a worker call asked for (only set when the worker hosts it).
    pub const WORKER_STAGE: &str = "spanline.worker.stage";
    /// The attempt number of a pool call (1 for the first try).
    pub const ATTEMPT: &str = "spanline.rpc.attempt";

    /// Histogram (s): client call duration.
    pub const CLIENT_CALL_DURATION: &str = "rpc.client.call.duration";
    /// Histogram (s): server call duration.
    pub const SERVER_CALL_DURATION: &str = "rpc.server.call.duration";
    /// Counter: worker endpoints a pool took out of rotation after a
    /// transport failure.
    pub const POOL_EJECTIONS: &str = "spanline.rpc.pool.ejections";
    /// Counter: calls a pool retried on another worker, by `reason`.
    pub const POOL_RETRIES: &str = "spanline.rpc.pool.retries";

    /// `spanline.propagation.rejected` reason: a metadata value that is not
    /// visible ASCII (skipped, never fails the call).
    pub const REASON_NON_ASCII: &str = "non_ascii";
    /// Retry reason: the worker was unavailable.
    pub const REASON_UNAVAILABLE: &str = "unavailable";
    /// Retry reason: the retry budget was empty (counted, not retried).
    pub const REASON_BUDGET_EXHAUSTED: &str = "budget_exhausted";

    /// The `grpc-timeout` request header.
    pub const GRPC_TIMEOUT: &str = "grpc-timeout";
    /// The `grpc-status` response header / trailer.
    pub const GRPC_STATUS: &str = "grpc-status";
}
