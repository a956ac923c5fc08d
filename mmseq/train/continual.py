"""``mmseq continual run CONFIG [key=value ...]``: a class-incremental stream trained task after task.

A stream config holds an ordinary run config (``run``: task ``slu_seq2seq``, model, optimizer, trainer) and the
stream around it::

    stream: {preset: fsc6, seed: 0, class_rule: sorted}   # or num_classes / increment / initial_increment / class_order
    strategy: {name: er}          # finetune | er | offline | audio_kd | token_kd | seq_kd | coconut | coconut_seq_kd
    memory: {fraction: 0.01, selection: random}            # or size; closest | herding; fixed_memory
    out_dir: runs/coconut/er_fsc6_seed0
    run: {task: slu_seq2seq, task_args: {...}, model: ..., trainer: {max_steps: ...}}

Task ``t`` is one training run of the loop in ``out_dir/task_<t>`` (so a run killed inside a task resumes there
exactly), on the classes task ``t`` adds (``finetune``), plus the rehearsal memory's utterances (``er``), or on every
class seen so far (``offline``: joint training, the upper bound). The distillation strategies (``audio_kd``,
``token_kd``, ``seq_kd``) and COCONUT (NSPT + MM; ``coconut_seq_kd`` adds sequence-level KD) replay too, and take
task ``t - 1``'s best model as the teacher; their weights are ``strategy.*`` (``strategy.nspt=0`` or
``strategy.mm=0`` takes one of COCONUT's losses out: the paper's ablation). Task 0 starts as ``run.init_from``
says; task ``t > 0`` from task ``t - 1``'s best model. After each task the best model labels the test utterances
of every seen class, which fills a row of the accuracy matrix (and, for label + transcript targets, gives
the transcripts' WER, ``seen_wer``), and the memory takes the new classes' exemplars
(features for ``closest`` / ``herding``: the mean-pooled last encoder layer of the model just trained).
``out_dir/stream.json`` (written atomically after each task) holds the finished tasks' rows, the memory and the
stream, so a stream restarted after a task boundary goes on from there. At the end ``metrics.json`` has the
accuracy matrix, Avg Acc, Last Acc, backward transfer and forgetting (the papers' definitions, and continuum's under
``continuum``), and ``accuracy_matrix.png`` / ``accuracy.png`` draw them. ``mmseq continual compare RUN ...``
tabulates finished streams (mean +- std per strategy and memory) and draws their curves on one plot.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmseq.atomic import atomic_write_text
from mmseq.checkpoint import load
from mmseq.config import check_choice, load_config, to_dict
from mmseq.continual import AccuracyMatrix, ClassIncremental, RehearsalMemory, class_ids, utterance_labels
from mmseq.errors import ConfigError
from mmseq.metrics import word_error_rate
from mmseq.postnets.classifier import masked_mean
from mmseq.tasks.slu import SluConfig, build_slu
from mmseq.tasks.speecht5.data import pad_waveforms
from mmseq.tasks.speecht5.text import normalize_text
from mmseq.train.config import RunConfig
from mmseq.train.loop import import_user_code, train

STRATEGIES = ("finetune", "er", "offline", "audio_kd", "token_kd", "seq_kd", "coconut", "coconut_seq_kd")
# what each strategy turns on besides the rehearsal memory (every strategy but finetune and offline replays)
_TERMS = {"audio_kd": ("audio_kd",), "token_kd": ("token_kd",), "seq_kd": ("seq_kd",), "coconut": ("nspt", "mm"),
          "coconut_seq_kd": ("nspt", "mm", "seq_kd")}


@dataclass
class StreamConfig:
    preset: str | None = None  # fsc10 | fsc6 | fsc3 | slurp6 | slurp3 (mmseq.continual.PRESETS)
    seed: int | None = None  # draws the class order (None: the preset's or the identity)
    class_order: list[int] | None = None
    num_classes: int = 0  # without a preset: the stream's classes (0: those of the training split)
    increment: int = 0
    initial_increment: int = 0
    class_rule: str = "sorted"  # class ids from label names: sorted | fsc (continuum's FluentSpeech ids)

    def __post_init__(self) -> None:
        check_choice("stream.class_rule", self.class_rule, ["sorted", "fsc"])


@dataclass
class StrategyConfig:
    name: str = "finetune"
    # the weights and settings of the terms a strategy turns on (mmseq.tasks.slu); COCONUT's weights and
    # temperatures are not published (shared/reference/tera_coconut.md, B6): these are this package's defaults
    audio_kd: float = 1.0
    token_kd: float = 1.0
    kd_temperature: float = 2.0
    kd_on: str = "rehearsal"
    seq_kd_beams: int = 5
    nspt: float = 0.1
    nspt_temperature: float = 0.1
    nspt_self_positive: bool = True
    mm: float = 0.1
    mm_temperature: float = 0.1
    mm_on: str = "new"

    def __post_init__(self) -> None:
        check_choice("strategy.name", self.name, STRATEGIES)

    @property
    def replays(self) -> bool:
        return self.name not in ("finetune", "offline")

    def task_args(self, teacher: str | None) -> dict[str, Any]:
        """The slu_seq2seq arguments of this strategy for a task whose teacher is ``teacher`` (None: the first
        task, where only MM, which needs no teacher, applies)."""
        terms = _TERMS.get(self.name, ())
        args: dict[str, Any] = {}
        if "mm" in terms and self.mm > 0:
            args.update(mm=self.mm, mm_temperature=self.mm_temperature, mm_on=self.mm_on)
        if teacher is None:
            return args
        if "audio_kd" in terms:
            args.update(audio_kd=self.audio_kd, kd_on=self.kd_on)
        if "token_kd" in terms:
            args.update(token_kd=self.token_kd, kd_temperature=self.kd_temperature, kd_on=self.kd_on)
        if "seq_kd" in terms:
            args.update(seq_kd=True, seq_kd_beams=self.seq_kd_beams)
        if "nspt" in terms and self.nspt > 0:
            args.update(nspt=self.nspt, nspt_temperature=self.nspt_temperature,
                        nspt_self_positive=self.nspt_self_positive)
        if set(args) - {"mm", "mm_temperature", "mm_on"}:
            args["teacher"] = teacher
        return args


@dataclass
class MemoryConfig:
    size: int | None = None
    fraction: float | None = None
    selection: str = "random"
    fixed_memory: bool = True
    seed: int = 0


@dataclass
class ContinualConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    out_dir: str = "runs/continual"
    feature_batch_size: int = 16
    run: RunConfig = field(default_factory=RunConfig)


def load_continual_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ContinualConfig:
    cfg = load_config(ContinualConfig, path, overrides)
    if cfg.run.task != "slu_seq2seq":
        raise ConfigError(f"run.task is {cfg.run.task!r}; a continual stream trains the slu_seq2seq task")
    base = Path(path).resolve().parent
    cfg.run.imports = [str(base / e) if e.endswith(".py") and (base / e).is_file() else e for e in cfg.run.imports]
    import_user_code(cfg.run.imports)
    return cfg


def build_stream(cfg: StreamConfig, num_classes: int) -> ClassIncremental:
    if cfg.preset is not None:
        stream = ClassIncremental.preset(cfg.preset, seed=cfg.seed, class_order=cfg.class_order)
    else:
        if not cfg.increment:
            raise ConfigError("stream: give a preset, or increment (and initial_increment)")
        stream = ClassIncremental.build(cfg.num_classes or num_classes, increment=cfg.increment,
                                        initial_increment=cfg.initial_increment, class_order=cfg.class_order,
                                        seed=cfg.seed)
    if stream.num_classes != num_classes:
        raise ConfigError(f"the stream has {stream.num_classes} classes but the training split {num_classes}")
    return stream


def class_labels(utterances: list, label_field: str, rule: str) -> tuple[list[int], list[str]]:
    """Class ids of the training utterances and the label string of each class id (what the SLU task filters
    and generates)."""
    ids, _ = class_ids(utterance_labels(utterances, label_field, rule), rule)
    names: dict[int, str] = {}
    for u, c in zip(utterances, ids):
        value = u.field(label_field)
        if names.setdefault(c, str(value)) != str(value):
            raise ConfigError(f"class {c} has two {label_field} values ({names[c]!r}, {value!r}) under rule {rule!r}")
    return ids, [names[c] for c in range(len(names))]


@torch.no_grad()
def pooled_features(model: torch.nn.Module, dataset: Any, positions: list[int], batch_size: int) -> torch.Tensor:
    """Mean over valid frames of the last encoder layer, ``[len(positions), D]``."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(positions), batch_size):
        wav, lengths = pad_waveforms([dataset[i].audio for i in positions[start:start + batch_size]])
        feats = model.forward_features(wav.to(device), lengths.to(device))
        out.append(masked_mean(feats.hidden_states[-1], feats.lengths).float().cpu())
    return torch.cat(out)


