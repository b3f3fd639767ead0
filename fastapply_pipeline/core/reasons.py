"""Why a stage kept nothing, in one line that names the setting to change.

The per-repository assets put it in their metadata under WHY_EMPTY when they have no rows; `fastapply
run` prints it under the asset and again in its summary, at the default verbosity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

WHY_EMPTY = "why_empty"  # the metadata key


def _top(counts: Mapping[str, int], n: int = 3) -> str:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
    return ", ".join(f"{reason} ({count})" for reason, count in ranked)


def why_no_snippets(
    *,
    files_total: int,
    exclusions: Mapping[str, int],
    license: str | None,
    license_allowed: bool,
    languages: Sequence[str],
    samples: Mapping[str, int | None],
    candidates_per_bucket: Mapping[str, int],
    untokenized_per_range: Mapping[str, int],
) -> str:
    """Why code_snippets kept no file of a repository (call it only when it kept none).

    `samples`: bucket label -> its sample size (None: all); `candidates_per_bucket`: the files each
    bucket held before sampling; `untokenized_per_range`: files whose size alone put them in sample-0
    buckets, by that token range (never tokenized, so in no bucket's candidates)."""
    counts = Counter({reason: n for reason, n in exclusions.items() if n})
    if files_total == 0:
        return "the repository tracks no file at its commit; check the source's `ref:`"
    if not license_allowed:
        return (
            f"its license ({license or 'none detected'}) is not in files.allowed_licenses: add it there, or "
            "set `license:` on the source if it was detected wrongly"
        )
    if counts.get("excluded_by_glob", 0) == files_total:
        return f"all {files_total} files are left out by the source's include/exclude globs: widen `include:`"
    if counts.get("language_not_selected", 0) + counts.get("excluded_by_glob", 0) == files_total:
        return (
            f"none of its {files_total} files is in a selected language (files.languages: "
            f"{', '.join(languages)}): add the language it is written in"
        )
    sampled_out = counts.get("not_sampled", 0)
    if sampled_out:  # with no row kept, every file that passed the filters was sampled out
        zero = [label for label, size in samples.items() if size == 0]
        held = [label for label in zero if candidates_per_bucket.get(label)]
        held += sorted(label for label, n in untokenized_per_range.items() if n and label not in held)
        where = f" ({', '.join(held)} tokens)" if held else ""
        return (
            f"all {sampled_out} files of the selected languages fall in buckets that sample 0 files{where}: "
            "raise `sample:` of those buckets in snippets.buckets (null keeps every file)"
        )
    return f"every file was excluded: {_top(counts)}; files.* and secrets.* decide these"


def why_no_triples(*, snippet_rows: int, generators: Sequence[str], rejected: Mapping[str, int]) -> str:
    """Why edit_triples has no row for a repository (call it only when it has none)."""
    if not generators:
        return "triples.generators is empty: add structural, git_history, anthropic or openai"
    if rejected:
        return f"every candidate edit was rejected: {_top(rejected)}; the asset's rejected_by_reason lists them all"
    if snippet_rows == 0:
        return "code_snippets kept no file to edit (its line says why)"
    if list(generators) == ["git_history"]:
        return "git_history found no commit that edits a kept file: add `structural` to triples.generators"
    return "no generator proposed an edit: check triples.* (structural.attempts_per_file, llm.files_per_repo)"
