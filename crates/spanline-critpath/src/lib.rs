//! Critical-path analysis for spanline traces.
//!
//! ```
//! assert!(true);
//! ```

pub mod analyze;
pub mod diag;
pub mod encode;
pub mod error;
pub mod load;
pub mod model;
pub mod semconv;

pub use diag::{Diagnostic, DiagnosticKind, Location};
pub use error::LoadError;
pub use load::{Format, Loaded, load_each, load_file, load_reader};
pub use model::{AttrValue, Attributes, Link, Span, SpanId, SpanKind, Status, StatusCode, TraceId};
pub use analyze::{
    Contribution, Detached, DetachReason, Segment, SegmentType, SpanInfo, TraceReport, analyze, analyze_trace,
    group_by_trace,
};
