"""Every example a user is shown runs: the commands of each console script's ``--help`` and of the shell blocks
of README.md and docs/*.md, offline, on the fixtures.

How: each command runs verbatim in a shell, in a workspace where the names the examples use exist and
hold fixture data (``test.jsonl`` is fixture samples, ``runs/qa/best`` a tiny checkpoint, ``Qwen/Qwen2.5-Omni-7B``
the tiny Omni, ...). The one rewrite is the judge's address: an ``hba-judge`` command is pointed at the loopback
OpenAI-compatible server (tests/openai_server.py) with a throwaway key. A command that cannot run offline
matches one rule of ``NOT_RUNNABLE``, whose reason is the listed why; a rule that matches nothing is stale and
fails ``test_every_not_runnable_rule_is_used``. A new example is run unless a rule says why not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = "#python\n"  # marks a python block among the shell commands
COMMAND_WORDS = ("hba-", "cat ", "deepspeed ", "torchrun ", "tail ", "python ", "pip ", "just ", "export ")

# (pattern, why the command cannot run here); first match wins
NOT_RUNNABLE: list[tuple[str, str]] = [
    (r"^(pip |python -m venv)", "installs packages (the CI image does this once)"),
    (r"^just ", "a Justfile recipe (CI runs `just test`; the recipes are tested in test_recipes.py)"),
    (r"^export ", "sets the environment for the commands after it"),
    (r"^(deepspeed|torchrun) ", "a multi-GPU launch"),
    (r"(^|\s)\.\.\.(\s|$)", "a template: `...` stands for the options of an earlier line"),
    (r"^tail -f ", "follows a growing file and never ends"),
    (r"^python benchmarks/", "a benchmark (minutes on 2 cores); its numbers are in docs/bench-*.md"),
    (r"--model (large-v3|/models/large-v3\.pt)", "needs the Whisper large-v3 weights (a hub download)"),
    (r"^hba-convert (build|import) ", "reads a raw or official release; test_convert_* run the same readers"),
    (r"^hba-convert import-predictions ", "reads the reference's generation files; test_score_* cover the reader"),
    (r"RELEASE|release\.zarr|final_v8_train", "needs the reference release's .pt descriptor files"),
    (r"hba_v2|\.parquet", "reads the HBA v2 Parquet release (test_convert_release.py reads purpose-built shards)"),
    (r"--bam runs/", "needs trained BAM adapters (hba-bam is trained and applied in test_bam_run.py)"),
    (r"desc-\*\.zarr|SLURM", "merges shard stores of a cluster array job"),
    (
        r"--endpoint http://127\.0\.0\.1:8000/",
        "talks to a running `vllm serve` (test_served.py runs hba-predict --endpoint against a loopback server)",
    ),
    (
        r"^hba-(sft|grpo) (?!.*--plan)|^hba-bam ",  # --plan loads nothing: it runs (the 7B config on meta)
        "a training run with the paper's defaults (hours); smoke-sized runs of the same commands are in "
        "test_sft.py, test_grpo_train.py and test_bam_run.py",
    ),
    (r"--model runs/(grpo/best|rl/final)", "evaluates a GRPO run (trained in test_grpo_train.py)"),
    (r"--model omnisapiens_sft/", "needs the released reference SFT checkpoint"),
    (r"/data/hba", "a cluster path"),
    (r"train\(GrpoConfig\(", "a GRPO run with the paper's defaults (test_grpo_train.py trains the same API, small)"),
]
SFT_DATASETS = ("mmpsy_depression", "mmpsy_anxiety", "siq2", "cremad")  # text, free text, audio
# model runs, MediaPipe and Whisper: minutes in all on 2 cores (`just test-all` runs them)
# (python blocks load MiniLM, run accelerate or read a store: ~10-80 s each)
SLOW = [r"^hba-predict ", r"^hba-descriptors ", r"^hba-transcribe ", r"^#python\n"]


def _commands(lines: list[str]) -> list[str]:
    """Command lines, continuation lines joined, trailing ``# comments`` dropped."""
    out, pending = [], ""
    for raw in lines:
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        elif not line.startswith(COMMAND_WORDS):
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        out.append(re.split(r"\s+#\s", line, maxsplit=1)[0].strip())
    return out


def _helps() -> list[tuple[str, str]]:
    """(``hba-x [sub] --help``, its text) for every console script and subcommand."""
    import importlib

    found = []
    for script, target in sorted(SCRIPTS.items()):
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        found.append((f"{script} --help", CliRunner().invoke(command, ["--help"], prog_name=script).output))
        if isinstance(command, click.Group):
            for name in sorted(command.commands):
                help_text = CliRunner().invoke(command, [name, "--help"], prog_name=script).output
                found.append((f"{script} {name} --help", help_text))
    return found


