//! `--group-by ATTR`: statistics and diffs per attribute value (worker replicas).

mod common;

use common::*;
use spanline_critpath::semconv as sc;
use spanline_critpath::{
    DiffOptions, GroupKey, GroupedDiffBuilder, GroupedStatsBuilder, Side, SpanKind, StatusCode,
};

const ADDR: &str = "server.address";

/// A run whose `embed` stage calls a remote worker at `replica`, the call
/// taking `hop_ms`; optionally failing.
fn run(n: u128, replica: &str, hop_ms: u64, error: bool) -> Trace {
    let mut t = Trace::new(n);
    let root = t.span(None, "invoke_workflow rag", 0, hop_ms + 40);
    let embed = t.stage(root, "embeddings remote", "embed", 0, 1, hop_ms + 12);
    let hop = t.span(Some(embed), "spanline.remote/Run", 2, hop_ms + 2);
    t.attr(hop, sc::SEGMENT_TYPE, "hop")
        .attr(hop, "server.address", replica)
        .kind(hop, SpanKind::Client);
    if error {
        t.get(hop).status.code = StatusCode::Error;
    }
    t.stage(root, "chat extractive", "chat", 1, hop_ms + 13, hop_ms + 38);
    t
}

fn replicas(slow_b: bool) -> Vec<Trace> {
    let mut j = Jitter(if slow_b { 11 } else { 12 });
    (0..120u128)
        .map(|i| {
            let b = i % 2 == 1;
            let ms = if b && slow_b { 60 } else { 10 };
            run(
                i,
                if b {
                    "10.0.0.2:50051"
                } else {
                    "10.0.0.1:50051"
                },
                j.around(ms, 10),
                b && i % 10 == 1,
            )
        })
        .collect()
}

#[test]
fn stats_per_replica_show_latency_errors_and_critical_path_share() {
    let mut b = GroupedStatsBuilder::new(ADDR);
    let mut none = Trace::new(999);
    none.span(None, "GET /health", 0, 3);
    for t in replicas(true).iter().chain([&none]) {
        let refs: Vec<_> = t.spans.iter().collect();
        b.add(&refs, &t.analyze());
    }
    let g = b.finish();
    assert_eq!(g.attribute, ADDR);
    let labels: Vec<String> = g.groups.iter().map(|x| x.group.label(ADDR)).collect();
    assert_eq!(
        labels,
        ["10.0.0.1:50051", "10.0.0.2:50051", "(no server.address)"]
    );
    let (a, slow) = (&g.groups[0], &g.groups[1]);
    assert_eq!((a.traces, slow.traces, g.groups[2].traces), (60, 60, 1));
    assert_eq!(g.groups[2].group, GroupKey::Missing);
    assert_eq!(a.error_traces, 0);
    assert_eq!(slow.error_traces, 12, "every fifth call to replica 2 fails");
    assert!((slow.error_rate - 0.2).abs() < 1e-9);
    assert!(slow.stats.duration.p50 > a.stats.duration.p50 + 40 * MS);
    let hop_share = |x: &spanline_critpath::group::GroupStats| {
        x.stats
            .rows
            .iter()
            .find(|r| &*r.key == "spanline.remote/Run")
            .map_or(0.0, |r| r.critical_share)
    };
    assert!(
        hop_share(slow) > 0.5 && hop_share(a) < 0.3,
        "{} {}",
        hop_share(slow),
        hop_share(a)
    );
}

#[test]
fn diff_per_replica_names_the_hop_only_where_it_changed() {
    let mut b = GroupedDiffBuilder::new(ADDR);
    for t in &replicas(false) {
        let refs: Vec<_> = t.spans.iter().collect();
        b.add(Side::Baseline, &refs, &t.analyze());
    }
    for t in &replicas(true) {
        let refs: Vec<_> = t.spans.iter().collect();
        b.add(Side::Current, &refs, &t.analyze());
    }
    let g = b.finish(&DiffOptions::default()).expect("diff");
    assert_eq!(g.groups.len(), 2);
    for gd in &g.groups {
        let d = gd.diff.as_ref().expect("both sides have the group");
        let causes: Vec<&str> = d.quantiles[0].causes.iter().map(|c| &**c).collect();
        match gd.group.label(ADDR).as_str() {
            "10.0.0.2:50051" => assert_eq!(causes, ["spanline.remote/Run"]),
            "10.0.0.1:50051" => assert!(causes.is_empty(), "{causes:?}"),
            other => panic!("unexpected group {other}"),
        }
    }
}

#[test]
fn a_group_on_one_side_only_is_reported_not_fatal() {
    let mut b = GroupedDiffBuilder::new(ADDR);
    let t = run(1, "10.0.0.1:50051", 10, false);
    let u = run(2, "10.0.0.3:50051", 10, false);
    b.add(
        Side::Baseline,
        &t.spans.iter().collect::<Vec<_>>(),
        &t.analyze(),
    );
    b.add(
        Side::Current,
        &t.spans.iter().collect::<Vec<_>>(),
        &t.analyze(),
    );
    b.add(
        Side::Current,
        &u.spans.iter().collect::<Vec<_>>(),
        &u.analyze(),
    );
    let g = b.finish(&DiffOptions::default()).expect("diff");
    let new = g
        .groups
        .iter()
        .find(|x| x.group == GroupKey::Value("10.0.0.3:50051".into()))
        .expect("group");
    assert!(new.diff.is_none());
    assert_eq!(
        new.problem.as_deref(),
        Some("the baseline holds no trace that could be analysed")
    );
}

#[test]
fn a_trace_reaching_two_replicas_goes_to_the_one_on_the_critical_path() {
    let mut t = run(1, "10.0.0.1:50051", 10, false);
    // a second, longer call to another replica inside chat
    let chat = t
        .spans
        .iter()
        .find(|s| &*s.name == "chat extractive")
        .map(|s| s.span_id)
        .expect("chat");
    let hop = t.span(Some(chat), "spanline.remote/Run", 24, 46);
    t.attr(hop, sc::SEGMENT_TYPE, "hop")
        .attr(hop, ADDR, "10.0.0.2:50051");
    let refs: Vec<_> = t.spans.iter().collect();
    let mut b = GroupedStatsBuilder::new(ADDR);
    b.add(&refs, &t.analyze());
    let g = b.finish();
    assert_eq!(g.groups.len(), 1);
    assert_eq!(g.groups[0].group, GroupKey::Value("10.0.0.2:50051".into()));
    assert_eq!(g.groups[0].mixed_traces, 1);
}

#[test]
fn service_name_groups_by_resource() {
    let mut b = GroupedStatsBuilder::new(sc::SERVICE_NAME);
    for (i, svc) in ["api-a", "api-b", "api-a"].into_iter().enumerate() {
        let mut t = sample_pipeline(i as u128);
        for s in &mut t.spans {
            s.service_name = Some(svc.into());
        }
        b.add(&t.spans.iter().collect::<Vec<_>>(), &t.analyze());
    }
    let g = b.finish();
    let got: Vec<(String, usize)> = g
        .groups
        .iter()
        .map(|x| (x.group.label("s"), x.traces))
        .collect();
    assert_eq!(got, [("api-a".to_owned(), 2), ("api-b".to_owned(), 1)]);
}
