//! Build-time facts for `gisgate --version`: the versions of rustls and
//! aws-lc-rs this binary was built with, read from Cargo.lock (what
//! `cargo build` used), so they cannot drift from the code.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::env::var("CARGO_MANIFEST_DIR")
        .ok()
        .and_then(|dir| std::fs::read_to_string(Path::new(&dir).join("Cargo.lock")).ok())
        .unwrap_or_default();
    for (krate, var) in [
        ("rustls", "GISGATE_RUSTLS_VERSION"),
        ("aws-lc-rs", "GISGATE_AWS_LC_RS_VERSION"),
    ] {
        let version = locked_version(&lock, krate).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env={var}={version}");
    }
}

/// The version of `krate` that gisgate depends on: the one its dependency
/// entry names (`"rustls 0.23.46"` when the lock holds several), else the
/// only one in the lock.
fn locked_version(lock: &str, krate: &str) -> Option<String> {
    let packages: Vec<(String, String, Vec<String>)> = lock
        .split("[[package]]")
        .skip(1)
        .filter_map(|block| {
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                    .map(|v| v.trim_end_matches('"').to_string())
            };
            let deps = block
                .split_once("dependencies = [")
                .map(|(_, rest)| rest.split(']').next().unwrap_or(""))
                .unwrap_or("")
                .lines()
                .map(|l| l.trim().trim_end_matches(',').trim_matches('"').to_string())
                .filter(|l| !l.is_empty())
                .collect();
            Some((field("name")?, field("version")?, deps))
        })
        .collect();
    let ours = packages.iter().find(|(name, _, _)| name == "gisgate")?;
    let entry = ours
        .2
        .iter()
        .find(|d| d.as_str() == krate || d.starts_with(&format!("{krate} ")))?;
    if let Some((_, version)) = entry.split_once(' ') {
        return Some(version.split(' ').next().unwrap_or(version).to_string());
    }
    packages
        .iter()
        .find(|(name, _, _)| name == krate)
        .map(|(_, version, _)| version.clone())
}
