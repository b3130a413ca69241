//! The HTTP side: endpoint parsing, the hyper client, timeouts, bounded
//! body reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use spanline_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

use super::error::OpenAiError;

#[cfg(feature = "tls")]
type Inner = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Inner = HttpConnector;

/// The connector: resolve, TCP connect (and TLS handshake with `tls`), all
/// within the connect timeout.
pub(crate) type Connector = TimeoutConnector<Inner>;

/// The pooled HTTP/1.1 client.
pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `{base}/chat/completions`.
    pub(crate) uri: Uri,
    /// Host for `server.address` (IPv6 without brackets).
    pub(crate) host: String,
    /// Port for `server.port` (the scheme's default when not given).
    pub(crate) port: u16,
    /// Whether the scheme is `https`.
    pub(crate) https: bool,
}

const CHAT_PATH: &str = "/chat/completions";

/// Parse and check `base` (`http://host:port/v1`); the result points at
/// `{base}/chat/completions`. A base that already ends with that path is
/// taken as is; a query string is kept.
pub(crate) fn endpoint(base: &str) -> Result<Endpoint, OpenAiError> {
    let invalid = |reason| OpenAiError::InvalidUrl { reason };
    let uri: Uri = base
        .trim()
        .parse()
        .map_err(|_| invalid("not a valid absolute URL"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(_) => return Err(invalid("the scheme must be http or https")),
        None => return Err(invalid("the URL needs a scheme (http:// or https://)")),
    };
    if https && !cfg!(feature = "tls") {
        return Err(OpenAiError::TlsUnsupported);
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("the URL needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "credentials in the URL are not supported: use api_key or a header",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("the URL needs a host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/');
    let path = if base_path.ends_with(CHAT_PATH) {
        base_path.to_owned()
    } else {
        format!("{base_path}{CHAT_PATH}")
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let full = Uri::builder()
        .scheme(if https { "https" } else { "http" })
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| invalid("not a valid absolute URL"))?;
    Ok(Endpoint {
        uri: full,
        host: host.to_owned(),
        port,
        https,
    })
}

/// A pooled client with `connect` as its TCP connect timeout.
pub(crate) fn client(connect: Duration, https: bool) -> Result<HttpClient, OpenAiError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let connector = TimeoutConnector {
        inner: wrap(http, https)?,
        timeout: connect,
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// Bounds a whole connect (resolution, TCP, TLS) by `timeout`; an overrun
/// is an `io::ErrorKind::TimedOut` error, which [`request_error`] maps to
/// [`OpenAiError::ConnectTimeout`].
#[derive(Debug, Clone)]
pub(crate) struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> Service<Uri> for TimeoutConnector<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )) as BoxError),
            }
        })
    }
}

#[cfg(not(feature = "tls"))]
fn wrap(http: HttpConnector, _https: bool) -> Result<Inner, OpenAiError> {
    Ok(http)
}

#[cfg(feature = "tls")]
fn wrap(mut http: HttpConnector, https: bool) -> Result<Inner, OpenAiError> {
    http.enforce_http(false);
    let provider = rustls::crypto::ring::default_provider();
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = if https {
        // The platform's roots; `SSL_CERT_FILE` / `SSL_CERT_DIR` override
        // them (for a private CA).
        builder
            .with_provider_and_native_roots(provider)
            .map_err(|e| OpenAiError::Tls(e.to_string()))?
    } else {
        // Plain-HTTP endpoint: TLS is never used, so no roots are loaded.
        let config = rustls::ClientConfig::builder_with_provider(provider.into())
            .with_safe_default_protocol_versions()
            .map_err(|e| OpenAiError::Tls(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        builder.with_tls_config(config)
    };
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

/// Await `fut` until `limit` or the request `deadline`, whichever comes
/// first: the deadline gives `DeadlineExceeded`, the limit `on_timeout()`.
pub(crate) async fn within<F: Future>(
    fut: F,
    limit: Instant,
    deadline: Option<Instant>,
    on_timeout: impl FnOnce() -> OpenAiError,
) -> Result<F::Output, OpenAiError> {
    let (at, by_deadline) = match deadline {
        Some(d) if d <= limit => (d, true),
        _ => (limit, false),
    };
    tokio::time::timeout_at(at, fut).await.map_err(|_| {
        if by_deadline {
            OpenAiError::DeadlineExceeded
        } else {
            on_timeout()
        }
    })
}

/// Classify an error of the pooled client (before a response arrived).
pub(crate) fn request_error(
    e: hyper_util::client::legacy::Error,
    connect_timeout: Duration,
) -> OpenAiError {
    if e.is_connect() {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return OpenAiError::ConnectTimeout(connect_timeout);
            }
            cause = c.source();
        }
        OpenAiError::Connect {
            source: Box::new(e),
        }
    } else {
        OpenAiError::Send {
            source: Box::new(e),
        }
    }
}

/// A body-read error: lost connection, or broken HTTP framing.
pub(crate) fn body_error(e: hyper::Error) -> OpenAiError {
    OpenAiError::Body {
        protocol: e.is_parse(),
        source: Box::new(e),
    }
}

/// Read at most `max` bytes of `body` (the rest is left unread), each
/// frame within `idle` and all of it by `deadline`. Returns what was read
/// and whether the body ended.
pub(crate) async fn read_bounded(
    body: &mut Incoming,
    max: u64,
    idle: Duration,
    deadline: Option<Instant>,
) -> Result<(Vec<u8>, bool), OpenAiError> {
    let mut out = Vec::new();
    loop {
        let frame = within(body.frame(), Instant::now() + idle, deadline, || {
            OpenAiError::IdleTimeout(idle)
        })
        .await?;
        match frame {
            None => return Ok((out, true)),
            Some(Err(e)) => return Err(body_error(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = usize::try_from(max)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(out.len());
                    if data.len() > room {
                        out.extend_from_slice(data.get(..room).unwrap_or_default());
                        return Ok((out, false));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = endpoint("http://127.0.0.1:8080/v1").unwrap();
        assert_eq!(
            e.uri.to_string(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert_eq!(
            (e.host.as_str(), e.port, e.https),
            ("127.0.0.1", 8080, false)
        );
        let e = endpoint("http://localhost/v1/").unwrap();
        assert_eq!(e.uri.to_string(), "http://localhost/v1/chat/completions");
        assert_eq!(e.port, 80);
        let e = endpoint("http://[::1]:9000/v1/chat/completions?api-version=2").unwrap();
        assert_eq!(
            e.uri.to_string(),
            "http://[::1]:9000/v1/chat/completions?api-version=2"
        );
        assert_eq!(e.host, "::1");
        let e = endpoint("http://h:1").unwrap();
        assert_eq!(e.uri.to_string(), "http://h:1/chat/completions");
    }

    #[test]
    fn bad_endpoints() {
        for bad in [
            "",
            "not a url",
            "/v1",
            "ftp://h/v1",
            "http://u:p@h/v1",
            "h:80",
        ] {
            assert!(
                matches!(endpoint(bad), Err(OpenAiError::InvalidUrl { .. })),
                "{bad:?}"
            );
        }
        let https = endpoint("https://example.invalid/v1");
        if cfg!(feature = "tls") {
            assert_eq!(https.unwrap().port, 443);
        } else {
            assert!(matches!(https, Err(OpenAiError::TlsUnsupported)));
        }
    }
}
