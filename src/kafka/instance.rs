//! Who this instance is: its instance id and the transactional id made from it.
//!
//! Owns the naming of the instance. Guarantees:
//! - the instance id is `kafka.instance_id` when set; else `<hostname>-<port of http.bind>`,
//!   or `<hostname>-pid<pid>` when that port is 0 (tests: the port is picked by the OS).
//!   Instances on one host never share a default (they cannot share a port or a pid), and a
//!   restarted instance with a fixed port keeps its id. In Kubernetes the hostname is the
//!   pod's name, the natural id: a StatefulSet's pod keeps it across restarts;
//! - the transactional id is `keypulse-<group_id>-<instance id>`: stable across restarts,
//!   so that a restarted instance's `init_transactions` fences its previous incarnation at
//!   once (its open transaction is aborted instead of holding the changelog's last stable
//!   offset until `kafka.transaction_timeout_ms`). Two live processes must never share it:
//!   each would fence the other.

use crate::config::KafkaConfig;

/// The instance id: `kafka.instance_id`, or the default described above.
pub fn instance_id(k: &KafkaConfig, http_bind: &str) -> String {
    match &k.instance_id {
        Some(id) => id.clone(),
        None => default_instance_id(&hostname(), http_bind, std::process::id()),
    }
}

/// The default instance id on host `host`, serving HTTP on `http_bind`, as process `pid`.
pub fn default_instance_id(host: &str, http_bind: &str, pid: u32) -> String {
    let port = http_bind
        .parse::<std::net::SocketAddr>()
        .map(|a| a.port())
        .unwrap_or(0);
    let host = sanitize(host);
    if port != 0 {
        format!("{host}-{port}")
    } else {
        format!("{host}-pid{pid}")
    }
}

/// The transactional id of an instance of a group.
pub fn transactional_id(group_id: &str, instance_id: &str) -> String {
    format!("keypulse-{group_id}-{instance_id}")
}

/// This host's name (`localhost` when it cannot be read).
fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Keeps letters, digits, `.`, `_` and `-` (the characters `kafka.instance_id` allows).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_differ_between_instances_on_one_host() {
        let a = default_instance_id("node-1", "0.0.0.0:9464", 10);
        let b = default_instance_id("node-1", "0.0.0.0:9465", 10);
        let c = default_instance_id("node-1", "127.0.0.1:0", 11);
        let d = default_instance_id("node-1", "127.0.0.1:0", 12);
        assert_eq!(a, "node-1-9464");
        assert_eq!(c, "node-1-pid11");
        let all = [&a, &b, &c, &d];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // a restart on the same port keeps the id
        assert_eq!(a, default_instance_id("node-1", "0.0.0.0:9464", 99));
    }

    #[test]
    fn the_configured_id_wins_and_names_are_clean() {
        let mut k = KafkaConfig {
            instance_id: Some("keypulse-0".into()),
            ..KafkaConfig::default()
        };
        assert_eq!(instance_id(&k, "127.0.0.1:0"), "keypulse-0");
        k.instance_id = None;
        assert!(!instance_id(&k, "127.0.0.1:0").is_empty());
        assert_eq!(default_instance_id("a b/ü", "x", 1), "a-b---pid1");
        assert_eq!(transactional_id("g", "i"), "keypulse-g-i");
    }
}
