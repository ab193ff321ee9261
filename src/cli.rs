//! Command-line definitions (SPEC §1).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gisgate",
    version,
    about = "TLS policy gateway for ArcGIS-style GIS servers: terminates client TLS, applies the site's transport security policy, and re-encrypts every request to the upstream over HTTPS"
)]
pub struct Cli {
    /// Run the gateway with this config (same as `gisgate run --config PATH`).
    #[arg(long, global = false)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run {
        /// The gateway.toml to run with.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config and every file it names; print the effective policy.
    Check {
        /// The gateway.toml to check.
        #[arg(long)]
        config: PathBuf,
        /// Also print what would change relative to this (running) config.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Dev certificates, a mock GIS server on loopback and the gateway in front of it.
    Demo,
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
