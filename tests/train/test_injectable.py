"""Training is injectable: built tasks, models and callbacks; user code from the config's ``imports``; ``init_from``
with key filters and reports; freezing by pattern and for the first N steps; parameter groups; exact metrics."""

import textwrap

import pytest
import torch
from safetensors.torch import load_file

import mmseq
from mmseq.cli import main
from mmseq.errors import CheckpointError, ConfigError
from mmseq.tasks import Callback, Ratio, build_task
from mmseq.train.config import RunConfig
from mmseq.train.loop import MetricSums, load_run_config, train
from mmseq.train.schedules import make_optimizer
from mmseq.train.state import latest_checkpoint

BASE = ["task=sequence_reversal", "model=text_transformer_tiny", "task_args.num_train=64", "task_args.num_val=16",
        "task_args.num_test=16", "trainer.progress=false", "trainer.batch_size=16", "trainer.val_every=0",
        "model_args.dropout=0.0"]


def cfg(tmp_path, *overrides) -> RunConfig:
    return load_run_config(None, [*BASE, f"trainer.out_dir={tmp_path}", *overrides])


def last_weights(out_dir):
    return load_file(str(latest_checkpoint(out_dir / "checkpoints") / "model.safetensors"))


def test_built_task_model_and_callbacks_are_used(tmp_path):
    seen = []

    class Record(Callback):
        def on_validation(self, run, metrics):
            seen.append(("val", run.step, round(metrics["loss"], 6)))

        def on_train_end(self, run, summary):
            seen.append(("end", run.best_model is not None))
            summary["extra"] = 1

    task = build_task("sequence_reversal", {"num_train": 32, "num_val": 8, "num_test": 8})
    model = mmseq.create_model("text_transformer_tiny", dim=16, heads=2)
    config = load_run_config(None, ["trainer.progress=false", "trainer.batch_size=8", "trainer.max_steps=4",
                                    "trainer.val_every=2", f"trainer.out_dir={tmp_path}"])
    summary = train(config, task=task, model=model, callbacks=[Record()])
    assert [s[:2] for s in seen] == [("val", 2), ("val", 4), ("end", True)]
    assert summary["extra"] == 1 and summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert mmseq.load(tmp_path / "best").encoder.dim == 16  # the given model was trained and saved


def test_config_imports_user_code_so_mmseq_train_runs_a_recipe_task(tmp_path, capsys):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "my_task.py").write_text(textwrap.dedent('''
        from mmseq.tasks import register_task
        from mmseq.tasks.core import SequenceReversalConfig, sequence_reversal

        @register_task(config=SequenceReversalConfig)
        def short_reversal(cfg):
            cfg.max_length = 5
            return sequence_reversal(cfg)
    '''))
    (recipe / "config.yaml").write_text(textwrap.dedent('''
        imports: [my_task.py]
        task: short_reversal
        task_args: {num_train: 32, num_val: 8, num_test: 8}
        model: text_transformer_tiny
        trainer: {max_steps: 2, batch_size: 8, progress: false, val_every: 0}
    '''))
    assert main(["train", str(recipe / "config.yaml"), f"trainer.out_dir={tmp_path / 'run'}"]) == 0
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    assert main(["eval", str(recipe / "config.yaml"), "--checkpoint", str(tmp_path / "run" / "best"),
                 "--split", "test"]) == 0
    assert '"generated_accuracy"' in capsys.readouterr().out
    with pytest.raises(ConfigError, match="imports: 'nope.py' does not exist"):
        load_run_config(None, ["imports=[nope.py]"])


