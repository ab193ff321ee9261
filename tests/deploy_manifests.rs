//! The deployment bundle in `deploy/` agrees with the code and with itself.
//!
//! No container engine or cluster runs here, so every manifest is parsed
//! (YAML with serde-saphyr, the pod's containers, volumes and ConfigMaps
//! into typed structs named as in the Kubernetes API, the Dockerfile line
//! by line) and cross-checked:
//! ports, probe paths, mount paths, the config file the image and the pod
//! run, the certificate files that config names, metric names in alerts.
//! The configs themselves go through gisgate's own validation in a
//! temporary directory laid out exactly as the pod's (and compose's)
//! volumes lay it out.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gisgate::certtool::{generate_self_signed, GenerateOptions};
use gisgate::config::Settings;
use serde_json::Value;

// ------------------------------------------------------------- reading files

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A YAML file that must hold exactly one document.
fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

fn toml_table(text: &str, what: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `v[path[0]][path[1]]...`, failing with the path when a step is missing.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("missing {}", path[..=i].join(".")));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{} is not a string", path.join(".")))
}

fn array<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list"))
}

/// The element of a list of objects whose `name` is `name`.
fn named<'a>(list: &'a Value, name: &str, what: &str) -> &'a Value {
    array(list, what)
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("{what} has no entry named {name:?}"))
}

/// A port given as a YAML number or a numeric string.
fn port_number(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `labels` contains every pair of `selector` (a matchLabels map).
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Removes `.` and resolves `..` without touching the filesystem: these
/// are paths inside a container that does not exist here.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `/etc/gisgate/x` inside the container -> `root/etc/gisgate/x` here.
fn under(root: &Path, container_path: &str) -> PathBuf {
    root.join(container_path.trim_start_matches('/'))
}

fn config_arg(args: &[String]) -> Option<String> {
    args.windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].clone())
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    array(v, what)
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: {s} is not a string"))
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------- Dockerfile

struct Dockerfile {
    /// (INSTRUCTION, arguments) of the final (runtime) stage.
    runtime: Vec<(String, String)>,
    /// Of the first (build) stage.
    builder: Vec<(String, String)>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        let text = read("deploy/Dockerfile");
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            if trimmed.starts_with('#') {
                continue; // a comment inside a continued instruction
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    logical.push(std::mem::take(&mut current));
                }
            }
        }
        let mut stages: Vec<Vec<(String, String)>> = Vec::new();
        for l in logical {
            let (op, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
            let op = op.to_ascii_uppercase();
            if op == "FROM" {
                stages.push(Vec::new());
            }
            stages
                .last_mut()
                .expect("the Dockerfile starts with FROM")
                .push((op, args.trim().to_string()));
        }
        assert!(
            stages.len() >= 2,
            "deploy/Dockerfile should be multi-stage (build, runtime)"
        );
        Dockerfile {
            builder: stages[0].clone(),
            runtime: stages.last().unwrap().clone(),
        }
    }

    fn all(&self, op: &str) -> Vec<&str> {
        self.runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    /// The last occurrence wins, as in Docker.
    fn last(&self, op: &str) -> &str {
        self.all(op)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("deploy/Dockerfile's runtime stage has no {op}"))
    }

    fn exec_form(&self, op: &str) -> Vec<String> {
        let args = self.last(op);
        serde_json::from_str(args)
            .unwrap_or_else(|e| panic!("{op} {args} is not exec (JSON) form: {e}"))
    }

    /// (sources, destination) of each COPY in a stage, flags dropped.
    fn copies(stage: &[(String, String)]) -> Vec<(Vec<String>, String)> {
        stage
            .iter()
            .filter(|(o, _)| o == "COPY")
            .map(|(_, a)| {
                let mut words: Vec<String> = a
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .map(str::to_string)
                    .collect();
                let dest = words.pop().expect("COPY has a destination");
                (words, dest)
            })
            .collect()
    }

    fn copies_from_context(&self) -> Vec<(Vec<String>, String)> {
        let from_stage = |(_, a): &&(String, String)| a.contains("--from=");
        let context_only: Vec<(String, String)> = self
            .runtime
            .iter()
            .filter(|x| !from_stage(x))
            .cloned()
            .collect();
        Self::copies(&context_only)
    }

    /// The config the image runs: the `--config` argument of CMD.
    fn config_path(&self) -> String {
        config_arg(&self.exec_form("CMD")).expect("the Dockerfile's CMD passes --config PATH")
    }

    fn exposed(&self) -> BTreeSet<u16> {
        self.all("EXPOSE")
            .iter()
            .flat_map(|a| a.split_whitespace())
            .map(|p| {
                p.trim_end_matches("/tcp")
                    .parse::<u16>()
                    .unwrap_or_else(|_| panic!("EXPOSE {p} is not a TCP port"))
            })
            .collect()
    }
}

// --------------------------------------------------------------- Kubernetes

const K8S: &str = "deploy/kubernetes";

fn manifest(file: &str) -> Value {
    yaml(&format!("{K8S}/{file}"))
}

fn deployment() -> Value {
    let d = manifest("deployment.yaml");
    assert_eq!(str_at(&d, &["kind"]), "Deployment");
    d
}

fn pod_spec(d: &Value) -> &Value {
    at(d, &["spec", "template", "spec"])
}

fn gisgate_container(d: &Value) -> &Value {
    named(
        at(pod_spec(d), &["containers"]),
        "gisgate",
        "the pod's containers",
    )
}

/// The config file the pod runs: `--config` in the container's args, or
/// the image's CMD when the manifest gives none.
fn pod_config_path(d: &Value) -> String {
    let c = gisgate_container(d);
    assert!(
        c.get("command").is_none(),
        "the gisgate container must not override the image's ENTRYPOINT"
    );
    match c.get("args") {
        Some(args) => config_arg(&strings(args, "gisgate args"))
            .expect("the gisgate container's args pass --config PATH"),
        None => Dockerfile::load().config_path(),
    }
}