def _usage_part(help_text: str) -> list[str]:
    """The description and examples of a --help (the Options/Commands lists after it are not examples)."""
    return re.split(r"^(Options|Commands):", help_text, maxsplit=1, flags=re.M)[0].splitlines()


def _python_blocks() -> list[tuple[str, str]]:
    """(where, code) of every ```python block: each runs as one script."""
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            blocks.append((f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}", PYTHON + m.group(1)))
    return blocks


def _doc_blocks() -> list[tuple[str, list[str]]]:
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^```(bash|sh|shell|console)\n(.*?)^```", text, re.S | re.M):
            line = text[: m.start()].count("\n") + 1
            blocks.append((f"{path.relative_to(ROOT)}:{line}", m.group(2).splitlines()))
    return blocks


def all_examples() -> list[tuple[str, str]]:
    """(where it is shown, command), deduplicated by command (the first place shown is kept)."""
    seen: dict[str, str] = {}
    for where, text in _helps():
        for cmd in _commands(_usage_part(text)):
            seen.setdefault(cmd, where)
    for where, lines in _doc_blocks():
        for cmd in _commands(lines):
            seen.setdefault(cmd, where)
    for where, code in _python_blocks():
        seen.setdefault(code, where)
    return [(where, cmd) for cmd, where in seen.items()]


def why_not(command: str) -> str | None:
    for pattern, reason in NOT_RUNNABLE:
        if re.search(pattern, command):
            return reason
    return None


EXAMPLES = all_examples()
RUNNABLE = [(w, c) for w, c in EXAMPLES if why_not(c) is None]


def test_examples_are_found_and_most_run():
    assert len(EXAMPLES) > 40  # the parser finds the examples (a broken parser would find none and skip all)
    assert {w.split(" ")[0] for w, _ in EXAMPLES if w.endswith("--help")} == set(SCRIPTS)
    assert len(RUNNABLE) >= 20, RUNNABLE


def test_every_not_runnable_rule_is_used():
    used = {pattern for pattern, _ in NOT_RUNNABLE for _, cmd in EXAMPLES if re.search(pattern, cmd)}
    assert used == {pattern for pattern, _ in NOT_RUNNABLE}, set(p for p, _ in NOT_RUNNABLE) - used


def test_every_script_help_has_an_example_invoking_it():
    for where, text in _helps():
        script = where.split(" ")[0]
        if where.count(" ") == 1 and not text.count("Commands:"):  # a command without subcommands
            assert any(cmd.startswith(script + " ") for cmd in _commands(_usage_part(text))), where


# --- the workspace: every name the examples use, holding fixture data -------------------------------------


def _rows(path: Path) -> list[dict]:
    from hba_core.samples import iter_samples

    return [s for _, s in iter_samples(path)]


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _link(ws: Path, name: str, target: Path) -> None:
    (ws / name).parent.mkdir(parents=True, exist_ok=True)
    (ws / name).symlink_to(target)


def _run(command: str, ws: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    # pipefail, except where a reader stops early on purpose (`| head`): the writer then ends with SIGPIPE's 141
    # as every Unix tool does, and that is not a failure of the example.
    pipefail = [] if re.search(r"\|\s*head\b", command) else ["-o", "pipefail"]
    return subprocess.run(
        ["bash", *pipefail, "-c", command], cwd=ws, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def workspace(fixtures, tmp_path_factory):
    from openai_server import FakeOpenAI

    ws = tmp_path_factory.mktemp("examples")
    test_rows = [s for s in _rows(fixtures.atlas) if s["split"] == "test" and s["dataset"] in SFT_DATASETS]
    for name in ("test.jsonl", "atlas.jsonl", "final_v8_test_cleaned.jsonl"):
        _write(ws / name, test_rows)
    meld = [s for s in _rows(fixtures.atlas) if s["dataset"].startswith("meld")]
    _write(ws / "meld.jsonl", meld)
    for name in ("data", "DATA"):
        _link(ws, name, fixtures.data)
    for release in ("HBA", "human_behavior_atlas"):  # the official release layout: the JSONL beside the media
        _write(ws / release / "final_v8_test_cleaned.jsonl", test_rows)
        for media in ("audio", "video"):  # copies: a symlinked media folder would escape the data root
            shutil.copytree(fixtures.data / media, ws / release / media)
    _write(ws / "sft-train.jsonl", [s for s in _rows(fixtures.atlas) if s["dataset"] in SFT_DATASETS])
    for hub_id in ("Qwen/Qwen2.5-Omni-7B", "ddvd233/OmniSapiens-7B-RL"):  # the tiny Omni in their place
        _link(ws, hub_id, fixtures.omni)
    _link(ws, "ckpt.pt", fixtures.whisper)
    gold = [{"id": s["id"], "prediction": s["answer"]} for s in test_rows]
    labels = [p["prediction"] for p in gold]
    shifted = [{"id": p["id"], "prediction": labels[(i + 1) % len(labels)]} for i, p in enumerate(gold)]
    _write(ws / "cut.jsonl", test_rows[: len(test_rows) // 2])
    for name in ("preds.jsonl", "mine.jsonl", "model_a.jsonl", "a.jsonl", "sft.jsonl", "full_preds.jsonl"):
        _write(ws / name, gold)
    for name in ("model_b.jsonl", "b.jsonl", "bam.jsonl", "heads.jsonl", "rl.jsonl"):
        _write(ws / name, shifted)
    _write(ws / "test_with_outputs.jsonl", [{**s, "model_output": s["answer"]} for s in test_rows])
    server = FakeOpenAI().start()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "OPENAI_API_KEY": "sk-test-examples",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    judge = f"hba-judge --truth test.jsonl --base-url {server.base_url}"
    for pred, out in (("model_a", "judged_a"), ("model_b", "judged_b")):
        done = _run(f"{judge} --pred {pred}.jsonl --out {out}.jsonl", ws, env)
        assert done.returncode == 0, done.stderr
    shutil.copy(ws / "judged_a.jsonl", ws / "judged.jsonl")
    shutil.copy(ws / "judged_a.jsonl", ws / "gpt5nano.jsonl")
    for name in ("human.jsonl", "judged-human.jsonl", "judged-qwen.jsonl"):
        shutil.copy(ws / "judged_b.jsonl", ws / name)
    shutil.copy(ws / "judged_a.jsonl", ws / "judged-gpt5nano.jsonl")
    done = _run("hba-score --truth test.jsonl --pred preds.jsonl --format json --output report.json", ws, env)
    assert done.returncode == 0, done.stderr
    yield ws, env, server
    server.stop()


@pytest.fixture(scope="module")
def checkpoints(workspace):
    """runs/cls/best and runs/qa/best: smoke-sized hba-sft runs (text datasets and cremad, then siq2)."""
    ws, env, _ = workspace
    smoke = "--micro-batch 2 --batch-size 2 --warmup-steps 1 --workers 0 --no-gradient-checkpointing --epochs 1 --fps 1"
    for cmd in (
        f"hba-sft cls sft-train.jsonl --data-root data -o runs/cls --model Qwen/Qwen2.5-Omni-7B {smoke}"
        " --datasets mmpsy_depression,mmpsy_anxiety,cremad",
        f"hba-sft qa sft-train.jsonl --data-root data -o runs/qa --init runs/cls/best {smoke} --datasets siq2",
    ):
        if not (ws / cmd.split(" -o ")[1].split(" ")[0] / "best").is_dir():
            done = _run(cmd, ws, env, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
    return ws


@pytest.fixture(scope="module")
def store(workspace):
    """desc.zarr: the descriptors of the workspace's samples."""
    ws, env, _ = workspace
    if not (ws / "desc.zarr").exists():
        done = _run("hba-descriptors extract --samples atlas.jsonl --root DATA --store desc.zarr", ws, env, 600)
        assert done.returncode == 0, done.stderr[-3000:]
    return ws


def _judge_here(command: str, base_url: str) -> str:
    """An hba-judge command pointed at the loopback server (its own --base-url, or the default's)."""
    if not command.startswith("hba-judge") or " agree " in command:
        return command
    if "--base-url" in command:
        return re.sub(r"--base-url \S+", f"--base-url {base_url}", command)
    return command.replace("hba-judge ", f"hba-judge --base-url {base_url} ", 1)


@pytest.mark.parametrize(
    "where,command",
    [
        pytest.param(
            w, c, marks=[pytest.mark.slow] if any(re.search(p, c) for p in SLOW) else [], id=c[:80].replace("\n", " ")
        )
        for w, c in RUNNABLE
    ],
)
def test_example_runs(where, command, workspace, request, tmp_path):
    shared, env, server = workspace
    if "runs/" in command:
        request.getfixturevalue("checkpoints")
    if "desc.zarr" in command and "extract" not in command:
        request.getfixturevalue("store")
    # each example in its own copy: no example sees another's outputs, whatever the order
    ws = tmp_path / "ws"
    shutil.copytree(shared, ws, symlinks=True)
    for out in re.findall(r"(?:--out|-o) (\S+\.jsonl)\b", command):  # hba-predict appends: start empty
        (ws / out).unlink(missing_ok=True)
    if command.startswith(PYTHON):  # a block of >>> lines is a doctest (its outputs are checked); else a script
        doctest = "\n>>> " in command
        script = ws / f"block_{abs(hash(command))}.{'txt' if doctest else 'py'}"
        script.write_text(command)
        command = (
            f"python -c 'import doctest, sys; sys.exit(doctest.testfile(sys.argv[1], module_relative=False).failed)' "
            f"{script.name}"
            if doctest
            else f"python {script.name}"
        )
    done = _run(_judge_here(command, server.base_url), ws, env)
    assert done.returncode == 0, f"{where}: {command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
