//! Property tests of the XML-RPC decoder (supervisord's answers are input rouse does not
//! control: a broken or hostile supervisord, or something else listening on its port), and
//! the driver against answers too large or too deep to hold.
//!
//! Each property runs 64 cases by default so that the test command stays fast;
//! `PROPTEST_CASES=100000` (what bench/fuzz.sh sets) runs more.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config;
use rouse_config::{SupervisordConfig, SupervisordUrl};
use rouse_supervisor::supervisord::xmlrpc::{
    Fault, MAX_DEPTH, Value, decode_response, encode_call,
};
use rouse_supervisor::{Supervisor, SupervisorError, Supervisord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A decode of a few KiB that takes this long is stuck (quadratic or worse), not slow: a
/// debug build decodes such an answer in well under a millisecond.
const SLOW: Duration = Duration::from_secs(2);
/// Longest error message the decoder may produce: errors end up in logs, `/status` and
/// `rouse check --online`, whatever the answer held.
const MAX_MESSAGE: usize = 400;

fn config() -> Config {
    // PROPTEST_CASES, when set, wins over this default (proptest reads it in Config::default).
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        // Shrinking a failure found in a long bench/fuzz.sh run must not run for hours.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Characters XML 1.0 allows in a document (`Char`), weighted towards the ones that need
/// escaping or that parsers treat specially.
fn xml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range(' ', '~'),
        2 => proptest::sample::select(vec!['&', '<', '>', '"', '\'', ']', '\t', '\n', '\r', ';', '#']),
        1 => any::<char>().prop_filter("a character XML 1.0 allows", |c| is_xml_char(*c)),
    ]
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn xml_string() -> impl Strategy<Value = String> {
    vec(xml_char(), 0..24).prop_map(String::from_iter)
}

/// Every value the decoder produces; doubles finite (NaN is not equal to itself).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        (-100i64..100).prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
        xml_string().prop_map(Value::String),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(Value::Double),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(xml_string(), inner, 0..6).prop_map(Value::Struct),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Writers

const CALL_HEAD: &str = "<?xml version=\"1.0\"?>\n<methodCall><methodName>m</methodName><params>";
const CALL_TAIL: &str = "</params></methodCall>\n";

/// `<param>…</param>` of `v`, as rouse's own encoder writes it.
fn encoded_param(v: &Value) -> String {
    let call = encode_call("m", std::slice::from_ref(v));
    call.strip_prefix(CALL_HEAD)
        .and_then(|s| s.strip_suffix(CALL_TAIL))
        .unwrap_or_else(|| panic!("encode_call changed its framing: {call:?}"))
        .to_owned()
}

/// A `methodResponse` holding `v`, by the encoder.
fn response(v: &Value) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<methodResponse><params>{}</params></methodResponse>\n",
        encoded_param(v)
    )
}

/// A fault answer, by the encoder.
fn fault_response(code: i64, string: &str) -> String {
    let v = Value::Struct(BTreeMap::from([
        ("faultCode".to_owned(), Value::Int(code)),
        ("faultString".to_owned(), Value::str(string)),
    ]));
    let param = encoded_param(&v);
    let value = param
        .strip_prefix("<param>")
        .and_then(|s| s.strip_suffix("</param>"))
        .unwrap_or_else(|| panic!("{param:?}"));
    format!("<?xml version=\"1.0\"?>\n<methodResponse><fault>{value}</fault></methodResponse>\n")
}

/// Writes values in every form the XML-RPC spec and supervisord's Python (xmlrpc.client,
/// expat) allow, chosen by a seed: whitespace and comments between elements, `<i4>`, untyped
/// strings, `<string/>`, CDATA, character references, `true`/`false` booleans.
struct Lenient {
    seed: u64,
}

impl Lenient {
    fn coin(&mut self, one_in: u64) -> bool {
        // xorshift64: cheap and deterministic for a given seed, so failures reproduce.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed.is_multiple_of(one_in)
    }

    /// Where an element may be followed by ignorable content.
    fn gap(&mut self, out: &mut String) {
        if self.coin(3) {
            out.push_str(" \n\t");
        }
        if self.coin(8) {
            out.push_str("<!-- a comment, <value> & all -->");
        }
    }

