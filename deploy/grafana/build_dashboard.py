#!/usr/bin/env python3
"""Builds deploy/grafana/dashboards/keypulse.json, the keypulse Grafana dashboard.

    python3 deploy/grafana/build_dashboard.py           write the JSON
    python3 deploy/grafana/build_dashboard.py --check   exit 1 if the committed JSON differs

The dashboard is generated so that its panels stay consistent (one datasource, one set of
activation thresholds, every query summed over instances). Edit this file, not the JSON;
scripts/check-deploy runs --check.

Rules every expression here follows (scripts/check_promql_names.py and
tests/deploy_promql.rs check them):
- only metrics of deploy/metrics-contract.txt;
- no Grafana variables inside expressions (they are run as-is against a real Prometheus);
- keypulse runs as several instances in one consumer group, each exporting its own
  partitions' figures: counts are sum()med, ratios are recomputed from summed counts, never
  averaged.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "keypulse.json"
DS = {"type": "prometheus", "uid": "prometheus"}
API = "${keypulse_api}"

# Seed bands for the activation rate: red below 50 %, yellow 50-80 %, green from 80 %;
# 90 % is the target (a blue step, drawn as a line on the time series).
ACTIVATION_STEPS = [
    {"color": "red", "value": None},
    {"color": "yellow", "value": 0.5},
    {"color": "green", "value": 0.8},
    {"color": "blue", "value": 0.9},
]
ACTIVATION_NOTE = (
    "Activated / issued licenses, recomputed from the counts summed over every instance. "
    "Seed bands: red below 50 %, yellow 50-80 %, green from 80 %, target 90 % (blue)."
)


def thresholds(*steps):
    out = []
    for color, value in steps:
        out.append({"color": color, "value": value})
    return {"mode": "absolute", "steps": out}


class Builder:
    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.y = 0
        self.x = 0
        self.row_h = 0

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def panel(self, kind, title, targets, w, h=7, description="", unit=None, steps=None,
              minv=None, maxv=None, links=None, options=None, custom=None, overrides=None,
              decimals=None):
        if self.x + w > 24:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        defaults = {}
        if unit:
            defaults["unit"] = unit
        if steps is not None:
            defaults["thresholds"] = steps
            defaults["color"] = {"mode": "thresholds"}
        else:
            defaults["color"] = {"mode": "palette-classic"}
        if minv is not None:
            defaults["min"] = minv
        if maxv is not None:
            defaults["max"] = maxv
        if decimals is not None:
            defaults["decimals"] = decimals
        if custom:
            defaults["custom"] = custom
        if links:
            defaults["links"] = links
        p = {
            "type": kind,
            "id": self._id(),
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [],
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if links:
            p["links"] = [{"title": l["title"], "url": l["url"], "targetBlank": True} for l in links]
        for i, t in enumerate(targets):
            expr, legend = t[0], t[1]
            instant = t[2] if len(t) > 2 else kind in ("stat", "bargauge", "piechart", "gauge")
            q = {
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "expr": expr,
                "legendFormat": legend,
                "range": not instant,
                "instant": instant,
            }
            p["targets"].append(q)
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)
        return p


def stat_options(graph=True, text_mode="auto"):
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "textMode": text_mode,
        "orientation": "auto",
    }


def bar_options():
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
        "valueMode": "color",
    }


def ts_options():
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def ts_custom(stack=False, threshold_lines=False, draw="line"):
    c = {
        "drawStyle": draw,
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 10,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    if threshold_lines:
        c["thresholdsStyle"] = {"mode": "line"}
    return c


# SPEC §8 panels: the report's mrr.movements, sharing_suspects and events.excluded
# (keypulse_mrr_movement_cents{kind}, keypulse_mrr_movements{kind},
# keypulse_sharing_suspects, keypulse_events_excluded_total).
MOVE_IN = 'kind=~"new|expansion|reactivation"'
MOVE_OUT = 'kind=~"contraction|churn"'


def color_override(name, color):
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


def s8_panels(b):
    b.row("MRR movements, sharing suspects, exclusions")
    b.panel(
        "bargauge", "MRR movements (30 days)",
        [("sum by (kind) (keypulse_mrr_movement_cents) / 100", "{{kind}}")],
        w=8, unit="currencyUSD", options=bar_options(), steps=thresholds(("blue", None)),
        overrides=[color_override(k, "green") for k in ("new", "expansion", "reactivation")]
        + [color_override(k, "red") for k in ("contraction", "churn")],
        description="The report's mrr.movements, summed over instances: what was booked "
        "over the 30 days ending today, by movement kind. new + expansion + reactivation "
        "- contraction - churn = MRR now - MRR 30 days ago.",
    )
    b.panel(
        "stat", "Net MRR movement (30 days)",
        [
            (
                f"((sum(keypulse_mrr_movement_cents{{{MOVE_IN}}}) or vector(0))"
                f" - (sum(keypulse_mrr_movement_cents{{{MOVE_OUT}}}) or vector(0))) / 100",
                "net movements",
            ),
            (
                "(sum(keypulse_mrr_cents) - sum(keypulse_mrr_month_ago_cents)) / 100",
                "MRR now - 30 days ago",
            ),
        ],
        w=4, unit="currencyUSD", decimals=0,
        steps=thresholds(("red", None), ("green", 0)),
        options=stat_options(graph=False, text_mode="value_and_name"),
        description="The two are equal by construction (SPEC §8.2): the movements explain "
        "the month-over-month change.",
    )
    b.panel(
        "timeseries", "Movements by kind (count over 30 days)",
        [("sum by (kind) (keypulse_mrr_movements)", "{{kind}}")],
        w=12, custom=ts_custom(), options=ts_options(), unit="short",
        description="How many movements of each kind the last 30 days hold.",
    )
    b.panel(
        "stat", "Sharing suspects",
        [("sum(keypulse_sharing_suspects)", "licenses")],
        w=4, unit="short", steps=thresholds(("green", None), ("yellow", 1), ("red", 10)),
        options=stat_options(),
        links=[{"title": "Sharing suspects (API)", "url": API + "/api/v1/sharing-suspects"}],
        description="Active licenses with at least core.sharing.min_domains distinct "
        "mismatched domains over 30 days (SPEC §8.3). The list: /api/v1/sharing-suspects.",
    )
    b.panel(
        "timeseries", "Sharing suspects over time",
        [("sum(keypulse_sharing_suspects)", "licenses")],
        w=8, custom=ts_custom(), options=ts_options(), unit="short",
    )
    b.panel(
        "timeseries", "Excluded events (test/QA accounts)",
        [("sum(rate(keypulse_events_excluded_total[5m]))", "excluded")],
        w=6, custom=ts_custom(), options=ts_options(), unit="ops",
        description="Accepted events of customers listed in core.exclude (SPEC §8.1): "
        "counted here and nowhere else.",
    )
    b.panel(
        "timeseries", "Key-sharing, revoked-use and expiry emails (per hour)",
        [(
            'sum by (kind) (increase(keypulse_notifications_decided_total'
            '{kind=~"key_sharing|revoked_use|expiring_soon"}[1h]))',
            "{{kind}}",
        )],
        w=6, custom=ts_custom(), options=ts_options(), unit="short",
    )


def build():
    b = Builder()

    # --- revenue -----------------------------------------------------------------------
    b.row("Revenue")
    b.panel(
        "stat", "MRR", [("sum(keypulse_mrr_cents) / 100", "MRR", False)], w=6,
        description="Monthly recurring revenue of active licenses (sum over instances), "
        "with its trend over the dashboard's time range.",
        unit="currencyUSD", steps=thresholds(("blue", None)), options=stat_options(),
        decimals=0,
    )
    b.panel(
        "stat", "MRR month over month",
        [(
            "(sum(keypulse_mrr_cents) - sum(keypulse_mrr_month_ago_cents))"
            " / sum(keypulse_mrr_month_ago_cents)",
            "change", False,
        )],
        w=6,
        description="(current - 30 days ago) / 30 days ago, from MRR summed over instances.",
        unit="percentunit", steps=thresholds(("red", None), ("yellow", 0), ("green", 0.0001)),
        options=stat_options(), decimals=1,
    )
    b.panel(
        "timeseries", "MRR now and 30 days ago",
        [
            ("sum(keypulse_mrr_cents) / 100", "current"),
            ("sum(keypulse_mrr_month_ago_cents) / 100", "30 days before today"),
        ],
        w=12, unit="currencyUSD", custom=ts_custom(), options=ts_options(),
        description="MRR as booked on each event's own day; the second line is the "
        "MRR booked up to the day 30 days before today (the report's month_ago_cents).",
    )

    s8_panels(b)

    # --- licenses and activation -------------------------------------------------------
    b.row("Licenses and activation")
    b.panel(
        "stat", "Activation rate",
        [
            ("sum(keypulse_licenses_activated) / sum(keypulse_licenses_issued)", "all time"),
            (
                "sum(keypulse_activation_within_7d) / sum(keypulse_activation_cohort_7d)",
                "within 7 days",
            ),
        ],
        w=6, description=ACTIVATION_NOTE, unit="percentunit",
        steps={"mode": "absolute", "steps": ACTIVATION_STEPS}, minv=0, maxv=1,
        options=stat_options(graph=False, text_mode="value_and_name"), decimals=1,
    )
    b.panel(
        "bargauge", "Activation rate by plan",
        [(
            "sum by (plan) (keypulse_licenses_activated) / sum by (plan) (keypulse_licenses_issued)",
            "{{plan}}",
        )],
        w=6, description=ACTIVATION_NOTE, unit="percentunit",
        steps={"mode": "absolute", "steps": ACTIVATION_STEPS}, minv=0, maxv=1,
        options=bar_options(), decimals=1,
    )
    b.panel(
        "timeseries", "Activation rate by plan over time (lines: 50 %, 80 %, target 90 %)",
        [(
            "sum by (plan) (keypulse_licenses_activated) / sum by (plan) (keypulse_licenses_issued)",
            "{{plan}}",
        )],
        w=12, description=ACTIVATION_NOTE, unit="percentunit",
        steps={"mode": "absolute", "steps": ACTIVATION_STEPS}, minv=0, maxv=1,
        custom=ts_custom(threshold_lines=True), options=ts_options(),
        overrides=[],
    )
    # the threshold steps colour the lines' thresholds; the series keep palette colours
    b.panels[-1]["fieldConfig"]["defaults"]["color"] = {"mode": "palette-classic"}
    b.panel(
        "timeseries", "Active licenses by plan",
        [("sum by (plan) (keypulse_licenses{status=\"active\"})", "{{plan}}")],
        w=12, custom=ts_custom(stack=True), options=ts_options(), unit="short",
        description="Licenses whose status is active, by current plan (stacked).",
    )
    b.panel(
        "bargauge", "Licenses by status",
        [("sum by (status) (keypulse_licenses)", "{{status}}")],
        w=6, options=bar_options(), unit="short", steps=thresholds(("blue", None)),
        description="Every known license by current status.",
    )
    b.panel(
        "stat", "At-risk licenses",
        [("sum(keypulse_at_risk_licenses)", "at risk", False)], w=6,
        description="Active licenses not validated for more than 30 days (or never, and "
        "issued more than 30 days ago).",
        steps=thresholds(("green", None), ("yellow", 1), ("red", 10)), options=stat_options(),
    )

    # --- customers ---------------------------------------------------------------------
    b.row("Customers: churn risk and upgrades")
    churn_link = [{"title": "Churn-risk list (API)", "url": API + "/api/v1/churn-risk"}]
    b.panel(
        "stat", "Churn-risk customers",
        [("sum(keypulse_churn_risk_customers)", "churn risk", False)], w=6,
        description="Customers whose health score is below 50. The list with scores and "
        "reasons: /api/v1/churn-risk (panel link; set the keypulse_api variable to where "
        "the API is reachable).",
        steps=thresholds(("green", None), ("yellow", 1), ("red", 5)), options=stat_options(),
        links=churn_link,
    )
    b.panel(
        "timeseries", "Customers by health band",
        [("sum by (band) (keypulse_health_customers)", "{{band}}")],
        w=9, custom=ts_custom(stack=True), options=ts_options(), unit="short",
        description="Customers with an active license by health score band (0-24, 25-49, "
        "50-74, 75-100).",
    )
    pipeline_link = [
        {"title": "Upgrade pipeline (API)", "url": API + "/api/v1/upgrade-pipeline"}
    ]
    b.panel(
        "bargauge", "Upgrade pipeline by trigger",
        [("sum by (trigger) (keypulse_upgrade_pipeline_licenses)", "{{trigger}}")],
        w=9, options=bar_options(), unit="short", steps=thresholds(("purple", None)),
        description="Active licenses with an upgrade trigger, by trigger (a license with "
        "several triggers counts under each). The list: /api/v1/upgrade-pipeline.",
        links=pipeline_link,
    )

    # --- usage -------------------------------------------------------------------------
    b.row("Usage: validations")
    b.panel(
        "stat", "DAV today",
        [("sum(keypulse_dav_today)", "today", False)], w=4,
        description="Daily active validations: distinct licenses validated today (UTC).",
        steps=thresholds(("blue", None)), options=stat_options(),
    )
    b.panel(
        "stat", "DAV 7-day trend",
        [("sum(keypulse_dav_last_7d) / sum(keypulse_dav_prev_7d)", "last 7 d / previous 7 d",
          False)],
        w=4,
        description="Sum of DAV over the 7 complete days before today divided by the 7 days "
        "before those: declining at 0.95 or less, growing at 1.05 or more.",
        unit="percentunit",
        steps=thresholds(("red", None), ("yellow", 0.95), ("green", 1.05)),
        options=stat_options(), decimals=1,
    )
    b.panel(
        "timeseries", "DAV",
        [
            ("sum(keypulse_dav_today)", "today so far"),
            ("sum(keypulse_dav_last_7d) / 7", "daily mean, last 7 days"),
            ("sum(keypulse_dav_prev_7d) / 7", "daily mean, 7 days before"),
        ],
        w=16, custom=ts_custom(), options=ts_options(), unit="short",
    )
    b.panel(
        "timeseries", "Validation failure rate by type",
        [(
            "sum by (result) (rate(keypulse_validations_total{result!=\"valid\"}[5m]))"
            " / ignoring (result) group_left ()"
            " sum(rate(keypulse_validations_total[5m]))",
            "{{result}}",
        )],
        w=12, unit="percentunit", custom=ts_custom(stack=True), options=ts_options(),
        description="Share of all validations (every instance) that failed, by result, over "
        "5-minute windows.",
    )
    b.panel(
        "bargauge", "Validations by country, last 24 h",
        [(
            "topk(20, sum by (country) (increase(keypulse_validations_by_country_total[24h])))",
            "{{country}}",
        )],
        w=6, options=bar_options(), unit="short", steps=thresholds(("blue", None)),
        description="Validations by country (ISO 3166-1 alpha-2; anything else is 'other').",
        decimals=0,
    )
    b.panel(
        "bargauge", "Validations today by result",
        [("sum by (result) (keypulse_validations_today)", "{{result}}")],
        w=6, options=bar_options(), unit="short", steps=thresholds(("blue", None)),
    )

    # --- time to value and domains -----------------------------------------------------
    b.row("Time to first validation and domain utilization")
    ttfv = [
        ("under_1h", "< 1 h"),
        ("1h_to_24h", "1-24 h"),
        ("1d_to_7d", "1-7 days"),
        ("over_7d", "> 7 days"),
        ("pending", "pending"),
    ]
    b.panel(
        "bargauge", "Time to first validation",
        [(f'sum(keypulse_ttfv_licenses{{bucket="{k}"}})', name) for k, name in ttfv],
        w=8, options=bar_options(), unit="short", steps=thresholds(("blue", None)),
        description="Issued licenses by time from issue to the first valid validation: "
        "< 1 h, 1-24 h, 1-7 days, > 7 days (also never validated, issued 7+ days ago), and "
        "pending (never validated, issued less than 7 days ago).",
    )
    b.panel(
        "stat", "TTFV median, per instance",
        [("keypulse_ttfv_median_seconds", "{{instance}}", False)], w=4, unit="s",
        steps=thresholds(("blue", None)), options=stat_options(graph=False),
        description="Lower median time to first valid validation. A median cannot be summed: "
        "each instance shows the median of its own customers.",
    )
    b.panel(
        "bargauge", "Mean domain utilization by plan",
        [(
            "sum by (plan) (keypulse_domain_utilization_mean_ratio * keypulse_domain_licenses)"
            " / sum by (plan) (keypulse_domain_licenses)",
            "{{plan}}",
        )],
        w=6, unit="percentunit", minv=0, maxv=1, options=bar_options(),
        steps=thresholds(("orange", None), ("green", 0.2), ("orange", 0.8)),
        description="Mean of used / limit over active licenses with a domain limit (each "
        "instance's mean weighted by its license count).",
    )
    b.panel(
        "bargauge", "Domain limits by plan",
        [
            ("sum by (plan) (keypulse_domain_near_limit_licenses)", "{{plan}} near limit (>= 80 %)"),
            ("sum by (plan) (keypulse_domain_at_limit_licenses)", "{{plan}} at limit"),
            ("sum by (plan) (keypulse_domain_over_provisioned_licenses)",
             "{{plan}} over-provisioned (< 20 %)"),
        ],
        w=6, options=bar_options(), unit="short", steps=thresholds(("blue", None)),
    )

    # --- emails ------------------------------------------------------------------------
    b.row("Emails")
    b.panel(
        "timeseries", "Emails by kind and outcome (per hour)",
        [(
            "sum by (kind, outcome) (increase(keypulse_emails_total[1h]))",
            "{{kind}} {{outcome}}",
        )],
        w=12, custom=ts_custom(), options=ts_options(), unit="short",
        description="sent, retried, failed, refused, skipped_duplicate, deferred.",
    )
    b.panel(
        "timeseries", "Notifications decided by kind (per hour)",
        [("sum by (kind) (increase(keypulse_notifications_decided_total[1h]))", "{{kind}}")],
        w=8, custom=ts_custom(), options=ts_options(), unit="short",
    )
    b.panel(
        "stat", "Outbox depth",
        [("sum(keypulse_outbox_depth)", "queued", False)], w=4,
        steps=thresholds(("green", None), ("yellow", 20), ("red", 100)), options=stat_options(),
        description="Emails taken on and not yet sent or given up (queued, deferred, retrying).",
    )

    # --- service health ----------------------------------------------------------------
    b.row("Service health")
    b.panel(
        "stat", "Instances",
        [
            ('sum(up{job="keypulse"})', "up"),
            ("sum(keypulse_ready)", "ready"),
            ("sum(keypulse_assigned_partitions)", "partitions"),
        ],
        w=6, steps=thresholds(("blue", None)),
        options=stat_options(graph=False, text_mode="value_and_name"),
    )
    b.panel(
        "timeseries", "Consumer lag by partition",
        [("sum by (topic, partition) (keypulse_consumer_lag_messages)", "{{topic}}/{{partition}}")],
        w=9, custom=ts_custom(stack=True), options=ts_options(), unit="short",
        description="High watermark minus the next offset to fold, per assigned partition.",
    )
    b.panel(
        "timeseries", "Event-time lag",
        [("max by (instance) (keypulse_event_time_lag_seconds)", "{{instance}}")],
        w=9, custom=ts_custom(), options=ts_options(), unit="s",
        description="Wall clock minus the newest event ts folded, per instance.",
    )
    b.panel(
        "timeseries", "Events folded by type",
        [
            ("sum by (type) (rate(keypulse_events_total[5m]))", "{{type}}"),
            ("sum(rate(keypulse_events_duplicate_total[5m]))", "duplicates"),
        ],
        w=8, custom=ts_custom(stack=True), options=ts_options(), unit="ops",
    )
    b.panel(
        "timeseries", "Rejected events by reason",
        [("sum by (reason) (rate(keypulse_events_rejected_total[5m]))", "{{reason}}")],
        w=8, custom=ts_custom(stack=True), options=ts_options(), unit="ops",
        description="Rejected messages (copied to the dead-letter topic) by reason.",
    )
    b.panel(
        "timeseries", "Fold latency",
        [
            (
                "histogram_quantile(0.99, sum by (le) (rate(keypulse_fold_latency_seconds_bucket[5m])))",
                "p99",
            ),
            (
                "histogram_quantile(0.5, sum by (le) (rate(keypulse_fold_latency_seconds_bucket[5m])))",
                "p50",
            ),
        ],
        w=8, custom=ts_custom(), options=ts_options(), unit="s",
        description="From a batch being polled to the end of its fold.",
    )
    b.panel(
        "timeseries", "State size",
        [
            ("sum by (instance) (keypulse_state_bytes)", "{{instance}} bytes"),
        ],
        w=8, custom=ts_custom(), options=ts_options(), unit="bytes",
    )
    b.panel(
        "stat", "State per license",
        [
            ("sum(keypulse_state_bytes) / sum(keypulse_state_licenses)", "bytes / license"),
        ],
        w=4, unit="bytes", steps=thresholds(("blue", None)), options=stat_options(),
        description="Approximate state bytes per license: the memory sizing input.",
    )
    b.panel(
        "stat", "State",
        [
            ("sum(keypulse_state_licenses)", "licenses"),
            ("sum(keypulse_state_customers)", "customers"),
        ],
        w=4, unit="short", steps=thresholds(("blue", None)),
        options=stat_options(graph=False, text_mode="value_and_name"),
    )

    return {
        "uid": "keypulse",
        "title": "keypulse",
        "description": "License telemetry: revenue, activation, churn risk, upgrades, usage, "
        "emails and the service's own health.",
        "tags": ["keypulse"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [
            {"title": "Report (API)", "url": API + "/api/v1/report", "type": "link",
             "targetBlank": True, "icon": "doc"},
            {"title": "Churn risk (API)", "url": API + "/api/v1/churn-risk", "type": "link",
             "targetBlank": True, "icon": "doc"},
            {"title": "Upgrade pipeline (API)", "url": API + "/api/v1/upgrade-pipeline",
             "type": "link", "targetBlank": True, "icon": "doc"},
        ],
        "templating": {
            "list": [
                {
                    "name": "keypulse_api",
                    "label": "keypulse API",
                    "type": "textbox",
                    "query": "http://localhost:9464",
                    "current": {"text": "http://localhost:9464", "value": "http://localhost:9464"},
                    "hide": 0,
                    "description": "Base URL of a keypulse instance's HTTP API, for the links "
                    "(each instance answers for its own partitions' customers).",
                }
            ]
        },
        "panels": b.panels,
    }


def main():
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is not what {__file__} builds: run it and commit the result",
                  file=sys.stderr)
            sys.exit(1)
        return
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
