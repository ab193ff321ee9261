//! `gisgate cert ...` with certificates as ArcGIS administrators have them
//! (issue 23, item 3): `show` reads PEM, DER and PKCS#12; `generate` makes
//! ECDSA or RSA keys of a chosen size and overwrites only with `--force`; and
//! every option of every command says what it does in `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gisgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gisgate"))
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn generate(dir: &Path, name: &str, extra: &[&str]) -> (Output, PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = gisgate()
        .args(["cert", "generate", "--cn", "gis.example.com"])
        .args(extra)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    (out, cert, key)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------- --help

/// The subcommand names listed under `Commands:` in a help text.
fn commands_in(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Option and argument lines of a help text that have no description.
fn undescribed(help: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let lines: Vec<&str> = help.lines().collect();
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("Options:") || line.starts_with("Arguments:") {
            in_list = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_list = false;
        }
        let item = line.trim_start();
        if !in_list || !(item.starts_with('-') || item.starts_with('<') || item.starts_with('[')) {
            continue;
        }
        // `--days <DAYS>  Validity in days`: the description follows two spaces.
        let described = item
            .split_once("  ")
            .map(|(_, rest)| !rest.trim().is_empty())
            .unwrap_or(false);
        // Clap puts a long description on the next, deeper indented line.
        let next_line = lines
            .get(i + 1)
            .map(|n| {
                let t = n.trim_start();
                n.len() - t.len() > line.len() - item.len() && !t.is_empty() && !t.starts_with('-')
            })
            .unwrap_or(false);
        if !described && !next_line {
            bad.push(item.trim_end().to_string());
        }
    }
    bad
}

fn help_of(path: &[&str]) -> String {
    let out = gisgate().args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help: {out:?}");
    text(&out.stdout)
}

#[test]
fn every_option_of_every_subcommand_has_a_help_line() {
    let mut paths: Vec<Vec<String>> = vec![vec![]];
    let mut i = 0;
    while i < paths.len() {
        let path: Vec<&str> = paths[i].iter().map(String::as_str).collect();
        let help = help_of(&path);
        for sub in commands_in(&help) {
            let mut p = paths[i].clone();
            p.push(sub);
            paths.push(p);
        }
        i += 1;
    }
    let joined: Vec<String> = paths.iter().map(|p| p.join(" ")).collect();
    for expected in ["run", "check", "cert show", "cert generate", "cert csr"] {
        assert!(joined.iter().any(|p| p == expected), "{joined:?}");
    }
    let mut missing = Vec::new();
    for path in &paths {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        for item in undescribed(&help_of(&path)) {
            missing.push(format!("gisgate {} : {item}", path.join(" ")));
        }
    }
    assert!(
        missing.is_empty(),
        "options without a help line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_help_check_notices_an_undescribed_option() {
    let help = "Usage: x\n\nOptions:\n      --cn <CN>      \n      --days <DAYS>  Validity in days [default: 365]\n  -h, --help         Print help\n";
    assert_eq!(undescribed(help), ["--cn <CN>"]);
}

#[test]
fn cert_generate_help_shows_force_key_type_and_rsa_bits() {
    let help = help_of(&["cert", "generate"]);
    for option in ["--force", "--key-type <KEY_TYPE>", "--rsa-bits <RSA_BITS>"] {
        assert!(help.contains(option), "{option} missing:\n{help}");
    }
    assert!(help.contains("[possible values: ecdsa, rsa]"), "{help}");
}

// ---------------------------------------------------------------- --force

#[test]
fn cert_generate_refuses_to_overwrite_an_existing_key_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (first, cert, key) = generate(dir.path(), "gw", &[]);
    assert!(first.status.success(), "{first:?}");
    let (cert_before, key_before) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let (again, _, _) = generate(dir.path(), "gw", &[]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(
        err.contains(&format!("{}: ", key.display())) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cert).unwrap(), cert_before);
    assert_eq!(std::fs::read(&key).unwrap(), key_before);
}

#[test]
fn cert_generate_refuses_to_overwrite_an_existing_certificate_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("gw.crt");
    std::fs::write(&cert, "the certificate ArcGIS Server uses\n").unwrap();
    let (out, _, key) = generate(dir.path(), "gw", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}: ", cert.display())) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&cert).unwrap(),
        "the certificate ArcGIS Server uses\n"
    );
    assert!(!key.exists(), "nothing is written when refusing");
}

