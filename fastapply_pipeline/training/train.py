"""The training entrypoint: a LoRA adapter of a Qwen2.5-Coder model on fastapply_dataset's train split.

    python -m fastapply_pipeline.training.train --job job.json

Runs on its own (logs to stderr) or launched by Dagster through Pipes (the lora_adapter asset's GPU job
resource), when it reports logs, the loss every `logging_steps` and the materialization's metadata back.
Backends: `unsloth` (FastLanguageModel, 4-bit, CUDA only; imported only here), `hf` (transformers + peft;
bitsandbytes 4-bit QLoRA on CUDA, plain fp32 LoRA on CPU); `auto` picks unsloth where it can run.
Output (`output_dir`): `adapter/` (adapter_config.json + adapter_model.safetensors + the tokenizer +
README.md model card), `metrics.json` (the loss curve), `job.json`, and `checkpoints/` for resuming.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

from fastapply_pipeline.core.settings import TINY_MODEL
from fastapply_pipeline.core.training import (
    ClockSchedule,
    PaddingCollator,
    TrainJob,
    answer_loss,
    choose_backend,
    encode,
    examples_digest,
    loss_sparkline,
    tiny_qwen2_config,
)

log = logging.getLogger("fastapply.train")
# Settings that change neither the data nor the optimization: a run with other values resumes the checkpoints.
# dataset_path: the examples' own digest (examples_digest) says whether the data changed.
RESUMABLE_CHANGES = {"output_dir", "dataset_path", "s3", "artifacts_root"}
RESUMABLE_TRAINING_CHANGES = {
    "max_steps",
    "epochs",
    "max_minutes",
    "save_steps",
    "logging_steps",
    "answer_logits_only",  # the same loss, computed faster
    "gpu",  # where the job runs
}


class Reporter:
    """Where progress goes: Dagster Pipes when launched by Dagster, else the log."""

    def __init__(self, pipes=None):
        self.pipes = pipes

    def info(self, message: str) -> None:
        log.info(message)
        if self.pipes is not None:
            self.pipes.log.info(message)

    def materialization(self, metadata: dict) -> None:
        if self.pipes is not None:
            self.pipes.report_asset_materialization(metadata=metadata)


# -- models -------------------------------------------------------------------------------------------


def load_hf(job: TrainJob, *, cuda: bool):
    """(model with LoRA, tokenizer) with transformers + peft."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

    from fastapply_pipeline.core.chat import load_training_tokenizer, trl_chat_template
    from fastapply_pipeline.core.hardware import use_bf16

    # bf16 weights where the hardware computes bf16 natively; peft keeps the LoRA parameters in fp32
    # (autocast_adapter_dtype) and the Trainer autocasts: the loss stays as stable as in fp32.
    dtype = torch.bfloat16 if use_bf16(job.training.precision, cuda=cuda) else torch.float32
    quantization = None
    if cuda and job.training.load_in_4bit and importlib.util.find_spec("bitsandbytes"):
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
    base = job.training.base_model
    if base == TINY_MODEL:
        tokenizer = load_training_tokenizer()
        torch.manual_seed(job.seed)
        model = Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer)))
        # Saved beside the adapter so that PeftModel.from_pretrained can find the base again.
        base_dir = Path(job.output_dir) / "base"
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir)
    else:
        path = Path(base).expanduser()
        kwargs = {"dtype": dtype, "quantization_config": quantization}
        if path.is_file() and path.suffix == ".gguf":
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
        elif path.is_dir():
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, **kwargs)
        elif job.training.allow_download:
            tokenizer = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        else:
            raise FileNotFoundError(
                f"base model {base!r} is not {TINY_MODEL!r}, a local folder or a .gguf file, and downloading "
                "is off (training.allow_download: true to fetch it from the hub)"
            )
        if not tokenizer.chat_template:
            tokenizer.chat_template = trl_chat_template("qwen2_5")
    if quantization is not None:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=job.training.gradient_checkpointing
        )
    elif job.training.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointing with frozen embeddings needs grads at the input
    config = LoraConfig(**lora_arguments(job), task_type="CAUSAL_LM")
    return get_peft_model(model, config), tokenizer


def load_unsloth(job: TrainJob):
    """(model with LoRA, tokenizer) with unsloth: 4-bit base, its own LoRA kernels. CUDA only."""
    from unsloth import FastLanguageModel  # imported only on this path: it needs a GPU

    from fastapply_pipeline.core.chat import trl_chat_template

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=job.training.base_model,
        max_seq_length=job.max_seq_length,
        load_in_4bit=job.training.load_in_4bit,
        dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        **lora_arguments(job),
        use_gradient_checkpointing="unsloth",
        random_state=job.seed,
        max_seq_length=job.max_seq_length,
    )
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = trl_chat_template("qwen2_5")
    return model, tokenizer