/// Container port by name or number, as probes and Services refer to it.
fn container_port(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port_number(port) {
        return n;
    }
    let name = port.as_str().expect("a port is a number or a name");
    port_number(at(
        named(at(container, &["ports"]), name, "the container's ports"),
        &["containerPort"],
    ))
    .expect("containerPort is a number")
}

fn container_ports(container: &Value) -> BTreeMap<String, u16> {
    array(at(container, &["ports"]), "ports")
        .iter()
        .map(|p| {
            (
                str_at(p, &["name"]).to_string(),
                port_number(at(p, &["containerPort"])).expect("containerPort is a number"),
            )
        })
        .collect()
}

/// The ConfigMaps defined in deploy/kubernetes, by name.
fn configmaps_in_repo() -> BTreeMap<String, k8s::ConfigMap> {
    let mut out = BTreeMap::new();
    for file in kustomize_resources() {
        for doc in yaml_docs(&format!("{K8S}/{file}")) {
            if doc.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
                let cm: k8s::ConfigMap = typed(doc, &file);
                out.insert(cm.metadata.name.clone(), cm);
            }
        }
    }
    out
}

fn kustomize_resources() -> Vec<String> {
    strings(
        at(&manifest("kustomization.yaml"), &["resources"]),
        "kustomization resources",
    )
}

