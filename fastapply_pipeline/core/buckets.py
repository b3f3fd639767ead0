"""Token buckets and seeded, order-independent sampling within each bucket."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketSpec:
    """Buckets as exclusive upper bounds (the last one None = unbounded) and per-bucket sample sizes."""

    uppers: tuple[int | None, ...]
    samples: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if len(self.uppers) != len(self.samples) or not self.uppers or self.uppers[-1] is not None:
            raise ValueError("buckets need one sample size each and an unbounded last bucket")

    @property
    def labels(self) -> list[str]:
        """Human-readable names: '<100', '100-399', ..., '10000+'."""
        labels, lower = [], 0
        for upper in self.uppers:
            if upper is None:
                labels.append(f"{lower}+")
            elif lower == 0:
                labels.append(f"<{upper}")
            else:
                labels.append(f"{lower}-{upper - 1}")
            lower = upper or lower
        return labels

    def bounds(self, index: int) -> tuple[int, int | None]:
        """[lower, upper) of bucket `index`."""
        lower = 0 if index == 0 else self.uppers[index - 1]
        return int(lower or 0), self.uppers[index]

    def index_of(self, tokens: int) -> int:
        """The bucket a token count falls in."""
        bounded = [u for u in self.uppers if u is not None]
        return bisect.bisect_right(bounded, tokens)


def sample_key(seed: int, identity: str) -> str:
    """A per-row sort key: the same rows are chosen for the same seed, whatever order they arrive in."""
    return hashlib.sha256(f"{seed}\0{identity}".encode()).hexdigest()


def seeded_sample(identities: Sequence[str], size: int | None, seed: int) -> list[int]:
    """Indices of the rows to keep: all when `size` is None, else the `size` rows with the smallest keys.

    Keys hash the seed with each row's identity (its path), so the choice does not depend on the input
    order, and adding one file to a repository changes the sample by at most one row.
    """
    if size is None or size >= len(identities):
        return list(range(len(identities)))
    ranked = sorted(range(len(identities)), key=lambda i: sample_key(seed, identities[i]))
    return sorted(ranked[:size])
