//! A differential test of rouse's HTTP/2 server against hyper's: random requests, sent by a
//! real HTTP/2 client (hyper's, whose h2 encoder uses Huffman strings and the dynamic table)
//! both through rouse and straight to the test backend (hyper's own HTTP/2 server), must reach
//! the backend as the same request: method, target, fields (but those rouse adds as a proxy),
//! body and trailers. Each run keeps one connection to each side, so the decoders' dynamic
//! tables carry over from request to request, as with a browser.
//!
//! 64 cases of up to 6 requests by default; `PROPTEST_CASES=5000` for a long run.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::client::conn::http2::SendRequest;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rouse::Rouse;
use rouse_e2e::InProcessBackend;
use serde_json::Value;
use tokio::runtime::Runtime;

const EXCHANGE: Duration = Duration::from_secs(10);

/// Fields rouse adds or rewrites as a proxy (RFC 9110 §7.6), or that only one side has:
/// Host (rouse makes one from `:authority`), and HTTP/1.1's framing of the body rouse
/// forwards (Content-Length, or chunked with a Trailer field naming the trailers). Cookie is
/// checked on its own: rouse joins a client's cookie fields into one for HTTP/1.1.
const PROXY_FIELDS: [&str; 8] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "content-length",
    "transfer-encoding",
    "trailer",
];

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

#[derive(Debug, Clone)]
struct Sent {
    method: Method,
    path: String,
    fields: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    trailers: Vec<(String, String)>,
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::PATCH),
        Just(Method::OPTIONS),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[a-zA-Z0-9._~-]{1,20}(%[0-9A-F]{2})?"),
        proptest::option::of("[a-zA-Z0-9=&%._-]{0,30}"),
    )
        .prop_map(|(segment, query)| {
            let mut p = "/inspect".to_owned();
            if let Some(s) = segment {
                p.push('/');
                p.push_str(&s);
            }
            if let Some(q) = query {
                p.push('?');
                p.push_str(&q);
            }
            p
        })
}

/// A field: a name of its own or one of the common ones (static-table names in HPACK), a
/// value of visible ASCII with inner spaces.
fn field() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        "x-[a-z0-9-]{1,24}",
        Just("accept".to_owned()),
        Just("user-agent".to_owned()),
        Just("cookie".to_owned()),
        Just("cache-control".to_owned()),
        Just("accept-language".to_owned()),
        Just("referer".to_owned()),
    ];
    let value = "([!-~]([ !-~]{0,60}[!-~])?)?";
    (name, value)
}

fn request() -> impl Strategy<Value = Sent> {
    (
        method(),
        path(),
        proptest::collection::vec(field(), 0..12),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3000)),
        proptest::collection::vec(("x-t-[a-z]{1,8}", "[!-~]{1,20}"), 0..3),
    )
        .prop_map(|(method, path, fields, body, trailers)| {
            // Trailers need a body to follow.
            let trailers = if body.is_some() { trailers } else { Vec::new() };
            Sent {
                method,
                path,
                fields,
                body,
                trailers,
            }
        })
}

