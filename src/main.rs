//! The `gisgate` binary: parse arguments, set up logging, run a subcommand.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gisgate::cli::{self, CertCommand, Cli, Command};
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
            let fp = certtool::upstream_fingerprint(&url)
                .await
                .map_err(|e| e.to_string())?;
            print!("{}", certtool::fingerprint_report(&url, &fp));
            Ok(())
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
    let result: Result<(), String> =
        match c {
            CertCommand::Show { path, json } => certtool::show(&path)
                .map_err(|e| e.to_string())
                .map(|facts| {
                    if json {
                        println!("{}", certtool::show_json(&facts));
                    } else {
                        print!("{}", certtool::show_text(&facts));
                    }
                }),
            CertCommand::Generate {
                cn,
                sans,
                days,
                cert,
                key,
            } => {
                let opts = certtool::GenerateOptions {
                    cn,
                    sans,
                    days,
                    cert_out: cert.clone(),
                    key_out: key.clone(),
                    ..Default::default()
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

fn init_plain_logging() {
    logging::init(&config::Log {
        format: config::LogFormat::Text,
        level: "info".into(),
    });
}

fn with_runtime<F: std::future::Future<Output = Result<(), String>>>(f: F) -> ExitCode {
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