/// A manifest document as its Kubernetes type: fields the cross-checks
/// rely on are required, so a manifest missing one fails here by name.
fn typed<T: serde::de::DeserializeOwned>(doc: Value, what: &str) -> T {
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The parts of the Kubernetes API types (core/v1, apps/v1) that decide
/// which files a container sees, with the API's field names.
mod k8s {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Deployment {
        pub spec: DeploymentSpec,
    }

    #[derive(Deserialize)]
    pub struct DeploymentSpec {
        pub template: PodTemplateSpec,
    }

    #[derive(Deserialize)]
    pub struct PodTemplateSpec {
        pub spec: PodSpec,
    }

    #[derive(Deserialize)]
    pub struct PodSpec {
        pub containers: Vec<Container>,
        #[serde(default)]
        pub volumes: Vec<Volume>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Container {
        pub name: String,
        #[serde(default)]
        pub volume_mounts: Vec<VolumeMount>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct VolumeMount {
        pub name: String,
        pub mount_path: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Volume {
        pub name: String,
        pub config_map: Option<KeySource>,
        pub secret: Option<KeySource>,
        pub projected: Option<ProjectedVolume>,
    }

    impl Volume {
        /// The ConfigMaps and Secrets whose keys this volume shows as
        /// files, each with its kind.
        pub fn sources(&self) -> Vec<(&'static str, &KeySource)> {
            let direct = [("ConfigMap", &self.config_map), ("Secret", &self.secret)];
            let projected = self.projected.iter().flat_map(|p| {
                p.sources
                    .iter()
                    .flat_map(|s| [("ConfigMap", &s.config_map), ("Secret", &s.secret)])
            });
            direct
                .into_iter()
                .chain(projected)
                .filter_map(|(kind, s)| Some((kind, s.as_ref()?)))
                .collect()
        }
    }

    /// A ConfigMap or Secret volume source (`secretName` in a Secret
    /// volume, `name` elsewhere).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct KeySource {
        name: Option<String>,
        secret_name: Option<String>,
        pub items: Option<Vec<KeyToPath>>,
    }

    impl KeySource {
        pub fn name(&self) -> Option<&str> {
            self.name.as_deref().or(self.secret_name.as_deref())
        }
    }

    #[derive(Deserialize)]
    pub struct KeyToPath {
        pub key: String,
        pub path: String,
    }

    #[derive(Deserialize)]
    pub struct ProjectedVolume {
        pub sources: Vec<VolumeProjection>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct VolumeProjection {
        pub config_map: Option<KeySource>,
        pub secret: Option<KeySource>,
    }

    #[derive(Deserialize)]
    pub struct ConfigMap {
        pub metadata: ObjectMeta,
        pub data: BTreeMap<String, String>,
    }

    #[derive(Deserialize)]
    pub struct ObjectMeta {
        pub name: String,
    }
}

/// Where one file in a mounted volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A key of a ConfigMap defined in deploy/kubernetes, with its content.
    RepoConfigMap { name: String, key: String },
    /// A key of a Secret or ConfigMap the operator creates.
    External {
        kind: &'static str,
        name: String,
        key: String,
    },
}

/// Every file the gisgate container sees through its volume mounts:
/// container path -> where it comes from.
fn pod_files(d: &Value) -> BTreeMap<String, Source> {
    let deployment: k8s::Deployment = typed(d.clone(), "deployment.yaml");
    let spec = &deployment.spec.template.spec;
    let cms = configmaps_in_repo();
    let container = spec
        .containers
        .iter()
        .find(|c| c.name == "gisgate")
        .expect("the pod's containers have one named gisgate");
    let mut files = BTreeMap::new();
    for m in &container.volume_mounts {
        let volume = spec
            .volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("the pod's volumes have no entry named {:?}", m.name));
        let sources = volume.sources();
        assert!(
            !sources.is_empty(),
            "volume {} is neither a ConfigMap, a Secret nor projected",
            volume.name
        );
        for (kind, src) in sources {
            let name = src
                .name()
                .unwrap_or_else(|| panic!("a {kind} volume source without a name"))
                .to_string();
            let repo_cm = cms.get(&name).filter(|_| kind == "ConfigMap");
            if repo_cm.is_none() {
                assert!(
                    src.items.is_some(),
                    "{kind} {name} is not in deploy/kubernetes: list its items so the mounted file names are known"
                );
            }
            // items: explicit key -> path; otherwise every key under its own name.
            let items: Vec<(String, String)> = match (&src.items, repo_cm) {
                (Some(items), _) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                (None, Some(cm)) => cm.data.keys().map(|k| (k.clone(), k.clone())).collect(),
                (None, None) => Vec::new(),
            };
            for (key, path) in items {
                let source = match repo_cm {
                    Some(_) => Source::RepoConfigMap {
                        name: name.clone(),
                        key,
                    },
                    None => Source::External {
                        kind,
                        name: name.clone(),
                        key,
                    },
                };
                let at = format!("{}/{path}", m.mount_path.trim_end_matches('/'));
                files.insert(at, source);
            }
        }
    }
    files
}

/// Writes a self-signed certificate and key; returns nothing, fails loudly.
fn make_cert(cn: &str, cert: &Path, key: &Path) {
    generate_self_signed(&GenerateOptions::new(cn, cert, key))
        .unwrap_or_else(|e| panic!("generating {}: {e}", cert.display()));
}

/// Lays out under `root` what the gisgate container would see: the
/// repository's ConfigMaps with their content, and stand-ins for the
/// Secret and ConfigMap the operator creates (a matching certificate and
/// key for a kubernetes.io/tls Secret, a CA certificate for `*.crt`).
/// Returns the config path inside `root`.
fn lay_out_pod(d: &Value, root: &Path) -> PathBuf {
    let cms = configmaps_in_repo();
    let files = pod_files(d);
    let scratch = root.join("scratch");
    for (path, src) in &files {
        let dest = under(root, path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        match src {
            Source::RepoConfigMap { name, key } => {
                let content = &cms[name].data[key];
                std::fs::write(&dest, content).unwrap();
            }
            Source::External { kind, key, .. } if *kind == "Secret" && key == "tls.key" => {
                // Written together with tls.crt below.
            }
            Source::External { kind, name, key } if *kind == "Secret" && key == "tls.crt" => {
                let key_path = files
                    .iter()
                    .find(|(_, s)| {
                        matches!(s, Source::External { kind: "Secret", name: n, key: k } if n == name && k == "tls.key")
                    })
                    .map(|(p, _)| under(root, p))
                    .unwrap_or_else(|| panic!("Secret {name}: tls.crt is mounted without tls.key"));
                make_cert("gis.example.com", &dest, &key_path);
            }
            Source::External { name, key, .. } if key.ends_with(".crt") => {
                let stem = format!("{name}-{key}");
                let (c, k) = (
                    scratch.join(format!("{stem}.crt")),
                    scratch.join(format!("{stem}.key")),
                );
                make_cert("gis-server.internal", &c, &k);
                std::fs::copy(&c, &dest).unwrap();
            }
            other => panic!("no stand-in for {other:?}"),
        }
    }
    under(root, &pod_config_path(d))
}

fn load_settings(config: &Path) -> Settings {
    gisgate::config::load(config).unwrap_or_else(|e| panic!("{}:\n{e}", config.display()))
}

/// The pod's config, validated by gisgate in the pod's layout.
fn pod_settings() -> (tempfile::TempDir, Settings) {
    let tmp = tempfile::tempdir().unwrap();
    let config = lay_out_pod(&deployment(), tmp.path());
    let s = load_settings(&config);
    (tmp, s)
}

fn listen_ports(s: &Settings) -> BTreeMap<&'static str, u16> {
    let mut m = BTreeMap::new();
    if let Some(a) = s.server.https_listen {
        m.insert("https", a.port());
    }
    if let Some(a) = s.server.http_listen {
        m.insert("http", a.port());
    }
    if let Some(a) = s.observability_listen {
        m.insert("metrics", a.port());
    }
    m
}

fn observability_port(s: &Settings) -> u16 {
    s.observability_listen
        .expect("the container config enables the observability listener")
        .port()
}

// ------------------------------------------------------------------- metrics

/// Every metric name the code defines, imported from it rather than read
/// out of its source text.
fn metric_names_in_code() -> BTreeSet<String> {
    use gisgate::observe::metrics::*;
    [
        REQUESTS_TOTAL,
        REQUEST_DURATION,
        UPSTREAM_REQUESTS_TOTAL,
        UPSTREAM_ERRORS_TOTAL,
        UPSTREAM_DURATION,
        TLS_HANDSHAKES_TOTAL,
        TLS_HANDSHAKE_ERRORS_TOTAL,
        CONNECTIONS_ACTIVE,
        CONFIG_RELOADS_TOTAL,
        CONFIG_LAST_RELOAD_SUCCESSFUL,
        CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
        CERTIFICATE_EXPIRY_TIMESTAMP,
        BUILD_INFO,
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Every `gisgate_*` identifier in a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices("gisgate_") {
        let before = expr[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

fn alert_rules() -> Vec<Value> {
    let rule = manifest("prometheusrule.yaml");
    assert_eq!(str_at(&rule, &["kind"]), "PrometheusRule");
    assert_eq!(str_at(&rule, &["apiVersion"]), "monitoring.coreos.com/v1");
    array(at(&rule, &["spec", "groups"]), "groups")
        .iter()
        .flat_map(|g| array(at(g, &["rules"]), "rules").clone())
        .collect()
}

// ------------------------------------------------------------------- compose

fn compose() -> Value {
    yaml("deploy/compose.yaml")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    at(compose, &["services", name])
}

/// (volume source, container path) of a compose service.
fn compose_volumes(svc: &Value) -> Vec<(String, String)> {
    let volumes: Vec<compose::Mount> = typed(at(svc, &["volumes"]).clone(), "volumes");
    volumes.into_iter().map(|m| (m.source, m.target)).collect()
}

/// Container ports a compose service publishes.
fn published(svc: &Value) -> BTreeSet<u16> {
    let ports: Vec<compose::Port> = typed(at(svc, &["ports"]).clone(), "ports");
    ports.into_iter().map(|p| p.container).collect()
}

/// Compose's short syntax for volumes and ports, as the Compose
/// specification defines it, parsed into what the checks compare.
mod compose {
    use serde::Deserialize;

    /// `SOURCE:TARGET[:MODE]`.
    #[derive(Deserialize)]
    #[serde(try_from = "String")]
    pub struct Mount {
        pub source: String,
        pub target: String,
    }

    impl TryFrom<String> for Mount {
        type Error = String;
        fn try_from(v: String) -> Result<Mount, String> {
            let mut parts = v.split(':');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(source), Some(target), mode, None)
                    if !source.is_empty()
                        && target.starts_with('/')
                        && mode.is_none_or(|m| m == "ro" || m == "rw") =>
                {
                    Ok(Mount {
                        source: source.to_string(),
                        target: target.to_string(),
                    })
                }
                _ => Err(format!("volume {v:?} is not SOURCE:/TARGET[:ro|rw]")),
            }
        }
    }

    /// `[[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp]`.
    #[derive(Deserialize)]
    #[serde(try_from = "String")]
    pub struct Port {
        pub container: u16,
    }

    impl TryFrom<String> for Port {
        type Error = String;
        fn try_from(v: String) -> Result<Port, String> {
            let container = v.rsplit(':').next().unwrap_or_default();
            container
                .trim_end_matches("/tcp")
                .parse()
                .map(|container| Port { container })
                .map_err(|_| format!("port {v:?} is not [[IP:]HOST:]CONTAINER[/tcp]"))
        }
    }
}

/// Lays out what compose's gisgate container sees and returns its config:
/// the config directory bind mount, and the certs volume filled the way
/// `gisgate demo-upstream` fills it in the `upstream` service.
fn compose_settings() -> (tempfile::TempDir, Settings, PathBuf) {
    let c = compose();
    let gw = service(&c, "gisgate");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config_path = match gw.get("command") {
        Some(cmd) => config_arg(&strings(cmd, "command")).expect("--config in command"),
        None => Dockerfile::load().config_path(),
    };
    let config_dir = Path::new(&config_path).parent().unwrap();
    let mut config_mounted = false;
    for (src, dst) in compose_volumes(gw) {
        if src.starts_with('.') {
            // A bind mount of a directory next to compose.yaml.
            let host = repo().join("deploy").join(&src);
            assert!(host.is_dir(), "{} is not a directory", host.display());
            for entry in std::fs::read_dir(&host).unwrap() {
                let entry = entry.unwrap();
                let dest = under(root, &dst).join(entry.file_name());
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(entry.path(), dest).unwrap();
            }
            config_mounted |= Path::new(&dst) == config_dir;
        } else {
            // A named volume that the upstream service writes.
            let upstream = service(&c, "upstream");
            let workdir = str_at(upstream, &["working_dir"]);
            let (_, upstream_dst) = compose_volumes(upstream)
                .into_iter()
                .find(|(s, _)| *s == src)
                .unwrap_or_else(|| panic!("volume {src} is not mounted in the upstream service"));
            assert_eq!(
                normalize(&Path::new(workdir).join("certs")),
                PathBuf::from(&upstream_dst),
                "demo-upstream writes ./certs relative to its working_dir: mount the volume there"
            );
            gisgate::devpki::ensure_dev_pki(&under(root, &dst)).unwrap();
        }
    }
    assert!(
        config_mounted,
        "compose's gisgate mounts no directory at {}",
        config_dir.display()
    );
    assert!(
        c.get("volumes").and_then(|v| v.get("certs")).is_some(),
        "compose.yaml declares the certs volume"
    );
    let config = under(root, &config_path);
    let s = load_settings(&config);
    (tmp, s, config)
}

// ===================================================================== tests

#[test]
fn every_yaml_file_in_deploy_parses_and_every_manifest_names_its_kind() {
    let mut seen = 0;
    let mut stack = vec![repo().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("yaml" | "yml")) {
                continue;
            }
            let rel = path.strip_prefix(repo()).unwrap().to_str().unwrap();
            let docs = yaml_docs(rel);
            assert!(!docs.is_empty(), "{rel} is empty");
            if path.parent().unwrap().ends_with("kubernetes") {
                for d in &docs {
                    str_at(d, &["apiVersion"]);
                    str_at(d, &["kind"]);
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 9, "only {seen} YAML files under deploy/");
}

#[test]
fn kustomization_lists_every_manifest_in_the_directory() {
    let listed: BTreeSet<String> = kustomize_resources().into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(repo().join(K8S))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
}

/// kubectl's own kustomize (no cluster needed) builds the bundle: the
/// kustomization is one kubectl accepts, and the objects it renders are
/// exactly those of the manifests, by kind and name.
#[test]
fn kubectl_kustomize_builds_the_bundle_from_every_manifest() {
    let Some(kubectl) = common::real_peer("kubectl", &[]) else {
        return;
    };
    let out = Command::new(kubectl)
        .args(["kustomize", K8S])
        .current_dir(repo())
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl kustomize {K8S} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kind_and_name = |doc: &Value| {
        (
            str_at(doc, &["kind"]).to_string(),
            str_at(doc, &["metadata", "name"]).to_string(),
        )
    };
    let rendered: BTreeSet<(String, String)> = serde_saphyr::from_multiple::<Value>(&stdout)
        .expect("kustomize prints YAML")
        .iter()
        .map(kind_and_name)
        .collect();
    let manifests: BTreeSet<(String, String)> = kustomize_resources()
        .iter()
        .flat_map(|file| yaml_docs(&format!("{K8S}/{file}")))
        .map(|doc| kind_and_name(&doc))
        .collect();
    assert!(manifests.len() >= 6, "{manifests:?}");
    assert_eq!(rendered, manifests);
}

#[test]
fn the_configmap_holds_the_same_gateway_toml_as_deploy_gateway_container_toml() {
    let cms = configmaps_in_repo();
    let d = deployment();
    let config_path = pod_config_path(&d);
    let files = pod_files(&d);
    let Some(Source::RepoConfigMap { name, key }) = files.get(&config_path) else {
        panic!("{config_path} is not mounted from a ConfigMap in deploy/kubernetes: {files:?}");
    };
    let in_cm = &cms[name].data[key];
    let file = read("deploy/gateway.container.toml");
    assert_eq!(
        toml_table(in_cm, "configmap.yaml gateway.toml"),
        toml_table(&file, "deploy/gateway.container.toml"),
        "configmap.yaml and deploy/gateway.container.toml differ"
    );
}

#[test]
fn the_container_config_has_the_shipped_keys_and_differs_only_where_a_container_needs_it() {
    fn flatten(prefix: &str, t: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => flatten(&key, inner, out),
                other => {
                    out.insert(key, other.clone());
                }
            }
        }
    }
    let (mut shipped, mut container) = (BTreeMap::new(), BTreeMap::new());
    flatten(
        "",
        &toml_table(&read("gateway.toml"), "gateway.toml"),
        &mut shipped,
    );
    flatten(
        "",
        &toml_table(
            &read("deploy/gateway.container.toml"),
            "deploy/gateway.container.toml",
        ),
        &mut container,
    );
    assert_eq!(
        shipped.keys().collect::<Vec<_>>(),
        container.keys().collect::<Vec<_>>(),
        "deploy/gateway.container.toml should set the same keys as gateway.toml"
    );
    let container_specific = [
        "hsts.enabled",
        "log.format",
        "observability.listen",
        "tls.cert",
        "tls.key",
        "upstream.ca",
        "upstream.url",
    ];
    for (k, v) in &shipped {
        if !container_specific.contains(&k.as_str()) {
            assert_eq!(
                Some(v),
                container.get(k),
                "{k}: deploy/gateway.container.toml differs from gateway.toml"
            );
        }
    }
    assert_eq!(
        container["observability.listen"].as_str(),
        Some("0.0.0.0:9090")
    );
    assert_eq!(container["log.format"].as_str(), Some("json"));
    assert_eq!(container["hsts.enabled"].as_bool(), Some(true));
    assert_eq!(
        container["upstream.url"].as_str(),
        Some("https://127.0.0.1:7443")
    );
}

#[test]
fn the_pods_config_passes_gisgate_check_in_the_pods_file_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let config = lay_out_pod(&deployment(), tmp.path());
    let (report, ok) = gisgate::check::report(&config, None);
    assert!(ok, "{report}");

    let out = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gisgate check exited {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_certificate_paths_in_the_config_are_files_the_pods_volumes_provide() {
    let d = deployment();
    let config_path = pod_config_path(&d);
    let config_dir = Path::new(&config_path).parent().unwrap();
    let files = pod_files(&d);
    let table = toml_table(
        &read("deploy/gateway.container.toml"),
        "deploy/gateway.container.toml",
    );
    let resolve = |section: &str, key: &str| -> String {
        let rel = table[section][key]
            .as_str()
            .unwrap_or_else(|| panic!("{section}.{key} is not set"));
        normalize(&config_dir.join(rel))
            .to_str()
            .unwrap()
            .to_string()
    };
    let source = |path: &str| -> &Source {
        files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not provided by any volume mount: {files:?}"))
    };
    // tls.cert and tls.key come from the same kubernetes.io/tls Secret,
    // under that Secret type's fixed key names.
    let (cert, key) = (resolve("tls", "cert"), resolve("tls", "key"));
    match (source(&cert), source(&key)) {
        (
            Source::External {
                kind: "Secret",
                name: a,
                key: ka,
            },
            Source::External {
                kind: "Secret",
                name: b,
                key: kb,
            },
        ) => {
            assert_eq!(a, b, "tls.cert and tls.key come from different Secrets");
            assert_eq!((ka.as_str(), kb.as_str()), ("tls.crt", "tls.key"));
        }
        other => panic!("tls.cert/tls.key are not from a TLS Secret: {other:?}"),
    }
    let ca = resolve("upstream", "ca");
    assert!(
        matches!(source(&ca), Source::External { .. }),
        "upstream.ca {ca} should come from a Secret or ConfigMap the operator creates"
    );
    // The certificates live in their own mount, not inside the config's.
    let mounts = array(at(gisgate_container(&d), &["volumeMounts"]), "volumeMounts");
    let mount_of = |file: &str| -> String {
        mounts
            .iter()
            .map(|m| str_at(m, &["mountPath"]).to_string())
            .filter(|mp| Path::new(file).starts_with(mp))
            .max_by_key(|mp| mp.len())
            .unwrap()
    };
    assert_ne!(mount_of(&cert), mount_of(&config_path));
    assert_eq!(mount_of(&cert), mount_of(&ca));
}

#[test]
fn the_config_is_mounted_as_a_directory_so_hot_reload_sees_configmap_updates() {
    let d = deployment();
    let config_path = pod_config_path(&d);
    let mounts = at(gisgate_container(&d), &["volumeMounts"]);
    for m in array(mounts, "volumeMounts") {
        assert!(
            m.get("subPath").is_none() && m.get("subPathExpr").is_none(),
            "volumeMount {} uses subPath: subPath mounts never receive updates",
            str_at(m, &["name"])
        );
    }
    // No two mounts nested: a mount point inside a read-only ConfigMap or
    // Secret volume cannot be created.
    let paths: Vec<PathBuf> = array(mounts, "volumeMounts")
        .iter()
        .map(|m| PathBuf::from(str_at(m, &["mountPath"])))
        .collect();
    for a in &paths {
        for b in &paths {
            assert!(
                a == b || !b.starts_with(a),
                "{} is mounted inside {}",
                b.display(),
                a.display()
            );
        }
    }
    let config_dir = Path::new(&config_path).parent().unwrap();
    assert!(
        paths.iter().any(|p| p == config_dir),
        "no volume is mounted at {}, the directory of --config {config_path}",
        config_dir.display()
    );
}

#[test]
fn the_image_and_the_pod_run_the_same_config_path() {
    let df = Dockerfile::load();
    let image_config = df.config_path();
    assert_eq!(image_config, pod_config_path(&deployment()));
    // The image carries the container config at that path...
    let copies = df.copies_from_context();
    let (_, dest) = copies
        .iter()
        .find(|(srcs, _)| srcs.iter().any(|s| s == "deploy/gateway.container.toml"))
        .expect("the Dockerfile copies deploy/gateway.container.toml into the image");
    assert_eq!(dest, &image_config);
    // ...and runs the binary it built.
    assert_eq!(
        df.exec_form("ENTRYPOINT"),
        vec!["/usr/local/bin/gisgate".to_string()]
    );
    assert_eq!(df.exec_form("CMD")[0], "run");
    let binary_copied = Dockerfile::copies(&df.runtime)
        .iter()
        .any(|(_, dest)| dest == "/usr/local/bin/gisgate");
    assert!(
        binary_copied,
        "the runtime stage copies the binary to /usr/local/bin/gisgate"
    );
}

#[test]
fn the_dockerfile_exposes_the_listen_ports_and_runs_as_the_pods_non_root_user() {
    let df = Dockerfile::load();
    let (_tmp, s) = pod_settings();
    let ports: BTreeSet<u16> = listen_ports(&s).values().copied().collect();
    assert_eq!(df.exposed(), ports);
    assert_eq!(df.exposed(), BTreeSet::from([6443, 6080, 9090]));
    assert_eq!(df.last("STOPSIGNAL"), "SIGTERM");
    assert!(
        df.last("FROM")
            .starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime base: {}",
        df.last("FROM")
    );
    assert!(df.builder[0].1.starts_with("rust:1-bookworm"));
    let build = df
        .builder
        .iter()
        .find(|(o, a)| o == "RUN" && a.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(build.1.contains("--release") && build.1.contains("--locked"));

    let user = df.last("USER");
    let uid: i64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} should be numeric for runAsNonRoot"));
    let d = deployment();
    let sc = at(gisgate_container(&d), &["securityContext"]);
    assert_eq!(at(sc, &["runAsUser"]).as_i64(), Some(uid));
    assert_ne!(uid, 0);
}

#[test]
fn the_docker_build_context_includes_every_file_the_binary_embeds() {
    let df = Dockerfile::load();
    let copied: Vec<String> = Dockerfile::copies(&df.builder)
        .into_iter()
        .flat_map(|(srcs, _)| srcs)
        .collect();
    let ignore = read("deploy/Dockerfile.dockerignore");
    let reincluded: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    let covered = |path: &str, by: &[&str]| {
        by.iter()
            .any(|p| path == *p || Path::new(path).starts_with(p.trim_end_matches('/')))
    };
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
        "src/main.rs".to_string(),
    ];
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for (i, _) in text.match_indices(marker) {
                    let rest = &text[i + marker.len()..];
                    let rel = &rest[..rest.find('"').unwrap()];
                    let abs = normalize(&path.parent().unwrap().join(rel));
                    let in_repo = abs.strip_prefix(repo()).unwrap();
                    needed.push(in_repo.to_str().unwrap().to_string());
                }
            }
        }
    }
    assert!(needed.iter().any(|n| n == "gateway.toml"));
    let copied_refs: Vec<&str> = copied.iter().map(String::as_str).collect();
    for n in &needed {
        assert!(
            covered(n, &copied_refs),
            "the build stage does not COPY {n}"
        );
        assert!(
            covered(n, &reincluded),
            "deploy/Dockerfile.dockerignore leaves {n} out of the context"
        );
    }
    for (srcs, _) in df.copies_from_context() {
        for s in srcs {
            assert!(
                covered(&s, &reincluded),
                "deploy/Dockerfile.dockerignore leaves {s} out of the context"
            );
        }
    }
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "the dockerignore excludes everything by default (certs/ holds dev keys)"
    );
}

