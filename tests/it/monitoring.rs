//! The Prometheus stack's files (the operator's issue): the alert rules pass `promtool check
//! rules` and their unit tests, and every expression of the rules and of the Grafana
//! dashboard names only series a running otpd exports.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use otpd_testkit::daemon::{free_tcp_port, Otpd};
use serde_json::Value;

fn packaging(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(path)
}

/// `promtool ARGS` run in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus, scripts/install-test-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The series names a running otpd exports, read from its `# TYPE` lines (a counter `x`
/// is the series `x_total`, a histogram `x` is `x_bucket`, `x_sum` and `x_count`), so a
/// family without samples yet counts too.
fn exported_series() -> BTreeSet<String> {
    let port = free_tcp_port();
    let _d = Otpd::start(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let page = otpd_testkit::http::get(addr, "/metrics").text();
    let mut names = BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    assert!(
        names.contains("otpd_radius_requests_total") && names.contains("otpd_users_locked"),
        "the scrape was read: {names:?}\n{page}"
    );
    names
}

/// The metric names an expression uses: the identifiers starting `otpd_`, plus `up`, the
/// scrape's own series.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut word = String::new();
    let mut in_quotes = false;
    for c in expr.chars().chain([' ']) {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if !in_quotes && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if word.starts_with("otpd_") || word == "up" {
            found.push(word.clone());
        }
        word.clear();
    }
    found
}

/// Every `expr:` of the rules file, its block form (`expr: |-`) included.
fn rule_expressions(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.to_string());
        }
    }
    exprs
}

fn check_names(what: &str, expr: &str, exported: &BTreeSet<String>) {
    let used = metrics_in(expr);
    assert!(!used.is_empty(), "{what}: `{expr}` names no otpd metric");
    for name in used {
        assert!(
            name == "up" || exported.contains(&name),
            "{what}: `{expr}` names {name}, which otpd does not export; it exports {exported:?}"
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = packaging("prometheus");
    let checked = promtool(&dir, &["check", "rules", "otpd-alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "otpd-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // The unit tests cover at least two alerts, each both quiet and firing.
    let tests = std::fs::read_to_string(dir.join("otpd-alerts.test.yml")).expect("tests");
    let alerts: BTreeSet<&str> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname: "))
        .collect();
    assert!(alerts.len() >= 2, "{alerts:?}");
    assert!(tests.contains("exp_alerts: []") && tests.contains("exp_labels:"));
}

#[test]
fn every_expression_names_a_series_otpd_exports() {
    let exported = exported_series();

    let rules = std::fs::read_to_string(packaging("prometheus/otpd-alerts.yml")).expect("rules");
    let exprs = rule_expressions(&rules);
    let alerts = rules.matches("- alert: ").count();
    assert_eq!(exprs.len(), alerts, "one expression per alert");
    for expr in &exprs {
        check_names("otpd-alerts.yml", expr, &exported);
    }

    let text =
        std::fs::read_to_string(packaging("grafana/otpd-dashboard.json")).expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard_panels(&dash) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            check_names(&format!("panel {:?}", panel["title"]), expr, &exported);
            queries.push(expr.to_string());
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["definition"].as_str() {
            check_names(&format!("variable {}", var["name"]), q, &exported);
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");

    // The dashboard's queries are PromQL promtool parses, Grafana's variables filled in.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&q).expect("quoted")
        ));
    }
    std::fs::write(dir.path().join("queries.yml"), rules).expect("write");
    promtool(dir.path(), &["check", "rules", "queries.yml"]);
}

/// The dashboard's panels (those in rows too), after checking the shape Grafana imports:
/// a title, a uid, a schema version, the data source variable every query uses, and panels
/// with distinct ids, a known type and a place on the grid.
fn dashboard_panels(dash: &Value) -> Vec<&Value> {
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "a data source variable"
    );
    let top = dash["panels"].as_array().expect("panels");
    let mut panels: Vec<&Value> = top.iter().collect();
    for p in top {
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut ids = BTreeSet::new();
    for p in &panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let kind = p["type"].as_str().expect("panel type");
        assert!(
            ["row", "stat", "timeseries", "gauge", "table", "bargauge"].contains(&kind),
            "panel type {kind}"
        );
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "panel {id} gridPos.{k}");
        }
        assert!(
            p["gridPos"]["x"].as_u64().unwrap_or(99) + p["gridPos"]["w"].as_u64().unwrap_or(99)
                <= 24
        );
        if kind != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {id} shows nothing");
        }
    }
    panels
}