# -- training -----------------------------------------------------------------------------------------


def lora_arguments(job: TrainJob) -> dict:
    """The LoRA settings, as peft's LoraConfig and unsloth's get_peft_model both name them."""
    settings = job.training
    return {
        "r": settings.lora_r,
        "lora_alpha": settings.lora_alpha,
        "lora_dropout": settings.dropout,
        "use_rslora": settings.use_rslora,
        "target_modules": list(settings.target_modules),
    }


def trainer_arguments(job: TrainJob, *, output_dir: str, cuda: bool) -> dict:
    """transformers' TrainingArguments from the job (gradient checkpointing aside: its name varies)."""
    from fastapply_pipeline.core.hardware import use_bf16

    settings = job.training
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "warmup_steps": settings.warmup_steps,
        "logging_steps": settings.logging_steps,
        "save_steps": settings.save_steps,
        "save_total_limit": 2,
        "seed": job.seed,
        "bf16": use_bf16(settings.precision, cuda=cuda),
        "use_cpu": not cuda,
        "report_to": [],
        "remove_unused_columns": False,
        "train_sampling_strategy": "group_by_length",  # batches of similar length: little padding
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def train(job: TrainJob, reporter: Reporter) -> dict:
    import torch
    from datasets import Dataset, load_from_disk
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    cuda = torch.cuda.is_available()
    backend = choose_backend(
        job.training.backend, cuda=cuda, unsloth_installed=importlib.util.find_spec("unsloth") is not None
    )
    reporter.info(f"backend {backend} on {'CUDA' if cuda else 'CPU'}; base model {job.training.base_model}")
    model, tokenizer = load_unsloth(job) if backend == "unsloth" else load_hf(job, cuda=cuda)

    rows = load_from_disk(job.dataset_path)["train"]
    encoded = [
        encode(tokenizer, r["original_code"], r["update_snippet"], r["final_code"], job.max_seq_length)
        for r in rows
    ]
    train_set = Dataset.from_dict(
        {
            "input_ids": [e.input_ids for e in encoded],
            "labels": [e.labels for e in encoded],
            "length": [e.length for e in encoded],
        }
    )
    if not encoded:
        raise ValueError(
            f"{job.dataset_path}: the train split has no rows; build the dataset with more sources"
        )
    reporter.info(f"{len(encoded)} training examples, longest {max(e.length for e in encoded)} tokens")
    answer_logits_only = job.training.answer_logits_only and backend == "hf"
    collator = PaddingCollator(
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        answer_logits_only=answer_logits_only,
    )
    losses: list[tuple[int, float]] = []

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append((state.global_step, float(logs["loss"])))
                reporter.info(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}")

    output = Path(job.output_dir)
    # Checkpoints of this job on this data only: a changed dataset or setting starts afresh, while a
    # killed run (or a longer max_steps) resumes.
    checkpoints = output / "checkpoints" / run_key(job, examples_digest(encoded))
    args = TrainingArguments(
        **trainer_arguments(job, output_dir=str(checkpoints), cuda=cuda),
        **{
            checkpointing_argument(TrainingArguments): job.training.gradient_checkpointing and backend == "hf"
        },
    )
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    clock = None
    callbacks = [Report()]
    trainer_class = Trainer
    if job.training.max_minutes is not None:
        clock = ClockSchedule(
            job.training.max_minutes * 60,
            job.training.lr_scheduler,
            job.training.warmup_steps,
            spent_before=clock_spent(Path(resume)) if resume else 0.0,
        )
        trainer_class, budget = on_the_clock(Trainer, TrainerCallback, clock, reporter)
        callbacks.append(budget)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collator,
        callbacks=callbacks,
        compute_loss_func=answer_loss if answer_logits_only else None,
    )
    resumed_state = trainer_state(Path(resume)) if resume else {}
    if resume:
        reporter.info(f"resuming from {resume}")
        losses.extend(logged_losses(resumed_state))  # the curve so far, so the metrics hold all of it
    started = time.perf_counter()
    if clock is not None and resume and clock.spent_before >= clock.budget_seconds:
        # Nothing left to train. The Trainer would still run a step (it stops only after one, and a
        # checkpoint inside an epoch resumes with the rest of that epoch): take the checkpoint's weights.
        reporter.info(f"training.max_minutes was spent by {resume}: nothing left to train")
        load_checkpoint_adapter(model, Path(resume))
        clock.spent_out = True
        steps, training_loss = int(resumed_state["global_step"]), losses[-1][1] if losses else 0.0
    else:
        result = trainer.train(resume_from_checkpoint=resume)
        steps, training_loss = result.global_step, float(result.training_loss)
    seconds = time.perf_counter() - started
    clock_seconds = clock.spent if clock is not None else None

    adapter_dir = output / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    metrics = {
        "backend": backend,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "base_model": job.training.base_model,
        "examples": len(encoded),
        "steps": steps,
        "final_loss": losses[-1][1] if losses else training_loss,
        "first_loss": losses[0][1] if losses else training_loss,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(collator.real_tokens / seconds, 1) if seconds else 0.0,
        "padding_fraction": round(collator.padding_fraction, 4),
        "peak_memory_bytes": int(peak),
        "loss_curve": losses,
        "resumed_from": resume,
    }
    if clock is not None:
        metrics["max_minutes"] = job.training.max_minutes
        metrics["clock_minutes"] = round(clock_seconds / 60, 2)  # this run and those it resumed
        metrics["stopped_by_clock"] = clock.spent_out
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    job.to_json(output / "job.json")
    (adapter_dir / "README.md").write_text(model_card(job, metrics), encoding="utf-8")
    reporter.info(f"adapter saved to {adapter_dir}: final loss {metrics['final_loss']:.4f}")
    reporter.materialization(
        {
            "adapter_path": {"raw_value": str(adapter_dir), "type": "path"},
            "base_model": job.training.base_model,
            "backend": backend,
            "device": metrics["device"],
            "steps": metrics["steps"],
            "examples": metrics["examples"],
            "first_loss": metrics["first_loss"],
            "final_loss": metrics["final_loss"],
            "tokens_per_second": metrics["tokens_per_second"],
            "padding_fraction": metrics["padding_fraction"],
            "peak_memory_mb": round(metrics["peak_memory_bytes"] / 2**20, 1),
            "train_seconds": metrics["train_seconds"],
            **{key: metrics[key] for key in ("clock_minutes", "stopped_by_clock") if key in metrics},
            "loss_plot": {"raw_value": loss_plot(losses), "type": "md"},
            "lora": f"r={job.training.lora_r} alpha={job.training.lora_alpha} rslora={job.training.use_rslora} modules={','.join(job.training.target_modules)}",
        }
    )
    return metrics