#[test]
fn container_ports_are_the_configs_listen_ports() {
    let d = deployment();
    let (_tmp, s) = pod_settings();
    let declared = container_ports(gisgate_container(&d));
    let expected: BTreeMap<String, u16> = listen_ports(&s)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(declared, expected);
}

#[test]
fn probes_hit_readyz_and_healthz_on_the_observability_port() {
    let d = deployment();
    let c = gisgate_container(&d);
    let (_tmp, s) = pod_settings();
    let obs = observability_port(&s);
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(c, &[probe, "httpGet"]);
        assert_eq!(str_at(get, &["path"]), path, "{probe} path");
        assert_eq!(
            container_port(c, at(get, &["port"])),
            obs,
            "{probe} port is not observability.listen's"
        );
        let scheme = get.get("scheme").and_then(Value::as_str).unwrap_or("HTTP");
        assert_eq!(scheme, "HTTP", "the observability listener is plain HTTP");
    }
}

#[test]
fn the_termination_grace_period_outlasts_prestop_plus_the_drain() {
    let d = deployment();
    let (_tmp, s) = pod_settings();
    let grace = at(pod_spec(&d), &["terminationGracePeriodSeconds"])
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    let pre_stop = gisgate_container(&d)
        .get("lifecycle")
        .and_then(|l| l.get("preStop"))
        .map(|p| {
            assert!(
                p.get("exec").is_none(),
                "the distroless image has no shell or sleep binary for an exec preStop hook"
            );
            at(p, &["sleep", "seconds"])
                .as_u64()
                .expect("preStop.sleep.seconds")
        })
        .unwrap_or(0);
    let needed = Duration::from_secs(pre_stop) + s.limits.shutdown_grace;
    assert!(
        Duration::from_secs(grace) > needed,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop}s + limits.shutdown_grace {:?}",
        s.limits.shutdown_grace
    );
}

