"""Class-incremental streams over a manifest's label field.

A stream splits the classes of a labelled training set into tasks learned one after the other. It is fixed by a
*class order* (a permutation of the class ids) and the number of classes each task adds (its *increments*):
task ``t`` learns the next ``increments[t]`` classes of the order. After task ``t`` a model is tested on every
class seen so far (continuum's ``scenario[:t + 1]``): :meth:`ClassIncremental.seen_indices`.

Class ids come from the label names by a rule:

* ``"sorted"``: the index of the name in the sorted list of distinct names. For SLURP's 18 scenarios this is the
  alphabetical dictionary of the authors' SLURP code (alarm = 0, ..., weather = 17).
* ``"fsc"``: continuum's ``FluentSpeech`` rule, which the published FSC class order (CL_SLU) refers to: each of
  the three slots (action, object, location) is replaced by its index among that slot's sorted distinct values,
  the three indices are written as the string ``"[a, o, l]"``, and the class id is the position of that string
  among the sorted distinct strings (string order, so ``"[10, 0, 0]"`` sorts before ``"[2, 0, 0]"``).

Presets name the streams the COCONUT / CL_SLU papers use:

=========  ==========  ==================================================================================
preset     classes     tasks
=========  ==========  ==================================================================================
fsc10      31 intents  4 then 9 x 3, CL_SLU's published class order (``FSC10_CLASS_ORDER``)
fsc6       31 intents  6 then 5 x 5 (the split sizes are not published: the first task takes the remainder,
                       as in fsc10)
fsc3       31 intents  11 then 2 x 10 (likewise)
slurp6     18          6 x 3 (the authors' SLURP defaults: increment 3)
slurp3     18          3 x 6
=========  ==========  ==================================================================================

Orders for fsc6 / fsc3 / slurp are the identity unless a seed draws a permutation (``np.random.default_rng``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmseq.errors import ConfigError, InputError

# CL_SLU (Cappellazzo et al., Interspeech 2023) main.py: the FSC class order of its 10-task stream.
FSC10_CLASS_ORDER = (19, 27, 30, 28, 15, 4, 2, 9, 10, 22, 11, 7, 1, 25, 16, 14, 5, 8, 29, 12, 21, 17, 3, 20, 23, 6,
                     18, 24, 26, 0, 13)  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {
    "fsc10": {"num_classes": 31, "initial_increment": 4, "increment": 3, "class_order": FSC10_CLASS_ORDER},
    "fsc6": {"num_classes": 31, "initial_increment": 6, "increment": 5},
    "fsc3": {"num_classes": 31, "initial_increment": 11, "increment": 10},
    "slurp6": {"num_classes": 18, "increment": 3},
    "slurp3": {"num_classes": 18, "increment": 6},
}

FSC_SLOTS = ("action", "object", "location")


def sorted_class_names(names: Sequence[str]) -> list[str]:
    """The ``"sorted"`` rule: distinct names in sorted order; a name's class id is its index."""
    return sorted(set(names))


def fsc_class_keys(triples: Sequence[Sequence[str]]) -> list[str]:
    """The ``"fsc"`` rule's key of every triple (``"[a, o, l]"`` of per-slot sorted indices), in input order."""
    if not triples:
        return []
    for i, triple in enumerate(triples):
        if len(triple) != 3:
            raise InputError(f"FSC label {i}: expected (action, object, location), got {triple!r}")
    values = [sorted({t[slot] for t in triples}) for slot in range(3)]
    index = [{v: i for i, v in enumerate(vs)} for vs in values]
    return [str([index[slot][t[slot]] for slot in range(3)]) for t in triples]


def class_ids(labels: Sequence[Any], rule: str = "sorted") -> tuple[list[int], list[Any]]:
    """Class ids of ``labels`` by ``rule`` (``"sorted"`` over names, ``"fsc"`` over slot triples).

    Returns:
        ``(ids, names)``: one id per label, and the label of every class id (for ``"fsc"`` the slot triple).
    """
    if rule == "sorted":
        names = sorted_class_names(labels)
        lookup = {n: i for i, n in enumerate(names)}
        return [lookup[x] for x in labels], names
    if rule == "fsc":
        triples = [tuple(t) for t in labels]
        keys = fsc_class_keys(triples)
        distinct = sorted(set(keys))
        lookup = {k: i for i, k in enumerate(distinct)}
        names: list[Any] = [None] * len(distinct)
        for key, triple in zip(keys, triples):
            names[lookup[key]] = triple
        return [lookup[k] for k in keys], names
    raise ConfigError(f"class rule {rule!r}: expected 'sorted' or 'fsc'")


def utterance_labels(utterances: Sequence[Any], field: str = "intent", rule: str = "sorted") -> list[Any]:
    """The label of every manifest utterance for :func:`class_ids`.

    ``field`` is an :class:`~mmseq.data.manifest.Utterance` attribute (``"intent"``) or a key of its ``extra``
    (SLURP's ``"scenario"``); with ``rule="fsc"`` the label is the slot triple ``extra["slots"]`` (both FSC's
    preparer and the synthetic commands write it).
    """
    out = []
    for u in utterances:
        extra = getattr(u, "extra", None) or {}
        if rule == "fsc":
            slots = extra.get("slots")
            if not isinstance(slots, dict) or any(k not in slots for k in FSC_SLOTS):
                raise InputError(f"utterance {u.id}: the 'fsc' class rule needs extra.slots with "
                                 f"{', '.join(FSC_SLOTS)}")
            out.append(tuple(str(slots[k]) for k in FSC_SLOTS))
            continue
        value = u.field(field)
        if value is None:
            raise InputError(f"utterance {u.id}: no label field {field!r} (neither an attribute nor in extra)")
        out.append(str(value))
    return out


