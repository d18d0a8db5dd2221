"""Options from a config file plus flags (hba_core.options, hba_core.model.sft_options): the file's values,
flags over them, the dataclass defaults under both; a bad file is one line naming it."""

from __future__ import annotations

import json

import pytest

from hba_core.errors import InputError
from hba_core.model.sft_options import SftOptions, sft_options
from hba_core.options import merge_options, read_config_file


def test_toml_and_json_files_set_options_and_flags_win(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 1\nlr = 0.5\nlora_r = 4\ndatasets = ["mmpsy_depression"]\n')
    opts = sft_options("cls", "atlas.jsonl", "runs/r", str(toml), lr=1e-3, epochs=None, seed=None)
    assert (opts.epochs, opts.lr, opts.lora_r, opts.datasets) == (1, 1e-3, 4, ["mmpsy_depression"])
    assert opts.seed == SftOptions.seed == 0
    assert (opts.stage, opts.samples, opts.out) == ("cls", "atlas.jsonl", "runs/r")
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"epochs": 1, "lr": 0.5, "lora_r": 4, "datasets": ["mmpsy_depression"]}))
    assert sft_options("cls", "atlas.jsonl", "runs/r", str(as_json), lr=1e-3) == opts


def test_a_false_flag_overrides_the_file(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("gradient_checkpointing = true\nresume = true\n")
    opts = sft_options("qa", "s.jsonl", "o", str(toml), gradient_checkpointing=False, resume=None)
    assert opts.gradient_checkpointing is False and opts.resume is True


def test_the_arguments_win_over_the_file(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('stage = "qa"\nout = "elsewhere"\n')
    opts = sft_options("cls", "s.jsonl", "o", str(toml))
    assert (opts.stage, opts.out) == ("cls", "o")


def test_unknown_keys_are_one_line_naming_the_file(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("learning_rate = 1\nlr = 2\n")
    with pytest.raises(InputError) as error:
        sft_options("cls", "s.jsonl", "o", str(toml))
    message = str(error.value)
    assert message.startswith(f"{toml}: unknown options ['learning_rate']; valid: ") and "\n" not in message
    assert "lr" in message.split("valid: ")[1].split(", ")


def test_unparsable_files_are_one_line_naming_the_file(tmp_path):
    bad_toml = tmp_path / "run.toml"
    bad_toml.write_text("lr = = 1\n")
    with pytest.raises(InputError, match=f"^{bad_toml}: not valid TOML: .*line 1"):
        read_config_file(bad_toml, {"lr"})
    bad_json = tmp_path / "run.json"
    bad_json.write_text('{\n  "lr": 1,\n}\n')
    with pytest.raises(InputError, match=f"^{bad_json}:3: not valid JSON"):
        read_config_file(bad_json, {"lr"})
    bad_json.write_text("[1, 2]")
    with pytest.raises(InputError, match="one object of options, not list"):
        read_config_file(bad_json, {"lr"})


def test_merge_options_without_a_file_is_the_dataclass_with_the_flags_given():
    from hba_core.media_settings import MediaSettings

    assert merge_options(MediaSettings, None, {"fps": 1.0, "max_frames": None}) == MediaSettings(fps=1.0)
    with pytest.raises(TypeError, match="no options"):  # a caller's bug, not a user error
        merge_options(MediaSettings, None, {"frames": 3})


def test_sft_media_fields_share_media_settings_defaults_and_help():
    import dataclasses

    from hba_core.media_settings import MediaSettings

    sft = {f.name: f for f in dataclasses.fields(SftOptions)}
    for f in dataclasses.fields(MediaSettings):
        assert sft[f.name].default == f.default and sft[f.name].metadata["help"] == f.metadata["help"]
    opts = SftOptions(stage="cls", samples="s", out="o", fps=1.0, max_pixels=1000)
    assert opts.media() == MediaSettings(fps=1.0, max_pixels=1000)