#[test]
fn the_gisgate_container_is_locked_down() {
    let d = deployment();
    let pod_sc = pod_spec(&d).get("securityContext").cloned();
    let sc = at(gisgate_container(&d), &["securityContext"]);
    let field = |path: &[&str]| -> Value {
        sc.pointer(&format!("/{}", path.join("/")))
            .or_else(|| {
                pod_sc
                    .as_ref()
                    .and_then(|p| p.pointer(&format!("/{}", path.join("/"))))
            })
            .cloned()
            .unwrap_or_else(|| panic!("securityContext.{} is not set", path.join(".")))
    };
    assert_eq!(field(&["runAsNonRoot"]), Value::Bool(true));
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert!(
        strings(&field(&["capabilities", "drop"]), "capabilities.drop").contains(&"ALL".into())
    );
    assert_eq!(field(&["seccompProfile", "type"]), "RuntimeDefault");

    let limits = at(gisgate_container(&d), &["resources", "limits"]);
    assert!(limits.get("memory").is_some(), "a memory limit is set");
    let requests = at(gisgate_container(&d), &["resources", "requests"]);
    assert!(requests.get("cpu").is_some() && requests.get("memory").is_some());
}

#[test]
fn the_gis_server_shares_the_pod_and_is_the_configs_loopback_upstream() {
    let d = deployment();
    let (_tmp, s) = pod_settings();
    let containers = at(pod_spec(&d), &["containers"]);
    let gis = named(containers, "gis-server", "the pod's containers");
    assert!(str_at(gis, &["image"]).contains("arcgis-server"));
    let host: std::net::IpAddr = s.upstream.host.parse().expect("upstream.url host is an IP");
    assert!(
        host.is_loopback(),
        "the upstream is the GIS container on the pod's loopback"
    );
    assert!(
        !listen_ports(&s).values().any(|p| *p == s.upstream.port),
        "gisgate and the GIS server cannot both bind port {}",
        s.upstream.port
    );
    // Loopback-only: the GIS server exposes no port to the pod network.
    assert!(gis.get("ports").is_none());
}

