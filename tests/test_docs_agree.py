"""The docs say one thing where they say it in several places (issue 17.20: the demo's time was
"under a minute" in the README, "~30 s" in docs/recipes.md and "~2 min" in the Justfile)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where a newcomer reads how long `just demo` takes: each must carry the same figure.
DEMO_PLACES = ["README.md", "docs/recipes.md", "recipes/demo.sh", "Justfile"]
DEMO_TIME = "about 2 minutes"
# How the demo's time was quoted before: none of these may come back next to "demo".
STALE = re.compile(r"under a\s+minute|~\s*30\s*s|~\s*2\s*min|CPU, ~\d")


def test_every_place_gives_the_demo_the_same_time():
    for name in DEMO_PLACES:
        flat = " ".join((ROOT / name).read_text().split())
        assert DEMO_TIME in flat, f"{name} does not say `just demo` takes {DEMO_TIME}"
        for match in re.finditer(r"\bdemo\b", flat):
            near = flat[match.start() : match.start() + 100]
            assert not STALE.search(near), f"{name}: a second figure for the demo's time near {near!r}"
    measured = {
        name: re.findall(r"about 2 minutes[^.]*?\((\d+) s", " ".join((ROOT / name).read_text().split()))
        for name in ("README.md", "docs/recipes.md")
    }
    figures = {f for found in measured.values() for f in found}
    assert len(figures) == 1, f"the measured demo time differs between the docs: {measured}"


def test_recipes_doc_says_which_recipes_ci_runs():
    text = " ".join((ROOT / "docs/recipes.md").read_text().split())
    assert "so CI runs `table5`" not in text  # table5 is slow (just test-all); just test runs table4
    slow = (ROOT / "tests/test_recipes.py").read_text()
    assert re.search(r"@pytest\.mark\.slow[^\n]*\ndef test_table5", slow), "docs/recipes.md says table5 is slow"
