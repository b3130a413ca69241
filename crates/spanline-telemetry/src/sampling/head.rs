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
/// [`trace_id_ratio_keeps`] over the low 64 bits of the id passed through a
/// bijective mixer (the splitmix64 finaliser), so that a baseline applied
/// after a head ratio is independent of it (a head ratio of 0.1 followed by
/// a baseline of 0.5 keeps about 5 % of all traces, not 10 %). Only the low
/// bits are used because W3C Trace Context level 2 promises randomness
/// there; the high bits of some id schemes hold a timestamp.
pub fn baseline_ratio_keeps(trace_id: TraceId, ratio: f64) -> bool {
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    below(mix(u64::from_be_bytes(low)) >> 1, ratio)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    }

    #[test]
    fn head_and_baseline_are_independent() {
        // Over ids whose low bits are spread evenly, a head ratio of 0.2
        // and a baseline of 0.5 keep about 10 % together.
        let n = 100_000u64;
        let step = u64::MAX / n;
        let (mut head, mut both) = (0u64, 0u64);
        for i in 0..n {
            let id = TraceId::from(u128::from(i * step));
            if trace_id_ratio_keeps(id, 0.2) {
                head += 1;
                both += u64::from(baseline_ratio_keeps(id, 0.5));
            }
        }
        assert!((19_000..=21_000).contains(&head), "{head}");
        assert!((9_000..=11_000).contains(&both), "{both}");
    }
}
