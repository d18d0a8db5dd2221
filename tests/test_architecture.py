"""The layers of docs/architecture.md, checked: each module imports only from its own layer or below,
and nothing below the model layer imports torch at module level (scoring and judging run without it)."""

from __future__ import annotations

import ast
from pathlib import Path

LIBS = Path(__file__).resolve().parents[1] / "libs" / "hba_core"

# hba_core's top-level names by layer, leaves first (docs/architecture.md draws the same picture).
LAYERS: list[set[str]] = [
    {"errors", "registry", "samples", "sources", "media", "media_settings", "options", "jsonl", "schemas",
     "schema_files", "versions", "cache_dir"},
    {"answers", "rewards", "metrics", "prompts", "transcribe", "recipe_stage", "threads", "extras", "sample_checks",
     "chat_client", "substitutions"},
    {"convert", "descriptors", "judge", "scoring", "score_formats", "served",
     "served_messages"},
    {"training", "model"},
    {"bam", "rl"},
    {"predict", "predict_parallel", "manifest"},  # what a run used: backbones' adapters included
    {"fixtures"},  # test support: builds models and data with everything below
]  # fmt: skip
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
TORCH_FREE = LAYERS[0] | LAYERS[1] | LAYERS[2]
TORCH_FREE_EXCEPT = {"rewards", "transcribe"}  # import torch inside functions only (checked below)


def _top(path: Path) -> str:
    rel = path.relative_to(LIBS)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(hba_core top-level name or external module, line, at module level?)."""
    found = []
    module_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "hba_core" else [f"hba_core.{a.name}" for a in node.names]
        for name in names:
            found.append((name, node.lineno, id(node) in module_level))
    return found


def test_every_module_is_placed_in_a_layer():
    tops = {_top(p) for p in LIBS.rglob("*.py") if p.name != "__init__.py" or p.parent != LIBS}
    assert tops - set(RANK) == set(), "add these to LAYERS and docs/architecture.md"


def test_imports_go_down_the_layers_only():
    wrong = []
    for path in sorted(LIBS.rglob("*.py")):
        if path.parent == LIBS and path.name == "__init__.py":
            continue
        mine = _top(path)
        for name, line, _ in _imports(ast.parse(path.read_text())):
            if not name.startswith("hba_core."):
                continue
            other = name.split(".")[1]
            if other != mine and RANK.get(other, -1) > RANK[mine]:
                wrong.append(f"{path.relative_to(LIBS)}:{line} ({mine}, layer {RANK[mine]}) imports {name}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_torch_at_module_level_below_the_model_layer():
    wrong = []
    for path in sorted(LIBS.rglob("*.py")):
        mine = _top(path)
        if mine not in TORCH_FREE:
            continue
        for name, line, module_level in _imports(ast.parse(path.read_text())):
            if name.split(".")[0] in ("torch", "transformers", "peft") and module_level:
                wrong.append(f"{path.relative_to(LIBS)}:{line} imports {name} at module level")
    assert not wrong, "\n".join(wrong)


MAX_MODULE_LINES = 400  # issue 16: a module over this holds more than one concept; split it along them


def test_no_module_in_libs_is_over_400_lines():
    long = {
        str(path.relative_to(LIBS)): n
        for path in sorted(LIBS.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these along their concepts (lines): {long}"