def transcript_wer(data: Any, positions: list[int], hypotheses: list[str]) -> float | None:
    """WER of the generated transcripts of test items ``positions`` (None when the targets have none)."""
    if data.cfg.target != "label_transcript":
        return None
    refs = [normalize_text(data.utterances["test"][i].text or "", data.cfg.lowercase) for i in positions]
    pairs = [(h, r) for h, r in zip(hypotheses, refs) if r]
    return word_error_rate([h for h, _ in pairs], [r for _, r in pairs]).rate if pairs else None


def _state_path(out_dir: Path) -> Path:
    return out_dir / "stream.json"


def run_stream(cfg: ContinualConfig) -> dict[str, Any]:
    """Train (or resume) the whole stream; returns the summary written to ``metrics.json``."""
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_args = SluConfig(**cfg.run.task_args)
    base_task, full = build_slu(base_args)
    for key, info in (("vocab_size", "vocab_size"), ("feature_dim", "feature_dim")):
        # sizes the task knows: 0 (or absent, for the vocabulary) in the config means "what the task needs"
        if info in base_task.info and not cfg.run.model_args.get(key):
            cfg.run.model_args[key] = base_task.info[info]
    train_utts = full.utterances["train"]
    ids, names = class_labels(train_utts, base_args.label_field, cfg.stream.class_rule)
    stream = build_stream(cfg.stream, len(names))
    label_to_class = {n: c for c, n in enumerate(names)}
    task_of = stream.task_of_class()
    test_utts = full.utterances["test"]
    if not test_utts:
        raise ConfigError("a continual stream needs a test manifest (run.task_args.test_manifest)")
    test_classes = [label_to_class.get(lab, -1) for lab in full.labels["test"]]
    unknown = sorted({lab for lab, c in zip(full.labels["test"], test_classes) if c < 0})
    if unknown:
        raise ConfigError(f"test labels {unknown[:5]} do not occur in the training split")
    memory = None
    if cfg.strategy.replays:
        memory = RehearsalMemory(size=cfg.memory.size, fraction=cfg.memory.fraction, selection=cfg.memory.selection,
                                 fixed_memory=cfg.memory.fixed_memory, seed=cfg.memory.seed)
    matrix = AccuracyMatrix(stream.num_tasks)
    done, task_runs, rows = 0, [], []
    state_file = _state_path(out_dir)
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        if state["stream"] != stream.to_json() or state["strategy"] != cfg.strategy.name:
            raise ConfigError(f"{state_file} belongs to another stream or strategy; use another out_dir")
        for t, row in enumerate(state["rows"]):
            matrix.add(t, row["predictions"], row["targets"], row["item_tasks"])
        if memory is not None and state.get("memory") is not None:
            memory.load_state_dict(state["memory"])
        done, task_runs, rows = len(state["rows"]), state["task_runs"], state["rows"]

    for t in range(done, stream.num_tasks):
        classes = stream.seen_classes(t) if cfg.strategy.name == "offline" else stream.classes_of(t)
        seen = stream.seen_classes(t)
        run = copy.deepcopy(cfg.run)
        run.trainer.out_dir = str(out_dir / f"task_{t}")
        args = dict(run.task_args)
        args["keep_labels"] = [names[c] for c in classes]
        args["test_manifest"] = ""  # the stream tests every seen class itself, below
        if memory is not None and len(memory):
            positions, _ = memory.items()
            args["rehearsal_ids"] = [train_utts[p].id for p in positions]
        args.update(cfg.strategy.task_args(str(out_dir / f"task_{t - 1}" / "best") if t > 0 else None))
        run.task_args = args
        if t > 0:
            run.init_from = type(run.init_from)(checkpoint=str(out_dir / f"task_{t - 1}" / "best"), strict=True)
            run.init_also = []
        task, _ = build_slu(SluConfig(**args))
        summary = train(run, task=task)
        model = load(out_dir / f"task_{t}" / "best")
        # the accuracy matrix row: every seen class's test utterances, labelled by the model
        test_positions = [i for i, c in enumerate(test_classes) if c in set(seen)]
        decoded = full.decode(model, "test", test_positions)
        predicted = [label for label, _ in decoded]
        wer = transcript_wer(full, test_positions, [text for _, text in decoded])
        row = {"predictions": [label_to_class.get(p, -1) for p in predicted],
               "targets": [test_classes[i] for i in test_positions],
               "item_tasks": [task_of[test_classes[i]] for i in test_positions]}
        matrix.add(t, row["predictions"], row["targets"], row["item_tasks"])
        rows.append(row)
        if memory is not None:
            new = [i for i, c in enumerate(ids) if c in set(stream.classes_of(t))]
            feats = None
            if memory.selection != "random":
                feats = pooled_features(model, full.items["train"], new, cfg.feature_batch_size)
            memory.update(new, [ids[i] for i in new], total_classes=stream.num_classes, features=feats,
                          train_size=len(train_utts))
        task_runs.append({"task": t, "classes": list(stream.classes_of(t)), "seen_accuracy": matrix.seen[t],
                          "seen_wer": wer,
                          "train_utterances": summary["task"]["train_utterances"],
                          "rehearsal_utterances": summary["task"]["rehearsal_utterances"],
                          "train_seconds": summary["train_seconds_this_session"]})
        state = {"stream": stream.to_json(), "strategy": cfg.strategy.name, "rows": rows, "task_runs": task_runs,
                 "memory": memory.state_dict() if memory is not None else None}
        atomic_write_text(state_file, json.dumps(state))
        print(f"task {t}: accuracy on the {len(seen)} seen classes {matrix.seen[t]:.4f}", flush=True)

    result = {"stream": stream.to_json(), "strategy": cfg.strategy.name, "class_names": names,
              "accuracy_matrix": matrix.to_json(), **matrix.summary(),
              "continuum": matrix.summary(convention="continuum"), "tasks": task_runs,
              "memory_size": len(memory) if memory is not None else 0, "config": to_dict(cfg)}
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2))
    plot_stream(matrix, out_dir, cfg.strategy.name)
    return result


