#!/usr/bin/env python3
"""Writes the Grafana dashboards of kfn into dashboards/*.json.

One source for every panel and its PromQL query, using exactly the metric
names kfn's /metrics exports (docs/metrics.md). Run it after changing a panel:
    scripts/dashboards.py            # rewrite dashboards/*.json
    scripts/dashboards.py --check    # exit 1 if a file is not what this script writes (CI)
The dashboards take the Prometheus data source as a variable, so they import
into any Grafana (Dashboards > New > Import).
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "dashboards"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(title, exprs, unit="short", kind="timeseries", description="", legend=None, width=12, height=8):
    """A panel: title, [(expr, legend)], unit."""
    targets = []
    for i, (expr, legend_format) in enumerate(exprs):
        targets.append({"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend_format,
                        "datasource": DATASOURCE})
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}}
        if kind == "timeseries" else {},
        "_size": (width, height),
    }


def layout(panels):
    """Places panels left to right, top to bottom, on Grafana's 24-column grid."""
    x = y = row_height = 0
    for n, p in enumerate(panels, start=1):
        w, h = p.pop("_size")
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        p["id"] = n
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_height = max(row_height, h)
    return panels


def dashboard(uid, title, description, panels, variables=()):
    templating = [{
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0,
    }]
    for name, query in variables:
        templating.append({
            "name": name, "label": name, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": "var"}, "definition": query, "refresh": 2,
            "includeAll": False, "multi": False, "current": {}, "sort": 1,
        })
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["kfn"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(list(panels)),
    }


RATE = "[$__rate_interval]"

OVERVIEW = dashboard(
    "kfn-orders-overview", "kfn: order system",
    "Orders in, records through each function, failures and lag: the order system at a glance.",
    [
        panel("Orders accepted per second",
              [(f'sum(rate(kfn_http_requests_total{{route="POST /orders",status="202"}}{RATE}))', "accepted"),
               (f'sum(rate(kfn_http_requests_total{{route="POST /orders",status!="202"}}{RATE}))', "refused or failed")],
              unit="reqps", width=8),
        panel("Records processed per second, by function",
              [(f"sum by (function) (rate(kfn_invocations_total{{outcome=\"ok\"}}{RATE}))", "{{function}}")],
              unit="ops", width=16),
        panel("Dead letters, by function and reason",
              [(f"sum by (function, reason) (increase(kfn_dead_letters_total{RATE}))", "{{function}} {{reason}}")],
              width=8),
        panel("Lag from committed offsets, by function (records)",
              [("sum by (function) (max by (function, topic, partition) (kfn_committed_lag))", "{{function}}")],
              width=8),
        panel("Handler latency p99, by function",
              [(f"histogram_quantile(0.99, sum by (function, le) (rate(kfn_handler_duration_seconds_bucket{RATE})))",
                "{{function}}")], unit="s", width=8),
        panel("Retries per second, by function",
              [(f"sum by (function) (rate(kfn_retries_total{RATE}))", "{{function}}")], unit="ops", width=12),
        panel("Rebalances, by function",
              [(f"sum by (function) (increase(kfn_rebalances_total{RATE}))", "{{function}}")], width=12),
    ],
)

