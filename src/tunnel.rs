//! WebSocket tunnels. After both sides switched protocols (RFC 6455 §4),
//! bytes are copied both ways until either side closes; ArcGIS stream
//! services use wss. The client connection's task waits for its tunnel
//! (`listen`), so an open tunnel keeps its connection permit and counts as
//! an open connection for the drain: it gets until the end of
//! `limits.shutdown_grace`, then closes with the process.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;

use crate::listen::ConnInfo;

/// Starts copying once both upgrades have completed. The connection is
/// marked as tunnelled before the 101 is sent, so its task never ends
/// between the upgrade and the tunnel's start.
pub fn splice(conn: Arc<ConnInfo>, client: OnUpgrade, upstream: OnUpgrade) {
    conn.activity.tunnel_opened();
    let open = Open(conn);
    tokio::spawn(async move {
        let _open = open;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!("upgrade not completed: {e}");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!("upgraded connection ended: {e}");
        }
    });
}

/// Marks the tunnel closed however its task ends.
struct Open(Arc<ConnInfo>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.activity.tunnel_closed();
    }
}
