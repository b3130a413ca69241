//! The `spanline` command: critical-path reports, statistics and waterfalls
//! from trace files (OTLP JSON, OTLP protobuf or spanline console JSON lines).

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use spanline_critpath::{
    DiffBuilder, DiffOptions, Format, GroupedDiffBuilder, GroupedStatsBuilder, Loaded, Scales,
    Side, Span, StatsBuilder, TraceReport, WhatIfBuilder, analyze_trace, group_by_trace,
    load_reader, render,
};

/// Critical-path analysis of spanline traces.
#[derive(Parser)]
#[command(name = "spanline", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The critical path of one trace (the slowest unless --trace is given).
    Critpath {
        /// Trace file: OTLP JSON lines, OTLP protobuf or spanline console JSON lines.
        file: PathBuf,
        /// The trace to show (hex trace id, or a unique prefix of one).
        #[arg(long)]
        trace: Option<String>,
        /// Show every trace instead of one.
        #[arg(long, conflicts_with = "trace")]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// List every critical-path segment (by default runs of segments
        /// under 1% of the trace each are merged into one line).
        #[arg(long)]
        all_segments: bool,
        /// Input format (detected by default).
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
    },
    /// Per-stage statistics across all traces in the file.
    Stats {
        /// Trace file.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Statistics per value of this span attribute (e.g. server.address
        /// to compare worker replicas; service.name reads the resource).
        #[arg(long, value_name = "ATTR")]
        group_by: Option<String>,
        /// Input format (detected by default).
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
    },
    /// Which stage, hop or queue explains the latency change from BASELINE
    /// to CURRENT at p50 and p95, with bootstrap confidence intervals.
    Diff {
        /// The reference trace file.
        baseline: PathBuf,
        /// The trace file to explain.
        current: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A diff per value of this span attribute.
        #[arg(long, value_name = "ATTR")]
        group_by: Option<String>,
        /// Bootstrap resamples.
        #[arg(long, default_value_t = DiffOptions::default().resamples)]
        resamples: usize,
        /// Seed of the resampling (same seed, same intervals).
        #[arg(long, default_value_t = DiffOptions::default().seed)]
        seed: u64,
        /// Confidence level of the intervals.
        #[arg(long, default_value_t = DiffOptions::default().confidence)]
        confidence: f64,
        /// A key is a cause when its whole interval lies beyond ± this fraction of the baseline latency.
        #[arg(long, default_value_t = DiffOptions::default().min_effect)]
        min_effect: f64,
        /// Input format of both files (detected by default).
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
    },
    /// Projected latency and critical-path shares if stages, hops or queues
    /// were faster or slower.
    Whatif {
        /// Trace file.
        file: PathBuf,
        /// KEY=FACTOR: multiply the own time of a stage, hop or queue (repeatable).
        #[arg(long = "scale", value_name = "KEY=FACTOR", required = true)]
        scales: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Input format (detected by default).
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
    },
    /// A self-contained HTML page: waterfall of one trace and a summary of all.
    Waterfall {
        /// Trace file.
        file: PathBuf,
        /// Output HTML file.
        #[arg(short, long)]
        output: PathBuf,
        /// The trace to draw (default: the slowest).
        #[arg(long)]
        trace: Option<String>,
        /// List every critical-path segment in the page's table.
        #[arg(long)]
        all_segments: bool,
        /// Input format (detected by default).
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Detect from the content.
    Auto,
    /// JSON lines (OTLP JSON or console spans).
    Json,
    /// One OTLP protobuf TracesData message.
    Proto,
    /// Length-delimited OTLP protobuf messages.
    ProtoDelimited,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Auto => Format::Auto,
            FormatArg::Json => Format::JsonLines,
            FormatArg::Proto => Format::OtlpProto,
            FormatArg::ProtoDelimited => Format::OtlpProtoDelimited,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spanline: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Critpath {
            file,
            trace,
            all,
            json,
            all_segments,
            format,
        } => {
            let limits = limits(all_segments);
            critpath(&file, trace.as_deref(), all, json, &limits, format.into())
        }
        Command::Stats {
            file,
            json,
            group_by,
            format,
        } => stats(&file, json, group_by.as_deref(), format.into()),
        Command::Diff {
            baseline,
            current,
            json,
            group_by,
            resamples,
            seed,
            confidence,
            min_effect,
            format,
        } => {
            let opts = DiffOptions {
                resamples,
                seed,
                confidence,
                min_effect,
                ..DiffOptions::default()
            };
            diff(
                [&baseline, &current],
                json,
                group_by.as_deref(),
                &opts,
                format.into(),
            )
        }
        Command::Whatif {
            file,
            scales,
            json,
            format,
        } => whatif(&file, &scales, json, format.into()),
        Command::Waterfall {
            file,
            output,
            trace,
            all_segments,
            format,
        } => waterfall(
            &file,
            &output,
            trace.as_deref(),
            &limits(all_segments),
            format.into(),
        ),
    }
}

