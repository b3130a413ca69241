//! Aggregates across traces: per-key percentiles of duration and of
//! critical-path contribution, dominance, queue share and a tail view.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::analyze::{SegmentType, TraceReport};
use crate::model::TraceId;

/// Nearest-rank percentiles of a set of nanosecond values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of values.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: u64,
}

impl Percentiles {
    /// Computes the percentiles (sorts `values` in place).
    pub fn of(values: &mut [u64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let n = values.len();
        let at = |q: f64| {
            let rank = (q * n as f64).ceil() as usize;
            values[rank.clamp(1, n) - 1]
        };
        let sum: u128 = values.iter().map(|&v| u128::from(v)).sum();
        Percentiles {
            count: n,
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            max: values[n - 1],
            mean: (sum / n as u128) as u64,
        }
    }
}

/// Statistics for one key (a stage, a hop, a queue or a span name).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyStats {
    /// The key (stage name; hop, queue or span name).
    pub key: Arc<str>,
    /// The kind of time.
    pub segment_type: SegmentType,
    /// Spans with this key, across all traces.
    pub spans: usize,
    /// Duration of those spans.
    pub duration: Percentiles,
    /// Traces in which the key occurs.
    pub traces: usize,
    /// Traces in which the key has time on the critical path.
    pub on_path_traces: usize,
    /// Critical-path time per trace, over the traces in which the key occurs
    /// (0 when it occurs but is off the path).
    pub critical: Percentiles,
    /// Share of all critical-path time (all traces) charged to this key.
    pub critical_share: f64,
    /// Traces in which this key is the largest contributor.
    pub dominates: usize,
    /// `dominates / total traces`.
    pub dominance: f64,
}

/// What one key contributed to the slowest traces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TailRow {
    /// The key.
    pub key: Arc<str>,
    /// The kind of time.
    pub segment_type: SegmentType,
    /// Total critical-path time in the tail traces.
    pub critical_ns: u64,
    /// Share of the tail traces' total duration.
    pub share: f64,
    /// Tail traces in which it is the largest contributor.
    pub dominates: usize,
}

/// What the slowest 1% of traces (at least one) waited on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TailView {
    /// Duration of the fastest trace in the tail.
    pub threshold_ns: u64,
    /// Traces in the tail.
    pub traces: usize,
    /// The slowest traces (up to 10), slowest first.
    pub slowest: Vec<(TraceId, u64)>,
    /// Contributors in the tail, largest first.
    pub rows: Vec<TailRow>,
}

/// Aggregates over many traces.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Traces analysed.
    pub traces: usize,
    /// Spans analysed.
    pub spans: usize,
    /// Trace durations.
    pub duration: Percentiles,
    /// Share of all critical-path time spent waiting in queues.
    pub queue_share: f64,
    /// Share spent in remote hops (outside remote stages).
    pub hop_share: f64,
    /// Share spent in stages.
    pub stage_share: f64,
    /// Share spent in other spans' own time (orchestration, uninstrumented code).
    pub self_share: f64,
    /// Per-key rows, largest critical share first.
    pub rows: Vec<KeyStats>,
    /// The slowest 1% of traces.
    pub tail: TailView,
    /// Diagnostics found while analysing the traces.
    pub diagnostics: usize,
}

struct Acc {
    key: Arc<str>,
    segment_type: SegmentType,
    durations: Vec<u64>,
    critical: Vec<u64>,
    on_path: usize,
    total_critical: u128,
    dominates: usize,
    seen: usize,
    /// Contribution in the trace being added (valid when `seen` is that trace).
    this_trace_ns: u64,
}

/// Per trace: duration, id, contributions as (key index, ns).
type TraceEntry = (u64, TraceId, Vec<(usize, u64)>);

/// Builds [`Stats`] from trace reports one at a time, so reports need not be
/// kept.
#[derive(Default)]
pub struct StatsBuilder {
    /// Key → accumulator, one map per segment type (looked up by `&str`, so
    /// a lookup neither clones nor builds a key).
    index: [HashMap<Arc<str>, usize>; 4],
    accs: Vec<Acc>,
    durations: Vec<u64>,
    per_type: [u128; 4],
    spans: usize,
    diagnostics: usize,
    traces: Vec<TraceEntry>,
}

fn type_index(t: SegmentType) -> usize {
    match t {
        SegmentType::Stage => 0,
        SegmentType::Hop => 1,
        SegmentType::Queue => 2,
        SegmentType::SelfTime => 3,
    }
}

