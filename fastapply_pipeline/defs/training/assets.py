"""lora_adapter: a LoRA adapter trained on fastapply_dataset by the GPU job resource, through Pipes."""

import sys

import dagster as dg

from fastapply_pipeline.core.training import PRESETS, TrainJob
from fastapply_pipeline.defs.resources import FastApplyResource
from fastapply_pipeline.defs.training.resources import GPUJobResource


@dg.asset(
    group_name="training",
    kinds={"pytorch", "huggingface"},
    deps=["fastapply_dataset"],
    pool="gpu",
    description=(
        "A LoRA adapter of the configured Qwen2.5-Coder base model on fastapply_dataset's train split. The GPU "
        "job resource runs `python -m fastapply_pipeline.training.train` (locally, on Kubernetes or on ECS) "
        "through Dagster Pipes: unsloth QLoRA on a GPU, transformers + peft elsewhere; the loss is masked to "
        "the answer; logs, the loss curve, tokens/s, padding and peak memory come back as metadata. Holds the "
        "`gpu` pool: one training at a time."
    ),
)
def lora_adapter(
    context: dg.AssetExecutionContext, fastapply: FastApplyResource, gpu_job: GPUJobResource
) -> dg.MaterializeResult:
    config = fastapply.load()
    settings = config.training
    preset = PRESETS[settings.preset]
    output = config.artifacts_dir / "adapters" / "lora_adapter"
    output.mkdir(parents=True, exist_ok=True)
    job = TrainJob(
        dataset_path=str(config.artifacts_dir / "dataset" / "hf"),
        output_dir=str(output),
        base_model=settings.base_model,
        backend=settings.backend,
        r=settings.r or preset["r"],
        alpha=settings.alpha or preset["alpha"],
        dropout=settings.dropout,
        use_rslora=settings.use_rslora,
        target_modules=list(settings.target_modules),
        learning_rate=settings.learning_rate,
        lr_scheduler=settings.lr_scheduler,
        epochs=settings.epochs,
        max_steps=settings.max_steps,
        batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_seq_length=config.dataset.max_seq_length,
        warmup_steps=settings.warmup_steps,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        seed=config.seed,
        allow_download=settings.allow_download,
        load_in_4bit=settings.load_in_4bit,
        gradient_checkpointing=settings.gradient_checkpointing,
    )
    job_file = output / "job.json"
    job.to_json(job_file)
    command = [sys.executable, "-m", "fastapply_pipeline.training.train", "--job", str(job_file)]
    invocation = gpu_job.run(context, command, extras={"job": str(job_file)})
    return invocation.get_materialize_result()
