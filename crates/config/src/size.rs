//! Sizes as written in rouse.toml: a number of bytes (`65536`) or a string with a unit
//! (`"32KiB"`, `"1MiB"`, `"100MiB"`, or nginx's `"64k"`, `"1m"`, `"1g"`).
//!
//! Every unit is a power of 1024, as in nginx: `"1MB"` is 1 MiB. Nobody sizing a buffer means
//! 1 000 000 bytes, and two meanings for one notation would be a trap.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

const EXAMPLES: &str = "65536, \"64KiB\", \"1MiB\" or \"1GiB\"";

/// A size in bytes read from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileSize(pub u64);

/// Parses one size string; the error message quotes the value.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size {text:?} ({why}); write it like {EXAMPLES}");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad("no number"));
    }
    let number: u64 = digits.parse().map_err(|_| bad("number too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad("unknown unit")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| bad("number too large"))
}

/// How sizes are shown back to users: the largest unit that divides them exactly.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

impl<'de> Deserialize<'de> for FileSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = FileSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a size such as {EXAMPLES}")
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<FileSize, E> {
        u64::try_from(bytes)
            .map(FileSize)
            .map_err(|_| E::custom(format!("invalid size {bytes}: must not be negative")))
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<FileSize, E> {
        Ok(FileSize(bytes))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<FileSize, E> {
        parse_size(text).map(FileSize).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bytes_and_binary_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("32KiB"), Ok(32 * 1024));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn rejects_junk_naming_the_value() {
        for bad in [
            "",
            "k",
            "-1",
            "1.5m",
            "12 parsecs",
            "99999999999999999999",
            "20000000T",
        ] {
            let message = parse_size(bad).unwrap_err();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_size(32 * 1024), "32KiB");
        assert_eq!(format_size(100 << 20), "100MiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(1500), "1500B");
    }

    #[test]
    fn integers_and_strings_deserialize() {
        let read = |text: &str| {
            toml::de::ValueDeserializer::parse(text)
                .and_then(FileSize::deserialize)
                .map_err(|e| e.message().to_owned())
        };
        assert_eq!(read("4096"), Ok(FileSize(4096)));
        assert_eq!(read("\"4KiB\""), Ok(FileSize(4096)));
        assert!(read("-3").unwrap_err().contains("negative"));
        assert!(read("true").unwrap_err().contains("a size such as"));
    }
}
