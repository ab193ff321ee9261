//! Label values come from bounded sets (SPEC §6.1). In its own test
//! binary: the metrics recorder is process-wide, and no other test may add
//! series while this one counts them.

mod common;

use common::*;
use http::StatusCode;

fn series(exposition: &str) -> Vec<&str> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_stay_bounded_under_distinct_paths_and_clients() {
    let env = Env::new()
        .config("[client_ip]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
        .start()
        .await;
    let tls = tls_connect(env.https(), client_config(env.site.ca.roots(), &[b"h2"]))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut send = |i: u32| {
        let req = get(
            &format!("/arcgis/rest/services/layer{i}/MapServer?f=json&token=t{i}"),
            &[(
                "x-forwarded-for",
                &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            )],
        );
        sender.send_request(req)
    };
    send(0).await.unwrap();
    // A request is counted when its response body is done, which can be
    // after the client has the head: wait for its series before counting.
    eventually(std::time::Duration::from_secs(10), || async {
        env.metrics()
            .await
            .contains("gisgate_requests_total{listener=\"https\",route=\"proxy\",status=\"200\"}")
    })
    .await;
    let before_text = env.metrics().await;
    let before = series(&before_text).len();
    for i in 1..=1000 {
        assert_eq!(send(i).await.unwrap().status(), StatusCode::OK);
    }
    let m = env.metrics().await;
    let grown: Vec<&str> = series(&m)
        .into_iter()
        .filter(|l| {
            let name = l.rsplit_once(' ').map(|(n, _)| n).unwrap_or(l);
            !before_text.contains(name)
        })
        .collect();
    assert_eq!(
        series(&m).len(),
        before,
        "the exposition grew with paths or clients: {grown:?}"
    );
    assert!(!m.contains("layer"), "a path leaked into a label");
    assert!(
        !m.contains("10.0.3"),
        "a client address leaked into a label"
    );
}
