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
        return [range_label(*self.bounds(index)) for index in range(len(self.uppers))]

    def bounds(self, index: int) -> tuple[int, int | None]:
        """[lower, upper) of bucket `index`."""
        lower = 0 if index == 0 else self.uppers[index - 1]
        return int(lower or 0), self.uppers[index]

    def index_of(self, tokens: int) -> int:
        """The bucket a token count falls in."""
        bounded = [u for u in self.uppers if u is not None]
        return bisect.bisect_right(bounded, tokens)

    def dropped_range(self, lower: int, upper: int) -> str | None:
        """The label of the token range, made of neighbouring buckets that keep nothing (sample 0), that holds
        every count in [lower, upper]; None when some count there falls in a bucket that keeps files.

        A file whose token count is known to lie in such a range needs no exact count: it is dropped
        whatever the count is.
        """
        first, last = self.index_of(lower), self.index_of(upper)
        if any(self.samples[i] != 0 for i in range(first, last + 1)):
            return None
        while first > 0 and self.samples[first - 1] == 0:
            first -= 1
        while last < len(self.samples) - 1 and self.samples[last + 1] == 0:
            last += 1
        return range_label(self.bounds(first)[0], self.bounds(last)[1])

    def dropped_from(self, tokens: int) -> int | None:
        """The smallest count of the run of buckets that keep nothing around `tokens`' bucket (None when that
        bucket keeps files): a lower bound that reaches it, with an upper bound in the run, drops the file."""
        index = self.index_of(tokens)
        if self.samples[index] != 0:
            return None
        while index > 0 and self.samples[index - 1] == 0:
            index -= 1
        return self.bounds(index)[0]


def range_label(lower: int, upper: int | None) -> str:
    """'<100' for [0, 100), '100-399' for [100, 400), '10000+' for [10000, None)."""
    if upper is None:
        return f"{lower}+"
    return f"<{upper}" if lower == 0 else f"{lower}-{upper - 1}"


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
