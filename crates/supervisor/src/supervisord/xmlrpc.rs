//! The XML-RPC codec: method calls out, method responses (or faults) in.
//!
//! Hand-written over quick-xml's tokenizer rather than `dxr` 0.9, because:
//! - supervisord speaks a tiny subset (string, int/i4, boolean, struct, array, fault), and its
//!   `system.multicall` answers are not the standard shape (a bare value per call instead of a
//!   one-element array), so dxr's typed layer would be bypassed anyway;
//! - decoding must not be able to crash rouse on any answer: this parser bounds nesting
//!   ([`MAX_DEPTH`]) instead of recursing as deep as the answer goes, as a serde deserializer
//!   does, and reports every surprise as a [`DecodeError`];
//! - dxr needs Rust 1.88 and pulls serde, winnow and quick-xml's serde layer; this needs only
//!   quick-xml's reader (whose 0.38 line keeps the workspace's rust-version, 1.85).
//!
//! Integers are decoded as `i64` whatever their tag (`int`, `i4`, `i8`), so a server that
//! exceeds XML-RPC's 32 bits is still understood; beyond `i64` the answer is malformed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;

/// Deepest nesting of values (struct in array in struct ...) accepted in an answer.
/// supervisord's deepest is 2 (an array of structs, or a multicall's array of those).
pub const MAX_DEPTH: usize = 32;

/// An XML-RPC value, as far as supervisord uses them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    String(String),
    Double(f64),
    Array(Vec<Value>),
    Struct(BTreeMap<String, Value>),
    /// `<nil/>` (an extension; Python's xmlrpc emits it with allow_none).
    Nil,
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A struct's member, if this is a struct and it has one.
    pub fn member(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(m) => m.get(name),
            _ => None,
        }
    }

    /// `"string"`, `"int"`, ...: for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Double(_) => "double",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
            Value::Nil => "nil",
        }
    }
}

/// An XML-RPC fault: supervisord's `faultCode` (see [`codes`]) and `faultString`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {code}: {string}")]
pub struct Fault {
    pub code: i64,
    pub string: String,
}

/// supervisord's fault codes that rouse reads (SV:xmlrpc.py `Faults`).
pub mod codes {
    pub const SHUTDOWN_STATE: i64 = 6;
    pub const BAD_NAME: i64 = 10;
    pub const NO_FILE: i64 = 20;
    pub const NOT_EXECUTABLE: i64 = 21;
    pub const FAILED: i64 = 30;
    pub const ABNORMAL_TERMINATION: i64 = 40;
    pub const SPAWN_ERROR: i64 = 50;
    pub const ALREADY_STARTED: i64 = 60;
    pub const NOT_RUNNING: i64 = 70;
}

/// The answer is not an XML-RPC response we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// Longest error message, in characters (then "..."): messages end up in logs, `/status` and
/// `rouse check --online`, and must not carry megabytes of a hostile answer there.
const MAX_MESSAGE: usize = 300;

fn bad<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(printable(&why.into())))
}

