//! `StageError` ↔ gRPC `Status`, content-free when capture is off.
//!
//! A worker sends the error's [`ErrorKind`] in the `spanline-error-kind`
//! trailer so the client restores the exact kind; without it (a foreign
//! server) the kind follows from the status code. Messages are truncated to
//! [`MAX_STATUS_MESSAGE`] bytes, and when content capture is off they are
//! the kind's fixed description: a status message never carries a prompt,
//! a document or a payload fragment.

use spanline_core::{ErrorKind, StageError};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::call::code_name;

/// Longest status message sent or kept, in bytes.
pub const MAX_STATUS_MESSAGE: usize = 256;

/// The trailer carrying the [`ErrorKind`] of a worker-side failure.
pub const ERROR_KIND_TRAILER: &str = "spanline-error-kind";

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The gRPC code for a kind.
pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::Timeout | ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

fn kind_from_str(s: &str) -> Option<ErrorKind> {
    ErrorKind::from_name(s)
}

/// The kind a status code maps to (when no kind trailer came with it).
pub fn kind_for(code: Code) -> ErrorKind {
    match code {
        Code::Cancelled => ErrorKind::Cancelled,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        Code::InvalidArgument | Code::FailedPrecondition => ErrorKind::InvalidInput,
        Code::Unavailable => ErrorKind::Unavailable,
        // tonic reports an over-limit message as OUT_OF_RANGE; gRPC itself
        // says RESOURCE_EXHAUSTED.
        Code::ResourceExhausted | Code::OutOfRange => ErrorKind::ResourceExhausted,
        _ => ErrorKind::Internal,
    }
}

/// A worker-side error as a status: the message is the error's text when
/// `capture` is on, its fixed description otherwise, truncated either way.
pub fn to_status(error: &StageError, capture: bool) -> Status {
    let kind = error.kind();
    let message = truncate(error.message_for(capture), MAX_STATUS_MESSAGE).to_owned();
    let mut metadata = MetadataMap::new();
    metadata.insert(
        ERROR_KIND_TRAILER,
        MetadataValue::from_static(kind.as_str()),
    );
    Status::with_metadata(code_for(kind), message, metadata)
}

/// A status as a stage error for the remote stage `stage`. The status
/// message (a foreign server's text is untrusted and may hold content) is
/// kept, truncated, only when `capture` is on.
pub fn from_status(status: &Status, stage: &str, capture: bool) -> StageError {
    let kind = status
        .metadata()
        .get(ERROR_KIND_TRAILER)
        .and_then(|v| v.to_str().ok())
        .and_then(kind_from_str)
        .unwrap_or_else(|| kind_for(status.code()));
    let code = code_name(status.code());
    let stage = truncate(stage, 64);
    let message = if capture {
        format!(
            "remote stage `{stage}` failed with {code}: {}",
            truncate(status.message(), MAX_STATUS_MESSAGE)
        )
    } else {
        format!("remote stage `{stage}` failed with {code}")
    };
    StageError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(200);
        let t = truncate(&s, 257);
        assert_eq!(t.len(), 256);
        assert!(s.starts_with(t));
    }

    #[test]
    fn kind_survives_the_round_trip() {
        for e in [
            StageError::timeout(std::time::Duration::from_secs(1)),
            StageError::model("m"),
            StageError::invalid_input("x"),
            StageError::unavailable("x"),
        ] {
            let back = from_status(&to_status(&e, false), "s", false);
            assert_eq!(back.kind(), e.kind());
        }
    }

    #[test]
    fn content_off_keeps_no_message() {
        let e = StageError::model("CANARY-123 leaked prompt");
        let status = to_status(&e, false);
        assert!(!status.message().contains("CANARY"));
        let foreign = Status::internal("CANARY-123 foreign");
        assert!(
            !from_status(&foreign, "s", false)
                .message()
                .contains("CANARY")
        );
        assert!(
            from_status(&foreign, "s", true)
                .message()
                .contains("CANARY")
        );
    }
}
