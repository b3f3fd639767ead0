"""Training's pure parts: the job description, presets, examples with the loss on the answer only, batching.

A `TrainJob` is everything the entrypoint (`python -m fastapply_pipeline.training.train`) needs, as JSON:
the Dagster asset writes one and launches the entrypoint through Dagster Pipes; a user can write one
by hand and run the entrypoint alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fastapply_pipeline.core.chat import render_example
from fastapply_pipeline.core.settings import (
    DatasetSettings,
    FastApplyConfig,
    TrainingSettings,
)

IGNORE_INDEX = -100


class TrainJob(BaseModel):
    """One training run: the training section of fastapply.yaml as it is, plus where the data and the
    output are. Each setting is defined once, in core.settings; `for_config` is the one place that
    joins fastapply.yaml to a job."""

    model_config = ConfigDict(extra="forbid")

    dataset_path: str  # a DatasetDict folder (save_to_disk)
    output_dir: str
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    max_seq_length: int = DatasetSettings.model_fields["max_seq_length"].default  # dataset.max_seq_length
    seed: int = FastApplyConfig.model_fields["seed"].default
    # Production: the artifact store (bucket, prefix, endpoint_url, region). The job fetches the dataset
    # folder from it into `artifacts_root` first and publishes `output_dir` to it at the end, so it runs
    # the same on the Dagster machine, a Kubernetes pod or an ECS task.
    s3: dict | None = None
    artifacts_root: str | None = None

    @classmethod
    def for_config(
        cls,
        config: FastApplyConfig,
        *,
        dataset_path: str,
        output_dir: str,
        artifacts_root: str,
        s3: dict | None = None,
    ) -> TrainJob:
        """The job of fastapply.yaml's settings; paths (under `artifacts_root`) from the artifact store."""
        return cls(
            dataset_path=dataset_path,
            output_dir=output_dir,
            training=config.training,
            max_seq_length=config.dataset.max_seq_length,
            seed=config.seed,
            s3=s3,
            artifacts_root=artifacts_root if s3 else None,
        )

    def store(self):
        """The S3Store of a production job (None locally)."""
        if not self.s3:
            return None
        from fastapply_pipeline.core.artifacts import S3Store

        if not self.artifacts_root:
            raise ValueError("a job with s3 settings needs artifacts_root")
        return S3Store(root=Path(self.artifacts_root), **self.s3)

    def artifact_name(self, path: str) -> str:
        return Path(path).resolve().relative_to(Path(self.artifacts_root).resolve()).as_posix()

    def to_json(self, path: Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def from_json(cls, path: Path) -> TrainJob:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), what=str(path))

    @classmethod
    def from_dict(cls, data: dict, what: str = "the job") -> TrainJob:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False)
            )
            raise ValueError(f"{what}: invalid training job ({problems})") from None


def choose_backend(requested: str, *, cuda: bool, unsloth_installed: bool) -> str:
    """`auto` takes unsloth where a GPU and unsloth are both present, else transformers + peft."""
    if requested == "unsloth" and not (cuda and unsloth_installed):
        missing = "a CUDA GPU" if not cuda else "the unsloth package (the training image has it)"
        raise RuntimeError(f"backend 'unsloth' needs {missing}; use backend 'hf' or 'auto'")
    if requested == "auto":
        return "unsloth" if cuda and unsloth_installed else "hf"
    return requested


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def length(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, original: str, snippet: str, final: str, max_seq_length: int) -> Encoded:
    """One training example: the inference prompt through the chat template, the loss on the answer only.

    Never truncated: an example longer than max_seq_length is an error (fastapply_dataset drops those)."""
    rendered = render_example(tokenizer, original, snippet, final)
    prompt_ids = tokenizer(rendered.prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(rendered.text, add_special_tokens=False)["input_ids"]
    if ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            "the prompt's tokens are not a prefix of the example's: cannot mask the loss exactly"
        )
    if len(ids) > max_seq_length:
        raise ValueError(
            f"an example of {len(ids)} tokens exceeds max_seq_length {max_seq_length}; rebuild fastapply_dataset "
            "with the same max_seq_length (it drops such rows) instead of truncating them"
        )
    return Encoded(ids, [IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids) :])


