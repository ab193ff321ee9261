//! Every saved fuzz input, replayed through its target's property
//! (`gisgate::fuzzing`) on the stable toolchain: the corpora the fuzzers
//! grew (`fuzz/corpus/<target>/`) and every input that once failed
//! (`fuzz/regressions/<target>/`). A crash a fuzzer found stays a test of
//! `cargo test`, with no nightly toolchain or libFuzzer needed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use gisgate::fuzzing::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<name>/`, sorted; none when it is missing.
fn saved_inputs(kind: &str, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(name)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs `name`'s property over each saved input; panics naming every file
/// it fails on.
fn replay(name: &str) {
    let body = target(name).expect("a target of gisgate::fuzzing");
    let mut failed = Vec::new();
    let mut count = 0;
    for file in saved_inputs("corpus", name)
        .into_iter()
        .chain(saved_inputs("regressions", name))
    {
        let data = std::fs::read(&file).expect("readable input");
        count += 1;
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(count > 0, "no saved input for {name}");
    assert!(
        failed.is_empty(),
        "{name} fails on {} of {count} inputs:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

macro_rules! replays {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
        /// The tests above cover exactly the targets there are.
        const REPLAYED: &[&str] = &[$(stringify!($name)),*];
    };
}

// One test per target, named after it: `cargo test --test fuzz_corpus tls_server`.
replays!(
    canonical_path,
    forwarded_for,
    host_location,
    cors_origin,
    config,
    certificates,
    tls_server,
    tls_client,
    proxy_header,
);

#[test]
fn every_target_has_a_fuzz_binary_a_corpus_and_a_replay_test() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, REPLAYED);
    let binaries: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for name in &names {
        assert!(
            binaries.iter().any(|b| b == name),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
        assert!(
            !saved_inputs("corpus", name).is_empty(),
            "fuzz/corpus/{name}/ is empty"
        );
    }
    assert_eq!(
        binaries.len(),
        names.len(),
        "a fuzz target without a body: {binaries:?}"
    );
}

#[test]
fn every_saved_input_directory_names_a_target() {
    for kind in ["corpus", "regressions"] {
        for entry in std::fs::read_dir(fuzz_dir().join(kind)).expect("fuzz dir") {
            let entry = entry.unwrap();
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                target(&name).is_some(),
                "fuzz/{kind}/{name}/ is no target's"
            );
        }
    }
}

/// Writes the TLS targets' seeds: a real ClientHello (tls_server) and a
/// real server's first flight over TLS 1.2 and 1.3 (tls_client), each
/// whole and in small chunks with waits. Run by hand when the seeds should
/// change: `cargo test --test fuzz_corpus -- --ignored write_tls_seeds`.
#[test]
#[ignore]
fn write_tls_seeds() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(issued.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(issued.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    for (version, label) in [
        (&rustls::version::TLS12, "tls12"),
        (&rustls::version::TLS13, "tls13"),
    ] {
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .unwrap();
        let mut client =
            rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        server.read_tls(&mut &hello[..]).unwrap();
        server.process_new_packets().unwrap();
        let mut flight = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut flight).unwrap();
        }
        for (name, bytes) in [("tls_server", &hello), ("tls_client", &flight)] {
            // Prefix: read chunk size (0: all at once), which calls wait.
            for (prefix, how) in [([0u8, 0u8], "whole"), ([7, 0b0101_0101], "chunked")] {
                let mut seed = prefix.to_vec();
                seed.extend_from_slice(bytes);
                let file = fuzz_dir()
                    .join("corpus")
                    .join(name)
                    .join(format!("{label}-{how}"));
                std::fs::write(file, seed).unwrap();
            }
        }
    }
}

/// Key files are made here, at test time, never committed (a secret
/// scanner cannot tell a fuzzed fragment from a real key): the
/// certificates property over a fresh PKCS#8 key, its certificate with it,
/// cut short at every 64 bytes, and relabelled as encrypted.
#[test]
fn certificates_with_keys_made_at_test_time() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = key.serialize_pem();
    let mut inputs = vec![
        pem.clone().into_bytes(),
        format!("{}{pem}", cert.pem()).into_bytes(),
        pem.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
            .into_bytes(),
    ];
    inputs.extend((1..pem.len() / 64).map(|n| pem.as_bytes()[..n * 64].to_vec()));
    for data in inputs {
        gisgate::fuzzing::certificate_files(&data);
    }
}

/// No saved input holds a private key's PEM label: fuzzed fragments of
/// keys look like keys to a secret scanner (see the test above).
#[test]
fn no_saved_input_holds_a_private_key() {
    for kind in ["corpus", "regressions"] {
        for name in REPLAYED {
            for file in saved_inputs(kind, name) {
                let data = std::fs::read(&file).unwrap();
                assert!(
                    !data.windows(11).any(|w| w == b"PRIVATE KEY"),
                    "{} holds a private key label; make such inputs at test time",
                    file.display()
                );
            }
        }
    }
}
