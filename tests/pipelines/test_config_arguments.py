"""The training commands' flags come from TrainConfig: one home for each setting."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from pipelines.cli import _NOT_FLAGS, CLASSIFY_ONLY, _train_config, build_parser
from pipelines.config_arguments import add_config_arguments, config_values, field_docs
from pipelines.training_config import FIELD_CHOICES, TrainConfig


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    actions = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return actions.choices[command]


def test_every_field_is_documented_and_offered() -> None:
    docs = field_docs(TrainConfig)
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [f for f in fields if not docs.get(f)] == []  # the docstring is the help: none missing
    flags = {a.dest: a for a in _subparser("classify")._actions}
    for name in fields:
        if name in _NOT_FLAGS:
            continue
        action = flags[name]
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        assert action.help.startswith(docs[name].replace("%", "%%")[:40])
        default = getattr(TrainConfig, name, None)
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        assert action.help.endswith(f"[default: {shown}]"), (name, action.help)
    pretrain = {a.dest for a in _subparser("pretrain")._actions}
    assert not set(CLASSIFY_ONLY) & pretrain and "erase_prob" in pretrain


def test_no_flag_means_the_config_default(tmp_path: Path) -> None:
    common = ["--datalist", str(tmp_path / "d.json"), "--out", str(tmp_path / "o")]
    parsed = _train_config(build_parser().parse_args(["classify", *common]), "classify")
    direct = TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "o", progress=True)
    assert parsed.to_json() == direct.to_json()
    pretrain = _train_config(build_parser().parse_args(["pretrain", *common]), "pretrain")
    assert pretrain.erase_prob == 0.5 and pretrain.mode == "pretrain"
    given = _train_config(
        build_parser().parse_args(
            [
                "classify",
                *common,
                "--spatial-size",
                "32",
                "32",
                "--no-amp",
                "--intensity-range",
                "0",
                "9",
                "--lr",
                "0.01",
            ]
        ),
        "classify",
    )
    assert (given.spatial_size, given.amp, given.intensity_range, given.lr) == (
        (32, 32),
        False,
        (0.0, 9.0),
        0.01,
    )


def test_choices_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--datalist", str(tmp_path / "d.json"), "--out", str(tmp_path / "o")]
    for name, allowed in FIELD_CHOICES.items():
        if name == "mode":
            continue
        with pytest.raises(SystemExit):
            build_parser().parse_args(["classify", *common, "--" + name.replace("_", "-"), "nope"])
        assert "invalid choice: 'nope'" in capsys.readouterr().err
        assert allowed


def test_other_commands_parse_without_the_training_flags() -> None:
    args = build_parser(training_flags=False).parse_args(["phantom", "--out", "x"])
    assert args.command == "phantom"


def test_an_annotation_without_a_command_line_form() -> None:
    @dataclasses.dataclass
    class Odd:
        """Odd.

        Args:
            table: a mapping.
        """

        table: dict[str, int] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="has no command-line form"):
        add_config_arguments(argparse.ArgumentParser(), Odd)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Odd, skip=["table"])
    assert config_values(parser.parse_args([]), Odd) == {}
    with pytest.raises(TypeError, match="must be a dataclass"):
        add_config_arguments(argparse.ArgumentParser(), int)
