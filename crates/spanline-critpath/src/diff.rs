//! Which stage, hop or queue explains a change in trace latency between a
//! baseline and a current set of traces (`spanline diff`; see
//! `docs/critical-path.md`, section *Diff*).
//!
//! Per trace, the contributions of [`TraceReport::contributions`] add up to
//! the trace's duration. At a quantile `q` (p50, p95) the traces whose
//! duration rank lies within `q ± band` are taken on each side; the mean
//! contribution of every key over those traces is compared, so the key
//! deltas add up to the change in the band's mean latency. A seeded
//! bootstrap (each side resampled with replacement, independently) gives a
//! percentile confidence interval per key and for the latency change.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::analyze::{SegmentType, TraceReport};
use crate::stats::Percentiles;

/// The quantiles a diff explains, with their labels.
pub const QUANTILES: [(f64, &str); 2] = [(0.50, "p50"), (0.95, "p95")];

/// Keys (largest point change first) that get a bootstrap interval; the
/// rest are reported without one, so memory stays bounded by
/// `resamples × MAX_CI_KEYS` whatever the number of distinct keys.
pub const MAX_CI_KEYS: usize = 64;

/// Bootstrap work budget in drawn traces (`resamples × traces`): larger
/// inputs get fewer resamples (never fewer than [`MIN_RESAMPLES`]), so the
/// cost stays linear in the number of traces. The number used is reported.
pub const RESAMPLE_BUDGET: usize = 200_000_000;

/// The least number of resamples used when the budget cuts them.
pub const MIN_RESAMPLES: usize = 200;

/// Which input a trace comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The reference (`BASELINE`).
    Baseline,
    /// The run being explained (`CURRENT`).
    Current,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Baseline => "baseline",
            Side::Current => "current",
        })
    }
}

/// Why a diff could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// One side has no analysable trace.
    #[error("the {0} holds no trace that could be analysed")]
    NoTraces(Side),
    /// An option is out of range.
    #[error("invalid {name} {value}: {expected}")]
    BadOption {
        /// The option.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
}

/// Settings of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DiffOptions {
    /// Bootstrap resamples (1 to 100,000; cut to fit [`RESAMPLE_BUDGET`]).
    pub resamples: usize,
    /// Seed of the resampling generator: the same inputs and seed give the
    /// same intervals.
    pub seed: u64,
    /// Confidence level of the intervals, in (0, 1).
    pub confidence: f64,
    /// A key is named as a cause at a quantile when its whole interval lies
    /// beyond ± this fraction of the baseline latency at that quantile: the
    /// change is confidently larger than that (with 0, the interval only
    /// has to exclude 0). One outlier trace moves a point estimate, not the
    /// near end of the interval.
    pub min_effect: f64,
    /// Half-width of the rank band around each quantile, in (0, 0.5].
    pub band: f64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            resamples: 1000,
            seed: 0x5eed_c0de,
            confidence: 0.95,
            min_effect: 0.05,
            band: 0.05,
        }
    }
}

impl DiffOptions {
    fn check(&self) -> Result<(), DiffError> {
        let bad = |name, value, expected| {
            Err(DiffError::BadOption {
                name,
                value,
                expected,
            })
        };
        if !(1..=100_000).contains(&self.resamples) {
            return bad("resamples", self.resamples as f64, "1 to 100000");
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return bad("confidence", self.confidence, "a number in (0, 1)");
        }
        if !(self.min_effect.is_finite() && self.min_effect >= 0.0) {
            return bad("min-effect", self.min_effect, "a finite number ≥ 0");
        }
        if !(self.band > 0.0 && self.band <= 0.5) {
            return bad("band", self.band, "a number in (0, 0.5]");
        }
        Ok(())
    }
}

/// A confidence interval of a change, in signed nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// Lower bound.
    pub lo_ns: i64,
    /// Upper bound.
    pub hi_ns: i64,
}

