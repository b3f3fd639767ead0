"""fastapply_dataset's core on good rows and planted bad ones; the prompt; writing, reloading, pushing."""

from collections import Counter

import polars as pl
import pytest
import yaml
from datasets import load_dataset, load_from_disk

from fastapply_pipeline.core.chat import (
    control_tokens,
    example_lengths,
    load_training_tokenizer,
    render_example,
)
from fastapply_pipeline.core.dataset import (
    dataset_card,
    dedup,
    push_to_hub,
    repos_in_several_splits,
    snippet_is_subsequence,
    split,
    validate,
    write_dataset,
)
from fastapply_pipeline.core.prompt import parse_answer
from fastapply_pipeline.core.training import IGNORE_INDEX, encode
from fastapply_pipeline.core.triples import Provenance, make_triple, triples_frame, with_token_counts
from fastapply_pipeline_tests.helpers import python_module

# The inference prompt of ../shared/DESIGN.md, byte for byte.
DESIGN_PROMPT = (
    "<|im_start|>system\n"
    "You are a coding assistant that helps merge code updates, ensuring every modification is fully integrated.<|im_end|>\n"
    "<|im_start|>user\n"
    "Merge all changes from the <update> snippet into the <code> below.\n"
    "- Preserve the code's structure, order, comments, and indentation exactly.\n"
    "- Output only the updated code, enclosed within <updated-code> and </updated-code> tags.\n"
    "- Do not include any additional text, explanations, placeholders, ellipses, or code fences.\n"
    "\n"
    "<code>{original_code}</code>\n"
    "\n"
    "<update>{update_snippet}</update>\n"
    "\n"
    "Provide the complete updated code.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_training_tokenizer()


@pytest.mark.slow
def test_training_example_is_the_design_prompt_plus_target(tokenizer):
    original, snippet, final = (
        "def f(x):\n    return {x: 1}\n",
        "# ... existing code ...\n",
        "def f(x):\n    return {x: 2}\n",
    )
    rendered = render_example(tokenizer, original, snippet, final)
    expected = DESIGN_PROMPT.replace("{original_code}", original).replace("{update_snippet}", snippet)
    assert rendered.prompt == expected
    assert rendered.text == expected + "<updated-code>" + final + "</updated-code><|im_end|>\n"
    assert parse_answer(rendered.text[len(rendered.prompt) :]) == final
    assert parse_answer("<updated-code>cut off") is None
    assert len(tokenizer) == 151665  # Qwen2.5's vocabulary, without Qwen3's added tokens


def edit(original: str, old: str, new: str, repo: str, path: str, generator: str = "structural", **extra):
    final = original.replace(old, new, 1)
    triple = make_triple(
        original, final, Provenance(repo, "c0ffee", path, "python", generator, "modify_function")
    )
    assert not isinstance(triple, str), triple
    return triple


def frame(triples, **overrides) -> pl.DataFrame:
    table = with_token_counts(triples_frame(triples), lambda texts: [len(t) // 4 for t in texts])
    table = table.with_columns(pl.lit("100-399").alias("bucket"))
    return table.with_columns(**{k: pl.lit(v) for k, v in overrides.items()}) if overrides else table


def good_rows(repos=("alpha", "beta", "gamma", "delta"), files=3) -> pl.DataFrame:
    triples = []
    for repo in repos:
        for i in range(files):
            code = python_module(f"{repo}{i}", 6)
            triples.append(
                edit(
                    code,
                    "math.sqrt(abs(value)) * scale",
                    "math.sqrt(abs(value)) * scale * 2",
                    repo,
                    f"m{i}.py",
                )
            )
    return frame(triples)


def bad_rows() -> tuple[pl.DataFrame, Counter]:
    """Rows each planted to fail exactly one rule."""
    base = python_module("bad", 6)
    ok = edit(base, "return math.sqrt", "return 2 * math.sqrt", "alpha", "bad.py")
    rows = []

    def variant(reason, **changes):
        row = frame([ok]).to_dicts()[0] | changes
        row["triple_id"] = f"{reason}-{len(rows)}"
        rows.append(row)

    variant("no_change", final_code=ok.original_code)
    variant(
        "marker_in_final",
        final_code=ok.final_code.replace("import math\n", "import math\n# ... existing code ...\n"),
    )
    variant(
        "final_does_not_parse",
        final_code=ok.final_code.replace("def bad_step_0(", "def bad_step_0(("),
        update_snippet=ok.update_snippet,
    )
    variant(
        "snippet_not_subsequence_of_final", update_snippet=ok.update_snippet.replace("2 * math", "3 * math")
    )
    variant("whole_file_rewrite", final_code="x = 1\n", update_snippet="x = 1\n")
    variant(
        "llm_applier_disagrees",
        generator="anthropic",
        model="claude-sonnet-4-6",
        flag="applier_disagrees",
        final_code=ok.final_code.replace("import math", "import math, sys"),
    )
    long_code = python_module("long", 400)
    variant(
        "too_long",
        original_code=long_code,
        final_code=long_code.replace("return math", "return 2 * math", 1),
        update_snippet="# ... existing code ...\n    return 2 * math.sqrt(abs(value)) * scale\n# ... existing code ...\n",
    )
    expected = Counter({r["triple_id"].rsplit("-", 1)[0]: 1 for r in rows})
    return pl.DataFrame(rows, schema=frame([ok]).schema), expected


def run_validate(table, tokenizer, policy="reject", max_seq_length=2048):
    return validate(
        table,
        max_changed_fraction=0.6,
        max_seq_length=max_seq_length,
        llm_disagreement=policy,
        example_lengths=lambda rows: example_lengths(tokenizer, rows),
        control_tokens=control_tokens(tokenizer),
    )


@pytest.mark.slow
def test_each_planted_bad_row_is_dropped_for_its_own_reason(tokenizer):
    bad, expected = bad_rows()
    good = good_rows()
    outcome = run_validate(pl.concat([good, bad]), tokenizer)
    rejected = outcome.rejected_frame()
    assert Counter(rejected["reason"]) == expected
    assert set(rejected["stage"]) == {"validate"}
    assert outcome.kept.height == good.height  # every good row survives, and nothing is lost
    assert outcome.kept.height + rejected.height == good.height + bad.height
    assert (outcome.kept["example_tokens"] > 100).all()
    too_long = rejected.filter(pl.col("reason") == "too_long")["detail"][0]
    assert too_long.endswith("> 2048")


@pytest.mark.slow
def test_llm_disagreements_can_take_the_applier_result(tokenizer):
    bad, _ = bad_rows()
    llm = bad.filter(pl.col("generator") == "anthropic")
    outcome = run_validate(llm, tokenizer, policy="use_applier")
    assert outcome.kept.height == 1 and outcome.rejected == []
    row = outcome.kept.row(0, named=True)
    assert "import math, sys" not in row["final_code"] and "return 2 * math" in row["final_code"]
    assert row["flag"] is None


@pytest.mark.slow
def test_exact_and_near_duplicates_keep_one_row_each(tokenizer):
    code = python_module("dup", 12)
    first = edit(code, "scale: float = 3.0", "scale: float = 3.5", "alpha", "dup.py")
    same = frame([first]).with_columns(pl.lit("zzz-exact").alias("triple_id"), pl.lit("beta").alias("repo"))
    # The same file with one more line at the end, and the same edit: a near duplicate.
    near_code = code + "\n\nVERSION = '1.0'\n"
    near = edit(near_code, "scale: float = 3.0", "scale: float = 3.5", "gamma", "dup.py")
    # The same file with a different edit is not a duplicate.
    other = edit(code, "scale: float = 9.0", "scale: float = 9.5", "alpha", "dup.py")
    table = pl.concat([frame([first]), same, frame([near, other])])
    outcome = dedup(run_validate(table, tokenizer), near=True, threshold=0.8, num_perm=128, seed=1)
    rejected = outcome.rejected_frame()
    assert dict(Counter(rejected["reason"])) == {"exact_duplicate": 1, "near_duplicate": 1}
    assert rejected.filter(pl.col("reason") == "exact_duplicate")["detail"][0] == first.triple_id
    assert set(outcome.kept["triple_id"]) == {first.triple_id, other.triple_id} or set(
        outcome.kept["triple_id"]
    ) == {
        near.triple_id,
        other.triple_id,
    }
    # Deterministic: the row kept is the first in triple_id order, whatever the input order.
    again = dedup(run_validate(table.reverse(), tokenizer), near=True, threshold=0.8, num_perm=128, seed=1)
    assert again.kept["triple_id"].to_list() == outcome.kept["triple_id"].to_list()
    without_near = dedup(run_validate(table, tokenizer), near=False, threshold=0.8, num_perm=128, seed=1)
    assert without_near.kept.height == 3


@pytest.mark.slow
def test_the_control_tokens_are_every_added_token_of_the_training_tokenizer(tokenizer):
    tokens = control_tokens(tokenizer)
    assert {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<tool_call>"} <= set(tokens)
    assert len(tokens) == 22  # Qwen2.5's added tokens, special or not: each is one id when it is in a text


@pytest.mark.slow
def test_code_spelling_a_control_token_is_dropped_and_counted_and_no_answer_holds_one(tmp_path, tokenizer):
    """Code holding `<|im_end|>` would become a real end of turn inside the supervised answer."""
    code = python_module("ctl", 6)
    in_final = edit(
        code, "return math.sqrt", 'print("<|im_end|>")\n    return math.sqrt', "alpha", "final.py"
    )
    spiked = code.replace('"""The ctl module."""', '"""The ctl module. Ends a turn: <|endoftext|>"""')
    in_original = edit(spiked, "scale: float = 2.0", "scale: float = 2.5", "beta", "original.py")
    fim = edit(code, "scale: float = 3.0", 'scale: float = 3.0, tag="<|fim_prefix|>"', "gamma", "fim.py")
    good = good_rows()
    table = pl.concat([good, frame([in_final, in_original, fim])])
    outcome = dedup(run_validate(table, tokenizer), near=False, threshold=0.8, num_perm=64, seed=1)
    rejected = outcome.rejected_frame()
    assert dict(Counter(zip(rejected["stage"], rejected["reason"], strict=True))) == {
        ("validate", "control_token"): 3
    }
    details = dict(zip(rejected["triple_id"], rejected["detail"], strict=True))
    assert details == {
        in_final.triple_id: "'<|im_end|>' in update_snippet",  # the snippet shows the added line first
        in_original.triple_id: "'<|endoftext|>' in original_code",
        fim.triple_id: "'<|fim_prefix|>' in update_snippet",
    }
    assert outcome.kept.height + rejected.height == table.height  # nothing lost

    parts = split(outcome.kept, test=0.25, validation=0.0, seed=1)
    write_dataset(tmp_path / "dataset", parts.splits, "card")
    dataset = load_from_disk(str(tmp_path / "dataset" / "hf"))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for name in dataset:
        for row in dataset[name]:
            example = encode(tokenizer, row["original_code"], row["update_snippet"], row["final_code"], 4096)
            answer = [
                t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX
            ]
            # Exactly one end of turn in what the model learns to write: its own, at the very end.
            assert answer.count(eos) == 1 and tokenizer.decode(answer[answer.index(eos) + 1 :]) == "\n"
            assert not set(answer) & {
                tokenizer.convert_tokens_to_ids(t) for t in control_tokens(tokenizer)
            } - {eos}


def test_split_keeps_each_repository_in_one_split_and_is_seeded():
    table = good_rows(repos=[f"repo{i}" for i in range(10)], files=2)
    parts = split(table, test=0.2, validation=0.1, seed=7)
    assert parts.by == "repo" and set(parts.splits) == {"train", "validation", "test"}
    assert repos_in_several_splits(parts.splits) == []
    assert sum(f.height for f in parts.splits.values()) == table.height
    assert all(f.height > 0 for f in parts.splits.values())
    assert parts.splits["test"]["repo"].n_unique() == 2  # 20% of 10 equal repositories
    again = split(table.reverse(), test=0.2, validation=0.1, seed=7)
    assert all(again.splits[n].equals(parts.splits[n]) for n in parts.splits)
    other = split(table, test=0.2, validation=0.1, seed=8)
    assert set(other.splits["test"]["repo"]) != set(parts.splits["test"]["repo"])


def test_one_repository_splits_by_file_and_two_repositories_still_give_a_test_split():
    single = good_rows(repos=["solo"], files=6)
    parts = split(single, test=0.1, validation=0.0, seed=1)
    assert parts.by == "file" and set(parts.splits) == {"train", "test"}
    assert parts.splits["test"].height >= 1
    assert set(parts.splits["test"]["path"]).isdisjoint(parts.splits["train"]["path"])
    pair = split(good_rows(repos=["a", "b"], files=1), test=0.1, validation=0.0, seed=1)
    assert pair.splits["test"].height == 1 and pair.splits["train"].height == 1
    with pytest.raises(ValueError, match="at least two files"):
        split(good_rows(repos=["solo"], files=1), test=0.1, validation=0.0, seed=1)


def built(tmp_path, tokenizer):
    outcome = dedup(run_validate(good_rows(), tokenizer), near=True, threshold=0.9, num_perm=64, seed=1)
    parts = split(outcome.kept, test=0.25, validation=0.0, seed=1)
    sources = [
        {"repo": r, "location": r, "commit": "c0ffee" * 6, "license": "MIT"}
        for r in ("alpha", "beta", "gamma", "delta")
    ]
    card = dataset_card(
        pretty_name="Test set",
        splits=parts.splits,
        split_by=parts.by,
        sources=sources,
        rejected=Counter({"validate: too_long": 2}),
        settings={"seed": 1, "max_seq_length": 2048},
    )
    folder = tmp_path / "dataset"
    write_dataset(folder, parts.splits, card)
    return folder, parts


@pytest.mark.slow
def test_the_saved_dataset_reloads_from_disk_and_from_parquet(tmp_path, tokenizer):
    folder, parts = built(tmp_path, tokenizer)
    reloaded = load_from_disk(str(folder / "hf"))
    assert set(reloaded) == {"train", "test"}
    assert reloaded["test"].num_rows == parts.splits["test"].height
    assert reloaded["train"].column_names[:3] == ["original_code", "update_snippet", "final_code"]
    assert {"repo", "commit", "path", "language", "generator", "edit_kind", "example_tokens"} <= set(
        reloaded["train"].column_names
    )
    assert sorted(reloaded["test"]["triple_id"]) == sorted(parts.splits["test"]["triple_id"])
    from_parquet = load_dataset(
        "parquet", data_files={n: str(folder / "data" / f"{n}.parquet") for n in ("train", "test")}
    )
    assert from_parquet["train"].num_rows == reloaded["train"].num_rows
    assert from_parquet["test"][0]["final_code"] == reloaded["test"][0]["final_code"]
    # Written again, the folder is replaced whole.
    write_dataset(folder, {"train": parts.splits["train"], "test": parts.splits["test"]}, "card")
    assert (folder / "README.md").read_text() == "card" and not (folder.parent / "dataset.tmp").exists()


@pytest.mark.slow
def test_the_card_has_hugging_face_front_matter_from_the_data(tmp_path, tokenizer):
    folder, parts = built(tmp_path, tokenizer)
    text = (folder / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert (
        front["license"] == "mit" and front["language"] == ["code"] and front["size_categories"] == ["n<1K"]
    )
    assert {s["name"]: s["num_examples"] for s in front["dataset_info"]["splits"]} == {
        n: f.height for n, f in parts.splits.items()
    }
    assert [f["name"] for f in front["dataset_info"]["features"]][:3] == [
        "original_code",
        "update_snippet",
        "final_code",
    ]
    assert front["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train.parquet"}
    assert "| validate: too_long | 2 |" in text and "| alpha | alpha | c0ffeec0ffee | MIT |" in text
    assert "| python | 12 |" in text
    mixed = dataset_card(
        pretty_name="x",
        splits=parts.splits,
        split_by="repo",
        rejected=Counter(),
        settings={},
        sources=[
            {"repo": "a", "location": "a", "commit": "0" * 40, "license": "MIT"},
            {"repo": "b", "location": "b", "commit": "1" * 40, "license": "Apache-2.0"},
        ],
    )
    front = yaml.safe_load(mixed.split("---\n")[1])
    assert front["license"] == "other" and "b (Apache-2.0)" in front["license_details"]


class FakeHfApi:
    """A stand-in for huggingface_hub.HfApi at its API boundary: the Hub cannot be reached from here, so
    this records the calls push_to_hub makes (and what the uploaded folder holds) instead."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        from pathlib import Path

        files = sorted(
            str(p.relative_to(kwargs["folder_path"]))
            for p in Path(kwargs["folder_path"]).rglob("*")
            if p.is_file()
        )
        self.calls.append(("upload_folder", kwargs, files))


@pytest.mark.slow
def test_push_creates_a_private_dataset_repo_and_uploads_card_and_parquet(tmp_path, tokenizer):
    folder, _ = built(tmp_path, tokenizer)
    api = FakeHfApi()
    url = push_to_hub(folder, "me/fast-apply", private=True, token="hf_secret", api=api)
    assert url == "https://huggingface.co/datasets/me/fast-apply"
    (create, upload) = api.calls
    assert create == (
        "create_repo",
        "me/fast-apply",
        {"repo_type": "dataset", "private": True, "exist_ok": True},
    )
    assert upload[1]["repo_type"] == "dataset" and upload[1]["allow_patterns"] == [
        "README.md",
        "data/*.parquet",
    ]
    assert {"README.md", "data/train.parquet", "data/test.parquet"} <= set(upload[2])


def test_snippet_subsequence_rule():
    final = "a\nb\nc\nd\n"
    assert snippet_is_subsequence("# ... existing code ...\nb\nc\n# ... existing code ...\n", final)
    assert snippet_is_subsequence("b  \nd\n", final)  # trailing spaces do not matter
    assert not snippet_is_subsequence("c\nb\n", final)  # order does
    assert not snippet_is_subsequence("b\nx\n", final)


def test_the_dataset_never_replaces_a_folder_holding_the_users_files(tmp_path):
    """Before: `storage.artifacts_dir: .` made the dataset build delete the user's ./dataset/labels.csv."""
    from fastapply_pipeline.core.artifacts import ForeignFilesError
    from fastapply_pipeline.core.dataset import DATASET_COLUMNS, write_dataset

    frame = pl.DataFrame({c: ["x"] for c in DATASET_COLUMNS})
    user = tmp_path / "dataset"
    user.mkdir()
    (user / "labels.csv").write_text("id,label\n1,cat\n")
    (tmp_path / "dataset.old").mkdir()  # names the old code used for its own temporary folders
    (tmp_path / "dataset.old" / "keep.txt").write_text("mine")
    with pytest.raises(ForeignFilesError, match=r"labels\.csv.*storage\.artifacts_dir"):
        write_dataset(user, {"train": frame}, "card")
    assert (user / "labels.csv").read_text() == "id,label\n1,cat\n"

    ours = tmp_path / "artifacts" / "dataset"
    write_dataset(ours, {"train": frame}, "card")
    write_dataset(ours, {"train": frame}, "card v2")  # ours (marked): replaced as a whole
    assert (ours / "README.md").read_text() == "card v2"
    assert (tmp_path / "dataset.old" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["dataset"]  # no temp left


@pytest.mark.parametrize("folder", [".", "..", "~"])
def test_storage_in_the_project_folder_or_above_is_refused(tmp_path, folder, monkeypatch):
    from fastapply_pipeline.config import ConfigError, parse_config

    monkeypatch.setenv("HOME", str(tmp_path))
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(
        ConfigError, match=r"storage\.artifacts_dir .* is the project folder .* e\.g\. \.fastapply/artifacts"
    ):
        parse_config({"sources": [{"path": "."}], "storage": {"artifacts_dir": folder}}, base_dir=project)
    parse_config({"sources": [{"path": "."}], "storage": {"artifacts_dir": "out"}}, base_dir=project)
