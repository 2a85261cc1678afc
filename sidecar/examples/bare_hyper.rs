//! The performance baseline for the sidecar's hot endpoints: a bare hyper server that answers
//! every request with the same bytes, and nothing else. `bench/http.sh` runs one beside the
//! sidecar per endpoint; the target is at least half its requests per second, p99 < 5 ms.
//!
//! Usage: `bare_hyper PORT BODY_FILE CONTENT_TYPE`

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
    const USAGE: &str = "usage: bare_hyper PORT BODY_FILE CONTENT_TYPE";
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().ok_or(USAGE)?.parse()?;
    let body = Bytes::from(std::fs::read(args.next().ok_or(USAGE)?)?);
    let content_type: &'static str = args.next().ok_or(USAGE)?.leak();
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
                            .header("content-type", content_type)
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
