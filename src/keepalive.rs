//! Keep-alive: an opt-in periodic GET so a free Space does not sleep after 48 h without visits.
//!
//! TODO(space): implement per issue 5.

use tokio_util::sync::CancellationToken;

use crate::settings::KeepaliveSettings;

pub async fn run(_settings: KeepaliveSettings, _shutdown: CancellationToken) {}