/// The renderers' default limits, with every segment listed on request.
fn limits(all_segments: bool) -> render::Limits {
    render::Limits {
        all_segments,
        ..render::Limits::default()
    }
}

/// Counts bytes read and draws a progress line on a terminal.
struct Progress<R> {
    inner: R,
    read: u64,
    total: u64,
    enabled: bool,
    last: Instant,
    label: String,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.enabled && self.last.elapsed() >= Duration::from_millis(150) {
            self.last = Instant::now();
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let pct = (self.read * 100).checked_div(self.total).unwrap_or(0);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[Kreading {}: {:.1} / {:.1} MiB ({pct}%)",
                self.label,
                mib(self.read),
                mib(self.total)
            );
            let _ = err.flush();
        }
        Ok(n)
    }
}

impl<R> Drop for Progress<R> {
    fn drop(&mut self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

/// Loads a file, prints its diagnostics, and fails only when nothing was read.
fn load(path: &Path, format: Format) -> Result<Loaded> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = Progress {
        inner: file,
        read: 0,
        total,
        enabled: std::io::stderr().is_terminal() && total > 8 << 20,
        last: Instant::now(),
        label: path.display().to_string(),
    };
    let loaded =
        load_reader(reader, format).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = loaded.diagnostics.len().min(20);
    for d in &loaded.diagnostics[..shown] {
        eprintln!(
            "warning: {}: {}",
            path.display(),
            render::sanitize(&d.to_string())
        );
    }
    let more = (loaded.diagnostics.len() - shown) as u64 + loaded.suppressed_diagnostics;
    if more > 0 {
        eprintln!("warning: {}: … and {more} more problems", path.display());
    }
    if loaded.spans.is_empty() {
        bail!(
            "nothing could be analysed: {} holds no readable spans ({} problem{} reported)",
            path.display(),
            loaded.diagnostics.len() as u64 + loaded.suppressed_diagnostics,
            if loaded.diagnostics.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    Ok(loaded)
}

/// Finds the group of the trace whose id is `id` or starts with `id`.
fn find_trace<'a>(groups: &'a [Vec<&'a Span>], id: &str) -> Result<&'a [&'a Span]> {
    let want = id.trim().to_ascii_lowercase();
    if want.is_empty() || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--trace expects a hex trace id, got {id:?}");
    }
    let matches: Vec<&Vec<&Span>> = groups
        .iter()
        .filter(|g| {
            g.first()
                .is_some_and(|s| s.trace_id.to_string().starts_with(&want))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.as_slice()),
        [] => {
            let some: Vec<String> = groups
                .iter()
                .take(5)
                .filter_map(|g| g.first().map(|s| s.trace_id.to_string()))
                .collect();
            bail!(
                "trace {id} is not in the file ({} traces; e.g. {})",
                groups.len(),
                some.join(", ")
            )
        }
        many => bail!(
            "trace id prefix {id} matches {} traces; give more digits",
            many.len()
        ),
    }
}

/// The slowest trace's report.
fn slowest(groups: &[Vec<&Span>]) -> Option<TraceReport> {
    let mut best: Option<TraceReport> = None;
    for g in groups {
        if let Some(r) = analyze_trace(g)
            && best.as_ref().is_none_or(|b| r.duration_ns > b.duration_ns)
        {
            best = Some(r);
        }
    }
    best
}

fn critpath(
    path: &Path,
    trace: Option<&str>,
    all: bool,
    json: bool,
    limits: &render::Limits,
    format: Format,
) -> Result<()> {
    let loaded = load(path, format)?;
    let groups = group_by_trace(&loaded.spans);
    let mut out = std::io::stdout().lock();
    if all {
        let reports: Vec<TraceReport> = groups.iter().filter_map(|g| analyze_trace(g)).collect();
        if json {
            writeln!(out, "{}", render::json(&reports))?;
        } else {
            for r in &reports {
                writeln!(out, "{}", render::text::trace_with(r, limits))?;
            }
        }
        return Ok(());
    }
    let report = match trace {
        Some(id) => analyze_trace(find_trace(&groups, id)?),
        None => slowest(&groups),
    }
    .context("nothing could be analysed")?;
    if json {
        writeln!(out, "{}", render::json(&report))?;
    } else {
        if trace.is_none() && groups.len() > 1 {
            writeln!(
                out,
                "{} traces in {}; showing the slowest (use --trace ID, --all, or `spanline stats`)\n",
                groups.len(),
                path.display()
            )?;
        }
        write!(out, "{}", render::text::trace_with(&report, limits))?;
    }
    Ok(())
}

/// Calls `f` with the spans and the report of every trace in the file.
fn each_trace(loaded: &Loaded, mut f: impl FnMut(&[&Span], &TraceReport)) {
    for g in group_by_trace(&loaded.spans) {
        if let Some(r) = analyze_trace(&g) {
            f(&g, &r);
        }
    }
}

fn stats(path: &Path, json: bool, group_by: Option<&str>, format: Format) -> Result<()> {
    let loaded = load(path, format)?;
    if let Some(attr) = group_by {
        let mut b = GroupedStatsBuilder::new(attr);
        each_trace(&loaded, |g, r| b.add(g, r));
        let s = b.finish();
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", render::json(&s))?;
        } else {
            write!(out, "{}", render::compare::grouped_stats(&s))?;
        }
        return Ok(());
    }
    let mut b = StatsBuilder::new();
    each_trace(&loaded, |_, r| b.add(r));
    let s = b.finish();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", render::json(&s))?;
    } else {
        write!(out, "{}", render::text::stats(&s))?;
    }
    Ok(())
}

fn diff(
    paths: [&Path; 2],
    json: bool,
    group_by: Option<&str>,
    opts: &DiffOptions,
    format: Format,
) -> Result<()> {
    let sides = [Side::Baseline, Side::Current];
    let mut out = std::io::stdout().lock();
    if let Some(attr) = group_by {
        let mut b = GroupedDiffBuilder::new(attr);
        for (path, side) in paths.into_iter().zip(sides) {
            each_trace(&load(path, format)?, |g, r| b.add(side, g, r));
        }
        let d = b.finish(opts)?;
        if json {
            writeln!(out, "{}", render::json(&d))?;
        } else {
            write!(out, "{}", render::compare::grouped_diff(&d))?;
        }
        return Ok(());
    }
    let mut b = DiffBuilder::new();
    for (path, side) in paths.into_iter().zip(sides) {
        each_trace(&load(path, format)?, |_, r| b.add(side, r));
    }
    let d = b.finish(opts)?;
    if json {
        writeln!(out, "{}", render::json(&d))?;
    } else {
        write!(out, "{}", render::compare::diff(&d))?;
    }
    Ok(())
}

fn whatif(path: &Path, scales: &[String], json: bool, format: Format) -> Result<()> {
    // Validate the factors before reading a possibly large file.
    let scales = Scales::parse(scales)?;
    let loaded = load(path, format)?;
    let mut b = WhatIfBuilder::new(scales);
    each_trace(&loaded, |g, r| b.add(g, r));
    let w = b.finish()?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", render::json(&w))?;
    } else {
        write!(out, "{}", render::compare::whatif(&w))?;
    }
    Ok(())
}

