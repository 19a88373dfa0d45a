//! Noticing a consumer that died.
//!
//! A consumer thread or a partition worker should never die: a record's bytes cannot panic
//! them and handler panics are caught. If one dies anyway (a bug, a panic in a user callback),
//! the listener is no longer consuming what it was assigned, and a process that goes on
//! looking alive is the worst outcome. So a death is logged as an error at once, with its
//! cause, and published here; [`run`](crate::run) waits for it beside the shutdown signals and
//! then shuts the whole process down gracefully and exits with code 4. Nothing is lost: the dead
//! consumer's partitions were committed only up to finished records, and the next owner (this
//! service restarted by its supervisor, or another instance after the rebalance) starts there.

use std::any::Any;
use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;

struct Deaths {
    notify: Notify,
    first: Mutex<Option<String>>,
}

fn deaths() -> &'static Deaths {
    static DEATHS: OnceLock<Deaths> = OnceLock::new();
    DEATHS.get_or_init(|| Deaths {
        notify: Notify::new(),
        first: Mutex::new(None),
    })
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Records that `what` (a consumer thread or a partition worker of `listener`) died of `cause`.
pub(crate) fn report_death(listener: &str, what: &str, cause: &str) {
    tracing::error!(listener, what, cause, "a consumer died: the process will shut down and exit non-zero (its uncommitted records are redelivered to the next owner)");
    let d = deaths();
    let mut first = d.first.lock().unwrap_or_else(|e| e.into_inner());
    if first.is_none() {
        *first = Some(format!("{what} of listener {listener} died: {cause}"));
    }
    drop(first);
    d.notify.notify_one();
}

/// The first death of a consumer in this process, if one died.
pub(crate) fn death() -> Option<String> {
    deaths()
        .first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Waits until some consumer of this process died; returns the first death's description.
pub(crate) async fn first_death() -> String {
    let d = deaths();
    loop {
        if let Some(s) = d.first.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return s;
        }
        d.notify.notified().await;
    }
}
