//! The status page shown for every path until the gateway answers: self-contained HTML (no
//! external assets), refreshed every 3 s. It names the phase and never a secret, a token or a
//! secret's path (only the store's description, which holds none).

use hyper::{Response, StatusCode};

use super::{text, Body, Phase};

pub(super) fn status_page(phase: &Phase, restore_failed: bool) -> Response<Body> {
    let (title, detail) = match phase {
        Phase::Restoring { store } => (
            "Restoring the last backup".to_string(),
            format!(
                "Reading the latest backup from {}. The assistant starts right after.",
                escape(store)
            ),
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
         an empty state cannot replace good backups. Check the store (HF_DATASET or \
         ENTRYPOINT_BACKUP_DIR) and restart, or run <code>entrypoint backup --force</code> to \
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
