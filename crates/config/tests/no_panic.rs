//! Whatever the input, parsing returns errors and never panics. Mangled versions of the examples
//! reach far more code paths than hand-written bad configs.

use std::path::Path;

/// A small deterministic generator: the test must fail the same way every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "\"", "'", "[", "]", "[[", "]]", "=", "\n", ",", "{", "}", ".", "0", "-1", "\"\"", "true",
    "1e999", "\"0s\"", "\"none\"", "\"x:0\"", "\"/\"", "é", "#", "server", "upstream", ":", " ",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 if at < chars.len() => {
                let end = (at + 1 + rng.below(12)).min(chars.len());
                chars.drain(at..end);
            }
            _ => {
                let piece = PIECES[rng.below(PIECES.len())];
                chars.splice(at..at, piece.chars());
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mangled_examples_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut sources: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    sources.sort();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for source in &sources {
        for _ in 0..400 {
            let text = mutate(source, &mut rng);
            if let Err(errors) = rouse_config::parse("fuzz.toml", &text) {
                assert!(!errors.errors.is_empty());
                for error in &errors.errors {
                    assert!(error.line >= 1 && error.column >= 1, "{error}\n---\n{text}");
                }
            }
        }
    }
}
