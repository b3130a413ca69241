//! How a remote stage's input and output travel in the worker protocol's
//! `payload` fields.
//!
//! Two formats ship: [`Json`] (the default: any `serde` type, UTF-8 JSON)
//! and [`Raw`] (the bytes as they are, for stages whose input and output
//! are already bytes: a protobuf message, a tensor, a tokenised batch). The
//! caller and the worker must agree: a stage registered with
//! [`WorkerBuilder::stage_in`](crate::WorkerBuilder::stage_in)`(Raw, ..)`
//! is called with
//! [`WorkerChannel::stage_in`](crate::WorkerChannel::stage_in)`(Raw, ..)`.
//! The protocol itself does not change: a payload is bytes either way.
//!
//! ```
//! use bytes::Bytes;
//! use spanline_grpc::wire::{Decode, Encode, Json, Raw};
//!
//! let json = <Json as Encode<&str>>::encode("hi").unwrap();
//! assert_eq!(&json[..], b"\"hi\"");
//! let back: String = <Json as Decode<String>>::decode(json).unwrap();
//! assert_eq!(back, "hi");
//! let raw = <Raw as Encode<Bytes>>::encode(Bytes::from_static(b"\x00\xff")).unwrap();
//! assert_eq!(&raw[..], b"\x00\xff");
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A payload encoding. Implemented by [`Json`] and [`Raw`].
pub trait WireFormat: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// The format's name, as error messages say it (`JSON`, `raw bytes`).
    const NAME: &'static str;
}

/// The format can write a `T` into a payload.
pub trait Encode<T>: WireFormat {
    /// Encode `value` (by value: [`Raw`] passes bytes through without
    /// copying).
    fn encode(value: T) -> Result<Bytes, WireError>;
}

/// The format can read a `T` from a payload.
pub trait Decode<T>: WireFormat {
    /// Decode `payload` (untrusted input: never panics, and the error never
    /// quotes the payload).
    fn decode(payload: Bytes) -> Result<T, WireError>;
}

/// A value that could not be encoded or a payload that could not be
/// decoded. Its text is content-free: a position at most, never a fragment
/// of the payload.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct WireError {
    detail: Cow<'static, str>,
}

impl WireError {
    /// An error described by `detail` (must not hold payload content).
    pub fn new(detail: impl Into<Cow<'static, str>>) -> Self {
        WireError {
            detail: detail.into(),
        }
    }

    /// The content-free description (empty when there is nothing to add
    /// to "not valid").
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// UTF-8 JSON through `serde_json` (the default format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl WireFormat for Json {
    const NAME: &'static str = "JSON";
}

impl<T: Serialize> Encode<T> for Json {
    fn encode(value: T) -> Result<Bytes, WireError> {
        serde_json::to_vec(&value)
            .map(Bytes::from)
            // serde_json's message may quote the value: drop it.
            .map_err(|_| WireError::new(""))
    }
}

impl<T: DeserializeOwned> Decode<T> for Json {
    fn decode(payload: Bytes) -> Result<T, WireError> {
        serde_json::from_slice(&payload).map_err(|e| {
            // serde_json's message may quote the payload: keep the position.
            WireError::new(format!(" (line {}, column {})", e.line(), e.column()))
        })
    }
}

/// The bytes as they are: no encoding on either side (for stages whose
/// input and output are `Bytes` or `Vec<u8>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl WireFormat for Raw {
    const NAME: &'static str = "raw bytes";
}

impl Encode<Bytes> for Raw {
    fn encode(value: Bytes) -> Result<Bytes, WireError> {
        Ok(value)
    }
}

impl Decode<Bytes> for Raw {
    fn decode(payload: Bytes) -> Result<Bytes, WireError> {
        Ok(payload)
    }
}

impl Encode<Vec<u8>> for Raw {
    fn encode(value: Vec<u8>) -> Result<Bytes, WireError> {
        Ok(Bytes::from(value))
    }
}

impl Decode<Vec<u8>> for Raw {
    fn decode(payload: Bytes) -> Result<Vec<u8>, WireError> {
        Ok(Vec::from(payload))
    }
}

/// `what` cannot be encoded in `F`: the message of the caller's error.
pub(crate) fn encode_failed<F: WireFormat>(what: &str) -> String {
    format!("{what} cannot be encoded as {}", F::NAME)
}

/// `what` did not decode in `F`: the message of the caller's error.
pub(crate) fn decode_failed<F: WireFormat>(what: &str, e: &WireError) -> String {
    format!("{what} is not valid {} for its type{}", F::NAME, e.detail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_payload() {
        let e = <Json as Decode<u64>>::decode(Bytes::from_static(b"\"CANARY-1\"")).unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
        let m = decode_failed::<Json>("the payload", &e);
        assert!(
            m.starts_with("the payload is not valid JSON for its type (line 1"),
            "{m}"
        );
    }

    #[test]
    fn raw_passes_bytes_through() {
        let b = Bytes::from_static(b"\x00\x01\xfe");
        let out = <Raw as Encode<Bytes>>::encode(b.clone()).unwrap();
        assert_eq!(out, b);
        assert_eq!(out.as_ptr(), b.as_ptr(), "no copy");
        let v: Vec<u8> = <Raw as Decode<Vec<u8>>>::decode(out).unwrap();
        assert_eq!(v, b"\x00\x01\xfe");
    }
}
