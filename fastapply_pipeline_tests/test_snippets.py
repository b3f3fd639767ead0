"""code_snippets' core over a real git repository holding every kind of file it must keep or exclude."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from fastapply_pipeline.config import DEFAULT_SECRET_PLUGINS
from fastapply_pipeline.core.buckets import BucketSpec
from fastapply_pipeline.core.files import Exclusion, FileRules, classify_content
from fastapply_pipeline.core.git import sync_mirror
from fastapply_pipeline.core.secrets import SecretScanner, loosen
from fastapply_pipeline.core.snippets import build_snippets, check_snippets
from fastapply_pipeline.core.tokens import get_token_counter

from .helpers import (
    EXPECTED_REASONS,
    FAKE_AWS,
    FAKE_PRIVATE_KEY,
    commit_all,
    init_repo,
    python_module,
    write_files,
)

KEEP_ALL = BucketSpec(uppers=(100, 400, None), samples=(None, None, None))


@pytest.fixture(scope="module")
def mirror(mixed_repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("mirror") / "mixed.git"
    commit = sync_mirror(str(mixed_repo), path, ref=None, depth=5, timeout=30, what="t").commit
    return path, commit


def build(mirror, buckets=KEEP_ALL, seed=42, **rule_overrides):
    path, commit = mirror
    rules = {
        "languages": ["python", "typescript", "tsx", "javascript", "jsx", "markdown"],
        "max_file_bytes": 20_000,
    }
    rules.update(rule_overrides)
    return build_snippets(
        path,
        commit,
        repo="mixed",
        rules=FileRules.build(**rules),
        counter=get_token_counter("cl100k_base"),
        buckets=buckets,
        seed=seed,
        scanner=SecretScanner(DEFAULT_SECRET_PLUGINS),
    )


def test_every_file_is_kept_or_excluded_with_its_reason(mirror):
    result = build(mirror)
    assert result.excluded_paths == {p: r for p, r in EXPECTED_REASONS.items() if r is not None}
    assert sorted(result.table["path"]) == sorted(p for p, r in EXPECTED_REASONS.items() if r is None)
    assert result.exclusions == Counter(r for r in EXPECTED_REASONS.values() if r is not None)
    assert result.accounted() and result.files_total == len(EXPECTED_REASONS)
    assert result.secret_types == Counter({"AWS Access Key": 1, "Private Key": 1})


def test_rows_carry_language_counts_and_hashes(mirror):
    table = build(mirror).table
    assert table.columns == [
        "repo",
        "commit",
        "path",
        "language",
        "content",
        "token_count",
        "line_count",
        "bucket",
        "content_hash",
        "size_bytes",
    ]
    languages = dict(zip(table["path"], table["language"], strict=True))
    assert languages == {
        "README.md": "markdown",
        "components/Button.tsx": "tsx",
        "components/Card.jsx": "jsx",
        "lib/retry.js": "javascript",
        "src/app.py": "python",
        "src/small.py": "python",
        "src/util.ts": "typescript",
    }
    counter = get_token_counter("cl100k_base")
    assert table["token_count"].to_list() == counter.count_batch(table["content"].to_list())
    row = table.filter(table["path"] == "src/small.py").row(0, named=True)
    assert row["line_count"] == row["content"].count("\n")
    assert row["size_bytes"] == len(row["content"].encode())
    assert all(check == [] for check in check_snippets(table, KEEP_ALL).values())


def test_secret_values_are_never_stored(mirror):
    result = build(mirror)
    stored = repr(result.__dict__)
    assert "AKIAIOSFODNN7EXAMPLE" not in stored and "MIIEowIBAAKCAQEA" not in stored


def test_bucket_counts_and_sample_sizes(mirror):
    result = build(mirror, buckets=BucketSpec(uppers=(100, 400, None), samples=(None, 1, 0)))
    counts = dict(zip(result.table["path"], result.table["token_count"], strict=True))
    everything = build(mirror).table
    per_bucket = Counter(KEEP_ALL.labels[KEEP_ALL.index_of(t)] for t in everything["token_count"])
    # Tokenized candidates, plus the files their size alone put in the sample-0 bucket (not tokenized).
    assert set(result.untokenized_per_range) <= {"400+"}
    assert {
        label: count + result.untokenized_per_range.get(label, 0)
        for label, count in result.candidates_per_bucket.items()
    } == {label: per_bucket.get(label, 0) for label in KEEP_ALL.labels}
    assert result.rows_per_bucket == {
        "<100": per_bucket["<100"],
        "100-399": min(1, per_bucket["100-399"]),
        "400+": 0,
    }
    assert result.exclusions[Exclusion.NOT_SAMPLED] == everything.height - result.table.height
    assert all(t < 400 for t in counts.values())
    assert result.accounted()


def test_sample_is_deterministic_and_seeded(mirror):
    spec = BucketSpec(uppers=(None,), samples=(3,))
    first, again = build(mirror, buckets=spec, seed=1), build(mirror, buckets=spec, seed=1)
    assert first.table.equals(again.table)
    chosen = {seed: tuple(build(mirror, buckets=spec, seed=seed).table["path"]) for seed in range(8)}
    assert len(set(chosen.values())) > 1  # some other seed picks other files


def test_globs_and_language_selection(mirror):
    result = build(mirror, languages=["python"], include=["src/**"], exclude=["src/small.py"])
    assert result.table["path"].to_list() == ["src/app.py"]
    assert result.exclusions[Exclusion.EXCLUDED_BY_GLOB] > 0


def test_license_not_allowed_skips_the_whole_repository(mirror):
    path, commit = mirror
    result = build_snippets(
        path,
        commit,
        repo="mixed",
        rules=FileRules.build(["python"], 20_000),
        counter=get_token_counter("cl100k_base"),
        buckets=KEEP_ALL,
        seed=1,
        scanner=None,
        license_allowed=False,
    )
    assert result.table.height == 0
    assert result.exclusions == Counter({"license_not_allowed": len(EXPECTED_REASONS)})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01", Exclusion.BINARY),
        ("na\u00efve".encode("latin-1"), Exclusion.NON_UTF8),
        (b"  \n\n", Exclusion.EMPTY),
        (b"x" * 7000, Exclusion.MINIFIED),
        (b"ok = 1\n" * 2000 + b"y" * 6000, None),  # one long line among many short ones: hand-written
        (b"var a=1;" * 2000 + b"\n//# sourceMappingURL=a.js.map\n", Exclusion.MINIFIED),
        (b"# @generated by protoc\nx = 1\n", Exclusion.GENERATED),
        (b"def f():\n    return 1\n", None),
    ],
)
def test_content_rules(data, reason):
    assert classify_content(data)[0] == reason


def test_scanner_finds_only_real_credential_shapes():
    scanner = SecretScanner(DEFAULT_SECRET_PLUGINS)
    assert scanner.secret_types("a.py", FAKE_AWS) == ["AWS Access Key"]
    assert scanner.secret_types("k.ts", FAKE_PRIVATE_KEY) == ["Private Key"]
    assert scanner.secret_types(
        "t.js", "const token = 'ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'\n"
    ) == ["GitHub Token"]
    assert scanner.secret_types("ok.py", "password = get_password()\nAKIA = 'short'\n") == []


def test_loosened_patterns_match_wherever_the_originals_do():
    import re

    import re2

    scanner_classes = SecretScanner(DEFAULT_SECRET_PLUGINS)
    assert scanner_classes.might_hold_secret(FAKE_AWS)
    samples = [
        FAKE_AWS,
        FAKE_PRIVATE_KEY,
        "xoxb-1234-5678-abcdefgh",
        "sk_live_" + "a" * 24,
        "glpat-" + "b" * 20,
    ]
    from fastapply_pipeline.core.secrets import _plugin_classes

    for name in DEFAULT_SECRET_PLUGINS:
        for pattern in _plugin_classes()[name]().denylist:
            loose = re2.compile(loosen(pattern))
            for text in samples:
                if re.search(pattern, text):
                    assert loose.search(text), (name, pattern.pattern)


def test_scanning_candidate_lines_agrees_with_detect_secrets_on_whole_files(tmp_path, mixed_repo):
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import transient_settings

    scanner = SecretScanner(DEFAULT_SECRET_PLUGINS)
    texts = {
        "settings.py": "import os\n" * 50 + FAKE_AWS + "x = 1\n" * 50,
        "db.py": '"""Connect with postgresql://scott:tiger@localhost/test."""\n',
        "key.ts": "const a = 1;\n" + FAKE_PRIVATE_KEY,
        "plain.py": (mixed_repo / "src" / "app.py").read_text(),
        "token.js": "// docs\nconst t = 'xoxb-1234567890-abcdefghij';\n",
    }
    for name, text in texts.items():
        whole = tmp_path / name
        whole.write_text(text)
        with transient_settings({"plugins_used": [{"name": n} for n in DEFAULT_SECRET_PLUGINS]}):
            expected = sorted({s.type for s in scan_file(str(whole))})
        assert scanner.detected_types(name, text) == expected, name


