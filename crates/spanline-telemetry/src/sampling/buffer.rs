//! Per-trace span buffering shared by the tail sampler and the online
//! critical-path processor: spans grouped by trace until the trace's local
//! root ends, bounded in traces (the oldest is handed back early) and in
//! spans per trace (later spans are refused and counted by the caller).
//!
//! The buffer makes no decision; its owner says what a completed or evicted
//! trace means (kept or dropped, analysed or skipped).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;
use spanline_core::semconv::{messaging, spanline};

/// Why a trace leaves the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Its local root ended.
    Root,
    /// A new trace needed its place.
    MaxTraces,
    /// Its decision wait passed.
    Timeout,
    /// The owner is shutting down.
    Shutdown,
}

/// One buffered trace: its spans (up to the per-trace limit) and what the
/// owner keeps about every span it saw, stored or not.
pub(crate) struct Entry<S> {
    seq: u64,
    first_seen: Instant,
    /// The stored spans, in arrival order.
    pub(crate) spans: Vec<SpanData>,
    bytes: usize,
    /// The owner's per-trace summary.
    pub(crate) summary: S,
    /// Duration of the completing local root, once it ended.
    pub(crate) root_duration: Option<Duration>,
    /// Earliest start seen.
    pub(crate) min_start: SystemTime,
    /// Latest end seen.
    pub(crate) max_end: SystemTime,
}

/// What [`TraceBuffer::insert`] did with a span.
pub(crate) struct Inserted {
    /// The span opened a new trace.
    pub(crate) new_trace: bool,
    /// The span was refused: its trace holds the per-trace maximum.
    pub(crate) over_limit: bool,
    /// The span completes its trace ([`completes_trace`]): the caller takes
    /// the trace.
    pub(crate) is_root: bool,
}

/// Traces buffered until their local root ends.
pub(crate) struct TraceBuffer<S> {
    max_traces: usize,
    max_spans_per_trace: usize,
    decision_wait: Duration,
    pending: HashMap<TraceId, Entry<S>>,
    order: VecDeque<(TraceId, u64)>,
    next_seq: u64,
    spans: usize,
    bytes: usize,
    peak_traces: usize,
    peak_spans: usize,
    peak_bytes: usize,
}

/// Buffer levels now and at their highest.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Levels {
    pub(crate) traces: usize,
    pub(crate) spans: usize,
    pub(crate) bytes: usize,
    pub(crate) peak_traces: usize,
    pub(crate) peak_spans: usize,
    pub(crate) peak_bytes: usize,
}

/// Whether `span` is a local root: no parent, or a parent in another process.
pub(crate) fn is_local_root(span: &SpanData) -> bool {
    span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote
}

/// Whether `span` completes its local trace: a local root that is not a
/// broker queue wait. A consumer's queue-wait span has the message's remote
/// context as parent but ends before the `process` span beside it, which
/// is the local part's real root (`docs/span-structure.md`, Hops and
/// queues).
pub(crate) fn completes_trace(span: &SpanData) -> bool {
    is_local_root(span)
        && !span.attributes.iter().any(|kv| {
            kv.key.as_str() == spanline::SEGMENT_TYPE
                && matches!(&kv.value, Value::String(v) if v.as_str() == messaging::segment::QUEUE)
        })
}

impl<S: Default> TraceBuffer<S> {
    /// A buffer holding at most `max_traces` traces of at most
    /// `max_spans_per_trace` spans each, each waiting at most
    /// `decision_wait` for its root (all bounds non-zero, checked by the
    /// owner's configuration).
    pub(crate) fn new(
        max_traces: usize,
        max_spans_per_trace: usize,
        decision_wait: Duration,
    ) -> Self {
        TraceBuffer {
            max_traces,
            max_spans_per_trace,
            decision_wait,
            pending: HashMap::with_capacity(max_traces.min(4_096)),
            order: VecDeque::new(),
            next_seq: 0,
            spans: 0,
            bytes: 0,
            peak_traces: 0,
            peak_spans: 0,
            peak_bytes: 0,
        }
    }

