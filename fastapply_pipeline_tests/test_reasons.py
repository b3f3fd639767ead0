"""Why a stage kept nothing: one line naming the setting to change (core.reasons), and the CLI printing it
in the run summary at the default verbosity for real repositories that keep nothing."""

import pytest

from fastapply_pipeline.core.reasons import why_no_snippets, why_no_triples
from fastapply_pipeline_tests.helpers import (
    MIT_TEXT,
    base_settings,
    invoke,
    make_repo,
    python_module,
    write_config,
)

SAMPLES = {"<100": 0, "100-399": None, "400+": 0}


def snippets_reason(**overrides) -> str:
    arguments = {
        "files_total": 10,
        "exclusions": {},
        "license": "MIT",
        "license_allowed": True,
        "languages": ["python", "typescript"],
        "samples": SAMPLES,
        "candidates_per_bucket": {},
        "untokenized_per_range": {},
    }
    return why_no_snippets(**(arguments | overrides))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"files_total": 0}, "tracks no file"),
        (
            {"license": "GPL-3.0-only", "license_allowed": False, "exclusions": {"license_not_allowed": 10}},
            "its license (GPL-3.0-only) is not in files.allowed_licenses",
        ),
        ({"license": None, "license_allowed": False}, "its license (none detected)"),
        ({"exclusions": {"excluded_by_glob": 10}}, "include/exclude globs: widen `include:`"),
        (
            {"exclusions": {"language_not_selected": 8, "excluded_by_glob": 2}},
            "none of its 10 files is in a selected language (files.languages: python, typescript)",
        ),
        (
            {
                "exclusions": {"not_sampled": 6, "language_not_selected": 4},
                "candidates_per_bucket": {"<100": 6, "100-399": 0, "400+": 0},
            },
            "all 6 files of the selected languages fall in buckets that sample 0 files (<100 tokens)",
        ),
        (  # files whose size alone put them past every kept bucket are never tokenized: named too
            {
                "exclusions": {"not_sampled": 7},
                "candidates_per_bucket": {"<100": 2, "100-399": 0, "400+": 0},
                "untokenized_per_range": {"400+": 5},
            },
            "all 7 files of the selected languages fall in buckets that sample 0 files (<100, 400+ tokens)",
        ),
        (
            {"exclusions": {"secret": 3, "generated": 5, "too_large": 2}},
            "every file was excluded: generated (5), secret (3), too_large (2)",
        ),
    ],
)
def test_why_code_snippets_kept_nothing(overrides, expected):
    assert expected in snippets_reason(**overrides)


def test_the_license_reason_comes_first_and_names_both_fixes():
    reason = snippets_reason(license="GPL-2.0", license_allowed=False, exclusions={"license_not_allowed": 10})
    assert "files.allowed_licenses" in reason and "`license:` on the source" in reason


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"snippet_rows": 3, "generators": [], "rejected": {}}, "triples.generators is empty"),
        ({"snippet_rows": 0, "generators": ["structural"], "rejected": {}}, "code_snippets kept no file"),
        (
            {"snippet_rows": 0, "generators": ["structural", "git_history"], "rejected": {}},
            "code_snippets kept",
        ),
        ({"snippet_rows": 2, "generators": ["git_history"], "rejected": {}}, "add `structural`"),
        (
            {"snippet_rows": 4, "generators": ["structural"], "rejected": {"structural: no_units": 4}},
            "every candidate edit was rejected: structural: no_units (4)",
        ),
        ({"snippet_rows": 4, "generators": ["structural"], "rejected": {}}, "no generator proposed an edit"),
    ],
)
def test_why_edit_triples_has_no_row(arguments, expected):
    assert expected in why_no_triples(**arguments)


def _repo(tmp_path, name, files):
    return make_repo(tmp_path / name, files, name)


@pytest.mark.slow
def test_run_summary_says_why_a_source_kept_nothing(tmp_path, monkeypatch):
    """Three real sources that keep nothing, each for its own reason, beside one that works; at the
    default verbosity the run prints each reason under the asset and again in its summary."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    good = _repo(
        tmp_path,
        "good",
        {"LICENSE": MIT_TEXT, **{f"pkg/m{i}.py": python_module(f"m{i}", 4) for i in range(4)}},
    )
    rusty = _repo(tmp_path, "rusty", {"LICENSE": MIT_TEXT, "src/lib.rs": "pub fn one() -> u32 { 1 }\n" * 30})
    tiny = _repo(tmp_path, "tiny", {"LICENSE": MIT_TEXT, "pkg/t.py": "X = 1\n"})
    sources = [
        {"path": str(good), "name": "good"},
        {"path": str(rusty), "name": "rusty"},
        {"path": str(tiny), "name": "tiny"},
        {"path": str(good), "name": "copyleft", "license": "GPL-3.0-only"},
    ]
    data = base_settings(tmp_path, sources, files={"languages": ["python"], "max_file_bytes": 20_000})
    data["snippets"]["buckets"] = [{"upper": 100, "sample": 0}, {"upper": None, "sample": None}]
    path = write_config(tmp_path / "fastapply.yaml", data)
    result = invoke("run", "--config", path)
    assert result.exit_code == 0, result.output
    summary = result.output.split("asset(s) kept nothing:")[1]
    assert (
        "rusty: code_snippets: none of its 2 files is in a selected language (files.languages: python)"
        in summary
    )
    assert (
        "tiny: code_snippets: all 1 files of the selected languages fall in buckets that sample 0" in summary
    )
    assert "copyleft: code_snippets: its license (GPL-3.0-only) is not in files.allowed_licenses" in summary
    assert "good:" not in summary
    assert "rusty: edit_triples: " in summary and "tiny: edit_triples: " in summary
    assert "      kept nothing: none of its 2 files" in result.output  # under the asset, too
