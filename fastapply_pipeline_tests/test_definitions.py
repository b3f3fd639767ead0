"""The shape of the code location: a snapshot of the asset graph, and the pure core free of Dagster."""

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastapply_pipeline.core
from fastapply_pipeline.definitions import build_defs

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("snapshots") / "asset_graph.json"


def graph_summary() -> dict:
    defs = build_defs(ROOT / "fastapply.yaml")
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        spec = defs.resolve_assets_def(key).specs_by_key[key]
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": getattr(node.partitions_def, "name", None),
            "kinds": sorted(spec.kinds),
            "checks": sorted(c.name for c in node.check_keys),
            "pool": (node.pools and sorted(node.pools)) or None,
            "has_description": bool(node.description),
            "owners": list(node.owners),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "schedules": sorted(s.name for s in defs.schedules or []),
    }


def test_asset_graph_matches_the_snapshot():
    """An accidental change to the graph fails here. To accept an intended one: UPDATE_SNAPSHOTS=1 pytest."""
    current = graph_summary()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_every_asset_explains_itself():
    for name, asset in graph_summary()["assets"].items():
        assert asset["has_description"] and asset["kinds"] and asset["group"] != "default", name
        assert asset["owners"] == ["team:fastapply"], name


@pytest.mark.slow
def test_core_modules_do_not_import_dagster():
    modules = [
        f"fastapply_pipeline.core.{m.name}" for m in pkgutil.iter_modules(fastapply_pipeline.core.__path__)
    ]
    modules.append("fastapply_pipeline.config")
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + (
            "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.') or m.startswith('dagster_'))\n"
            "print(','.join(bad))\n"
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"core modules pulled in {out}"


def test_constraints_pin_every_dependency():
    """constraints.txt (the fast, known-good install) names a version for every dependency in
    pyproject.toml, extras included, so a new dependency cannot slip in unpinned."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + [
        d for deps in project["optional-dependencies"].values() for d in deps
    ]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower().replace("_", "-") for d in wanted}
    names.discard("fastapply-pipeline")  # the extras that name other extras
    pinned = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert sorted(names - pinned) == []
    assert "torch" not in pinned  # the torch build is the user's choice, installed first
