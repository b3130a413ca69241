//! Critical-path analysis for spanline traces: which stage, remote hop or
//! queue a request actually waited on — for one trace and across thousands.
//!
//! ```
//! use spanline_critpath::{analyze, load_reader, render, stats, Format, SegmentType};
//!
//! // Two spans in spanline's console JSON-lines format: a pipeline and one step.
//! let input = r#"
//! {"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","name":"invoke_workflow rag","start_time_unix_nano":0,"end_time_unix_nano":100000000}
//! {"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203332","parent_span_id":"b7ad6b7169203331","name":"chat extractive","start_time_unix_nano":10000000,"end_time_unix_nano":90000000,"attributes":{"spanline.stage.name":"chat","spanline.step.index":0}}
//! "#;
//! let loaded = load_reader(input.as_bytes(), Format::Auto)?;
//! assert!(loaded.diagnostics.is_empty());
//!
//! let reports = analyze(&loaded.spans);
//! let path = &reports[0].segments;
//! assert_eq!(path.len(), 3); // pipeline 10 ms, chat 80 ms, pipeline 10 ms
//! assert_eq!(path[1].segment_type, SegmentType::Stage);
//! assert_eq!(path[1].duration_ns, 80_000_000);
//!
//! println!("{}", render::text::trace(&reports[0]));
//! let summary = stats(&reports);
//! assert_eq!(&*summary.rows[0].key, "chat");
//! # Ok::<(), spanline_critpath::LoadError>(())
//! ```
//!
//! Layers: [`model`] (an SDK-independent span), [`load`] (OTLP JSON, OTLP
//! protobuf, spanline console JSON lines — streamed, with a [`Diagnostic`]
//! per problem), [`mod@analyze`] (the exact critical path from the structural
//! attributes of `docs/span-structure.md`, with a timestamp fallback),
//! [`mod@stats`] (aggregates across traces), [`mod@diff`] (what explains a
//! latency change between two runs), [`whatif`] (projected latency if a key
//! were faster or slower), [`group`] (the same per attribute value) and
//! [`render`] (terminal, JSON, HTML/SVG). The algorithm is described in `docs/critical-path.md`.
//!
//! This crate depends on neither the OpenTelemetry SDK nor spanline-core; the
//! attribute keys it reads are copied in [`semconv`].

pub mod analyze;
pub mod diag;
pub mod diff;
pub mod encode;
pub mod error;
mod graph;
pub mod group;
pub mod load;
pub mod model;
pub mod render;
pub mod semconv;
pub mod stats;
pub mod whatif;

pub use analyze::{
    Contribution, DetachReason, Detached, Segment, SegmentType, SpanInfo, TraceReport, analyze,
    analyze_trace, group_by_trace,
};
pub use diag::{Diagnostic, DiagnosticKind, Location};
pub use diff::{Diff, DiffBuilder, DiffError, DiffOptions, Side};
pub use error::LoadError;
pub use group::{GroupKey, GroupedDiff, GroupedDiffBuilder, GroupedStats, GroupedStatsBuilder};
pub use load::{Format, Loaded, load_each, load_file, load_reader};
pub use model::{AttrValue, Attributes, Link, Span, SpanId, SpanKind, Status, StatusCode, TraceId};
pub use stats::{KeyStats, Percentiles, Stats, StatsBuilder, TailRow, TailView, stats};
pub use whatif::{Scale, Scales, WhatIf, WhatIfBuilder, WhatIfError};
