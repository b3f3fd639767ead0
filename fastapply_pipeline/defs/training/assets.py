"""lora_adapter: a LoRA adapter trained on fastapply_dataset by the GPU job resource, through Pipes."""

import json
import sys
from dataclasses import asdict

import dagster as dg

from fastapply_pipeline.core.training import PRESETS, TrainJob
from fastapply_pipeline.defs.resources import ArtifactsResource, FastApplyResource
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
    context: dg.AssetExecutionContext,
    fastapply: FastApplyResource,
    gpu_job: GPUJobResource,
    artifacts: ArtifactsResource,
) -> dg.MaterializeResult:
    config = fastapply.load()
    settings = config.training
    preset = PRESETS[settings.preset]
    output = config.artifacts_dir / "adapters" / "lora_adapter"
    output.mkdir(parents=True, exist_ok=True)
    # Every training setting of fastapply.yaml that the job knows, then what comes from elsewhere.
    same_name = settings.model_dump(include=set(TrainJob.__dataclass_fields__) - {"r", "alpha"})
    job = TrainJob(
        **same_name,
        dataset_path=str(config.artifacts_dir / "dataset" / "hf"),
        output_dir=str(output),
        r=settings.r or preset["r"],
        alpha=settings.alpha or preset["alpha"],
        max_seq_length=config.dataset.max_seq_length,
        seed=config.seed,
        # Production: the job fetches the dataset from S3 and publishes the adapter there itself, so it
        # runs alike here, in a Kubernetes pod or in an ECS task.
        s3=artifacts.s3_settings(),
        artifacts_root=str(config.artifacts_dir) if artifacts.s3_settings() else None,
    )
    job_file = output / "job.json"
    job.to_json(job_file)
    # The job travels inline: a remote GPU machine has no access to this machine's files.
    command = [
        sys.executable,
        "-m",
        "fastapply_pipeline.training.train",
        "--job-json",
        json.dumps(asdict(job)),
    ]
    invocation = gpu_job.run(context, command, extras={"job": str(job_file)})
    context.add_output_metadata(
        {"stored_at": dg.MetadataValue.path(artifacts.store().uri("adapters/lora_adapter"))}
    )
    return invocation.get_materialize_result()
