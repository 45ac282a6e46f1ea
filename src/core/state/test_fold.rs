//! Test helpers shared by the state's differential tests (`watch_tests.rs`,
//! `reminders_tests.rs`): folding a generated JSON event, and decisions in the report's
//! order, as comparable strings.

use serde_json::Value;

use super::PartitionState;
use crate::config::CoreConfig;
use crate::event::decode;
use crate::signals::Notification;

/// Folds one generated event into `s`, its decisions into `out`.
pub(super) fn apply_json(
    s: &mut PartitionState,
    event: &Value,
    cfg: &CoreConfig,
    out: &mut Vec<Notification>,
) {
    let text = event.to_string();
    let e = decode(text.as_bytes()).expect("generated events decode");
    s.apply(&e, cfg, out);
}

/// The decisions as SPEC §3 sorts them, each as its JSON.
pub(super) fn in_report_order(mut v: Vec<Notification>) -> Vec<String> {
    v.sort_by(Notification::report_order);
    v.iter()
        .map(|n| serde_json::to_string(n).unwrap())
        .collect()
}
