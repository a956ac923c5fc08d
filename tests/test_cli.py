import json
import subprocess
import sys

import pytest

from mmseq.cli import main

RECIPE = "recipes/core/sequence_reversal/configs/default.yaml"
TINY = ["trainer.max_steps=4", "trainer.batch_size=8", "trainer.val_every=2", "trainer.progress=false",
        "task_args.num_train=64", "task_args.num_val=16"]


def test_models_lists_registered_builders(capsys):
    assert main(["models", "*_classifier_tiny"]) == 0
    assert capsys.readouterr().out.split() == ["image_classifier_tiny", "point_classifier_tiny"]
    assert main(["models", "-v", "text_transformer_tiny"]) == 0
    assert "dropout=0.1" in capsys.readouterr().out


def test_train_then_eval_the_best_checkpoint(tmp_path, capsys):
    assert main(["train", RECIPE, *TINY, f"trainer.out_dir={tmp_path}"]) == 0
    assert (tmp_path / "best" / "config.json").is_file()
    capsys.readouterr()
    assert main(["eval", RECIPE, "--checkpoint", str(tmp_path / "best"), *TINY]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"loss", "token_accuracy", "sequence_accuracy",
                                                         "generated_accuracy"}


@pytest.mark.parametrize("argv, message", [
    (["train", RECIPE, "trainer.max_stpes=3"], "unknown config key 'trainer.max_stpes'"),
    (["train", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    (["train", RECIPE, "model=nope"], "unknown model 'nope'"),
    (["train", RECIPE, "model_args.dimm=8"], "'dimm'"),
    (["eval", RECIPE, "--checkpoint", "/nonexistent"], "checkpoint '/nonexistent' does not exist"),
    (["train", RECIPE, "task=nope"], "unknown task 'nope'"),
    (["train", "recipes/tera/phone/configs/synth.yaml", "task_args.corpus=/nonexistent"],
     "manifest '/nonexistent/train.jsonl' does not exist"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, message):
    result = subprocess.run([sys.executable, "-m", "mmseq", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
