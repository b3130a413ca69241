//! Trace-id ratio decisions shared by the head and tail samplers.
//!
//! Head sampling itself is the SDK's (`Sampler::TraceIdRatioBased`,
//! `Sampler::ParentBased`) configured through
//! [`SamplerConfig`](crate::SamplerConfig); these helpers make the same
//! decision without a sampler object.

use opentelemetry::trace::TraceId;

/// The decision of the SDK's `TraceIdRatioBased(ratio)` sampler for
/// `trace_id`: the low 64 bits of the id (shifted right by one) compared
/// with `ratio · 2⁶³`. Every process applying the same ratio to the same
/// trace decides the same way.
pub fn trace_id_ratio_keeps(trace_id: TraceId, ratio: f64) -> bool {
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    below(u64::from_be_bytes(low) >> 1, ratio)
}

/// The tail sampler's baseline decision for `trace_id`: the same rule as
/// [`trace_id_ratio_keeps`] over the *high* 64 bits of the id, so that a
/// baseline applied after a head ratio is independent of it (a head ratio
/// of 0.1 followed by a baseline of 0.5 keeps 5 % of all traces, not 10 %).
pub fn baseline_ratio_keeps(trace_id: TraceId, ratio: f64) -> bool {
    let bytes = trace_id.to_bytes();
    let mut high = [0u8; 8];
    high.copy_from_slice(&bytes[..8]);
    below(u64::from_be_bytes(high) >> 1, ratio)
}

fn below(random63: u64, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    random63 < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes() {
        let id = TraceId::from_bytes([0xff; 16]);
        assert!(trace_id_ratio_keeps(id, 1.0));
        assert!(!trace_id_ratio_keeps(id, 0.999));
        assert!(!trace_id_ratio_keeps(TraceId::from_bytes([1; 16]), 0.0));
        assert!(!trace_id_ratio_keeps(
            TraceId::from_bytes([1; 16]),
            f64::NAN
        ));
        assert!(trace_id_ratio_keeps(TraceId::from_bytes([0; 16]), 1e-9));
        // Independent halves.
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&[0xff; 8]);
        let id = TraceId::from_bytes(b);
        assert!(baseline_ratio_keeps(id, 0.01));
        assert!(!trace_id_ratio_keeps(id, 0.01));
    }
}
