//! The reload gauges (SPEC §6.1). In its own test binary: the gauges are
//! process-wide, and no other test may reload while this one reads them.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_reload_gauge_follows_failure_and_success() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    // Reloads only on request: a watcher reacting to the same writes would
    // make the counts racy.
    let overlay = "[reload]\nwatch = false\n";
    let tg = site.gateway(&up, overlay).await;
    let good = site.config(up.addr, overlay);
    std::fs::write(&tg.config_path, format!("{good}\n[admin\n")).unwrap();
    assert!(tg.gw.reload().await.is_err());
    let m = tg.metrics().await;
    assert!(m.contains("gisgate_config_last_reload_successful 0"), "{m}");
    assert!(
        m.contains("gisgate_config_reloads_total{result=\"failure\"} 1"),
        "{m}"
    );

    std::fs::write(&tg.config_path, &good).unwrap();
    tg.gw.reload().await.unwrap();
    let m = tg.metrics().await;
    assert!(m.contains("gisgate_config_last_reload_successful 1"), "{m}");
    assert!(
        m.contains("gisgate_config_reloads_total{result=\"success\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("gisgate_config_last_reload_success_timestamp_seconds"),
        "{m}"
    );
}
