"""Adapters where users serve them: the LoRA folder as peft and vLLM load it, or merged into its base.

vLLM's LoRA loader reads `adapter_config.json` (peft's: `r`, `lora_alpha`, `target_modules`,
`base_model_name_or_path`) and `adapter_model.safetensors`; `check_adapter` says what a folder lacks.
`merge_adapter` folds the LoRA weights into the base (peft `merge_and_unload`) and saves a plain model
folder that transformers (and any server) loads without peft.
"""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
VLLM_CONFIG_KEYS = ("r", "lora_alpha", "target_modules", "base_model_name_or_path")


def check_adapter(folder: str | Path) -> list[str]:
    """What keeps peft or vLLM from loading this adapter folder (empty: nothing)."""
    folder = Path(folder)
    problems = []
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        return [f"{folder} has no {ADAPTER_CONFIG} (not a peft LoRA folder)"]
    config = json.loads(config_path.read_text())
    missing = [key for key in VLLM_CONFIG_KEYS if key not in config]
    if missing:
        problems.append(f"{ADAPTER_CONFIG} lacks {', '.join(missing)}")
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"{ADAPTER_CONFIG} is a {config.get('peft_type')} adapter; vLLM serves LoRA only")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        problems.append(f"{folder} has no {ADAPTER_WEIGHTS} (vLLM reads safetensors)")
    return problems


def base_of(folder: str | Path) -> str:
    """The base model an adapter was trained on, as its config records it."""
    return json.loads((Path(folder) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def merge_adapter(adapter: str | Path, output: str | Path, *, base: str | None = None) -> Path:
    """Write base + adapter as one model folder (weights and tokenizer) to `output`; returns it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter, output = Path(adapter), Path(output)
    problems = check_adapter(adapter)
    if problems:
        raise ValueError("; ".join(problems))
    base = base or base_of(adapter)
    if not Path(base).expanduser().is_dir():
        raise FileNotFoundError(
            f"the adapter's base model {base!r} is not a local folder; pass the base model's folder"
        )
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output)
    tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else Path(base)
    AutoTokenizer.from_pretrained(str(tokenizer_source), local_files_only=True).save_pretrained(output)
    return output
