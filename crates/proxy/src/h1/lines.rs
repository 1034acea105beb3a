//! A head's field lines as the peer wrote them: which of them end in CRLF, and copying the
//! kept ones through in runs, so that a head's rewriting costs a copy per run of kept lines
//! rather than four per field (name, `: `, value, CRLF), plus a comparison per hop-by-hop
//! name per field (the fields to drop are marked once, while the head is parsed).

use super::request::Field;

/// A set of a head's fields, by their index. Heads hold at most 100 fields
/// (`request::MAX_FIELDS`, `response::MAX_FIELDS`), which fit.
pub(crate) type FieldSet = u128;

/// The bit of field `i` (`i` < 128: see [`FieldSet`]).
pub(crate) fn bit(i: usize) -> FieldSet {
    1 << i
}

/// Whether every line of the head `buf[..len]` (`fields` parsed from it by httparse, which
/// takes a bare LF as a line's end as well as CRLF) ends in CRLF. Only empty lines may come
/// before the start line (`start` is where it begins), and httparse splits lines at LF and
/// refuses a CR elsewhere: so the line ends are just before each field's name, before `start`,
/// and the head's last four bytes.
pub(crate) fn end_in_crlf(
    buf: &[u8],
    start: usize,
    len: usize,
    name_starts: impl IntoIterator<Item = usize>,
) -> bool {
    buf[..start].chunks(2).all(|l| l == b"\r\n")
        && buf[..len].ends_with(b"\r\n\r\n")
        && name_starts
            .into_iter()
            .all(|at| buf[..at].ends_with(b"\r\n"))
}

/// Where the line after the start line begins: at the first field's name, or the blank line.
pub(crate) fn after_start_line(len: usize, fields: &[Field]) -> usize {
    fields.first().map_or(len - 2, |f| f.name.start)
}

/// Appends the field lines of the head `buf[..len]` but those in `dropped` to `out` as they
/// are in `buf`, each run of kept lines in one copy. The head's lines must all end in CRLF
/// ([`end_in_crlf`]): a field's line runs from its name to the next one's, the last one's to
/// the blank line.
pub(crate) fn copy_kept(
    buf: &[u8],
    len: usize,
    fields: &[Field],
    dropped: FieldSet,
    out: &mut Vec<u8>,
) {
    let line_start = |i: usize| fields.get(i).map_or(len - 2, |f| f.name.start);
    let mut run: Option<usize> = None;
    for i in 0..fields.len() {
        let kept = dropped & bit(i) == 0;
        match (kept, run) {
            (true, None) => run = Some(line_start(i)),
            (false, Some(start)) => {
                out.extend_from_slice(&buf[start..line_start(i)]);
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        out.extend_from_slice(&buf[start..line_start(fields.len())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> (usize, Vec<Field>) {
        let mut raw = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut raw);
        let len = resp.parse(text.as_bytes()).unwrap().unwrap();
        let at = |s: &[u8]| super::super::request::span(text.as_bytes(), s);
        let fields = resp
            .headers
            .iter()
            .map(|h| Field {
                name: at(h.name.as_bytes()),
                value: at(h.value),
            })
            .collect();
        (len, fields)
    }

    #[test]
    fn line_ends() {
        for (text, crlf) in [
            ("HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 200 OK\nA: b\r\n\r\n", false),
            ("HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", false),
            ("HTTP/1.1 200 OK\r\nA: b\r\nC: d\n\r\n", false),
            ("HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\n", false),
            ("HTTP/1.1 200 OK\n\n", false),
        ] {
            let (len, f) = fields(text);
            let starts = f.iter().map(|f| f.name.start);
            assert_eq!(
                end_in_crlf(text.as_bytes(), 0, len, starts),
                crlf,
                "{text:?}"
            );
        }
        let text = "\r\n\nGET / HTTP/1.1\r\n\r\n";
        assert!(!end_in_crlf(text.as_bytes(), 3, text.len(), []));
        let text = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert!(end_in_crlf(text.as_bytes(), 4, text.len(), []));
    }

    #[test]
    fn runs_of_kept_lines() {
        let text = "HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nC:  3 \r\nD: 4\r\n\r\n";
        let (len, f) = fields(text);
        let kept = |dropped: FieldSet| {
            let mut out = Vec::new();
            copy_kept(text.as_bytes(), len, &f, dropped, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(kept(0), "A: 1\r\nB:2\r\nC:  3 \r\nD: 4\r\n");
        assert_eq!(kept(bit(1) | bit(2)), "A: 1\r\nD: 4\r\n");
        assert_eq!(kept(bit(0) | bit(3)), "B:2\r\nC:  3 \r\n");
        assert_eq!(kept(bit(0) | bit(2)), "B:2\r\nD: 4\r\n");
        assert_eq!(kept(0b1111), "");
    }
}
