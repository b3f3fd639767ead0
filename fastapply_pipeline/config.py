"""fastapply.yaml: the one user-facing settings file, read and validated into core.settings' models.

The file lives at the project root (or wherever FASTAPPLY_CONFIG points). Relative paths in it are
resolved against the folder that holds the file, so the same file works from any working directory.
The models themselves (every setting with its one default) live in `fastapply_pipeline.core.settings`,
where core can type what it receives; they are re-exported here for the Dagster modules and the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from fastapply_pipeline.core.settings import (  # the models, re-exported
    BUILTIN_CANDIDATES,
    DEFAULT_ALLOWED_LICENSES,
    DEFAULT_BUCKETS,
    DEFAULT_EDIT_KINDS,
    DEFAULT_PRICES,
    DEFAULT_SECRET_PLUGINS,
    DEFAULT_STYLE_WEIGHTS,
    LLM_PROVIDERS,
    SNIPPET_STYLES,
    AnthropicSettings,
    AutomationSettings,
    Bucket,
    CloneSettings,
    ConfigError,
    DatasetSettings,
    DedupSettings,
    EditKind,
    EndpointSettings,
    EvalSettings,
    FastApplyConfig,
    FileFilterSettings,
    GeneratorName,
    GitHistorySettings,
    GpuJobSettings,
    JudgeSettings,
    Language,
    LLMSettings,
    OpenAISettings,
    Price,
    ProviderSettings,
    PushSettings,
    S3Settings,
    SecretScanSettings,
    SnippetSettings,
    SnippetStyle,
    Source,
    SplitSettings,
    StorageSettings,
    StructuralSettings,
    TokenizerName,
    TrainingSettings,
    TripleSettings,
)

__all__ = [
    "BUILTIN_CANDIDATES",
    "CONFIG_ENV_VAR",
    "DEFAULT_ALLOWED_LICENSES",
    "DEFAULT_BUCKETS",
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_EDIT_KINDS",
    "DEFAULT_PRICES",
    "DEFAULT_SECRET_PLUGINS",
    "DEFAULT_STYLE_WEIGHTS",
    "DEPLOYMENT_ENV_VAR",
    "LLM_PROVIDERS",
    "SNIPPET_STYLES",
    "AnthropicSettings",
    "AutomationSettings",
    "Bucket",
    "CloneSettings",
    "ConfigError",
    "DatasetSettings",
    "DedupSettings",
    "EditKind",
    "EndpointSettings",
    "EvalSettings",
    "FastApplyConfig",
    "FileFilterSettings",
    "GeneratorName",
    "GitHistorySettings",
    "GpuJobSettings",
    "JudgeSettings",
    "LLMSettings",
    "Language",
    "OpenAISettings",
    "Price",
    "ProviderSettings",
    "PushSettings",
    "S3Settings",
    "SecretScanSettings",
    "SnippetSettings",
    "SnippetStyle",
    "Source",
    "SplitSettings",
    "StorageSettings",
    "StructuralSettings",
    "TokenizerName",
    "TrainingSettings",
    "TripleSettings",
    "config_path",
    "deployment",
    "environment_key",
    "load_config",
    "parse_config",
]

CONFIG_ENV_VAR = "FASTAPPLY_CONFIG"
DEFAULT_CONFIG_NAME = "fastapply.yaml"

DEPLOYMENT_ENV_VAR = "FASTAPPLY_ENV"  # local (default) | prod


def deployment() -> str:
    """`local` (artifacts in a folder) or `prod` (artifacts in S3), from $FASTAPPLY_ENV."""
    value = os.environ.get(DEPLOYMENT_ENV_VAR, "local").strip().lower() or "local"
    if value not in ("local", "prod"):
        raise ConfigError(f"{DEPLOYMENT_ENV_VAR}={value!r}: use local (the default) or prod")
    return value


def environment_key(name: str) -> str | None:
    """An API key or token from the environment variable `name` (None where unset or blank): the one
    place keys are read. Core takes keys from its caller (core.endpoints.KeySource); fastapply.yaml only
    ever names the variables."""
    value = os.environ.get(name, "").strip()
    return value or None


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: the argument, else $FASTAPPLY_CONFIG, else ./fastapply.yaml."""
    chosen = path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_NAME
    return Path(chosen).expanduser().resolve()


def load_config(path: str | os.PathLike[str] | None = None) -> FastApplyConfig:
    """Read and validate fastapply.yaml; raise ConfigError naming the file, the field and the fix."""
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file}: no such settings file. Run from the project root (which ships fastapply.yaml), "
            f"or point {CONFIG_ENV_VAR} at your file."
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML: {' '.join(str(err).split())}") from None
    return parse_config(raw, base_dir=file.parent, origin=str(file))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML lets the last one win)."""

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)  # `<<` merges first: a merged key may be overridden on purpose
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"{key!r} is set twice (first on line {seen[key] + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_config(raw: object, *, base_dir: Path, origin: str = DEFAULT_CONFIG_NAME) -> FastApplyConfig:
    """Validate an already-parsed mapping (e.g. from a test) as fastapply.yaml."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of settings at the top level, got {type(raw).__name__}"
        )
    try:
        config = FastApplyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_explain(err, origin)) from None
    config._base_dir = Path(base_dir).resolve()
    for name in ("artifacts_dir", "cache_dir"):
        folder = config.resolve(getattr(config.storage, name)).resolve()
        if folder == config._base_dir or folder in config._base_dir.parents:
            raise ConfigError(
                f"{origin}: storage.{name} ({getattr(config.storage, name)!r}) is the project folder "
                f"{config._base_dir} or a folder above it; the pipeline replaces folders in it and must "
                f"not touch your files: use a folder of its own, e.g. .fastapply/{name.removesuffix('_dir')}"
            )
    return config


def _explain(err: ValidationError, origin: str) -> str:
    lines = [f"{origin} is invalid ({err.error_count()} problem(s)):"]
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        kind = problem["type"]
        message = problem["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            message = f"unknown setting {problem['loc'][-1]!r}; check its spelling and where it is indented"
        elif kind == "missing":
            message = "this setting is required"
        elif kind == "literal_error":
            message = f"{message} (got {problem.get('input')!r})"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)