impl StatsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, t: SegmentType, k: &Arc<str>) -> usize {
        if let Some(&i) = self.index[type_index(t)].get(&**k) {
            return i;
        }
        let i = self.accs.len();
        self.accs.push(Acc {
            key: k.clone(),
            segment_type: t,
            durations: Vec::new(),
            critical: Vec::new(),
            on_path: 0,
            total_critical: 0,
            dominates: 0,
            seen: usize::MAX,
            this_trace_ns: 0,
        });
        self.index[type_index(t)].insert(k.clone(), i);
        i
    }

    /// Adds one trace.
    pub fn add(&mut self, r: &TraceReport) {
        let trace_no = self.durations.len();
        self.durations.push(r.duration_ns);
        self.spans += r.spans.len();
        self.diagnostics += r.diagnostics.len() + r.suppressed_diagnostics as usize;
        let mut present: Vec<usize> = Vec::new();
        for s in r.spans.iter().filter(|s| s.tree == 0) {
            let i = self.key(s.segment_type, &s.key);
            // only spans that own their key count as that key's spans
            let owns = match s.segment_type {
                SegmentType::Stage => s.is_stage,
                _ => s.key == s.name,
            };
            if owns {
                self.accs[i].durations.push(s.end_ns - s.start_ns);
            }
            if self.accs[i].seen != trace_no {
                self.accs[i].seen = trace_no;
                self.accs[i].this_trace_ns = 0;
                present.push(i);
            }
        }
        let mut contrib: Vec<(usize, u64)> = Vec::with_capacity(r.contributions.len());
        for c in &r.contributions {
            let i = self.key(c.segment_type, &c.key);
            contrib.push((i, c.duration_ns));
            self.per_type[type_index(c.segment_type)] += u128::from(c.duration_ns);
            let a = &mut self.accs[i];
            a.total_critical += u128::from(c.duration_ns);
            if a.seen != trace_no {
                a.seen = trace_no;
                a.this_trace_ns = 0;
                present.push(i);
            }
            a.this_trace_ns += c.duration_ns;
        }
        if let Some(&(i, ns)) = contrib.first()
            && ns > 0
        {
            self.accs[i].dominates += 1;
        }
        for &i in &present {
            let a = &mut self.accs[i];
            let ns = a.this_trace_ns;
            a.critical.push(ns);
            if ns > 0 {
                a.on_path += 1;
            }
        }
        self.traces.push((r.duration_ns, r.trace_id, contrib));
    }

    /// Computes the statistics.
    pub fn finish(mut self) -> Stats {
        let n = self.durations.len();
        let total_critical: u128 = self.per_type.iter().sum();
        let share = |x: u128| {
            if total_critical == 0 {
                0.0
            } else {
                x as f64 / total_critical as f64
            }
        };
        let mut rows: Vec<KeyStats> = self
            .accs
            .iter_mut()
            .map(|a| KeyStats {
                key: a.key.clone(),
                segment_type: a.segment_type,
                spans: a.durations.len(),
                duration: Percentiles::of(&mut a.durations),
                traces: a.critical.len(),
                on_path_traces: a.on_path,
                critical: Percentiles::of(&mut a.critical),
                critical_share: share(a.total_critical),
                dominates: a.dominates,
                dominance: if n == 0 {
                    0.0
                } else {
                    a.dominates as f64 / n as f64
                },
            })
            .collect();
        rows.sort_by(|a, b| {
            b.critical_share
                .total_cmp(&a.critical_share)
                .then_with(|| b.duration.p50.cmp(&a.duration.p50))
                .then_with(|| a.key.cmp(&b.key))
        });

        // tail: the slowest 1% (at least one trace)
        self.traces
            .sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let k = n.div_ceil(100).min(n);
        let tail_traces = &self.traces[..k];
        let tail_total: u128 = tail_traces.iter().map(|t| u128::from(t.0)).sum();
        let mut tail_acc: HashMap<usize, (u64, usize)> = HashMap::new();
        for (_, _, contrib) in tail_traces {
            for (j, &(i, ns)) in contrib.iter().enumerate() {
                let e = tail_acc.entry(i).or_insert((0, 0));
                e.0 += ns;
                if j == 0 && ns > 0 {
                    e.1 += 1;
                }
            }
        }
        let mut tail_rows: Vec<TailRow> = tail_acc
            .into_iter()
            .map(|(i, (ns, dom))| TailRow {
                key: self.accs[i].key.clone(),
                segment_type: self.accs[i].segment_type,
                critical_ns: ns,
                share: if tail_total == 0 {
                    0.0
                } else {
                    ns as f64 / tail_total as f64
                },
                dominates: dom,
            })
            .collect();
        tail_rows.sort_by(|a, b| {
            b.critical_ns
                .cmp(&a.critical_ns)
                .then_with(|| a.key.cmp(&b.key))
        });
        let tail = TailView {
            threshold_ns: tail_traces.last().map_or(0, |t| t.0),
            traces: k,
            slowest: tail_traces.iter().take(10).map(|t| (t.1, t.0)).collect(),
            rows: tail_rows,
        };

        Stats {
            traces: n,
            spans: self.spans,
            duration: Percentiles::of(&mut self.durations),
            stage_share: share(self.per_type[0]),
            hop_share: share(self.per_type[1]),
            queue_share: share(self.per_type[2]),
            self_share: share(self.per_type[3]),
            rows,
            tail,
            diagnostics: self.diagnostics,
        }
    }
}

/// Statistics over a set of reports.
pub fn stats<'a>(reports: impl IntoIterator<Item = &'a TraceReport>) -> Stats {
    let mut b = StatsBuilder::new();
    for r in reports {
        b.add(r);
    }
    b.finish()
}
