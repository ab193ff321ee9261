//! The `gisgate cert ...` and `gisgate upstream-fingerprint` commands.
//!
//! Everything here returns values or printable strings; argument parsing and printing
//! live with the CLI so that these functions stay testable.

mod csr;
mod fingerprint;
mod generate;
mod show;

pub use csr::make_csr;
pub use fingerprint::{
    fingerprint_report, upstream_fingerprint, FingerprintError, FINGERPRINT_TIMEOUT,
};
pub use generate::*;
pub use show::{show, show_json, show_text, ShowError, PKCS12_PASSWORD_ENV};

/// What the certificate tools' tests share.
#[cfg(test)]
mod test_support {
    /// Whether `openssl` is installed, for the tests that check our output
    /// with it.
    pub(super) fn openssl_available() -> bool {
        std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }
}