#[test]
fn the_service_targets_the_gisgate_ports_by_name() {
    let d = deployment();
    let svc = manifest("service.yaml");
    let pod_labels = at(&d, &["spec", "template", "metadata", "labels"]);
    assert!(selects(at(&svc, &["spec", "selector"]), pod_labels));
    assert!(selects(
        at(&d, &["spec", "selector", "matchLabels"]),
        pod_labels
    ));
    let (_tmp, s) = pod_settings();
    let c = gisgate_container(&d);
    let ports = listen_ports(&s);
    for (name, port) in &ports {
        let p = named(at(&svc, &["spec", "ports"]), name, "the Service's ports");
        assert_eq!(container_port(c, at(p, &["targetPort"])), *port, "{name}");
        assert_eq!(port_number(at(p, &["port"])), Some(*port), "{name}");
    }
    assert_eq!(
        array(at(&svc, &["spec", "ports"]), "ports").len(),
        ports.len()
    );
}

#[test]
fn prometheus_annotations_and_the_servicemonitor_point_at_metrics_on_the_observability_port() {
    let d = deployment();
    let (_tmp, s) = pod_settings();
    let obs = observability_port(&s);
    let ann = at(&d, &["spec", "template", "metadata", "annotations"]);
    assert_eq!(str_at(ann, &["prometheus.io/scrape"]), "true");
    assert_eq!(str_at(ann, &["prometheus.io/port"]), obs.to_string());
    assert_eq!(str_at(ann, &["prometheus.io/path"]), "/metrics");

    let sm = manifest("servicemonitor.yaml");
    assert_eq!(str_at(&sm, &["apiVersion"]), "monitoring.coreos.com/v1");
    assert_eq!(str_at(&sm, &["kind"]), "ServiceMonitor");
    let svc = manifest("service.yaml");
    assert!(selects(
        at(&sm, &["spec", "selector", "matchLabels"]),
        at(&svc, &["metadata", "labels"])
    ));
    let endpoints = array(at(&sm, &["spec", "endpoints"]), "endpoints");
    assert_eq!(endpoints.len(), 1);
    let ep = &endpoints[0];
    assert_eq!(str_at(ep, &["path"]), "/metrics");
    assert_eq!(str_at(ep, &["interval"]), "30s");
    let svc_port = named(
        at(&svc, &["spec", "ports"]),
        str_at(ep, &["port"]),
        "the Service's ports",
    );
    assert_eq!(
        container_port(gisgate_container(&d), at(svc_port, &["targetPort"])),
        obs
    );
}

