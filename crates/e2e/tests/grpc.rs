//! A gRPC service behind rouse (`protocol = "h2c"`), started by the embedded supervisor on
//! the first call: unary and server-streaming calls, error statuses, trailers.

mod common;

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{WAIT, backend_pids, embedded_upstream, free_addrs, refuses, start_rouse};
use http::Request;
use http_body_util::{BodyExt, Full};
use prost::Message;
use rouse_e2e::grpc::{COUNT, Client, CountReply, CountRequest};
use tokio::time::timeout;

/// An upstream of one `rouse-test-grpc` server on `addr`, which rouse starts on demand.
fn grpc_upstream(addr: SocketAddr, extra: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_rouse-test-grpc");
    let server = format!(
        "[[upstream.server]]\naddress = \"{addr}\"\ncommand = [{bin:?}, \"--listen\", \"{addr}\"]\n"
    );
    embedded_upstream(
        "grpc",
        &[],
        &format!("protocol = \"h2c\"\n{extra}"),
        &[server],
    )
}

#[tokio::test]
async fn a_unary_call_wakes_the_service_and_gets_its_answer() {
    let [addr] = free_addrs();
    let rouse = start_rouse(&grpc_upstream(addr, "")).await;
    assert!(refuses(addr).await, "nothing runs before the first call");
    let mut c = Client::new(rouse.addr());
    let reply = timeout(WAIT, c.hello("rouse")).await.unwrap();
    assert_eq!(reply.unwrap(), "hello rouse");
    for i in 0..20 {
        let name = format!("n{i}");
        let reply = timeout(WAIT, c.hello(&name)).await.unwrap().unwrap();
        assert_eq!(reply, format!("hello {name}"));
    }
}

#[tokio::test]
async fn a_server_stream_delivers_every_message_in_order_then_its_trailers() {
    let [addr] = free_addrs();
    let rouse = start_rouse(&grpc_upstream(addr, "")).await;
    let mut c = Client::new(rouse.addr());
    // Messages a few ms apart, so they flow as the service sends them.
    let (got, _) = timeout(WAIT, c.count(30, 3)).await.unwrap().unwrap();
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
    // Many, at once.
    let (got, _) = timeout(WAIT, c.count(5000, 0)).await.unwrap().unwrap();
    assert_eq!(got, (1..=5000).collect::<Vec<_>>());

    // On the wire: the data frames, then `grpc-status: 0` as a trailer.
    let (messages, trailers) = raw_count(rouse.addr(), 100).await;
    assert_eq!(messages, (1..=100).collect::<Vec<_>>());
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
}

#[tokio::test]
async fn an_error_status_reaches_the_client_intact() {
    let [addr] = free_addrs();
    let rouse = start_rouse(&grpc_upstream(addr, "")).await;
    let mut c = Client::new(rouse.addr());
    let status = timeout(WAIT, c.hello("nobody-here"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no one is called \"nobody-here\"");
    // The connection and the service are fine after it.
    assert_eq!(
        timeout(WAIT, c.hello("again")).await.unwrap().unwrap(),
        "hello again"
    );
}

/// A burst of calls on a cold service: all are held while one process starts, then all are
/// answered.
#[tokio::test]
async fn a_burst_of_calls_on_a_cold_service_starts_it_once_and_all_are_answered() {
    let [addr] = free_addrs();
    let rouse = start_rouse(&grpc_upstream(addr, "")).await;
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let mut c = Client::new(rouse.addr());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                c.hello(&format!("b{i}")).await.map(|m| m.len())
            } else {
                c.count(i, 0).await.map(|(got, _)| got.len())
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = timeout(WAIT, t).await.unwrap().unwrap().unwrap();
        let want = if i % 2 == 0 {
            format!("hello b{i}").len()
        } else {
            i
        };
        assert_eq!(got, want, "call {i}");
    }
    assert_eq!(backend_pids(addr).len(), 1, "one process for the burst");
}

/// gRPC is never buffered, even where the upstream buffers everything else, so calls from
/// many clients at once stream through side by side.
#[tokio::test]
async fn concurrent_calls_stream_side_by_side_with_buffering_on() {
    let [addr] = free_addrs();
    let rouse = start_rouse(&grpc_upstream(
        addr,
        "request_buffering = true\nresponse_buffering = true",
    ))
    .await;
    let mut tasks = Vec::new();
    for i in 0..10u32 {
        let mut c = Client::new(rouse.addr());
        tasks.push(tokio::spawn(async move {
            let (got, _) = c.count(20 + i, 2).await.unwrap();
            assert_eq!(got, (1..=20 + i).collect::<Vec<_>>());
            c.hello(&format!("c{i}")).await.unwrap()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let reply = timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!(reply, format!("hello c{i}"));
    }
}

/// `Count(n)` by hand over h2c: the messages and the trailers as they arrived.
async fn raw_count(rouse: SocketAddr, n: u32) -> (Vec<u32>, http::HeaderMap) {
    let mut send = common::h2_connection(rouse).await;
    let message = CountRequest { n, interval_ms: 0 }.encode_to_vec();
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    let req = Request::post(format!("http://{rouse}{COUNT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(framed.freeze()))
        .unwrap();
    let resp = timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let body = timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    let trailers = body.trailers().cloned().expect("trailers");
    let mut data: Bytes = body.to_bytes();
    let mut messages = Vec::new();
    while data.has_remaining() {
        assert_eq!(data.get_u8(), 0, "uncompressed");
        let len = data.get_u32() as usize;
        let reply = CountReply::decode(data.split_to(len)).unwrap();
        messages.push(reply.i);
    }
    (messages, trailers)
}
