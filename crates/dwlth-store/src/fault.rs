//! Fault injection for crash-consistency tests (feature `fault-injection`, off by default).
//!
//! With `DWLTH_FAULT_AFTER_WRITES=N` the process aborts — like `kill -9`, no destructor runs —
//! right after its N-th durable write (a file written and synced, or a file or folder renamed
//! into place). With `DWLTH_FAULT_TRACE=1` every write is listed on stderr as
//! `dwlth-fault: write K <path>`, so a test can count a run's writes and kill it after each.
//! Without the feature both variables are ignored and the hook compiles to nothing.

use std::path::Path;

#[cfg(feature = "fault-injection")]
pub(crate) fn after_write(path: &Path) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static SETTINGS: OnceLock<(Option<u64>, bool)> = OnceLock::new();
    let (limit, trace) = *SETTINGS.get_or_init(|| {
        let limit = std::env::var("DWLTH_FAULT_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok());
        (limit, std::env::var_os("DWLTH_FAULT_TRACE").is_some())
    });
    let k = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if trace {
        eprintln!("dwlth-fault: write {k} {}", path.display());
    }
    if limit == Some(k) {
        eprintln!("dwlth-fault: aborting after write {k} ({})", path.display());
        std::process::abort();
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn after_write(_path: &Path) {}
