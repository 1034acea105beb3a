//! Just enough of PromQL to say which metrics and labels a dashboard query names: a tokenizer
//! and one pass over its tokens. Not a full parser: operator precedence and types are not
//! checked (Prometheus does that when the query runs); names are, since a misspelt metric is a
//! panel that stays empty without any error.

pub mod exposition;

/// `metric{label op "value", ...}`: the metric and the labels its matchers name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    pub labels: Vec<String>,
}

/// The labels of a `by (...)`/`without (...)` clause (or of Grafana's `label_values`), and the
/// metrics of the expression they group: each must carry every one of those labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub labels: Vec<String>,
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub selectors: Vec<Selector>,
    pub groupings: Vec<Grouping>,
}

impl Names {
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.selectors.iter().map(|s| s.metric.as_str())
    }
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "end",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Words that are neither metrics nor functions.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A string literal, a number or duration, a Grafana variable, a `[range]`, an operator:
    /// nothing that names a metric or a label.
    Other,
    Open,
    Close,
    OpenBrace,
    CloseBrace,
    Comma,
    /// A label matcher's operator: `=`, `!=`, `=~`, `!~`.
    Match,
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '(' | ')' | '{' | '}' | ',' => {
                toks.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '{' => Tok::OpenBrace,
                    '}' => Tok::CloseBrace,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            '"' | '\'' | '`' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated string in {expr:?}")),
                        Some('\\') if c != '`' => i += 2,
                        Some(&q) if q == c => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                toks.push(Tok::Other);
            }
            // A range or subquery (`[5m]`, `[$__rate_interval]`, `[1h:5m]`): durations only.
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or_else(|| format!("unterminated [ in {expr:?}"))?;
                i += end + 1;
                toks.push(Tok::Other);
            }
            // Grafana variables: `$name`, `${name}`, `${name:format}`.
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or_else(|| format!("unterminated ${{ in {expr:?}"))?;
                    i += end + 1;
                } else {
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
                toks.push(Tok::Other);
            }
            '=' | '!' if matches!(next, Some('=')) => {
                i += 2;
                toks.push(Tok::Other);
            }
            '=' | '!' if matches!(next, Some('~')) => {
                i += 2;
                toks.push(Tok::Match);
            }
            '=' => {
                i += 1;
                toks.push(Tok::Match);
            }
            '<' | '>' | '+' | '-' | '*' | '/' | '%' | '^' | '@' => {
                i += 1;
                if c != '@' && next == Some('=') {
                    i += 1;
                }
                toks.push(Tok::Other);
            }
            _ if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                // Numbers (`0.99`, `1e-3`, `0x1f`) and durations (`5m`, `1h30m`).
                while i < chars.len() {
                    let d = chars[i];
                    let exponent_sign = matches!(d, '+' | '-') && matches!(chars[i - 1], 'e' | 'E');
                    if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Other);
            }
            _ if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => return Err(format!("unexpected {c:?} in {expr:?}")),
        }
    }
    Ok(toks)
}

/// For each `(` and `{`, the index of the token that closes it.
fn closers(toks: &[Tok], expr: &str) -> Result<Vec<Option<usize>>, String> {
    let mut close = vec![None; toks.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Open | Tok::OpenBrace => open.push(i),
            Tok::Close | Tok::CloseBrace => {
                let o = open
                    .pop()
                    .ok_or_else(|| format!("unbalanced {t:?} in {expr:?}"))?;
                let pair = (&toks[o], t);
                if !matches!(
                    pair,
                    (Tok::Open, Tok::Close) | (Tok::OpenBrace, Tok::CloseBrace)
                ) {
                    return Err(format!("mismatched brackets in {expr:?}"));
                }
                close[o] = Some(i);
            }
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(format!("unclosed bracket in {expr:?}"));
    }
    Ok(close)
}

/// The label names of the list opening at `toks[open]` (a `(`), and the index of its `)`.
fn label_list(
    toks: &[Tok],
    close: &[Option<usize>],
    open: usize,
    expr: &str,
) -> Result<(Vec<String>, usize), String> {
    let end = close[open].ok_or_else(|| format!("no list at token {open} of {expr:?}"))?;
    let mut labels = Vec::new();
    for t in &toks[open + 1..end] {
        match t {
            Tok::Ident(l) => labels.push(l.clone()),
            Tok::Comma => {}
            other => return Err(format!("{other:?} in a label list of {expr:?}")),
        }
    }
    Ok((labels, end))
}