    fn text(&mut self, out: &mut String, s: &str) {
        if !s.contains('\r') && self.coin(4) {
            // A CDATA section cannot hold "]]>": split it across two sections.
            out.push_str("<![CDATA[");
            out.push_str(&s.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
            return;
        }
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                // XML parsers turn a literal CR into LF: only a reference keeps it.
                '\r' => out.push_str("&#13;"),
                '>' if self.coin(2) => out.push_str("&gt;"),
                '"' if self.coin(2) => out.push_str("&quot;"),
                '\'' if self.coin(2) => out.push_str("&apos;"),
                c if self.coin(10) => out.push_str(&format!("&#x{:X};", u32::from(c))),
                c if self.coin(10) => out.push_str(&format!("&#{};", u32::from(c))),
                c => out.push(c),
            }
        }
        if self.coin(10) {
            out.push_str("<!---->");
        }
    }

    fn value(&mut self, out: &mut String, v: &Value) {
        out.push_str("<value>");
        match v {
            Value::String(s) if self.coin(3) => {
                // Untyped: a string (XML-RPC's default type); whitespace is content here.
                self.text(out, s);
                out.push_str("</value>");
                return;
            }
            _ => {}
        }
        self.gap(out);
        match v {
            Value::Int(i) => {
                let tag = if self.coin(2) { "int" } else { "i4" };
                let pad = if self.coin(3) { " " } else { "" };
                out.push_str(&format!("<{tag}>{pad}{i}{pad}</{tag}>"));
            }
            Value::Bool(b) => {
                let word = match (b, self.coin(2)) {
                    (true, true) => "1",
                    (true, false) => "true",
                    (false, true) => "0",
                    (false, false) => "false",
                };
                out.push_str(&format!("<boolean>{word}</boolean>"));
            }
            Value::String(s) if s.is_empty() && self.coin(2) => out.push_str("<string/>"),
            Value::String(s) => {
                out.push_str("<string>");
                self.text(out, s);
                out.push_str("</string>");
            }
            Value::Double(d) => out.push_str(&format!("<double> {d:?} </double>")),
            Value::Nil => out.push_str(if self.coin(2) {
                "<nil/>"
            } else {
                "<nil></nil>"
            }),
            Value::Array(items) => {
                out.push_str("<array>");
                self.gap(out);
                out.push_str("<data>");
                for item in items {
                    self.gap(out);
                    self.value(out, item);
                }
                self.gap(out);
                out.push_str("</data>");
                self.gap(out);
                out.push_str("</array>");
            }
            Value::Struct(members) => {
                out.push_str("<struct>");
                for (name, value) in members {
                    self.gap(out);
                    out.push_str("<member>");
                    self.gap(out);
                    out.push_str("<name>");
                    self.text(out, name);
                    out.push_str("</name>");
                    self.gap(out);
                    self.value(out, value);
                    self.gap(out);
                    out.push_str("</member>");
                }
                self.gap(out);
                out.push_str("</struct>");
            }
        }
        self.gap(out);
        out.push_str("</value>");
    }

    fn response(&mut self, v: &Value) -> String {
        let mut out = String::new();
        if self.coin(2) {
            out.push_str("<?xml version='1.0'?>\n");
        }
        out.push_str("<methodResponse>");
        self.gap(&mut out);
        out.push_str("<params>");
        self.gap(&mut out);
        out.push_str("<param>");
        self.gap(&mut out);
        self.value(&mut out, v);
        self.gap(&mut out);
        out.push_str("</param>");
        self.gap(&mut out);
        out.push_str("</params>");
        self.gap(&mut out);
        out.push_str("</methodResponse>");
        self.gap(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Pieces an attacker or a truncating proxy would splice in: tags that open or close
/// values, entities the decoder must refuse (unknown, NUL, beyond Unicode), markup it must
/// skip or refuse (DTDs with entity definitions, processing instructions), types supervisord
/// never sends (base64, dateTime), bytes that are not UTF-8.
const SPLICES: &[&[u8]] = &[
    b"<value>",
    b"</value>",
    b"<array><data>",
    b"</data></array>",
    b"<struct>",
    b"</struct>",
    b"<member><name>",
    b"</name>",
    b"</member>",
    b"<int>",
    b"<i8>9223372036854775808</i8>",
    b"<string>",
    b"</string>",
    b"<base64>aGVsbG8=</base64>",
    b"<dateTime.iso8601>20260101T00:00:00</dateTime.iso8601>",
    b"<nil/>",
    b"<fault>",
    b"&amp;",
    b"&bogus;",
    b"&#0;",
    b"&#xFFFFFFFF;",
    b"&#xD800;",
    b"&",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?pi x?>",
    b"<!DOCTYPE r [<!ENTITY e \"&e;&e;\">]>",
    b"<a xmlns:a='x' a:b='&lt;'>",
    b"\xff\xfe",
    b"\xc3",
    b"\0",
    b"\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Splice { at: usize, piece: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are taken modulo the document's length when applied.
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..SPLICES.len()).prop_map(|(at, piece)| Mutation::Splice { at, piece }),
        (any::<usize>(), 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut doc: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = doc.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *m {
            Mutation::Flip { at: i, byte } if len > 0 => doc[i % len] = byte,
            Mutation::Flip { .. } => {}
            Mutation::Delete { at: i, len: n } => {
                let from = at(i);
                doc.drain(from..(from + n).min(len));
            }
            Mutation::Splice { at: i, piece } => {
                let from = at(i);
                doc.splice(from..from, SPLICES[piece].iter().copied());
            }
            Mutation::Duplicate { at: i, len: n } => {
                let from = at(i);
                let chunk = doc[from..(from + n).min(len)].to_vec();
                doc.splice(from..from, chunk);
            }
            Mutation::Truncate { at: i } => doc.truncate(at(i)),
        }
    }
    doc
}

// ---------------------------------------------------------------------------------------------
// What every decode must satisfy

/// Decodes `body` and checks what holds for any input: no panic (a panic fails the case),
/// bounded time, and an error message that is short and on one line.
fn decode_checked(body: &[u8]) -> Result<Outcome, TestCaseError> {
    let t0 = Instant::now();
    let answer = decode_response(body);
    let took = t0.elapsed();
    prop_assert!(took < SLOW, "{} bytes took {took:?}", body.len());
    Ok(match answer {
        Ok(answer) => Ok(answer),
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
            prop_assert!(
                message.chars().count() <= MAX_MESSAGE,
                "a {}-character error message: {:?}",
                message.chars().count(),
                message.chars().take(200).collect::<String>()
            );
            prop_assert!(
                !message.chars().any(char::is_control),
                "a control character in the error message {message:?}"
            );
            Err(message)
        }
    })
}

