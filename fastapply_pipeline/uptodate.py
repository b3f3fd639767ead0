"""Which assets `fastapply run` can skip: those last built from the same code, settings and inputs.

Each run the CLI launches carries, per asset it builds, a tag `fastapply/fingerprint/<asset>`: a hash of
the code (`core.fingerprint.code_version`), the settings the asset can read, and its inputs' own
fingerprints (for cloned_repo, the commit its ref resolves to now, by `git ls-remote`: no fetch). An
asset whose latest materialization was made by a run with the fingerprint it would have now is up to
date, unless that build is not usable (its partition's latest run failed, a table is torn, a file its
metadata points at is gone). Materializations made elsewhere (the UI, automation) carry no tag: the
CLI rebuilds those once. `fastapply run --force` rebuilds regardless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from fastapply_pipeline.config import FastApplyConfig, deployment
from fastapply_pipeline.core.fingerprint import code_version, digest
from fastapply_pipeline.core.git import GitError, remote_commit

FINGERPRINT_TAG = "fastapply/fingerprint/"

# Settings no asset reads (scheduling and pools change when work runs, not what it makes)...
NEVER_READ = frozenset({"automation", "pools"})
# ...and, by the group of an asset, the stages after it, whose settings it cannot read.
NOT_READ = {
    "sources": frozenset({"snippets", "triples", "dataset", "training", "eval"}),
    "snippets": frozenset({"triples", "dataset", "training", "eval"}),
    "triples": frozenset({"dataset", "training", "eval"}),
    "dataset": frozenset({"training", "eval"}),
    "training": frozenset({"eval"}),
}


def settings_read(config: FastApplyConfig, group: str | None, source_key: str | None) -> dict:
    """The settings an asset of `group` can read; a per-repository asset sees only its own source."""
    data = config.model_dump(mode="json", exclude=set(NEVER_READ | NOT_READ.get(group or "", set())))
    data["base_dir"] = str(config.base_dir)  # relative paths resolve against it
    data["deployment"] = deployment()
    if source_key is not None:
        source = config.source(source_key)
        data["sources"] = [source.model_dump(mode="json"), config.source_location(source)]
    return data


def tag_of(key: dg.AssetKey) -> str:
    return FINGERPRINT_TAG + key.to_user_string()


@dataclass
class Decision:
    """One plan entry: what to build, what is up to date, and the tags the run carries."""

    build: list[dg.AssetKey]
    fresh: list[dg.AssetKey]
    fingerprints: dict[dg.AssetKey, str] = field(default_factory=dict)  # of every key, built or not
    why: str = ""  # what was compared, for the "up to date" line

    def tags(self, keys) -> dict[str, str]:
        """The run tags recording the fingerprints of the keys a run builds."""
        return {tag_of(key): self.fingerprints[key] for key in keys}


class Freshness:
    """Fingerprints for a `fastapply run` plan against what the instance recorded."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        graph,
        config: FastApplyConfig,
        *,
        force: bool = False,
        unusable: dict[str, str] | None = None,
    ):
        self.instance, self.graph, self.config, self.force = instance, graph, config, force
        self.unusable = unusable or {}  # partition -> why its last build cannot be reused
        self.code = code_version()
        # Latest materialization records, by (key, partition), within one decide(): runs launched between
        # two decisions add newer ones, so the memo is cleared at the start of each.
        self._records: dict = {}

    # -- what the instance recorded ------------------------------------------------------------------
    def _latest(self, key: dg.AssetKey, partition: str | None):
        if (key, partition) not in self._records:
            filters = dg.AssetRecordsFilter(
                asset_key=key, asset_partitions=[partition] if partition is not None else None
            )
            records = self.instance.fetch_materializations(filters, limit=1).records
            self._records[key, partition] = records[0] if records else None
        return self._records[key, partition]

    def recorded(self, key: dg.AssetKey, partition: str | None) -> str | None:
        """The fingerprint the latest materialization was built with ("run:<id>" for an untagged one)."""
        record = self._latest(key, partition)
        if record is None:
            return None
        run = self.instance.get_run_by_id(record.run_id)
        found = run.tags.get(tag_of(key)) if run is not None else None
        return found or f"run:{record.run_id}"

    def _files_present(self, key: dg.AssetKey, partition: str | None) -> bool:
        record = self._latest(key, partition)
        materialization = record.asset_materialization if record else None
        if materialization is None:
            return False
        return all(
            Path(value.path).exists()
            for value in materialization.metadata.values()
            if isinstance(value, dg.PathMetadataValue) and "://" not in value.path
        )

    # -- what it would be now -----------------------------------------------------------------------
    def _inputs(self, key: dg.AssetKey, partition: str | None, planned: dict) -> list:
        node = self.graph.get(key)
        inputs = []
        for parent in sorted(node.parent_keys):
            name = parent.to_user_string()
            parent_partitioned = self.graph.get(parent).partitions_def is not None
            if parent in planned:
                inputs.append([name, planned[parent]])
            elif parent_partitioned and partition is None:  # a whole-corpus asset reads every built one
                built = sorted(self.instance.get_materialized_partitions(parent))
                inputs.append([name, {p: self.recorded(parent, p) for p in built}])
            else:
                inputs.append([name, self.recorded(parent, partition if parent_partitioned else None)])
        return inputs

    def decide(self, partition: str | None, keys: list[dg.AssetKey]) -> Decision:
        """Fingerprint every key (in dependency order); keep to build the ones not up to date and all
        that depend on them."""
        self._records = {}
        commit = None
        if partition is not None:
            source = self.config.source(partition)
            try:
                commit = remote_commit(
                    self.config.source_location(source),
                    source.ref,
                    timeout=self.config.clone.timeout_seconds,
                    what=f"source {partition!r}",
                )
            except (GitError, OSError):
                commit = None  # unreachable now: build, and let cloned_repo report why
        selected = set(keys)
        order = [k for k in self.graph.toposorted_asset_keys if k in selected]
        planned: dict[dg.AssetKey, str] = {}
        build, fresh = [], []
        for key in order:
            node = self.graph.get(key)
            inputs = self._inputs(key, partition, planned)
            if not node.parent_keys and partition is not None:
                inputs.append(["commit", commit])
            planned[key] = digest(
                key.to_user_string(),
                self.code,
                settings_read(self.config, node.group_name, partition),
                inputs,
            )
            upstream_rebuilt = any(parent in build for parent in node.parent_keys)
            if (
                self.force
                or upstream_rebuilt
                or (partition is not None and (commit is None or partition in self.unusable))
                or self.recorded(key, partition) != planned[key]
                or not self._files_present(key, partition)
            ):
                build.append(key)
            else:
                fresh.append(key)
        why = f"commit {commit[:12]}, " if commit else ""
        return Decision(
            build=build,
            fresh=fresh,
            fingerprints=planned,
            why=f"{why}same code and settings",
        )
