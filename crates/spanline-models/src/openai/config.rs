//! Timeouts and size limits of the client.

use std::time::Duration;

/// How long the client waits, phase by phase. Every wait is also bounded by
/// the request's deadline ([`RequestContext::remaining`]); when the
/// deadline is the tighter bound, the error is `DeadlineExceeded` rather
/// than `Timeout`.
///
/// [`RequestContext::remaining`]: spanline_core::RequestContext::remaining
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Establishing a connection: resolving the host, the TCP connect and,
    /// with the `tls` feature, the TLS handshake (default 10 s).
    pub connect: Duration,
    /// From the start of the request until the response headers and the
    /// first body bytes have arrived: covers queueing and prompt processing
    /// on the server (default 120 s).
    pub first_byte: Duration,
    /// The longest gap between two pieces of the body once it has started
    /// (default 60 s).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// Set the connect timeout.
    pub fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }
    /// Set the first-byte timeout.
    pub fn first_byte(mut self, timeout: Duration) -> Self {
        self.first_byte = timeout;
        self
    }
    /// Set the idle (between chunks) timeout.
    pub fn idle(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }
}

/// Bounds on what the client reads from a server it does not trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The longest event-stream line, and the most data one event may
    /// accumulate (default 1 MiB). Checked as bytes arrive.
    pub max_line_bytes: usize,
    /// The most bytes of one response body (default 64 MiB).
    pub max_response_bytes: u64,
    /// How much of an error response's body is read (default 4 KiB); the
    /// error message shows at most its first 512 bytes, and only with
    /// content capture on.
    pub max_error_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 1 << 20,
            max_response_bytes: 64 << 20,
            max_error_body_bytes: 4 << 10,
        }
    }
}

impl Limits {
    /// Set the longest line / event data.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }
    /// Set the largest response body.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }
    /// Set how much of an error body is read.
    pub fn max_error_body_bytes(mut self, bytes: usize) -> Self {
        self.max_error_body_bytes = bytes;
        self
    }
}

/// The most of an error body an error message shows.
pub(crate) const ERROR_EXCERPT_BYTES: usize = 512;
