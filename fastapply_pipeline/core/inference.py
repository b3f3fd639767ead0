"""Merging with a model: THE inference prompt, greedy decoding, optional prompt-lookup drafts.

A fast apply model mostly copies the original file, so the original is an excellent draft: with
`prompt_lookup` (transformers' `prompt_lookup_num_tokens`) the model verifies runs of tokens copied
from its prompt in one forward pass instead of generating them one by one. Under greedy decoding the
output is identical either way; only the speed differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapply_pipeline.core.prompt import inference_messages, parse_answer


@dataclass(frozen=True)
class ModelMerge:
    answer: str  # the model's whole answer
    merged: str | None  # the file between <updated-code> tags; None when they are missing or unclosed
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def merge_with_model(
    model,
    tokenizer,
    original: str,
    snippet: str,
    *,
    prompt_lookup: int | None,
    max_new_tokens: int | None = None,
) -> ModelMerge:
    """Greedy merge of (original, snippet); `prompt_lookup` tokens per draft (None: plain decoding; the
    configured length is EvalSettings.prompt_lookup)."""
    import torch

    prompt = tokenizer.apply_chat_template(
        inference_messages(original, snippet), tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    if max_new_tokens is None:  # the whole file plus room for the snippet's additions and the tags
        budget = len(tokenizer(original + snippet, add_special_tokens=False)["input_ids"])
        max_new_tokens = budget + 64
    options = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")  # the chat turn's end (Qwen's template)
    if isinstance(end, int) and end >= 0 and end != tokenizer.unk_token_id:
        options["eos_token_id"] = sorted(
            {end, *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])}
        )
    if prompt_lookup:
        options["prompt_lookup_num_tokens"] = prompt_lookup
    started = time.perf_counter()
    with torch.no_grad():
        output = model.generate(**inputs, **options)
    seconds = time.perf_counter() - started
    new = output[0, inputs["input_ids"].shape[1] :]
    answer = tokenizer.decode(new, skip_special_tokens=True)
    return ModelMerge(answer, parse_answer(answer), int(new.shape[0]), seconds)


@dataclass(frozen=True)
class SpeedSample:
    new_tokens: int
    plain_seconds: float
    lookup_seconds: float
    identical: bool  # the same answer with and without drafts (greedy decoding: it must be)


@dataclass(frozen=True)
class SpeedReport:
    examples: int
    tokens: int
    plain_tokens_per_second: float
    lookup_tokens_per_second: float
    speedup: float  # plain decoding time over prompt-lookup time, over all examples
    identical: int  # examples whose answers match


def measure_speedup(model, tokenizer, pairs, *, prompt_lookup: int) -> SpeedReport:
    """Each (original, snippet) decoded twice, plain greedy and with `prompt_lookup`-token drafts.

    One short warm-up call first (the first generate pays one-off costs); then the two runs alternate
    which goes first, so that neither always meets a warm cache.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("measure_speedup needs at least one (original, snippet) pair")
    merge_with_model(model, tokenizer, *pairs[0], prompt_lookup=None, max_new_tokens=4)
    samples = []
    for i, (original, snippet) in enumerate(pairs):
        order = (None, prompt_lookup) if i % 2 == 0 else (prompt_lookup, None)
        runs = {k: merge_with_model(model, tokenizer, original, snippet, prompt_lookup=k) for k in order}
        plain, drafted = runs[None], runs[prompt_lookup]
        samples.append(
            SpeedSample(plain.new_tokens, plain.seconds, drafted.seconds, plain.answer == drafted.answer)
        )
    tokens = sum(s.new_tokens for s in samples)
    plain_seconds = sum(s.plain_seconds for s in samples)
    lookup_seconds = sum(s.lookup_seconds for s in samples)
    return SpeedReport(
        examples=len(samples),
        tokens=tokens,
        plain_tokens_per_second=tokens / plain_seconds,
        lookup_tokens_per_second=tokens / lookup_seconds,
        speedup=plain_seconds / lookup_seconds,
        identical=sum(s.identical for s in samples),
    )


def load_model(
    name_or_path: str, *, adapter: str | None = None, allow_download: bool = False, precision: str = "auto"
):
    """(model, tokenizer) in eval mode: a local folder (or a hub id when allowed), with a LoRA adapter on
    top when `adapter` is given. The tokenizer comes from the adapter's folder when it has one (training
    saves it there), else from the model's; a tokenizer without a chat template gets trl's Qwen2.5 one.
    `precision` (auto, bf16, fp32): see core.hardware.use_bf16."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fastapply_pipeline.core.chat import trl_chat_template

    local = Path(name_or_path).expanduser()
    if not local.is_dir() and not allow_download:
        raise FileNotFoundError(
            f"model {name_or_path!r} is not a local folder, and downloading is off "
            "(pass a folder with config.json and weights, or allow downloads to fetch it from the hub)"
        )
    source = str(local) if local.is_dir() else name_or_path
    offline = {"local_files_only": True} if local.is_dir() else {}
    tokenizer_source = source
    if adapter is not None:
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter {adapter!r} has no adapter_config.json (a peft LoRA folder)")
        if (adapter_dir / "tokenizer_config.json").is_file():
            tokenizer_source = str(adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **offline)
    if not tokenizer.chat_template:
        tokenizer.chat_template = trl_chat_template("qwen2_5")
    import torch

    from fastapply_pipeline.core.hardware import use_bf16

    # On a GPU: bf16, placed by accelerate; on a CPU: bf16 where it computes bf16 natively (AMX,
    # avx512_bf16: ~3x fp32), else fp32 (emulated bf16 is slower than fp32).
    if torch.cuda.is_available():
        placement = {"dtype": torch.bfloat16, "device_map": "auto"}
    else:
        placement = {"dtype": torch.bfloat16 if use_bf16(precision, cuda=False) else torch.float32}
    model = AutoModelForCausalLM.from_pretrained(source, **offline, **placement)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(Path(adapter).expanduser()))
    return model.eval(), tokenizer
