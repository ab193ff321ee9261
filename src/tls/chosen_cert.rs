//! Which certificate a client connection's handshake chose, for
//! `tls.strict_sni_host`. rustls' unbuffered server connection does not
//! expose the SNI it saw; the certificate resolver, which rustls calls
//! synchronously inside the handshake (resumed sessions included), notes
//! its choice in a task-local slot that the handshake's caller provides.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use super::certs::CertFacts;

tokio::task_local! {
    static CHOSEN: RefCell<Option<Arc<CertFacts>>>;
}

/// Runs `handshake`, returning its output and the facts of the certificate
/// the resolver last chose during it (`None` if it chose none).
pub async fn noting_certificate<F: Future>(handshake: F) -> (F::Output, Option<Arc<CertFacts>>) {
    CHOSEN
        .scope(RefCell::new(None), async {
            let out = handshake.await;
            (out, CHOSEN.with(|c| c.borrow_mut().take()))
        })
        .await
}

/// Called by the resolver: outside [`noting_certificate`] (a test's own
/// handshake) there is nowhere to note it, and nothing needs it.
pub(super) fn note(facts: &Arc<CertFacts>) {
    let _ = CHOSEN.try_with(|c| *c.borrow_mut() = Some(facts.clone()));
}
