//! Real Prometheus against gisgate (issue 22, item 3): the alert rules pass
//! `promtool` and their unit tests (tests/prometheus/alerts.test.yaml), a
//! `prometheus` child process scrapes a gateway with the shipped scrape
//! config and answers the queries an operator would ask, and the rules run
//! there on what the gateway really exposes.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use http::StatusCode;
use serde_json::{json, Value};

const RULE_MANIFEST: &str = "deploy/kubernetes/prometheusrule.yaml";
const UNIT_TESTS: &str = "tests/prometheus/alerts.test.yaml";
const SCRAPE_CONFIG: &str = "deploy/prometheus.yml";
/// The name alerts.test.yaml loads its rules from.
const RULES_NAME: &str = "gisgate.rules.yaml";

/// The gateways of this file share the process-wide metrics recorder:
/// one test at a time, so the counts a test sends are the counts it sees.
static ONE_GATEWAY_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn yaml(rel: &str) -> Value {
    let path = repo_file(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ------------------------------------------------------------ the rules

/// The PrometheusRule manifest's `spec` is a plain rule file (`groups:`):
/// written out at test time, so the manifest stays the only copy. JSON is
/// YAML, so Prometheus and promtool read it as written.
fn write_rule_file(dir: &Path) -> PathBuf {
    let manifest = yaml(RULE_MANIFEST);
    assert_eq!(manifest["kind"], "PrometheusRule");
    let path = dir.join(RULES_NAME);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest["spec"]).unwrap(),
    )
    .unwrap();
    path
}

/// One alerting rule of the manifest.
struct Alert {
    name: String,
    expr: String,
    /// Its `for`, in seconds.
    holds: u64,
}

fn alert_rules() -> Vec<Alert> {
    let manifest = yaml(RULE_MANIFEST);
    let groups = manifest["spec"]["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| {
            Some(Alert {
                name: r["alert"].as_str()?.into(),
                expr: r["expr"].as_str()?.into(),
                holds: r["for"].as_str().map_or(0, seconds),
            })
        })
        .collect()
}

/// A Prometheus duration of one unit ("90s", "15m", "1h") in seconds.
fn seconds(duration: &str) -> u64 {
    let (number, unit) = duration.split_at(duration.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("duration {duration}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => panic!("duration {duration}: unit s, m or h"),
    }
}

/// The gisgate_* metric names a PromQL expression or a series selector uses.
fn metric_names(promql: &str) -> BTreeSet<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("gisgate_"))
        .map(str::to_string)
        .collect()
}

fn run(program: &Path, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{text}",
        program.display(),
        out.status
    );
    text
}

fn promtool() -> Option<PathBuf> {
    real_peer("promtool", &["/usr/bin/promtool"])
}

