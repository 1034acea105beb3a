//! What a bad configuration produces: every problem, each with the place it was found.

use std::fmt;
use std::ops::Range;

use crate::position::LineIndex;

/// One problem in a configuration file.
///
/// Displayed as `FILE:LINE:COL: message`; `line` and `column` are 1-based. A `line` of 0 means
/// the problem has no position in the text (the file could not be read at all), and then it is
/// displayed as `FILE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{} {message}", Position(*line, *column))]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// `LINE:COL:`, or nothing for an error without a position.
struct Position(usize, usize);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position(0, _) => Ok(()),
            Position(line, column) => write!(f, "{line}:{column}:"),
        }
    }
}

/// Every problem found in one configuration, in the order they appear in the file.
///
/// Displayed as one line per error, each ending with a newline, so it can be printed as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A single error without a position, such as an unreadable file.
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                file: escape_controls(&file.into()),
                line: 0,
                column: 0,
                message: escape_controls(&mask_credentials(&message.into())),
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }
}

struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in self.0 {
            writeln!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Errors collected while reading and validating, still as byte spans: positions are only
/// computed once, at the end, against the whole text.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    items: Vec<(Range<usize>, String)>,
}

impl Diagnostics {
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push((span, message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<&str> {
        self.items.iter().map(|(_, m)| m.as_str()).collect()
    }

    /// Sorted by position (checks run section by section, but users read top to bottom), with
    /// exact repeats dropped.
    pub(crate) fn into_errors(self, file: &str, text: &str) -> ConfigErrors {
        let index = LineIndex::new(text);
        let mut items = self.items;
        items.sort_by_key(|(span, _)| span.start);
        items.dedup();
        ConfigErrors {
            errors: items
                .into_iter()
                .map(|(span, message)| {
                    let (line, column) = index.position(span.start);
                    ConfigError {
                        file: escape_controls(file),
                        line,
                        column,
                        message: escape_controls(&mask_credentials(&message)),
                    }
                })
                .collect(),
        }
    }
}

/// Every `//user:password@` (with a scheme or without, as a mangled url may have lost it) in a
/// message with the password masked, wherever in the
/// message and whichever value quoted it (a url in an `address`, in a `command`...): errors
/// end up in terminals, CI logs and HTTP answers.
fn mask_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("//") {
        let (before, after) = rest.split_at(at + 2);
        out.push_str(before);
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(user_end) => {
                let userinfo = &authority[..user_end];
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                out.push_str(user);
                out.push_str(":***");
                out.push_str(&authority[user_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Control characters as Rust escapes (`\n`, `\u{1b}`): each error stays on one line, and a
/// value quoted from the file can neither forge output lines nor send terminal escapes.
fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_wherever_they_appear() {
        assert_eq!(
            mask_credentials("invalid address \"127.0.0.1:91http://u:secret@h:1/RPC2\" x"),
            "invalid address \"127.0.0.1:91http://u:***@h:1/RPC2\" x"
        );
        assert_eq!(
            mask_credentials("a http://x@y b ftp://p:q@r"),
            "a http://x:***@y b ftp://p:***@r"
        );
        assert_eq!(
            mask_credentials("http://h:1/RPC2 and unix:///s"),
            "http://h:1/RPC2 and unix:///s"
        );
        assert_eq!(mask_credentials("no url"), "no url");
        assert_eq!(
            mask_credentials("\"127.0.0.1:910//u:secret@h:1/RPC2\""),
            "\"127.0.0.1:910//u:***@h:1/RPC2\""
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut diagnostics = Diagnostics::default();
        diagnostics.error(0..1, "invalid \"a\nrouse.toml:1:1: forged\u{1b}[2J\"");
        let errors = diagnostics.into_errors("f", "abc");
        assert_eq!(
            errors.to_string(),
            "f:1:1: invalid \"a\\nrouse.toml:1:1: forged\\u{1b}[2J\"\n"
        );
    }

    #[test]
    fn display_has_file_line_column() {
        let error = ConfigError {
            file: "rouse.toml".into(),
            line: 3,
            column: 7,
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "rouse.toml:3:7: bad");
    }

    #[test]
    fn unpositioned_error_has_no_numbers() {
        let errors = ConfigErrors::whole_file("/etc/rouse.toml", "cannot read: gone");
        assert_eq!(errors.to_string(), "/etc/rouse.toml: cannot read: gone\n");
    }

    #[test]
    fn errors_are_sorted_by_position_and_deduplicated() {
        let mut diagnostics = Diagnostics::default();
        diagnostics.error(4..5, "second");
        diagnostics.error(0..1, "first");
        diagnostics.error(4..5, "second");
        let errors = diagnostics.into_errors("f", "abc\ndef");
        assert_eq!(errors.to_string(), "f:1:1: first\nf:2:1: second\n");
    }
}
