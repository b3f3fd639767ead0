"""A repository's license: SPDX ids detected from its LICENSE/COPYING files, and the allowlist check."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from licenseclassifier import identify_license

NOASSERTION = "NOASSERTION"
_LICENSE_FILE_RE = re.compile(r"^(licen[cs]e|copying|unlicense)([.-][^/]*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class LicenseInfo:
    spdx: str  # an SPDX id, an "A AND B" expression, or NOASSERTION
    files: tuple[str, ...]  # the files it was read from
    overridden: bool = False


def license_files(paths: Iterable[str]) -> list[str]:
    """Top-level files that hold a license text (LICENSE, LICENSE.md, COPYING, LICENCE-MIT, ...)."""
    return sorted(p for p in paths if "/" not in p and _LICENSE_FILE_RE.match(p))


def detect_license(texts: Mapping[str, str], override: str | None = None) -> LicenseInfo:
    """The SPDX license of a repository from its license files' texts; `override` wins when given.

    Several files naming different licenses give "A AND B" (code may be under all of them), so an
    allowlist check has to accept every one. No recognizable text gives NOASSERTION.
    """
    if override:
        return LicenseInfo(spdx=override, files=(), overridden=True)
    found: list[str] = []
    used: list[str] = []
    for name in sorted(texts):
        ids = [match.id for match in identify_license(texts[name])]
        if ids:
            used.append(name)
            found.extend(i for i in ids if i not in found)
    if not found:
        return LicenseInfo(spdx=NOASSERTION, files=tuple(sorted(texts)))
    return LicenseInfo(spdx=" AND ".join(sorted(found)), files=tuple(used))


def is_allowed(spdx: str, allowed: Iterable[str]) -> bool:
    """True when every license id of an SPDX expression ("A AND B") is in the allowlist."""
    allowed_set = {a.lower() for a in allowed}
    ids = [part for part in spdx.split(" AND ") if part]
    return spdx != NOASSERTION and bool(ids) and all(i.lower() in allowed_set for i in ids)
