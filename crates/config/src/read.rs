//! Reading the TOML document into `FileConfig`, collecting every schema error on the way.
//!
//! serde stops at the first error of whatever it deserializes, so the document is walked by hand
//! down to each table (`[proxy]`, each `[[upstream]]`, each `[[upstream.server]]`, ...), and each
//! table is deserialized on its own. When one of its keys is bad, the error is recorded, the key is
//! dropped and the table is read again, so one table with three bad keys gives three errors.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::error::Diagnostics;
use crate::fields::{field_names, suggest};
use crate::file::{
    FileAcme, FileAdmin, FileCluster, FileConfig, FileLog, FileProxy, FileServer, FileSupervisor,
    FileSupervisorEntry, FileTls, FileUpstream, FileUpstreamEntry, Section,
};

const TOP_LEVEL_KEYS: &[&str] = &[
    "proxy",
    "admin",
    "log",
    "supervisors",
    "upstream",
    "cluster",
];

/// `None` only for a TOML syntax error: past one, the parser's recovery guesses too much for
/// further errors to be worth showing.
pub(crate) fn read(text: &str, diagnostics: &mut Diagnostics) -> Option<FileConfig> {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            diagnostics.error(span, format!("TOML syntax error: {}", error.message()));
            return None;
        }
    };
    let mut file = FileConfig::default();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "proxy" => {
                file.proxy = table::<FileProxy>(value, "[proxy]", &["tls", "acme"], diagnostics);
                file.proxy_tls = proxy_tls(value, diagnostics);
                file.acme = proxy_acme(value, diagnostics);
            }
            "admin" => file.admin = table::<FileAdmin>(value, "[admin]", &[], diagnostics),
            "log" => file.log = table::<FileLog>(value, "[log]", &[], diagnostics),
            "cluster" => {
                file.cluster = table::<FileCluster>(value, "[cluster]", &[], diagnostics);
            }
            "supervisors" => file.supervisors = supervisors(value, diagnostics),
            "upstream" => {
                file.upstream_key = Some(key.span());
                match upstreams(value, diagnostics) {
                    Some(upstreams) => file.upstreams = upstreams,
                    None => file.upstream_rejected = true,
                }
            }
            other => diagnostics.error(
                key.span(),
                unknown_key_message(other, "at the top level", TOP_LEVEL_KEYS),
            ),
        }
    }
    Some(file)
}

/// `[[proxy.tls]]`, each read on its own so that every bad key is reported.
fn proxy_tls(value: &Spanned<DeValue<'_>>, diagnostics: &mut Diagnostics) -> Vec<Section<FileTls>> {
    let Some(tls) = value.get_ref().get("tls") else {
        return Vec::new();
    };
    array_of_tables(tls, "tls", "[[proxy.tls]]", diagnostics)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| table::<FileTls>(t, "[[proxy.tls]]", &[], diagnostics))
        .collect()
}

/// `[proxy.acme]`, when `[proxy]` is a table that has it.
fn proxy_acme(
    proxy: &Spanned<DeValue<'_>>,
    diagnostics: &mut Diagnostics,
) -> Option<Section<FileAcme>> {
    let value = proxy.get_ref().get("acme")?;
    table::<FileAcme>(value, "[proxy.acme]", &[], diagnostics)
}

