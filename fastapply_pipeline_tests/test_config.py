"""fastapply.yaml: defaults, path resolution, and errors that name the field and the fix."""

from pathlib import Path

import pytest
import yaml

from fastapply_pipeline.config import DEFAULT_BUCKETS, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def parse(data, tmp_path=Path("/tmp")):
    return parse_config(data, base_dir=tmp_path, origin="fastapply.yaml")


def test_shipped_settings_file_is_valid_and_points_at_this_repository():
    config = load_config(ROOT / "fastapply.yaml")
    assert [s.key for s in config.sources] == ["fastapply-pipeline"]
    assert config.source_location(config.sources[0]) == str(ROOT)
    assert config.snippets.tokenizer == "cl100k_base"
    assert config.cache_dir == ROOT / ".fastapply" / "cache"


def test_defaults_follow_the_reference_pipeline():
    config = parse({"sources": [{"url": "https://github.com/vercel/next.js"}]})
    assert [b.upper for b in config.snippets.buckets] == [100, 400, 1000, 2000, 3000, 4000, 5000, 10000, None]
    assert [b.sample for b in config.snippets.buckets] == [0, 500, 1000, 3000, 1000, 0, 0, 0, 0]
    assert config.snippets.buckets == DEFAULT_BUCKETS
    assert set(config.files.languages) == {"python", "typescript", "tsx", "javascript", "jsx", "markdown"}
    assert "MIT" in config.files.allowed_licenses and "GPL-3.0" not in config.files.allowed_licenses
    assert config.pools == {"gpu": 1, "anthropic": 1, "openai": 1}


def test_relative_paths_resolve_against_the_settings_file(tmp_path):
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "fastapply.yaml"
    file.write_text(yaml.safe_dump({"sources": [{"path": "../repo"}], "storage": {"cache_dir": "c"}}))
    config = load_config(file)
    assert config.cache_dir == tmp_path / "conf" / "c"
    assert config.source_location(config.sources[0]) == str(tmp_path / "repo")


def test_env_var_chooses_the_file(tmp_path, monkeypatch):
    file = tmp_path / "other.yaml"
    file.write_text(yaml.safe_dump({"sources": [{"url": "https://github.com/a/b"}]}))
    monkeypatch.setenv("FASTAPPLY_CONFIG", str(file))
    assert load_config().sources[0].key == "b"


@pytest.mark.parametrize(
    ("data", "field", "fix"),
    [
        ({}, "sources", "this setting is required"),
        ({"sources": []}, "sources", "at least 1"),
        ({"sources": [{"url": "ext::sh -c id"}]}, "sources.0", "https://"),
        ({"sources": [{"url": "--upload-pack=id"}]}, "sources.0", "starts with '-'"),
        ({"sources": [{"url": "https://x.org/a/b", "path": "."}]}, "sources.0", "exactly one of `url`"),
        ({"sources": [{"url": "https://x.org/a/b", "ref": "--orphan"}]}, "sources.0", "leading '-'"),
        ({"sources": [{"url": "https://x.org/a/b", "name": "Bad Name"}]}, "sources.0", "lowercase letters"),
        (
            {"sources": [{"url": "https://x.org/a/b"}, {"url": "https://y.org/c/b"}]},
            "(top level)",
            "distinct `name:`",
        ),
        (
            {"sources": [{"url": "https://x.org/a/b"}], "snippets": {"tokenizer": "gpt2"}},
            "snippets.tokenizer",
            "cl100k_base",
        ),
        ({"sources": [{"url": "https://x.org/a/b"}], "sede": 1}, "sede", "unknown setting 'sede'"),
        (
            {
                "sources": [{"url": "https://x.org/a/b"}],
                "snippets": {"buckets": [{"upper": 10, "sample": 1}]},
            },
            "snippets.buckets",
            "upper: null",
        ),
        (
            {
                "sources": [{"url": "https://x.org/a/b"}],
                "snippets": {
                    "buckets": [
                        {"upper": 10, "sample": 1},
                        {"upper": 5, "sample": 1},
                        {"upper": None, "sample": 1},
                    ]
                },
            },
            "snippets.buckets",
            "strictly increase",
        ),
        (
            {"sources": [{"url": "https://x.org/a/b"}], "secrets": {"plugins": ["NoSuchDetector"]}},
            "secrets.plugins",
            "choose from",
        ),
        (
            {"sources": [{"url": "https://x.org/a/b"}], "files": {"max_file_bytes": 0}},
            "files.max_file_bytes",
            "greater than 0",
        ),
        (
            {"sources": [{"url": "https://x.org/a/b"}], "triples": {"snippet_styles": {"diff": 1}}},
            "triples.snippet_styles",
            "'anchored', 'generous_context'",
        ),
        (
            {"sources": [{"url": "https://x.org/a/b"}], "triples": {"snippet_styles": {"unit": 0}}},
            "triples.snippet_styles",
            "positive weight",
        ),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(data, field, fix):
    with pytest.raises(ConfigError) as err:
        parse(data)
    message = str(err.value)
    assert message.startswith("fastapply.yaml is invalid")
    assert f"  - {field}" in message
    assert fix in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"no such settings file.*FASTAPPLY_CONFIG"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_unknown_partition_says_how_to_fix_it():
    config = parse({"sources": [{"url": "https://x.org/a/b"}]})
    with pytest.raises(ConfigError, match="fastapply sources remove gone"):
        config.source("gone")
