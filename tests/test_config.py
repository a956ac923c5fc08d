import pytest

from mmseq.config import load_config
from mmseq.errors import ConfigError
from mmseq.train.config import RunConfig


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("task: sequence_reversal\nmodel: text_transformer_tiny\ntrainer:\n  max_steps: 5\n")
    return path


def test_yaml_and_overrides_fill_typed_fields(recipe):
    cfg = load_config(RunConfig, recipe, ["trainer.batch_size=8", "optim.lr=3e-4", "model_args.dropout=0.0"])
    assert (cfg.trainer.max_steps, cfg.trainer.batch_size, cfg.optim.lr) == (5, 8, 3e-4)
    assert cfg.model_args == {"dropout": 0.0}


def test_unknown_key_names_it_and_the_valid_keys(recipe):
    with pytest.raises(ConfigError, match=r"'trainer.max_stpes'.*Did you mean 'trainer.max_steps'.*trainer.seed"):
        load_config(RunConfig, recipe, ["trainer.max_stpes=3"])
    bad = recipe.with_name("bad.yaml")
    bad.write_text("task: sequence_reversal\nmodel: m\noptimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'optimizer'.*Valid choices: .*optim"):
        load_config(RunConfig, bad)


def test_mistyped_value_and_bad_choice(recipe):
    with pytest.raises(ConfigError, match="trainer.max_steps"):
        load_config(RunConfig, recipe, ["trainer.max_steps=ten"])
    with pytest.raises(ConfigError, match="unknown value for schedule.name: 'cosin'.*Did you mean 'cosine'"):
        load_config(RunConfig, recipe, ["schedule.name=cosin"])
    with pytest.raises(ConfigError, match="trainer.batch_size must be >= 1"):
        load_config(RunConfig, recipe, ["trainer.batch_size=0"])


def test_missing_required_key_and_malformed_override(tmp_path):
    from dataclasses import dataclass

    from omegaconf import MISSING

    from mmseq.train.loop import train

    @dataclass
    class Needs:
        name: str = MISSING

    with pytest.raises(ConfigError, match="'name' is required"):
        load_config(Needs, None, [])
    with pytest.raises(ConfigError, match="no model: set `model:`"):
        train(load_config(RunConfig, None, ["task=sequence_reversal", f"trainer.out_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(RunConfig, None, ["trainer.max_steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(RunConfig, tmp_path / "nope.yaml")


def test_task_args_are_validated_against_the_task(recipe):
    from mmseq.tasks import build_task

    with pytest.raises(ConfigError, match="task_args: unknown config key 'vocab'.*vocab_size"):
        build_task("sequence_reversal", {"vocab": 3})
    with pytest.raises(ConfigError, match="unknown task 'seq_reversal'.*Did you mean 'sequence_reversal'"):
        build_task("seq_reversal", {})
