//! What every bench shares: a short criterion configuration, so that `cargo bench` runs all of
//! them in a few minutes on two cores.

use std::time::Duration;

use criterion::Criterion;

/// Ten samples over about three seconds after one second of warm-up: the operations take
/// milliseconds to a tenth of a second, and a longer run would only narrow intervals that the
/// noise of a shared machine dominates anyway.
pub fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
