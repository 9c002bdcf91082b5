//! Keep-alive: an opt-in periodic GET so a free Space does not sleep after 48 h without visits.
//!
//! On by `ENTRYPOINT_KEEPALIVE=1`; pings `ENTRYPOINT_KEEPALIVE_URL` (default
//! `https://$SPACE_HOST/healthz`) every `ENTRYPOINT_KEEPALIVE_INTERVAL` (default 6 h) plus up to
//! 10 % random jitter. On the Space's own URL it sends `HF_TOKEN` as a bearer token (settings
//! decide that), because a private Space answers 404 to anonymous requests. Whether a request from the Space itself counts as a visit is not
//! documented, so the guide recommends an external monitor as the sure way; this is the
//! zero-setup option. Quiet by design: one line when it starts, then lines only when a ping
//! fails (and one when it works again).

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::settings::KeepaliveSettings;

/// Bound for one request (invariant 6: every network call has a timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Ping until `shutdown` is cancelled. Never fails: a broken keep-alive must not stop the service.
pub async fn run(settings: KeepaliveSettings, shutdown: CancellationToken) {
    run_with_timeout(settings, REQUEST_TIMEOUT, shutdown).await
}

async fn run_with_timeout(
    settings: KeepaliveSettings,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let shown = display_url(&settings.url);
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!(
            "openclaw-space-keepalive/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!("keep-alive disabled: cannot build an HTTP client: {e}");
            return;
        }
    };
    info!(
        "keep-alive on: GET {shown} every {:?} (+ up to 10% jitter)",
        settings.interval
    );

    let mut failing = false;
    loop {
        let jitter = settings
            .interval
            .mul_f64(rand::rng().random_range(0.0..0.1));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.interval + jitter) => {}
        }
        // The request races the shutdown too: a hanging server must not delay the stop.
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = ping(&client, &settings) => r,
        };
        match result {
            Ok(()) if failing => {
                info!("keep-alive: {shown} answers again");
                failing = false;
            }
            Ok(()) => {}
            Err(why) => {
                warn!("keep-alive: GET {shown} failed: {why}");
                failing = true;
            }
        }
    }
}

