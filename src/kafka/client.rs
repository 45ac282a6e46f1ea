//! The one librdkafka configuration builder: every consumer, producer and admin client.
//!
//! Owns how a client's properties are layered. Each client is built by
//! [`ClientSettings::build`] in this order, later layers winning:
//! 1. `bootstrap.servers` and `client.id`;
//! 2. the client's own defaults (tuning a user may change);
//! 3. the user's `kafka.properties` that apply to the client's [`Role`] (consumer-only
//!    and group keys are not given to producers and admin clients);
//! 4. the client's fixed settings, which its correctness depends on (idempotence, its own
//!    group id, no auto-commit...).
//!
//! Guarantees: a secret given in `kafka.properties` (SASL, SSL) reaches every client of
//! the service; no client states its properties anywhere else.

use rdkafka::config::ClientConfig;

use crate::config::KafkaConfig;

/// What a client does, which decides the user properties it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A consumer: every property.
    Consumer,
    /// A producer: every property but the consumer-only and group ones.
    Producer,
    /// An admin client: as a producer.
    Admin,
}

/// The connection settings shared by the clients of one program.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    brokers: String,
    client_id: String,
    properties: Vec<(String, String)>,
}

/// The service's consumer defaults, under `kafka.properties`.
const GROUP_CONSUMER_DEFAULTS: [(&str, &str); 5] = [
    ("group.protocol", "consumer"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
];

/// The service's fetch tuning, under `kafka.properties` (also used by the raw consumer
/// `scripts/bench-kafka` compares the service with).
pub const FETCH_DEFAULTS: [(&str, &str); 1] = [
    // KAFKA-NOTES: the 1 s default pauses fetching whenever the fold is behind.
    ("fetch.queue.backoff.ms", "10"),
];

impl ClientSettings {
    /// Settings for `brokers`, naming the clients `client_id`, with extra `properties`.
    pub fn new(brokers: &str, client_id: &str, properties: &[(String, String)]) -> Self {
        Self {
            brokers: brokers.to_string(),
            client_id: client_id.to_string(),
            properties: properties.to_vec(),
        }
    }

    /// The service's settings: `kafka.brokers`, client id `keypulse`, `kafka.properties`.
    pub fn from_config(k: &KafkaConfig) -> Self {
        let properties: Vec<(String, String)> = k
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self::new(&k.brokers, "keypulse", &properties)
    }

    /// A client of `role`: connection, then `defaults`, then the user's properties for
    /// the role, then `fixed`.
    pub fn build(
        &self,
        role: Role,
        defaults: &[(&str, &str)],
        fixed: &[(&str, &str)],
    ) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", &self.client_id);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            if role == Role::Consumer || !consumer_only(k) {
                c.set(k, v);
            }
        }
        for (k, v) in fixed {
            c.set(*k, *v);
        }
        c
    }

    /// The group consumer of the input topics (`group_id`), with the service's defaults;
    /// `kafka.properties` may override any of them.
    pub fn group_consumer(&self, group_id: &str) -> ClientConfig {
        let mut defaults = vec![("group.id", group_id)];
        defaults.extend(GROUP_CONSUMER_DEFAULTS);
        defaults.extend(FETCH_DEFAULTS);
        self.build(Role::Consumer, &defaults, &[])
    }

    /// An admin client.
    pub fn admin(&self) -> ClientConfig {
        self.build(Role::Admin, &[], &[])
    }
}

/// Whether a librdkafka property belongs to consumers (or the group) only.
pub fn consumer_only(key: &str) -> bool {
    key.starts_with("group.")
        || key.starts_with("fetch.")
        || key.starts_with("session.")
        || key.starts_with("heartbeat.")
        || key.starts_with("max.poll")
        || key.starts_with("auto.")
        || key.starts_with("enable.auto")
        || key.starts_with("queued.")
        || key.starts_with("partition.assignment")
        || key.starts_with("isolation.")
        || key == "enable.partition.eof"
        || key == "check.crcs"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClientSettings {
        ClientSettings::new(
            "b:9092",
            "keypulse",
            &[
                ("group.protocol".into(), "classic".into()),
                ("sasl.password".into(), "s3cret".into()),
                ("linger.ms".into(), "5".into()),
            ],
        )
    }

    #[test]
    fn user_properties_override_defaults_and_fixed_settings_override_users() {
        let c = settings().group_consumer("g");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("group.protocol"), Some("classic"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        let p = settings().build(Role::Producer, &[], &[("linger.ms", "20")]);
        assert_eq!(p.get("linger.ms"), Some("20"));
        assert_eq!(p.get("client.id"), Some("keypulse"));
        assert_eq!(p.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn producers_and_admins_get_no_consumer_only_keys_but_every_secret() {
        for c in [
            settings().build(Role::Producer, &[], &[]),
            settings().admin(),
        ] {
            assert_eq!(c.get("group.protocol"), None);
            assert_eq!(c.get("sasl.password"), Some("s3cret"));
        }
    }
}
