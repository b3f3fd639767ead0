"""Content fingerprints: what an asset was built from (code, settings, inputs), as one short hash.

`fastapply run` skips an asset whose last build had the fingerprint it would have now. A fingerprint
chains: it holds the fingerprints of the asset's inputs, so a change anywhere upstream (a new commit,
a setting, the code) changes every fingerprint below it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # fastapply_pipeline/
DISTRIBUTION = "fastapply-pipeline"


def digest(*parts: object) -> str:
    """A short hash of JSON-able parts (dict keys sorted, so the order of settings does not matter)."""
    payload = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@cache
def code_version(root: Path = PACKAGE_ROOT) -> str:
    """The code an asset runs: every Python file of the package, and the installed version of each
    library the project depends on (a new tokenizer or polars can change rows as much as our code)."""
    sources = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        sources.update(path.relative_to(root).as_posix().encode())
        sources.update(b"\0")
        sources.update(path.read_bytes())
        sources.update(b"\0")
    return digest(sources.hexdigest(), dependency_versions())


def dependency_versions() -> dict[str, str]:
    """name -> installed version of the project's declared dependencies (those installed)."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return {}
    versions = {}
    for requirement in requirements:
        if "extra ==" in requirement:
            continue  # optional extras (dev, gpu) do not build data
        name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