#[test]
fn promtool_accepts_the_alert_rules_and_each_passes_its_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_rule_file(dir.path());
    std::fs::copy(repo_file(UNIT_TESTS), dir.path().join("alerts.test.yaml")).unwrap();
    let checked = run(&promtool, &["check", "rules", RULES_NAME], dir.path());
    let alerts = alert_rules().len();
    assert!(
        checked.contains(&format!("SUCCESS: {alerts} rules found")),
        "{checked}"
    );
    let tested = run(
        &promtool,
        &["test", "rules", "alerts.test.yaml"],
        dir.path(),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn promtool_accepts_the_shipped_scrape_config() {
    let Some(promtool) = promtool() else { return };
    let checked = run(
        &promtool,
        &["check", "config", SCRAPE_CONFIG],
        &repo_file(""),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
}

/// The unit-test cases for one alert: does one expect it to fire, and does
/// one expect it quiet after its `for` has passed, with its metrics present
/// (quiet because nothing is there to look at, or because the alert is
/// still pending, would not show that its threshold holds)?
#[derive(Debug, Default, PartialEq)]
struct Coverage {
    fires: bool,
    quiet_on_its_metrics: bool,
}

fn coverage(tests: &Value, alert: &Alert) -> Coverage {
    let mut seen = Coverage::default();
    let wanted = metric_names(&alert.expr);
    for group in tests["tests"].as_array().expect("tests") {
        let fed = group["input_series"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| !metric_names(s["series"].as_str().unwrap_or("")).is_disjoint(&wanted));
        let cases = group["alert_rule_test"].as_array().into_iter().flatten();
        for case in cases.filter(|c| c["alertname"] == alert.name.as_str()) {
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            let at = seconds(case["eval_time"].as_str().expect("eval_time"));
            seen.fires |= expected > 0;
            seen.quiet_on_its_metrics |= expected == 0 && fed && at > alert.holds;
        }
    }
    seen
}

#[test]
fn every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_quiet() {
    let tests = yaml(UNIT_TESTS);
    assert_eq!(tests["rule_files"], json!([RULES_NAME]));
    let rules = alert_rules();
    assert!(
        rules.len() >= 4,
        "only {} alerts in {RULE_MANIFEST}",
        rules.len()
    );
    for alert in &rules {
        assert_eq!(
            coverage(&tests, alert),
            Coverage {
                fires: true,
                quiet_on_its_metrics: true
            },
            "{} in {UNIT_TESTS}",
            alert.name
        );
    }
    let defined: BTreeSet<&str> = rules.iter().map(|a| a.name.as_str()).collect();
    let tested: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["alert_rule_test"].as_array().into_iter().flatten())
        .filter_map(|c| c["alertname"].as_str())
        .collect();
    assert_eq!(tested, defined, "{UNIT_TESTS} tests alerts the rules lack");
}

// ------------------------------------------------------------ a real Prometheus

/// The alert rules a Prometheus evaluates.
#[derive(Clone, Copy, PartialEq)]
enum Rules {
    None,
    /// Those of the PrometheusRule manifest.
    Gisgate,
}

/// A `prometheus` child process on a loopback port, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second with the job of deploy/prometheus.yml,
    /// evaluating `rules` every second.
    fn start(program: &Path, target: SocketAddr, rules: Rules) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = yaml(SCRAPE_CONFIG);
        config["global"] = json!({
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
        });
        config["scrape_configs"][0]["static_configs"] =
            json!([{ "targets": [target.to_string()] }]);
        if rules == Rules::Gisgate {
            write_rule_file(dir.path());
            config["rule_files"] = json!([RULES_NAME]);
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `data` of an HTTP API answer; None until Prometheus answers with
    /// success (it refuses with 503 while its storage starts).
    async fn api(&mut self, path: &str) -> Option<Value> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
        tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let (status, _, body) = plain_request(self.addr, "GET", path, &[]).await;
        let answer: Value = serde_json::from_slice(&body).ok()?;
        (status == StatusCode::OK && answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// Polls `check` on the answer to `path` until it passes.
    async fn until(&mut self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            last = self.api(path).await;
            if last.as_ref().is_some_and(&check) {
                return last.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "within 60 s, no {what} at {path}; last answer {last:?}\nprometheus log:\n{}",
            self.log()
        );
    }

    /// The series `promql` gives, once it gives any (a failed scrape
    /// marks the gateway's series stale until the next one).
    async fn series(&mut self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", url_encoded(promql));
        let data = self
            .until(&path, &format!("series for {promql}"), |d| {
                d["result"].as_array().is_some_and(|r| !r.is_empty())
            })
            .await;
        data["result"].as_array().unwrap().clone()
    }

    /// Polls `promql` until its single value satisfies `check`.
    async fn value_until(&mut self, promql: &str, check: impl Fn(f64) -> bool) -> f64 {
        let path = format!("/api/v1/query?query={}", url_encoded(promql));
        let data = self
            .until(&path, &format!("value of {promql} as expected"), |d| {
                single_value(d).is_some_and(&check)
            })
            .await;
        single_value(&data).unwrap()
    }

    /// Waits until the gateway's target is up; returns it.
    async fn target_up(&mut self) -> Value {
        let data = self
            .until("/api/v1/targets", "target up", |d| {
                d["activeTargets"][0]["health"] == "up"
            })
            .await;
        data["activeTargets"][0].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one sample of a query's answer, as a number ("NaN" included).
fn single_value(data: &Value) -> Option<f64> {
    let result = data["result"].as_array()?;
    let [sample] = result.as_slice() else {
        return None;
    };
    sample["value"][1].as_str()?.parse().ok()
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prometheus() -> Option<PathBuf> {
    real_peer("prometheus", &["/usr/bin/prometheus"])
}

/// A gateway whose admin paths are open to 10.9.9.9 only, so loopback
/// clients are refused there.
async fn gateway(site: &Site, up: &TestUpstream) -> TestGateway {
    site.gateway(up, "[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n")
        .await
}

async fn send(site: &Site, tg: &TestGateway, proxied: usize, denied: usize, redirected: usize) {
    for _ in 0..proxied {
        // 300 ms at the upstream: a floor under the measured durations.
        let r = https_get(site, tg, "/delay/300", false).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for _ in 0..denied {
        let r = https_get(site, tg, "/arcgis/admin", false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    for _ in 0..redirected {
        let (status, _, _) = plain_request(tg.http(), "GET", "/arcgis/rest/info", &[]).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    }
}

/// The requests Prometheus has counted with `labels`. Each outcome was
/// sent once before Prometheus started, so the series exist; a failed
/// scrape marks them stale for a moment, hence the wait for a value.
async fn count(prom: &mut Prometheus, labels: &str) -> f64 {
    let promql = format!(r#"sum(gisgate_requests_total{{job="gisgate",{labels}}})"#);
    prom.value_until(&promql, |_| true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_sees_what_it_served() {
    let Some(program) = prometheus() else { return };
    let _alone = ONE_GATEWAY_AT_A_TIME.lock().await;
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = gateway(&site, &up).await;
    send(&site, &tg, 1, 1, 1).await;
    let observe = tg.observe.unwrap();
    let mut prom = Prometheus::start(&program, observe, Rules::None);

    let target = prom.target_up().await;
    assert_eq!(target["labels"]["job"], "gisgate");
    assert_eq!(target["labels"]["instance"], observe.to_string());
    assert_eq!(target["scrapeUrl"], format!("http://{observe}/metrics"));
    assert_eq!(target["lastError"], "");

    // What Prometheus counts for each outcome grows by what this test sent.
    let (proxied, denied, redirected) = (5, 3, 2);
    let outcomes = [
        (r#"listener="https",route="proxy",status="200""#, proxied),
        (
            r#"listener="https",route="admin_denied",status="403""#,
            denied,
        ),
        (
            r#"listener="http",route="redirect",status="308""#,
            redirected,
        ),
    ];
    let mut before = Vec::new();
    for (labels, _) in outcomes {
        before.push(count(&mut prom, labels).await);
    }
    send(&site, &tg, proxied, denied, redirected).await;
    for ((labels, sent), was) in outcomes.into_iter().zip(before) {
        let promql = format!(r#"sum(gisgate_requests_total{{job="gisgate",{labels}}})"#);
        prom.value_until(&promql, |now| now == was + sent as f64)
            .await;
    }

    // The slowest 1% of the last minute's requests: the proxied ones, which
    // waited 300 ms at the upstream.
    let p99 = prom
        .value_until(
            "histogram_quantile(0.99, sum by (le) (rate(gisgate_request_duration_seconds_bucket[1m])))",
            |q| !q.is_nan(),
        )
        .await;
    assert!((0.3..=10.0).contains(&p99), "p99 {p99} s");

    let build = prom.series(r#"gisgate_build_info{job="gisgate"}"#).await;
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(build[0]["metric"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build[0]["value"][1], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_run_in_a_real_prometheus_on_what_the_gateway_exposes() {
    let Some(program) = prometheus() else { return };
    let _alone = ONE_GATEWAY_AT_A_TIME.lock().await;
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = gateway(&site, &up).await;
    send(&site, &tg, 2, 1, 0).await;
    let mut prom = Prometheus::start(&program, tg.observe.unwrap(), Rules::Gisgate);
    prom.target_up().await;

    // Each alert's metrics are ones the real gateway exposes (the unit
    // tests made them up, so a renamed metric would pass there).
    let rules = alert_rules();
    // (A metric that never appears fails the test, named, after 60 s.)
    for metric in rules.iter().flat_map(|a| metric_names(&a.expr)) {
        prom.series(&format!(r#"{metric}{{job="gisgate"}}"#)).await;
    }

    // Loaded, evaluated without error, and quiet on a healthy gateway: as
    // of an evaluation made after the metrics were seen above (one made
    // before the first scrape is quiet for want of data).
    let evaluated_at = |d: &Value| -> Vec<String> {
        let rules = d["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        rules
            .iter()
            .map(|r| r["lastEvaluation"].to_string())
            .collect()
    };
    let seen = evaluated_at(&prom.until("/api/v1/rules", "rules", |_| true).await);
    let data = prom
        .until("/api/v1/rules", "rules evaluated again", |d| {
            let now = evaluated_at(d);
            now.len() == seen.len() && now.iter().zip(&seen).all(|(a, b)| a != b)
        })
        .await;
    let loaded = data["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = loaded.iter().filter_map(|r| r["name"].as_str()).collect();
    let defined: Vec<&str> = rules.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, defined);
    for rule in loaded {
        assert_eq!(rule["type"], "alerting", "{rule}");
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_eq!(rule["state"], "inactive", "{rule}");
    }
}

/// (metric, type) of each row of the README's metrics table.
fn readme_metric_types() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let table = &readme[readme.find("### Metrics").expect("README ### Metrics")..];
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_each_metric_with_the_type_the_readme_gives() {
    let Some(program) = prometheus() else { return };
    let _alone = ONE_GATEWAY_AT_A_TIME.lock().await;
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = gateway(&site, &up).await;
    send(&site, &tg, 1, 1, 1).await;
    let mut prom = Prometheus::start(&program, tg.observe.unwrap(), Rules::None);
    prom.target_up().await;

    let documented = readme_metric_types();
    let data = prom
        .until("/api/v1/metadata", "gisgate metadata", |d| {
            d.get("gisgate_build_info").is_some()
        })
        .await;
    let read: BTreeSet<(String, String)> = data
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("gisgate_"))
        .flat_map(|(name, entries)| {
            let entries = entries.as_array().unwrap();
            entries
                .iter()
                .map(|e| (name.clone(), e["type"].as_str().unwrap().to_string()))
        })
        .collect();
    // Some metrics appear only once something happens (an upstream error,
    // a refused handshake): what is there must be as documented.
    assert!(read.len() >= 10, "only {read:?}");
    let undocumented: Vec<_> = read.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "README's table says otherwise: {undocumented:?}"
    );
}

/// Replaces the site's gateway certificate with one that expires in 3 days.
fn expiring_gateway_cert(site: &Site) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(site.path("gateway.crt"), cert.pem()).unwrap();
    std::fs::write(site.path("gateway.key"), key.serialize_pem()).unwrap();
}

/// The unit tests made the alert's labels up; here they are gisgate's own,
/// and the annotation an operator receives names the real certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_its_expiry_raises_its_alert_in_a_real_prometheus() {
    let Some(program) = prometheus() else { return };
    let _alone = ONE_GATEWAY_AT_A_TIME.lock().await;
    let site = Site::new();
    expiring_gateway_cert(&site);
    let up = site.upstream(Http::V1).await;
    let tg = gateway(&site, &up).await;
    let mut prom = Prometheus::start(&program, tg.observe.unwrap(), Rules::Gisgate);
    prom.target_up().await;

    let data = prom
        .until("/api/v1/alerts", "alert", |d| {
            d["alerts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let alerts = data["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "only the certificate's: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(
        alert["labels"]["alertname"],
        "GisgateCertificateExpiringSoon"
    );
    // Pending: `for: 15m` has not passed.
    assert_eq!(alert["state"], "pending");
    assert_eq!(alert["labels"]["name"], "default");
    let serial = alert["labels"]["serial"].as_str().unwrap();
    assert!(!serial.is_empty());
    let metrics = tg.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"gisgate_certificate_expiry_timestamp_seconds{{name="default",serial="{serial}"}}"#
        )),
        "{metrics}"
    );
    assert_eq!(
        alert["annotations"]["summary"],
        format!("gisgate certificate default (serial {serial}) expires within 14 days")
    );
}
