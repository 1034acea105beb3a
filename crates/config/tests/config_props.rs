//! Whatever the input, reading a config returns a config or errors, never panics, and every
//! error line says where: `FILE:LINE:COL: message`, one line each. Mangled versions of the
//! examples reach far more code paths than hand-written bad configs.
//!
//! Cases default to proptest's 256; `PROPTEST_CASES` raises it for long runs (`bench/fuzz.sh`).

use std::path::Path;

use proptest::prelude::*;

/// Pieces that break TOML and rouse's rules in interesting ways: structure, quoting, escapes,
/// control characters, huge and negative numbers, huge durations and sizes, credentials.
const PIECES: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\n",
    "\r",
    ",",
    "{",
    "}",
    ".",
    "0",
    "-1",
    "\"\"",
    "true",
    "1e999",
    "\"0s\"",
    "\"none\"",
    "\"x:0\"",
    "\"/\"",
    "é",
    "#",
    "server",
    "upstream",
    ":",
    " ",
    "\\n",
    "\\u001b",
    "\"a\\nb\"",
    "\"400000000000y\"",
    "\"9999999TiB\"",
    "99999999999999999999",
    "\"http://u:secret@h:1/RPC2\"",
    "\"\\u0000\"",
    "\t",
];

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut sources: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    sources.sort();
    sources
}

#[derive(Debug, Clone)]
enum Edit {
    /// Drop up to `len` characters at a fraction of the text.
    Delete {
        at: f64,
        len: usize,
    },
    Insert {
        at: f64,
        piece: usize,
    },
    /// Repeat one line somewhere else (duplicate keys and tables).
    CopyLine {
        from: f64,
        to: f64,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0f64, 1..12usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (0.0..1.0f64, 0..PIECES.len()).prop_map(|(at, piece)| Edit::Insert { at, piece }),
        (0.0..1.0f64, 0.0..1.0f64).prop_map(|(from, to)| Edit::CopyLine { from, to }),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
        match *edit {
            Edit::Delete { at: f, len } => {
                let start = at(f, chars.len());
                let end = (start + len).min(chars.len());
                chars.drain(start..end);
            }
            Edit::Insert { at: f, piece } => {
                let start = at(f, chars.len());
                chars.splice(start..start, PIECES[piece].chars());
            }
            Edit::CopyLine { from, to } => {
                let text: String = chars.iter().collect();
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                let line = lines[at(from, lines.len().saturating_sub(1))].to_owned();
                let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
                out.insert(at(to, out.len()), line);
                chars = out.concat().chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

/// `fuzz.toml:LINE:COL: ` with both numbers at least 1.
fn positioned(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("fuzz.toml:") else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let number = |p: Option<&str>| {
        p.and_then(|p| p.parse::<usize>().ok())
            .is_some_and(|n| n >= 1)
    };
    number(parts.next()) && number(parts.next()) && parts.next().is_some_and(|m| m.starts_with(' '))
}

proptest! {
    #[test]
    fn mangled_examples_give_a_config_or_positioned_one_line_errors(
        source in 0..examples().len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let text = apply(&examples()[source], &edits);
        if let Err(errors) = rouse_config::parse("fuzz.toml", &text) {
            prop_assert!(!errors.errors.is_empty());
            let shown = errors.to_string();
            prop_assert_eq!(shown.lines().count(), errors.errors.len(), "{}", shown);
            for line in shown.lines() {
                prop_assert!(positioned(line), "{}\n---\n{}", line, text);
                prop_assert!(!line.contains("secret"), "password shown: {}", line);
            }
        }
    }
}
