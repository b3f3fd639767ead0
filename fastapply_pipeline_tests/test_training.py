"""Training: examples and loss masking, the unsloth path, the GPU job resource, lora_adapter through Pipes."""

import itertools
import json
import re
import sys
import types
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fastapply_pipeline.core.artifacts import DATASET_HF
from fastapply_pipeline.core.chat import load_training_tokenizer, render_example
from fastapply_pipeline.core.dataset import write_dataset
from fastapply_pipeline.core.settings import TrainingSettings
from fastapply_pipeline.core.training import (
    IGNORE_INDEX,
    ClockSchedule,
    PaddingCollator,
    TrainJob,
    answer_loss,
    choose_backend,
    encode,
    scored_positions,
    tiny_qwen2_config,
)
from fastapply_pipeline.definitions import build_defs
from fastapply_pipeline.defs.training.resources import GPUJobResource, ecs_run_task_params, k8s_pod_spec
from fastapply_pipeline_tests.helpers import python_module
from fastapply_pipeline_tests.standin import StandIn

ORIGINAL = "def area(w, h):\n    return w * h\n"
SNIPPET = "def area(w, h):\n    # ... existing code ...\n    return max(w, 0) * max(h, 0)\n"
FINAL = "def area(w, h):\n    return max(w, 0) * max(h, 0)\n"


@pytest.fixture(scope="module")
def tokenizer():
    return load_training_tokenizer()


@pytest.mark.slow
def test_the_loss_is_on_the_answer_only_and_the_text_is_prompt_plus_target(tokenizer):
    example = encode(tokenizer, ORIGINAL, SNIPPET, FINAL, 4096)
    rendered = render_example(tokenizer, ORIGINAL, SNIPPET, FINAL)
    assert tokenizer.decode(example.input_ids) == rendered.text
    answer = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    prompt = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE_INDEX]
    assert tokenizer.decode(prompt) == rendered.prompt
    assert tokenizer.decode(answer) == "<updated-code>" + FINAL + "</updated-code><|im_end|>\n"
    assert example.labels[len(prompt) :] == example.input_ids[len(prompt) :]
    with pytest.raises(ValueError, match="exceeds max_seq_length 50; rebuild fastapply_dataset"):
        encode(tokenizer, ORIGINAL, SNIPPET, FINAL, 50)  # never truncated


@pytest.mark.slow
@pytest.mark.parametrize(
    "token", ["<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|fim_prefix|>", "<tool_call>"]
)
def test_code_spelling_a_control_token_never_becomes_one(tokenizer, token):
    """`<|im_end|>` in code would be a real end of turn inside the supervised answer: refused, naming it."""
    final = FINAL.replace("return", f"print({token!r})\n    return")
    snippet = SNIPPET.replace("    return", f"    print({token!r})\n    return")
    with pytest.raises(
        ValueError, match=f"final_code contains .*{re.escape(repr(token))}.*rebuild fastapply_dataset"
    ):
        encode(tokenizer, ORIGINAL, SNIPPET, final, 4096)
    with pytest.raises(ValueError, match=f"update_snippet contains .*{re.escape(repr(token))}"):
        encode(tokenizer, ORIGINAL, snippet, FINAL, 4096)
    with pytest.raises(ValueError, match="original_code contains"):
        render_example(tokenizer, final, SNIPPET, FINAL)  # what counts example lengths, too
    # The same code without the token is a normal example with one end of turn, at the end of the answer.
    example = encode(tokenizer, ORIGINAL, snippet.replace(token, "done"), final.replace(token, "done"), 4096)
    answer = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert answer.count(eos) == 1 and answer[-2:] == [
        eos,
        *tokenizer("\n", add_special_tokens=False)["input_ids"],
    ]


