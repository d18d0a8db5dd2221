"""Click options generated from the core's option dataclasses (``hba_tools._cli.options_from``, ``media_options``):
types, flags, lists, required fields, defaults shown from the dataclass, and API = CLI for every tool that uses them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import click
import pytest
from click.testing import CliRunner

from hba_core.media_settings import MediaSettings
from hba_core.model.sft_options import SftOptions
from hba_core.rl.config import GrpoConfig
from hba_tools._cli import media_options, options_from


@dataclass
class Opts:
    name: str = field(metadata={"help": "what it is called"})
    steps: int = field(default=50, metadata={"help": "how many steps"})
    lr: float = field(default=1e-4, metadata={"help": "learning rate"})
    limit: int | None = field(default=None, metadata={"help": "stop here"})
    lora: bool = field(default=False, metadata={"help": "train LoRA"})
    checkpointing: bool = field(default=True, metadata={"help": "recompute activations"})
    datasets: list[str] = field(default_factory=list, metadata={"help": "only these"})
    streams: tuple[str, ...] = field(default=("audio", "video"), metadata={"help": "adapters"})
    weights: dict[str, float] = field(default_factory=dict, metadata={"help": "term weights", "metavar": "TERM=W"})
    dtype: str = field(default="float32", metadata={"help": "precision", "choices": ("float32", "bfloat16")})
    engine: Literal["hf", "vllm"] = field(default="hf", metadata={"help": "rollout engine"})
    data_root: str = field(default=".", metadata={"help": "media root"})


def _command(cls=Opts, **kwargs):
    @click.command()
    @options_from(cls, **kwargs)
    def cmd(**options):
        click.echo(repr(cls(**options)))

    return cmd


def _parse(args, cls=Opts, **kwargs):
    seen = {}

    @click.command()
    @options_from(cls, **kwargs)
    def cmd(**options):
        seen.update(options)

    result = CliRunner().invoke(cmd, args)
    assert result.exit_code == 0, result.output
    return seen


def test_types_and_defaults_come_from_the_dataclass():
    options = _parse(["--name", "x", "--steps", "3", "--lr", "0.5", "--limit", "7"])
    assert Opts(**options) == Opts(name="x", steps=3, lr=0.5, limit=7)
    assert type(options["steps"]) is int and type(options["lr"]) is float
    assert Opts(**_parse(["--name", "x"])) == Opts(name="x")  # nothing else given: the dataclass's defaults
    result = CliRunner().invoke(_command(), ["--name", "x", "--steps", "many"])
    assert result.exit_code == 2 and "'many' is not a valid integer" in result.output


def test_booleans_are_on_off_flags():
    assert _parse(["--name", "x"])["lora"] is False and _parse(["--name", "x"])["checkpointing"] is True
    options = _parse(["--name", "x", "--lora", "--no-checkpointing"])
    assert options["lora"] is True and options["checkpointing"] is False


def test_lists_are_repeatable_and_comma_separated():
    options = _parse(["--name", "x", "--datasets", "a,b", "--datasets", " c ", "--streams", "audio"])
    assert options["datasets"] == ["a", "b", "c"] and options["streams"] == ("audio",)
    assert _parse(["--name", "x"])["streams"] == ("audio", "video")
    first, second = _parse(["--name", "x"])["datasets"], _parse(["--name", "x"])["datasets"]
    assert first == [] and first is not second  # a default list is never shared between runs


def test_dicts_are_repeated_key_value_pairs():
    assert _parse(["--name", "x", "--weights", "a=0", "--weights", "b=0.5"])["weights"] == {"a": 0.0, "b": 0.5}
    result = CliRunner().invoke(_command(), ["--name", "x", "--weights", "a"])
    assert result.exit_code == 2 and "'a' is not KEY=FLOAT" in result.output


def test_choices_from_metadata_and_literal():
    assert _parse(["--name", "x", "--dtype", "bfloat16", "--engine", "vllm"])["engine"] == "vllm"
    result = CliRunner().invoke(_command(), ["--name", "x", "--dtype", "fp8"])
    assert result.exit_code == 2 and "'fp8' is not one of 'float32', 'bfloat16'" in result.output


def test_a_field_without_default_is_required():
    result = CliRunner().invoke(_command(), [])
    assert result.exit_code == 2 and "Missing option '--name'" in result.output


def test_help_shows_the_dataclass_default_once():
    text = " ".join(CliRunner().invoke(_command(), ["--help"]).output.split())
    assert "how many steps [default: 50]" in text and "learning rate [default: 0.0001]" in text
    assert "what it is called [required]" in text and "stop here --lora" in text  # None: nothing shown
    assert "--lora / --no-lora train LoRA [default: False]" in text
    assert "adapters [default: audio,video]" in text and "--weights TERM=W" in text
    assert "--dtype [float32|bfloat16]" in text and "--engine [hf|vllm]" in text
    assert text.count("[default: 50]") == 1


def test_a_field_added_to_the_dataclass_is_a_flag():
    grown = dataclasses.make_dataclass(
        "Grown", [("warmup", int, field(default=3, metadata={"help": "warm-up steps"}))], bases=(Opts,)
    )
    assert _parse(["--name", "x", "--warmup", "9"], cls=grown)["warmup"] == 9
    assert "warm-up steps  [default: 3]" in CliRunner().invoke(_command(grown), ["--help"]).output


def test_rename_exclude_and_unset():
    options = _parse(["--name", "x", "--root", "data"], exclude=("weights",), rename={"data_root": ("--root", "-r")})
    assert options["data_root"] == "data" and "weights" not in options
    assert _parse(["--name", "x", "-r", "d"], rename={"data_root": ("--root", "-r")})["data_root"] == "d"
    unset = _parse(["--name", "x", "--lr", "0.1"], unset=True)  # not given -> None, for merging over a config file
    assert unset["lr"] == 0.1 and unset["steps"] is None and unset["lora"] is None and unset["datasets"] is None
    assert "[default: 50]" in CliRunner().invoke(_command(unset=True), ["--help"]).output
    with pytest.raises(TypeError, match="no fields"):
        options_from(Opts, exclude=("nope",))


def test_media_options_give_one_media_settings():
    seen = {}

    @click.command()
    @media_options
    def cmd(media):
        seen["media"] = media

    assert CliRunner().invoke(cmd, []).exit_code == 0 and seen["media"] == MediaSettings()
    result = CliRunner().invoke(cmd, ["--data-root", "d", "--fps", "1", "--max-frames", "4", "--allow-outside-root"])
    assert result.exit_code == 0, result.output
    assert seen["media"] == MediaSettings(data_root="d", fps=1.0, max_frames=4, allow_outside_root=True)
    assert CliRunner().invoke(cmd, ["--root", "r"]).exit_code == 0 and seen["media"].data_root == "r"


# ------------------------------------------------------------------ API = CLI: every field is a flag of its tool


def _flags(command):
    return {name: p for p in command.params for name in [*p.opts, *p.secondary_opts]}


def _flag_of(name):
    return "--" + name.replace("_", "-")


def _sft_commands():
    from hba_tools.sft import main

    return [main.commands[name] for name in sorted(main.commands)]


def test_every_sft_option_is_a_flag_of_every_stage():
    wanted = {f.name for f in dataclasses.fields(SftOptions)} - {"stage", "samples", "out"}
    for command in _sft_commands():  # cls, qa, joint and any stage added later
        dests = {p.name for p in command.params}
        assert wanted <= dests, f"hba-sft {command.name}: no flag for {sorted(wanted - dests)}"
        flags = _flags(command)
        assert "--root" in flags and "--data-root" in flags and "-o" in flags and "--config" in flags
        for name in wanted - {"data_root"}:
            assert _flag_of(name) in flags, name


def test_every_grpo_option_is_a_flag():
    from hba_tools.grpo import main

    dests = {p.name for p in main.params}
    assert {f.name for f in dataclasses.fields(GrpoConfig)} <= dests
    assert {"--root", "--data-root", "--reward-weight", "--lora", "--no-lora", "--group-size"} <= set(_flags(main))


@pytest.mark.parametrize("tool", ["predict", "bam"])
def test_every_media_setting_is_a_flag_with_its_default(tool):
    import importlib

    command = importlib.import_module(f"hba_tools.{tool}").main
    flags = _flags(command)
    for f in dataclasses.fields(MediaSettings):
        option = flags["--root" if f.name == "data_root" else _flag_of(f.name)]
        assert option.name == f.name and option.default == f.default and f.metadata["help"] in option.help
    assert "--data-root" in flags


def test_sft_help_shows_the_dataclass_defaults():
    from hba_tools.sft import main

    text = " ".join(CliRunner().invoke(main, ["cls", "--help"]).output.split())
    for f in dataclasses.fields(SftOptions):
        if f.name in ("stage", "samples", "out") or f.default in (None, dataclasses.MISSING):
            continue
        assert f"{f.metadata['help']} [default: {f.default}]" in text, f.name


def test_every_bam_setting_is_a_flag_and_the_arch_picks_dropout_and_alpha():
    from hba_core.bam.settings import ARCH_DEFAULTS, BamSettings, bam_settings
    from hba_tools.bam import main

    flags = _flags(main)
    for f in dataclasses.fields(BamSettings):
        assert flags[_flag_of(f.name)].name == f.name
    assert flags["--dropout"].default is None and flags["--epochs"].default == BamSettings.epochs
    assert bam_settings(arch="reference", epochs=2) == BamSettings(
        arch="reference", epochs=2, **ARCH_DEFAULTS["reference"]
    )
    assert bam_settings(arch="reference", alpha_init=1.0).alpha_init == 1.0 and bam_settings() == BamSettings()
