//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use rouse_config::{Config, ConfigError, parse};

/// Test configs are written as raw strings starting on the line after `r#"`; this drops that
/// first newline so line 1 of the config is the first line written.
pub fn text(raw: &str) -> &str {
    raw.strip_prefix('\n').unwrap_or(raw)
}

pub fn ok(raw: &str) -> Config {
    match parse("rouse.toml", text(raw)) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

pub fn errors(raw: &str) -> Vec<ConfigError> {
    match parse("rouse.toml", text(raw)) {
        Ok(config) => panic!("expected errors, got a valid config: {config:#?}"),
        Err(errors) => errors.errors,
    }
}

/// Exactly one error, at `line:column`, whose message contains every one of `needles`.
#[track_caller]
pub fn single(raw: &str, line: usize, column: usize, needles: &[&str]) -> ConfigError {
    let errors = errors(raw);
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error, got:\n{}",
        all.join("\n")
    );
    let error = errors.into_iter().next().unwrap();
    check(&error, line, column, needles);
    error
}

#[track_caller]
pub fn check(error: &ConfigError, line: usize, column: usize, needles: &[&str]) {
    assert_eq!(error.file, "rouse.toml");
    assert_eq!(
        (error.line, error.column),
        (line, column),
        "wrong position for: {error}"
    );
    for needle in needles {
        assert!(
            error.message.contains(needle),
            "message does not mention {needle:?}: {error}"
        );
    }
}

/// One valid upstream (a static server), written after a section under test so that only the
/// section's errors show.
pub const UPSTREAM: &str = r#"
[[upstream]]
name = "a"
supervisor = "none"
[[upstream.server]]
address = "127.0.0.1:9101"
"#;