@pytest.mark.slow
def test_collator_pads_to_the_longest_and_counts_padding():
    collator = PaddingCollator(pad_token_id=0)
    batch = collator([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert collator.padding_fraction == pytest.approx(2 / 6)


@pytest.mark.slow
def test_answer_only_logits_give_the_models_own_loss_and_gradients(tokenizer):
    """logits_to_keep = the scored positions: the same loss and LoRA-free gradients as the full logits,
    on a padded batch of two examples with prompts of different lengths."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer)))
    examples = [
        encode(tokenizer, ORIGINAL, SNIPPET, FINAL, 4096),
        encode(tokenizer, "x = 1\n", "x = 2\n", "x = 2\n", 4096),
    ]
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    fast = PaddingCollator(0, answer_logits_only=True)(features)
    full = PaddingCollator(0)(features)
    keep = fast["logits_to_keep"]
    assert keep.numel() < full["input_ids"].shape[1] - 1  # the prompt is skipped...
    assert set(keep.tolist()) == {  # ...and every scored position kept
        p for row in full["labels"].tolist() for p in range(len(row) - 1) if row[p + 1] != IGNORE_INDEX
    }

    def loss_and_grad(batch, fast_path):
        model.zero_grad()
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if fast_path:
            loss = answer_loss(model(**inputs), batch["labels"])
        else:
            loss = model(**inputs, labels=batch["labels"]).loss
        loss.backward()
        return loss.item(), model.model.layers[0].mlp.up_proj.weight.grad.clone()

    fast_loss, fast_grad = loss_and_grad(fast, True)
    full_loss, full_grad = loss_and_grad(full, False)
    assert fast_loss == pytest.approx(full_loss, rel=1e-5)
    assert torch.allclose(fast_grad, full_grad, rtol=1e-4, atol=1e-7)
    # With the Trainer's count of scored labels over an accumulated batch, the sum is divided by it.
    scored = int((full["labels"][:, 1:] != IGNORE_INDEX).sum())
    halved = answer_loss(
        model(**{k: v for k, v in fast.items() if k != "labels"}), fast["labels"], 2 * scored
    )
    assert halved.item() == pytest.approx(full_loss / 2, rel=1e-5)
    assert scored_positions(torch.tensor([[IGNORE_INDEX, IGNORE_INDEX]])).numel() == 0


def test_backend_choice():
    assert choose_backend("auto", cuda=True, unsloth_installed=True) == "unsloth"
    assert choose_backend("auto", cuda=True, unsloth_installed=False) == "hf"
    assert choose_backend("auto", cuda=False, unsloth_installed=True) == "hf"
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        choose_backend("unsloth", cuda=False, unsloth_installed=True)


@pytest.mark.slow
def test_unsloth_path_makes_the_expected_calls(tokenizer, monkeypatch, tmp_path):
    """No GPU here, and unsloth cannot be imported without one: this is the one place a fake module is
    used. It records the calls load_unsloth makes and returns a tiny model, so the rest is real."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    from fastapply_pipeline.training.train import load_unsloth

    calls = []

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            calls.append(("from_pretrained", kwargs))
            return Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer))), tokenizer

        @staticmethod
        def get_peft_model(model, **kwargs):
            calls.append(("get_peft_model", kwargs))
            config = LoraConfig(
                r=kwargs["r"], lora_alpha=kwargs["lora_alpha"], target_modules=kwargs["target_modules"]
            )
            return get_peft_model(model, config)

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    job = TrainJob(
        dataset_path="-",
        output_dir=str(tmp_path),
        training=TrainingSettings(base_model="unsloth/Qwen2.5-Coder-1.5B-Instruct", r=32, alpha=16),
    )
    model, tok = load_unsloth(job)
    assert calls[0] == (
        "from_pretrained",
        {
            "model_name": "unsloth/Qwen2.5-Coder-1.5B-Instruct",
            "max_seq_length": 8192,
            "load_in_4bit": True,
            "dtype": None,
        },
    )
    assert calls[1][1] == {
        "r": 32,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "use_rslora": True,
        "use_gradient_checkpointing": "unsloth",
        "random_state": 42,
        "max_seq_length": 8192,
    }
    assert model.peft_config["default"].r == 32 and tok.chat_template