/// One GET; any 2xx/3xx counts (the point is the visit, not the body).
async fn ping(client: &reqwest::Client, settings: &KeepaliveSettings) -> Result<(), String> {
    let mut request = client.get(&settings.url);
    if let Some(token) = &settings.token {
        request = request.bearer_auth(token.expose());
    }
    let response = request
        .send()
        .await
        // `without_url`: the URL is already in the message, minus any query string.
        .map_err(|e| error_chain(&e.without_url()))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// reqwest's top-level message is terse ("error sending request"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The URL without its query or fragment: a monitor URL may carry a token there.
fn display_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::http::StatusCode;
    use axum::routing::get;

    /// Captures log output of the current thread (tests use the current-thread runtime, so the
    /// spawned keep-alive task logs through it too).
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
        let out = Captured::default();
        let writer = out.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (out, tracing::subscriber::set_default(sub))
    }

    /// A loopback server answering `/healthz` with `status`, counting requests.
    async fn server(status: StatusCode) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/healthz",
            get(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/healthz"), hits)
    }

    /// Poll `cond` every 10 ms until it holds or `deadline` passes.
    async fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cond()
    }

    fn settings(url: &str, interval: Duration) -> KeepaliveSettings {
        KeepaliveSettings {
            url: url.to_string(),
            interval,
            token: None,
        }
    }

    #[tokio::test]
    async fn pings_repeatedly_and_logs_only_the_start() {
        let (logs, _guard) = capture();
        let (url, hits) = server(StatusCode::OK).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            settings(&format!("{url}?token=s3cret"), Duration::from_millis(20)),
            stop.clone(),
        ));

        assert!(
            wait_for(Duration::from_secs(10), || hits.load(Ordering::SeqCst) >= 3).await,
            "no 3 pings arrived"
        );
        stop.cancel();
        task.await.unwrap();

        let text = logs.text();
        assert!(
            text.contains("keep-alive on: GET http://127.0.0.1:"),
            "{text}"
        );
        assert_eq!(
            text.lines().count(),
            1,
            "healthy pings must not log: {text}"
        );
        assert!(!text.contains("s3cret"), "query string leaked: {text}");
    }

    #[tokio::test]
    async fn sends_the_token_as_bearer_and_never_logs_it() {
        let (logs, _guard) = capture();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/healthz",
            get(move |headers: axum::http::HeaderMap| {
                let s = s.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    s.lock().unwrap().push(auth);
                    StatusCode::NOT_FOUND
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let stop = CancellationToken::new();
        let mut ka = settings(&format!("http://{addr}/healthz"), Duration::from_millis(20));
        ka.token = Some(crate::settings::Secret::new("hf_keepalive_secret"));
        let task = tokio::spawn(run(ka, stop.clone()));
        assert!(
            wait_for(Duration::from_secs(10), || logs.text().contains("WARN")).await,
            "no warning: {}",
            logs.text()
        );
        stop.cancel();
        task.await.unwrap();

        assert_eq!(seen.lock().unwrap()[0], "Bearer hf_keepalive_secret");
        assert!(
            !logs.text().contains("hf_keepalive_secret"),
            "{}",
            logs.text()
        );
    }

    #[tokio::test]
    async fn a_failing_server_produces_a_warning() {
        let (logs, _guard) = capture();
        let (url, hits) = server(StatusCode::SERVICE_UNAVAILABLE).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(settings(&url, Duration::from_millis(20)), stop.clone()));

        assert!(
            wait_for(Duration::from_secs(10), || logs.text().contains("WARN")).await,
            "no warning: {}",
            logs.text()
        );
        stop.cancel();
        task.await.unwrap();

        assert!(hits.load(Ordering::SeqCst) >= 1);
        let text = logs.text();
        let warning = text.lines().find(|l| l.contains("WARN")).unwrap();
        assert!(warning.contains("/healthz failed: HTTP 503"), "{warning}");
    }

    #[tokio::test]
    async fn an_unreachable_server_produces_a_warning_naming_the_cause() {
        let (logs, _guard) = capture();
        // Bind then drop: the port is (almost certainly) closed, so the connect is refused.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            settings(&format!("http://{addr}/healthz"), Duration::from_millis(20)),
            stop.clone(),
        ));

        assert!(
            wait_for(Duration::from_secs(10), || logs.text().contains("WARN")).await,
            "no warning: {}",
            logs.text()
        );
        stop.cancel();
        task.await.unwrap();
        let text = logs.text();
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn shutdown_stops_it_promptly_even_mid_request() {
        // A server that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        let stop = CancellationToken::new();
        // The request timeout is 30 s: only the shutdown can end the hanging request in time.
        let task = tokio::spawn(run(
            settings(&format!("http://{addr}/healthz"), Duration::from_millis(20)),
            stop.clone(),
        ));
        assert!(
            wait_for(Duration::from_secs(10), || accepted.load(Ordering::SeqCst)
                >= 1)
            .await,
            "no request arrived"
        );

        let t = Instant::now();
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("keep-alive did not stop within 2 s")
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_hanging_server_times_out_with_a_warning() {
        let (logs, _guard) = capture();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let stop = CancellationToken::new();
        let s = settings(&format!("http://{addr}/healthz"), Duration::from_millis(20));
        let task = tokio::spawn(run_with_timeout(
            s,
            Duration::from_millis(200),
            stop.clone(),
        ));
        assert!(
            wait_for(Duration::from_secs(10), || logs.text().contains("WARN")).await,
            "no warning: {}",
            logs.text()
        );
        stop.cancel();
        task.await.unwrap();
        assert!(logs.text().contains("timed out"), "{}", logs.text());
    }

    #[tokio::test]
    async fn shutdown_during_the_wait_returns_at_once() {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            settings("http://127.0.0.1:9/healthz", Duration::from_secs(3600)),
            stop.clone(),
        ));
        tokio::task::yield_now().await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("keep-alive did not stop within 2 s")
            .unwrap();
    }

    #[test]
    fn display_url_drops_query_and_fragment() {
        assert_eq!(
            display_url("https://a-b.hf.space/healthz?k=v#f"),
            "https://a-b.hf.space/healthz"
        );
        assert_eq!(
            display_url("https://a-b.hf.space/healthz"),
            "https://a-b.hf.space/healthz"
        );
    }
}
