//! Strict W3C `traceparent` and `tracestate` parsing.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Longest `traceparent` we read; anything longer is rejected unread.
pub const MAX_TRACEPARENT_LEN: usize = 512;
/// Longest `tracestate` we read; anything longer is dropped unread.
pub const MAX_TRACESTATE_LEN: usize = 8192;
/// Most `tracestate` members (W3C).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `traceparent` was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceparentError {
    /// Longer than [`MAX_TRACEPARENT_LEN`].
    #[error("traceparent longer than {MAX_TRACEPARENT_LEN} bytes")]
    TooLong,
    /// Wrong length or separators for its version.
    #[error("traceparent has the wrong shape")]
    Shape,
    /// A field holds something other than lowercase hex.
    #[error("traceparent field is not lowercase hex")]
    NotLowercaseHex,
    /// Version `ff` is forbidden.
    #[error("traceparent version ff is invalid")]
    InvalidVersion,
    /// The trace id or parent id is all zeros.
    #[error("traceparent id is all zeros")]
    ZeroId,
    /// More than one distinct `traceparent` arrived.
    #[error("more than one traceparent header")]
    Duplicate,
}

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parse a `traceparent` value. Future versions are read by their first
/// four fields, as the specification asks.
pub fn parse_traceparent(value: &str) -> Result<(TraceId, SpanId, TraceFlags), TraceparentError> {
    if value.len() > MAX_TRACEPARENT_LEN {
        return Err(TraceparentError::TooLong);
    }
    if value.len() < 55 || !value.is_ascii() {
        return Err(TraceparentError::Shape);
    }
    let b = value.as_bytes();
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return Err(TraceparentError::Shape);
    }
    let (version, trace, parent, flags) =
        (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    if ![version, trace, parent, flags].iter().all(|f| lower_hex(f)) {
        return Err(TraceparentError::NotLowercaseHex);
    }
    match version {
        "ff" => return Err(TraceparentError::InvalidVersion),
        "00" if value.len() != 55 => return Err(TraceparentError::Shape),
        "00" => {}
        _ if value.len() > 55 && b[55] != b'-' => return Err(TraceparentError::Shape),
        _ => {}
    }
    let trace_id = TraceId::from_hex(trace).map_err(|_| TraceparentError::NotLowercaseHex)?;
    let span_id = SpanId::from_hex(parent).map_err(|_| TraceparentError::NotLowercaseHex)?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return Err(TraceparentError::ZeroId);
    }
    let flags = u8::from_str_radix(flags, 16).map_err(|_| TraceparentError::NotLowercaseHex)?;
    Ok((
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
    ))
}

/// Format a span context as a version-00 `traceparent`.
pub fn format_traceparent(cx: &SpanContext) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &cx.trace_id().to_bytes());
    out.push('-');
    push_hex(&mut out, &cx.span_id().to_bytes());
    out.push('-');
    push_hex(
        &mut out,
        &[cx.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()],
    );
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
}

/// Parse a `tracestate` value; `None` when it must be dropped (too long,
/// too many members, or any member malformed).
pub fn parse_tracestate(value: &str) -> Option<TraceState> {
    if value.len() > MAX_TRACESTATE_LEN {
        return None;
    }
    let mut members = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        if members.len() == MAX_TRACESTATE_MEMBERS {
            return None;
        }
        let (k, v) = member.split_once('=')?;
        members.push((k, v));
    }
    TraceState::from_key_value(members).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_round_trips() {
        let (t, s, f) = parse_traceparent(VALID).unwrap();
        assert!(f.is_sampled());
        let cx = SpanContext::new(t, s, f, true, TraceState::default());
        assert_eq!(format_traceparent(&cx), VALID);
    }

    #[test]
    fn vectors() {
        use TraceparentError as E;
        let cases: &[(&str, E)] = &[
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                E::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                E::ZeroId,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                E::NotLowercaseHex,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                E::InvalidVersion,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                E::Shape,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                E::Shape,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
                E::Shape,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                E::NotLowercaseHex,
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01xyz",
                E::Shape,
            ),
            ("", E::Shape),
        ];
        for (input, want) in cases {
            assert_eq!(parse_traceparent(input), Err(*want), "{input:?}");
        }
        let long = format!("cc{}", "-".repeat(600));
        assert_eq!(parse_traceparent(&long), Err(E::TooLong));
        let non_ascii = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert!(parse_traceparent(non_ascii).is_err());
    }

    #[test]
    fn future_version_reads_first_four_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let (t, _, f) = parse_traceparent(v).unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(f.is_sampled());
        assert!(parse_traceparent(&v[..55]).is_ok());
    }

    #[test]
    fn tracestate_limits() {
        let ok: Vec<String> = (0..32).map(|i| format!("k{i}=v{i}")).collect();
        assert_eq!(
            parse_tracestate(&ok.join(",")).unwrap().get("k31"),
            Some("v31")
        );
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v{i}")).collect();
        assert!(parse_tracestate(&too_many.join(",")).is_none());
        assert!(parse_tracestate("UPPER=x").is_none());
        assert!(parse_tracestate("novalue").is_none());
        assert!(parse_tracestate(&"a=b,".repeat(5000)).is_none());
        assert_eq!(
            parse_tracestate("congo=t61rcWkgMzE").unwrap().get("congo"),
            Some("t61rcWkgMzE")
        );
    }
}
