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
    assert_eq!(c.http.admin_bind.as_deref(), Some("0.0.0.0:9465"));
    // the token is the compose secret, a real file of at least 16 characters
    let token_path = c.http.auth_token_file.clone().expect("a token file");
    let secret_name = token_path.file_name().unwrap().to_str().unwrap();
    let compose = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    assert!(
        compose.contains(&format!(
            "  {secret_name}:\n    file: ./deploy/compose/http-token"
        )),
        "docker-compose.yml does not define the secret {secret_name}"
    );
    let local = keypulse::config::HttpConfig {
        auth_token_file: Some(repo("deploy/compose/http-token")),
        ..c.http.clone()
    };
    assert!(keypulse::http::Auth::from_config(&local, |_| None)
        .unwrap()
        .enabled());
    // Prometheus scrapes the admin port.
    let prom = std::fs::read_to_string(repo("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(
        prom.contains("port: 9465"),
        "prometheus.yml does not scrape 9465"
    );
    // the topics docker-compose.yml's kafka-setup creates are the ones configured here
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
    assert_eq!(c.http.admin_bind.as_deref(), Some("0.0.0.0:9465"));
    let deployment = std::fs::read_to_string(repo("deploy/k8s/deployment.yaml")).unwrap();
    assert!(deployment.contains(&format!("- name: {}", c.email.smtp.password_env)));
    assert!(deployment.contains(&format!("- name: {}", c.http.auth_token_env)));
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
    let admin = c
        .http
        .admin_bind
        .expect("the Dockerfile sets http.admin_bind");
    let port = admin.rsplit(':').next().unwrap();
    assert!(
        dockerfile.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "the HEALTHCHECK is not on the admin port {port}"
    );
}
