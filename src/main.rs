//! The `gisgate` binary: parse arguments, set up logging, run a subcommand.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use gisgate::cli::{self, CertCommand, Cli, Command, KeyTypeArg, RsaBitsArg};
use gisgate::tls::certs::KeyType;
use gisgate::tls::pkcs12::Password;
use gisgate::{certtool, check, config, demo, logging, run};

/// Per request the proxy allocates and frees many small buffers (headers,
/// TLS records, futures); mimalloc's thread-local free lists are cheaper
/// for that pattern than glibc's malloc (see README, Performance). Built
/// with `no_thp` (Cargo.toml): with transparent huge pages, mimalloc's
/// arenas cost 10 MiB of idle RSS and ~11 KiB per idle connection. And
/// the `v2` series: v3 returns a freed page to the OS only 1 s after it is
/// freed and then only when a later page is freed, so what the last
/// second of a burst freed stays resident while the gateway idles (7.2 to
/// 11.8 KiB per idle connection by when the burst ended; v2, with 10 ms:
/// 7.6, as fast per request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match (cli.command, cli.config) {
        (Some(c), None) => c,
        (None, Some(config)) => Command::Run {
            config: Some(config),
        },
        (Some(_), Some(_)) => {
            eprintln!(
                "gisgate: give --config either alone or after `run`, not with another command"
            );
            return ExitCode::from(2);
        }
        (None, None) => {
            eprintln!("gisgate: nothing to do; try `gisgate run --config gateway.toml` or `gisgate demo` (see --help)");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Run { config } => run_gateway(config),
        Command::Check {
            config,
            against,
            probe,
            probe_path,
        } => {
            let (report, ok) = check::report(&config, against.as_deref());
            eprint!("{}", report.problems);
            print!("{}", report.summary);
            if !ok || !probe {
                return exit(ok);
            }
            let path = probe_path.unwrap_or_else(|| gisgate::probe::DEFAULT_PATH.into());
            with_runtime(async move {
                let probe = check::probe(&config, &path).await;
                print!("{}", probe.seen);
                match probe.failure {
                    None => {
                        println!("upstream probe: ok");
                        Ok(())
                    }
                    Some(why) => Err(format!("upstream probe failed: {why}")),
                }
            })
        }
        Command::Demo { listen_all } => with_runtime(demo::run(listen_all)),
        Command::DemoUpstream { listen, cert, key } => {
            init_plain_logging();
            with_runtime(demo::run_upstream(listen, cert, key))
        }
        Command::Cert(c) => cert_command(c),
        Command::UpstreamFingerprint { url } => with_runtime(async move {
            let fp = certtool::upstream_fingerprint(&url).await?;
            print!("{}", certtool::fingerprint_report(&url, &fp));
            Ok::<(), certtool::FingerprintError>(())
        }),
    }
}

fn run_gateway(given: Option<PathBuf>) -> ExitCode {
    let path = match &given {
        Some(p) => p.clone(),
        None => match cli::find_config(&cli::DEFAULT_CONFIGS) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("gisgate: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let settings = match config::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("gisgate: invalid config, not starting");
            return ExitCode::FAILURE;
        }
    };
    logging::init(&settings.log);
    if given.is_some() {
        tracing::info!("config {}", path.display());
    } else {
        tracing::info!(
            "config {} (no --config given; looked for {})",
            path.display(),
            cli::DEFAULT_CONFIGS.join(", then ")
        );
    }
    gisgate::task::log_panics();
    let runtime = match run::runtime(settings.server.worker_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gisgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn cert_command(c: CertCommand) -> ExitCode {
    let result: Result<(), String> = match c {
        CertCommand::Show {
            path,
            json,
            password_file,
        } => show_passwords(password_file.as_deref()).and_then(|passwords| {
            certtool::show(&path, &passwords)
                .map_err(|e| e.to_string())
                .map(|facts| {
                    if json {
                        println!("{}", certtool::show_json(&facts));
                    } else {
                        print!("{}", certtool::show_text(&facts));
                    }
                })
        }),
        CertCommand::Generate {
            cn,
            sans,
            days,
            cert,
            key,
            key_type,
            rsa_bits,
            force,
        } => {
            if rsa_bits.is_some() && key_type != KeyTypeArg::Rsa {
                usage_error(
                    &["cert", "generate"],
                    "--rsa-bits is the size of an RSA key: add --key-type rsa",
                );
            }
            let opts = certtool::GenerateOptions {
                cn,
                sans,
                days,
                cert_out: cert.clone(),
                key_out: key.clone(),
                key_type: match key_type {
                    KeyTypeArg::Ecdsa => KeyType::Ecdsa,
                    KeyTypeArg::Rsa => KeyType::Rsa,
                },
                rsa_size: match rsa_bits.unwrap_or(RsaBitsArg::Bits2048) {
                    RsaBitsArg::Bits2048 => rcgen::RsaKeySize::_2048,
                    RsaBitsArg::Bits3072 => rcgen::RsaKeySize::_3072,
                    RsaBitsArg::Bits4096 => rcgen::RsaKeySize::_4096,
                },
                overwrite: force,
            };
            certtool::generate_self_signed(&opts)
                .map_err(|e| e.to_string())
                .map(|facts| {
                    println!(
                        "wrote {} (serial {}, SHA256 {}) and {} (mode 0600)",
                        cert.display(),
                        facts.serial_number,
                        facts.sha256,
                        key.display()
                    );
                })
        }
        CertCommand::Csr { key, cn, sans, out } => certtool::make_csr(&key, &cn, &sans)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                std::fs::write(&out, pem).map_err(|e| format!("{}: {e}", out.display()))?;
                println!("wrote {}", out.display());
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gisgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exits 2 with clap's usage error format, showing the subcommand's usage.
fn usage_error(path: &[&str], message: &str) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let mut cmd = &mut cli;
    for name in path {
        cmd = cmd
            .find_subcommand_mut(name)
            .expect("a subcommand defined in cli.rs");
    }
    cmd.error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// The passwords `cert show` tries on a PKCS#12 bundle: the empty one (what
/// many exports use), then the one from --password-file, or else from the
/// environment.
fn show_passwords(file: Option<&Path>) -> Result<Vec<Password>, String> {
    let mut passwords = vec![Password::default()];
    if let Some(file) = file {
        passwords.push(Password::from_file(file).map_err(|e| e.to_string())?);
    } else if let Some(value) = std::env::var_os(certtool::PKCS12_PASSWORD_ENV) {
        let text = value
            .into_string()
            .map_err(|_| format!("${} is not valid UTF-8", certtool::PKCS12_PASSWORD_ENV))?;
        passwords.push(Password::new(text));
    }
    Ok(passwords)
}

fn init_plain_logging() {
    logging::init(&config::Log {
        format: config::LogFormat::Text,
        level: "info".into(),
    });
}

fn with_runtime<E: std::fmt::Display, F: std::future::Future<Output = Result<(), E>>>(
    f: F,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gisgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gisgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