FUNCTION = dashboard(
    "kfn-function", "kfn: one function",
    "Everything about one function: throughput, outcomes, retries, dead letters, lag per partition, "
    "handler latency, in-flight records and rebalances.",
    [
        panel("Records per second, by outcome",
              [(f'sum by (outcome) (rate(kfn_invocations_total{{function="$function"}}{RATE}))', "{{outcome}}")],
              unit="ops"),
        panel("Retries and dead letters per second",
              [(f'sum(rate(kfn_retries_total{{function="$function"}}{RATE}))', "retries"),
               (f'sum by (reason) (rate(kfn_dead_letters_total{{function="$function"}}{RATE}))',
                "dead letters: {{reason}}")],
              unit="ops"),
        panel("Lag from committed offsets, by partition (records)",
              [('max by (topic, partition) (kfn_committed_lag{function="$function"})', "{{topic}}/{{partition}}")]),
        panel("Handler latency",
              [(f'histogram_quantile({q}, sum by (le) (rate(kfn_handler_duration_seconds_bucket{{function="$function"}}{RATE})))',
                f"p{int(q * 100)}") for q in (0.5, 0.99)], unit="s"),
        panel("Produce (and commit) latency p99",
              [(f'histogram_quantile(0.99, sum by (le) (rate(kfn_produce_duration_seconds_bucket{{function="$function"}}{RATE})))',
                "p99")], unit="s", width=8),
        panel("In flight",
              [('sum(kfn_inflight_records{function="$function"})', "records in handlers")], width=8),
        panel("Rebalances, slow calls, panics",
              [(f'sum(increase(kfn_rebalances_total{{function="$function"}}{RATE}))', "rebalances"),
               (f'sum(increase(kfn_slow_handlers_total{{function="$function"}}{RATE}))', "slow calls"),
               (f'sum(increase(kfn_handler_panics_total{{function="$function"}}{RATE}))', "panics")], width=8),
    ],
    variables=[("function", "label_values(kfn_invocations_total, function)")],
)

HTTP = dashboard(
    "kfn-http", "kfn: HTTP trigger",
    "Requests of the HTTP trigger by route and status.",
    [
        panel("Requests per second, by route and status",
              [(f"sum by (route, status) (rate(kfn_http_requests_total{RATE}))", "{{route}} {{status}}")],
              unit="reqps", width=24),
        panel("5xx ratio, by route",
              # "or 0 * ...": a route without any 5xx shows 0, not a gap.
              [(f'(sum by (route) (rate(kfn_http_requests_total{{status=~"5.."}}{RATE})) '
                f"or 0 * sum by (route) (rate(kfn_http_requests_total{RATE}))) "
                f"/ sum by (route) (rate(kfn_http_requests_total{RATE}))", "{{route}}")],
              unit="percentunit"),
        panel("Latency by route (arrival to answer, events stored)",
              [(f"histogram_quantile({q}, sum by (route, le) (rate(kfn_http_request_duration_seconds_bucket{RATE})))",
                f"{{{{route}}}} p{int(q * 100)}") for q in (0.5, 0.99)], unit="s"),
        panel("4xx per second, by route and status",
              [(f'sum by (route, status) (rate(kfn_http_requests_total{{status=~"4.."}}{RATE}))',
                "{{route}} {{status}}")], unit="reqps"),
    ],
)

ANALYTICS = dashboard(
    "kfn-analytics", "kfn: order analytics",
    "The order system's analytics tables as kfn exports them (kfn_table_value).",
    [
        panel("Orders per hour window",
              [('sum by (key) (kfn_table_value{table="analytics.order-metrics",field="order_count"})', "{{key}}")]),
        panel("Revenue per hour window",
              [('sum by (key) (kfn_table_value{table="analytics.order-metrics",field="total_revenue"})', "{{key}}")],
              unit="currencyUSD"),
        panel("Top products by units sold",
              [('topk(10, kfn_table_value{table="analytics.top-products",field="total_quantity"})', "{{key}}")],
              kind="bargauge", width=12),
        panel("Average order value per hour window",
              [('sum by (key) (kfn_table_value{table="analytics.order-metrics",field="avg_order_value"})', "{{key}}")],
              unit="currencyUSD"),
    ],
)

DASHBOARDS = {"orders-overview.json": OVERVIEW, "function.json": FUNCTION, "http.json": HTTP,
              "analytics.json": ANALYTICS}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, board in DASHBOARDS.items():
        text = json.dumps(board, indent=2, sort_keys=True) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(OUT.parent)} ({len(board['panels'])} panels)")
    if stale:
        print(f"dashboards/{', '.join(stale)}: not what scripts/dashboards.py writes; run it", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
