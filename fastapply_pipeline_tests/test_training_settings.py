"""Every training setting of fastapply.yaml reaches the training job with its value (no silent default).

The settings are defined once (core.settings.TrainingSettings) and the job carries that section as it is;
these tests set every field to a value other than its default, then follow it through the lora_adapter
asset (the job it launches, read back from the command line) into what the entrypoint hands transformers
and peft. A field added to TrainingSettings without a line in NON_DEFAULT fails the first test.
"""

import json
import sys
import types

import dagster as dg
import pytest

from fastapply_pipeline.core.settings import LORA_PRESETS, TrainingSettings
from fastapply_pipeline.core.training import TrainJob
from fastapply_pipeline.defs.resources import build_resources
from fastapply_pipeline.defs.training.assets import lora_adapter
from fastapply_pipeline.defs.training.resources import GPUJobResource
from fastapply_pipeline.training import train

# A valid value other than the default for every field.
NON_DEFAULT = {
    "base_model": "unsloth/Qwen2.5-Coder-7B-Instruct",
    "allow_download": True,
    "preset": "7b",
    "backend": "unsloth",
    "r": 12,
    "alpha": 24,
    "dropout": 0.05,
    "use_rslora": False,
    "target_modules": ["q_proj", "v_proj"],
    "learning_rate": 3e-4,
    "lr_scheduler": "linear",
    "epochs": 2.5,
    "max_steps": 77,
    "max_minutes": 45.0,  # followed into the clock schedule by test_training.py's max_minutes run
    "batch_size": 3,
    "gradient_accumulation_steps": 5,
    "warmup_steps": 6,
    "logging_steps": 2,
    "save_steps": 9,
    "load_in_4bit": False,
    "gradient_checkpointing": False,
    "precision": "bf16",
    "answer_logits_only": False,
    "gpu": {"backend": "local", "gpu_count": 2, "env": {"FASTAPPLY_TEST": "1"}, "namespace": "training"},
}


def test_every_field_has_a_non_default_value_here():
    assert set(NON_DEFAULT) == set(TrainingSettings.model_fields)
    defaults = TrainingSettings()
    for name, value in NON_DEFAULT.items():
        assert getattr(TrainingSettings(**{name: value}), name) != getattr(defaults, name), name


class _Launched(Exception):
    pass


class RecordingGPUJob(GPUJobResource):
    """The GPU job resource up to the launch: records the command instead of starting it."""

    def run(self, context, command, *, extras=None, client=None):
        RecordingGPUJob.command = list(command)
        raise _Launched


@pytest.mark.slow
def test_the_asset_launches_the_job_with_every_setting(make_config, tmp_path):
    path, config = make_config(
        [{"path": str(tmp_path), "name": "unused"}],
        training=NON_DEFAULT,
        dataset={"max_seq_length": 2048},
        seed=7,
    )
    resources = build_resources(config, str(path), "local")
    assert resources["gpu_job"].model_dump() == config.training.gpu.model_dump()  # the GPU section
    resources["gpu_job"] = RecordingGPUJob(**config.training.gpu.model_dump())
    result = dg.materialize([lora_adapter], resources=resources, raise_on_error=False)
    assert not result.success  # stopped at the launch, on purpose
    command = RecordingGPUJob.command
    job = TrainJob.model_validate_json(command[command.index("--job-json") + 1])

    assert job.training == config.training
    assert job.training.model_dump() == TrainingSettings(**NON_DEFAULT).model_dump()
    assert (job.max_seq_length, job.seed) == (2048, 7)  # from dataset.max_seq_length and seed
    assert job.dataset_path == str(config.artifacts_dir / "dataset" / "hf")
    assert job.output_dir == str(config.artifacts_dir / "adapters" / "lora_adapter")


def test_the_entrypoint_hands_every_setting_to_transformers_and_peft(tmp_path, monkeypatch):
    job = TrainJob(
        dataset_path="-", output_dir=str(tmp_path), training=TrainingSettings(**NON_DEFAULT), seed=7
    )
    arguments = train.trainer_arguments(job, output_dir="ck", cuda=False)
    assert {
        "per_device_train_batch_size": 3,
        "gradient_accumulation_steps": 5,
        "learning_rate": 3e-4,
        "lr_scheduler_type": "linear",
        "num_train_epochs": 2.5,
        "max_steps": 77,
        "warmup_steps": 6,
        "logging_steps": 2,
        "save_steps": 9,
        "seed": 7,
        "bf16": True,  # precision: bf16
    }.items() <= arguments.items()
    assert train.lora_arguments(job) == {
        "r": 12,
        "lora_alpha": 24,
        "lora_dropout": 0.05,
        "use_rslora": False,
        "target_modules": ["q_proj", "v_proj"],
    }
    # The preset decides rank and alpha only where r / alpha are not given.
    preset_only = TrainJob(
        dataset_path="-",
        output_dir="o",
        training=TrainingSettings(**{k: v for k, v in NON_DEFAULT.items() if k not in ("r", "alpha")}),
    )
    assert train.lora_arguments(preset_only)["r"] == LORA_PRESETS["7b"]["r"]

    # base_model, load_in_4bit, max_seq_length and the seed reach the unsloth loader (imported only
    # on its path: a stand-in module records the calls and stops at the first).
    calls = []

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            calls.append(kwargs)
            raise _Launched

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    with pytest.raises(_Launched):
        train.load_unsloth(job)
    assert calls == [
        {
            "model_name": "unsloth/Qwen2.5-Coder-7B-Instruct",
            "max_seq_length": job.max_seq_length,
            "load_in_4bit": False,
            "dtype": None,
        }
    ]
    # backend: unsloth is refused where it cannot run (no CUDA here), not silently replaced by hf.
    with pytest.raises(RuntimeError, match="backend 'unsloth' needs"):
        train.choose_backend(job.training.backend, cuda=False, unsloth_installed=False)


@pytest.mark.slow
def test_allow_download_off_refuses_a_hub_id_and_says_which_setting(tmp_path):
    job = TrainJob(
        dataset_path="-",
        output_dir=str(tmp_path),
        training=TrainingSettings(base_model="someone/not-a-local-model", backend="hf"),
    )
    with pytest.raises(FileNotFoundError, match=r"training\.allow_download"):
        train.load_hf(job, cuda=False)


def test_a_job_file_with_an_unknown_or_misplaced_setting_is_refused(tmp_path):
    good = TrainJob(dataset_path="d", output_dir="o", training=TrainingSettings(max_steps=3))
    (tmp_path / "job.json").write_text(good.model_dump_json())
    assert TrainJob.from_json(tmp_path / "job.json") == good
    flat = json.loads(good.model_dump_json()) | {"learning_rate": 1e-3}  # the old flat spelling
    with pytest.raises(ValueError, match="learning_rate"):
        TrainJob.from_dict(flat, what="job.json")