fn to_request(sent: &Sent) -> Request<Body> {
    let mut req = Request::builder()
        .method(sent.method.clone())
        .uri(format!("http://props.test{}", sent.path));
    for (n, v) in &sent.fields {
        req = req.header(n, v);
    }
    let body: Body = match &sent.body {
        None => Full::new(Bytes::new()).boxed(),
        Some(b) => {
            let mut frames = vec![Ok(http_body::Frame::data(Bytes::from(b.clone())))];
            if !sent.trailers.is_empty() {
                let mut t = HeaderMap::new();
                for (n, v) in &sent.trailers {
                    t.append(
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                frames.push(Ok(http_body::Frame::trailers(t)));
            }
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        }
    };
    req.body(body).expect("a request")
}

/// What the backend's `/inspect` says it got, without what rouse adds as a proxy.
async fn seen(to: &SendRequest<Body>, sent: &Sent) -> Result<Value, String> {
    let mut to = to.clone();
    let exchange = async {
        to.ready().await.map_err(|e| format!("not ready: {e}"))?;
        let resp = to
            .send_request(to_request(sent))
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer's body: {e}"))?
            .to_bytes();
        if status != 200 {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("not JSON: {e}"))
    };
    let mut v = tokio::time::timeout(EXCHANGE, exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())??;
    let uri: http::Uri = v["uri"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("{e}"))?;
    v["uri"] = uri.path_and_query().map_or("", |p| p.as_str()).into();
    v["version"] = Value::Null;
    if let Some(h) = v["headers"].as_object_mut() {
        for name in PROXY_FIELDS {
            h.remove(name);
        }
        let cookie = h.remove("cookie").unwrap_or(Value::Null);
        v["cookie"] = cookie;
    }
    Ok(v)
}

struct Env {
    rt: Runtime,
    _rouse: Rouse,
    _backend: InProcessBackend,
    via_rouse: SendRequest<Body>,
    direct: SendRequest<Body>,
}

fn env() -> Env {
    let rt = common::runtime();
    let (rouse, backend, via_rouse, direct) = rt.block_on(async {
        let (rouse, backend) = common::in_front_of_a_backend("props").await;
        let via_rouse = common::h2_connection(rouse.addr()).await;
        let direct = common::h2_connection(backend.addr()).await;
        (rouse, backend, via_rouse, direct)
    });
    Env {
        rt,
        _rouse: rouse,
        _backend: backend,
        via_rouse,
        direct,
    }
}

#[test]
fn requests_reach_the_server_through_rouse_as_through_hyper_s_http2_server() {
    let env = env();
    let mut runner = common::prop_runner(64);
    let result = runner.run(&proptest::collection::vec(request(), 1..=6), |batch| {
        for sent in &batch {
            let (via_rouse, direct) = env.rt.block_on(async {
                let via_rouse = seen(&env.via_rouse, sent).await;
                let direct = seen(&env.direct, sent).await;
                (via_rouse, direct)
            });
            let mut direct = direct
                .map_err(|e| TestCaseError::fail(format!("straight to hyper: {e}\n{sent:?}")))?;
            let mut via_rouse = via_rouse
                .map_err(|e| TestCaseError::fail(format!("through rouse: {e}\n{sent:?}")))?;
            // Each cookie field the client sent, in order, joined into one (RFC 9113
            // §8.2.3); hyper's server keeps them apart.
            let cookies: Vec<&str> = sent
                .fields
                .iter()
                .filter(|(n, _)| n == "cookie")
                .map(|(_, v)| v.as_str())
                .collect();
            // (A field value's trailing space is not part of it over HTTP/1.1: two empty
            // cookies arrive as ";".)
            let joined = if cookies.is_empty() {
                Value::Null
            } else {
                cookies.join("; ").trim_end_matches([' ', '\t']).into()
            };
            prop_assert_eq!(via_rouse["cookie"].take(), joined, "{:?}", sent);
            direct["cookie"] = Value::Null;
            prop_assert_eq!(via_rouse, direct, "{:?}", sent);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Uploads past the connection's window (1 MiB) and the stream's, four at once with and
/// without `content-length`, arrive whole: rouse gives the window back as the bodies are
/// read, and the client is never left waiting for it.
#[test]
fn uploads_past_the_windows_arrive_whole() {
    let env = env();
    const SIZE: usize = 3 * 1024 * 1024;
    let result = env.rt.block_on(async {
        let mut uploads = Vec::new();
        for i in 0..4u8 {
            let mut to = env.via_rouse.clone();
            uploads.push(tokio::spawn(async move {
                let chunks: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = (0
                    ..SIZE / 65_536)
                    .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![i; 65_536]))))
                    .collect();
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri("http://props.test/count");
                if i % 2 == 0 {
                    req = req.header("content-length", SIZE.to_string());
                }
                let body: Body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
                to.ready().await.map_err(|e| e.to_string())?;
                let resp = to
                    .send_request(req.body(body).expect("a request"))
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                let v: Value =
                    serde_json::from_slice(&body.to_bytes()).map_err(|e| e.to_string())?;
                Ok::<_, String>((status, v["bytes"].as_u64()))
            }));
        }
        let mut got = Vec::new();
        for u in uploads {
            got.push(tokio::time::timeout(EXCHANGE, u).await);
        }
        got
    });
    for (i, r) in result.into_iter().enumerate() {
        let answer = r
            .unwrap_or_else(|_| panic!("upload {i} did not finish in time"))
            .expect("the task")
            .unwrap_or_else(|e| panic!("upload {i}: {e}"));
        assert_eq!(
            answer,
            (http::StatusCode::OK, Some(SIZE as u64)),
            "upload {i}"
        );
    }
}
