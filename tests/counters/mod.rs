//! Counters on a test gateway's metrics page. The recorder is the test
//! process's, shared by every gateway a test file starts: tests compare a
//! counter before and after, never its absolute value.

use std::time::Duration;

use crate::common::{eventually, TestGateway};

/// The value of `series` (`name{labels}` as rendered), 0 when absent.
pub async fn counter(tg: &TestGateway, series: &str) -> u64 {
    let page = tg.metrics().await;
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `series` reaches `at_least` (a connection's outcome may be
/// counted after the client has seen it).
pub async fn counted(tg: &TestGateway, series: &str, at_least: u64) {
    eventually(Duration::from_secs(10), || async {
        counter(tg, series).await >= at_least
    })
    .await;
}
