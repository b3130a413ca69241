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
const HIGH: u64 = 6_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let variant = &args[i + 1];
        let stages: usize = args[i + 2].parse().expect("stages");
        let runs: u64 = args[i + 3].parse().expect("runs");
        let fixture = Fixture::new();
        let run = fixture.runner(variant, stages);
        let mut acc = 0u64;
        for _ in 0..runs {
            acc = acc.wrapping_add(run());
        }
        std::hint::black_box(acc);
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

fn instructions(me: &std::path::Path) {
    let dir = tempdir();
    let count = |variant: &str, stages: usize, runs: u64| -> u64 {
        let out = dir.join(format!("cg.{variant}.{stages}.{runs}"));
        // valgrind runs one thread at a time, so the export worker cannot
        // drain the queue while the request thread fills it: at the default
        // 2,048 spans the queue overflows and the count would depend on
        // valgrind's scheduling. A queue that holds every span keeps the
        // per-span path the one a deployed service runs (no drops).
        let status = Command::new("valgrind")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
            .args(["--tool=callgrind", "--quiet"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(me)
            .args(["--child", variant, &stages.to_string(), &runs.to_string()])
            .status()
            .expect("valgrind runs");
        assert!(status.success(), "valgrind failed for {variant}");
        let text = std::fs::read_to_string(&out).expect("callgrind output");
        let total = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("callgrind totals");
        let _ = std::fs::remove_file(&out);
        total
    };
    let per_run = |variant: &str, stages: usize| -> f64 {
        let lo = count(variant, stages, LOW);
        let hi = count(variant, stages, HIGH);
        (hi as f64 - lo as f64) / (HIGH - LOW) as f64
    };
    println!("instructions per pipeline run (callgrind, all threads)");
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>14}",
        "variant", "1 stage", "8 stages", "per stage", "over bare"
    );
    let mut bare_slope = 0.0;
    for variant in VARIANTS {
        let one = per_run(variant, 1);
        let eight = per_run(variant, STAGES);
        let slope = (eight - one) / (STAGES - 1) as f64;
        if variant == "bare" {
            bare_slope = slope;
        }
        println!(
            "{variant:<18} {one:>12.0} {eight:>12.0} {slope:>12.0} {:>14.0}",
            slope - bare_slope
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
