"""Every console script declared in pyproject.toml answers --help with an example."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

SCRIPTS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help(script):
    module, _, func = SCRIPTS[script].partition(":")
    code = f"import sys; sys.argv = [{script!r}, '--help']; import {module} as m; m.{func}()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {script} ")
    # an example is a line of the description that runs this very script (test_examples.py runs them all)
    description = re.split(r"^(Options|Commands):", result.stdout, maxsplit=1, flags=re.M)[0]
    examples = [line.strip() for line in description.splitlines() if line.strip().startswith(f"{script} ")]
    assert examples, f"{script} --help shows no example invoking {script}"
    assert all(len(line.split()) > 1 for line in examples)


def test_validate_cli_reports_every_problem_by_line(tmp_path):
    from click.testing import CliRunner

    from hba_tools.validate import main

    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"problem": "p", "answer": "sad", "dataset": "cremad", "class_label": "sad"}\n'
        '{"problem": "p", "answer": "x", "dataset": "cremd"}\n'
        "not json\n"
        '{"problem": "p", "answer": "x", "dataset": "tess", "class_label": "bored"}\n'
    )
    result = CliRunner().invoke(main, ["sample", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "Did you mean 'cremad'" in lines[0] and "not a tess label" in lines[2]
    assert "4 records" not in result.stdout  # the summary goes to stderr


def test_validate_through_a_pipe(fixture_data):
    shell = f"cat {fixture_data.atlas} | {sys.executable} -m hba_tools.validate sample -"
    result = subprocess.run(shell, shell=True, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "192 records, 0 problems" in result.stderr and result.stdout == ""


def test_validate_reports_repeated_ids_and_content(tmp_path):
    from click.testing import CliRunner

    from hba_tools.validate import main

    row = '{"problem": "p", "answer": "sad", "dataset": "cremad", "class_label": "sad"}'
    path = tmp_path / "s.jsonl"
    path.write_text(
        "\n".join(
            [
                row,
                row,
                '{"id": "x", "problem": "q", "answer": "a", "dataset": "siq2"}',
                '{"id": "x", "problem": "r", "answer": "b", "dataset": "siq2"}',
            ]
        )
        + "\n"
    )
    result = CliRunner().invoke(main, ["sample", str(path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:2: $.id: same content (the same derived id) as line 1: 'cremad-7241c0eaaa3028db'",
        f"{path}:4: $.id: same id as line 3: 'x'",
    ]
