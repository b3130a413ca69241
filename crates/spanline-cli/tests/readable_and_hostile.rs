//! The `spanline` binary on real-shaped and hostile files: slivers merged
//! unless `--all-segments`, JSON complete, and extreme timestamps or
//! spoofing characters neither hang nor reach the output raw.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spanline_critpath::encode::to_console_json_line;
use spanline_critpath::{Span, SpanId, TraceId};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spanline"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline.jsonl")
}

/// The table rows of the critical path (between its header and "contributors").
fn path_rows(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("critical path"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn write_spans(dir: &Path, name: &str, spans: &[Span]) -> PathBuf {
    let p = dir.join(name);
    let text: Vec<String> = spans.iter().map(to_console_json_line).collect();
    std::fs::write(&p, text.join("\n")).expect("write fixture");
    p
}

#[test]
fn the_pipeline_fixture_has_no_slivers_so_both_views_agree() {
    let f = fixture();
    let f = f.to_str().expect("utf-8");
    let merged = run(&["critpath", f]);
    let all = run(&["critpath", f, "--all-segments"]);
    assert!(merged.status.success() && all.status.success());
    let (m, a) = (path_rows(&stdout(&merged)), path_rows(&stdout(&all)));
    // 13 segments, the smallest exactly 1% of the trace: none is a sliver.
    assert_eq!(m.len(), 13, "{m:#?}");
    assert_eq!(m, a);
    assert!(stdout(&merged).contains("critical path (13 segments)\n"));
}

#[test]
fn many_slivers_are_one_line_unless_all_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736);
    // one big stage and 300 tiny sequential calls around it
    let mut spans = vec![Span::new(t, SpanId(1), None, "root", 0, 1_000_000)];
    spans.push(Span::new(t, SpanId(2), Some(SpanId(1)), "big", 0, 400_000));
    for i in 0..300u64 {
        let s = 400_000 + i * 2_000;
        spans.push(Span::new(
            t,
            SpanId(10 + i),
            Some(SpanId(1)),
            &format!("call-{i}"),
            s,
            s + 1_500,
        ));
    }
    let f = write_spans(dir.path(), "slivers.jsonl", &spans);
    let f = f.to_str().expect("utf-8");

    let merged = stdout(&run(&["critpath", f]));
    let rows = path_rows(&merged);
    assert_eq!(rows.len(), 2, "{merged}");
    assert!(rows[0].contains("big"));
    assert!(
        rows[1].contains("… 600 segments under 1% each"),
        "{}",
        rows[1]
    );
    assert!(
        rows[1].contains(" 600.0µs   60.0%  self "),
        "total, share, one type: {}",
        rows[1]
    );

    let all = stdout(&run(&["critpath", f, "--all-segments"]));
    assert_eq!(path_rows(&all).len(), 601);
    assert!(all.contains("call-299"));

    let v: serde_json::Value =
        serde_json::from_slice(&run(&["critpath", f, "--json"]).stdout).expect("JSON");
    assert_eq!(v["segments"].as_array().map(Vec::len), Some(601));
}

#[test]
fn extreme_timestamps_and_spoofing_names_finish_and_are_neutralised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = TraceId(7);
    let evil = "invoice\u{202E}fdp.exe \u{2066}x\u{2069} \u{1b}[2J";
    let spans = [
        Span::new(t, SpanId(1), None, evil, u64::MAX, u64::MAX),
        Span::new(t, SpanId(2), Some(SpanId(1)), evil, 0, u64::MAX),
    ];
    let f = write_spans(dir.path(), "extreme.jsonl", &spans);
    let f = f.to_str().expect("utf-8");
    let html = dir.path().join("out.html");
    let o = run(&["waterfall", f, "-o", html.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).expect("page written");
    let text = stdout(&run(&["critpath", f]));
    for out in [&page, &text] {
        assert!(!out.contains('\u{202E}') && !out.contains('\u{2066}') && !out.contains('\u{1b}'));
        assert!(out.contains("invoice?fdp.exe"));
    }
    assert!(!page.contains("NaN"));
    let json = stdout(&run(&["critpath", f, "--json"]));
    assert!(
        json.contains("invoice\\u202efdp.exe"),
        "escaped, not dropped"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["root_name"].as_str(), Some(evil));
}
