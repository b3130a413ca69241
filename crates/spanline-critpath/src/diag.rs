//! Diagnostics: problems found in the input, reported one by one while the
//! rest of the input is still analysed.

use std::fmt;

use serde::Serialize;

use crate::model::{SpanId, TraceId};

/// Where in the input a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A 1-based line of a JSON-lines file.
    Line(u64),
    /// A byte offset into a binary file.
    Byte(u64),
    /// A span of a trace (found during analysis).
    Span {
        /// The trace.
        trace_id: TraceId,
        /// The span.
        span_id: SpanId,
    },
    /// A whole trace.
    Trace(TraceId),
    /// The input as a whole.
    Input,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(l) => write!(f, "line {l}"),
            Location::Byte(b) => write!(f, "byte {b}"),
            Location::Span { trace_id, span_id } => write!(f, "trace {trace_id} span {span_id}"),
            Location::Trace(t) => write!(f, "trace {t}"),
            Location::Input => f.write_str("input"),
        }
    }
}

/// The kind of a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticKind {
    /// A line is not valid JSON.
    BadJson,
    /// A line exceeds the maximum line length and was skipped.
    LineTooLong,
    /// A span object lacks a required field or has an unusable value.
    BadSpan,
    /// A protobuf file ends in the middle of a message.
    TruncatedProtobuf,
    /// A protobuf message could not be decoded.
    BadProtobuf,
    /// A span ends before it starts (its end is set to its start).
    EndBeforeStart,
    /// A span's parent is not in the input (the span roots its own subtree).
    Orphan,
    /// Parent links form a cycle (broken at one span, which becomes a root).
    ParentCycle,
    /// Two spans of one trace share a span id (the later one is ignored).
    DuplicateSpanId,
    /// A child lies partly outside its parent (clock skew): clamped.
    ClockSkew,
    /// A trace has no span without a parent.
    NoRoot,
    /// Reading the input failed part-way; what was read before is kept.
    Io,
}

/// One problem in the input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    /// What went wrong.
    pub kind: DiagnosticKind,
    /// Where.
    pub location: Location,
    /// A human-readable explanation.
    pub message: String,
}

impl Diagnostic {
    /// A new diagnostic.
    pub fn new(kind: DiagnosticKind, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            kind,
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}
