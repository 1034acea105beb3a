//! What a Prometheus server scraping `/metrics` would store: the series names (a histogram
//! family `x` as `x_bucket`, `x_sum`, `x_count`; a counter as its `_total` sample) and the label
//! names seen on each, plus the series Prometheus adds itself.

use std::collections::{BTreeMap, BTreeSet};

use super::Names;

/// Labels Prometheus attaches to every series of a target.
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// Series Prometheus writes for every scrape, with the target labels only.
const SCRAPE_SERIES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

#[derive(Debug, Default)]
pub struct Exposition {
    /// `# TYPE` name → kind.
    families: BTreeMap<String, String>,
    /// Sample name → every label name it was seen with.
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    /// Reads Prometheus text (0.0.4) or OpenMetrics text.
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    e.families.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let end = line
                .find(['{', ' '])
                .ok_or_else(|| format!("no value in {line:?}"))?;
            let labels = e.series.entry(line[..end].to_owned()).or_default();
            if let Some(set) = line[end..].strip_prefix('{') {
                // Label values are quoted and may hold `,` `=` `}`: step over them.
                let mut rest = set;
                while let Some(eq) = rest.find('=') {
                    let name = rest[..eq].trim_start_matches(',');
                    if name.is_empty() || name.starts_with('}') {
                        break;
                    }
                    labels.insert(name.to_owned());
                    let value = rest[eq + 1..]
                        .strip_prefix('"')
                        .ok_or_else(|| format!("unquoted label value in {line:?}"))?;
                    let close = closing_quote(value)
                        .ok_or_else(|| format!("unterminated label value in {line:?}"))?;
                    rest = &value[close + 1..];
                }
            }
        }
        Ok(e)
    }

    /// Every series name a query may use, whether or not it has samples yet.
    fn queryable(&self, name: &str) -> bool {
        if self.series.contains_key(name) || SCRAPE_SERIES.contains(&name) {
            return true;
        }
        self.families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                // OpenMetrics names a counter's family without its `_total`.
                "counter" => &["", "_total"],
                _ => &[""],
            };
            suffixes.iter().any(|s| name == format!("{family}{s}"))
        })
    }

    fn unknown(&self, name: &str) -> String {
        match self.families.get(name).map(String::as_str) {
            Some(kind @ ("histogram" | "summary")) => {
                format!("{name} is a {kind}: query {name}_bucket, {name}_sum or {name}_count")
            }
            _ => format!("no metric {name} in the scrape"),
        }
    }

    /// The label names `name`'s series carry, the target's included.
    fn labels(&self, name: &str) -> Result<BTreeSet<String>, String> {
        let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|&l| l.to_owned()).collect();
        if SCRAPE_SERIES.contains(&name) {
            return Ok(labels);
        }
        match self.series.get(name) {
            Some(own) => {
                labels.extend(own.iter().cloned());
                Ok(labels)
            }
            None => Err(format!(
                "{name} has no series in the scrape yet, so its labels cannot be checked"
            )),
        }
    }

    /// Every problem with the metrics and labels `names` uses, joined; `Ok` when none.
    pub fn check(&self, names: &Names) -> Result<(), String> {
        let mut problems: Vec<String> = Vec::new();
        for s in &names.selectors {
            if !self.queryable(&s.metric) {
                problems.push(self.unknown(&s.metric));
                continue;
            }
            if s.labels.iter().all(|l| l == "__name__") {
                continue;
            }
            match self.labels(&s.metric) {
                Ok(have) => problems.extend(
                    s.labels
                        .iter()
                        .filter(|l| *l != "__name__" && !have.contains(*l))
                        .map(|l| format!("{} has no label {l} (it has {have:?})", s.metric)),
                ),
                Err(e) => problems.push(e),
            }
        }
        for g in &names.groupings {
            for m in g.metrics.iter().filter(|m| self.queryable(m)) {
                match self.labels(m) {
                    Ok(have) => problems.extend(
                        g.labels
                            .iter()
                            .filter(|l| !have.contains(*l))
                            .map(|l| format!("grouped by {l}, which {m} lacks (it has {have:?})")),
                    ),
                    Err(e) => problems.push(e),
                }
            }
        }
        problems.dedup();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The index of the `"` closing a label value (`value` starts after the opening one).
fn closing_quote(value: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}
