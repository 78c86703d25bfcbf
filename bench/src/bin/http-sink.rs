//! The HTTP limit: a bare hyper HTTP/1 server set up like kfn's trigger
//! (multi-threaded tokio, one task per connection, keep-alive) that reads
//! each request's body and answers 202 with an order id, producing nothing.
//!
//! Usage: `http-sink <port>` (listens on 127.0.0.1).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

static NEXT: AtomicU64 = AtomicU64::new(0);

async fn accept(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::from(format!("{{\"order_id\":\"sink-{id:032}\"}}"))));
    *response.status_mut() = hyper::StatusCode::ACCEPTED;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 =
        std::env::args().nth(1).unwrap_or_default().parse().map_err(|_| anyhow::anyhow!("usage: http-sink <port>"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(accept);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
