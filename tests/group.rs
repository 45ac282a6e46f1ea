//! SPEC §8.8 against a real Kafka broker (`KEYPULSE_TEST_BROKERS`, from `scripts/test` or
//! `scripts/kafka-broker`): three `keypulse run` instances in one group fold a fixture on
//! a 6-partition topic. Each answers the fixture's whole report (`complete: true`),
//! `?scope=local` gives its own share, a customer held elsewhere is answered by all three,
//! the internal endpoint refuses a missing or wrong peer token; after a SIGKILL the others
//! answer `complete: false` naming the dead member's partitions, until the group has
//! rebalanced and restored them, then complete and exact again.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::kafka::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);
const PEER_TOKEN: &str = "group-test-peer-token-0123456789";

fn partitions_of(inst: &Instance) -> Option<BTreeSet<i64>> {
    let (status, body) = inst.get("/readyz");
    if status != 200 {
        return None;
    }
    Some(
        body["partitions"]
            .as_array()?
            .iter()
            .filter_map(|p| p["partition"].as_i64())
            .collect(),
    )
}

fn missing_of(report: &Value) -> BTreeSet<i64> {
    report["missing_partitions"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["partition"].as_i64()).collect())
        .unwrap_or_default()
}

fn peer_get(inst: &Instance, path: &str, token: Option<&str>) -> u16 {
    let mut r = client().get(inst.url(path));
    if let Some(t) = token {
        r = r.header("x-keypulse-peer-token", t);
    }
    r.send().expect("peer get").status().as_u16()
}

#[test]
fn three_instances_answer_for_the_whole_group() {
    let Some(brokers) = brokers("three_instances_answer_for_the_whole_group") else {
        return;
    };
    let t0 = Instant::now();
    let name = "noisy";
    let topic = unique("group");
    create_topic(&brokers, &topic, 6);
    let events = common::fixture_events(name);
    let lines = lines(&events);
    produce(&brokers, &topic, &lines);
    let expected = common::fixture_report(name);
    // The instances inherit the peer token from this process's environment.
    std::env::set_var("KEYPULSE_PEER_TOKEN", PEER_TOKEN);
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        "members_interval_ms = 300\nmembers_stale_ms = 2000\n",
    );
    let mut all: Vec<Instance> = ["A", "B", "C"]
        .iter()
        .map(|n| Instance::start(&format!("instance {n}"), &config))
        .collect();
    for i in &mut all {
        i.wait_ready(LIMIT);
    }
    let split = wait_for("a split of the 6 partitions over A, B and C", LIMIT, || {
        let parts: Vec<BTreeSet<i64>> = all.iter().map(partitions_of).collect::<Option<_>>()?;
        let union: BTreeSet<i64> = parts.iter().flatten().copied().collect();
        let sum: usize = parts.iter().map(|p| p.len()).sum();
        (parts.iter().all(|p| !p.is_empty()) && sum == 6 && union.len() == 6).then_some(parts)
    });
    eprintln!("split: {split:?}");

    // Every instance answers the whole fixture report, complete.
    for inst in &all {
        let report = wait_for(&format!("{}: a complete report", inst.name), LIMIT, || {
            let (s, r) = inst.get("/api/v1/report");
            (s == 200 && r["complete"] == true).then_some(r)
        });
        assert_eq!(missing_of(&report), BTreeSet::new());
        common::assert_same_report(&inst.name, &expected, &report);
        let (s, churn) = inst.get("/api/v1/churn-risk?limit=1000");
        assert_eq!(s, 200);
        assert_eq!(churn["complete"], true);
        assert_eq!(
            churn["total"].as_u64(),
            expected["health"]["churn_risk"]
                .as_array()
                .map(|a| a.len() as u64),
            "{}: churn-risk total",
            inst.name
        );
        let (s, summary) = inst.get("/api/v1/summary");
        assert_eq!((s, &summary["complete"]), (200, &Value::Bool(true)));
    }

    // `?scope=local`: each its own share, adding up to the whole.
    let applied = expected["events"]["applied"].as_u64().unwrap();
    let mut sum = 0;
    for inst in &all {
        let (s, r) = inst.get("/api/v1/report?scope=local");
        assert_eq!(s, 200);
        let mine = r["events"]["applied"].as_u64().unwrap();
        assert!(mine > 0 && mine < applied, "{}: local {mine}", inst.name);
        assert!(
            r.get("complete").is_none(),
            "a local answer is not a group answer"
        );
        sum += mine;
    }
    assert_eq!(sum, applied, "the local shares add up");

    // A customer: answered by all three the same, though only one holds it.
    let mut checked = 0;
    let mut ids: Vec<String> = lines.iter().map(|l| key_of(l)).collect();
    ids.sort();
    ids.dedup();
    for id in ids.iter().filter(|id| !id.is_empty()).take(5) {
        let path = format!("/api/v1/customers/{id}");
        let local: Vec<u16> = all
            .iter()
            .map(|i| i.get(&format!("{path}?scope=local")).0)
            .collect();
        if local.iter().filter(|s| **s == 200).count() != 1 {
            continue; // e.g. a customer whose every event was rejected
        }
        let answers: Vec<(u16, Value)> = all.iter().map(|i| i.get(&path)).collect();
        for (s, body) in &answers {
            assert_eq!(*s, 200, "{id}: {body}");
            assert_eq!(body["customer"], answers[0].1["customer"], "{id}");
        }
        checked += 1;
    }
    assert!(checked > 0, "no customer checked");
    let (s, _) = all[0].get("/api/v1/customers/no-such-customer-anywhere");
    assert_eq!(s, 404);

    // The internal endpoint needs the peer token.
    assert_eq!(peer_get(&all[0], "/internal/v1/aggregates", None), 403);
    assert_eq!(
        peer_get(
            &all[0],
            "/internal/v1/aggregates",
            Some("wrong-token-wrong-token")
        ),
        403
    );
    assert_eq!(
        peer_get(&all[0], "/internal/v1/aggregates", Some(PEER_TOKEN)),
        200
    );

    // SIGKILL C: A and B say which partitions are missing until they are restored.
    let mut c = all.pop().unwrap();
    let c_parts = split[2].clone();
    c.child.kill().expect("SIGKILL");
    let _ = c.child.wait();
    let killed = Instant::now();
    let (a, b) = (&all[0], &all[1]);
    let first = wait_for("an incomplete answer after the SIGKILL", LIMIT, || {
        let (s, r) = a.get("/api/v1/report");
        (s == 200 && r["complete"] == false).then_some(r)
    });
    let missing = missing_of(&first);
    eprintln!(
        "{:?} after the SIGKILL: missing {missing:?} (C held {c_parts:?})",
        killed.elapsed()
    );
    assert!(
        !missing.is_empty() && missing.is_subset(&c_parts),
        "missing {missing:?}, C held {c_parts:?}"
    );
    let (s, churn) = b.get("/api/v1/churn-risk");
    assert_eq!(s, 200);
    if churn["complete"] == false {
        assert!(missing_of(&churn).is_subset(&c_parts));
    }
    for inst in [a, b] {
        let report = wait_for(&format!("{}: complete again", inst.name), LIMIT, || {
            let (s, r) = inst.get("/api/v1/report");
            (s == 200 && r["complete"] == true).then_some(r)
        });
        common::assert_same_report(
            &format!("{} after the SIGKILL", inst.name),
            &expected,
            &report,
        );
    }
    eprintln!(
        "complete again {:?} after the SIGKILL; test took {:?}",
        killed.elapsed(),
        t0.elapsed()
    );
    let (_, metrics) = a.get_text("/metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("keypulse_group_incomplete_answers_total ") && !l.ends_with(" 0")
        ),
        "the incomplete answers are counted"
    );
    for mut inst in all {
        inst.stop(Duration::from_secs(15));
    }
}