CLOCK_FILE = "clock.json"  # in a checkpoint of a run with max_minutes: the training time spent up to it


def on_the_clock(trainer_class, callback_class, clock: ClockSchedule, reporter: Reporter):
    """(a Trainer subclass whose learning rate follows `clock`, the callback that starts it, stops the run
    when the budget is spent and notes the time spent in each checkpoint)."""
    import torch

    class ClockTrainer(trainer_class):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer, clock.factor
                )
                self._created_lr_scheduler = True  # made again on a second train(), as the Trainer's own
            return self.lr_scheduler

    class Budget(callback_class):
        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            clock.start()
            # A resumed run loads the rate its checkpoint saved (for the next step under the old budget):
            # the clock's own, under this budget, replaces it.
            if optimizer is not None and lr_scheduler is not None:
                factor = clock.factor(state.global_step)
                for group, base in zip(optimizer.param_groups, lr_scheduler.base_lrs, strict=True):
                    group["lr"] = base * factor
                lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what is logged

        def on_step_end(self, args, state, control, **kwargs):
            if clock.spent_out:  # the scheduler's last factor: the next step's rate
                reporter.info(
                    f"training.max_minutes ({clock.budget_seconds / 60:g}) spent: stopping at step {state.global_step}"
                )
                control.should_training_stop = True
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (checkpoint / CLOCK_FILE).write_text(json.dumps({"seconds": clock.spent}), encoding="utf-8")

    return ClockTrainer, Budget()


def load_checkpoint_adapter(model, checkpoint: Path) -> None:
    """The LoRA weights a checkpoint saved (adapter_model.safetensors), into the peft model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))


def clock_spent(checkpoint: Path) -> float:
    """The training time a checkpoint had spent of its max_minutes (0 for a checkpoint made by steps)."""
    path = checkpoint / CLOCK_FILE
    return float(json.loads(path.read_text(encoding="utf-8"))["seconds"]) if path.is_file() else 0.0


def trainer_state(checkpoint: Path) -> dict:
    """A checkpoint's trainer_state.json (global_step, log_history), {} where it has none."""
    path = checkpoint / "trainer_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def logged_losses(state: dict) -> list[tuple[int, float]]:
    """(step, loss) logged before a checkpoint (its trainer state), for a resumed run's curve."""
    return [
        (int(entry["step"]), float(entry["loss"]))
        for entry in state.get("log_history", [])
        if "loss" in entry
    ]


