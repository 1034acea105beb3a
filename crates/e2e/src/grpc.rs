//! A small gRPC service (`rouse.test.Test`) for the h2 upstream tests, and its client.
//!
//! The messages are written by hand with `prost::Message` and the service uses tonic's generic
//! `Grpc` server and client: no `.proto` file, no `protoc`, no build step. The same service
//! as a `.proto`:
//!
//! ```proto
//! package rouse.test;
//! service Test {
//!   rpc Hello(HelloRequest) returns (HelloReply);        // "hello NAME"; NOT_FOUND for "nobody…"
//!   rpc Count(CountRequest) returns (stream CountReply); // 1..=n, one every interval_ms
//! }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! message CountRequest { uint32 n = 1; uint32 interval_ms = 2; }
//! message CountReply { uint32 i = 1; }
//! ```
//!
//! It is served over h2c (prior knowledge) only, as gRPC servers are.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

pub const HELLO: &str = "/rouse.test.Test/Hello";
pub const COUNT: &str = "/rouse.test.Test/Count";
/// Names starting with this get `NOT_FOUND`.
pub const NOBODY: &str = "nobody";
/// Longest pause between two streamed messages the service accepts.
const MAX_INTERVAL_MS: u32 = 10_000;
/// Most messages one `Count` sends.
const MAX_COUNT: u32 = 100_000;

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(uint32, tag = "2")]
    pub interval_ms: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReply {
    #[prost(uint32, tag = "1")]
    pub i: u32,
}

struct Hello;

impl UnaryService<HelloRequest> for Hello {
    type Response = HelloReply;
    type Future = Ready<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let name = request.into_inner().name;
        ready(if name.starts_with(NOBODY) {
            Err(Status::not_found(format!("no one is called {name:?}")))
        } else {
            Ok(Response::new(HelloReply {
                message: format!("hello {name}"),
            }))
        })
    }
}

struct Count;

type CountStream = Pin<Box<dyn Stream<Item = Result<CountReply, Status>> + Send>>;

impl ServerStreamingService<CountRequest> for Count {
    type Response = CountReply;
    type ResponseStream = CountStream;
    type Future = Ready<Result<Response<CountStream>, Status>>;

    fn call(&mut self, request: Request<CountRequest>) -> Self::Future {
        let CountRequest { n, interval_ms } = request.into_inner();
        if n > MAX_COUNT || interval_ms > MAX_INTERVAL_MS {
            return ready(Err(Status::invalid_argument(format!(
                "n is at most {MAX_COUNT} and interval_ms at most {MAX_INTERVAL_MS}"
            ))));
        }
        let every = Duration::from_millis(interval_ms.into());
        let stream = futures_util::stream::unfold(1, move |i| async move {
            if i > n {
                return None;
            }
            if i > 1 && !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            Some((Ok(CountReply { i }), i + 1))
        });
        ready(Ok(Response::new(Box::pin(stream) as CountStream)))
    }
}

async fn route(
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    Ok(match req.uri().path() {
        HELLO => Grpc::new(ProstCodec::default()).unary(Hello, req).await,
        COUNT => {
            Grpc::new(ProstCodec::default())
                .server_streaming(Count, req)
                .await
        }
        other => Status::unimplemented(format!("no method {other}")).into_http(),
    })
}

/// Serves the service on `listener` (h2c) until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let builder = auto::Builder::new(TokioExecutor::new()).http2_only();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Usually EMFILE: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            // Connection errors are the client's business.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(route))
                .await;
        });
    }
}

/// A client of the service speaking h2c to `addr` (the service, or rouse in front of it).
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<HttpClient<HttpConnector, tonic::body::Body>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        let http = HttpClient::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let origin = format!("http://{addr}")
            .parse()
            .unwrap_or_else(|e| panic!("bad address {addr}: {e}"));
        Client {
            grpc: tonic::client::Grpc::with_origin(http, origin),
        }
    }

    /// `Hello(name)`: the reply's message.
    pub async fn hello(&mut self, name: &str) -> Result<String, Status> {
        self.ready().await?;
        let request = Request::new(HelloRequest {
            name: name.to_owned(),
        });
        let reply: Response<HelloReply> = self
            .grpc
            .unary(
                request,
                PathAndQuery::from_static(HELLO),
                ProstCodec::default(),
            )
            .await?;
        Ok(reply.into_inner().message)
    }

    /// `Count(n, interval_ms)`: every message, in the order received, and the trailers.
    pub async fn count(
        &mut self,
        n: u32,
        interval_ms: u32,
    ) -> Result<(Vec<u32>, tonic::metadata::MetadataMap), Status> {
        self.ready().await?;
        let request = Request::new(CountRequest { n, interval_ms });
        let mut stream = self
            .grpc
            .server_streaming::<_, CountReply, _>(
                request,
                PathAndQuery::from_static(COUNT),
                ProstCodec::default(),
            )
            .await?
            .into_inner();
        let mut got = Vec::new();
        while let Some(reply) = stream.message().await? {
            got.push(reply.i);
        }
        let trailers = stream.trailers().await?.unwrap_or_default();
        Ok((got, trailers))
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("client not ready: {e}")))
    }
}
