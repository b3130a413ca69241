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
