//! Kafka header carriers for W3C Trace Context and Baggage.
//!
//! [`HeaderInjector`] writes into rdkafka's [`OwnedHeaders`];
//! [`HeaderExtractor`] reads [`BorrowedHeaders`] (a consumed message's, or
//! an owned set's through [`OwnedHeaders::as_borrowed`]). Both go through
//! the core's strict [`propagation::inject`] / [`propagation::extract`].
//!
//! Headers come from the network and are not trusted: keys that are not
//! UTF-8 are skipped (they cannot be W3C headers), values that are not
//! UTF-8 read as invalid (the trace header is rejected and counted, and a
//! new trace starts), duplicate `traceparent` headers are rejected, and the
//! core checks every value's length before parsing it. Nothing here
//! panics on what a producer sent.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
use spanline_core::RequestContext;
use spanline_core::propagation::{self, Extracted};

use crate::raw;

/// What a header value that is not UTF-8 reads as: no W3C parser accepts
/// it, so the header is rejected (and counted) rather than ignored.
const NOT_UTF8: &str = "\u{fffd}";

/// Writes propagation headers into rdkafka's [`OwnedHeaders`].
#[derive(Debug)]
pub struct HeaderInjector {
    headers: Option<OwnedHeaders>,
}

impl HeaderInjector {
    /// Append to `headers`.
    pub fn new(headers: OwnedHeaders) -> Self {
        HeaderInjector {
            headers: Some(headers),
        }
    }

    /// Append a header with a byte value (librdkafka copies both; no
    /// intermediate allocation).
    pub fn insert_bytes(&mut self, key: &str, value: &[u8]) {
        if let Some(h) = self.headers.as_mut() {
            raw::add(h, key.as_bytes(), value);
        }
    }

    /// The headers.
    pub fn into_inner(self) -> OwnedHeaders {
        self.headers.unwrap_or_default()
    }
}

impl Injector for HeaderInjector {
    fn set(&mut self, key: &str, value: String) {
        self.insert_bytes(key, value.as_bytes());
    }
}

/// Reads propagation headers from rdkafka's [`BorrowedHeaders`] without
/// trusting them.
#[derive(Clone, Copy)]
pub struct HeaderExtractor<'a> {
    headers: Option<&'a BorrowedHeaders>,
}

impl std::fmt::Debug for HeaderExtractor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderExtractor")
            .field("count", &self.headers.map_or(0, raw::count))
            .finish()
    }
}

impl<'a> HeaderExtractor<'a> {
    /// Read `headers` (`None`: a message without headers).
    pub fn new(headers: Option<&'a BorrowedHeaders>) -> Self {
        HeaderExtractor { headers }
    }

    /// Read an owned header set.
    pub fn owned(headers: &'a OwnedHeaders) -> Self {
        Self::new(Some(headers.as_borrowed()))
    }

    /// Every header as raw bytes: `(key, value)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + use<'a> {
        self.headers
            .into_iter()
            .flat_map(raw::iter)
            .map(|h| (h.key, h.value))
    }

    /// The value of the first header named `key` (ASCII case-insensitive),
    /// as bytes.
    pub fn get_bytes(&self, key: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, v)| v.unwrap_or_default())
    }

    /// The value of the first header named `key` when it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get_bytes(key)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

fn as_str(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or(NOT_UTF8)
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.get_bytes(key).map(as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.iter()
            .filter_map(|(k, _)| std::str::from_utf8(k).ok())
            .collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, v)| as_str(v.unwrap_or_default()))
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// Append `ctx`'s trace context and request attributes to `headers`.
pub fn inject_headers(ctx: &RequestContext, headers: OwnedHeaders) -> OwnedHeaders {
    let mut injector = HeaderInjector::new(headers);
    propagation::inject(ctx, &mut injector);
    injector.into_inner()
}

/// Read the trace context and request attributes a message carries
/// (strictly: see the module docs).
pub fn extract_headers(headers: Option<&BorrowedHeaders>) -> Extracted {
    propagation::extract(&HeaderExtractor::new(headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use rdkafka::message::Header;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers(pairs: &[(&str, &[u8])]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(*v),
            })
        })
    }

    #[test]
    fn round_trip() {
        let parent = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "v1")]).unwrap(),
        );
        let attrs = spanline_core::RequestAttributes::builder()
            .user_id("u-1")
            .build()
            .unwrap();
        let ctx = RequestContext::new()
            .with_remote_parent(parent.clone())
            .with_attributes(attrs);
        let h = inject_headers(&ctx, OwnedHeaders::new());
        let ex = HeaderExtractor::owned(&h);
        assert_eq!(ex.get("traceparent"), Some(TP));
        assert_eq!(ex.get("tracestate"), Some("vendor=v1"));
        let out = extract_headers(Some(h.as_borrowed()));
        let got = out.parent.unwrap();
        assert_eq!(got.trace_id(), parent.trace_id());
        assert_eq!(got.span_id(), parent.span_id());
        assert_eq!(got.trace_state().header(), "vendor=v1");
        assert_eq!(out.attributes.user_id(), Some("u-1"));
    }

    #[test]
    fn invalid_traceparent_starts_a_new_trace() {
        for bad in [
            &b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"[..],
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"garbage",
            b"",
            &[0xff, 0xfe, 0x00],
        ] {
            let h = headers(&[("traceparent", bad), ("tracestate", b"a=b")]);
            let out = extract_headers(Some(h.as_borrowed()));
            assert!(out.parent.is_none(), "{bad:?}");
            assert!(out.rejected.traceparent.is_some(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_traceparent_is_rejected() {
        let h = headers(&[
            ("traceparent", TP.as_bytes()),
            ("traceparent", TP.as_bytes()),
        ]);
        let out = extract_headers(Some(h.as_borrowed()));
        assert!(out.parent.is_none());
        assert!(out.rejected.traceparent.is_some());
    }

    #[test]
    fn non_utf8_key_is_skipped_and_valid_headers_still_read() {
        let h = crate::raw::add_raw(OwnedHeaders::new(), &[0xc3, 0x28, 0xff], b"x");
        let h = crate::raw::add_raw(h, b"traceparent", TP.as_bytes());
        let ex = HeaderExtractor::owned(&h);
        assert_eq!(ex.keys(), vec!["traceparent"]);
        let out = extract_headers(Some(h.as_borrowed()));
        assert!(out.parent.is_some());
    }

    #[test]
    fn oversized_headers_are_rejected_not_parsed() {
        let huge = vec![b'a'; 1 << 20];
        let mut baggage = b"k=".to_vec();
        baggage.extend_from_slice(&huge);
        let h = headers(&[
            ("traceparent", &huge),
            ("tracestate", &huge),
            ("baggage", &baggage),
        ]);
        let out = extract_headers(Some(h.as_borrowed()));
        assert!(out.parent.is_none());
        assert!(out.attributes.is_empty());
    }

    #[test]
    fn no_headers_is_fine() {
        let out = extract_headers(None);
        assert!(out.parent.is_none());
        assert_eq!(HeaderExtractor::new(None).get("traceparent"), None);
    }
}
