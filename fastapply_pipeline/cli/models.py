"""`fastapply apply`, `export` and `eval`: running models (a local one, with an adapter, or an endpoint).

torch, transformers and peft are imported inside the commands that load a model, never on import: the
pipeline commands (`fastapply run`) start without them.
"""

import functools
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import click

from fastapply_pipeline.cli.group import main
from fastapply_pipeline.config import environment_key
from fastapply_pipeline.core.files import EXTENSION_LANGUAGES
from fastapply_pipeline.core.settings import EndpointSettings, EvalSettings, FastApplyConfig, JudgeSettings

EXIT_REFUSED = 3
E = TypeVar("E", bound=EndpointSettings)


def _read_text(path: str) -> str:
    try:
        return (
            click.get_text_stream("stdin").read() if path == "-" else Path(path).read_text(encoding="utf-8")
        )
    except UnicodeDecodeError:
        raise click.UsageError(f"{path} is not UTF-8 text") from None


def _endpoint(kind: type[E], base_url: str, model: str, api_key_env: str | None) -> E:
    """An endpoint's (or the judge's: `kind` JudgeSettings) settings from the options; bad ones: exit 2."""
    from pydantic import ValidationError

    try:
        return kind(base_url=base_url, model=model, api_key_env=api_key_env)
    except ValidationError as err:
        raise click.UsageError(err.errors()[0]["msg"]) from None


model_options = [
    click.option(
        "--model",
        "model_name",
        default=None,
        help="A local model folder (or, with --base-url, the model an OpenAI-compatible server serves).",
    ),
    click.option(
        "--adapter", type=click.Path(exists=True, file_okay=False), help="A LoRA adapter folder on --model."
    ),
    click.option(
        "--base-url", default=None, help="An OpenAI-compatible endpoint serving --model (vLLM, Fireworks)."
    ),
    click.option(
        "--api-key-env",
        default=None,
        help="Environment variable holding the endpoint's key (default: none sent).",
    ),
    click.option(
        "--prompt-lookup",
        type=click.IntRange(min=0),
        default=EvalSettings.model_fields["prompt_lookup"].default,
        show_default=True,
        help="Prompt-lookup draft tokens for local models; 0 = plain greedy decoding.",
    ),
    click.option("--allow-download", is_flag=True, help="Let --model be a hub id, downloaded now."),
]


@dataclass(frozen=True)
class ModelChoice:
    """The model options shared by `apply` and `eval`: a local model (with an adapter) or an endpoint."""

    name: str | None
    adapter: str | None
    base_url: str | None
    api_key_env: str | None
    prompt_lookup: int | None  # None: plain greedy decoding
    allow_download: bool

    def validate(self) -> None:
        if self.name is None and (self.adapter or self.base_url):
            raise click.UsageError("--adapter and --base-url need --model")
        if self.adapter and self.base_url:
            raise click.UsageError("--adapter applies to a local model, not to --base-url")

    def endpoint(self) -> EndpointSettings:
        return _endpoint(EndpointSettings, self.base_url, self.name, self.api_key_env)

    def endpoint_runner(self):
        from fastapply_pipeline.core.evaluate import endpoint_candidate

        return endpoint_candidate(self.endpoint(), "--base-url", keys=environment_key)

    def load(self, adapter: str | None):
        """(model, tokenizer) of the local model, with `adapter` on top (or none)."""
        from fastapply_pipeline.core.inference import load_model

        try:
            return load_model(self.name, adapter=adapter, allow_download=self.allow_download)
        except (FileNotFoundError, OSError, ValueError) as err:
            raise click.ClickException(f"cannot load {self.name}: {err}") from None


def _with_model_options(command):
    """Add the model options to a command, handed to it as one `model: ModelChoice` argument."""

    @functools.wraps(command)
    def wrapper(*args, model_name, adapter, base_url, api_key_env, prompt_lookup, allow_download, **kwargs):
        choice = ModelChoice(
            model_name, adapter, base_url, api_key_env, prompt_lookup or None, allow_download
        )
        choice.validate()
        return command(*args, model=choice, **kwargs)

    for option in reversed(model_options):
        wrapper = option(wrapper)
    return wrapper


