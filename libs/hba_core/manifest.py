"""What a recipe run was made of: package versions, git revision, seeds, input hashes, models, judge.

Every recipe (``recipes/*.sh``) ends by writing ``OUT/<recipe>/manifest.json`` with
``python -m hba_core.manifest``, so a table can be traced to the code, data and models behind it.
Input files are hashed (sha256); folders are hashed over their files' relative paths and bytes.
Secrets never enter it: only the names given on the command line and package metadata.

Example:
    python -m hba_core.manifest runs/table5/manifest.json --recipe table5 --profile mini --seed 0 \\
        --input atlas.jsonl --model fixtures/tiny-omni --judge-model gpt-5-nano --prompt-version paper
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hba_core.jsonl import atomic_output
from hba_core.versions import package_versions

CHUNK = 1 << 20


def git_revision(cwd: str | Path = ".") -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout holding ``cwd``; None outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative path + bytes, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def build_manifest(
    *,
    recipe: str,
    profile: str,
    seeds: list[int],
    inputs: list[str],
    models: list[str],
    judge_model: str | None,
    prompt_version: str | None,
    extra: dict[str, str] | None = None,
    cwd: str | Path = ".",
) -> dict[str, Any]:
    """The manifest as a dict. Inputs must exist (a missing one is a ``FileNotFoundError`` naming it).

    Models that are local paths get a hash too; every model its adapter and revision (:func:`model_row`).
        >>> m = build_manifest(recipe="t", profile="mini", seeds=[0], inputs=[], models=["Qwen/Qwen2.5-Omni-7B"],
        ...                    judge_model=None, prompt_version=None)
        >>> m["models"][0]["id"], m["judge"]["judged"]
        ('Qwen/Qwen2.5-Omni-7B', False)
    """
    hashed = []
    for item in inputs:
        if not Path(item).exists():
            raise FileNotFoundError(f"{item}: manifest input not found")
        hashed.append({"path": item, "sha256": file_sha256(item)})
    model_rows = [model_row(m) for m in models]
    return {
        "recipe": recipe,
        "profile": profile,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_revision(cwd),
        "python": platform.python_version(),
        "packages": package_versions(),
        "seeds": seeds,
        "inputs": hashed,
        "models": model_rows,
        "judge": {"judged": bool(judge_model), "model": judge_model, "prompt_version": prompt_version},
        "settings": extra or {},
    }


def _adapter_of(config: dict[str, Any]) -> str:
    if "tool" in config:  # written by hba-sft / hba-grpo: an OmniSapiens checkpoint over its base model
        return "hba checkpoint"
    from hba_core.model.backbones import UnsupportedModelError, backbone_for  # transformers' auto tables only

    try:
        return backbone_for(config).adapter
    except UnsupportedModelError:  # a manifest records what was there; the tools refuse it themselves
        return f"none (model_type {config.get('model_type', '')!r})"


def model_row(model: str) -> dict[str, Any]:
    """What a manifest records of one model: its id, the adapter hba runs it with, and its revision.

    ``endpoint:NAME@URL`` is a served model (its revision is whatever the server runs: recorded as given);
    a local folder gets the sha256 of its files; a hub id in the Hugging Face cache its snapshot revision.

    >>> model_row("endpoint:qwen-vl@http://127.0.0.1:8000/v1")["adapter"]
    'served'
    """
    if model.startswith("endpoint:"):
        name, _, url = model[len("endpoint:") :].partition("@")
        return {"id": model, "adapter": "served", "served_model": name, "url": url}
    row: dict[str, Any] = {"id": model}
    path = Path(model)
    config_path: Path | None = path / "config.json" if path.is_dir() else None
    if path.exists():
        row["sha256"] = file_sha256(model)
    elif "/" in model:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
        if isinstance(found, str):
            config_path = Path(found)
            row["revision"] = config_path.parent.name  # snapshots/<commit>/config.json
    if config_path is not None and config_path.is_file():
        config = json.loads(config_path.read_text())
        row["adapter"] = _adapter_of(config)
        if "base_model" in config:
            row["base_model"] = config["base_model"]
    return row


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` as indented JSON, atomically."""
    with atomic_output(path) as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n")
    return Path(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hba_core.manifest", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="manifest.json to write")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--seed", type=int, action="append", default=[], help="repeat per seed")
    parser.add_argument("--input", action="append", default=[], help="input file or folder to hash (repeat)")
    parser.add_argument("--model", action="append", default=[], help="model id or path (repeat)")
    parser.add_argument("--judge-model", default=None, help="judge model name (absent: not judged)")
    parser.add_argument("--prompt-version", default=None, help="judge prompt variant, e.g. paper")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe setting (repeat)")
    args = parser.parse_args(argv)
    bad = [s for s in args.set if "=" not in s]
    if bad:
        parser.error(f"--set {bad[0]!r}: expected KEY=VALUE")
    try:
        manifest = build_manifest(
            recipe=args.recipe,
            profile=args.profile,
            seeds=args.seed,
            inputs=args.input,
            models=args.model,
            judge_model=args.judge_model or None,
            prompt_version=args.prompt_version or None,
            extra=dict(s.split("=", 1) for s in args.set),
        )
    except FileNotFoundError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(write_manifest(args.out, manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