/// The default wall clock, with the users' token and the peer token both set (from
/// files): two instances answer the group's counts with the users' token, the peers
/// ask each other with theirs, and the users' token is no peer token.
#[test]
fn wall_clock_and_the_users_token_beside_the_peer_token() {
    let Some(brokers) = brokers("wall_clock_and_the_users_token_beside_the_peer_token") else {
        return;
    };
    let name = "small";
    let topic = unique("group-wall");
    create_topic(&brokers, &topic, 6);
    let events = common::fixture_events(name);
    produce(&brokers, &topic, &lines(&events));
    let expected = common::fixture_report(name);
    let secrets = tempfile::tempdir().unwrap();
    let user_token = "the-users-token-0123456789";
    let user_file = secrets.path().join("user");
    let peer_file = secrets.path().join("peer");
    std::fs::write(&user_file, user_token).unwrap();
    std::fs::write(&peer_file, PEER_TOKEN).unwrap();
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        "members_interval_ms = 300\nmembers_stale_ms = 2000\n",
    )
    .replace(
        "[http]\n",
        &format!(
            "[http]\nauth_token_file = {:?}\npeer_token_file = {:?}\n",
            user_file.display().to_string(),
            peer_file.display().to_string()
        ),
    );
    let mut all: Vec<Instance> = ["A", "B"]
        .iter()
        .map(|n| Instance::start_with(&format!("wall {n}"), &config, &[]))
        .collect();
    for i in &mut all {
        i.wait_ready(LIMIT);
    }
    let get = |inst: &Instance, path: &str| -> (u16, Value) {
        let r = client()
            .get(inst.url(path))
            .bearer_auth(user_token)
            .send()
            .expect("get");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let applied = expected["events"]["applied"].as_u64().unwrap();
    for inst in &all {
        assert_eq!(
            inst.get("/api/v1/report").0,
            401,
            "the users' token guards the API"
        );
        let report = wait_for(
            &format!("{}: a complete group report", inst.name),
            LIMIT,
            || {
                let (s, r) = get(inst, "/api/v1/report");
                (s == 200 && r["complete"] == true && r["events"]["applied"] == applied)
                    .then_some(r)
            },
        );
        for k in ["rejected", "duplicates"] {
            assert_eq!(
                report["events"][k], expected["events"][k],
                "{}: events.{k}",
                inst.name
            );
        }
        let (s, local) = get(inst, "/api/v1/report?scope=local");
        assert_eq!(s, 200);
        assert!(local["events"]["applied"].as_u64().unwrap() < applied);
        // The users' token is not the peer token.
        assert_eq!(
            peer_get(inst, "/internal/v1/aggregates", Some(user_token)),
            403
        );
        assert_eq!(
            peer_get(inst, "/internal/v1/aggregates", Some(PEER_TOKEN)),
            200
        );
    }
    for mut inst in all {
        inst.stop(Duration::from_secs(15));
    }
}