#[test]
fn alert_rules_use_only_metric_names_and_route_labels_the_code_defines() {
    let known = metric_names_in_code();
    let routes: Vec<&str> = {
        use gisgate::error::Route::*;
        [Proxy, Redirect, AdminDenied, Preflight, Rejected]
            .iter()
            .map(|r| r.as_str())
            .collect()
    };
    let rules = alert_rules();
    let mut used = BTreeSet::new();
    for r in &rules {
        let alert = str_at(r, &["alert"]);
        let expr = str_at(r, &["expr"]);
        for name in metric_names_in(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|b| known.contains(*b)))
                .unwrap_or(&name)
                .to_string();
            assert!(
                known.contains(&base),
                "{alert}: {name} is not a metric gisgate::observe::metrics defines ({known:?})"
            );
            used.insert(base);
        }
        for (i, _) in expr.match_indices("route=\"") {
            let v = &expr[i + 7..];
            let v = &v[..v.find('"').unwrap()];
            assert!(
                routes.contains(&v),
                "{alert}: route {v:?} is not one of {routes:?}"
            );
        }
        assert!(r.get("for").is_some(), "{alert} has no `for`");
        assert!(at(r, &["labels", "severity"]).is_string());
    }
    let exprs: Vec<&str> = rules.iter().map(|r| str_at(r, &["expr"])).collect();
    let has = |needles: &[&str]| exprs.iter().any(|e| needles.iter().all(|n| e.contains(n)));
    assert!(has(&[
        "gisgate_certificate_expiry_timestamp_seconds",
        "time()",
        "14*24*3600"
    ]));
    assert!(has(&["gisgate_config_last_reload_successful", "== 0"]));
    assert!(has(&[
        "gisgate_requests_total",
        "status=~\"5..\"",
        "> 0.05"
    ]));
    assert!(has(&["gisgate_requests_total", "route=\"admin_denied\""]));
    let reload = rules
        .iter()
        .find(|r| str_at(r, &["expr"]).contains("gisgate_config_last_reload_successful"))
        .unwrap();
    assert_eq!(str_at(reload, &["for"]), "5m");
    assert!(used.len() >= 3);
}

