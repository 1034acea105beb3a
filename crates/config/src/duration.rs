//! Durations as written in rouse.toml: strings such as "500ms", "30s", "5m", "1m30s".
//!
//! Only strings are accepted: a bare `30` could mean seconds or milliseconds, and guessing wrong
//! would silently make a timeout 1000 times too long or too short.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};

const EXAMPLES: &str = "\"500ms\", \"30s\", \"5m\" or \"1m30s\"";

/// A duration read from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileDuration(pub Duration);

/// Parses one duration string; the error message quotes the value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration \"{text}\" ({e}); write it like {EXAMPLES}"))
}

/// How durations are shown back to users (summary): the same notation they are written in.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .replace(' ', "")
}

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = FileDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration string such as {EXAMPLES}")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<FileDuration, E> {
        parse_duration(text).map(FileDuration).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_notations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_junk_naming_the_value() {
        for bad in [
            "",
            "5",
            "5x",
            "-1s",
            "s",
            "ten seconds",
            "99999999999999999999h",
        ] {
            let message = parse_duration(bad).unwrap_err();
            assert!(message.contains(&format!("\"{bad}\"")), "{message}");
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn only_strings_deserialize() {
        let ok: FileDuration = toml::de::ValueDeserializer::parse("\"2s\"")
            .and_then(FileDuration::deserialize)
            .unwrap();
        assert_eq!(ok, FileDuration(Duration::from_secs(2)));
        let err = toml::de::ValueDeserializer::parse("30")
            .and_then(FileDuration::deserialize)
            .unwrap_err();
        assert!(
            err.message().contains("a duration string"),
            "{}",
            err.message()
        );
    }
}