/// The metrics, matcher labels and grouping labels `expr` names.
pub fn names(expr: &str) -> Result<Names, String> {
    let toks = tokenize(expr)?;
    let close = closers(&toks, expr)?;
    let ident = |i: usize| match toks.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut selectors: Vec<(usize, Selector)> = Vec::new();
    // (labels, first token, last token) of each aggregation's argument list.
    let mut groups: Vec<(Vec<String>, usize, usize)> = Vec::new();
    let mut skip = vec![false; toks.len()];
    let mut i = 0;
    while i < toks.len() {
        if skip[i] {
            i += 1;
            continue;
        }
        let Some(word) = ident(i) else {
            if toks[i] == Tok::OpenBrace {
                return Err(format!(
                    "a selector without a metric name in {expr:?}: name the metric"
                ));
            }
            i += 1;
            continue;
        };
        let lower = word.to_ascii_lowercase();
        let before_open = toks.get(i + 1) == Some(&Tok::Open);
        if LABEL_LISTS.contains(&word) && before_open {
            // `on (...)`, `ignoring (...)`, `group_left (...)`: labels of both sides, not checked.
            let (_, end) = label_list(&toks, &close, i + 1, expr)?;
            i = end + 1;
        } else if AGGREGATIONS.contains(&word)
            && (before_open || ident(i + 1).is_some_and(|w| w == "by" || w == "without"))
        {
            let mut labels = Vec::new();
            let mut args = i + 1;
            if !before_open {
                let (l, end) = label_list(&toks, &close, i + 2, expr)?;
                labels = l;
                args = end + 1;
                if toks.get(args) != Some(&Tok::Open) {
                    return Err(format!("{word} by (...) without arguments in {expr:?}"));
                }
            }
            let args_end = close[args].ok_or_else(|| format!("bad {word} in {expr:?}"))?;
            if before_open
                && ident(args_end + 1).is_some_and(|w| w == "by" || w == "without")
                && toks.get(args_end + 2) == Some(&Tok::Open)
            {
                let (l, end) = label_list(&toks, &close, args_end + 2, expr)?;
                labels = l;
                // Read here with its aggregation, not again as a metric or `on (...)`.
                skip[args_end + 1..=end].fill(true);
            }
            groups.push((labels, args, args_end));
            i = args + 1;
        } else if before_open {
            if !FUNCTIONS.contains(&word) {
                return Err(format!("unknown function {word}() in {expr:?}"));
            }
            i += 2;
        } else if KEYWORDS.contains(&lower.as_str()) {
            i += 1;
        } else {
            let mut labels = Vec::new();
            let mut next = i + 1;
            if toks.get(next) == Some(&Tok::OpenBrace) {
                let end = close[next].ok_or_else(|| format!("bad selector in {expr:?}"))?;
                let mut j = next + 1;
                while j < end {
                    match (&toks[j], toks.get(j + 1), toks.get(j + 2)) {
                        (Tok::Ident(l), Some(Tok::Match), Some(Tok::Other)) => {
                            labels.push(l.clone());
                            j += 3;
                        }
                        (Tok::Comma, _, _) => j += 1,
                        _ => return Err(format!("bad label matcher in {expr:?}")),
                    }
                }
                next = end + 1;
            }
            selectors.push((
                i,
                Selector {
                    metric: word.to_owned(),
                    labels,
                },
            ));
            i = next;
        }
    }
    let groupings = groups
        .into_iter()
        .filter(|(labels, _, _)| !labels.is_empty())
        .map(|(labels, lo, hi)| Grouping {
            labels,
            metrics: selectors
                .iter()
                .filter(|(at, _)| *at > lo && *at < hi)
                .map(|(_, s)| s.metric.clone())
                .collect(),
        })
        .collect();
    Ok(Names {
        selectors: selectors.into_iter().map(|(_, s)| s).collect(),
        groupings,
    })
}

