//! The status page, in a real headless browser (Debian's `chromium`): it renders the
//! listener, its group and partitions, the committed lag during a held backlog and after it
//! fell to zero, with the lag chart; actions are refused without the token and done with it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_listener::{kafka_listener, Key};
use kafka_listener_tests::*;

static OPEN: AtomicBool = AtomicBool::new(false);

#[kafka_listener(id = "paged", topics = "${sp.topic}", group_id = "${sp.group}")]
async fn paged(key: Key<String>) {
    let _ = key;
    while !OPEN.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The browser, or `None` (skip) when it is not installed and the suite does not require it.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return Some(PathBuf::from(
                    String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                ));
            }
        }
    }
    assert!(
        std::env::var("KAFKA_REQUIRE_BROKER").is_err(),
        "chromium is not installed (apt-get install chromium; .ci/run does)"
    );
    eprintln!("chromium not installed: status page test skipped");
    None
}

/// The page's DOM after its scripts ran (they fetch /status).
fn rendered(browser: &PathBuf, addr: SocketAddr) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line")
}

async fn total_lag(addr: SocketAddr) -> Option<i64> {
    let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/status"))
        .await
        .expect("http");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let parts = v["listeners"][0]["partitions"].as_array()?;
    if parts.len() != 2 {
        return None;
    }
    parts.iter().map(|p| p["lag"].as_i64()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_lag_falling_to_zero_and_refuses_actions_without_the_token() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let Some(browser) = chromium() else { return };
    let (topic, group) = (unique("sp"), unique("sp-g"));
    create_topic(&bs, &topic, 2).await;
    produce_seq(&bs, &topic, 0, 200).await;
    let app = start_listener(
        &bs,
        "paged",
        &[
            ("sp.topic", topic.as_str()),
            ("sp.group", group.as_str()),
            ("kafka.management.port", "0"),
            ("kafka.management.lag-interval", "250ms"),
            ("kafka.management.token", "s3cret"),
        ],
    )
    .await;
    let addr = app.management_address().expect("the endpoint runs");

    let deadline = Instant::now() + Duration::from_secs(30);
    while total_lag(addr).await != Some(200) {
        assert!(Instant::now() < deadline, "lag 200 during the backlog");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = {
        let b = browser.clone();
        tokio::task::spawn_blocking(move || rendered(&b, addr))
            .await
            .expect("browser")
    };
    for needed in [
        "data-listener=\"paged\"",
        &format!("group {group}"),
        "committed lag 200",
        &format!("data-partition=\"{topic}-0\""),
        &format!("data-partition=\"{topic}-1\""),
        "actions need the management token",
    ] {
        assert!(
            during.contains(needed),
            "{needed:?} not on the page:\n{during}"
        );
    }

    OPEN.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(30);
    while total_lag(addr).await != Some(0) {
        assert!(Instant::now() < deadline, "lag 0 once handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = {
        let b = browser.clone();
        tokio::task::spawn_blocking(move || rendered(&b, addr))
            .await
            .expect("browser")
    };
    assert!(after.contains("committed lag 0"), "{after}");
    assert!(after.contains("200 records finished"), "{after}");
    // The chart drew the fall: a polyline with points, from 200 to 0.
    assert!(after.contains("<polyline points="), "{after}");

    // Actions: refused without the token or with a wrong one, done with it.
    let pause = "/actions/paged/pause";
    let codes = tokio::task::spawn_blocking(move || {
        (
            post(addr, pause, None),
            post(addr, pause, Some("guess")),
            post(addr, pause, Some("s3cret")),
        )
    })
    .await
    .expect("posts");
    assert_eq!(codes, (401, 401, 200));
    assert!(app.container("paged").expect("container").is_paused());
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
}

#[kafka_listener(id = "tokenless", topics = "sp-tokenless", group_id = "sp-tokenless")]
async fn tokenless(key: Key<String>) {
    let _ = key;
}

/// Without `kafka.management.token` the page is read-only: every action is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_action_is_refused() {
    init_logging();
    let app = embedded_app("tokenless")
        .set("kafka.management.port", 0)
        .start()
        .await
        .expect("starts on the embedded cluster");
    let addr = app.management_address().expect("the endpoint runs");
    let codes = tokio::task::spawn_blocking(move || {
        [
            post(addr, "/actions/tokenless/stop", None),
            post(addr, "/actions/tokenless/pause", Some("anything")),
        ]
    })
    .await
    .expect("posts");
    assert_eq!(codes, [403, 403]);
    let container = app.container("tokenless").expect("container").clone();
    assert!(container.is_running() && !container.is_paused());
    app.shutdown().await;
}
