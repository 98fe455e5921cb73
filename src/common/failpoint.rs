//! Failure injection for tests of the failure paths. `SABOT_FAILPOINTS` names the points
//! that fail, comma-separated; unset (always, outside tests) nothing fails and a check
//! costs one load of an empty list.
//!
//! - `fail:<Operator>`: the operator (`HashAgg`, `HashJoin`, ...) returns an error on
//!   every chunk;
//! - `panic:<Operator>`: it panics on every chunk;
//! - `block:<Operator>`: at each barrier it waits while the file named by
//!   `SABOT_FAILPOINT_GATE` exists (holding its view's epochs back until a test lets go).

use std::sync::OnceLock;

use super::{Error, Result};

fn points() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("SABOT_FAILPOINTS")
            .map(|v| v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default()
    })
}

/// Fails (or panics) when a failpoint names this operator.
pub fn operator(name: &str) -> Result<()> {
    for point in points() {
        match point.split_once(':') {
            Some(("fail", target)) if target == name => {
                return Err(Error::internal(format!("failpoint fail:{name}")));
            }
            Some(("panic", target)) if target == name => panic!("failpoint panic:{name}"),
            _ => {}
        }
    }
    Ok(())
}

/// Waits at a barrier while a `block:` failpoint names this operator and its gate file
/// exists (asynchronously: the actor's thread stays free for other tasks).
pub async fn barrier(name: &str) {
    if !points().iter().any(|p| p.split_once(':') == Some(("block", name))) {
        return;
    }
    let Some(gate) = std::env::var_os("SABOT_FAILPOINT_GATE") else { return };
    while std::path::Path::new(&gate).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
