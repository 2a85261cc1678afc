//! The performance baseline for `GET /api/v1/compliance/controls`: a bare hyper server that
//! answers every request with the same bytes and headers, and nothing else. `bench/controls.sh`
//! runs it beside the sidecar; the target is at least half its requests per second, p99 < 5 ms.
//!
//! Usage: `bare_hyper PORT BODY_FILE`

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: bare_hyper PORT BODY_FILE")?
        .parse()?;
    let body = Bytes::from(std::fs::read(
        args.next().ok_or("usage: bare_hyper PORT BODY_FILE")?,
    )?);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .header("cache-control", "public, max-age=60")
                            .body(Full::new(body))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
