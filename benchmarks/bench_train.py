"""Benchmark: a short real LoRA run of Qwen2.5-Coder-0.5B-Instruct on the CPU.

    ../shared/tools/provision-qwen-coder-0.5b        # once: the real model, offline (478 MB)
    python benchmarks/bench_train.py [--model PATH] [--dataset PATH] [--steps 6] [--batch 4] [--max-tokens 1024]
    python benchmarks/bench_train.py --compare [--steps 2 --batch 2 --max-tokens 512]

Trains with the project's entrypoint (the `hf` backend: transformers + peft, fp32 on CPU) on rows of
fastapply_dataset's train split (default: the one `fastapply run` wrote) whose whole example has at most
`--max-tokens` tokens. Prints tokens/s, the loss before and after, peak memory, and the padding fraction
of the length-grouped batches against the padding that random batches of the same size give on the same
rows (computed in the same run): the ratio shows what grouping by length saves.

--compare runs the same job several times, each in its own process (so peak memory is its own): fp32 and
bf16 (bf16 weights, fp32 LoRA parameters, autocast), each with and without gradient checkpointing, and
fp32 without checkpointing with logits over the whole example instead of the answer only
(`answer_logits_only`, the default), and prints tokens/s and peak memory with the ratio to that last one
(the previous default). Whether this CPU computes bf16 natively (AMX / avx512_bf16) is printed first:
without it bf16 is emulated and slower (`--precisions fp32` skips it).
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_eval import DEFAULT_MODEL  # noqa: E402  (the provisioned model: one definition)

from fastapply_pipeline.core.settings import TrainingSettings  # noqa: E402
from fastapply_pipeline.core.training import TrainJob  # noqa: E402
from fastapply_pipeline.training.train import Reporter, train  # noqa: E402


def random_padding(lengths: list[int], batch: int, seed: int = 0, rounds: int = 200) -> float:
    """The padding fraction of random batches of `batch` rows (average over shuffles)."""
    rng = random.Random(seed)
    padded = real = 0
    for _ in range(rounds):
        order = lengths[:]
        rng.shuffle(order)
        for i in range(0, len(order), batch):
            group = order[i : i + batch]
            padded += max(group) * len(group) - sum(group)
            real += sum(group)
    return padded / (padded + real)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--dataset", default=str(ROOT / ".fastapply/artifacts/dataset/hf"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--checkpointing", choices=["on", "off"], default="on")
    parser.add_argument(
        "--answer-logits", choices=["on", "off"], default="on", help="logits on the answer only (default on)"
    )
    parser.add_argument("--precisions", default="fp32,bf16", help="--compare: the precisions to run")
    parser.add_argument(
        "--compare", action="store_true", help="fp32/bf16 x checkpointing on/off, one run each"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    if not Path(args.model, "config.json").is_file():
        raise SystemExit(f"{args.model}: no model; run ../shared/tools/provision-qwen-coder-0.5b first")
    from datasets import DatasetDict, load_from_disk

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    source = load_from_disk(args.dataset)
    train_rows = source["train"].filter(lambda r: r["example_tokens"] <= args.max_tokens)
    if train_rows.num_rows == 0:
        raise SystemExit(f"{args.dataset}: no train row has <= {args.max_tokens} tokens; raise --max-tokens")
    DatasetDict({"train": train_rows}).save_to_disk(str(work / "data"))
    rows_needed = args.steps * args.batch
    print(
        f"{train_rows.num_rows} rows of <= {args.max_tokens} tokens; {args.steps} steps of {args.batch} ({rows_needed} rows)"
    )

    job = TrainJob(
        dataset_path=str(work / "data"),
        output_dir=str(work / "out"),
        max_seq_length=8192,
        training=TrainingSettings(
            base_model=args.model,
            backend="hf",
            r=32,
            alpha=16,
            max_steps=args.steps,
            batch_size=args.batch,
            gradient_accumulation_steps=1,
            learning_rate=1e-4,
            logging_steps=1,
            save_steps=10_000,
            precision=args.precision,
            gradient_checkpointing=args.checkpointing == "on",
            answer_logits_only=args.answer_logits == "on",
        ),
    )
    metrics = train(job, Reporter())
    if args.json:
        print(
            "RESULT "
            + json.dumps({k: metrics[k] for k in ("tokens_per_second", "peak_memory_bytes", "final_loss")})
        )
        return
    lengths = [int(n) for n in train_rows["example_tokens"]]
    baseline = random_padding(lengths, args.batch)
    print(
        f"\nmodel {Path(args.model).name} ({metrics['device']}, {metrics['backend']}): {metrics['steps']} steps in "
        f"{metrics['train_seconds']:.1f} s, {metrics['tokens_per_second']:.0f} tokens/s"
    )
    print(
        f"loss {metrics['first_loss']:.4f} -> {metrics['final_loss']:.4f}; peak memory {metrics['peak_memory_bytes'] / 2**30:.1f} GiB"
    )
    print(
        f"padding fraction: length-grouped {metrics['padding_fraction']:.3f} vs random batches {baseline:.3f} "
        f"(ratio {metrics['padding_fraction'] / baseline if baseline else 0:.2f}; lower is better)"
    )


def compare(args) -> None:
    from fastapply_pipeline.core.hardware import cpu_has_bf16

    print(f"CPU computes bf16 natively (AMX / avx512_bf16): {cpu_has_bf16()}")
    base = [sys.executable, __file__, "--json", "--model", args.model, "--dataset", args.dataset]
    base += ["--steps", str(args.steps), "--batch", str(args.batch), "--max-tokens", str(args.max_tokens)]
    configs = [("fp32", "off", "off")]  # the reference: the previous default
    configs += [(p, c, "on") for p in args.precisions.split(",") for c in ("off", "on")]
    results = {}
    for precision, checkpointing, answer_logits in configs:
        run = subprocess.run(
            [
                *base,
                "--precision",
                precision,
                "--checkpointing",
                checkpointing,
                "--answer-logits",
                answer_logits,
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode:
            raise SystemExit(f"{precision}, checkpointing {checkpointing}: failed\n{run.stderr[-2000:]}")
        line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
        results[precision, checkpointing, answer_logits] = json.loads(line[len("RESULT ") :])
    reference = results["fp32", "off", "off"]["tokens_per_second"]
    print(
        "| precision | checkpointing | logits | tokens/s | vs fp32, no checkpointing, all logits "
        "| peak memory GiB | final loss |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for (precision, checkpointing, answer_logits), r in results.items():
        logits = "answer only" if answer_logits == "on" else "all"
        print(
            f"| {precision} | {checkpointing} | {logits} | {r['tokens_per_second']:.1f} | "
            f"{r['tokens_per_second'] / reference:.2f}x | {r['peak_memory_bytes'] / 2**30:.2f} | {r['final_loss']:.4f} |"
        )


if __name__ == "__main__":
    main()
