"""The Grafana dashboard (``deploy/grafana/jobsys.json``) against the metrics jobsys defines:
every series a panel queries is one jobsys exposes, under the name the README lists."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import Metric

import jobsys.connectors.google.usage
import jobsys.guards.metrics
import jobsys.interfaces.metrics
from jobsys.config import Settings
from jobsys.engine.runtime import Runtime
from jobsys.interfaces.metrics import FleetGauges
from jobsys.store.memory import MemoryStore
from tests.support.workers import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "jobsys.json"
SERIES = re.compile(r"\bjobsys_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}
# Modules that define metrics, loaded so their families are in the registry.
DEFINING = (jobsys.interfaces.metrics, jobsys.guards.metrics, jobsys.connectors.google.usage)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queried(dashboard: dict[str, Any]) -> set[str]:
    """Every jobsys series named in a panel's query."""
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    return {name for expr in exprs for name in SERIES.findall(expr)}


def series_of(families: Iterator[Metric] | list[Metric]) -> set[str]:
    """The sample names each family exposes (a counter ``x`` is scraped as ``x_total``)."""
    return {
        f.name + suffix
        for f in families
        if f.name.startswith("jobsys_")
        for suffix in SUFFIXES[f.type]
    }


def exposed() -> set[str]:
    assert DEFINING  # imported for their side effect: the families are registered
    fleet = FleetGauges(Runtime(Settings.from_variables({}), store=MemoryStore()))
    return series_of(list(REGISTRY.collect())) | series_of(list(fleet.collect()))


def documented() -> set[str]:
    """The metric names in the README's table (its first column)."""
    readme = (REPO / "README.md").read_text()
    return set(re.findall(r"^\| `(jobsys_[a-z0-9_]+)`", readme, flags=re.MULTILINE))


def test_every_series_the_dashboard_queries_is_exposed_and_documented() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = queried(dashboard)
    assert len(wanted) >= 12
    assert wanted - exposed() == set()
    bare = {re.sub(r"_(bucket|sum|count)$", "", name) for name in wanted}
    assert bare - documented() == set()


def test_every_documented_metric_is_exposed_and_on_the_dashboard() -> None:
    exposed_names = exposed()
    bare = {
        re.sub(r"_(bucket|sum|count)$", "", n) for n in queried(json.loads(DASHBOARD.read_text()))
    }
    for name in documented():
        assert name in exposed_names or f"{name}_bucket" in exposed_names, name
        assert name in bare, f"{name} has no panel"


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    sources = {v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"].strip("${}") in sources, panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
