//! Renderers: terminal text, JSON and a self-contained HTML page with SVG charts.
//!
//! All three are safe for hostile input (see `docs/critical-path.md`,
//! *Limits and cost*): span names and other strings from the trace pass
//! through [`sanitize`] (text, HTML) or are `\u` escaped (JSON), so control
//! and bidi characters cannot move the cursor or reorder what is shown; the
//! text and HTML views show at most [`Limits::max_rows`] rows per list and say
//! what they left out; the JSON always holds everything.

pub mod compare;
pub mod html;
pub mod text;

use std::borrow::Cow;
use std::io;

use serde::Serialize;

use crate::analyze::{Segment, SegmentType, TraceReport};

/// Pretty JSON for any report (a [`TraceReport`], a slice
/// of them, or [`Stats`](crate::Stats)). Characters that [`sanitize`] would
/// replace are written as `\uXXXX` escapes: the JSON holds the exact strings
/// and stays valid, but printing it cannot reorder or hide text.
pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(4096);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SafeFormatter::default());
    // Serialising these types cannot fail (no maps with non-string keys, no
    // fallible Serialize impls); fall back to an error object regardless.
    match value.serialize(&mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(e) => format!("{{\"error\": {:?}}}", e.to_string()),
    }
}

/// Whether a character must not reach a terminal or a page as is: control
/// characters (C0, DEL, C1), bidirectional controls (U+061C, U+200E/F,
/// U+202A–U+202E, U+2066–U+2069), line/paragraph separators, and invisible
/// zero-width characters (U+200B–U+200D, U+2060–U+2064, U+FEFF).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Replaces every [`is_unsafe_char`] with `?` (borrowed when there is none).
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if is_unsafe_char(c) { '?' } else { c })
            .collect(),
    )
}

/// serde_json's pretty formatter, with unsafe characters escaped.
#[derive(Default)]
struct SafeFormatter(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| is_unsafe_char(c)) {
            w.write_all(&rest.as_bytes()[..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(w, "\\u{:04x}", u)?;
            }
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// How much of a report the text and HTML renderers show.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// List every critical-path segment (no merging of slivers, no row cap
    /// on the path).
    pub all_segments: bool,
    /// Rows shown per list (segments, contributors, stages off the path,
    /// statistics rows) before a line saying how many were left out.
    pub max_rows: usize,
    /// Spans drawn in the HTML waterfall (those on the critical path first).
    pub max_waterfall_spans: usize,
    /// A segment below this share of the trace is a *sliver*; runs of two or
    /// more consecutive slivers are shown as one line.
    pub sliver_share: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            all_segments: false,
            max_rows: 200,
            max_waterfall_spans: 2_000,
            sliver_share: 0.01,
        }
    }
}

/// A run of consecutive critical-path slivers shown as one line.
#[derive(Clone, Debug, PartialEq)]
pub struct MergedRun {
    /// Segments in the run.
    pub count: usize,
    /// Start of the first.
    pub start_ns: u64,
    /// End of the last.
    pub end_ns: u64,
    /// Sum of their durations.
    pub duration_ns: u64,
    /// Sum of their shares.
    pub share: f64,
    /// Their type, when they all have the same one.
    pub segment_type: Option<SegmentType>,
    /// Their stage, when they all have the same one.
    pub stage: Option<std::sync::Arc<str>>,
}

/// One line of a readable critical path.
#[derive(Clone, Debug, PartialEq)]
pub enum PathLine<'a> {
    /// A segment shown as is.
    Segment(&'a Segment),
    /// Two or more consecutive slivers.
    Merged(MergedRun),
}

/// The critical path as lines: every run of two or more consecutive segments
/// each below `sliver_share` of the trace becomes one [`PathLine::Merged`];
/// everything else is a [`PathLine::Segment`]. The lines tile the path like
/// the segments do.
pub fn path_lines(segments: &[Segment], sliver_share: f64) -> Vec<PathLine<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        let tiny = |s: &Segment| s.share < sliver_share;
        let mut j = i;
        while j < segments.len() && tiny(&segments[j]) {
            j += 1;
        }
        if j - i >= 2 {
            let run = &segments[i..j];
            let same = |f: &dyn Fn(&Segment) -> bool| run.iter().all(f);
            let t = run[0].segment_type;
            let st = run[0].stage.clone();
            out.push(PathLine::Merged(MergedRun {
                count: run.len(),
                start_ns: run[0].start_ns,
                end_ns: run[run.len() - 1].end_ns,
                duration_ns: run
                    .iter()
                    .fold(0u64, |a, s| a.saturating_add(s.duration_ns)),
                share: run.iter().map(|s| s.share).sum(),
                segment_type: same(&|s| s.segment_type == t).then_some(t),
                stage: if same(&|s| s.stage == st) { st } else { None },
            }));
            i = j;
        } else {
            out.push(PathLine::Segment(&segments[i]));
            i += 1;
        }
    }
    out
}

/// The lines a renderer shows for `r`'s path under `limits`: merged slivers
/// (unless `all_segments`), then at most `max_rows` lines (unless
/// `all_segments`). Returns the lines and how many segments were left out.
pub(crate) fn shown_path<'a>(r: &'a TraceReport, limits: &Limits) -> (Vec<PathLine<'a>>, usize) {
    if limits.all_segments {
        return (r.segments.iter().map(PathLine::Segment).collect(), 0);
    }
    let mut lines = path_lines(&r.segments, limits.sliver_share);
    let mut left_out = 0;
    if lines.len() > limits.max_rows {
        for l in &lines[limits.max_rows..] {
            left_out += match l {
                PathLine::Segment(_) => 1,
                PathLine::Merged(m) => m.count,
            };
        }
        lines.truncate(limits.max_rows);
    }
    (lines, left_out)
}

/// At most `max` characters of `s`, ending in `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// Shorthand used by the renderers.
pub(crate) fn clean(s: &str) -> String {
    sanitize(s).into_owned()
}
