//! What the README tells an operator agrees with the files it describes:
//! the alerts with the rule file, the memory sizing with the deployment's
//! comment, the prerequisites with what CI installs (issue 23, item 9).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced block of `lang` that follows `heading` in the README.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme = read("README.md");
    let after = &readme[readme.find(heading).expect("heading in README")..];
    let fence = format!("```{lang}\n");
    let start = after.find(&fence).expect("a fenced block") + fence.len();
    let len = after[start..].find("```").expect("closing fence");
    after[start..start + len].to_string()
}

/// (name, expression, for) of each alert, whitespace normalised.
fn alerts(rules: &Value) -> BTreeSet<(String, String, String)> {
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    rules
        .as_array()
        .expect("a list of rules")
        .iter()
        .map(|r| (text(&r["alert"]), text(&r["expr"]), text(&r["for"])))
        .collect()
}

#[test]
fn the_readme_alerts_are_the_rule_files() {
    let readme: Value =
        serde_saphyr::from_str(&readme_block("### Example alerts", "yaml")).unwrap();
    let file: Value =
        serde_saphyr::from_str(&read("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    let rules = &file["spec"]["groups"][0]["rules"];
    assert_eq!(alerts(&readme), alerts(rules));
}

/// Words that look like an alert's name (`Gisgate` then more CamelCase).
fn alert_names_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > "Gisgate".len() && w.starts_with("Gisgate"))
        .map(str::to_string)
        .collect()
}

/// The files under `dir` (relative to the crate), recursively.
fn files_under(dir: &str) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(&root).unwrap();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// An operator searches Prometheus for the alert the README or a file
/// under deploy/ names: it must be one the rule file defines.
#[test]
fn every_alert_the_docs_name_is_in_the_rule_file() {
    let file: Value =
        serde_saphyr::from_str(&read("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    let defined: BTreeSet<String> = alerts(&file["spec"]["groups"][0]["rules"])
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let mut docs = vec!["README.md".to_string()];
    docs.extend(files_under("deploy"));
    for doc in docs {
        let named = alert_names_in(&read(&doc));
        assert!(
            named.is_subset(&defined),
            "{doc} names alerts the rule file lacks: {:?}",
            named.difference(&defined).collect::<Vec<_>>()
        );
    }
}

/// "8 MiB + 30 KiB" as (8, 30), from the first place `text` gives a
/// base in MiB plus a per-connection figure in KiB.
fn sizing(text: &str) -> (u32, u32) {
    let at = text.find(" MiB + ").expect("a sizing formula");
    let base = text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let rest = &text[at + " MiB + ".len()..];
    let per: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(rest[per.len()..].starts_with(" KiB"), "{rest}");
    (base, per.parse().unwrap())
}

#[test]
fn the_deployments_memory_sizing_is_the_readmes() {
    let readme = read("README.md");
    let from = readme.find("Size memory limits as").expect("README sizing");
    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert_eq!(sizing(&readme[from..]), sizing(&deployment));
}

#[test]
fn the_readme_prerequisites_are_what_ci_installs() {
    let ci = read(".ci/run");
    let installed: BTreeSet<&str> = ci
        .lines()
        .filter_map(|l| l.split("need_apt+=(").nth(1))
        .filter_map(|rest| rest.split(')').next())
        .collect();
    assert!(!installed.is_empty(), ".ci/run installs nothing?");
    let readme = read("README.md");
    let prerequisites = &readme[readme
        .find("Prerequisites")
        .expect("a Prerequisites paragraph")..];
    let paragraph = &prerequisites[..prerequisites.find("\n\n").unwrap()];
    let named: BTreeSet<&str> = paragraph.split('`').skip(1).step_by(2).collect();
    assert_eq!(installed, named, "README:\n{paragraph}");
}