fn supervisors(
    value: &Spanned<DeValue<'_>>,
    diagnostics: &mut Diagnostics,
) -> Vec<FileSupervisorEntry> {
    let DeValue::Table(entries) = value.get_ref() else {
        diagnostics.error(
            value.span(),
            format!(
                "supervisors must be a table of [supervisors.NAME] tables, not {}",
                type_name(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, entry) in entries.iter() {
        let what = format!("[supervisors.{}]", name.get_ref());
        let DeValue::Table(_) = entry.get_ref() else {
            diagnostics.error(
                name.span(),
                format!(
                    "{what} must be a table, not {}; a supervisor is declared as \
                     [supervisors.NAME] with url = \"...\" inside",
                    type_name(entry.get_ref())
                ),
            );
            continue;
        };
        if let Some(section) = table::<FileSupervisor>(entry, &what, &[], diagnostics) {
            out.push(FileSupervisorEntry {
                name: Spanned::new(name.span(), name.get_ref().to_string()),
                section,
            });
        }
    }
    out
}

/// `None` when `upstream` is not an array of tables, or none of its elements is a table.
fn upstreams(
    value: &Spanned<DeValue<'_>>,
    diagnostics: &mut Diagnostics,
) -> Option<Vec<FileUpstreamEntry>> {
    let elements = array_of_tables(value, "upstream", "[[upstream]]", diagnostics)?;
    let mut out = Vec::new();
    let mut rejected_any = false;
    for element in elements {
        let Some(mut section) =
            table::<FileUpstream>(element, "[[upstream]]", &["server"], diagnostics)
        else {
            rejected_any = true;
            continue;
        };
        let mut servers = Vec::new();
        if let Some(value) = element.get_ref().get("server") {
            let elements = array_of_tables(value, "server", "[[upstream.server]]", diagnostics);
            let mut complete = elements.is_some();
            for server in elements.unwrap_or_default() {
                match table::<FileServer>(server, "[[upstream.server]]", &[], diagnostics) {
                    Some(server) => servers.push(server),
                    None => complete = false,
                }
            }
            if !complete {
                // Already reported; "this upstream has no servers" would only repeat it.
                section.rejected.insert("server".to_owned());
            }
        }
        out.push(FileUpstreamEntry { section, servers });
    }
    // "No upstream" after "this upstream is not a table" would only repeat the same mistake.
    (!rejected_any || !out.is_empty()).then_some(out)
}

/// The elements of an array of tables; `None`, with an error, for anything else.
fn array_of_tables<'v, 'i>(
    value: &'v Spanned<DeValue<'i>>,
    key: &str,
    header: &str,
    diagnostics: &mut Diagnostics,
) -> Option<Vec<&'v Spanned<DeValue<'i>>>> {
    match value.get_ref() {
        DeValue::Array(elements) => Some(elements.iter().collect()),
        DeValue::Table(_) => {
            let single = header.replace("[[", "[").replace("]]", "]");
            diagnostics.error(
                value.span(),
                format!("{key} must be an array of tables: write {header}, not {single}"),
            );
            None
        }
        other => {
            diagnostics.error(
                value.span(),
                format!(
                    "{key} must be an array of tables ({header}), not {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

/// One table read into `T`; `walked` are keys handled by the caller (nested tables), accepted
/// but not given to serde.
fn table<T>(
    value: &Spanned<DeValue<'_>>,
    what: &str,
    walked: &[&str],
    diagnostics: &mut Diagnostics,
) -> Option<Section<T>>
where
    T: for<'de> Deserialize<'de> + Default,
{
    let DeValue::Table(table) = value.get_ref() else {
        diagnostics.error(
            value.span(),
            format!("{what} must be a table, not {}", type_name(value.get_ref())),
        );
        return None;
    };
    Some(section(table, value.span(), what, walked, diagnostics))
}

fn section<T>(
    table: &DeTable<'_>,
    span: Range<usize>,
    what: &str,
    walked: &[&str],
    diagnostics: &mut Diagnostics,
) -> Section<T>
where
    T: for<'de> Deserialize<'de> + Default,
{
    let fields = field_names::<T>();
    let valid: Vec<&str> = fields.iter().chain(walked).copied().collect();
    let keys: BTreeMap<String, Range<usize>> = table
        .iter()
        .map(|(key, _)| (key.get_ref().to_string(), key.span()))
        .collect();
    let mut rejected = BTreeSet::new();
    let mut remaining = DeTable::new();
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        if walked.contains(&name) {
            continue;
        }
        if fields.contains(&name) {
            remaining.insert(key.clone(), value.clone());
        } else {
            diagnostics.error(
                key.span(),
                unknown_key_message(name, &format!("in {what}"), &valid),
            );
            rejected.insert(name.to_owned());
        }
    }

    // Each failed attempt removes one key, so this ends after at most one pass per key.
    loop {
        let deserializer = ValueDeserializer::from(Spanned::new(
            span.clone(),
            DeValue::Table(remaining.clone()),
        ));
        let error = match T::deserialize(deserializer) {
            Ok(value) => {
                return Section {
                    value,
                    span,
                    keys,
                    rejected,
                };
            }
            Err(error) => error,
        };
        let message = friendlier(error.message());
        let at = error.span();
        let culprit = at.as_ref().and_then(|at| {
            remaining
                .iter()
                .find(|(key, value)| within(at, &key.span()) || within(at, &value.span()))
                .map(|(key, _)| key.get_ref().to_string())
        });
        match (at, culprit) {
            (Some(at), Some(key)) => {
                diagnostics.error(at, format!("{key}: {message}"));
                remaining.remove(key.as_str());
                rejected.insert(key);
            }
            (at, _) => {
                // Not attributable to one key: nothing more can be learnt from this table.
                diagnostics.error(
                    at.unwrap_or_else(|| span.clone()),
                    format!("{what}: {message}"),
                );
                return Section {
                    value: T::default(),
                    span,
                    keys,
                    rejected,
                };
            }
        }
    }
}

fn within(inner: &Range<usize>, outer: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.start < outer.end.max(outer.start + 1)
}

pub(crate) fn unknown_key_message(key: &str, place: &str, valid: &[&str]) -> String {
    let hint = suggest(key, valid)
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default();
    format!(
        "unknown key \"{key}\" {place}{hint}; valid keys: {}",
        valid.join(", ")
    )
}

/// serde speaks Rust ("a sequence", "u32"); users wrote TOML.
fn friendlier(message: &str) -> String {
    message
        .replace("a sequence", "an array")
        .replace("a map", "a table")
        .replace("invalid type: map", "invalid type: table")
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected f64", "expected a number")
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> (Option<FileConfig>, Vec<String>) {
        let mut diagnostics = Diagnostics::default();
        let file = read(text, &mut diagnostics);
        let messages = diagnostics
            .messages()
            .into_iter()
            .map(String::from)
            .collect();
        (file, messages)
    }

    #[test]
    fn syntax_error_stops_reading() {
        let (file, messages) = read_text("[proxy\n");
        assert!(file.is_none());
        assert_eq!(messages.len(), 1);
        assert!(messages[0].starts_with("TOML syntax error"), "{messages:?}");
    }

    #[test]
    fn every_bad_key_of_one_table_is_reported() {
        let (file, messages) = read_text(
            "[proxy]\nthreads = \"x\"\nconnect_timeout = \"5\"\nbogus = 1\nread_timeout = \"2s\"\n",
        );
        assert_eq!(messages.len(), 3, "{messages:?}");
        let proxy = file.unwrap().proxy.unwrap();
        assert!(proxy.is_rejected("threads"));
        assert!(proxy.is_rejected("connect_timeout"));
        assert!(proxy.is_rejected("bogus"));
        // The good key survives the bad ones.
        assert!(proxy.value.read_timeout.is_some());
    }

    #[test]
    fn unknown_key_lists_valid_ones_and_suggests() {
        let (_, messages) = read_text("[admin]\nlisten = \"127.0.0.1:1\"\ntokn = \"x\"\n");
        assert_eq!(
            messages,
            [
                "unknown key \"tokn\" in [admin] (did you mean \"token\"?); valid keys: listen, token, hosts"
            ]
        );
    }

    #[test]
    fn servers_are_read_apart_from_their_upstream() {
        let (file, messages) = read_text(
            "[[upstream]]\nname = \"a\"\n[[upstream.server]]\naddress = \"x\"\n\
             [[upstream.server]]\naddress = \"y\"\n",
        );
        assert!(messages.is_empty(), "{messages:?}");
        let file = file.unwrap();
        assert_eq!(file.upstreams.len(), 1);
        assert_eq!(file.upstreams[0].servers.len(), 2);
    }

    #[test]
    fn wrong_shapes_are_explained() {
        let (_, messages) = read_text("proxy = 1\n[upstream]\nname = \"a\"\n");
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("[proxy] must be a table"))
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("write [[upstream]], not [upstream]"))
        );

        let (_, messages) = read_text("[supervisors]\nurl = \"unix:///x\"\n");
        assert!(messages[0].contains("[supervisors.NAME]"), "{messages:?}");
    }

    #[test]
    fn command_is_a_string_or_an_array() {
        let (file, messages) = read_text(
            "[[upstream]]\n[[upstream.server]]\ncommand = \"a b\"\n\
             [[upstream.server]]\ncommand = [\"a\", \"b\"]\n[[upstream.server]]\ncommand = 1\n",
        );
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with("command: invalid type: integer"),
            "{messages:?}"
        );
        assert!(file.unwrap().upstreams[0].servers[2].is_rejected("command"));
    }
}