def examples_digest(examples: Iterable[Encoded]) -> str:
    """What a run trains on, in order: each example's tokens and which of them are scored.

    Checkpoints are filed under it: the same rows at another path (a moved artifacts folder, a GPU job's
    copy) resume them, and a changed row, order, tokenizer or chat template starts afresh (the dataset's
    own fingerprint sees the rows only)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(array("q", [example.length]).tobytes())
        digest.update(array("q", example.input_ids).tobytes())
        digest.update(array("q", example.labels).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class ClockSchedule:
    """The learning-rate factor of a run with a time budget (training.max_minutes).

    Warm-up over the first `warmup_steps` steps (as transformers' schedules do), then a decay by the share
    of the budget spent: linear to 0, cosine to 0, or none. `spent_before` is the time of the runs this one
    resumes. `factor(step)` is what the scheduler multiplies the peak rate by, and it notes whether the budget
    is spent, so the run stops at the first step after which the budget is gone: with linear or cosine, the
    step whose next rate is 0, so the run ends annealed at any speed.
    """

    budget_seconds: float
    shape: str  # one of settings.CLOCK_SCHEDULES
    warmup_steps: int = 0
    spent_before: float = 0.0
    clock: Callable[[], float] = time.monotonic
    spent_out: bool = False
    _started: float | None = field(default=None, repr=False)

    def start(self) -> None:
        self._started = self.clock()

    @property
    def spent(self) -> float:
        return self.spent_before + (self.clock() - self._started if self._started is not None else 0.0)

    def factor(self, step: int) -> float:
        share = min(1.0, self.spent / self.budget_seconds)
        self.spent_out = share >= 1.0
        warm = step / self.warmup_steps if step < self.warmup_steps else 1.0
        if self.shape == "linear":
            decay = 1.0 - share
        elif self.shape == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * share))
        elif self.shape == "constant":
            decay = 1.0
        else:
            raise ValueError(f"no clock schedule {self.shape!r}")
        return warm * decay


def scored_positions(labels):
    """The positions whose logits the loss reads: p where the label of p + 1 is scored, in any row.

    A (batch, seq) label tensor gives a 1-D index tensor for the model's `logits_to_keep`; the prompt,
    which carries no loss, then costs no lm_head work."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)


def answer_loss(outputs, labels, num_items_in_batch=None):
    """The causal LM loss from logits kept only at `scored_positions(labels)` (Trainer's compute_loss_func).

    Equal to the model's own loss on full logits: the same tokens, the same sum over the scored labels,
    divided by the scored labels of the whole accumulated batch where the Trainer counts them."""
    import torch.nn.functional as F

    targets = labels[:, 1:][:, scored_positions(labels)].to(outputs.logits.device)
    logits = outputs.logits.float()
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return total / count


class PaddingCollator:
    """Pads a batch to its longest example; counts real and padded tokens (padding fraction).

    With `answer_logits_only`, each batch also carries `logits_to_keep` (scored_positions), so that the
    model computes logits only where `answer_loss` reads them."""

    def __init__(self, pad_token_id: int, *, answer_logits_only: bool = False):
        self.pad_token_id = pad_token_id
        self.answer_logits_only = answer_logits_only
        self.real_tokens = 0
        self.padded_tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            gap = longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * gap)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * gap)
            mask.append([1] * len(f["input_ids"]) + [0] * gap)
            self.real_tokens += len(f["input_ids"])
            self.padded_tokens += gap
        batch = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }
        if self.answer_logits_only:
            batch["logits_to_keep"] = scored_positions(batch["labels"])
        return batch

    @property
    def padding_fraction(self) -> float:
        total = self.real_tokens + self.padded_tokens
        return self.padded_tokens / total if total else 0.0


def tiny_qwen2_config(vocab_size: int):
    """A Qwen2 small enough to train on a CPU in seconds (for tests and demos), with the real vocabulary."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
    )


def loss_sparkline(losses: list[float], width: int = 40) -> str:
    """A one-line text plot of a loss curve (for logs and metadata)."""
    if not losses:
        return ""
    bars = "▁▂▃▄▅▆▇█"
    step = max(1, len(losses) // width)
    points = [sum(losses[i : i + step]) / len(losses[i : i + step]) for i in range(0, len(losses), step)]
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    return "".join(bars[min(len(bars) - 1, int((p - low) / span * (len(bars) - 1)))] for p in points)