def test_init_from_reports_missing_and_unexpected_keys_and_is_strict_by_default(tmp_path):
    torch.manual_seed(0)
    source = mmseq.create_model("text_transformer_tiny")
    mmseq.save_pretrained(source, tmp_path / "src")
    # same architecture: everything loads
    summary = train(cfg(tmp_path / "a", f"init_from.checkpoint={tmp_path / 'src'}", "trainer.max_steps=1",
                        "optim.lr=0.0"))
    assert summary["init_from"]["loaded"] == len(source.state_dict()) and not summary["init_from"]["missing"]
    trained = last_weights(tmp_path / "a")
    assert torch.equal(trained["encoder.layers.0.attention.q_proj.weight"],
                       source.state_dict()["encoder.layers.0.attention.q_proj.weight"])
    # a filter leaves keys missing: strict refuses and names them; strict=false reports them and goes on
    with pytest.raises(CheckpointError, match="missing .*encoder.layers.0"):
        train(cfg(tmp_path / "b", f"init_from.checkpoint={tmp_path / 'src'}", "init_from.exclude=[encoder.*]",
                  "trainer.max_steps=1"))
    summary = train(cfg(tmp_path / "c", f"init_from.checkpoint={tmp_path / 'src'}", "init_from.exclude=[encoder.*]",
                        "init_from.strict=false", "trainer.max_steps=1"))
    assert any(k.startswith("encoder.layers.0") for k in summary["init_from"]["missing"])
    # renamed keys that land nowhere are unexpected
    with pytest.raises(CheckpointError, match="unexpected .*elsewhere.encoder"):
        train(cfg(tmp_path / "d", f"init_from.checkpoint={tmp_path / 'src'}", "init_from.prefix_map={encoder.: elsewhere.encoder.}",
                  "trainer.max_steps=1"))
    # another shape cannot load
    mmseq.save_pretrained(mmseq.create_model("text_transformer_tiny", ffn_dim=48), tmp_path / "other")
    with pytest.raises(CheckpointError, match="shapes differ.*feed_forward"):
        train(cfg(tmp_path / "e", f"init_from.checkpoint={tmp_path / 'other'}", "trainer.max_steps=1"))


def test_freezing_by_pattern_for_the_first_steps_then_training(tmp_path):
    torch.manual_seed(0)
    start = mmseq.create_model("text_transformer_tiny", dropout=0.0)
    mmseq.save_pretrained(start, tmp_path / "start")
    key, other = "encoder.layers.0.attention.q_proj.weight", "decoder.layers.0.self_attn.q_proj.weight"
    initial = start.state_dict()
    train(cfg(tmp_path / "frozen", f"init_from.checkpoint={tmp_path / 'start'}", "trainer.max_steps=3",
              "trainer.save_every=1", "trainer.keep_checkpoints=5", "freeze=[{params: [encoder.*], until_step: 2}]"))
    steps = sorted((tmp_path / "frozen" / "checkpoints").glob("step_*"))
    w = [load_file(str(p / "model.safetensors")) for p in steps]
    assert torch.equal(w[0][key], initial[key]) and torch.equal(w[1][key], initial[key])  # steps 1 and 2: frozen
    assert not torch.equal(w[2][key], initial[key])  # step 3 trains it
    assert not torch.equal(w[0][other], initial[other])  # the rest trains from the start
    train(cfg(tmp_path / "always", f"init_from.checkpoint={tmp_path / 'start'}", "trainer.max_steps=2",
              "freeze=[{params: ['encoder.*', 'encoder_prenet.*']}]"))
    final = last_weights(tmp_path / "always")
    assert all(torch.equal(final[k], initial[k]) for k in initial if k.startswith("encoder"))
    with pytest.raises(ConfigError, match="match no parameter"):
        train(cfg(tmp_path / "typo", "freeze=[{params: [encodr.*]}]", "trainer.max_steps=1"))


def test_parameter_groups_have_their_own_lr_and_no_decay_on_vectors():
    model = mmseq.create_model("text_transformer_tiny")
    config = load_run_config(None, ["optim.lr=1e-3", "optim.param_groups=[{params: ['decoder.*'], lr: 0.01, "
                                    "weight_decay: 0.5}]"])
    optimizer = make_optimizer(model, config.optim)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["decoder.layers.0.self_attn.q_proj.weight"])]["lr"] == 0.01
    assert by_param[id(named["decoder.layers.0.self_attn.q_proj.weight"])]["weight_decay"] == 0.5
    assert by_param[id(named["decoder.layers.0.self_attn.q_proj.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["encoder.layers.0.attention.q_proj.weight"])]["lr"] == 1e-3
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len([p for p in model.parameters()])


def test_ratio_metrics_are_exact_over_a_split_and_floats_are_item_weighted():
    sums = MetricSums()
    sums.add({"acc": Ratio(1, 4), "mean": 1.0}, items=2)
    sums.add({"acc": Ratio(3, 4), "mean": 4.0}, items=1)
    assert sums.result() == {"acc": 0.5, "mean": 2.0}  # (1 + 3) / 8; (2 * 1 + 1 * 4) / 3