#[test]
fn the_networkpolicy_admits_client_ports_from_anywhere_and_metrics_from_monitoring_only() {
    let d = deployment();
    let np = manifest("networkpolicy.yaml");
    let (_tmp, s) = pod_settings();
    let ports = listen_ports(&s);
    assert!(selects(
        at(&np, &["spec", "podSelector", "matchLabels"]),
        at(&d, &["spec", "template", "metadata", "labels"])
    ));
    assert!(strings(at(&np, &["spec", "policyTypes"]), "policyTypes").contains(&"Ingress".into()));
    let rule_ports = |r: &Value| -> BTreeSet<u16> {
        array(at(r, &["ports"]), "ports")
            .iter()
            .map(|p| port_number(at(p, &["port"])).expect("numeric port"))
            .collect()
    };
    let mut open = BTreeSet::new();
    let mut monitoring = BTreeSet::new();
    for r in array(at(&np, &["spec", "ingress"]), "ingress") {
        match r.get("from") {
            None => open.extend(rule_ports(r)),
            Some(from) => {
                let ns = str_at(
                    &array(from, "from")[0],
                    &[
                        "namespaceSelector",
                        "matchLabels",
                        "kubernetes.io/metadata.name",
                    ],
                );
                assert_eq!(ns, "monitoring");
                monitoring.extend(rule_ports(r));
            }
        }
    }
    assert_eq!(open, BTreeSet::from([ports["https"], ports["http"]]));
    assert_eq!(monitoring, BTreeSet::from([ports["metrics"]]));
}

#[test]
fn the_compose_config_passes_gisgate_check_with_the_certificates_demo_upstream_makes() {
    let (_tmp, _s, config) = compose_settings();
    let (report, ok) = gisgate::check::report(&config, None);
    assert!(ok, "{report}");
}

#[test]
fn compose_ports_upstream_and_scrape_target_agree_with_the_compose_config() {
    let c = compose();
    let (_tmp, s, _) = compose_settings();
    let ports = listen_ports(&s);
    let gw = service(&c, "gisgate");
    assert_eq!(
        published(gw),
        ports.values().copied().collect::<BTreeSet<_>>()
    );
    assert!(
        s.server.public_https_port == ports["https"],
        "redirects must point at the published https port"
    );
    let stop = humantime::parse_duration(str_at(gw, &["stop_grace_period"])).unwrap();
    assert!(stop > s.limits.shutdown_grace);

    // The upstream service is what upstream.url names, on the port it listens on.
    let upstream = service(&c, "upstream");
    assert_eq!(s.upstream.host, "upstream");
    let cmd = strings(at(upstream, &["command"]), "upstream command");
    assert_eq!(cmd[0], "demo-upstream");
    assert_eq!(
        str_at(upstream, &["stop_signal"]),
        "SIGINT",
        "demo-upstream stops on Ctrl-C only"
    );
    let listen = cmd
        .windows(2)
        .find(|w| w[0] == "--listen")
        .map(|w| w[1].parse::<std::net::SocketAddr>().unwrap())
        .expect("demo-upstream --listen ADDR");
    assert_eq!(listen.port(), s.upstream.port);
    assert!(
        gisgate::devpki::DEV_SANS.contains(&s.upstream.server_name.as_str()),
        "the dev upstream certificate names {:?}, not {:?}",
        gisgate::devpki::DEV_SANS,
        s.upstream.server_name
    );
    let health = strings(at(upstream, &["healthcheck", "test"]), "healthcheck");
    assert!(health
        .iter()
        .any(|h| h.ends_with(&format!(":{}", listen.port()))));
    assert_eq!(
        str_at(gw, &["depends_on", "upstream", "condition"]),
        "service_healthy"
    );

    // Prometheus scrapes gisgate's observability listener.
    let prom = service(&c, "prometheus");
    let (prom_config, _) = compose_volumes(prom)
        .into_iter()
        .find(|(_, dst)| dst == "/etc/prometheus/prometheus.yml")
        .expect("prometheus.yml is mounted");
    assert_eq!(prom_config, "./prometheus.yml");
    let p = yaml("deploy/prometheus.yml");
    let scrape = array(at(&p, &["scrape_configs"]), "scrape_configs")
        .iter()
        .find(|j| j.get("job_name").and_then(Value::as_str) == Some("gisgate"))
        .expect("a gisgate scrape job");
    let path = scrape
        .get("metrics_path")
        .and_then(Value::as_str)
        .unwrap_or("/metrics");
    assert_eq!(path, "/metrics");
    let targets: Vec<String> = array(at(scrape, &["static_configs"]), "static_configs")
        .iter()
        .flat_map(|sc| strings(at(sc, &["targets"]), "targets"))
        .collect();
    assert_eq!(targets, vec![format!("gisgate:{}", ports["metrics"])]);
}