# -- the GPU job resource at its clients' boundary ------------------------------------------------------


class RecordingClient:
    def __init__(self):
        self.kwargs = None

    def run(self, **kwargs):
        self.kwargs = kwargs
        return "invocation"


@pytest.mark.slow
def test_kubernetes_backend_asks_for_gpus_on_the_chosen_nodes():
    from dagster_k8s.pipes import build_pod_body

    resource = GPUJobResource(
        backend="kubernetes",
        image="ghcr.io/me/fastapply-train:1",
        gpu_count=2,
        env={"HF_HOME": "/cache"},
        namespace="ml",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    client = RecordingClient()
    assert resource.run(context=None, command=["python", "-m", "x"], client=client) == "invocation"
    kwargs = client.kwargs
    assert kwargs["image"] == "ghcr.io/me/fastapply-train:1" and kwargs["namespace"] == "ml"
    assert kwargs["command"] == ["python", "-m", "x"] and kwargs["env"] == {"HF_HOME": "/cache"}
    # The pod dagster-k8s builds from it (its own function, as PipesK8sClient.run calls it).
    pod = build_pod_body(
        "train-1",
        kwargs["image"],
        kwargs["command"],
        {"DAGSTER_PIPES_CONTEXT": "x"},
        None,
        kwargs["base_pod_spec"],
    )
    (container,) = pod.spec.containers
    assert container.resources.limits == {"nvidia.com/gpu": "2"} and container.image == kwargs["image"]
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu" and pod.spec.restart_policy == "Never"
    assert {e.name for e in container.env} >= {"DAGSTER_PIPES_CONTEXT"}


def test_ecs_backend_runs_a_gpu_task_with_overrides():
    params = ecs_run_task_params(
        cluster="ml",
        task_definition="fastapply-train:3",
        container="train",
        command=["python", "-m", "x"],
        env={"B": "2", "A": "1"},
        gpu_count=1,
        subnets=["subnet-1"],
    )
    (override,) = params["overrides"]["containerOverrides"]
    assert override == {
        "name": "train",
        "command": ["python", "-m", "x"],
        "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "resourceRequirements": [{"type": "GPU", "value": "1"}],
    }
    assert params["cluster"] == "ml" and params["taskDefinition"] == "fastapply-train:3"
    assert params["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-1"]
    resource = GPUJobResource(
        backend="ecs", ecs_cluster="ml", ecs_task_definition="fastapply-train:3", gpu_count=1
    )
    client = RecordingClient()
    resource.run(context=None, command=["python", "-m", "x"], client=client)
    assert client.kwargs["pipes_container_name"] == "train"
    assert client.kwargs["run_task_params"]["overrides"]["containerOverrides"][0]["resourceRequirements"] == [
        {"type": "GPU", "value": "1"}
    ]
    assert k8s_pod_spec(gpu_count=0, node_selector={}, tolerations=[])["containers"][0]["resources"] == {
        "limits": {}
    }


# -- lora_adapter, for real ------------------------------------------------------------------------------


def small_dataset(folder):
    rows = []
    for i in range(6):
        original = python_module(f"m{i}", 2)
        final = original.replace("* scale", "* scale + 1", 1)
        snippet = (
            "# ... existing code ...\n"
            + "\n".join(line for line in final.splitlines() if "+ 1" in line)
            + "\n# ... existing code ...\n"
        )
        rows.append(
            {
                "original_code": original,
                "update_snippet": snippet,
                "final_code": final,
                "triple_id": f"t{i}",
                "repo": "r",
                "commit": "c",
                "path": f"m{i}.py",
                "language": "python",
                "generator": "structural",
                "edit_kind": "modify_function",
                "snippet_style": "anchored",
                "model": None,
                "bucket": "100-399",
                "original_tokens": 100,
                "snippet_tokens": 20,
                "final_tokens": 100,
                "example_tokens": 300,
            }
        )
    frame = pl.DataFrame(rows)
    write_dataset(folder, {"train": frame.head(5), "test": frame.tail(1)}, "card")


@pytest.mark.slow
def test_lora_adapter_trains_through_pipes_and_reloads(make_config, mixed_repo, instance, tmp_path):
    path, config = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}],
        training={
            "max_steps": 6,
            "batch_size": 2,
            "gradient_accumulation_steps": 1,
            "learning_rate": 0.02,
            "logging_steps": 1,
            "save_steps": 3,
            "r": 8,
            "alpha": 16,
        },
    )
    small_dataset(config.artifacts_dir / "dataset")
    defs = build_defs(path)
    result = dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, selection=["lora_adapter"]
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["backend"] == "hf" and meta["device"] == "cpu" and meta["steps"] == 6
    assert meta["final_loss"] < meta["first_loss"]  # it learns
    assert meta["tokens_per_second"] > 0 and 0 <= meta["padding_fraction"] < 0.5
    assert "| 6 |" in meta["loss_plot"] and meta["lora"].startswith("r=8 alpha=16 rslora=True")
    adapter = config.artifacts_dir / "adapters" / "lora_adapter" / "adapter"
    assert meta["adapter_path"] == str(adapter)
    logs = [e.message for e in instance.all_logs(result.run_id) if "loss" in (e.message or "")]
    assert any("step 6/6: loss" in message for message in logs)  # the subprocess's log came over Pipes

    # A standard PEFT adapter: reloads on its base and generates.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert (
        settings["r"] == 8
        and settings["use_rslora"] is True
        and (adapter / "adapter_model.safetensors").is_file()
    )
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(settings["base_model_name_or_path"]), str(adapter)
    )
    tokenizer = load_training_tokenizer()
    prompt = render_example(tokenizer, ORIGINAL, SNIPPET, FINAL).prompt
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5
    assert "library_name: peft" in (adapter / "README.md").read_text()

    # The entrypoint also runs on its own, and resumes from its last checkpoint, also on the same rows
    # written again at another path (the examples are the same).
    from fastapply_pipeline.training.train import main

    rebuilt = tmp_path / "rebuilt"
    small_dataset(rebuilt)
    job = json.loads((adapter.parent / "job.json").read_text())
    job["dataset_path"] = str(rebuilt / DATASET_HF)
    job["training"]["max_steps"] = 8
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert main(["--job", str(tmp_path / "job.json")]) == 0
    metrics = json.loads((adapter.parent / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-6") and metrics["steps"] == 8
    # The loss curve is the whole run's: the steps before the checkpoint (from its trainer state) too.
    assert [step for step, _ in metrics["loss_curve"]] == list(range(1, 9))


def test_checkpoints_are_reused_only_by_the_same_job_on_the_same_data():
    from fastapply_pipeline.training.train import run_key

    def job(output_dir="o", dataset_path="d", **training):
        return TrainJob(
            dataset_path=dataset_path, output_dir=output_dir, training=TrainingSettings(**training)
        )

    same = run_key(job(), "data-1")
    assert run_key(job("elsewhere", "d2", max_steps=99, epochs=2, logging_steps=3), "data-1") == same
    assert run_key(job(gpu={"backend": "kubernetes", "image": "train:1"}), "data-1") == same
    assert run_key(job(), "data-2") != same  # the examples changed
    assert run_key(job(learning_rate=2e-4), "data-1") != same
    assert run_key(job(r=8), "data-1") != same
    assert run_key(job(preset="7b"), "data-1") != same
    by_clock = run_key(job(max_minutes=30), "data-1")
    assert by_clock != same  # a step run's checkpoints do not resume on the clock, nor the reverse
    assert run_key(job(max_minutes=60), "data-1") == by_clock  # a longer budget resumes


def test_the_examples_digest_follows_the_tokens_the_labels_and_their_order():
    from fastapply_pipeline.core.training import Encoded, examples_digest

    a, b = Encoded([1, 2, 3], [-100, 2, 3]), Encoded([4, 5], [-100, 5])
    same = examples_digest([a, b])
    assert examples_digest([Encoded([1, 2, 3], [-100, 2, 3]), Encoded([4, 5], [-100, 5])]) == same
    assert examples_digest([b, a]) != same  # the order the sampler draws from
    assert examples_digest([Encoded([1, 2, 3], [-100, -100, 3]), b]) != same  # what is scored
    assert examples_digest([Encoded([1, 2], [-100, 2]), Encoded([3, 4, 5], [-100, 4, 5])]) != same  # bounds
    assert examples_digest([a]) != same


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_clock_schedule_warms_up_by_steps_and_decays_by_the_time_spent():
    clock = FakeClock()
    linear = ClockSchedule(600, "linear", warmup_steps=4, clock=clock)
    linear.start()
    assert [linear.factor(step) for step in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    clock.now += 150  # a quarter of the budget, however many steps that took
    assert linear.factor(50) == pytest.approx(0.75) and not linear.spent_out
    assert linear.factor(2) == pytest.approx(0.375)  # still warming up: both apply
    clock.now += 450
    assert linear.factor(51) == 0.0 and linear.spent_out
    clock.now += 60
    assert linear.factor(52) == 0.0  # never negative past the budget

    cosine = ClockSchedule(600, "cosine", clock=clock)
    cosine.start()
    clock.now += 300
    assert cosine.factor(10) == pytest.approx(0.5)
    clock.now += 300
    assert cosine.factor(11) == pytest.approx(0.0) and cosine.spent_out

    constant = ClockSchedule(600, "constant", spent_before=590, clock=clock)  # resumed at 590 s spent
    assert constant.spent == 590 and constant.factor(0) == 1.0 and not constant.spent_out
    constant.start()
    clock.now += 10
    assert constant.factor(1) == 1.0 and constant.spent_out  # it stops on time, at its one rate


def test_a_clock_budget_needs_a_shape_the_clock_can_follow():
    assert TrainingSettings(max_minutes=60, lr_scheduler="linear").max_minutes == 60
    with pytest.raises(
        ValueError,
        match=r"lr_scheduler 'cosine_with_restarts' cannot run on the clock.*linear, cosine, constant",
    ):
        TrainingSettings(max_minutes=60, lr_scheduler="cosine_with_restarts")
    with pytest.raises(ValueError, match="greater than 0"):
        TrainingSettings(max_minutes=0)
    assert TrainingSettings(lr_scheduler="cosine_with_restarts").max_minutes is None  # by steps: any shape


@pytest.mark.slow
def test_a_run_with_max_minutes_stops_annealed_when_its_time_is_spent_and_resumes_the_rest(tmp_path):
    from fastapply_pipeline.training.train import CLOCK_FILE, main

    small_dataset(tmp_path / "dataset")
    output = tmp_path / "out"

    def run(minutes: float) -> tuple[dict, list[dict], Path]:
        settings = TrainingSettings(
            max_minutes=minutes,
            lr_scheduler="linear",
            max_steps=500,  # far more than the budget allows (~20 steps here): the clock ends the run
            batch_size=1,
            gradient_accumulation_steps=1,
            warmup_steps=2,
            logging_steps=1,
            save_steps=100_000,
            r=4,
            alpha=8,
        )
        job = TrainJob(
            dataset_path=str(tmp_path / "dataset" / DATASET_HF), output_dir=str(output), training=settings
        )
        job.to_json(tmp_path / "job.json")
        assert main(["--job", str(tmp_path / "job.json")]) == 0
        metrics = json.loads((output / "metrics.json").read_text())
        (checkpoint,) = [
            p
            for p in (output / "checkpoints").glob("*/checkpoint-*")
            if p.name.endswith(f"-{metrics['steps']}")
        ]
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        return metrics, [entry for entry in state["log_history"] if "learning_rate" in entry], checkpoint

    def next_rate(checkpoint: Path) -> float:  # over the optimizer's parameter groups
        import torch

        return max(torch.load(checkpoint / "scheduler.pt")["_last_lr"])

    first, rates, checkpoint = run(0.1)  # 6 s
    assert first["stopped_by_clock"] and 2 < first["steps"] < 500
    assert first["clock_minutes"] >= 0.1 and json.loads((checkpoint / CLOCK_FILE).read_text())["seconds"] >= 6
    # Annealed: the step that spent the budget set the next rate to 0 (the scheduler's state in the
    # checkpoint); the rates the steps used (logged) rose over the warm-up, then fell with the clock.
    assert next_rate(checkpoint) == 0.0
    peak = max(entry["learning_rate"] for entry in rates)
    assert peak == pytest.approx(TrainingSettings().learning_rate, rel=0.5)
    assert all(a["learning_rate"] >= b["learning_rate"] for a, b in itertools.pairwise(rates[2:]))
    assert rates[-1]["learning_rate"] < peak / 4

    # A longer budget resumes the spent one's checkpoint and trains only the time that is left.
    second, rates, last = run(0.2)
    assert second["resumed_from"] == str(checkpoint) and second["steps"] > first["steps"]
    assert second["stopped_by_clock"] and 0.2 <= second["clock_minutes"] < 0.2 + first["clock_minutes"]
    assert next_rate(last) == 0.0
    # Its first step ran at the clock's rate under the new budget, not the 0 the spent one had saved.
    (resumed,) = [entry for entry in rates if entry["step"] == first["steps"] + 1]
    assert 0 < resumed["learning_rate"] < peak

    # Run again with its budget spent: nothing more is trained (not one more step), no checkpoint added,
    # and the adapter written is the checkpoint's (not a fresh LoRA).
    from safetensors.torch import load_file

    weights = load_file(str(output / "adapter" / "adapter_model.safetensors"))
    before = sorted(p.name for p in (output / "checkpoints").glob("*/checkpoint-*"))
    third, _, _ = run(0.2)
    assert (
        third["resumed_from"] == str(last) and third["steps"] == second["steps"] and third["stopped_by_clock"]
    )
    assert sorted(p.name for p in (output / "checkpoints").glob("*/checkpoint-*")) == before
    again = load_file(str(output / "adapter" / "adapter_model.safetensors"))
    assert weights.keys() == again.keys() and all(weights[k].equal(again[k]) for k in weights)
    assert any(k.endswith("lora_B.weight") and weights[k].abs().sum() > 0 for k in weights)  # trained


@pytest.mark.slow
def test_eval_scores_compares_the_adapter_with_its_base_and_the_baselines(make_config, mixed_repo, instance):
    with StandIn() as server:  # a served Fast Apply model and the judge, both OpenAI-compatible
        endpoint = {"base_url": server.openai_url, "model": "fast-apply", "api_key_env": None}
        path, config = make_config(
            [{"path": str(mixed_repo), "name": "mixed"}],
            training={"max_steps": 2, "batch_size": 2, "gradient_accumulation_steps": 1, "r": 4, "alpha": 8},
            eval={
                "max_examples": 1,
                "prompt_lookup": 10,
                "speed_examples": 1,
                "candidates": ["adapter", "base", "applier", "identity", "served"],
                "endpoints": {"served": endpoint},
                "judge": {**endpoint, "model": "judge"},
            },
        )
        small_dataset(config.artifacts_dir / "dataset")
        defs = build_defs(path)
        result = dg.materialize(
            defs.assets,
            instance=instance,
            resources=defs.resources,
            selection=["lora_adapter", "eval_scores"],
        )
        judge_prompts = [r for r in server.calls("POST", r"/v1/chat/completions") if b"Grade these" in r.body]
    assert result.success
    scores = pl.read_parquet(config.artifacts_dir / "tables" / "eval_scores.parquet")
    assert scores["candidate"].to_list() == ["adapter", "base", "applier", "identity", "served"]
    identity = scores.filter(pl.col("candidate") == "identity").row(0, named=True)
    assert identity["exact"] is False and identity["output"] is not None and identity["dropped_lines"] == 1
    assert (
        identity["judge_correct"] is False and len(judge_prompts) == 1
    )  # only identity's output needed a judge
    models = scores.filter(pl.col("candidate").is_in(["adapter", "base"]))
    assert (models["output_tokens"] > 0).all() and models["missing_tags"].all()  # 2 steps teach no tags
    served = scores.filter(pl.col("candidate") == "served").row(0, named=True)
    applier = scores.filter(pl.col("candidate") == "applier").row(0, named=True)
    # The stand-in serves the applier's merge, or the original where the applier refuses.
    assert served["output"] == (applier["output"] or identity["output"]) and served["output_tokens"] > 0
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "adapter_beats_base" and check.passed is False  # a WARN, not a failure
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["eval_scores"]]
    metadata = event.materialization.metadata
    table = metadata["scores"].value
    assert all(f"| {name} |" in table for name in ("adapter", "base", "applier", "identity", "served"))
    assert "judge_correct" in table and "| python |" in metadata["scores_by_language"].value
    assert "| structural |" in metadata["scores_by_generator"].value
    assert "| modify_function |" in metadata["scores_by_edit_kind"].value
    speed = metadata["prompt_lookup_speedup"].value
    assert "| adapter | 1 |" in speed and "| 1/1 |" in speed  # identical answers with and without drafts
    assert metadata["chart"].value.startswith(
        "![exact match and tokens/s per candidate](data:image/png;base64,"
    )
    assert (config.artifacts_dir / "eval" / "scores.png").read_bytes().startswith(b"\x89PNG")
    assert metadata["exact/applier"].value == applier["exact"] * 1.0


@pytest.mark.slow
def test_eval_scores_runs_the_hybrid_and_the_hand_written_cases(make_config, mixed_repo, instance, tmp_path):
    """eval.extra_data adds a folder of .case files beside the test split; the hybrid candidate merges
    with the applier where it can and with the adapter where the applier refuses."""
    cases = tmp_path / "cases"
    cases.mkdir()
    original = "def f():\n    return 1\n\n\ndef g():\n    return 1\n"
    (cases / "clear.case").write_text(
        "language: python\nshape: anchored\nexpect: merge\n=== original ===\n"
        + original
        + "=== snippet ===\n# ... existing code ...\ndef g():\n    return 2\n=== final ===\n"
        + original.replace("def g():\n    return 1", "def g():\n    return 2")
    )
    (cases / "ambiguous.case").write_text(  # the applier cannot tell f from g: only a model may try
        "language: python\nshape: ambiguous\nexpect: merge\n=== original ===\n"
        + original
        + "=== snippet ===\n# ... existing code ...\n    return 1\n    # done\n# ... existing code ...\n"
        + "=== final ===\n"
        + original
        + "    # done\n"
    )
    path, config = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}],
        training={"max_steps": 1, "batch_size": 2, "gradient_accumulation_steps": 1, "r": 4, "alpha": 8},
        eval={
            "max_examples": 2,
            "speed_examples": 0,
            "candidates": ["applier", "hybrid"],
            "extra_data": [str(cases)],
        },
    )
    small_dataset(config.artifacts_dir / "dataset")
    defs = build_defs(path)
    result = dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, selection=["lora_adapter", "eval_scores"]
    )
    assert result.success
    scores = pl.read_parquet(config.artifacts_dir / "tables" / "eval_scores.parquet")
    assert scores.height == 6 and set(scores["generator"]) == {"structural", "hand_written"}
    hybrid = {r["triple_id"]: r for r in scores.filter(pl.col("candidate") == "hybrid").iter_rows(named=True)}
    assert hybrid[f"{cases}:clear"]["merged_by"] == "applier" and hybrid[f"{cases}:clear"]["exact"]
    assert hybrid[f"{cases}:ambiguous"]["merged_by"] == "model"  # the tiny model writes no tags: no output
    applier = scores.filter(pl.col("candidate") == "applier")
    assert applier.filter(pl.col("triple_id") == f"{cases}:ambiguous")["output"].to_list() == [None]
