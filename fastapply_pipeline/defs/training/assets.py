"""lora_adapter: a LoRA adapter trained on fastapply_dataset by the GPU job resource, through Pipes."""

import sys

import dagster as dg

from fastapply_pipeline.core.artifacts import ADAPTER, DATASET, DATASET_HF
from fastapply_pipeline.core.training import TrainJob
from fastapply_pipeline.defs.dataset.assets import DATASET_KEY
from fastapply_pipeline.defs.resources import ArtifactsResource, FastApplyResource
from fastapply_pipeline.defs.training.resources import GPUJobResource


@dg.asset(
    group_name="training",
    kinds={"pytorch", "huggingface"},
    deps=[DATASET_KEY],
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
    # Production: the job fetches the dataset from S3 and publishes the adapter there itself, so it runs
    # alike here, in a Kubernetes pod or in an ECS task.
    job = TrainJob.for_config(
        fastapply.load(),
        dataset_path=str(artifacts.path(DATASET) / DATASET_HF),
        output_dir=str(artifacts.path(ADAPTER)),
        artifacts_root=artifacts.root,
        s3=artifacts.s3_settings(),
    )
    # The job travels inline, the one way it is passed: a remote GPU machine has no access to this
    # machine's files. The entrypoint writes it to <output_dir>/job.json.
    command = [sys.executable, "-m", "fastapply_pipeline.training.train", "--job-json", job.model_dump_json()]
    invocation = gpu_job.run(context, command)
    context.add_output_metadata({"stored_at": dg.MetadataValue.path(artifacts.store().uri(ADAPTER))})
    return invocation.get_materialize_result()


train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.assets(lora_adapter),
    description="Trains lora_adapter on the current fastapply_dataset (pool gpu: one at a time).",
)