/// The names in a Grafana variable query of the Prometheus data source:
/// `label_values(label)`, `label_values(selector, label)` or `query_result(expr)`.
pub fn variable_names(query: &str) -> Result<Names, String> {
    let q = query.trim();
    let inner = |f: &str| {
        q.strip_prefix(f)
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
    };
    if let Some(args) = inner("label_values") {
        let (selector, label) = match args.rfind(',') {
            Some(comma) => (&args[..comma], args[comma + 1..].trim()),
            None => ("", args.trim()),
        };
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label {label:?} in {query:?}"));
        }
        let mut names = names(selector)?;
        names.groupings.push(Grouping {
            labels: vec![label.to_owned()],
            metrics: names.metrics().map(str::to_owned).collect(),
        });
        return Ok(names);
    }
    if let Some(expr) = inner("query_result") {
        return names(expr);
    }
    Err(format!(
        "{query:?}: only label_values(...) and query_result(...) are checked"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(expr: &str) -> Vec<String> {
        names(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn finds_metrics_not_functions_keywords_labels_or_variables() {
        let expr = r#"histogram_quantile(0.99, sum by (upstream, le) (rate(rouse_request_duration_seconds_bucket{instance=~"$instance", upstream=~"${upstream}"}[$__rate_interval])))"#;
        assert_eq!(metrics(expr), ["rouse_request_duration_seconds_bucket"]);
        let n = names(expr).unwrap();
        assert_eq!(n.selectors[0].labels, ["instance", "upstream"]);
        assert_eq!(
            n.groupings,
            [Grouping {
                labels: vec!["upstream".into(), "le".into()],
                metrics: vec!["rouse_request_duration_seconds_bucket".into()],
            }]
        );

        let expr = r#"sum(rate(a_total{code=~"5.."}[5m] offset 1h)) without (server) / on (upstream) group_left (x) max(b) by (upstream) > bool 0.5e-3 or vector(0) and c @ start()"#;
        assert_eq!(metrics(expr), ["a_total", "b", "c"]);
        let n = names(expr).unwrap();
        assert_eq!(n.groupings.len(), 2);
        assert_eq!(n.groupings[0].labels, ["server"]);
        assert_eq!(n.groupings[0].metrics, ["a_total"]);
        assert_eq!(n.groupings[1].labels, ["upstream"]);
        assert_eq!(n.groupings[1].metrics, ["b"]);

        let expr = "max by (instance, upstream, server) (rouse_server_state{state=\"ready\"} == 1) * 2\n# a comment naming not_a_metric\n or count(up)";
        assert_eq!(metrics(expr), ["rouse_server_state", "up"]);
    }

    /// The point of the check: a misspelt metric comes out as a name the scrape lacks.
    #[test]
    fn a_misspelt_metric_is_caught() {
        let scrape = exposition::Exposition::parse(
            "# HELP rouse_requests_total Requests\n# TYPE rouse_requests_total counter\n\
             rouse_requests_total{upstream=\"app\",code=\"200\"} 1\n",
        )
        .unwrap();
        let good =
            names(r#"sum by (upstream) (rate(rouse_requests_total{code=~"5.."}[5m]))"#).unwrap();
        assert_eq!(scrape.check(&good), Ok(()));
        let misspelt =
            names(r#"sum by (upstream) (rate(rouse_request_total{code=~"5.."}[5m]))"#).unwrap();
        let err = scrape.check(&misspelt).unwrap_err();
        assert!(err.contains("rouse_request_total"), "{err}");
        let bad_label =
            names(r#"sum by (upstrem) (rate(rouse_requests_total{code=~"5.."}[5m]))"#).unwrap();
        let err = scrape.check(&bad_label).unwrap_err();
        assert!(err.contains("upstrem"), "{err}");
        let bad_matcher = names(r#"rouse_requests_total{status="500"}"#).unwrap();
        assert!(scrape.check(&bad_matcher).unwrap_err().contains("status"));
    }

    #[test]
    fn a_misspelt_function_or_broken_query_is_an_error() {
        for expr in [
            "rat(rouse_requests_total[5m])",
            "sum(rate(x[5m])",
            r#"x{a="1}"#,
            r#"{__name__="x"}"#,
            "sum by (a) x",
        ] {
            assert!(names(expr).is_err(), "{expr}");
        }
    }

    #[test]
    fn grafana_variable_queries() {
        let n =
            variable_names(r#"label_values(rouse_server_state{instance=~"$instance"}, upstream)"#)
                .unwrap();
        assert_eq!(n.selectors[0].metric, "rouse_server_state");
        assert_eq!(n.groupings[0].labels, ["upstream"]);
        assert_eq!(n.groupings[0].metrics, ["rouse_server_state"]);
        let n = variable_names("label_values(instance)").unwrap();
        assert!(n.selectors.is_empty());
        assert!(variable_names("metrics(rouse_.*)").is_err());
        assert!(variable_names("label_values(rouse_server_state, )").is_err());
    }
}
