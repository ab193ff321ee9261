//! TLS and HTTP/2 conformance: runs tests/conformance/run.py --quick
//! against the gisgate binary (README, Testing: "TLS and HTTP/2
//! conformance"). Its HTTP/2 checks need Python's `h2`; its TLS part
//! needs a tlsfuzzer checkout in $TLSFUZZER_DIR and says SKIPPED without
//! one (tlsfuzzer is on neither PyPI nor Debian, so CI runs without it).

mod common;

use std::process::Command;

/// Python's `h2` (with hpack) is importable by `python`; else the same
/// loud skip as `real_peer`, or a panic where real peers are required.
fn has_h2(python: &std::path::Path) -> bool {
    let ok = Command::new(python)
        .args(["-c", "import h2, hpack"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("GISGATE_REAL_PEERS").as_deref() == Ok("require") {
            panic!("Python's h2 is not installed, and GISGATE_REAL_PEERS=require (.ci/run installs it)");
        }
        eprintln!("SKIPPED: Python's h2 is not installed; this test checked nothing (.ci/run installs it)");
    }
    ok
}

#[test]
fn the_quick_conformance_run_finds_no_unexpected_failure() {
    let Some(python) = common::real_peer("python3", &[]) else {
        return;
    };
    if !has_h2(&python) {
        return;
    }
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/run.py"
        ))
        .args(["--quick", "--gisgate", env!("CARGO_BIN_EXE_gisgate")])
        .output()
        .expect("run.py runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "conformance run failed:\n{report}");
    // The HTTP/2 part ran whole: a run that checked nothing must not pass.
    assert!(report.contains("HTTP/2: "), "{report}");
    assert!(!report.contains("HTTP/2: 0 passed"), "{report}");
}
