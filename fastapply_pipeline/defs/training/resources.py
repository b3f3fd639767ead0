"""The GPU job resource: runs the training entrypoint through Dagster Pipes, here or on a GPU node.

- local: `PipesSubprocessClient` (the machine's GPU if it has one, else the CPU);
- kubernetes: dagster-k8s `PipesK8sClient`: a pod with `nvidia.com/gpu` limits, node selector and
  tolerations, running the training image (docker/Dockerfile.train);
- ecs: dagster-aws `PipesECSClient`: a task of a GPU task definition, with the command, environment
  and GPU count as container overrides.
Logs, the loss and the final metadata come back over Pipes in every case. On kubernetes and ecs the
dataset and output paths must be storage the job can reach (S3 in production).
"""

from collections.abc import Mapping, Sequence

import dagster as dg
from pydantic import Field


def k8s_pod_spec(*, gpu_count: int, node_selector: Mapping[str, str], tolerations: Sequence[dict]) -> dict:
    """The base pod spec PipesK8sClient merges the image and command into."""
    limits = {"nvidia.com/gpu": str(gpu_count)} if gpu_count else {}
    spec: dict = {
        "restartPolicy": "Never",
        "containers": [{"name": "dagster-pipes-execution", "resources": {"limits": limits}}],
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    return spec


def ecs_run_task_params(
    *,
    cluster: str,
    task_definition: str,
    container: str,
    command: Sequence[str],
    env: Mapping[str, str],
    gpu_count: int,
    subnets: Sequence[str],
) -> dict:
    """RunTask parameters for PipesECSClient: the command, environment and GPUs as container overrides."""
    override: dict = {
        "name": container,
        "command": list(command),
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    if gpu_count:
        override["resourceRequirements"] = [{"type": "GPU", "value": str(gpu_count)}]
    params: dict = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "count": 1,
        "overrides": {"containerOverrides": [override]},
    }
    if subnets:
        params["launchType"] = "EC2"
        params["networkConfiguration"] = {"awsvpcConfiguration": {"subnets": list(subnets)}}
    return params


class GPUJobResource(dg.ConfigurableResource):
    """Launches a command through Dagster Pipes on the configured backend (see the module docstring)."""

    backend: str = Field("local", description="local | kubernetes | ecs")
    image: str | None = None
    gpu_count: int = 1
    env: dict[str, str] = Field(default_factory=dict)
    namespace: str = "default"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict] = Field(default_factory=list)
    ecs_cluster: str | None = None
    ecs_task_definition: str | None = None
    ecs_container: str = "train"
    ecs_subnets: list[str] = Field(default_factory=list)

    def run(
        self,
        context: dg.AssetExecutionContext,
        command: Sequence[str],
        *,
        extras: Mapping | None = None,
        client=None,
    ) -> dg.PipesClientCompletedInvocation:
        """Run `command`; `client` replaces the backend's Pipes client (tests at the client boundary)."""
        if self.backend == "local":
            client = client or dg.PipesSubprocessClient()
            return client.run(context=context, command=list(command), env=dict(self.env), extras=extras)
        if self.backend == "kubernetes":
            if client is None:
                from dagster_k8s import PipesK8sClient  # the `k8s` extra

                client = PipesK8sClient()
            return client.run(
                context=context,
                image=self.image,
                command=list(command),
                namespace=self.namespace,
                env=dict(self.env),
                base_pod_spec=k8s_pod_spec(
                    gpu_count=self.gpu_count, node_selector=self.node_selector, tolerations=self.tolerations
                ),
                extras=extras,
            )
        if self.backend == "ecs":
            if client is None:
                from dagster_aws.pipes import PipesECSClient  # the `ecs` extra

                client = PipesECSClient()
            return client.run(
                context=context,
                run_task_params=ecs_run_task_params(
                    cluster=self.ecs_cluster,
                    task_definition=self.ecs_task_definition,
                    container=self.ecs_container,
                    command=command,
                    env=self.env,
                    gpu_count=self.gpu_count,
                    subnets=self.ecs_subnets,
                ),
                pipes_container_name=self.ecs_container,
                extras=extras,
            )
        raise dg.Failure(f"unknown GPU job backend {self.backend!r}; use local, kubernetes or ecs")