/// A decode's answer (a value or a fault), or its error message.
type Outcome = Result<Result<Value, Fault>, String>;

/// [`decode_checked`], and a value decoded from garbage is still within the nesting bound.
fn decode_any(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(Ok(v)) = decode_checked(body)? {
        prop_assert!(depth_of(&v) <= MAX_DEPTH);
    }
    Ok(())
}

fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        Value::Struct(members) => 1 + members.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_props(body in vec(any::<u8>(), 0..4096)) {
        decode_any(&body)?;
    }

    /// Arbitrary bytes after a valid opening, so the decoder gets past the first tag.
    #[test]
    fn arbitrary_bytes_inside_a_value_props(body in vec(any::<u8>(), 0..4096)) {
        let mut doc = b"<methodResponse><params><param><value>".to_vec();
        doc.extend_from_slice(&body);
        decode_any(&doc)?;
    }

    /// Whatever the encoder writes, the decoder reads back.
    #[test]
    fn round_trip_props(v in value()) {
        prop_assert_eq!(decode_checked(response(&v).as_bytes())?, Ok(Ok(v)));
    }

    #[test]
    fn fault_round_trip_props(code in any::<i64>(), string in xml_string()) {
        let answer = decode_checked(fault_response(code, &string).as_bytes())?;
        let fault = answer.expect("a well-formed fault").expect_err("a fault");
        prop_assert_eq!(fault.code, code);
        prop_assert_eq!(fault.string, string);
    }

    /// Every spelling the XML-RPC spec allows (untyped strings, i4, CDATA, character
    /// references, comments, whitespace between elements) means the same value.
    #[test]
    fn lenient_forms_props(v in value(), seed in any::<u64>()) {
        let body = Lenient { seed: seed | 1 }.response(&v);
        prop_assert_eq!(decode_checked(body.as_bytes())?, Ok(Ok(v)), "{}", body);
    }

    /// Valid answers (and faults), damaged: never a panic, never stuck, errors short.
    #[test]
    fn mutated_answers_props(
        v in value(),
        fault in proptest::option::of((any::<i64>(), xml_string())),
        seed in any::<u64>(),
        mutations in vec(mutation(), 1..8),
    ) {
        let body = match fault {
            Some((code, string)) => fault_response(code, &string),
            None => Lenient { seed: seed | 1 }.response(&v),
        };
        decode_any(&mutate(body.into_bytes(), &mutations))?;
    }

    /// Nesting up to MAX_DEPTH decodes; one level more is refused, whatever the mix of arrays
    /// and structs.
    #[test]
    fn nesting_depth_props(kinds in vec(any::<bool>(), 0..(MAX_DEPTH + 40))) {
        let mut v = Value::Int(1);
        for &is_array in kinds.iter().rev() {
            v = if is_array {
                Value::Array(vec![v])
            } else {
                Value::Struct(BTreeMap::from([("m".to_owned(), v)]))
            };
        }
        let answer = decode_checked(response(&v).as_bytes())?;
        if kinds.len() <= MAX_DEPTH {
            prop_assert_eq!(answer, Ok(Ok(v)));
        } else {
            let why = answer.expect_err("too deep");
            prop_assert!(why.contains("nested deeper"), "{}", why);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Answers too large or too deep, through the driver over a real socket

/// The supervisord answer cap (client.rs `MAX_ANSWER`), as the driver's message says it.
const CAP_MESSAGE: &str = "larger than 32 MiB";

/// A fake supervisord on 127.0.0.1 that answers every request with `head` then `body_len`
/// bytes made by repeating `filler`, `tail` (framing as `chunked` says), stopping early when
/// the client hangs up. Returns the port.
async fn hostile_supervisord(
    head: &'static [u8],
    filler: &'static [u8],
    body_len: u64,
    tail: &'static [u8],
    chunked: bool,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                // The request (small: one XML-RPC call); its end does not matter here.
                let _ = s.read(&mut buf).await;
                let total = head.len() as u64 + body_len + tail.len() as u64;
                let framing = if chunked {
                    "Transfer-Encoding: chunked\r\n".to_owned()
                } else {
                    format!("Content-Length: {total}\r\n")
                };
                let status = format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n{framing}\r\n");
                if s.write_all(status.as_bytes()).await.is_err() {
                    return;
                }
                let chunk: Vec<u8> = filler.iter().copied().cycle().take(64 * 1024).collect();
                let send = |data: &[u8]| -> Vec<u8> {
                    if chunked {
                        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
                        framed.extend_from_slice(data);
                        framed.extend_from_slice(b"\r\n");
                        framed
                    } else {
                        data.to_vec()
                    }
                };
                if s.write_all(&send(head)).await.is_err() {
                    return;
                }
                let mut sent = 0u64;
                let framed_chunk = send(&chunk);
                while sent < body_len {
                    let n = (body_len - sent).min(chunk.len() as u64);
                    let ok = if n == chunk.len() as u64 {
                        s.write_all(&framed_chunk).await
                    } else {
                        s.write_all(&send(&chunk[..n as usize])).await
                    };
                    if ok.is_err() {
                        return; // the client gave up: what it should do
                    }
                    sent += n;
                }
                let _ = s.write_all(&send(tail)).await;
                if chunked {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
                let _ = s.flush().await;
            });
        }
    });
    (port, server)
}

