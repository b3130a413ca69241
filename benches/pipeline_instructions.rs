//! Deterministic per-stage cost: instructions counted by valgrind's
//! callgrind for the same workload as the `pipeline` bench (see
//! `support/mod.rs`), and the context switches `perf stat` sees.
//!
//! `cargo bench --bench pipeline_instructions` re-runs this binary under
//! `valgrind --tool=callgrind` for every variant at 1 and 8 stages and two
//! run counts; the difference between the two counts removes the set-up, so
//! the figures are instructions per pipeline run, and the slope between 1
//! and 8 stages is the cost per stage. Every thread is counted, the export
//! worker's included: what the process pays, not only the request thread.
//! Then `perf stat -e context-switches,task-clock` runs the sampled variant
//! for many runs, to show how often a thread is woken.
//!
//! `--child VARIANT STAGES RUNS` runs one measurement (what valgrind and
//! perf are given).

mod support;

use std::process::Command;

use support::{Fixture, STAGES, VARIANTS};

const LOW: u64 = 2_000;
const HIGH: u64 = 10_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let variant = &args[i + 1];
        let stages: usize = args[i + 2].parse().expect("stages");
        let runs: u64 = args[i + 3].parse().expect("runs");
        let fixture = Fixture::new();
        let run = fixture.runner(variant, stages);
        std::hint::black_box(measured_loop(&run, runs));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let me = std::env::current_exe().expect("own path");
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("valgrind is not installed: no instruction counts");
    } else {
        instructions(&me);
    }
    if Command::new("perf").arg("--version").output().is_err() {
        println!("perf is not installed: no context-switch counts");
    } else {
        wakes(&me);
    }
}

/// Instructions of one child run under callgrind, per thread file summed:
/// only inside [`measured_loop`] on the request thread (`toggle`), or every
/// instruction of every thread.
fn count(
    dir: &std::path::Path,
    me: &std::path::Path,
    (variant, stages, runs): (&str, usize, u64),
    toggle: bool,
) -> u64 {
    let base = dir.join(format!("cg.{variant}.{stages}.{runs}.{toggle}"));
    let mut cmd = Command::new("valgrind");
    // valgrind runs one thread at a time, so the export worker cannot
    // drain the queue while the request thread fills it: at the default
    // 2,048 spans the queue overflows and the count would depend on
    // valgrind's scheduling. A queue that holds every span keeps the
    // per-span path the one a deployed service runs (no drops).
    cmd.env("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
        .args(["--tool=callgrind", "--quiet", "--separate-threads=yes"])
        .arg(format!("--callgrind-out-file={}", base.display()));
    if toggle {
        cmd.arg("--toggle-collect=*measured_loop*");
    }
    let status = cmd
        .arg(me)
        .args(["--child", variant, &stages.to_string(), &runs.to_string()])
        .status()
        .expect("valgrind runs");
    assert!(status.success(), "valgrind failed for {variant}");
    let prefix = base
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("temp dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{prefix}-")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("callgrind output");
        total += text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("callgrind totals");
        let _ = std::fs::remove_file(entry.path());
    }
    total
}

/// The loop callgrind counts on the request thread (`--toggle-collect`):
/// only the pipeline runs, none of the set-up (which varies from process
/// to process: the TSC clock calibrates itself for a variable time).
#[inline(never)]
fn measured_loop(run: &dyn Fn() -> u64, runs: u64) -> u64 {
    let mut acc = 0u64;
    for _ in 0..runs {
        acc = acc.wrapping_add(run());
    }
    acc
}

fn instructions(me: &std::path::Path) {
    let dir = tempdir();
    // Request thread: exact (only the loop is counted). All threads: the
    // difference between two run counts, which removes the set-up but keeps
    // some noise from the background threads' timers (± a few dozen
    // instructions per run).
    let per_run = |variant: &str, stages: usize| -> (f64, f64) {
        let request = count(&dir, me, (variant, stages, HIGH), true) as f64 / HIGH as f64;
        let lo = count(&dir, me, (variant, stages, LOW), false);
        let hi = count(&dir, me, (variant, stages, HIGH), false);
        (request, (hi as f64 - lo as f64) / (HIGH - LOW) as f64)
    };
    println!("instructions per pipeline run (callgrind): request thread | all threads");
    println!(
        "{:<18} {:>9} {:>9} {:>10} {:>10} | {:>9} {:>9} {:>10} {:>10}",
        "variant",
        "1 stage",
        "8 stages",
        "per stage",
        "over bare",
        "1 stage",
        "8 stages",
        "per stage",
        "over bare"
    );
    let mut bare = (0.0, 0.0);
    for variant in VARIANTS {
        let one = per_run(variant, 1);
        let eight = per_run(variant, STAGES);
        let slope = (
            (eight.0 - one.0) / (STAGES - 1) as f64,
            (eight.1 - one.1) / (STAGES - 1) as f64,
        );
        if variant == "bare" {
            bare = slope;
        }
        println!(
            "{variant:<18} {:>9.0} {:>9.0} {:>10.0} {:>10.0} | {:>9.0} {:>9.0} {:>10.0} {:>10.0}",
            one.0,
            eight.0,
            slope.0,
            slope.0 - bare.0,
            one.1,
            eight.1,
            slope.1,
            slope.1 - bare.1
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn wakes(me: &std::path::Path) {
    const RUNS: u64 = 200_000;
    println!("\nperf stat, {RUNS} runs of 8 stages (9 spans a run when sampled)");
    for variant in ["bare", "sampled", "sdk_batch_sampled"] {
        let out = Command::new("perf")
            .args(["stat", "-x", ",", "-e", "context-switches,task-clock", "--"])
            .arg(me)
            .args(["--child", variant, &STAGES.to_string(), &RUNS.to_string()])
            .output()
            .expect("perf runs");
        let text = String::from_utf8_lossy(&out.stderr);
        let field = |event: &str| {
            text.lines()
                .find(|l| l.contains(event))
                .and_then(|l| l.split(',').next())
                .unwrap_or("?")
                .to_owned()
        };
        println!(
            "{variant:<18} context-switches {:>8}   task-clock {:>10} ms",
            field("context-switches"),
            field("task-clock")
        );
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spanline-icount-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