@dataclass(frozen=True)
class ClassIncremental:
    """A class-incremental stream: ``class_order`` split into consecutive tasks of ``increments`` classes."""

    class_order: tuple[int, ...]
    increments: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.class_order)
        if sorted(self.class_order) != list(range(n)):
            raise ConfigError(f"class_order must be a permutation of 0..{n - 1}, got {list(self.class_order)}")
        if not self.increments or any(int(k) <= 0 for k in self.increments) or sum(self.increments) != n:
            raise ConfigError(f"increments {list(self.increments)} must be positive and sum to the {n} classes")

    @classmethod
    def build(cls, num_classes: int, *, nb_tasks: int | None = None, increment: int | Sequence[int] | None = None,
              initial_increment: int = 0, class_order: Sequence[int] | None = None,
              seed: int | None = None) -> ClassIncremental:
        """continuum's ``ClassIncremental`` arguments.

        Args:
            num_classes: classes in the stream.
            nb_tasks: split into this many equal tasks (``num_classes`` must divide evenly; otherwise give
                ``initial_increment``).
            increment: classes per task after the first (an int), or every task's count (a list).
            initial_increment: classes of the first task (0: the same as ``increment``).
            class_order: an explicit order; otherwise ``seed`` draws a permutation, or the identity.
        """
        if num_classes <= 0:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        if isinstance(increment, Sequence) and not isinstance(increment, str):
            increments = [int(k) for k in increment]
        elif increment:
            first = initial_increment or increment
            rest = num_classes - first
            if rest < 0 or rest % increment:
                raise ConfigError(f"{num_classes} classes do not split into a first task of {first} and tasks of "
                                  f"{increment}")
            increments = [first] + [int(increment)] * (rest // increment)
        elif nb_tasks:
            if initial_increment:
                rest = num_classes - initial_increment
                if nb_tasks < 2 or rest % (nb_tasks - 1):
                    raise ConfigError(f"{rest} classes after the first task do not split into {nb_tasks - 1} tasks")
                increments = [initial_increment] + [rest // (nb_tasks - 1)] * (nb_tasks - 1)
            elif num_classes % nb_tasks:
                raise ConfigError(f"{num_classes} classes do not split into {nb_tasks} equal tasks; give "
                                  "initial_increment and increment")
            else:
                increments = [num_classes // nb_tasks] * nb_tasks
        else:
            raise ConfigError("a stream needs nb_tasks or increment")
        if class_order is not None:
            order = tuple(int(c) for c in class_order)
            if len(order) != num_classes:
                raise ConfigError(f"class_order has {len(order)} classes, the stream {num_classes}")
        elif seed is not None:
            order = tuple(int(c) for c in np.random.default_rng(seed).permutation(num_classes))
        else:
            order = tuple(range(num_classes))
        return cls(order, tuple(increments))

    @classmethod
    def preset(cls, name: str, *, seed: int | None = None, class_order: Sequence[int] | None = None
               ) -> ClassIncremental:
        """One of :data:`PRESETS`; ``seed`` or ``class_order`` replaces its order (fsc10's published one too)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown stream preset {name!r}; known: {', '.join(PRESETS)}")
        args = dict(PRESETS[name])
        if class_order is not None or seed is not None:
            args["class_order"] = class_order
        return cls.build(**args, seed=seed)

    @property
    def num_tasks(self) -> int:
        return len(self.increments)

    @property
    def num_classes(self) -> int:
        return len(self.class_order)

    def classes_of(self, task: int) -> tuple[int, ...]:
        """The classes task ``task`` adds."""
        self._check(task)
        start = sum(self.increments[:task])
        return self.class_order[start:start + self.increments[task]]

    def seen_classes(self, task: int) -> tuple[int, ...]:
        """Every class of tasks ``0..task``."""
        self._check(task)
        return self.class_order[:sum(self.increments[:task + 1])]

    def task_of_class(self) -> dict[int, int]:
        """Class id -> the task that adds it."""
        return {c: t for t in range(self.num_tasks) for c in self.classes_of(t)}

    def task_indices(self, labels: Sequence[int], task: int) -> list[int]:
        """Positions of ``labels`` (class ids of a split) in task ``task``'s classes: its training / validation
        data."""
        wanted = set(self.classes_of(task))
        return [i for i, y in enumerate(labels) if int(y) in wanted]

    def seen_indices(self, labels: Sequence[int], task: int) -> list[int]:
        """Positions of ``labels`` in any class seen by task ``task``: the test set after it."""
        wanted = set(self.seen_classes(task))
        return [i for i, y in enumerate(labels) if int(y) in wanted]

    def check_labels(self, labels: Sequence[int], name: str = "labels") -> None:
        """Raise if a label lies outside the stream's classes."""
        bad = sorted({int(y) for y in labels if not 0 <= int(y) < self.num_classes})
        if bad:
            raise InputError(f"{name}: class ids {bad[:8]} outside the stream's {self.num_classes} classes")

    def _check(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise ConfigError(f"task {task} outside the stream's {self.num_tasks} tasks")

    def to_json(self) -> dict[str, list[int]]:
        return {"class_order": list(self.class_order), "increments": list(self.increments)}
