//! What can go wrong talking to an OpenAI-compatible server.

use std::time::Duration;

use spanline_core::{BoxError, ErrorKind, StageError};

/// An error of the OpenAI-compatible client.
///
/// Messages never hold the API key, header values or request content.
/// Text the server sent (an error body, an error event's message, a JSON
/// parser's view of a bad chunk) is included only when the request's
/// content capture is on ([`RequestContext::captures_content`]); otherwise
/// the message says what happened without it.
///
/// [`RequestContext::captures_content`]: spanline_core::RequestContext::captures_content
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenAiError {
    /// The base URL cannot be used (at build time).
    #[error("invalid base URL: {reason}")]
    InvalidUrl {
        /// Why (never the URL itself: it may carry credentials).
        reason: &'static str,
    },
    /// An `https` base URL without the crate's `tls` feature.
    #[error("https base URLs need the `tls` feature of spanline-models")]
    TlsUnsupported,
    /// TLS could not be set up (no usable root certificates).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// An extra header's name or value is not valid HTTP.
    #[error("invalid header {name:?}: not a valid HTTP header name or value")]
    InvalidHeader {
        /// The header name as given (the value is never shown).
        name: String,
    },
    /// The API key cannot be sent in a header.
    #[error("the API key is not a valid HTTP header value")]
    InvalidApiKey,
    /// The server could not be reached (connection refused, DNS failure,
    /// unreachable network).
    #[error("cannot connect to the model server")]
    Connect {
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// No connection (resolution, TCP, TLS) within the connect timeout.
    #[error("connecting to the model server timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// No response (headers and first body bytes) within the first-byte
    /// timeout.
    #[error("no response from the model server within {0:?}")]
    FirstByteTimeout(Duration),
    /// The stream went quiet for longer than the idle timeout.
    #[error("the model server sent nothing for {0:?}")]
    IdleTimeout(Duration),
    /// The request's deadline passed.
    #[error("request deadline exceeded")]
    DeadlineExceeded,
    /// The request could not be sent, or the connection closed before a
    /// response arrived.
    #[error("sending the request failed")]
    Send {
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The server answered with a non-success status.
    #[error("the model server answered HTTP {status}{}", body.as_deref().map(|b| format!(": {b}")).unwrap_or_default())]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (truncated), only when content
        /// capture is on.
        body: Option<String>,
    },
    /// The connection failed while the response streamed.
    #[error("the connection to the model server failed mid-stream")]
    Body {
        /// The transport's error.
        #[source]
        source: BoxError,
        /// The server broke the HTTP framing (a protocol error rather than
        /// a lost connection).
        protocol: bool,
    },
    /// A line of the event stream, or one event's data, exceeds the limit.
    #[error("an event-stream line exceeds {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// The response body exceeds the limit.
    #[error("the response exceeds {limit} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The stream is not UTF-8.
    #[error("the event stream is not UTF-8")]
    NotUtf8,
    /// An event's data is not the JSON of a chat completion chunk.
    #[error("malformed chunk: {detail}")]
    Malformed {
        /// What is wrong (the parser's message only with content capture on).
        detail: String,
    },
    /// The stream ended before `data: [DONE]` or a finish reason.
    #[error("the stream ended before the generation finished")]
    Truncated,
    /// The server reported an error inside the stream.
    #[error("the model server reported an error{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Server {
        /// The server's message, only when content capture is on.
        message: Option<String>,
    },
    /// The request body could not be encoded.
    #[error("encoding the request failed: {0}")]
    Encode(#[source] serde_json::Error),
}

impl OpenAiError {
    /// The [`ErrorKind`] this error maps to:
    ///
    /// | error | kind |
    /// |---|---|
    /// | `Connect`, `Send`, `Body` (connection lost), HTTP 5xx | `Unavailable` |
    /// | `ConnectTimeout`, `FirstByteTimeout`, `IdleTimeout`, HTTP 408 | `Timeout` |
    /// | `DeadlineExceeded` | `DeadlineExceeded` |
    /// | HTTP 429 | `ResourceExhausted` |
    /// | other HTTP 4xx, `InvalidUrl`, `InvalidHeader`, `InvalidApiKey`, `TlsUnsupported` | `InvalidInput` |
    /// | `Malformed`, `NotUtf8`, `LineTooLong`, `ResponseTooLarge`, `Truncated`, `Body` (bad framing), other statuses | `InvalidOutput` |
    /// | `Server` (error event in the stream) | `Model` |
    /// | `Tls`, `Encode` | `Internal` |
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenAiError::InvalidUrl { .. }
            | OpenAiError::TlsUnsupported
            | OpenAiError::InvalidHeader { .. }
            | OpenAiError::InvalidApiKey => ErrorKind::InvalidInput,
            OpenAiError::Tls(_) | OpenAiError::Encode(_) => ErrorKind::Internal,
            OpenAiError::Connect { .. } | OpenAiError::Send { .. } => ErrorKind::Unavailable,
            OpenAiError::ConnectTimeout(_)
            | OpenAiError::FirstByteTimeout(_)
            | OpenAiError::IdleTimeout(_) => ErrorKind::Timeout,
            OpenAiError::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            OpenAiError::Status { status, .. } => match status {
                408 => ErrorKind::Timeout,
                429 => ErrorKind::ResourceExhausted,
                400..=499 => ErrorKind::InvalidInput,
                500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::InvalidOutput,
            },
            OpenAiError::Body { protocol, .. } => {
                if *protocol {
                    ErrorKind::InvalidOutput
                } else {
                    ErrorKind::Unavailable
                }
            }
            OpenAiError::LineTooLong { .. }
            | OpenAiError::ResponseTooLarge { .. }
            | OpenAiError::NotUtf8
            | OpenAiError::Malformed { .. }
            | OpenAiError::Truncated => ErrorKind::InvalidOutput,
            OpenAiError::Server { .. } => ErrorKind::Model,
        }
    }

    /// The HTTP status, for [`OpenAiError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            OpenAiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<OpenAiError> for StageError {
    fn from(e: OpenAiError) -> Self {
        let kind = e.kind();
        StageError::new(kind, e.to_string()).with_source(e)
    }
}

/// The start of `bytes` as text, at most `max` bytes, cut at a character
/// boundary, with an ellipsis when cut.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let s = |status| OpenAiError::Status { status, body: None }.kind();
        assert_eq!(s(400), ErrorKind::InvalidInput);
        assert_eq!(s(404), ErrorKind::InvalidInput);
        assert_eq!(s(408), ErrorKind::Timeout);
        assert_eq!(s(429), ErrorKind::ResourceExhausted);
        assert_eq!(s(500), ErrorKind::Unavailable);
        assert_eq!(s(503), ErrorKind::Unavailable);
        assert_eq!(s(302), ErrorKind::InvalidOutput);
    }

    #[test]
    fn stage_error_keeps_kind_and_message() {
        let e: StageError = OpenAiError::Status {
            status: 400,
            body: Some("bad".into()),
        }
        .into();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.message(), "the model server answered HTTP 400: bad");
        let e: StageError = OpenAiError::Status {
            status: 400,
            body: None,
        }
        .into();
        assert_eq!(e.message(), "the model server answered HTTP 400");
    }

    #[test]
    fn excerpt_cuts_at_char_boundary() {
        assert_eq!(excerpt(b"  short ", 10), "short");
        assert_eq!(excerpt("ééé".as_bytes(), 3), "é…");
        assert_eq!(excerpt(b"\xff\xfe", 10), "\u{fffd}\u{fffd}");
    }
}