def test_a_file_name_that_is_not_utf8_is_counted_and_the_rest_go_on(tmp_path):
    # git stores names as bytes: a Latin-1 name committed from a bytes path cannot become a string column.
    repo = tmp_path / "latin1-names"
    init_repo(repo)
    write_files(repo, {"ok.py": python_module("ok", 2)})
    (repo / "x").mkdir()
    with open(os.fsencode(repo / "x") + b"/caf\xe9.py", "wb") as f:
        f.write(python_module("cafe", 2).encode())
    commit = commit_all(repo, "latin-1 file name")
    mirror = tmp_path / "m.git"
    sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t")
    result = build_snippets(
        mirror,
        commit,
        repo="latin1",
        rules=FileRules.build(["python"], 20_000),
        counter=get_token_counter("cl100k_base"),
        buckets=KEEP_ALL,
        seed=1,
        scanner=SecretScanner(DEFAULT_SECRET_PLUGINS),
    )
    assert result.table["path"].to_list() == ["ok.py"]
    assert result.exclusions == Counter({"non_utf8_path": 1})
    assert result.accounted()
    # The report names the file readably, and it can be stored as UTF-8 (JSON, Dagster metadata).
    assert result.examples() == {"non_utf8_path": ["x/caf\\xe9.py"]}
    json.dumps(result.examples(), ensure_ascii=False).encode("utf-8")
    result.table.write_parquet(tmp_path / "snippets.parquet")