/// One line, bounded: control characters escaped (an answer's `\n` or `\u{5}` in a tag or
/// entity name would otherwise split or garble a log line), the rest cut at [`MAX_MESSAGE`].
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_MESSAGE + 8));
    for (n, c) in s.chars().enumerate() {
        if n == MAX_MESSAGE {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// The body of a `methodCall`.
pub fn encode_call(method: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    escape_into(&mut out, method);
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        encode_value(&mut out, p);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// A `system.multicall` of `calls` (method, params), as one call.
pub fn multicall_params(calls: &[(&str, Vec<Value>)]) -> Vec<Value> {
    let calls = calls
        .iter()
        .map(|(method, params)| {
            Value::Struct(BTreeMap::from([
                ("methodName".to_owned(), Value::str(*method)),
                ("params".to_owned(), Value::Array(params.clone())),
            ]))
        })
        .collect();
    vec![Value::Array(calls)]
}

/// Splits a `system.multicall` answer into one result per call. supervisord answers each call
/// with its bare value, or with a `{faultCode, faultString}` struct (not the standard
/// one-element array), so that is what this reads.
pub fn multicall_results(
    answer: Value,
    expected: usize,
) -> Result<Vec<Result<Value, Fault>>, DecodeError> {
    let Value::Array(items) = answer else {
        return bad(format!(
            "system.multicall answered a {}, not an array",
            answer.kind()
        ));
    };
    if items.len() != expected {
        return bad(format!(
            "system.multicall answered {} results for {expected} calls",
            items.len()
        ));
    }
    Ok(items
        .into_iter()
        .map(|item| match fault_of(&item) {
            Some(fault) => Err(fault),
            None => Ok(item),
        })
        .collect())
}

/// A `{faultCode: int, faultString: string}` struct as a fault.
fn fault_of(v: &Value) -> Option<Fault> {
    let Value::Struct(m) = v else { return None };
    if m.len() != 2 {
        return None;
    }
    Some(Fault {
        code: m.get("faultCode")?.as_int()?,
        string: m.get("faultString")?.as_str()?.to_owned(),
    })
}

fn encode_value(out: &mut String, v: &Value) {
    out.push_str("<value>");
    match v {
        Value::Int(i) => {
            let _ = write!(out, "<int>{i}</int>");
        }
        Value::Bool(b) => {
            let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
        }
        Value::String(s) => {
            out.push_str("<string>");
            escape_into(out, s);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d:?}</double>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                encode_value(out, item);
            }
            out.push_str("</data></array>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (name, value) in members {
                out.push_str("<member><name>");
                escape_into(out, name);
                out.push_str("</name>");
                encode_value(out, value);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>");
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A literal CR would be turned into LF by the server's XML parser.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes a `methodResponse`: the value, or the fault the server answered.
pub fn decode_response(body: &[u8]) -> Result<Result<Value, Fault>, DecodeError> {
    let mut p = Parser::new(body);
    p.open("methodResponse")?;
    let answer = match p.next_tag()? {
        Tok::Open(tag) if tag == "params" => {
            p.open("param")?;
            p.open("value")?;
            let v = p.value(0)?;
            p.close("param")?;
            p.close("params")?;
            Ok(v)
        }
        Tok::Open(tag) if tag == "fault" => {
            p.open("value")?;
            let v = p.value(0)?;
            p.close("fault")?;
            match fault_of(&v) {
                Some(f) => Err(f),
                None => return bad("a fault without an int faultCode and a string faultString"),
            }
        }
        other => return bad(format!("expected <params> or <fault>, found {other}")),
    };
    p.close("methodResponse")?;
    match p.next_tag()? {
        Tok::Eof => Ok(answer),
        other => bad(format!("{other} after </methodResponse>")),
    }
}

enum Tok {
    Open(String),
    Close(String),
    Text(String),
    Eof,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Open(t) => write!(f, "<{}>", short(t)),
            Tok::Close(t) => write!(f, "</{}>", short(t)),
            Tok::Text(t) => write!(f, "text {:?}", short(t)),
            Tok::Eof => f.write_str("the end of the answer"),
        }
    }
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(body: &'a [u8]) -> Parser<'a> {
        let mut reader = Reader::from_reader(body);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        Parser { reader }
    }

    /// The next token; text comes in pieces (entities, CDATA), which callers concatenate.
    fn next(&mut self) -> Result<Tok, DecodeError> {
        loop {
            let event = match self.reader.read_event() {
                Ok(e) => e,
                Err(e) => {
                    return bad(format!(
                        "bad XML at byte {}: {e}",
                        self.reader.error_position()
                    ));
                }
            };
            return Ok(match event {
                // expand_empty_elements turns <x/> into Start + End.
                Event::Start(e) | Event::Empty(e) => Tok::Open(tag_name(e.local_name().as_ref())),
                Event::End(e) => Tok::Close(tag_name(e.local_name().as_ref())),
                Event::Text(t) => match t.xml10_content() {
                    Ok(s) => Tok::Text(s.into_owned()),
                    Err(e) => return bad(format!("undecodable text: {e}")),
                },
                Event::CData(t) => match t.decode() {
                    Ok(s) => Tok::Text(s.into_owned()),
                    Err(e) => return bad(format!("undecodable CDATA: {e}")),
                },
                Event::GeneralRef(r) => match r.resolve_char_ref() {
                    Ok(Some(c)) => Tok::Text(c.to_string()),
                    Ok(None) => {
                        let name = match r.decode() {
                            Ok(n) => n,
                            Err(e) => return bad(format!("undecodable entity: {e}")),
                        };
                        match resolve_xml_entity(&name) {
                            Some(s) => Tok::Text(s.to_owned()),
                            None => return bad(format!("unknown entity &{};", short(&name))),
                        }
                    }
                    Err(e) => return bad(format!("bad character reference: {e}")),
                },
                Event::Eof => Tok::Eof,
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => continue,
            });
        }
    }

    /// The next tag (or the end), skipping whitespace; other text is an error.
    fn next_tag(&mut self) -> Result<Tok, DecodeError> {
        loop {
            match self.next()? {
                Tok::Text(t) if t.trim().is_empty() => continue,
                Tok::Text(t) => return bad(format!("unexpected {}", Tok::Text(t))),
                tok => return Ok(tok),
            }
        }
    }

    fn open(&mut self, want: &str) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tok::Open(tag) if tag == want => Ok(()),
            other => bad(format!("expected <{want}>, found {other}")),
        }
    }

    fn close(&mut self, want: &str) -> Result<(), DecodeError> {
        match self.next_tag()? {
            Tok::Close(tag) if tag == want => Ok(()),
            other => bad(format!("expected </{want}>, found {other}")),
        }
    }

    /// All text up to `</tag>` (no child elements allowed).
    fn text(&mut self, tag: &str) -> Result<String, DecodeError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                Tok::Text(t) => text.push_str(&t),
                Tok::Close(t) if t == tag => return Ok(text),
                other => return bad(format!("expected text in <{tag}>, found {other}")),
            }
        }
    }

    /// A value's content, after its `<value>` and up to and including its `</value>`.
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return bad(format!("values nested deeper than {MAX_DEPTH}"));
        }
        let mut text = String::new();
        let kind = loop {
            match self.next()? {
                Tok::Text(t) => text.push_str(&t),
                // No type element: a string (XML-RPC's default type).
                Tok::Close(t) if t == "value" => return Ok(Value::String(text)),
                Tok::Open(kind) if text.trim().is_empty() => break kind,
                other => return bad(format!("expected a value, found {other}")),
            }
        };
        let v = match kind.as_str() {
            "string" => Value::String(self.text("string")?),
            "int" | "i4" | "i8" => {
                let t = self.text(&kind)?;
                match t.trim().parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(e) => return bad(format!("bad <{kind}> {:?}: {e}", short(&t))),
                }
            }
            "boolean" => {
                let t = self.text("boolean")?;
                match t.trim() {
                    "1" | "true" => Value::Bool(true),
                    "0" | "false" => Value::Bool(false),
                    other => return bad(format!("bad <boolean> {:?}", short(other))),
                }
            }
            "double" => {
                let t = self.text("double")?;
                match t.trim().parse::<f64>() {
                    Ok(d) => Value::Double(d),
                    Err(e) => return bad(format!("bad <double> {:?}: {e}", short(&t))),
                }
            }
            "nil" => {
                self.close("nil")?;
                Value::Nil
            }
            "array" => self.array(depth)?,
            "struct" => self.structure(depth)?,
            other => return bad(format!("unsupported value type <{}>", short(other))),
        };
        self.close("value")?;
        Ok(v)
    }

    /// After `<array>`, up to and including `</array>`.
    fn array(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.open("data")?;
        let mut items = Vec::new();
        loop {
            match self.next_tag()? {
                Tok::Open(t) if t == "value" => items.push(self.value(depth + 1)?),
                Tok::Close(t) if t == "data" => break,
                other => return bad(format!("expected <value> or </data>, found {other}")),
            }
        }
        self.close("array")?;
        Ok(Value::Array(items))
    }

    /// After `<struct>`, up to and including `</struct>`.
    fn structure(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let mut members = BTreeMap::new();
        loop {
            match self.next_tag()? {
                Tok::Open(t) if t == "member" => {
                    self.open("name")?;
                    let name = self.text("name")?;
                    self.open("value")?;
                    let value = self.value(depth + 1)?;
                    self.close("member")?;
                    members.insert(name, value);
                }
                Tok::Close(t) if t == "struct" => return Ok(Value::Struct(members)),
                other => return bad(format!("expected <member> or </struct>, found {other}")),
            }
        }
    }
}

