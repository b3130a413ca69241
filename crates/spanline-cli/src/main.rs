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
    Format, Loaded, Span, StatsBuilder, TraceReport, analyze_trace, group_by_trace, load_reader,
    render,
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
        Command::Stats { file, json, format } => stats(&file, json, format.into()),
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

fn stats(path: &Path, json: bool, format: Format) -> Result<()> {
    let loaded = load(path, format)?;
    let mut b = StatsBuilder::new();
    for g in group_by_trace(&loaded.spans) {
        if let Some(r) = analyze_trace(&g) {
            b.add(&r);
        }
    }
    let s = b.finish();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", render::json(&s))?;
    } else {
        write!(out, "{}", render::text::stats(&s))?;
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