def test_files_skipped_by_their_size_bounds_are_ones_tokenizing_would_drop(tmp_path):
    """Same rows and the same reason for every file, with and without skipping on the size bounds."""
    # A real small tree: this project's own modules, from two-line __init__ files to 10,000+ tokens.
    root = Path(__file__).resolve().parents[1]
    sources = sorted(root.glob("fastapply_pipeline/**/*.py"))
    repo = tmp_path / "self"
    init_repo(repo)
    write_files(repo, {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sources})
    commit = commit_all(repo, "the project's sources")
    mirror = tmp_path / "self.git"
    sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t")
    spec = BucketSpec(uppers=(100, 400, 1000, 3000, None), samples=(0, None, 3, None, 0))

    def run(bounds: bool):
        return build_snippets(
            mirror,
            commit,
            repo="self",
            rules=FileRules.build(["python"], 500_000),
            counter=get_token_counter("cl100k_base"),
            buckets=spec,
            seed=7,
            scanner=SecretScanner(DEFAULT_SECRET_PLUGINS),
            skip_by_bounds=bounds,
        )

    skipping, tokenizing = run(True), run(False)
    assert skipping.table.equals(tokenizing.table) and skipping.table.height > 20
    assert skipping.excluded_paths == tokenizing.excluded_paths  # every file: the same one reason
    assert skipping.exclusions == tokenizing.exclusions
    assert skipping.accounted() and tokenizing.accounted()
    assert skipping.files_total == tokenizing.files_total == len(sources)
    # Skipped: small files and big ones, only from the sample-0 ranges, and each tokenized file is
    # still in its bucket's candidates.
    skipped = skipping.untokenized_per_range
    assert set(skipped) == {"<100", "3000+"} and skipped["3000+"] >= 3
    assert tokenizing.untokenized_per_range == {}
    for label, count in tokenizing.candidates_per_bucket.items():
        assert skipping.candidates_per_bucket[label] == count - skipped.get(label, 0)
