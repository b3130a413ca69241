//! Runs the built `spanline` binary on fixture files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spanline_critpath::encode::{to_otlp_json_line, to_otlp_proto};
use spanline_critpath::{Format, load_file, load_reader};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spanline"))
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline.jsonl")
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PIPELINE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn critpath_shows_the_slowest_trace_and_reports_the_bad_line() {
    let f = fixture();
    let o = run(&["critpath", f.to_str().expect("utf-8 path")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("trace {PIPELINE}")), "{out}");
    assert!(out.contains("critical path (13 segments)"), "{out}");
    assert!(out.contains("retrieval docs-dense"));
    assert!(out.contains("slack 20.000ms"), "bm25's slack: {out}");
    let err = stderr(&o);
    assert!(err.contains("line 4: invalid JSON"), "{err}");
}

#[test]
fn critpath_json_for_a_chosen_trace() {
    let f = fixture();
    let o = run(&[
        "critpath",
        f.to_str().expect("utf-8"),
        "--trace",
        "0af765",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let names: Vec<&str> = v["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["span_name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["GET /health", "db.query", "GET /health"]);
    let durations: Vec<u64> = v["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["duration_ns"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(durations, [2_000_000, 10_000_000, 8_000_000]);
}

#[test]
fn critpath_all_json_is_an_array() {
    let f = fixture();
    let o = run(&["critpath", f.to_str().expect("utf-8"), "--all", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
}

#[test]
fn unknown_trace_is_an_error() {
    let f = fixture();
    let o = run(&["critpath", f.to_str().expect("utf-8"), "--trace", "ffff"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not in the file"), "{}", stderr(&o));
}

#[test]
fn stats_on_otlp_json() {
    let loaded = load_file(&fixture()).expect("fixture loads");
    let dir = scratch();
    let path = dir.path().join("otlp.json");
    std::fs::write(&path, to_otlp_json_line(&loaded.spans) + "\n").expect("write");
    let o = run(&["stats", path.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["traces"], 2);
    assert_eq!(v["spans"], 10);
    let keys: Vec<&str> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    assert!(
        keys.contains(&"dense") && keys.contains(&"chat"),
        "{keys:?}"
    );
    let o = run(&["stats", path.to_str().expect("utf-8")]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("2 traces, 10 spans"), "{}", stdout(&o));
}

#[test]
fn waterfall_from_protobuf() {
    let loaded = load_file(&fixture()).expect("fixture loads");
    let dir = scratch();
    let pb = dir.path().join("traces.pb");
    std::fs::write(&pb, to_otlp_proto(&loaded.spans)).expect("write");
    let html = dir.path().join("out.html");
    let o = run(&[
        "waterfall",
        pb.to_str().expect("utf-8"),
        "-o",
        html.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(&html).expect("page written");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches("<rect class=\"span").count(),
        8,
        "the slowest trace has 8 spans"
    );
    assert!(page.contains("class=\"summary\""));
    assert!(stderr(&o).contains("wrote"));
}

#[test]
fn truncated_protobuf_still_analysed() {
    let loaded = load_file(&fixture()).expect("fixture loads");
    let bytes = to_otlp_proto(&loaded.spans);
    let dir = scratch();
    let pb = dir.path().join("cut.pb");
    std::fs::write(&pb, &bytes[..bytes.len() - 7]).expect("write");
    let o = run(&["critpath", pb.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("protobuf input ends in the middle"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains(PIPELINE));
    // sanity: the library agrees on what survives
    let again = load_reader(&bytes[..bytes.len() - 7], Format::Auto).expect("readable");
    assert_eq!(again.spans.len(), 9);
}

#[test]
fn nothing_readable_is_a_failure() {
    let dir = scratch();
    let path = dir.path().join("garbage.jsonl");
    std::fs::write(&path, "not json\n{\"also\": \"not a span\"}\n").expect("write");
    let o = run(&["stats", path.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("nothing could be analysed"), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let o = run(&["critpath", "/nonexistent/spans.jsonl"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot open /nonexistent/spans.jsonl"),
        "{}",
        stderr(&o)
    );
}

// ------------------------------------------------------------ diff, whatif, --group-by

const MS: u64 = 1_000_000;

/// Writes `n` runs of a sequential pipeline (console JSON lines): `embed`
/// calls a worker (`server.address` alternating between two replicas, the
/// call taking `hop_ms[replica]`), then `generate` takes `generate_ms`.
/// Times vary by a deterministic ±4 %.
fn write_runs(path: &Path, seed: u64, n: u64, generate_ms: u64, hop_ms: [u64; 2]) {
    use spanline_critpath::encode::to_console_json_line;
    use spanline_critpath::semconv as sc;
    use spanline_critpath::{Span, SpanId, SpanKind, TraceId};
    let mut x = seed;
    let mut jitter = |ms: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ms * (96 + (x >> 33) % 9) / 100
    };
    let mut out = String::new();
    for i in 0..n {
        let trace = TraceId((u128::from(seed) << 64) | (u128::from(i) + 1));
        let id = |k: u64| SpanId(i << 8 | k);
        let replica = (i % 2) as usize;
        let hop = jitter(hop_ms[replica]);
        let generate = jitter(generate_ms);
        let t0 = 1_700_000_000_000_000_000 + i * 10_000 * MS;
        let at = |ms: u64| t0 + ms * MS;
        let stage = |k: u64, name: &str, stage: &str, step: i64, s: u64, e: u64| {
            Span::new(trace, id(k), Some(id(1)), name, at(s), at(e))
                .with_attr(sc::STAGE_NAME, stage)
                .with_attr(sc::STEP_INDEX, step)
                .with_attr(
                    sc::STEP_DEPENDS_ON,
                    if step == 0 { vec![] } else { vec![step - 1] },
                )
                .with_attr(sc::STEP_BLOCKING, true)
        };
        let embed_end = hop + 4;
        let spans = [
            Span::new(
                trace,
                id(1),
                None,
                "invoke_workflow rag",
                at(0),
                at(embed_end + generate + 3),
            ),
            stage(2, "embeddings remote", "embed", 0, 1, embed_end),
            {
                let mut s = Span::new(
                    trace,
                    id(3),
                    Some(id(2)),
                    "spanline.remote/Run",
                    at(2),
                    at(2 + hop),
                )
                .with_attr(sc::SEGMENT_TYPE, "hop")
                .with_attr(
                    "server.address",
                    ["10.0.0.1:50051", "10.0.0.2:50051"][replica],
                );
                s.kind = SpanKind::Client;
                s
            },
            stage(
                4,
                "chat extractive",
                "generate",
                1,
                embed_end + 1,
                embed_end + 1 + generate,
            ),
        ];
        for s in &spans {
            out.push_str(&to_console_json_line(s));
            out.push('\n');
        }
    }
    std::fs::write(path, out).expect("write spans");
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn diff_names_the_stage_that_slowed_down() {
    let dir = scratch();
    let (base, cur) = (dir.path().join("base.jsonl"), dir.path().join("cur.jsonl"));
    write_runs(&base, 1, 100, 1200, [10, 10]);
    write_runs(&cur, 2, 100, 7000, [10, 10]);
    let o = run(&["diff", p(&base), p(&cur)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("p50: +5."), "{out}");
    assert!(out.contains("explained by generate (+5."), "{out}");
    let o = run(&["diff", p(&base), p(&cur), "--json", "--resamples", "200"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["resamples_used"], 200);
    assert_eq!(v["rows"][0]["key"], "generate");
    for q in v["quantiles"].as_array().expect("quantiles") {
        assert_eq!(q["causes"], serde_json::json!(["generate"]), "{q}");
    }
    // the same file on both sides: no cause
    let o = run(&["diff", p(&base), p(&base)]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("p95: no cause"), "{}", stdout(&o));
}

#[test]
fn diff_with_an_empty_or_unreadable_side_fails_clearly() {
    let dir = scratch();
    let (base, empty) = (
        dir.path().join("base.jsonl"),
        dir.path().join("empty.jsonl"),
    );
    write_runs(&base, 1, 10, 1200, [10, 10]);
    std::fs::write(&empty, "").expect("write");
    let o = run(&["diff", p(&base), p(&empty)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("holds no readable spans"),
        "{}",
        stderr(&o)
    );
    let o = run(&["diff", p(&base), p(&base), "--confidence", "2"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid confidence 2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn whatif_projects_and_validates_factors() {
    let dir = scratch();
    let f = dir.path().join("runs.jsonl");
    write_runs(&f, 1, 40, 1000, [10, 10]);
    let o = run(&["whatif", p(&f), "--scale", "generate=0.5", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let (before, after) = (
        v["before"]["p50"].as_u64().expect("p50"),
        v["after"]["p50"].as_u64().expect("p50"),
    );
    assert!(
        before - after > 450 * MS && before - after < 520 * MS,
        "{before} → {after}"
    );
    assert_eq!(v["exact_traces"], 40);
    assert_eq!(v["approximate_traces"], 0);
    let o = run(&[
        "whatif",
        p(&f),
        "--scale",
        "generate=0.5",
        "--scale",
        "embed=2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("40 changed: 40 exact"),
        "{}",
        stdout(&o)
    );

    for (scale, msg) in [
        ("generate=-1", "must be a finite number ≥ 0"),
        ("generate=NaN", "must be a finite number ≥ 0"),
        ("generate", "expects KEY=FACTOR"),
        ("nope=0.5", "unknown key \"nope\""),
    ] {
        let o = run(&["whatif", p(&f), "--scale", scale]);
        assert!(!o.status.success(), "{scale}");
        assert!(stderr(&o).contains(msg), "{scale}: {}", stderr(&o));
    }
    let o = run(&["whatif", p(&f)]);
    assert!(!o.status.success(), "--scale is required");
}

#[test]
fn group_by_compares_replicas() {
    let dir = scratch();
    let (base, cur) = (dir.path().join("base.jsonl"), dir.path().join("cur.jsonl"));
    write_runs(&base, 1, 100, 100, [10, 10]);
    write_runs(&cur, 2, 100, 100, [10, 80]);
    let o = run(&["stats", p(&cur), "--group-by", "server.address", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    let p50 = |i: usize| groups[i]["stats"]["duration"]["p50"].as_u64().expect("p50");
    let label = |i: usize| {
        groups[i]["group"]["value"]
            .as_str()
            .expect("value")
            .to_owned()
    };
    let (fast, slow) = if label(0) == "10.0.0.1:50051" {
        (0, 1)
    } else {
        (1, 0)
    };
    assert!(p50(slow) > p50(fast) + 60 * MS);
    let o = run(&["stats", p(&cur), "--group-by", "server.address"]);
    assert!(
        stdout(&o).contains("critical-path share by server.address"),
        "{}",
        stdout(&o)
    );

    let o = run(&[
        "diff",
        p(&base),
        p(&cur),
        "--group-by",
        "server.address",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    for g in v["groups"].as_array().expect("groups") {
        let causes = &g["diff"]["quantiles"][0]["causes"];
        match g["group"]["value"].as_str() {
            Some("10.0.0.2:50051") => {
                assert_eq!(causes, &serde_json::json!(["spanline.remote/Run"]))
            }
            Some("10.0.0.1:50051") => assert_eq!(causes, &serde_json::json!([])),
            other => panic!("unexpected group {other:?}"),
        }
    }
}