#[test]
fn cert_generate_with_force_replaces_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (first, cert, key) = generate(dir.path(), "gw", &[]);
    assert!(first.status.success());
    let (cert_before, key_before) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let (again, _, _) = generate(dir.path(), "gw", &["--force"]);
    assert!(again.status.success(), "{again:?}");
    assert_ne!(std::fs::read(&cert).unwrap(), cert_before);
    assert_ne!(std::fs::read(&key).unwrap(), key_before);
}

// ---------------------------------------------------------------- key types

fn public_key_line(cert: &Path) -> String {
    let out = openssl(&["x509", "-noout", "-text", "-in", s(cert)]);
    text(&out.stdout)
        .lines()
        .find(|l| l.contains("Public-Key:") || l.contains("Public Key Algorithm"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn cert_generate_makes_a_3072_bit_rsa_key_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cert, key) = generate(
        dir.path(),
        "rsa",
        &["--key-type", "rsa", "--rsa-bits", "3072"],
    );
    assert!(out.status.success(), "{out:?}");
    let x509 = text(&openssl(&["x509", "-noout", "-text", "-in", s(&cert)]).stdout);
    assert!(
        x509.contains("Public Key Algorithm: rsaEncryption"),
        "{x509}"
    );
    assert!(x509.contains("Public-Key: (3072 bit)"), "{x509}");
    assert!(
        x509.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{x509}"
    );
    let pkey = text(&openssl(&["pkey", "-noout", "-text", "-in", s(&key)]).stdout);
    assert!(pkey.contains("Private-Key: (3072 bit"), "{pkey}");
    // The key and certificate belong together: openssl signs and verifies with them.
    let pub_of_key = openssl(&["pkey", "-pubout", "-in", s(&key)]).stdout;
    let pub_of_cert = openssl(&["x509", "-noout", "-pubkey", "-in", s(&cert)]).stdout;
    assert_eq!(pub_of_key, pub_of_cert);
}

#[test]
fn cert_generate_defaults_to_ecdsa_p256_and_rsa_to_2048_bits() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cert, _) = generate(dir.path(), "ec", &[]);
    assert!(out.status.success());
    let x509 = text(&openssl(&["x509", "-noout", "-text", "-in", s(&cert)]).stdout);
    assert!(
        x509.contains("Public-Key: (256 bit)") && x509.contains("prime256v1"),
        "{x509}"
    );
    let (out, cert, _) = generate(dir.path(), "rsa", &["--key-type", "rsa"]);
    assert!(out.status.success());
    assert!(public_key_line(&cert).contains("rsaEncryption"));
    let x509 = text(&openssl(&["x509", "-noout", "-text", "-in", s(&cert)]).stdout);
    assert!(x509.contains("Public-Key: (2048 bit)"), "{x509}");
}

#[test]
fn cert_generate_refuses_rsa_sizes_other_than_2048_3072_4096() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, key) = generate(
        dir.path(),
        "rsa",
        &["--key-type", "rsa", "--rsa-bits", "1024"],
    );
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("[possible values: 2048, 3072, 4096]"), "{err}");
    assert!(!key.exists());
    let (out, _, _) = generate(dir.path(), "ec", &["--rsa-bits", "3072"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--rsa-bits needs --key-type rsa: {out:?}"
    );
    assert!(text(&out.stderr).contains("--key-type rsa"), "{out:?}");
}

// ---------------------------------------------------------------- show

