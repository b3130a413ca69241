//! Renderers: terminal text, JSON and a self-contained HTML page with SVG charts.

pub mod compare;
pub mod html;
pub mod text;

use serde::Serialize;

/// Pretty JSON for any report (a [`TraceReport`](crate::TraceReport), a slice
/// of them, or [`Stats`](crate::Stats)).
pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising these types cannot fail (no maps with non-string keys, no
    // fallible Serialize impls); fall back to an error object regardless.
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
}

/// Replaces control characters (terminal escape sequences in hostile span
/// names) with `?`.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
