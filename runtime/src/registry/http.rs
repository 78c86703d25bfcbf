//! HTTP/1.1 on hyper: accept connections (over TLS when configured), check
//! basic credentials, bound and read request bodies, split and decode paths,
//! write JSON answers; [`super::api`] does the rest.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::access::Users;
use super::api::{ApiReply, ApiRequest};
use super::error::ApiErrorReply;
use super::store::Store;

/// The content type of every answer, as Confluent sends it.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// How long open connections get to finish their request on shutdown.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a client may take over its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Who may connect and how: TLS and basic-auth users, both optional.
#[derive(Clone, Default)]
pub struct Access {
    /// Wraps each accepted connection in TLS, when set.
    pub tls: Option<TlsAcceptor>,
    /// The users basic auth accepts; `None` accepts every request.
    pub users: Option<Users>,
}

/// Serves `listener` until `shutdown` turns true, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    max_body: usize,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Arc::new(App { store, max_body, users: access.users });
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "schema registry: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let stop = shutdown.clone();
        let tls = access.tls.clone();
        connections.spawn(async move {
            let Some(tls) = tls else { return connection(stream, app, stop, peer).await };
            // In the connection's own task, so a slow handshake holds up no other client.
            match tokio::time::timeout(HANDSHAKE, tls.accept(stream)).await {
                Ok(Ok(stream)) => connection(stream, app, stop, peer).await,
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "schema registry: TLS handshake failed"),
                Err(_) => tracing::info!(%peer, timeout = ?HANDSHAKE, "schema registry: TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        connections.abort_all();
    }
}

/// Serves the requests of one connection, plain or TLS, until it closes or shutdown.
async fn connection<S>(stream: S, app: Arc<App>, mut stop: watch::Receiver<bool>, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "schema registry: connection ended with an error");
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

struct App {
    store: Store,
    max_body: usize,
    users: Option<Users>,
}

impl App {
    async fn handle(&self, request: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let result = match self.authenticate(&request) {
            Ok(()) => match self.read(request).await {
                Ok(request) => super::api::route(&self.store, request).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (status, body) = match result {
            Ok(ApiReply::Json(value)) => (StatusCode::OK, value.to_string()),
            Ok(ApiReply::Raw(text)) => (StatusCode::OK, text),
            Err(e) => (e.status, e.body().to_string()),
        };
        tracing::debug!(%method, %path, status = status.as_u16(), "schema registry request");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"kfn schema registry\""));
        }
        response
    }

    /// Checks basic credentials before the body is read, so an unknown client costs nothing more.
    fn authenticate(&self, request: &hyper::Request<Incoming>) -> Result<(), ApiErrorReply> {
        let Some(users) = &self.users else { return Ok(()) };
        let header = request.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        match users.check(header) {
            Ok(user) => {
                tracing::trace!(user, "schema registry: request authenticated");
                Ok(())
            }
            Err(refused) => {
                tracing::info!(reason = %refused.message, "schema registry: request refused");
                Err(refused)
            }
        }
    }

    async fn read(&self, request: hyper::Request<Incoming>) -> Result<ApiRequest, ApiErrorReply> {
        let (parts, body) = request.into_parts();
        if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
            let content_type = content_type.to_str().unwrap_or("(not text)");
            if !content_type.to_ascii_lowercase().contains("json") {
                return Err(ApiErrorReply::unsupported_media_type(content_type));
            }
        }
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(ApiErrorReply::body_too_large(self.max_body));
        }
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(ApiErrorReply::body_too_large(self.max_body))
            }
            Err(e) => return Err(ApiErrorReply::bad_request(format!("cannot read the request body: {e}"))),
        };
        let segments = split_path(parts.uri.path())?;
        let query = parts.uri.query().map(parse_query).transpose()?.unwrap_or_default();
        Ok(ApiRequest { method: parts.method, segments, query, body })
    }
}

/// The path's non-empty segments, percent-decoded.
pub fn split_path(path: &str) -> Result<Vec<String>, ApiErrorReply> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode(s, false)).collect()
}

/// The query's `key=value` pairs, percent-decoded (`+` is a space).
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiErrorReply> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, ApiErrorReply> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                let byte =
                    byte.ok_or_else(|| ApiErrorReply::bad_request(format!("malformed percent-encoding in {text:?}")))?;
                out.push(byte);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiErrorReply::bad_request(format!("{text:?} is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_split_and_decoded() {
        assert_eq!(split_path("/subjects/a%2Fb/versions/").unwrap(), ["subjects", "a/b", "versions"]);
        assert_eq!(split_path("/subjects/caf%C3%A9+x").unwrap(), ["subjects", "café+x"]);
        assert!(split_path("/subjects/%zz").is_err());
        assert!(split_path("/subjects/%ff").is_err());
        assert_eq!(split_path("/").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn queries_are_parsed() {
        let q = parse_query("permanent=true&subjectPrefix=orders%2E&x&verbose=True&a+b=c+d").unwrap();
        assert_eq!(
            q,
            [
                ("permanent".to_string(), "true".to_string()),
                ("subjectPrefix".into(), "orders.".into()),
                ("x".into(), "".into()),
                ("verbose".into(), "True".into()),
                ("a b".into(), "c d".into()),
            ]
        );
    }
}
