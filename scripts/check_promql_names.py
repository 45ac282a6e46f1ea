#!/usr/bin/env python3
"""Static checks of keypulse's PromQL: the Grafana dashboards and the Prometheus rules.

    check_promql_names.py [--promtool PATH] [--root REPO]

Checks, with no network:
1. every metric name in every PromQL expression of deploy/grafana/dashboards/*.json and
   deploy/prometheus/rules/*.yml is in deploy/metrics-contract.txt (a histogram NAME also
   allows NAME_bucket/_sum/_count) or is a recording rule defined in the rules;
2. no dashboard expression uses a Grafana variable ($...), so each runs as-is against a
   real Prometheus (tests/deploy_promql.rs does that);
3. every dashboard expression parses: they are written into a temporary rule file as
   recording rules and `promtool check rules` is run on it (with --promtool);
4. every alert rule has a unit test in deploy/prometheus/tests/*.yml that expects it to
   fire and one that expects it not to fire.
Prints what it checked; exits 1 on any problem.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
}
# keywords followed by a parenthesised list of label names
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def strip_strings(expr):
    """Replaces string literals by empty ones ("..." '...' `...`)."""
    out = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            q = c
            i += 1
            while i < len(expr) and expr[i] != q:
                if expr[i] == "\\" and q != "`":
                    i += 1
                i += 1
            out.append(q + q)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def metric_names(expr):
    """The metric names an expression selects (not functions, keywords or label names)."""
    s = strip_strings(expr)
    names = []
    i = 0
    brace = 0
    bracket = 0
    skip_label_list = False
    while i < len(s):
        c = s[i]
        if c == "{":
            brace += 1
        elif c == "}":
            brace -= 1
        elif c == "[":
            bracket += 1
        elif c == "]":
            bracket -= 1
        elif c == "(" and skip_label_list and brace == 0:
            # a label list: skip to the matching ')'
            depth = 0
            while i < len(s):
                if s[i] == "(":
                    depth += 1
                elif s[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            skip_label_list = False
        elif c.isdigit() or (c == "." and i + 1 < len(s) and s[i + 1].isdigit()):
            # a number (1, 0.5, 1e3, 0x1f) or a duration: skip it whole
            j = i
            while j < len(s) and (s[j].isalnum() or s[j] in "._"):
                j += 1
            if j < len(s) and s[j - 1] in "eE" and s[j] in "+-":
                j += 1
                while j < len(s) and s[j].isdigit():
                    j += 1
            i = j
            continue
        elif (c.isalpha() or c in "_:") and brace == 0 and bracket == 0:
            m = IDENT.match(s, i)
            word = m.group(0)
            j = m.end()
            while j < len(s) and s[j].isspace():
                j += 1
            nxt = s[j] if j < len(s) else ""
            low = word.lower()
            if low in KEYWORDS:
                if low in LABEL_LIST_KEYWORDS:
                    skip_label_list = True
            elif nxt == "(":
                pass  # a function or an aggregation
            elif low in AGGREGATIONS and IDENT.match(s, j) and \
                    IDENT.match(s, j).group(0).lower() in ("by", "without"):
                pass  # `sum by (...) (...)`
            else:
                names.append(word)
            i = m.end()
            continue
        elif not c.isspace():
            if skip_label_list and c not in "(":
                skip_label_list = False
        i += 1
    return names


def load_contract(path):
    names = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        name, kind = parts[0], parts[1]
        names.add(name)
        if kind == "histogram":
            names.update({name + "_bucket", name + "_sum", name + "_count"})
    return names


def dashboard_exprs(path):
    out = []

    def walk(v, where):
        if isinstance(v, dict):
            title = v.get("title", where)
            for k, x in v.items():
                if k == "expr" and isinstance(x, str):
                    out.append((f"{path.name}: {where}", x))
                else:
                    walk(x, title if isinstance(title, str) else where)
        elif isinstance(v, list):
            for x in v:
                walk(x, where)

    walk(json.loads(path.read_text()), "dashboard")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--promtool", default=None)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    args = ap.parse_args()
    root = Path(args.root)
    problems = []

    contract = load_contract(root / "deploy/metrics-contract.txt")

    rule_files = sorted((root / "deploy/prometheus/rules").glob("*.yml"))
    rule_exprs = []
    alerts = []
    recorded = set()
    for f in rule_files:
        doc = yaml.safe_load(f.read_text())
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                if "record" in r:
                    recorded.add(r["record"])
                    rule_exprs.append((f"{f.name}: record {r['record']}", r["expr"]))
                else:
                    alerts.append(r["alert"])
                    rule_exprs.append((f"{f.name}: alert {r['alert']}", r["expr"]))

    dash_files = sorted((root / "deploy/grafana/dashboards").glob("*.json"))
    dash = []
    for f in dash_files:
        dash.extend(dashboard_exprs(f))

    used = set()
    for where, expr in dash + rule_exprs:
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: selects no metric: {expr!r}")
        for n in names:
            used.add(n)
            if n not in contract and n not in recorded:
                problems.append(f"{where}: metric {n!r} is not in deploy/metrics-contract.txt")
    for where, expr in dash:
        if "$" in expr:
            problems.append(f"{where}: uses a Grafana variable: {expr!r}")

    # dashboard expressions parse (promtool validates them as recording rules)
    if args.promtool and dash:
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "dashboard-exprs.yml"
            rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, (_, e) in enumerate(dash)]
            p.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
            r = subprocess.run([args.promtool, "check", "rules", str(p)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                problems.append("dashboard expressions do not parse:\n" + r.stdout + r.stderr)

    # every alert has a firing and a not-firing unit test
    fires, quiet = set(), set()
    for f in sorted((root / "deploy/prometheus/tests").glob("*.yml")):
        doc = yaml.safe_load(f.read_text())
        for t in doc.get("tests", []):
            for a in t.get("alert_rule_test", []) or []:
                (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
    for a in alerts:
        if a not in fires:
            problems.append(f"alert {a}: no unit test expects it to fire")
        if a not in quiet:
            problems.append(f"alert {a}: no unit test expects it not to fire")

    base = [ln.split()[0] for ln in (root / "deploy/metrics-contract.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    unused = sorted(n for n in base if n.startswith("keypulse_") and n not in used
                    and not any(u.startswith(n + "_") for u in used))
    print(f"checked {len(dash)} dashboard expressions in {len(dash_files)} file(s), "
          f"{len(rule_exprs)} rule expressions ({len(alerts)} alerts, {len(recorded)} "
          f"recording rules) in {len(rule_files)} file(s): {len(used)} distinct metrics, "
          f"all checked against {len(contract)} contract names")
    print(f"every alert has a firing and a not-firing unit test: "
          f"{'yes' if all(a in fires and a in quiet for a in alerts) else 'NO'}")
    if unused:
        print("contract metrics no panel or rule uses (fine, for information): "
              + ", ".join(unused))
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