fn driver(port: u16) -> std::sync::Arc<Supervisord> {
    Supervisord::new(
        &SupervisordConfig {
            name: "hostile".to_owned(),
            url: SupervisordUrl::Http {
                host: "127.0.0.1".to_owned(),
                port,
                path: "/RPC2".to_owned(),
            },
            username: None,
            password: None,
            tls: None,
            poll_interval: Duration::from_secs(3600),
            // Long enough that the answer cap, not the timeout, ends the call on a loaded machine.
            timeout: Duration::from_secs(60),
        },
        vec!["app0".to_owned()],
    )
}

/// The driver's error for one call to a fake supervisord: `reachable` and `observe` both read
/// a whole answer. Bounded by the config's timeout (60 s), and by this test's own 90 s.
async fn call_error(port: u16) -> (SupervisorError, Duration) {
    let sup = driver(port);
    let t0 = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(90), sup.observe())
        .await
        .expect("the driver's own timeout bounds a call");
    (result.expect_err("a hostile answer"), t0.elapsed())
}

const OPEN_STRING: &[u8] = b"<?xml version=\"1.0\"?><methodResponse><params><param><value><string>";
const CLOSE_STRING: &[u8] = b"</string></value></param></params></methodResponse>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_answer_is_refused_not_held() {
    for chunked in [false, true] {
        let (port, server) =
            hostile_supervisord(OPEN_STRING, b"a", 1 << 30, CLOSE_STRING, chunked).await;
        let (e, took) = call_error(port).await;
        match &e {
            SupervisorError::Other(msg) => assert!(msg.contains(CAP_MESSAGE), "{msg}"),
            other => panic!("chunked {chunked}: {other:?}"),
        }
        // Read at loopback speed up to the cap, then dropped: far from a gigabyte's worth.
        assert!(
            took < Duration::from_secs(30),
            "chunked {chunked}: {took:?}"
        );
        assert!(e.to_string().len() <= MAX_MESSAGE + 200, "{e}");
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_answer_is_refused() {
    const DEPTH: u64 = 100_000;
    const OPEN: &[u8] = b"<array><data><value>";
    const CLOSE: &[u8] = b"</value></data></array>";
    // Not closed: the decoder must stop at MAX_DEPTH + 1, long before the end.
    let head: &'static [u8] = b"<?xml version=\"1.0\"?><methodResponse><params><param><value>";
    let (port, server) =
        hostile_supervisord(head, OPEN, DEPTH * OPEN.len() as u64, CLOSE, false).await;
    let (e, took) = call_error(port).await;
    match &e {
        SupervisorError::Other(msg) => assert!(msg.contains("nested deeper"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(30), "{took:?}");
    server.abort();
}

/// Answers just under the cap, in the shapes that cost the decoder most per byte (many tiny
/// values, a long run of entities, a huge tag name, many struct members): each is decoded or
/// refused in bounded time, and a refusal's message stays short.
#[test]
fn large_answers_under_the_cap_are_decoded_in_bounded_time() {
    const SIZE: usize = 4 << 20;
    let fill = |open: &str, unit: &str, close: &str| {
        let mut s = String::with_capacity(SIZE + 256);
        s.push_str(open);
        while s.len() + unit.len() + close.len() < SIZE {
            s.push_str(unit);
        }
        s.push_str(close);
        s
    };
    let params = |inner: &str| {
        format!(
            "<methodResponse><params><param><value>{inner}</value></param></params></methodResponse>"
        )
    };
    let bodies = [
        (
            "many tiny values",
            fill(
                "<methodResponse><params><param><value><array><data>",
                "<value/>",
                "</data></array></value></param></params></methodResponse>",
            ),
        ),
        (
            "a run of entities",
            fill(
                "<methodResponse><params><param><value><string>",
                "&amp;&#65;",
                "</string></value></param></params></methodResponse>",
            ),
        ),
        (
            "one struct, many members",
            fill(
                "<methodResponse><params><param><value><struct>",
                "<member><name>n</name><value><i4>1</i4></value></member>",
                "</struct></value></param></params></methodResponse>",
            ),
        ),
        (
            "a huge tag name",
            params(&format!("<{}/>", "x".repeat(SIZE))),
        ),
        (
            "a huge entity name",
            params(&format!("<string>&{};</string>", "x".repeat(SIZE))),
        ),
        (
            "a huge mismatched end tag",
            params(&format!("<string></{}>", "x".repeat(SIZE))),
        ),
        (
            "a huge int",
            params(&format!("<int>{}</int>", "9".repeat(SIZE))),
        ),
        (
            "a huge text where a tag belongs",
            format!("<methodResponse>{}</methodResponse>", "x".repeat(SIZE)),
        ),
    ];
    for (what, body) in bodies {
        let t0 = Instant::now();
        let answer = decode_response(body.as_bytes());
        let took = t0.elapsed();
        // Linear: a debug build on a loaded machine needs a few seconds for 4 MiB at worst.
        assert!(took < Duration::from_secs(60), "{what}: {took:?}");
        if let Err(e) = answer {
            let message = e.to_string();
            assert!(
                message.chars().count() <= MAX_MESSAGE,
                "{what}: a {}-character message",
                message.len()
            );
            assert!(
                !message.chars().any(char::is_control),
                "{what}: {message:?}"
            );
        }
    }
}