@main.command()
@click.argument("original", type=click.Path(exists=True, dir_okay=False))
@click.argument("snippet", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the merged file here."
)
@click.option(
    "--language",
    type=click.Choice(sorted(set(EXTENSION_LANGUAGES.values()))),
    default=None,
    help="The file's language when its extension does not say (python, tsx, markdown, ...).",
)
@click.option(
    "--hybrid",
    is_flag=True,
    help="With --model: the deterministic applier first, the model only where the applier refuses.",
)
@_with_model_options
def apply(
    original: str, snippet: str, output: str | None, language: str | None, hybrid: bool, model: ModelChoice
) -> None:
    """Merge a lazy SNIPPET into ORIGINAL: with the deterministic applier, or with --model.

    Prints the merged file (or writes it to -o). Exit 0: merged; exit 3: refused, with the reason (the
    applier: ambiguous_anchor, ambiguous_scope, no_anchor, out_of_order, drops_unmentioned_unit,
    drops_most_of_file, breaks_syntax, empty_snippet, and what to change; a model: its answer had no
    <updated-code> tags); exit 2: a usage or file error. The language (for the syntax check and
    Markdown sections) comes from ORIGINAL's extension, or --language. With --hybrid the applier merges
    what it can and the model the rest; the summary (stderr) says which one merged.
    """
    from fastapply_pipeline.core.apply import apply_snippet
    from fastapply_pipeline.core.files import language_of

    if hybrid and model.name is None:
        raise click.UsageError("--hybrid needs --model (the model merges where the applier refuses)")
    original_text, snippet_text = _read_text(original), _read_text(snippet)
    if model.name is None or hybrid:
        result = apply_snippet(original_text, snippet_text, language=language or language_of(original))
    if model.name is None:
        if not result.ok:
            click.echo(f"refused: {result.reason}: {result.detail}", err=True)
            sys.exit(EXIT_REFUSED)
        merged, summary = result.merged, f"{len(result.spans)} region(s), read as {result.mode}"
    elif hybrid and result.ok:
        merged, summary = (
            result.merged,
            f"merged by the applier ({len(result.spans)} region(s), read as {result.mode})",
        )
    else:
        merged, summary = _model_merge(original_text, snippet_text, model)
        if hybrid:
            summary = f"merged by the model (the applier refused: {result.reason}); {summary}"
    if output:
        if not Path(output).parent.is_dir():
            raise click.ClickException(
                f"-o {output}: the folder {Path(output).parent} does not exist; create it first"
            )
        Path(output).write_text(merged, encoding="utf-8", newline="")
        click.echo(f"merged into {output} ({summary})", err=True)
    else:
        click.echo(merged, nl=False)
        if hybrid:
            click.echo(summary, err=True)


def _model_merge(original: str, snippet: str, model: ModelChoice) -> tuple[str, str]:
    """(merged file, a short summary) from a local model or an endpoint; exit 3 when the answer has no tags."""
    from fastapply_pipeline.core.endpoints import EndpointError
    from fastapply_pipeline.core.evaluate import model_candidate

    if model.base_url:
        runner = model.endpoint_runner()
    else:
        runner = model_candidate(*model.load(model.adapter), prompt_lookup=model.prompt_lookup)
    row = {"original_code": original, "update_snippet": snippet}
    try:
        (merge,) = runner([row], lambda: None)
    except EndpointError as err:
        raise click.ClickException(str(err)) from None
    if merge.output is None:
        click.echo(
            f"refused: the model's answer has no complete <updated-code> tags ({merge.error})", err=True
        )
        sys.exit(EXIT_REFUSED)
    rate = (
        f", {merge.output_tokens / merge.seconds:.1f} tokens/s"
        if merge.output_tokens and merge.seconds
        else ""
    )
    return merge.output, f"{merge.output_tokens} tokens in {merge.seconds:.1f} s{rate}"