def plot_stream(matrix: AccuracyMatrix, out_dir: Path, label: str) -> None:
    """``accuracy_matrix.png`` (R as a heat map) and ``accuracy.png`` (seen-class accuracy after each task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = matrix.num_tasks
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * t, 0.8 + 0.6 * t))
    image = ax.imshow(matrix.R, vmin=0, vmax=1, cmap="viridis")
    for i in range(t):
        for j in range(i + 1):
            ax.text(j, i, f"{100 * matrix.R[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if matrix.R[i, j] < 0.6 else "black")
    ax.set_xlabel("test task")
    ax.set_ylabel("after training task")
    ax.set_title(f"accuracy matrix ({label})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_matrix.png", dpi=120)
    plt.close(fig)
    plot_accuracy_curves({label: [matrix.seen]}, out_dir / "accuracy.png")


def plot_accuracy_curves(curves: dict[str, list[list[float]]], path: Path) -> None:
    """Seen-class accuracy after each task: one line per name, the mean of its runs (a list of curves) with a band
    of +- one standard deviation where there are several; the legend beside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    longest = 1
    for name, runs in curves.items():
        tasks = min(len(r) for r in runs)
        longest = max(longest, tasks)
        acc = 100 * np.array([r[:tasks] for r in runs], dtype=float)
        x = np.arange(1, tasks + 1)
        label = name if len(runs) == 1 else f"{name} ({len(runs)} runs)"
        line, = ax.plot(x, acc.mean(0), marker="o", label=label)
        if len(runs) > 1:
            spread = acc.std(0, ddof=1)
            ax.fill_between(x, acc.mean(0) - spread, acc.mean(0) + spread, color=line.get_color(), alpha=0.15)
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("after task")
    ax.set_ylabel("accuracy on the seen classes (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def strategy_label(metrics: dict[str, Any]) -> str:
    """A stream's strategy, with COCONUT's ablations named (``coconut without NSPT`` / ``without MM``)."""
    name = metrics["strategy"]
    if name.startswith("coconut"):
        weights = metrics["config"]["strategy"]
        off = [term for term, key in (("NSPT", "nspt"), ("MM", "mm")) if not weights.get(key)]
        if off:
            name += " without " + " and ".join(off)
    return name


def compare_runs(runs: list[str | Path], plot: str | Path | None = None) -> str:
    """A markdown table of finished streams (their ``metrics.json``), grouped by strategy and memory: Avg Acc,
    Last Acc, BWT and forgetting in % as mean +- std over the runs of a group (seeds, class orders), and the number
    of runs. ``plot``: also draw each row's mean seen-class accuracy curve (with its spread) on one figure."""
    import statistics

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            raise ConfigError(f"{run}: no metrics.json (not a finished stream)")
        m = json.loads(path.read_text())
        if "accuracy_matrix" not in m:
            raise ConfigError(f"{path} is not a continual stream's metrics")
        memory = m["config"]["memory"]
        size = "-" if not m["memory_size"] else (f"{100 * memory['fraction']:g}%" if memory.get("fraction")
                                                 else str(memory["size"]))
        groups.setdefault((strategy_label(m), size), []).append(m)

    def cell(values: list[float]) -> str:
        mean = 100 * statistics.fmean(values)
        return f"{mean:.2f}" if len(values) < 2 else f"{mean:.2f} +- {100 * statistics.stdev(values):.2f}"

    def last_wer(m: dict[str, Any]) -> float | None:
        return m["tasks"][-1].get("seen_wer") if m["tasks"] else None

    lines = ["| strategy | memory | runs | Avg Acc | Last Acc | BWT | forgetting | last WER | training wall min |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (strategy, size), ms in groups.items():
        wers = [w for w in map(last_wer, ms) if w is not None]
        minutes = statistics.fmean(sum(t["train_seconds"] for t in m["tasks"]) / 60 for m in ms)
        lines.append(f"| {strategy} | {size} | {len(ms)} | " + " | ".join(
            cell([m[key] for m in ms]) for key in ("avg_acc", "last_acc", "bwt", "forgetting"))
            + f" | {cell(wers) if len(wers) == len(ms) else '-'} | {minutes:.1f} |")
    if plot is not None:  # one line per row of the table: its runs' mean
        curves = {f"{strategy}, memory {size}" if size != "-" else strategy:
                  [m["accuracy_matrix"]["seen"] for m in ms] for (strategy, size), ms in groups.items()}
        plot_accuracy_curves(curves, Path(plot))
    return "\n".join(lines)


def _compare(args: argparse.Namespace) -> int:
    print(compare_runs(args.runs, args.plot))
    return 0


def _run(args: argparse.Namespace) -> int:
    result = run_stream(load_continual_config(args.config, args.overrides))
    print(json.dumps({k: result[k] for k in ("avg_acc", "last_acc", "bwt", "forgetting")}, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("continual", help="continual-learning experiments")
    csub = p.add_subparsers(dest="continual_command", required=True, metavar="SUBCOMMAND")
    r = csub.add_parser("run", help="train a class-incremental stream (resumes from its out_dir)")
    r.add_argument("config", help="stream YAML file (stream, strategy, memory, out_dir, run)")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. strategy.name=er memory.fraction=0.02")
    r.set_defaults(run=_run)
    c = csub.add_parser("compare", help="a markdown table of finished streams (mean +- std per strategy)")
    c.add_argument("runs", nargs="+", help="stream out_dirs")
    c.add_argument("--plot", default=None, help="also draw every run's accuracy curve into this PNG")
    c.set_defaults(run=_compare)