fn tag_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("fixtures/", $name, ".xml")).as_slice()
        };
    }

    fn ok(body: &[u8]) -> Value {
        decode_response(body).unwrap().unwrap()
    }

    fn fault(body: &[u8]) -> Fault {
        decode_response(body).unwrap().unwrap_err()
    }

    fn malformed(body: &[u8]) -> String {
        match decode_response(body) {
            Err(DecodeError(why)) => why,
            Ok(answer) => panic!("decoded {answer:?}"),
        }
    }

    #[test]
    fn real_get_state() {
        let v = ok(fixture!("get_state"));
        assert_eq!(v.member("statecode"), Some(&Value::Int(1)));
        assert_eq!(v.member("statename"), Some(&Value::str("RUNNING")));
    }

    #[test]
    fn real_start_answers_true() {
        assert_eq!(ok(fixture!("start_ok")), Value::Bool(true));
    }

    #[test]
    fn real_faults() {
        let cases: [(&[u8], i64, &str); 5] = [
            (
                fixture!("fault_already_started"),
                60,
                "ALREADY_STARTED: app0",
            ),
            (fixture!("fault_bad_name"), 10, "BAD_NAME: nosuch"),
            (
                fixture!("fault_no_file"),
                20,
                "NO_FILE: can't find command '/nonexistent/thing'",
            ),
            (fixture!("fault_not_running"), 70, "NOT_RUNNING: g:b"),
            (fixture!("fault_unknown_method"), 1, "UNKNOWN_METHOD"),
        ];
        for (body, code, string) in cases {
            assert_eq!(
                fault(body),
                Fault {
                    code,
                    string: string.to_owned()
                }
            );
        }
    }

    #[test]
    fn real_all_process_info() {
        let v = ok(fixture!("all_info"));
        let all = v.as_array().unwrap();
        assert_eq!(all.len(), 4);
        let a = &all[2];
        assert_eq!(a.member("name"), Some(&Value::str("a")));
        assert_eq!(a.member("group"), Some(&Value::str("g")));
        assert_eq!(a.member("state"), Some(&Value::Int(10)));
        assert_eq!(a.member("pid"), Some(&Value::Int(16564)));
        assert_eq!(a.member("description"), Some(&Value::str("")));
        assert_eq!(
            all[1].member("description"),
            Some(&Value::str("Not started"))
        );
        assert_eq!(a.member("start"), Some(&Value::Int(1_795_613_863)));
    }

    #[test]
    fn real_process_infos() {
        let fatal = ok(fixture!("info_fatal"));
        assert_eq!(fatal.member("statename"), Some(&Value::str("FATAL")));
        assert_eq!(
            fatal.member("spawnerr"),
            Some(&Value::str(
                "Exited too quickly (process log may have details)"
            ))
        );
        let running = ok(fixture!("info_running"));
        assert_eq!(running.member("state"), Some(&Value::Int(20)));
        let exited = ok(fixture!("info_exited"));
        assert_eq!(exited.member("state"), Some(&Value::Int(100)));
        let group = ok(fixture!("info_group"));
        assert_eq!(group.member("group"), Some(&Value::str("g")));
    }

    #[test]
    fn real_multicall() {
        let results = multicall_results(ok(fixture!("multicall")), 2).unwrap();
        assert_eq!(
            results[0].as_ref().unwrap().member("statename"),
            Some(&Value::str("RUNNING"))
        );
        assert_eq!(
            results[1],
            Err(Fault {
                code: 10,
                string: "BAD_NAME: nosuch".to_owned()
            })
        );
        assert!(multicall_results(ok(fixture!("multicall")), 3).is_err());
        assert!(multicall_results(Value::Int(1), 1).is_err());
    }

    #[test]
    fn encodes_calls() {
        let body = encode_call(
            "supervisor.startProcess",
            &[Value::str("g:a<&>\r"), Value::Bool(false)],
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\"?>\n<methodCall><methodName>supervisor.startProcess\
             </methodName><params><param><value><string>g:a&lt;&amp;&gt;&#13;</string></value>\
             </param><param><value><boolean>0</boolean></value></param></params></methodCall>\n"
        );
        let multi = encode_call(
            "system.multicall",
            &multicall_params(&[("supervisor.getState", vec![])]),
        );
        assert!(multi.contains(
            "<array><data><value><struct><member><name>methodName</name><value><string>\
             supervisor.getState</string></value></member><member><name>params</name>\
             <value><array><data></data></array></value></member></struct></value></data>\
             </array>"
        ));
    }

    /// Whatever we encode, we decode back (as a response).
    #[test]
    fn round_trip() {
        let v = Value::Array(vec![
            Value::Int(-7),
            Value::Int(i64::MAX),
            Value::Bool(true),
            Value::str(" spaced \n & <tagged> \"quoted\" 'é' \t"),
            Value::str(""),
            Value::Double(1.5),
            Value::Nil,
            Value::Struct(BTreeMap::from([
                ("a".to_owned(), Value::Array(vec![])),
                ("b & c".to_owned(), Value::Struct(BTreeMap::new())),
            ])),
        ]);
        let call = encode_call("m", std::slice::from_ref(&v));
        let body = call
            .replace(
                "<methodCall><methodName>m</methodName><params>",
                "<methodResponse><params>",
            )
            .replace("</params></methodCall>", "</params></methodResponse>");
        assert_eq!(ok(body.as_bytes()), v);
    }

    #[test]
    fn lenient_forms() {
        // Untyped value = string; empty elements; entities; CDATA; comments; a namespace.
        let body = br#"<?xml version="1.0"?><!-- hi --><methodResponse><params><param>
            <value><array><data>
              <value>plain &amp; &#65;&#x42;</value>
              <value/>
              <value><string/></value>
              <value><string><![CDATA[<raw>]]></string></value>
              <value><i4> 42 </i4></value>
              <value><ex:nil xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"/></value>
              <value><boolean>false</boolean></value>
            </data></array></value>
        </param></params></methodResponse>"#;
        assert_eq!(
            ok(body),
            Value::Array(vec![
                Value::str("plain & AB"),
                Value::str(""),
                Value::str(""),
                Value::str("<raw>"),
                Value::Int(42),
                Value::Nil,
                Value::Bool(false),
            ])
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let full = fixture!("all_info").trim_ascii_end();
        // Every truncation of a real answer.
        for n in 0..full.len() {
            assert!(decode_response(&full[..n]).is_err(), "truncated at {n}");
        }
        let cases: &[&[u8]] = &[
            b"",
            b"not xml at all",
            b"<html><body>502 Bad Gateway</body></html>",
            b"<methodResponse></methodResponse>",
            b"<methodResponse><params></params></methodResponse>",
            b"<methodResponse><params><param><value><int>99999999999999999999999</int></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><int>12abc</int></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><int></int></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><double>x</double></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><dateTime.iso8601>20260101T00:00:00</dateTime.iso8601></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><string>a<b/></string></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value>text<int>1</int></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><int>1</int></valu></param></params></methodResponse>",
            b"<methodResponse><params><param><value><string>&bogus;</string></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><string>&#0;</string></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><string>\xff\xfe</string></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><struct><member><value><int>1</int></value></member></struct></value></param></params></methodResponse>",
            b"<methodResponse><params><param><value><array><value><int>1</int></value></array></value></param></params></methodResponse>",
            b"<methodResponse><fault><value><int>1</int></value></fault></methodResponse>",
            b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><string>x</string></value></member><member><name>faultString</name><value>y</value></member></struct></value></fault></methodResponse>",
            b"<methodResponse><params><param><value><int>1</int></value></param></params></methodResponse><extra/>",
            b"<methodResponse><params><param><value><int>1</int></value></param></params></methodResponse>junk",
        ];
        for body in cases {
            let why = malformed(body);
            assert!(!why.is_empty());
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let depth = 100_000;
        let mut body = String::from("<methodResponse><params><param><value>");
        for _ in 0..depth {
            body.push_str("<array><data><value>");
        }
        body.push_str("<int>1</int>");
        for _ in 0..depth {
            body.push_str("</value></data></array>");
        }
        body.push_str("</value></param></params></methodResponse>");
        assert!(malformed(body.as_bytes()).contains("nested deeper"));

        // Up to the limit is fine.
        let mut body = String::from("<methodResponse><params><param><value>");
        for _ in 0..MAX_DEPTH {
            body.push_str("<array><data><value>");
        }
        body.push_str("<int>1</int>");
        for _ in 0..MAX_DEPTH {
            body.push_str("</value></data></array>");
        }
        body.push_str("</value></param></params></methodResponse>");
        assert!(decode_response(body.as_bytes()).unwrap().is_ok());
    }

    #[test]
    fn huge_and_odd_ints() {
        let int = |t: &str| {
            decode_response(
                format!(
                    "<methodResponse><params><param><value><int>{t}</int></value></param>\
                     </params></methodResponse>"
                )
                .as_bytes(),
            )
        };
        assert_eq!(int("4294967296").unwrap(), Ok(Value::Int(1 << 32)));
        assert_eq!(
            int("-9223372036854775808").unwrap(),
            Ok(Value::Int(i64::MIN))
        );
        assert!(int("9223372036854775808").is_err());
        assert!(int(&"9".repeat(10_000)).is_err());
        assert!(int("1e3").is_err());
    }

    /// A poor man's fuzzer: flip, drop and duplicate bytes of real answers; nothing may panic.
    #[test]
    fn mangled_answers_never_panic() {
        let bodies: [&[u8]; 4] = [
            fixture!("all_info"),
            fixture!("multicall"),
            fixture!("fault_bad_name"),
            fixture!("get_state"),
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for body in bodies {
            for _ in 0..2_000 {
                let mut b = body.to_vec();
                for _ in 0..1 + rand() % 4 {
                    let at = (rand() as usize) % b.len().max(1);
                    match rand() % 4 {
                        0 if !b.is_empty() => b[at] = rand() as u8,
                        1 if !b.is_empty() => {
                            b.remove(at);
                        }
                        2 => b.insert(at.min(b.len()), b"<>/&;"[(rand() % 5) as usize]),
                        _ => {
                            let end = (at + (rand() % 64) as usize).min(b.len());
                            let chunk = b[at.min(end)..end].to_vec();
                            b.splice(at.min(end)..at.min(end), chunk);
                        }
                    }
                }
                let _ = decode_response(&b);
            }
        }
    }
}
