//! The status page shown for every path until the gateway answers: self-contained HTML (no
//! external assets), refreshed every 3 s. It names the phase and never a secret, a token or a
//! secret's path (only the store's description, which holds none).

use hyper::{Response, StatusCode};

use super::{text, Body, Phase};
use crate::restore::Now;

pub(super) fn status_page(phase: &Phase, restore_failed: bool) -> Response<Body> {
    let (title, detail) = match phase {
        Phase::Restoring { store, watch } => (
            "Restoring the last backup".to_string(),
            restoring(store, watch.now()),
        ),
        Phase::Starting { since } => (
            "Starting the gateway".to_string(),
            format!(
                "The OpenClaw gateway has been starting for {} s (usually 8&ndash;15 s).",
                since.elapsed().as_secs()
            ),
        ),
        Phase::Ready => ("Ready".to_string(), "Reload the page.".to_string()),
        Phase::Stopped { why } => ("The gateway is stopped".to_string(), escape(why)),
    };
    let note = if restore_failed {
        "<p><b>The last restore failed.</b> The state on disk was kept and backups are paused, so \
         an empty state cannot replace good backups. Check the store (HF_DATASET, \
         HF_BUCKET or ENTRYPOINT_BACKUP_DIR) and restart, or run <code>entrypoint backup --force</code> to \
         upload the state as it is.</p>"
    } else {
        ""
    };
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=refresh content=3><meta name=viewport content=\"width=device-width\">\
         <title>{title}</title><style>body{{font:16px system-ui,sans-serif;max-width:36em;\
         margin:4em auto;padding:0 1em;color:#222}}h1{{font-size:1.4em}}</style></head>\
         <body><h1>{title}&hellip;</h1><p>{detail}</p>{note}<p><small>openclaw-space; this page \
         refreshes itself.</small></p></body></html>"
    );
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html; charset=utf-8",
        html,
    );
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("3"),
    );
    r
}

/// Which version, and how far: "12.5 of 48.0 MB (26 %)", then the checks.
fn restoring(store: &str, now: Option<Now>) -> String {
    let store = escape(store);
    let Some(n) = now else {
        return format!(
            "Reading the latest backup from {store}. The assistant starts right after."
        );
    };
    let version = match &n.time {
        Some(t) => format!("version {} of {}", escape(&n.version), escape(t)),
        None => format!("version {}", escape(&n.version)),
    };
    if n.checking {
        return format!(
            "Checking {version} from {store} ({}): its SHA-256, every file of the archive and              every database, before it replaces anything.",
            mb(n.size)
        );
    }
    let fetched = n.fetched();
    let percent = (fetched * 100).checked_div(n.size).unwrap_or(0).min(100);
    format!(
        "Downloading {version} from {store}: <b>{} of {}</b> ({percent} %). The assistant          starts right after.",
        mb(fetched),
        mb(n.size)
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(fetched: u64, checking: bool) -> Option<Now> {
        Some(Now::example(4_200_000, fetched, checking))
    }

    #[test]
    fn restoring_says_which_version_and_how_far() {
        let store = "dir:/b<x>";
        assert!(
            restoring(store, None).starts_with("Reading the latest backup from dir:/b&lt;x&gt;")
        );
        let down = restoring(store, now(1_050_000, false));
        assert!(
            down.contains("version d739cc1041ba of 2026-12-05T17:00:00Z"),
            "{down}"
        );
        assert!(down.contains("<b>1.1 MB of 4.2 MB</b> (25 %)"), "{down}");
        let check = restoring(store, now(4_200_000, true));
        assert!(
            check.starts_with("Checking version d739cc1041ba"),
            "{check}"
        );
        // A size the store did not know: no division by zero, no percent over 100.
        let odd = restoring(store, Some(Now::example(0, 10, false)));
        assert!(odd.contains("(0 %)"), "{odd}");
    }
}