fn waterfall(
    path: &Path,
    output: &Path,
    trace: Option<&str>,
    limits: &render::Limits,
    format: Format,
) -> Result<()> {
    let loaded = load(path, format)?;
    let groups = group_by_trace(&loaded.spans);
    let mut b = StatsBuilder::new();
    let mut chosen: Option<TraceReport> = None;
    let wanted = match trace {
        Some(id) => Some(
            find_trace(&groups, id)?
                .first()
                .map(|s| s.trace_id)
                .context("empty trace")?,
        ),
        None => None,
    };
    for g in &groups {
        let Some(r) = analyze_trace(g) else { continue };
        b.add(&r);
        let take = match wanted {
            Some(id) => r.trace_id == id,
            None => chosen
                .as_ref()
                .is_none_or(|c| r.duration_ns > c.duration_ns),
        };
        if take {
            chosen = Some(r);
        }
    }
    let report = chosen.context("nothing could be analysed")?;
    let stats = b.finish();
    let title = format!("spanline critical path — {}", path.display());
    let html = render::html::page_with(&title, Some(&report), Some(&stats), limits);
    std::fs::write(output, html).with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!(
        "wrote {} (trace {}, {} spans; summary of {} traces)",
        output.display(),
        report.trace_id,
        report.spans.len(),
        stats.traces
    );
    Ok(())
}
