"""hba-judge: LLM-judge accuracy for the free-text tasks (SOC, INT, NVC), and judge agreement."""

from __future__ import annotations

import os

import click

from hba_core.errors import HbaError
from hba_core.judge import cache as judge_cache
from hba_core.judge import prompts
from hba_core.judge.agreement import agreement
from hba_core.judge.client import DEFAULT_MODEL, ClientSettings
from hba_core.judge.run import judge
from hba_tools._cli import comma_list, info, user_errors


def _api_key(env_name: str, base_url: str | None) -> str:
    key = os.environ.get(env_name, "")
    if key:
        return key
    if base_url is None:
        raise HbaError(f"no API key: set ${env_name} (or name another variable with --api-key-env)")
    info(f"${env_name} is not set: sending the placeholder key 'EMPTY' to {base_url}")
    return "EMPTY"  # local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) accept any key


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--truth",
    type=click.Path(allow_dash=True),
    help="Samples: JSONL (FILE or -), a Parquet shard, a quoted glob or a release folder.",
)
@click.option("--pred", type=click.Path(dir_okay=False, allow_dash=True), help="Predictions JSONL (id, prediction).")
@click.option(
    "--out",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Judgments JSONL, written atomically (- = stdout).",
)
@click.option(
    "--base-url",
    default=None,
    help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 [default: api.openai.com].",
)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Judge model name.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key (the key itself is never a flag).",
)
@click.option(
    "--concurrency", default=16, show_default=True, type=click.IntRange(1, 1024), help="Requests in flight at once."
)
@click.option(
    "--rpm",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Start at most this many requests per minute [default: no limit].",
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds per request before it is retried.",
)
@click.option(
    "--retries",
    default=5,
    show_default=True,
    type=click.IntRange(0, 100),
    help="Retries on 429/5xx/timeouts/connection errors (exponential backoff, Retry-After honoured).",
)
@click.option(
    "--cache",
    "cache_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="SQLite judgment cache [default: $HBA_CACHE_DIR or ~/.cache/hba/judge.sqlite].",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache (a killed run starts over).")
@click.option(
    "--prompts",
    "--prompt-variant",
    "prompt_variant",
    default="paper",
    show_default=True,
    help="paper (App. A.5), paraphrased (D.10), reference (the reference repository's judge script: its "
    "texts, message layout, schema and readings), or a TOML template file (see docs/judge.md).",
)
@click.option(
    "--lenient-reference-fallback",
    is_flag=True,
    help="With --prompts reference: read a non-JSON reply as correct when it contains 'true', as the "
    "reference does (counted apart; off by default, such replies stay unparseable).",
)
@click.option(
    "--reference-annotations",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="With --prompts reference: the reference's annotation tree (mimeqa/, siq2/, intentqa/) for its "
    "question lookup, so the rows it would drop are counted [default: look up in --truth].",
)
@click.option("--rate", is_flag=True, help="Rate fluency/coherence/relevance 1-5 (App. D.9, Table 17) instead.")
@click.option("--datasets", default=None, help="Comma-separated datasets to judge [default: every free-text one].")
@click.option("--keep-think", is_flag=True, help="Keep <think> reasoning in the candidate (stripped by default).")
@click.option(
    "--name",
    "model_name",
    default=None,
    help="The predicting model's name written into each judgment [default: the predictions' model field, "
    "else the file name]; hba-score matches judgments to --pred files by it.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@click.pass_context
@user_errors
def main(
    ctx: click.Context,
    truth: str | None,
    pred: str | None,
    out: str,
    base_url: str | None,
    model: str,
    api_key_env: str,
    concurrency: int,
    rpm: float | None,
    timeout: float,
    retries: int,
    cache_path: str | None,
    no_cache: bool,
    prompt_variant: str,
    lenient_reference_fallback: bool,
    reference_annotations: str | None,
    rate: bool,
    datasets: str | None,
    keep_think: bool,
    model_name: str | None,
    quiet: bool,
) -> None:
    """Judge free-text answers (SOC, INT, NVC) with an LLM, one fresh request per sample.

    \b
    Example (a local vLLM server, then accuracy):
      hba-judge --truth test.jsonl --pred preds.jsonl --out judged.jsonl \\
          --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-30B-A3B
      hba-score --truth test.jsonl --pred preds.jsonl --judgments judged.jsonl
    \b
    Agreement between two judges, or a judge and a human:
      hba-judge agree gpt5nano.jsonl human.jsonl
    """
    if ctx.invoked_subcommand is not None:
        return
    from hba_core.extras import require

    require("hba-judge", "judge")
    if not truth or not pred:
        raise click.UsageError("give --truth SAMPLES and --pred PREDICTIONS (or the 'agree' subcommand)")
    if truth == "-" and pred == "-":
        raise click.UsageError("only one of --truth and --pred can be - (stdin)")
    if no_cache and cache_path:
        raise click.UsageError("use just one of --cache PATH and --no-cache")
    if rate and prompt_variant != "paper":
        raise click.UsageError("--rate uses the paper's rater prompt (App. D.9); drop --prompts")
    variant = prompts.variant("rater" if rate else prompt_variant)
    if (rate and variant.mode != "rater") or (not rate and variant.mode != "judge"):
        raise click.UsageError(
            f"prompt variant {variant.name!r} is a {variant.mode} prompt; "
            + ("add --rate" if variant.mode == "rater" else "drop --rate")
        )
    if variant.protocol != "reference" and (lenient_reference_fallback or reference_annotations):
        raise click.UsageError(
            "--lenient-reference-fallback and --reference-annotations need --prompts reference "
            f"(the prompts are {variant.name!r})"
        )
    settings = ClientSettings(
        base_url=base_url, model=model, concurrency=concurrency, rpm=rpm, timeout_s=timeout, retries=retries
    )
    key = _api_key(api_key_env, base_url)
    names = comma_list(datasets) if datasets else None
    cache = None if no_cache else (cache_path or judge_cache.default_path())
    summary = judge(
        truth,
        pred,
        out,
        settings=settings,
        api_key=key,
        variant=variant,
        cache_path=cache,
        datasets=names,
        keep_think=keep_think,
        show_progress=not quiet,
        model_name=model_name,
        lenient_reference_fallback=lenient_reference_fallback,
        reference_annotations=reference_annotations,
    )
    for line in summary.lines():
        info(line)
    if summary.all_failed:
        raise SystemExit(1)  # the rows are written (with each error), but a run that judged nothing failed


@main.command("agree")
@click.argument("file_a", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("file_b", type=click.Path(dir_okay=False, allow_dash=True))
@user_errors
def agree(file_a: str, file_b: str) -> None:
    """Cohen's kappa between two judgment files (id + correct), with counts and the confusion table.

    \b
    Example:
      hba-judge agree judged-gpt5nano.jsonl judged-human.jsonl
    """
    result = agreement(file_a, file_b)
    click.echo(result.report("A", "B"))
    click.echo(f"A = {file_a}\nB = {file_b}")


if __name__ == "__main__":
    main()
