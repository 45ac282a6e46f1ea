//! The configuration files shipped under deploy/ load with the real config loader: the
//! docker-compose one, the Kubernetes ConfigMap's, and the overrides the Dockerfile sets.

use std::path::PathBuf;

use keypulse::config::Config;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn compose_config_loads() {
    let path = repo("deploy/compose/keypulse.toml");
    let c = Config::load_with_env(Some(&path), Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(c.kafka.brokers, "kafka:9092");
    assert_eq!(c.kafka.topics, vec!["license-events".to_string()]);
    assert_eq!(c.email.transport, "smtp");
    assert_eq!(c.email.smtp.host, "mailpit");
    assert_eq!(c.email.smtp.security, "plain");
    assert_eq!(c.http.bind, "0.0.0.0:9464");
    // the topics docker-compose.yml's kafka-setup creates are the ones configured here
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    for topic in c
        .kafka
        .topics
        .iter()
        .chain([&c.kafka.dead_letter_topic, &c.kafka.notifications_topic])
    {
        assert!(
            compose.contains(&format!("--topic {topic} ")),
            "docker-compose.yml's kafka-setup does not create topic {topic}"
        );
    }
}

/// The `keypulse.toml: |` block of the ConfigMap manifest.
fn configmap_toml() -> String {
    let text = std::fs::read_to_string(repo("deploy/k8s/configmap.yaml")).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "keypulse.toml: |");
    assert!(
        lines.next().is_some(),
        "configmap.yaml has no keypulse.toml"
    );
    let mut out = String::new();
    for l in lines {
        if l.trim().is_empty() {
            out.push('\n');
            continue;
        }
        match l.strip_prefix("    ") {
            Some(rest) => {
                out.push_str(rest);
                out.push('\n');
            }
            None => break,
        }
    }
    out
}

#[test]
fn kubernetes_configmap_config_loads() {
    let text = configmap_toml();
    let c = Config::from_toml(&text).unwrap_or_else(|e| panic!("configmap.yaml: {e}\n{text}"));
    assert_eq!(c.kafka.group_id, "keypulse");
    assert_eq!(c.http.bind, "0.0.0.0:9464");
    assert_eq!(c.email.smtp.password_env, "KEYPULSE_SMTP_PASSWORD");
    let deployment = std::fs::read_to_string(repo("deploy/k8s/deployment.yaml")).unwrap();
    assert!(deployment.contains(&format!("- name: {}", c.email.smtp.password_env)));
}

#[test]
fn dockerfile_overrides_load() {
    let dockerfile = std::fs::read_to_string(repo("deploy/Dockerfile")).unwrap();
    let env: Vec<(String, String)> = dockerfile
        .split(char::is_whitespace)
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("KEYPULSE__"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        env.len() >= 2,
        "no KEYPULSE__ overrides found in the Dockerfile"
    );
    let c = Config::load_with_env(None, env).unwrap();
    assert_eq!(c.http.bind, "0.0.0.0:9464");
    assert_eq!(c.log.format, "json");
}
