//! Command-line definitions (SPEC §1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gisgate",
    version = version(),
    about = "TLS policy gateway for ArcGIS-style GIS servers: terminates client TLS, applies the site's transport security policy, and re-encrypts every request to the upstream over HTTPS"
)]
pub struct Cli {
    /// Run the gateway with this config (same as `gisgate run --config PATH`).
    #[arg(short = 'c', long, global = false)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run {
        /// The gateway.toml to run with (default: ./gateway.toml, else
        /// /etc/gisgate/gateway.toml).
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
    },
    /// Validate a config and every file it names; print the effective
    /// policy on stdout, errors and warnings on stderr.
    Check {
        /// The gateway.toml to check.
        #[arg(short = 'c', long)]
        config: PathBuf,
        /// Also print what would change relative to this (running) config.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Also connect to the upstream as the gateway would and report
        /// what it saw: its certificate, the TLS version, and the answer
        /// to one GET. Exit 1 on any failure.
        #[arg(long)]
        probe: bool,
        /// The path the probe GETs [default: /arcgis/rest/info?f=json].
        #[arg(long, requires = "probe", value_name = "PATH")]
        probe_path: Option<String>,
    },
    /// Dev certificates, a mock GIS server on loopback and the gateway in
    /// front of it, listening on loopback only.
    Demo {
        /// Listen on the addresses in gateway.toml (the sample's 0.0.0.0:
        /// every interface) instead of loopback only.
        #[arg(long)]
        listen_all: bool,
    },
    /// Only the built-in HTTPS mock GIS server.
    DemoUpstream {
        /// Address to serve HTTPS on.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Certificate and key to serve (default: the dev certificates in certs/).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Private key of --cert (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
    },
    /// Certificate tools.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Print the SHA-256 fingerprint of an HTTPS server's leaf certificate,
    /// ready for `upstream.pin_sha256`.
    UpstreamFingerprint {
        /// The server, as https://host[:port] (a path after it is ignored).
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Show the fields of each certificate in a PEM, DER or PKCS#12 (.pfx, .p12) file.
    Show {
        /// The file; its format is recognised from its content.
        path: PathBuf,
        /// Print a JSON array instead of `Name: value` lines.
        #[arg(long)]
        json: bool,
        /// File holding the PKCS#12 password (one line). The empty password is
        /// tried first; the password can also come from $GISGATE_PKCS12_PASSWORD.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Make a self-signed certificate and private key (key file mode 0600).
    Generate {
        /// Subject common name.
        #[arg(long)]
        cn: String,
        /// Subject alternative name, a DNS name or IP address; repeat for more
        /// (default: the common name).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Validity in days from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Where to write the private key (PEM, PKCS#8, mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// Key algorithm: ECDSA P-256, or RSA for clients that need it.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::Ecdsa)]
        key_type: KeyTypeArg,
        /// RSA key size in bits, with --key-type rsa [default: 2048].
        #[arg(long, value_enum)]
        rsa_bits: Option<RsaBitsArg>,
        /// Replace --cert and --key if they exist (otherwise existing files are refused).
        #[arg(long)]
        force: bool,
    },
    /// Make a certificate signing request (PKCS#10) for an existing key.
    Csr {
        /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long)]
        key: PathBuf,
        /// Subject common name.
        #[arg(long)]
        cn: String,
        /// Subject alternative name, a DNS name or IP address; repeat for more
        /// (default: the common name).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Where to write the request (PEM).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `cert generate --key-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    Ecdsa,
    Rsa,
}

/// `cert generate --rsa-bits`: the sizes aws-lc-rs generates. Below 2048 is
/// refused by browsers; above 4096 costs every handshake for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RsaBitsArg {
    #[value(name = "2048")]
    Bits2048,
    #[value(name = "3072")]
    Bits3072,
    #[value(name = "4096")]
    Bits4096,
}

/// Where `gisgate run` looks for its config when none is given, in order:
/// the working directory, then the system-wide place (as nginx has
/// `/etc/nginx/nginx.conf`).
pub const DEFAULT_CONFIGS: [&str; 2] = ["./gateway.toml", "/etc/gisgate/gateway.toml"];

/// None of the places `gisgate run` looks for a config holds one.
#[derive(Debug, thiserror::Error)]
#[error("no --config given, and neither {} exists; pass --config PATH (or -c PATH), or run `gisgate demo` to write the sample gateway.toml here", .looked_in.join(" nor "))]
pub struct NoConfig {
    pub looked_in: Vec<String>,
}

/// The first of `candidates` that exists, or an error naming them all.
pub fn find_config(candidates: &[&str]) -> Result<PathBuf, NoConfig> {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
        .ok_or_else(|| NoConfig {
            looked_in: candidates.iter().map(|c| c.to_string()).collect(),
        })
}

/// `gisgate --version`: this build's version and its TLS stack's, e.g.
/// `0.1.0 (rustls 0.23.46, aws-lc-rs 1.19.0, AWS-LC 5.12.0)`. The crate
/// versions come from Cargo.lock at build time (build.rs); AWS-LC's from
/// the library linked in.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (rustls {}, aws-lc-rs {}, AWS-LC {})",
            env!("CARGO_PKG_VERSION"),
            env!("GISGATE_RUSTLS_VERSION"),
            env!("GISGATE_AWS_LC_RS_VERSION"),
            aws_lc_rs::awslc_version()
        )
    })
}