    /// Buffer `span` at time `now`. A new trace beyond `max_traces` first
    /// evicts the oldest ones through `evicted` (with [`Trigger::MaxTraces`]).
    /// `observe` sees every span, stored or refused, with its trace's
    /// summary. When the span is the local root, the caller takes the trace
    /// with [`take`](Self::take).
    pub(crate) fn insert(
        &mut self,
        span: SpanData,
        now: Instant,
        observe: impl FnOnce(&mut S, &SpanData),
        evicted: &mut dyn FnMut(TraceId, Entry<S>, Trigger),
    ) -> Inserted {
        let trace_id = span.span_context.trace_id();
        let new_trace = !self.pending.contains_key(&trace_id);
        if new_trace {
            while self.pending.len() >= self.max_traces {
                if !self.evict_oldest(evicted) {
                    break;
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.pending.insert(
                trace_id,
                Entry {
                    seq,
                    first_seen: now,
                    spans: Vec::new(),
                    bytes: 0,
                    summary: S::default(),
                    root_duration: None,
                    min_start: span.start_time,
                    max_end: span.end_time,
                },
            );
            self.order.push_back((trace_id, seq));
            self.compact_order();
        }
        let is_root = completes_trace(&span);
        let limit = self.max_spans_per_trace;
        let mut over_limit = false;
        if let Some(e) = self.pending.get_mut(&trace_id) {
            observe(&mut e.summary, &span);
            e.min_start = e.min_start.min(span.start_time);
            e.max_end = e.max_end.max(span.end_time);
            if is_root {
                e.root_duration = Some(
                    span.end_time
                        .duration_since(span.start_time)
                        .unwrap_or_default(),
                );
            }
            if e.spans.len() < limit {
                let size = approx_size(&span);
                e.bytes += size;
                e.spans.push(span);
                self.spans += 1;
                self.bytes += size;
            } else {
                over_limit = true;
            }
        }
        self.update_peaks();
        Inserted {
            new_trace,
            over_limit,
            is_root,
        }
    }

    /// Remove `trace_id` from the buffer.
    pub(crate) fn take(&mut self, trace_id: TraceId) -> Option<Entry<S>> {
        let e = self.pending.remove(&trace_id)?;
        self.spans -= e.spans.len();
        self.bytes -= e.bytes;
        Some(e)
    }

    /// Hand back every trace whose decision wait has passed at `now`.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut dyn FnMut(TraceId, Entry<S>, Trigger)) {
        while let Some(&(trace_id, seq)) = self.order.front() {
            match self.pending.get(&trace_id) {
                Some(e) if e.seq == seq => {
                    if now.saturating_duration_since(e.first_seen) < self.decision_wait {
                        break;
                    }
                    self.order.pop_front();
                    if let Some(e) = self.take(trace_id) {
                        out(trace_id, e, Trigger::Timeout);
                    }
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Hand back every buffered trace (shutdown), oldest first.
    pub(crate) fn drain(&mut self, out: &mut dyn FnMut(TraceId, Entry<S>, Trigger)) {
        while let Some((trace_id, seq)) = self.order.pop_front() {
            if self.pending.get(&trace_id).is_some_and(|e| e.seq == seq)
                && let Some(e) = self.take(trace_id)
            {
                out(trace_id, e, Trigger::Shutdown);
            }
        }
    }

    /// Current and peak levels.
    pub(crate) fn levels(&self) -> Levels {
        Levels {
            traces: self.pending.len(),
            spans: self.spans,
            bytes: self.bytes,
            peak_traces: self.peak_traces,
            peak_spans: self.peak_spans,
            peak_bytes: self.peak_bytes,
        }
    }

    fn evict_oldest(&mut self, out: &mut dyn FnMut(TraceId, Entry<S>, Trigger)) -> bool {
        while let Some((trace_id, seq)) = self.order.pop_front() {
            if self.pending.get(&trace_id).is_some_and(|e| e.seq == seq)
                && let Some(e) = self.take(trace_id)
            {
                out(trace_id, e, Trigger::MaxTraces);
                return true;
            }
        }
        false
    }

    /// Drop stale order entries (traces taken at their root) so the queue
    /// stays within twice the trace bound.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.max_traces + 64 {
            let pending = &self.pending;
            self.order
                .retain(|(id, seq)| pending.get(id).is_some_and(|e| e.seq == *seq));
        }
    }

    fn update_peaks(&mut self) {
        self.peak_traces = self.peak_traces.max(self.pending.len());
        self.peak_spans = self.peak_spans.max(self.spans);
        self.peak_bytes = self.peak_bytes.max(self.bytes);
    }
}

/// Approximate heap and inline bytes of a buffered span: the struct, its
/// attribute, event and link slots, and the text of string values and an
/// owned name.
pub(crate) fn approx_size(span: &SpanData) -> usize {
    let text = |v: &Value| match v {
        Value::String(s) => s.as_str().len(),
        _ => 0,
    };
    let attrs: usize = span
        .attributes
        .iter()
        .map(|kv| std::mem::size_of::<KeyValue>() + text(&kv.value))
        .sum();
    let events: usize = span
        .events
        .iter()
        .map(|e| {
            std::mem::size_of::<opentelemetry::trace::Event>()
                + e.attributes.len() * std::mem::size_of::<KeyValue>()
        })
        .sum();
    let links = span.links.len() * std::mem::size_of::<opentelemetry::trace::Link>();
    let name = match &span.name {
        std::borrow::Cow::Owned(s) => s.len(),
        std::borrow::Cow::Borrowed(_) => 0,
    };
    std::mem::size_of::<SpanData>() + attrs + events + links + name
}