impl Interval {
    /// Whether the interval lies entirely on one side of 0.
    pub fn excludes_zero(&self) -> bool {
        self.lo_ns > 0 || self.hi_ns < 0
    }
}

/// Where a key occurs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// In both inputs.
    Both,
    /// Only in the baseline (gone).
    BaselineOnly,
    /// Only in the current input (new).
    CurrentOnly,
}

/// Summary of one input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideSummary {
    /// Traces.
    pub traces: usize,
    /// Trace durations.
    pub duration: Percentiles,
}

/// A key's change at one quantile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyChange {
    /// `p50` or `p95`.
    pub quantile: &'static str,
    /// Mean critical-path contribution in the baseline's band.
    pub baseline_ns: u64,
    /// Mean critical-path contribution in the current band.
    pub current_ns: u64,
    /// `current_ns - baseline_ns`.
    pub delta_ns: i64,
    /// Bootstrap interval of the change (`None` beyond [`MAX_CI_KEYS`]).
    pub ci: Option<Interval>,
    /// Whether this key is named as a cause at this quantile.
    pub cause: bool,
}

/// One key's changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyDiff {
    /// The key (stage name; hop, queue or span name).
    pub key: Arc<str>,
    /// The kind of time.
    pub segment_type: SegmentType,
    /// Which inputs hold the key.
    pub presence: Presence,
    /// One entry per quantile of [`QUANTILES`].
    pub changes: Vec<KeyChange>,
}

/// The latency change at one quantile and the keys that explain it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuantileDiff {
    /// `p50` or `p95`.
    pub quantile: &'static str,
    /// The baseline's trace latency at the quantile (nearest rank).
    pub baseline_ns: u64,
    /// The current trace latency at the quantile.
    pub current_ns: u64,
    /// `current_ns - baseline_ns`.
    pub delta_ns: i64,
    /// Bootstrap interval of `delta_ns`.
    pub ci: Interval,
    /// Change of the band's mean latency: the sum of the keys' deltas.
    pub explained_ns: i64,
    /// Keys named as causes, largest change first.
    pub causes: Vec<Arc<str>>,
}

/// The result of a diff.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    /// The baseline.
    pub baseline: SideSummary,
    /// The current input.
    pub current: SideSummary,
    /// Per quantile: the latency change and its causes.
    pub quantiles: Vec<QuantileDiff>,
    /// Per key, largest change (over the quantiles) first.
    pub rows: Vec<KeyDiff>,
    /// Options used.
    pub options: DiffOptions,
    /// Resamples actually drawn (fewer than asked for huge inputs).
    pub resamples_used: usize,
    /// Problems worth saying (mismatched key sets, tiny samples).
    pub notes: Vec<String>,
}

#[derive(Default)]
struct SideAcc {
    durations: Vec<u64>,
    /// Contributions of all traces: (key, ns); trace `i` owns
    /// `contrib[off[i]..off[i + 1]]`.
    contrib: Vec<(u32, u64)>,
    off: Vec<usize>,
    /// Per key: whether a span of this side has it.
    seen: Vec<bool>,
}

/// Collects the traces of both inputs, then computes the [`Diff`].
#[derive(Default)]
pub struct DiffBuilder {
    index: HashMap<(SegmentType, Arc<str>), u32>,
    keys: Vec<(SegmentType, Arc<str>)>,
    sides: [SideAcc; 2],
}

