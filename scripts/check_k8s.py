#!/usr/bin/env python3
"""Sanity checks of deploy/k8s/ (no cluster needed): the manifests parse, and they fit
together the way keypulse needs.

    check_k8s.py [--root REPO]

- a Deployment with 3 replicas, liveness on /healthz and readiness on /readyz, resource
  requests and limits, a non-root security context;
- KEYPULSE_SMTP_PASSWORD and the API token KEYPULSE_HTTP_TOKEN come from keys of Secrets
  defined here; the probes and the Prometheus annotation use the admin port 9465;
- the ConfigMap mounted as the config holds keypulse.toml, and KEYPULSE_CONFIG points at it;
- the Service selects the pods and targets their named port;
- every manifest is listed in kustomization.yaml.
(The TOML itself is loaded by the real config loader in tests/deploy_config.rs.)
"""
import argparse
import sys
from pathlib import Path

import yaml


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    root = Path(ap.parse_args().root) / "deploy/k8s"
    problems = []
    docs = {}
    files = sorted(p for p in root.glob("*.yaml") if p.name != "kustomization.yaml")
    for f in files:
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs[(d["kind"], d["metadata"]["name"])] = (f.name, d)

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    need(sorted(kust.get("resources", [])) == sorted(f.name for f in files),
         "kustomization.yaml resources != the manifests in deploy/k8s")

    deps = [d for (k, _), (_, d) in docs.items() if k == "Deployment"]
    need(len(deps) == 1, "expected exactly one Deployment")
    if deps:
        dep = deps[0]
        spec = dep["spec"]
        need(spec.get("replicas") == 3, "Deployment replicas != 3")
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        need(spec["selector"]["matchLabels"].items() <= labels.items(),
             "Deployment selector does not match the pod labels")
        c = pod["containers"][0]
        need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
             "liveness probe is not on /healthz")
        need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
             "readiness probe is not on /readyz")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                need(r in res.get(kind, {}), f"resources.{kind}.{r} missing")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        need(ports.get("http") == 9464, "container port http != 9464")
        sc = pod.get("securityContext", {})
        need(sc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot is not true")
        env = {e["name"]: e for e in c.get("env", [])}
        for var in ("KEYPULSE_SMTP_PASSWORD", "KEYPULSE_HTTP_TOKEN"):
            pw = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
            need(pw is not None, f"{var} is not taken from a Secret")
            if pw:
                sec = docs.get(("Secret", pw["name"]))
                need(sec is not None, f"Secret {pw['name']} is not defined in deploy/k8s")
                if sec:
                    data = {**sec[1].get("stringData", {}), **sec[1].get("data", {})}
                    need(pw["key"] in data, f"Secret {pw['name']} has no key {pw['key']}")
        need(ports.get("admin") == 9465, "container port admin != 9465")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            need(c.get(probe, {}).get("httpGet", {}).get("port") == "admin",
                 f"{probe} is not on the admin port")
        ann = spec["template"]["metadata"].get("annotations", {})
        need(ann.get("prometheus.io/port") == "9465",
             "prometheus.io/port is not the admin port 9465")
        cfg_path = env.get("KEYPULSE_CONFIG", {}).get("value", "")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        found = False
        for name, path in mounts.items():
            v = vols.get(name, {})
            if "configMap" in v and cfg_path.startswith(path.rstrip("/") + "/"):
                cm = docs.get(("ConfigMap", v["configMap"]["name"]))
                key = cfg_path[len(path.rstrip("/")) + 1:]
                need(cm is not None and key in cm[1].get("data", {}),
                     f"KEYPULSE_CONFIG {cfg_path}: ConfigMap key {key} missing")
                found = True
        need(found, "KEYPULSE_CONFIG does not point into a mounted ConfigMap")
        svcs = [d for (k, _), (_, d) in docs.items() if k == "Service"]
        need(len(svcs) == 1, "expected exactly one Service")
        for s in svcs:
            need(s["spec"]["selector"].items() <= labels.items(),
                 "Service selector does not select the pods")
            for p in s["spec"]["ports"]:
                need(p.get("targetPort") in ports or p.get("targetPort") in ports.values(),
                     f"Service port {p} targets no container port")
    print(f"checked {len(files)} manifests in deploy/k8s: " + ", ".join(
        f"{k}/{n}" for (k, n) in sorted(docs)))
    if problems:
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
