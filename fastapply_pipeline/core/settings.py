"""The settings of fastapply.yaml as typed models: what core receives, defined once with their defaults.

`fastapply_pipeline.config` reads and validates the file into these (`load_config`); core functions take
the section they use (`TrainingSettings`, `EvalSettings`, `ProviderSettings`, ...). Only light imports
here, so that loading settings loads no parser, scanner or model: the checks that need one import it
when they run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from fastapply_pipeline.core.files import DEFAULT_VENDORED_DIRS, FileRules
from fastapply_pipeline.core.sources import (
    PARTITION_KEY_RE,
    SourceLocationError,
    default_partition_key,
    validate_git_url,
    validate_local_path,
)

if TYPE_CHECKING:
    from fastapply_pipeline.core.secrets import SecretScanner

# The renderer's snippet styles (core.render) and their default weights.
SNIPPET_STYLES = (
    "anchored",
    "generous_context",
    "changed_first_line",
    "unit",
    "dedented_unit",
    "whole_file",
    "other_spelling",
)
DEFAULT_STYLE_WEIGHTS = {
    "anchored": 30,
    "generous_context": 10,
    "changed_first_line": 15,
    "unit": 15,
    "dedented_unit": 10,
    "whole_file": 10,
    "other_spelling": 10,
}
# The reference pipeline's mix of edit goals (weights), for the structural and LLM generators.
DEFAULT_EDIT_KINDS = {
    "modify_function": 25,
    "add_feature": 20,
    "modify_two_functions": 15,
    "add_two_features": 10,
    "small_refactor": 5,
    "delete_feature": 2,
    "modify_single_line": 2,
    "reorder_units": 3,  # not in the reference mix: moved code, which lazy snippets must express too
}

Language = Literal["python", "typescript", "tsx", "javascript", "jsx", "markdown", "rust", "go"]
SnippetStyle = Literal[SNIPPET_STYLES]
TokenizerName = Literal["cl100k_base", "o200k_base", "qwen2.5"]

# Permissive licenses whose code may go into a training set without copyleft obligations.
DEFAULT_ALLOWED_LICENSES = [
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "0BSD",
    "ISC",
    "Unlicense",
    "CC0-1.0",
    "Zlib",
    "BSL-1.0",
    "PSF-2.0",
]

# detect-secrets plugins that find credentials by their shape. The entropy and keyword detectors are
# off by default: in source code they flag hashes, fixtures and `password = "..."` test data, which
# would exclude good files for no reason. Add them here to be stricter.
DEFAULT_SECRET_PLUGINS = [
    "ArtifactoryDetector",
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "CloudantDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "JwtTokenDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SoftlayerDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
]


class ConfigError(ValueError):
    """fastapply.yaml is missing or invalid. The message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """One source repository: a git URL or a local git folder, optionally pinned to a ref."""

    url: str | None = Field(None, description="https://, ssh:// or git@host:path URL of a git repository.")
    path: str | None = Field(None, description="A local git repository (relative to fastapply.yaml).")
    ref: str | None = Field(None, description="Branch, tag or commit to pin; default: the remote's HEAD.")
    name: str | None = Field(None, description="Partition key; default: derived from the URL or path.")
    license: str | None = Field(None, description="SPDX id that overrides the detected license.")
    include: list[str] = Field(
        default_factory=list, description="gitignore-style globs to keep (all if empty)."
    )
    exclude: list[str] = Field(default_factory=list, description="gitignore-style globs to drop.")

    @model_validator(mode="after")
    def _check_location(self) -> Source:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` (a git URL) or `path` (a local git folder)")
        try:
            if self.url is not None:
                validate_git_url(self.url)
            else:
                validate_local_path(self.path or "")
        except SourceLocationError as err:
            raise ValueError(str(err)) from None
        if self.ref is not None and (self.ref.startswith("-") or not self.ref.strip() or ".." in self.ref):
            raise ValueError(
                f"ref {self.ref!r} is not a branch, tag or commit; remove the leading '-' or '..'"
            )
        if self.name is not None and not PARTITION_KEY_RE.match(self.name):
            raise ValueError(
                f"name {self.name!r} is not a valid partition key; use lowercase letters, digits, '.', '_' "
                "and '-', starting with a letter or digit"
            )
        return self

    @property
    def location(self) -> str:
        return self.url if self.url is not None else str(self.path)

    @property
    def key(self) -> str:
        """The stable, readable partition key of this source."""
        return self.name or default_partition_key(self.location)

    def fingerprint(self) -> str:
        """A short hash of everything that defines this source (changes when the user edits it)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


class S3Settings(_Strict):
    """Where artifacts go when FASTAPPLY_ENV=prod. Credentials come only from the environment (the AWS
    SDK's chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, or the pod's / task's role)."""

    bucket: str = Field(..., min_length=3, description="The S3 bucket.")
    prefix: str = Field("fastapply", description="Key prefix under which every artifact lives.")
    endpoint_url: str | None = Field(
        None, description="Another S3 endpoint (MinIO, a moto server); null: AWS (or $AWS_ENDPOINT_URL)."
    )
    region: str | None = Field(None, description="null: the SDK's default ($AWS_REGION).")

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, prefix: str) -> str:
        cleaned = prefix.strip("/")
        if not cleaned:
            raise ValueError("prefix must name a folder in the bucket (e.g. fastapply), not be empty or '/'")
        return cleaned


class StorageSettings(_Strict):
    cache_dir: str = Field(".fastapply/cache", description="Git mirrors and content caches (per machine).")
    artifacts_dir: str = Field(
        ".fastapply/artifacts",
        description="Asset outputs (parquet, datasets, adapters); with FASTAPPLY_ENV=prod, the local staging copy.",
    )
    s3: S3Settings | None = Field(None, description="The artifact store of FASTAPPLY_ENV=prod.")


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")
_CRON_ALIASES = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly"}


def _check_cron(value: str | None) -> str | None:
    if value is None or value.strip() in _CRON_ALIASES:
        return value
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ValueError(
            f"{value!r} is not a cron schedule: five fields (minute hour day month weekday), e.g. '0 3 * * 1'"
        )
    return value


class AutomationSettings(_Strict):
    """When work starts by itself (the Dagster daemon runs schedules and automation conditions)."""

    refresh_cron: str | None = Field(
        "0 3 * * 1",
        description=(
            "The dataset refresh: each source's ref is resolved again; sources whose commit changed get new "
            "snippets and triples, and the dataset is rebuilt once any of them changed. null = off."
        ),
    )
    dataset_cron: str | None = Field(
        "0 6 * * 1",
        description=(
            "From this tick on, fastapply_dataset is rebuilt once any upstream partition changed and no "
            "upstream run is in flight. Later than refresh_cron, so the refresh's runs exist by then. null = "
            "rebuild by hand."
        ),
    )
    timezone: str = Field("UTC", description="Timezone of every cron here.")
    train_cron: str | None = Field(
        None, description="A schedule for lora_adapter (pool gpu); null = launch by hand."
    )
    eval_cron: str | None = Field(None, description="A schedule for eval_scores; null = launch by hand.")

    @field_validator("refresh_cron", "dataset_cron", "train_cron", "eval_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return _check_cron(value)


class CloneSettings(_Strict):
    depth: int | None = Field(
        200, ge=1, description="Commits of history to fetch (for the git-history generator); null = all."
    )
    timeout_seconds: float = Field(600, gt=0, description="Timeout for each git command.")


class FileFilterSettings(_Strict):
    languages: list[Language] = Field(
        default_factory=lambda: ["python", "typescript", "tsx", "javascript", "jsx", "markdown"],
        min_length=1,
        description=(
            "Languages whose source files are kept (python, typescript, tsx, javascript, jsx, markdown, rust, go; "
            "tree-sitter checks the syntax of the first five)."
        ),
    )
    max_file_bytes: int = Field(500_000, gt=0, description="Larger files are excluded as too_large.")
    exclude: list[str] = Field(
        default_factory=list, description="gitignore-style globs dropped for all sources."
    )
    vendored_dirs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VENDORED_DIRS),
        description=(
            "Folder names of copied-in code (node_modules, vendor, _vendor, third_party, ...): files under "
            "one, at any depth, are excluded as vendored. Replaces the default list; [] turns it off."
        ),
    )
    allowed_licenses: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_LICENSES),
        description="SPDX ids a repository's license must be among; others are skipped whole.",
    )

    @field_validator("vendored_dirs")
    @classmethod
    def _folder_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(
                    f"{name!r} is not a folder name; give bare names such as vendor or _vendored (matched "
                    "at any depth), and use files.exclude globs for paths like 'web/legacy/**'"
                )
        return names


class SecretScanSettings(_Strict):
    enabled: bool = True
    plugins: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_PLUGINS), min_length=1)

    @field_validator("plugins")
    @classmethod
    def _known_plugins(cls, plugins: list[str]) -> list[str]:
        from fastapply_pipeline.core.secrets import available_plugins  # detect-secrets: only when checked

        known = available_plugins()
        unknown = sorted(set(plugins) - known)
        if unknown:
            raise ValueError(f"unknown detect-secrets plugins {unknown}; choose from {sorted(known)}")
        return plugins


class Bucket(_Strict):
    """A token-count range [previous upper, upper) and how many files to sample from it per repo."""

    upper: int | None = Field(
        ..., gt=0, description="Exclusive upper bound in tokens; null for the last bucket."
    )
    sample: int | None = Field(..., ge=0, description="Files to sample per repository; null keeps all.")


# The reference Fast Apply pipeline's cl100k buckets and per-bucket sample sizes.
DEFAULT_BUCKETS = [
    Bucket(upper=100, sample=0),
    Bucket(upper=400, sample=500),
    Bucket(upper=1000, sample=1000),
    Bucket(upper=2000, sample=3000),
    Bucket(upper=3000, sample=1000),
    Bucket(upper=4000, sample=0),
    Bucket(upper=5000, sample=0),
    Bucket(upper=10000, sample=0),
    Bucket(upper=None, sample=0),
]


class SnippetSettings(_Strict):
    tokenizer: TokenizerName = Field("cl100k_base", description="Token counter used for bucketing.")
    buckets: list[Bucket] = Field(default_factory=lambda: list(DEFAULT_BUCKETS), min_length=1)

    @field_validator("buckets")
    @classmethod
    def _ordered(cls, buckets: list[Bucket]) -> list[Bucket]:
        uppers = [b.upper for b in buckets]
        if uppers[-1] is not None:
            raise ValueError("the last bucket must have `upper: null` so that every token count has a bucket")
        if any(u is None for u in uppers[:-1]):
            raise ValueError("only the last bucket may have `upper: null`")
        bounded = [u for u in uppers[:-1] if u is not None]
        if bounded != sorted(set(bounded)):
            raise ValueError(f"bucket upper bounds must strictly increase; got {bounded}")
        return buckets


def _positive_weights(weights: dict[str, float], what: str) -> dict[str, float]:
    """Relative weights (edit kinds, providers, snippet styles) need one positive entry to draw from."""
    if not weights or sum(weights.values()) <= 0:
        raise ValueError(f"give at least one {what} a positive weight")
    return weights


EditKind = Literal[
    "modify_function",
    "add_feature",
    "modify_two_functions",
    "add_two_features",
    "small_refactor",
    "delete_feature",
    "modify_single_line",
    "reorder_units",
]


class StructuralSettings(_Strict):
    attempts_per_file: int = Field(2, ge=1, description="Edits tried per snippet file.")
    edit_kinds: dict[EditKind, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_EDIT_KINDS),
        description="Relative weights of the edit kinds (the reference pipeline's mix by default).",
    )

    _some_weight = field_validator("edit_kinds")(lambda cls, weights: _positive_weights(weights, "edit kind"))


class GitHistorySettings(_Strict):
    max_commits: int = Field(200, ge=1, description="Newest commits (from the pinned one) to read.")
    max_files_per_commit: int = Field(20, ge=1, description="Commits touching more source files are skipped.")
    max_changed_fraction: float = Field(
        0.5, gt=0, le=1, description="Skip whole rewrites above this fraction."
    )


class Price(_Strict):
    """US dollars per million tokens."""

    input: float = Field(..., ge=0)
    output: float = Field(..., ge=0)


# List prices per million tokens as published by the providers in 2026 (check their pricing pages;
# override or extend under `triples.llm.prices`). Batch APIs cost `batch_discount` of these.
DEFAULT_PRICES = {
    "claude-sonnet-4-6": {"input": 3.0, "output": 15.0},
    "claude-opus-4-6": {"input": 5.0, "output": 25.0},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0},
    "claude-sonnet-4-5": {"input": 3.0, "output": 15.0},
    "gpt-4.1": {"input": 2.0, "output": 8.0},
    "gpt-4.1-mini": {"input": 0.4, "output": 1.6},
    "gpt-4o": {"input": 2.5, "output": 10.0},
    "gpt-5": {"input": 1.25, "output": 10.0},
}


class ProviderSettings(_Strict):
    """How one LLM provider is called. The API key comes only from the environment."""

    model: str = Field(..., min_length=1)
    base_url: str | None = Field(None, description="Another endpoint (a proxy, an OpenAI-compatible server).")
    api: Literal["sync", "batch"] = Field("sync", description="Per-request calls, or the Batch API.")
    temperature: float | None = Field(
        0.7, ge=0, le=2, description="Sampling temperature; null leaves it out (reasoning models reject it)."
    )
    max_tokens: int = Field(
        8192, ge=16, description="Output budget; longer answers are rejected as truncated."
    )
    concurrency: int = Field(8, ge=1, le=512, description="Requests in flight at once (sync API).")
    requests_per_minute: int | None = Field(None, ge=1, description="Client-side limit; null = none.")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Client-side limit on prompt + max output tokens; null = none."
    )
    timeout_seconds: float = Field(300, gt=0, description="Per attempt; a timed-out attempt is retried.")
    max_retries: int = Field(6, ge=0, le=50, description="Retries of 408/409/429/5xx and timeouts.")
    poll_interval_seconds: float = Field(60, gt=0, description="Batch API: seconds between status polls.")
    max_wait_hours: float = Field(
        25, gt=0, description="Batch API: give up waiting after this (a re-run resumes the same batch)."
    )
    max_batch_requests: int = Field(10_000, ge=1, description="Batch API: requests per batch.")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens",
        description="OpenAI only: reasoning models (o-series, gpt-5) need max_completion_tokens.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {url!r})")
        return url


class AnthropicSettings(ProviderSettings):
    model: str = Field("claude-sonnet-4-6", min_length=1)
    temperature: float | None = None

    @field_validator("temperature")
    @classmethod
    def _no_sampling_params(cls, value: float | None) -> float | None:
        if value is not None:
            raise ValueError(
                "the Anthropic Messages API (version 2026-10-21, sent by the anthropic 2.x SDK) rejects "
                "sampling parameters; remove triples.llm.anthropic.temperature"
            )
        return value


class OpenAISettings(ProviderSettings):
    model: str = Field("gpt-4.1", min_length=1)


class LLMSettings(_Strict):
    mode: Literal["snippet_and_final", "snippet_only"] = Field(
        "snippet_and_final",
        description=(
            "snippet_and_final: the LLM writes the snippet and the final file (the reference behaviour); "
            "snippet_only: it writes the snippet and the deterministic applier merges it."
        ),
    )
    mix: dict[Literal["anthropic", "openai"], Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"anthropic": 70, "openai": 30},
        description="Relative share of files sent to each enabled provider.",
    )
    files_per_repo: int | None = Field(
        100, ge=0, description="Files sent per repository (cost cap); null = all."
    )
    edits_per_file: int = Field(1, ge=1, le=20, description="Requests per file, each with its own edit goal.")
    edit_kinds: dict[EditKind, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_EDIT_KINDS),
        description="Relative weights of the edit goals given to the LLM.",
    )
    retry_failed: bool = Field(
        False,
        description=(
            "Requests the provider answered with a final error (batch result errored, expired or missing; "
            "a rejected request) are remembered; true sends them again."
        ),
    )
    anthropic: AnthropicSettings = Field(default_factory=AnthropicSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    prices: dict[str, Price] = Field(
        default_factory=lambda: {k: Price(**v) for k, v in DEFAULT_PRICES.items()},
        description="USD per million tokens by model; models missing here are reported without a cost.",
    )
    batch_discount: float = Field(0.5, ge=0, le=1, description="Batch API price as a fraction of list price.")

    _some_weight = field_validator("edit_kinds", "mix")(
        lambda cls, weights: _positive_weights(weights, "entry")
    )

    def provider(self, name: str) -> ProviderSettings:
        return getattr(self, name)


GeneratorName = Literal["structural", "git_history", "anthropic", "openai"]
LLM_PROVIDERS = ("anthropic", "openai")


class TripleSettings(_Strict):
    generators: list[GeneratorName] = Field(
        default_factory=lambda: ["structural", "git_history"], min_length=1
    )
    min_context: int = Field(1, ge=1, description="Unchanged lines around each edit in a snippet, at least.")
    max_context: int = Field(12, ge=1, description="Context grows up to this to make an anchor unique.")
    snippet_styles: dict[SnippetStyle, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_STYLE_WEIGHTS),
        description=(
            "Relative weights of the snippet styles drawn for each offline triple (anchored hunks, a changed "
            "first line, one unit without markers, a dedented unit, the whole file, other marker spellings, "
            "generous context); a style that cannot express an edit falls back to anchored, counted."
        ),
    )
    structural: StructuralSettings = Field(default_factory=StructuralSettings)
    git_history: GitHistorySettings = Field(default_factory=GitHistorySettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)

    _some_style = field_validator("snippet_styles")(
        lambda cls, weights: _positive_weights(weights, "snippet style (e.g. anchored: 1)")
    )

    @model_validator(mode="after")
    def _contexts(self) -> TripleSettings:
        if self.max_context < self.min_context:
            raise ValueError(
                f"max_context ({self.max_context}) must be at least min_context ({self.min_context})"
            )
        enabled = self.llm_providers
        if enabled and not any(self.llm.mix.get(name, 0) > 0 for name in enabled):
            raise ValueError(
                f"generators {enabled} are enabled but triples.llm.mix gives none of them a positive share"
            )
        return self

    @property
    def llm_providers(self) -> list[str]:
        """The enabled LLM generators, in a fixed order."""
        return [name for name in LLM_PROVIDERS if name in self.generators]


class DedupSettings(_Strict):
    near_duplicates: bool = Field(True, description="Also drop near-duplicates (MinHash/LSH).")
    threshold: float = Field(
        0.9, gt=0, le=1, description="Estimated Jaccard similarity of both the file and the snippet."
    )
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")


class SplitSettings(_Strict):
    test: float = Field(0.1, gt=0, lt=1, description="Share of rows (whole repositories) in the test split.")
    validation: float = Field(0.0, ge=0, lt=1, description="Share in a validation split; 0 = none.")

    @model_validator(mode="after")
    def _leaves_train(self) -> SplitSettings:
        if self.test + self.validation >= 0.9:
            raise ValueError(f"test + validation ({self.test + self.validation}) must leave rows to train on")
        return self


class PushSettings(_Strict):
    repo_id: str | None = Field(None, description="A Hugging Face dataset repo (user/name); null = no push.")
    private: bool = Field(True, description="Create the repo private.")

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            raise ValueError(f"repo_id must look like 'user/name' (got {value!r})")
        return value


class DatasetSettings(_Strict):
    tokenizer: str = Field(
        "qwen2.5",
        description="Training tokenizer (its chat template renders examples): qwen2.5, or a local folder.",
    )
    allow_download: bool = Field(False, description="Let `tokenizer` be a hub id, downloaded at run time.")
    max_seq_length: int = Field(
        8192, ge=128, description="Whole training examples longer than this are dropped."
    )
    max_changed_fraction: float = Field(
        0.6, gt=0, le=1, description="Drop whole-file rewrites: changed lines / original lines above this."
    )
    llm_disagreement: Literal["reject", "use_applier"] = Field(
        "reject",
        description="LLM rows whose final the applier does not reproduce: drop, or keep with the applier's result.",
    )
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    push: PushSettings = Field(default_factory=PushSettings)


class GpuJobSettings(_Strict):
    """Where the training entrypoint runs (the GPU job resource)."""

    backend: Literal["local", "kubernetes", "ecs"] = Field(
        "local", description="local: a subprocess here (GPU if present); kubernetes / ecs: a GPU pod / task."
    )
    image: str | None = Field(
        None, description="kubernetes / ecs: the training image (docker/Dockerfile.train)."
    )
    gpu_count: int = Field(1, ge=0, description="GPUs requested (nvidia.com/gpu on Kubernetes, GPU on ECS).")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for the job (no secrets)."
    )
    namespace: str = Field("default", description="kubernetes: namespace of the pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="kubernetes: node selector.")
    tolerations: list[dict] = Field(default_factory=list, description="kubernetes: pod tolerations.")
    ecs_cluster: str | None = Field(None, description="ecs: cluster name or ARN.")
    ecs_task_definition: str | None = Field(None, description="ecs: a task definition with a GPU container.")
    ecs_container: str = Field("train", description="ecs: the container name in the task definition.")
    ecs_subnets: list[str] = Field(default_factory=list, description="ecs: awsvpc subnets.")

    @model_validator(mode="after")
    def _complete(self) -> GpuJobSettings:
        if self.backend == "kubernetes" and not self.image:
            raise ValueError("training.gpu.image is required for the kubernetes backend")
        if self.backend == "ecs" and not (self.ecs_cluster and self.ecs_task_definition):
            raise ValueError(
                "training.gpu.ecs_cluster and ecs_task_definition are required for the ecs backend"
            )
        return self


TINY_MODEL = (
    "tiny-qwen2.5"  # a small Qwen2 built from a config with the real Qwen2.5 tokenizer (tests, demos)
)
LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The reference pipeline's QLoRA settings by model size (rsLoRA, all projection modules, lr 1e-4, cosine,
# 1 epoch): rank and alpha, unless `r` / `alpha` are given.
LORA_PRESETS = {
    "1.5b": {"r": 32, "alpha": 16},
    "7b": {"r": 16, "alpha": 16},
}


# The learning-rate shapes a time-budgeted run (training.max_minutes) can follow by the clock.
CLOCK_SCHEDULES = ("linear", "cosine", "constant")


class TrainingSettings(_Strict):
    """The training section, and what the training job (core.training.TrainJob) carries: one definition."""

    base_model: str = Field(
        TINY_MODEL,
        description="tiny-qwen2.5 (a small Qwen2 from a config, offline), a local model folder, a .gguf file, or a hub id.",
    )
    allow_download: bool = Field(False, description="Let base_model be a hub id, downloaded at run time.")
    preset: Literal[tuple(LORA_PRESETS)] = Field(
        "1.5b", description="LoRA rank/alpha of the reference pipeline."
    )
    backend: Literal["auto", "hf", "unsloth"] = Field(
        "auto",
        description="auto: unsloth where a CUDA GPU and unsloth are present, else hf (transformers + peft).",
    )
    r: int | None = Field(None, ge=1, description="LoRA rank; null = the preset's.")
    alpha: int | None = Field(None, ge=1, description="LoRA alpha; null = the preset's.")
    dropout: float = Field(0.0, ge=0, lt=1)
    use_rslora: bool = True
    target_modules: list[str] = Field(default_factory=lambda: list(LORA_PROJECTIONS), min_length=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler: str = "cosine"
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Stop after this many steps; -1 = the epochs.")
    max_minutes: float | None = Field(
        None,
        gt=0,
        description=(
            "Train for this long (wall clock, loading the model aside), the learning rate decayed by the share "
            "of that time spent instead of by steps, so the run ends annealed however fast the machine is; "
            "epochs / max_steps still bound it. lr_scheduler linear, cosine or constant. null: by steps."
        ),
    )
    batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    warmup_steps: int = Field(0, ge=0)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1)
    load_in_4bit: bool = Field(True, description="On CUDA: QLoRA (4-bit base).")
    gradient_checkpointing: bool = Field(True, description="Recompute activations: much less memory.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description=(
            "auto: bf16 weights and autocast (fp32 LoRA parameters) where the GPU or the CPU (AMX, "
            "avx512_bf16) computes bf16 natively, else fp32."
        ),
    )
    answer_logits_only: bool = Field(
        True,
        description=(
            "hf backend: compute the logits (the lm_head, a quarter of a 0.5B model's compute) only where the "
            "loss reads them, the answer: the same loss and gradients, ~15 % faster on a CPU."
        ),
    )
    gpu: GpuJobSettings = Field(default_factory=GpuJobSettings)

    @model_validator(mode="after")
    def _clock_schedule(self):
        if self.max_minutes is not None and self.lr_scheduler not in CLOCK_SCHEDULES:
            raise ValueError(
                f"training.lr_scheduler {self.lr_scheduler!r} cannot run on the clock (training.max_minutes): "
                f"use one of {', '.join(CLOCK_SCHEDULES)}, or leave max_minutes out to schedule by steps"
            )
        return self

    @property
    def lora_r(self) -> int:
        return self.r or LORA_PRESETS[self.preset]["r"]

    @property
    def lora_alpha(self) -> int:
        return self.alpha or LORA_PRESETS[self.preset]["alpha"]


BUILTIN_CANDIDATES = ("adapter", "base", "applier", "identity", "hybrid")


class EndpointSettings(_Strict):
    """An OpenAI-compatible chat endpoint (a served Fast Apply model, vLLM, Fireworks, OpenAI)."""

    base_url: str = Field(..., description="e.g. http://127.0.0.1:8000/v1 for vLLM.")
    model: str = Field(..., min_length=1, description="The model name the endpoint serves.")
    api_key_env: str | None = Field(
        None,
        description=(
            "Environment variable holding the key (read only from the environment), e.g. OPENAI_API_KEY; "
            "null: no key is sent (a local vLLM). Never defaulted: a key goes only where you name it."
        ),
    )
    temperature: float | None = Field(0.0, ge=0, le=2, description="null leaves it out of the request.")
    max_tokens: int | None = Field(
        None,
        ge=16,
        description="Output budget; null: sized to the file ((original + snippet characters) / 3 + 256).",
    )
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_seconds: float = Field(300, gt=0)
    max_retries: int = Field(3, ge=0, le=50, description="The SDK's retries of 408/409/429/5xx and timeouts.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {url!r})")
        return url

    @model_validator(mode="after")
    def _no_key_in_the_clear(self) -> EndpointSettings:
        from urllib.parse import urlparse

        host = urlparse(self.base_url).hostname or ""
        local = host in ("127.0.0.1", "localhost", "::1")
        if self.api_key_env and self.base_url.startswith("http://") and not local:
            raise ValueError(
                f"{self.api_key_env} would be sent in the clear to {self.base_url}: use https://, or a server "
                "on this machine"
            )
        return self


class JudgeSettings(EndpointSettings):
    """An LLM that grades non-exact outputs: shown original, snippet, reference and the OUTPUT."""

    max_tokens: int | None = Field(2048, ge=16, description="Budget of one reply (verdicts for a batch).")
    batch_size: int = Field(4, ge=1, le=32, description="Outputs graded per request (paired back by id).")


class EvalSettings(_Strict):
    candidates: list[str] = Field(
        default_factory=lambda: list(BUILTIN_CANDIDATES),
        min_length=1,
        description=(
            "adapter, base, applier, identity, hybrid (the applier, then the adapter where it refuses), and "
            "names from eval.endpoints."
        ),
    )
    endpoints: dict[str, EndpointSettings] = Field(
        default_factory=dict, description="OpenAI-compatible endpoints evaluated as candidates, by name."
    )
    judge: JudgeSettings | None = Field(None, description="Optional LLM judge of non-exact outputs.")
    max_examples: int | None = Field(
        50,
        ge=1,
        description="Rows evaluated of the test split and of each extra_data set (seeded sample); null = all.",
    )
    extra_data: list[str] = Field(
        default_factory=list,
        description=(
            "More evaluation sets beside the test split: folders of hand-written .case files "
            "(e.g. fastapply_pipeline_tests/data/realistic), datasets, .parquet or .jsonl files; relative to "
            "fastapply.yaml. Their rows are reported under their generator (hand_written)."
        ),
    )
    prompt_lookup: int | None = Field(
        40, ge=1, description="Prompt-lookup draft length for local models; null = plain greedy decoding."
    )
    speed_examples: int = Field(
        5,
        ge=0,
        description=(
            "Local models also decode this many examples without prompt lookup, to report the speedup and "
            "check the outputs are identical; 0 = skip."
        ),
    )

    @model_validator(mode="after")
    def _known_candidates(self) -> EvalSettings:
        clash = sorted(set(self.endpoints) & set(BUILTIN_CANDIDATES))
        if clash:
            raise ValueError(f"eval.endpoints {clash} reuse built-in candidate names; rename them")
        known = [*BUILTIN_CANDIDATES, *self.endpoints]
        for name in self.candidates:
            if name not in known:
                raise ValueError(
                    f"eval.candidates has {name!r}: not one of {', '.join(known)} "
                    "(an endpoint must be defined under eval.endpoints first)"
                )
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("eval.candidates lists a candidate twice")
        return self


class FastApplyConfig(_Strict):
    """The whole of fastapply.yaml."""

    sources: list[Source] = Field(..., min_length=1, description="Repositories to build the dataset from.")
    seed: int = Field(42, description="Seed for every sampling step; same inputs + seed = same rows.")
    storage: StorageSettings = Field(default_factory=StorageSettings)
    clone: CloneSettings = Field(default_factory=CloneSettings)
    files: FileFilterSettings = Field(default_factory=FileFilterSettings)
    secrets: SecretScanSettings = Field(default_factory=SecretScanSettings)
    snippets: SnippetSettings = Field(default_factory=SnippetSettings)
    triples: TripleSettings = Field(default_factory=TripleSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    pools: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {"gpu": 1, "anthropic": 1, "openai": 1},
        description="Dagster concurrency pool limits applied to the instance by `fastapply run`.",
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _unique_keys(self) -> FastApplyConfig:
        seen: dict[str, str] = {}
        for source in self.sources:
            if source.key in seen:
                raise ValueError(
                    f"sources {seen[source.key]!r} and {source.location!r} both get the partition key "
                    f"{source.key!r}; give one of them a distinct `name:`"
                )
            seen[source.key] = source.location
        return self

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolve(self, path: str) -> Path:
        """Resolve a path from the file against the folder that holds fastapply.yaml."""
        expanded = Path(os.path.expanduser(path))
        return expanded if expanded.is_absolute() else (self._base_dir / expanded).resolve()

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.storage.cache_dir)

    @property
    def artifacts_dir(self) -> Path:
        return self.resolve(self.storage.artifacts_dir)

    def source(self, key: str) -> Source:
        """The source with this partition key, or a ConfigError that says how to fix the mismatch."""
        for source in self.sources:
            if source.key == key:
                return source
        raise ConfigError(
            f"partition {key!r} has no source in fastapply.yaml (known: {[s.key for s in self.sources]}). "
            f"Add it back under `sources:`, or remove the partition with `fastapply sources remove {key}`."
        )

    def source_location(self, source: Source) -> str:
        """What git is given: the URL, or the absolute path of a local repository."""
        return source.url if source.url is not None else str(self.resolve(source.path or "."))

    def file_rules(self, source: Source) -> FileRules:
        """The file filters for one source: the global settings plus its own include/exclude globs."""
        return FileRules.build(
            self.files.languages,
            self.files.max_file_bytes,
            include=source.include,
            exclude=[*self.files.exclude, *source.exclude],
            vendored_dirs=self.files.vendored_dirs,
        )

    def allows_license(self, spdx: str) -> bool:
        """Whether a repository under this SPDX license (expression) may be used."""
        from fastapply_pipeline.core.licenses import is_allowed  # the license classifier: only when asked

        return is_allowed(spdx, self.files.allowed_licenses)

    def secret_scanner(self) -> SecretScanner | None:
        """The configured detect-secrets scanner, or None when scanning is off."""
        from fastapply_pipeline.core.secrets import SecretScanner

        return SecretScanner(self.secrets.plugins) if self.secrets.enabled else None

    def settings_hash(self, *sections: str) -> str:
        """A stable hash of some sections of the config (for content-addressed caches)."""
        payload = {name: getattr(self, name).model_dump(mode="json") for name in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