/// The identifying lines of `cert show`'s first certificate.
fn identity(show: &str) -> Vec<String> {
    let first = show.split("\n\n").next().unwrap();
    first
        .lines()
        .filter(|l| {
            [
                "Owner:",
                "Issuer:",
                "Serial number:",
                "SHA256:",
                "Valid from:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

fn show(path: &Path, extra: &[&str], env: Option<&str>) -> Output {
    let mut cmd = gisgate();
    cmd.args(["cert", "show"]).args(extra).arg(path);
    cmd.env_remove("GISGATE_PKCS12_PASSWORD");
    if let Some(pw) = env {
        cmd.env("GISGATE_PKCS12_PASSWORD", pw);
    }
    cmd.output().unwrap()
}

/// A generated certificate as PEM, DER, and PKCS#12 with and without a password.
struct Formats {
    _dir: tempfile::TempDir,
    pem: PathBuf,
    der: PathBuf,
    pfx_empty: PathBuf,
    pfx_protected: PathBuf,
    pfx_legacy: PathBuf,
    password_file: PathBuf,
}

fn formats() -> Formats {
    let dir = tempfile::tempdir().unwrap();
    let (out, pem, key) = generate(dir.path(), "gw", &["--key-type", "rsa"]);
    assert!(out.status.success());
    let p = |n: &str| dir.path().join(n);
    openssl(&[
        "x509",
        "-in",
        s(&pem),
        "-outform",
        "DER",
        "-out",
        s(&p("gw.cer")),
    ]);
    let export = |out: &Path, pass: &str, legacy: bool| {
        let mut args = vec![
            "pkcs12",
            "-export",
            "-in",
            s(&pem),
            "-inkey",
            s(&key),
            "-out",
            s(out),
            "-passout",
            pass,
        ];
        if legacy {
            args.push("-legacy");
        }
        openssl(&args);
    };
    export(&p("empty.pfx"), "pass:", false);
    export(&p("protected.pfx"), "pass:Esri ArcGIS 11", false);
    export(&p("legacy.p12"), "pass:Esri ArcGIS 11", true);
    std::fs::write(p("pfx.pass"), "Esri ArcGIS 11\n").unwrap();
    Formats {
        pem,
        der: p("gw.cer"),
        pfx_empty: p("empty.pfx"),
        pfx_protected: p("protected.pfx"),
        pfx_legacy: p("legacy.p12"),
        password_file: p("pfx.pass"),
        _dir: dir,
    }
}

#[test]
fn cert_show_prints_the_same_certificate_from_pem_der_and_pkcs12() {
    let f = formats();
    let pem = show(&f.pem, &[], None);
    assert!(pem.status.success(), "{pem:?}");
    let expected = identity(&text(&pem.stdout));
    assert_eq!(expected.len(), 5, "{expected:?}");
    let pw = ["--password-file", s(&f.password_file)];
    for (what, out) in [
        ("DER", show(&f.der, &[], None)),
        ("PKCS#12, empty password", show(&f.pfx_empty, &[], None)),
        ("PKCS#12, password file", show(&f.pfx_protected, &pw, None)),
        (
            "PKCS#12 -legacy, password file",
            show(&f.pfx_legacy, &pw, None),
        ),
        (
            "PKCS#12, password in the environment",
            show(&f.pfx_protected, &[], Some("Esri ArcGIS 11")),
        ),
    ] {
        assert!(out.status.success(), "{what}: {out:?}");
        assert_eq!(identity(&text(&out.stdout)), expected, "{what}");
    }
}

#[test]
fn cert_show_marks_the_certificate_of_a_pfx_key_as_a_private_key_entry() {
    let f = formats();
    let out = show(&f.pfx_empty, &["--json"], None);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Entry type"], "PrivateKeyEntry");
    assert!(!text(&out.stdout).contains("PRIVATE KEY"));
    let out = show(&f.der, &["--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Entry type"], "trustedCertEntry");
}

#[test]
fn cert_show_of_a_protected_pfx_without_a_password_says_how_to_give_one() {
    let f = formats();
    let out = show(&f.pfx_protected, &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}: wrong password", f.pfx_protected.display()))
            && err.contains("--password-file")
            && err.contains("GISGATE_PKCS12_PASSWORD"),
        "{err}"
    );
}

#[test]
fn cert_show_with_a_wrong_password_fails_without_echoing_it() {
    let f = formats();
    std::fs::write(&f.password_file, "not it\n").unwrap();
    let out = show(
        &f.pfx_protected,
        &["--password-file", s(&f.password_file)],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("wrong password"), "{err}");
    assert!(!err.contains("not it"), "{err}");
}
