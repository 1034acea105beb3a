//! docs/grafana/rouse.json, the Grafana dashboard of rouse's Prometheus metrics: every query
//! of every panel and variable names metrics (and labels) that a real rouse's `/metrics`
//! exports once it has served requests, started and stopped a server. A misspelt or renamed
//! metric would otherwise be a panel that silently stays empty.

mod common;
mod promql;

use std::collections::BTreeSet;

use common::{WAIT, backend_server, client, embedded_upstream, free_addrs, log_if_asked};
use promql::exposition::Exposition;
use rouse_e2e::wait_until;
use serde_json::Value;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/rouse.json");

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("cannot read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// One query of the dashboard: where it is (for the failure message) and its text.
struct Query {
    place: String,
    expr: String,
    variable: bool,
}

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("a panels list") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn queries(d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {:?}: a target without expr", p["title"]));
            out.push(Query {
                place: format!("panel {} target {}", p["title"], t["refId"]),
                expr: expr.to_owned(),
                variable: false,
            });
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        if v["type"] != "query" {
            continue;
        }
        // Grafana 10 stores the query as an object, older versions as a string.
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        let q = q.unwrap_or_else(|| panic!("variable {}: no query", v["name"]));
        out.push(Query {
            place: format!("variable {}", v["name"]),
            expr: q.to_owned(),
            variable: true,
        });
    }
    out
}

/// Every `datasource` object anywhere in `v`.
fn datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                if k == "datasource" && inner.is_object() {
                    out.push(inner);
                }
                datasources(inner, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| datasources(x, out)),
        _ => {}
    }
}

/// The shape an import needs: a uid, Grafana 10's schema, unique panel ids that all sit on
/// the grid, a `datasource` variable that every Prometheus query goes through (no data source
/// uid of the machine it was made on), and only defined variables used.
#[test]
fn dashboard_is_importable_and_bound_to_the_datasource_variable() {
    let d = dashboard();
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "no uid");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");

    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "{}: {g}",
            p["title"]
        );
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {}",
                p["title"]
            );
            assert!(
                p["fieldConfig"]["defaults"]["unit"].is_string() || p["type"] != "timeseries",
                "panel {} has no unit",
                p["title"]
            );
        }
    }

    let vars = d["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    let ds = var("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["instance", "upstream"] {
        let v = var(name).unwrap_or_else(|| panic!("no variable {name}"));
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"]["uid"], "${datasource}");
    }

    let mut all = Vec::new();
    datasources(&d, &mut all);
    for ds in all {
        match ds["type"].as_str() {
            Some("prometheus") => assert_eq!(ds["uid"], "${datasource}", "{ds}"),
            Some("grafana") => {} // the built-in annotations
            other => panic!("data source of type {other:?}: {ds}"),
        }
    }

    for q in queries(&d) {
        for name in variables_used(&q.expr) {
            assert!(
                name.starts_with("__") || var(&name).is_some(),
                "{}: ${name} is not a variable of the dashboard",
                q.place
            );
        }
    }
}

/// `$name` and `${name}` / `${name:format}` in `expr`.
fn variables_used(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in expr.split('$').skip(1) {
        let name: String = part
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

#[test]
fn every_query_parses() {
    let problems: Vec<String> = queries(&dashboard())
        .iter()
        .filter_map(|q| parse(q).err().map(|e| format!("{}: {e}", q.place)))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn parse(q: &Query) -> Result<promql::Names, String> {
    if q.variable {
        promql::variable_names(&q.expr)
    } else {
        promql::names(&q.expr)
    }
}

async fn scrape(admin: std::net::SocketAddr) -> String {
    let r = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(r.status(), 200);
    r.text().await.expect("a body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_names_metrics_and_labels_rouse_exports() {
    log_if_asked();
    let [a0] = free_addrs();
    let rouse = common::start_rouse(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        embedded_upstream("app", &[], "", &[backend_server(a0, "s0", &[], "")]),
    ))
    .await;
    let admin = rouse.admin_addr().expect("an admin listener");

    // A cold start and requests, then a manual stop: every labelled family gets a series.
    let c = client();
    for _ in 0..3 {
        let r = c.get(format!("http://{}/", rouse.addr())).send().await;
        assert_eq!(r.expect("rouse answers").status(), 200);
    }
    let r = c
        .post(format!("http://{admin}/upstreams/app/stop"))
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(r.status(), 202);
    let text = wait_until("the manual stop to be counted", WAIT, || async {
        let text = scrape(admin).await;
        text.contains("\nrouse_stops_total{").then_some(text)
    })
    .await;
    let scraped = Exposition::parse(&text).expect("the scrape parses");

    let mut problems = Vec::new();
    let queries = queries(&dashboard());
    assert!(queries.len() > 20, "only {} queries", queries.len());
    for q in &queries {
        let result = parse(q).and_then(|names| scraped.check(&names));
        if let Err(e) = result {
            problems.push(format!("{}: {e}\n    {}", q.place, q.expr));
        }
    }
    assert!(
        problems.is_empty(),
        "{DASHBOARD} does not match rouse's /metrics:\n{}\n--- /metrics:\n{text}",
        problems.join("\n")
    );
    rouse.shutdown().await;
}
