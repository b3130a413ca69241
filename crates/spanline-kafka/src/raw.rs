//! Reading Kafka message headers without trusting them.
//!
//! Every safe header accessor of rdkafka 0.39 (`Headers::get`, `try_get`,
//! `iter`, and through them `detach` users) builds the key with
//! `CStr::to_str(..).unwrap()`, so a header key that is not UTF-8 — which
//! any producer on the network can send — panics the consumer. This module
//! reads headers through librdkafka's own `rd_kafka_header_get_all` and
//! hands the key out as bytes; it also writes the producer's headers through
//! `rd_kafka_header_add` with the key's length (rdkafka's `OwnedHeaders::insert`
//! allocates a `CString` per key). It is the only `unsafe` code of the crate
//! (the crate lints `unsafe_code = "deny"`; see `Cargo.toml`).

use std::ffi::{CStr, c_char, c_void};
use std::ptr;

use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedHeaders, Headers as _};

/// One header as it arrived: the key as bytes, the value if not null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: Option<&'a [u8]>,
}

/// The number of headers (`rd_kafka_header_cnt`, safe in rdkafka).
pub(crate) fn count(headers: &BorrowedHeaders) -> usize {
    headers.count()
}

/// The header at `idx`, or `None` when out of range.
pub(crate) fn get(headers: &BorrowedHeaders, idx: usize) -> Option<RawHeader<'_>> {
    // `BorrowedHeaders` is a zero-sized type that rdkafka only ever hands
    // out as a reference whose address *is* the native `rd_kafka_headers_t`
    // pointer (`BorrowedHeaders::from_native_ptr` and
    // `OwnedHeaders::as_borrowed` cast it so; rdkafka's own `try_get` casts
    // it back the same way). The crate pins rdkafka to `=0.39.0` so this
    // representation cannot change underneath.
    let native = ptr::from_ref(headers).cast::<rdsys::rd_kafka_headers_t>();
    let mut name: *const c_char = ptr::null();
    let mut value: *const c_void = ptr::null();
    let mut size: usize = 0;
    // SAFETY: `native` is a live headers object borrowed for the lifetime
    // of `headers` (see above); librdkafka bounds-checks `idx` and returns
    // an error code, never out-of-range memory; the out-pointers are valid.
    let err =
        unsafe { rdsys::rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
    if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: librdkafka stores every header name NUL-terminated
    // (`rd_kafka_header_new` copies the name and appends `\0`) and keeps it
    // alive as long as the headers object, which `headers` borrows. A key
    // with an embedded NUL reads up to that NUL: shorter, never invalid.
    let key = unsafe { CStr::from_ptr(name) }.to_bytes();
    let value = if value.is_null() {
        None
    } else {
        // SAFETY: `value` points to `size` bytes owned by the headers
        // object (same lifetime as above); librdkafka reports the exact
        // size it stored.
        Some(unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) })
    };
    Some(RawHeader { key, value })
}

/// Iterate over all headers in order.
pub(crate) fn iter(headers: &BorrowedHeaders) -> impl Iterator<Item = RawHeader<'_>> {
    (0..count(headers)).filter_map(move |i| get(headers, i))
}

/// Append a header: the key as bytes with its length, so no `CString` is
/// built per header (rdkafka's `OwnedHeaders::insert` allocates one for
/// every key). Returns `false` when librdkafka refused it (a read-only
/// headers object, which an `OwnedHeaders` never is). Also the only way to
/// write a key that is not UTF-8 (test support for hostile keys).
pub(crate) fn add(headers: &mut rdkafka::message::OwnedHeaders, key: &[u8], value: &[u8]) -> bool {
    let (Ok(key_len), Ok(value_len)) = (isize::try_from(key.len()), isize::try_from(value.len()))
    else {
        return false;
    };
    let native = ptr::from_ref(headers.as_borrowed())
        .cast::<rdsys::rd_kafka_headers_t>()
        .cast_mut();
    // SAFETY: `headers` is an owned headers object borrowed mutably here, so
    // nothing else reads or writes it during the call; its address is the
    // native `rd_kafka_headers_t` (see `get`), which is exactly what
    // `OwnedHeaders::insert` passes to the same function. Key and value are
    // valid for the lengths given; librdkafka copies both (it does not
    // require a NUL-terminated key when the length is given).
    let err = unsafe {
        rdsys::rd_kafka_header_add(
            native,
            key.as_ptr().cast::<c_char>(),
            key_len,
            value.as_ptr().cast::<c_void>(),
            value_len,
        )
    };
    err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}

/// [`add`] by value (test support).
#[cfg(test)]
pub(crate) fn add_raw(
    mut headers: rdkafka::message::OwnedHeaders,
    key: &[u8],
    value: &[u8],
) -> rdkafka::message::OwnedHeaders {
    assert!(add(&mut headers, key, value));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};

    #[test]
    fn reads_non_utf8_keys_without_panicking() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("x"),
        });
        let headers = add_raw(headers, &[0xff, 0xfe, b'k'], &[0xc3, 0x28]);
        let all: Vec<_> = iter(headers.as_borrowed()).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, b"traceparent");
        assert_eq!(all[1].key, &[0xff, 0xfe, b'k']);
        assert_eq!(all[1].value, Some(&[0xc3, 0x28][..]));
        assert!(get(headers.as_borrowed(), 2).is_none());
    }
}