def checkpointing_argument(arguments_class) -> str:
    fields = getattr(arguments_class, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def run_key(job: TrainJob, data_fingerprint: str) -> str:
    """What makes checkpoints reusable: the data and every setting but the length of training."""
    settings = job.model_dump(mode="json", exclude=RESUMABLE_CHANGES)
    settings["training"] = {
        k: v for k, v in settings["training"].items() if k not in RESUMABLE_TRAINING_CHANGES
    }
    # The budget's length may change (a longer one resumes), but not whether the rate follows steps or
    # the clock: an annealed step run resumed by the clock would warm up again, and the reverse.
    settings["training"]["by_clock"] = job.training.max_minutes is not None
    payload = json.dumps({"data": data_fingerprint, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def loss_plot(losses: list[tuple[int, float]]) -> str:
    """The loss curve as markdown: a sparkline and a bar per logged step."""
    if not losses:
        return "(no loss logged)"
    top = max(loss for _, loss in losses) or 1.0
    rows = "\n".join(
        f"| {step} | {loss:.4f} | {'█' * max(1, round(30 * loss / top))} |" for step, loss in losses
    )
    return f"`{loss_sparkline([loss for _, loss in losses])}`\n\n| step | loss | |\n|---:|---:|---|\n{rows}"


def model_card(job: TrainJob, metrics: dict) -> str:
    return f"""---
library_name: peft
base_model: {job.training.base_model}
tags: [fast-apply, code-editing, lora, qwen2.5-coder]
---

# Fast Apply LoRA adapter of {job.training.base_model}

Merges lazy edit snippets into whole files. Trained by fastapply-pipeline on the train split of
`{job.dataset_path}` with the inference prompt of the project (chat template of the base tokenizer), the
loss on the answer `<updated-code>...</updated-code>` only.

| setting | value |
|---|---|
| backend | {metrics["backend"]} ({metrics["device"]}) |
| LoRA | r={job.training.lora_r}, alpha={job.training.lora_alpha}, dropout={job.training.dropout}, rsLoRA={job.training.use_rslora} |
| modules | {", ".join(job.training.target_modules)} |
| learning rate | {job.training.learning_rate} ({job.training.lr_scheduler}{f", by the clock over {job.training.max_minutes:g} minutes" if job.training.max_minutes else ""}) |
| epochs / max steps | {job.training.epochs} / {job.training.max_steps} |
| batch | {job.training.batch_size} x {job.training.gradient_accumulation_steps} accumulation |
| max_seq_length | {job.max_seq_length} |
| examples / steps | {metrics["examples"]} / {metrics["steps"]} |
| loss | {metrics["first_loss"]:.4f} -> {metrics["final_loss"]:.4f} |
| tokens/s, padding | {metrics["tokens_per_second"]}, {metrics["padding_fraction"]:.1%} |

Load it with `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "<this folder>")`,
or serve it with vLLM's LoRA support (`--enable-lora --lora-modules fastapply=<this folder>`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job", help="the TrainJob JSON file")
    source.add_argument("--job-json", help="the TrainJob as JSON text (how remote GPU jobs get it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    job = TrainJob.from_json(Path(args.job)) if args.job else TrainJob.from_dict(json.loads(args.job_json))
    if os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            run_job(job, Reporter(pipes))
    else:
        run_job(job, Reporter())
    return 0


def run_job(job: TrainJob, reporter: Reporter) -> dict:
    """Train; in production, with the dataset fetched from the artifact store first and the adapter
    folder published to it after."""
    Path(job.output_dir).mkdir(parents=True, exist_ok=True)
    job.to_json(Path(job.output_dir) / "job.json")  # what this run was asked to do, before it starts
    store = job.store()
    if store is not None:
        name = job.artifact_name(str(Path(job.dataset_path).parent))
        store.fetch(name)
        reporter.info(f"fetched {store.uri(name)}")
    metrics = train(job, reporter)
    if store is not None:
        reporter.info(f"published {store.publish(job.artifact_name(job.output_dir))}")
    return metrics


if __name__ == "__main__":
    sys.exit(main())