@main.command()
@click.argument("adapter", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--merge", is_flag=True, help="Fold the adapter into its base and write a plain model folder.")
@click.option(
    "--model", "base", default=None, help="The base model's folder (default: the one the adapter names)."
)
def export(adapter: str, output: str, merge: bool, base: str | None) -> None:
    """Export a LoRA ADAPTER to OUTPUT: as is (checked: peft and vLLM load it), or --merge'd into its base.

    Exit 0: written; exit 2: the adapter or the base cannot be read (the message says what is missing).
    """
    from fastapply_pipeline.core.export import check_adapter, merge_adapter

    problems = check_adapter(adapter)
    if problems:
        raise click.ClickException("; ".join(problems))
    if merge:
        try:
            merge_adapter(adapter, output, base=base)
        except (FileNotFoundError, OSError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        click.echo(f"merged model written to {output} (transformers loads it without peft)", err=True)
    else:
        shutil.copytree(adapter, output, dirs_exist_ok=True)
        click.echo(f"adapter copied to {output} (peft and vLLM's --lora-modules load it)", err=True)


@main.command("eval")
@_with_model_options
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="A dataset folder (save_to_disk, or the pipeline's artifacts/dataset), .parquet or .jsonl.",
)
@click.option("--split", default="test", show_default=True, help="The split of a dataset folder.")
# --max-examples and --speed-examples have the command's own defaults, on purpose: every row and no timing
# runs (eval.max_examples and eval.speed_examples are the pipeline's); --prompt-lookup and --seed share theirs.
@click.option(
    "--max-examples", type=click.IntRange(min=1), default=None, help="A seeded sample of this many rows."
)
@click.option("--seed", type=int, default=FastApplyConfig.model_fields["seed"].default, show_default=True)
@click.option(
    "--baselines/--no-baselines", default=True, show_default=True, help="Also score applier and identity."
)
@click.option(
    "--speed-examples",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also decode this many examples without prompt lookup: speedup and identical outputs (local models).",
)
@click.option("--judge-model", default=None, help="An LLM judge for non-exact outputs (OpenAI-compatible).")
@click.option("--judge-base-url", default=None, help="The judge's endpoint.")
@click.option("--judge-api-key-env", default=None, help="Environment variable holding the judge's key.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the per-example results (.parquet)."
)
def eval_command(
    model: ModelChoice,
    data: str,
    split: str,
    max_examples: int | None,
    seed: int,
    baselines: bool,
    speed_examples: int,
    judge_model: str | None,
    judge_base_url: str | None,
    judge_api_key_env: str | None,
    output: str | None,
) -> None:
    """Score --model (with --adapter: the adapter and its base) on --data, beside the applier and identity.

    Prints the candidates x metrics table that eval_scores shows in Dagster, with a progress bar.
    """
    from tqdm import tqdm

    from fastapply_pipeline.core.endpoints import EndpointError
    from fastapply_pipeline.core.evaluate import load_rows, prepare_evaluation, summary_table
    from fastapply_pipeline.defs.reporting import markdown_table

    if model.name is None and not baselines:
        raise click.UsageError("nothing to evaluate: give --model, or leave the baselines on")
    if bool(judge_model) != bool(judge_base_url):
        raise click.UsageError("--judge-model and --judge-base-url go together")
    try:
        rows = load_rows(data, split)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    candidates, endpoints = [], {}
    if model.name is not None and model.base_url:
        candidates, endpoints = ["endpoint"], {"endpoint": model.endpoint()}
    elif model.name is not None:  # a local model: with --adapter, the adapter and its base apart
        candidates = ["adapter", "base"] if model.adapter else ["model"]
    if baselines:
        candidates += ["applier", "identity"]
    judge = _endpoint(JudgeSettings, judge_base_url, judge_model, judge_api_key_env) if judge_model else None
    settings = EvalSettings(
        endpoints=endpoints,
        judge=judge,
        max_examples=max_examples,
        prompt_lookup=model.prompt_lookup,
        speed_examples=speed_examples,
    )
    evaluation = prepare_evaluation(
        rows,
        settings,
        seed=seed,
        resolve=Path,  # no eval.extra_data here: --data is the one set
        keys=environment_key,
        candidates=candidates,
        load_model=lambda name: model.load(model.adapter if name == "adapter" else None),
    )
    bars = {
        name: tqdm(total=len(evaluation.rows), desc=name, unit="ex", leave=True)
        for name in evaluation.runners
    }
    try:
        results = evaluation.score(progress=lambda name: bars[name].update())
    except EndpointError as err:
        raise click.ClickException(str(err)) from None
    finally:
        for bar in bars.values():
            bar.close()
    try:
        results, counts = evaluation.judge(results)
    except EndpointError as err:
        raise click.ClickException(str(err)) from None
    if counts is not None:
        click.echo("judge: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), err=True)
    columns, table = summary_table(results)
    click.echo(markdown_table(columns, table).value)
    speed = evaluation.speed()
    if speed:
        click.echo("")
    for name, report in speed:
        click.echo(
            f"{name}: prompt lookup {report.speedup:.2f}x faster than plain greedy over {report.examples} "
            f"example(s); identical outputs {report.identical}/{report.examples}"
        )
    if output:
        results.write_parquet(output)
        click.echo(f"per-example results: {output}", err=True)
