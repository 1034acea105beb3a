//! The keys a file table accepts, taken from its serde type so the list shown to users in
//! "unknown key" errors can never drift from what is really accepted.

use serde::Deserialize;
use serde::de::{self, Visitor};

/// The field names of a `#[derive(Deserialize)]` struct.
pub(crate) fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The capturing deserializer always fails once it has seen the fields; the error is the
    // expected way out, not a problem.
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

struct Capture<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for Capture<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields captured"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The valid key closest to a misspelt one, if it is close enough to be what was meant.
pub(crate) fn suggest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    valid
        .iter()
        .map(|candidate| (edit_distance(&key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            let deletion = previous[j + 1] + 1;
            let insertion = current[j] + 1;
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{FileAdmin, FileServer};

    #[test]
    fn captures_struct_fields_in_declaration_order() {
        assert_eq!(field_names::<FileAdmin>(), ["listen", "token", "hosts"]);
        assert_eq!(field_names::<FileServer>()[0], "address");
    }

    #[test]
    fn suggests_close_keys_only() {
        let valid = ["listen", "threads", "connect_timeout"];
        assert_eq!(suggest("listne", &valid), Some("listen"));
        assert_eq!(suggest("Threads", &valid), Some("threads"));
        assert_eq!(suggest("conect_timeout", &valid), Some("connect_timeout"));
        assert_eq!(suggest("zzz", &valid), None);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("ac", "abc"), 1);
    }
}