impl DiffBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, t: SegmentType, k: &Arc<str>) -> u32 {
        if let Some(&i) = self.index.get(&(t, k.clone())) {
            return i;
        }
        let i = self.keys.len() as u32;
        self.keys.push((t, k.clone()));
        self.index.insert((t, k.clone()), i);
        for s in &mut self.sides {
            s.seen.push(false);
        }
        i
    }

    /// Adds one trace of `side`.
    pub fn add(&mut self, side: Side, r: &TraceReport) {
        let si = side as usize;
        for s in r.spans.iter().filter(|s| s.tree == 0) {
            let k = self.key(s.segment_type, &s.key) as usize;
            self.sides[si].seen[k] = true;
        }
        let mut list: Vec<(u32, u64)> = Vec::with_capacity(r.contributions.len());
        for c in &r.contributions {
            let k = self.key(c.segment_type, &c.key);
            self.sides[si].seen[k as usize] = true;
            list.push((k, c.duration_ns));
        }
        let acc = &mut self.sides[si];
        if acc.off.is_empty() {
            acc.off.push(0);
        }
        acc.durations.push(r.duration_ns);
        acc.contrib.extend(list);
        acc.off.push(acc.contrib.len());
    }

    /// Traces added to `side`.
    pub fn traces(&self, side: Side) -> usize {
        self.sides[side as usize].durations.len()
    }

    /// Computes the diff.
    pub fn finish(self, opts: &DiffOptions) -> Result<Diff, DiffError> {
        opts.check()?;
        for side in [Side::Baseline, Side::Current] {
            if self.traces(side) == 0 {
                return Err(DiffError::NoTraces(side));
            }
        }
        let nkeys = self.keys.len();
        let sorted: [Vec<u32>; 2] = std::array::from_fn(|s| {
            let d = &self.sides[s].durations;
            let mut o: Vec<u32> = (0..d.len() as u32).collect();
            o.sort_unstable_by_key(|&i| (d[i as usize], i));
            o
        });
        let bands: [Vec<Band>; 2] = std::array::from_fn(|s| {
            QUANTILES
                .iter()
                .map(|&(q, _)| Band::new(q, opts.band, sorted[s].len()))
                .collect()
        });

        // Point estimates: band means per key and side.
        let mut means = vec![[[0f64; 2]; QUANTILES.len()]; nkeys];
        let mut latency = [[0u64; 2]; QUANTILES.len()];
        let mut band_mean = [[0f64; 2]; QUANTILES.len()];
        for s in 0..2 {
            let acc = &self.sides[s];
            for (qi, b) in bands[s].iter().enumerate() {
                latency[qi][s] = acc.durations[sorted[s][b.rank] as usize];
                let w = 1.0 / b.len() as f64;
                let mut total = 0f64;
                for &t in &sorted[s][b.lo..=b.hi] {
                    let t = t as usize;
                    total += acc.durations[t] as f64 * w;
                    for &(k, ns) in &acc.contrib[acc.off[t]..acc.off[t + 1]] {
                        means[k as usize][qi][s] += ns as f64 * w;
                    }
                }
                band_mean[qi][s] = total;
            }
        }
        let delta = |k: usize, qi: usize| means[k][qi][1] - means[k][qi][0];

        // Keys that get an interval: the largest point changes.
        let mut order: Vec<usize> = (0..nkeys).collect();
        let size = |k: usize| {
            (0..QUANTILES.len())
                .map(|q| delta(k, q).abs())
                .fold(0.0, f64::max)
        };
        order.sort_by(|&a, &b| {
            size(b)
                .total_cmp(&size(a))
                .then_with(|| self.keys[a].1.cmp(&self.keys[b].1))
                .then_with(|| self.keys[a].0.cmp(&self.keys[b].0))
        });
        let mut slot = vec![u32::MAX; nkeys];
        for (i, &k) in order.iter().take(MAX_CI_KEYS).enumerate() {
            slot[k] = i as u32;
        }
        let nslots = nkeys.min(MAX_CI_KEYS);

        // Bootstrap.
        let n_all = self.sides[0].durations.len() + self.sides[1].durations.len();
        let resamples = opts
            .resamples
            .min((RESAMPLE_BUDGET / n_all.max(1)).max(MIN_RESAMPLES));
        let mut rng = SplitMix64(opts.seed);
        // samples[qi][slot] = deltas; lat_samples[qi] = latency deltas
        let mut samples = vec![vec![Vec::with_capacity(resamples); nslots]; QUANTILES.len()];
        let mut lat_samples = vec![Vec::with_capacity(resamples); QUANTILES.len()];
        let mut counts: [Vec<u32>; 2] = std::array::from_fn(|s| vec![0; sorted[s].len()]);
        let mut sums = vec![[[0f64; 2]; QUANTILES.len()]; nslots];
        for _ in 0..resamples {
            let mut lat = [[0u64; 2]; QUANTILES.len()];
            for row in sums.iter_mut() {
                *row = [[0.0; 2]; QUANTILES.len()];
            }
            for s in 0..2 {
                let n = sorted[s].len();
                let c = &mut counts[s];
                c.fill(0);
                for _ in 0..n {
                    c[rng.below(n)] += 1;
                }
                let acc = &self.sides[s];
                // Walk the sorted order; each trace covers `count` ranks.
                let mut pos = 0usize;
                for (j, &t) in sorted[s].iter().enumerate() {
                    let w = c[j] as usize;
                    if w == 0 {
                        continue;
                    }
                    let (a, b) = (pos, pos + w - 1);
                    pos += w;
                    for (qi, band) in bands[s].iter().enumerate() {
                        if (a..=b).contains(&band.rank) {
                            lat[qi][s] = acc.durations[t as usize];
                        }
                        let lo = a.max(band.lo);
                        let hi = b.min(band.hi);
                        if lo > hi {
                            continue;
                        }
                        let weight = (hi - lo + 1) as f64 / band.len() as f64;
                        let t = t as usize;
                        for &(k, ns) in &acc.contrib[acc.off[t]..acc.off[t + 1]] {
                            let sl = slot[k as usize];
                            if sl != u32::MAX {
                                sums[sl as usize][qi][s] += ns as f64 * weight;
                            }
                        }
                    }
                }
            }
            for qi in 0..QUANTILES.len() {
                lat_samples[qi].push(signed(lat[qi][1]) - signed(lat[qi][0]));
                for (sl, row) in sums.iter().enumerate() {
                    samples[qi][sl].push(round(row[qi][1] - row[qi][0]));
                }
            }
        }
        let alpha = (1.0 - opts.confidence) / 2.0;
        let interval = |v: &mut Vec<i64>| -> Interval {
            v.sort_unstable();
            let n = v.len();
            let at = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
            Interval {
                lo_ns: at(alpha),
                hi_ns: at(1.0 - alpha),
            }
        };

        // Rows.
        let mut rows: Vec<KeyDiff> = Vec::with_capacity(nkeys);
        for &k in &order {
            let presence = match (self.sides[0].seen[k], self.sides[1].seen[k]) {
                (true, false) => Presence::BaselineOnly,
                (false, true) => Presence::CurrentOnly,
                _ => Presence::Both,
            };
            let changes = QUANTILES
                .iter()
                .enumerate()
                .map(|(qi, &(_, label))| {
                    let ci =
                        (slot[k] != u32::MAX).then(|| interval(&mut samples[qi][slot[k] as usize]));
                    let d = round(delta(k, qi));
                    let m = opts.min_effect * latency[qi][0] as f64;
                    let cause = ci.is_some_and(|ci| ci.lo_ns as f64 > m || (ci.hi_ns as f64) < -m);
                    KeyChange {
                        quantile: label,
                        baseline_ns: round(means[k][qi][0]).max(0) as u64,
                        current_ns: round(means[k][qi][1]).max(0) as u64,
                        delta_ns: d,
                        ci,
                        cause,
                    }
                })
                .collect();
            rows.push(KeyDiff {
                key: self.keys[k].1.clone(),
                segment_type: self.keys[k].0,
                presence,
                changes,
            });
        }
        let quantiles = QUANTILES
            .iter()
            .enumerate()
            .map(|(qi, &(_, label))| {
                let mut causes: Vec<(i64, Arc<str>)> = rows
                    .iter()
                    .filter(|r| r.changes[qi].cause)
                    .map(|r| (r.changes[qi].delta_ns, r.key.clone()))
                    .collect();
                causes.sort_by_key(|c| std::cmp::Reverse(c.0.unsigned_abs()));
                QuantileDiff {
                    quantile: label,
                    baseline_ns: latency[qi][0],
                    current_ns: latency[qi][1],
                    delta_ns: signed(latency[qi][1]) - signed(latency[qi][0]),
                    ci: interval(&mut lat_samples[qi]),
                    explained_ns: round(band_mean[qi][1] - band_mean[qi][0]),
                    causes: causes.into_iter().map(|c| c.1).collect(),
                }
            })
            .collect();

        let mut notes = Vec::new();
        let list = |p: Presence| {
            let v: Vec<&str> = rows
                .iter()
                .filter(|r| r.presence == p)
                .map(|r| &*r.key)
                .collect();
            (
                v.len(),
                v.into_iter().take(8).collect::<Vec<_>>().join(", "),
            )
        };
        for (p, what) in [
            (Presence::CurrentOnly, "only in the current input (new)"),
            (Presence::BaselineOnly, "only in the baseline (gone)"),
        ] {
            let (n, names) = list(p);
            if n > 0 {
                notes.push(format!(
                    "{n} key{} {what}: {names}{}",
                    if n == 1 { "" } else { "s" },
                    if n > 8 { ", …" } else { "" }
                ));
            }
        }
        if rows.iter().all(|r| r.presence != Presence::Both) {
            notes.push(
                "the inputs share no stage, hop or queue: are they runs of the same pipeline?"
                    .to_owned(),
            );
        }
        for side in [Side::Baseline, Side::Current] {
            let n = self.traces(side);
            if n < 20 {
                notes.push(format!(
                    "the {side} has only {n} trace{}: the intervals are wide",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
        if nkeys > MAX_CI_KEYS {
            notes.push(format!(
                "{} keys with smaller changes have no interval (only the largest {MAX_CI_KEYS} are resampled)",
                nkeys - MAX_CI_KEYS
            ));
        }
        if resamples < opts.resamples {
            notes.push(format!(
                "{resamples} resamples instead of {} ({n_all} traces; the work budget is {RESAMPLE_BUDGET} draws)",
                opts.resamples
            ));
        }

        let summary = |s: usize| SideSummary {
            traces: self.sides[s].durations.len(),
            duration: Percentiles::of(&mut self.sides[s].durations.clone()),
        };
        Ok(Diff {
            baseline: summary(0),
            current: summary(1),
            quantiles,
            rows,
            options: *opts,
            resamples_used: resamples,
            notes,
        })
    }
}

fn signed(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn round(x: f64) -> i64 {
    // `as` saturates and maps NaN to 0.
    x.round() as i64
}

/// The ranks (0-based, in duration order) around one quantile.
struct Band {
    /// Nearest rank of the quantile itself.
    rank: usize,
    lo: usize,
    hi: usize,
}

impl Band {
    fn new(q: f64, half: f64, n: usize) -> Band {
        // nearest rank, forgiving float error (0.55 × 100 = 55.000000000000007)
        let rank_of = |p: f64| (((p * n as f64) - 1e-9).ceil() as usize).clamp(1, n) - 1;
        let rank = rank_of(q);
        Band {
            rank,
            lo: rank_of(q - half).min(rank),
            hi: rank_of(q + half).max(rank),
        }
    }

    fn len(&self) -> usize {
        self.hi - self.lo + 1
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny, seedable, well-mixed
/// generator — enough for resampling indices.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift; `n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_contains_the_rank() {
        for n in 1..50 {
            for &(q, _) in &QUANTILES {
                let b = Band::new(q, 0.05, n);
                assert!(b.lo <= b.rank && b.rank <= b.hi && b.hi < n);
            }
        }
        let b = Band::new(0.5, 0.05, 100);
        assert_eq!((b.lo, b.rank, b.hi), (44, 49, 54));
    }

    #[test]
    fn splitmix_is_deterministic_and_in_range() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        for _ in 0..1000 {
            let x = a.below(13);
            assert_eq!(x, b.below(13));
            assert!(x < 13);
        }
    }
}
