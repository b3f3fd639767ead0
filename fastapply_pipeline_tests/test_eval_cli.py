"""`fastapply eval` and `fastapply apply --model`: a tiny local model built from a config, and a served
model on the local OpenAI-compatible stand-in."""

from pathlib import Path

import polars as pl
import pytest

from fastapply_pipeline.core.chat import load_training_tokenizer
from fastapply_pipeline.core.training import tiny_qwen2_config
from fastapply_pipeline_tests.helpers import invoke
from fastapply_pipeline_tests.standin import StandIn
from fastapply_pipeline_tests.test_evaluate import ROWS


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from transformers import Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = load_training_tokenizer()
    torch.manual_seed(0)
    Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "test.parquet"
    pl.DataFrame(ROWS[:3]).write_parquet(path)
    return path


@pytest.mark.slow
def test_eval_with_a_local_model_prints_the_table_and_the_speedup(tiny_model, data, tmp_path):
    out = tmp_path / "results.parquet"
    result = invoke(
        "eval",
        "--model",
        tiny_model,
        "--data",
        data,
        "--speed-examples",
        "1",
        "-o",
        out,
        "--max-examples",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert "| candidate | examples | exact |" in result.stdout
    assert "| model | 2 |" in result.stdout and "| applier | 2 | 1.0 |" in result.stdout
    assert "| identity | 2 | 0.0 |" in result.stdout
    assert "model: prompt lookup" in result.stdout and "identical outputs 1/1" in result.stdout
    assert "applier: 100%" in result.stderr  # the progress bars
    results = pl.read_parquet(out)
    assert results.height == 6 and (results.filter(pl.col("candidate") == "model")["output_tokens"] > 0).all()


@pytest.mark.slow
def test_eval_against_a_served_model_with_a_judge(data):
    with StandIn() as server:
        result = invoke(
            "eval", "--model", "fast-apply-7b", "--base-url", server.openai_url, "--data", data,
            "--judge-model", "judge-1", "--judge-base-url", server.openai_url,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| endpoint | 3 | 1.0 |" in result.stdout and "judge_correct" in result.stdout
    assert "judge: asked 3" in result.stderr  # identity's three outputs are the only non-exact ones


@pytest.mark.slow
def test_apply_with_a_model(tiny_model, tmp_path):
    row = ROWS[0]
    original, snippet = tmp_path / "m.py", tmp_path / "edit.py"
    original.write_text(row["original_code"])
    snippet.write_text(row["update_snippet"])
    with StandIn() as server:
        served = invoke(
            "apply", "--model", "fast-apply-7b", "--base-url", server.openai_url, original, snippet
        )
    assert served.exit_code == 0 and served.stdout == row["final_code"]
    untrained = invoke("apply", "--model", tiny_model, original, snippet)  # random weights write no tags
    assert untrained.exit_code == 3
    assert "refused: the model's answer has no complete <updated-code> tags" in untrained.stderr


@pytest.mark.slow
def test_apply_hybrid_uses_the_applier_first_and_the_model_where_it_refuses(tiny_model, tmp_path):
    """The stand-in serves a model that merges exactly; the output says which of the two merged."""
    row = ROWS[0]
    original, snippet, nowhere = tmp_path / "m.py", tmp_path / "edit.py", tmp_path / "nowhere.py"
    original.write_text(row["original_code"])
    snippet.write_text(row["update_snippet"])
    nowhere.write_text("# ... existing code ...\n    print('no such place')\n# ... existing code ...\n")
    with StandIn() as server:
        model = ("--model", "fast-apply-7b", "--base-url", server.openai_url)
        by_applier = invoke("apply", *model, "--hybrid", original, snippet)
        by_model = invoke("apply", *model, "--hybrid", original, nowhere)
    assert by_applier.exit_code == 0 and by_applier.stdout == row["final_code"]
    assert "merged by the applier" in by_applier.stderr
    # the stand-in answers the original where the applier refuses: the model's answer, labelled as such
    assert by_model.exit_code == 0 and by_model.stdout == row["original_code"]
    assert "merged by the model (the applier refused: no_anchor)" in by_model.stderr
    local = invoke("apply", "--model", tiny_model, "--hybrid", original, snippet)  # never reaches the model
    assert local.exit_code == 0 and local.stdout == row["final_code"]
    assert invoke("apply", "--hybrid", original, snippet).exit_code == 2  # --hybrid needs --model


@pytest.mark.slow
def test_eval_and_apply_name_bad_input(tmp_path, data):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"original_code": "x = 1\\n"}\n')
    result = invoke("eval", "--data", bad)
    assert result.exit_code == 1 and "lacks the column(s) update_snippet, final_code" in result.stderr
    result = invoke("eval", "--model", tmp_path / "nowhere", "--data", data)
    assert result.exit_code == 1 and "is not a local folder, and downloading is off" in result.stderr
    result = invoke("eval", "--data", data, "--judge-model", "j")
    assert result.exit_code == 2 and "--judge-model and --judge-base-url go together" in result.stderr
    result = invoke("apply", "--adapter", tmp_path, data, data)
    assert result.exit_code == 2 and "--adapter and --base-url need --model" in result.stderr


@pytest.mark.slow
def test_eval_reads_the_hand_written_case_folder(tiny_model):
    """The realistic set is an input of `fastapply eval --data` (its merge cases; refusals have no answer)."""
    from fastapply_pipeline.core.evaluate import load_rows

    folder = Path(__file__).parent / "data" / "realistic"
    rows = load_rows(str(folder))
    assert rows and all(r["final_code"] is not None and r["generator"] == "hand_written" for r in rows)
    assert {r["language"] for r in rows} >= {"python", "tsx", "markdown", "go"}
    result = invoke(
        "eval", "--model", tiny_model, "--data", folder, "--max-examples", "2", "--speed-examples", "0"
    )
    assert result.exit_code == 0, result.output
    assert "| applier | 2 |" in result.stdout
