"""Class-incremental streams: class ids from labels, task splits and orders, presets."""

import pytest

from mmseq.continual.scenario import (FSC10_CLASS_ORDER, ClassIncremental, class_ids, fsc_class_keys,
                                      utterance_labels)
from mmseq.data.manifest import Utterance
from mmseq.errors import ConfigError, InputError


def test_fsc_rule_is_continuums_string_order():
    # 11 distinct actions, so action index 10 exists: "[10, 0, 0]" sorts before "[2, 0, 0]" (string order)
    actions = [f"a{i:02d}" for i in range(11)]
    triples = [(a, "none", "none") for a in actions]
    keys = fsc_class_keys(triples)
    assert keys[10] == "[10, 0, 0]" and keys[2] == "[2, 0, 0]"
    ids, names = class_ids(triples, rule="fsc")
    expected = sorted(keys)
    assert ids == [expected.index(k) for k in keys]
    assert ids[10] == 2 and ids[2] == 3  # "[0", "[1", "[10", "[2", ...
    assert names[ids[10]] == triples[10]


def test_fsc_rule_indexes_each_slot_separately():
    triples = [("increase", "volume", "none"), ("activate", "lights", "kitchen"), ("activate", "lights", "none"),
               ("increase", "volume", "none")]
    assert fsc_class_keys(triples) == ["[1, 1, 1]", "[0, 0, 0]", "[0, 0, 1]", "[1, 1, 1]"]
    assert class_ids(triples, rule="fsc")[0] == [2, 0, 1, 2]


def test_sorted_rule_is_alphabetical():
    ids, names = class_ids(["weather", "alarm", "iot", "alarm"])
    assert names == ["alarm", "iot", "weather"] and ids == [2, 0, 1, 0]
    with pytest.raises(ConfigError, match="class rule"):
        class_ids(["a"], rule="frequency")


def test_utterance_labels_from_fields_extra_and_slots():
    us = [Utterance("u1", "a.wav", 1.0, intent="activate_lights_none",
                    extra={"scenario": "iot", "slots": {"action": "activate", "object": "lights", "location": "none"}})]
    assert utterance_labels(us, "intent") == ["activate_lights_none"]
    assert utterance_labels(us, "scenario") == ["iot"]
    assert utterance_labels(us, rule="fsc") == [("activate", "lights", "none")]
    with pytest.raises(InputError, match="u2.*no label field 'scenario'"):
        utterance_labels([Utterance("u2", "b.wav", 1.0)], "scenario")
    with pytest.raises(InputError, match="u2.*extra.slots"):
        utterance_labels([Utterance("u2", "b.wav", 1.0)], rule="fsc")


def test_fsc10_preset_follows_cl_slu():
    s = ClassIncremental.preset("fsc10")
    assert s.num_tasks == 10 and s.increments == (4,) + (3,) * 9
    assert s.classes_of(0) == FSC10_CLASS_ORDER[:4] == (19, 27, 30, 28)
    assert s.classes_of(9) == FSC10_CLASS_ORDER[28:] == (26, 0, 13)
    assert s.seen_classes(1) == FSC10_CLASS_ORDER[:7]


@pytest.mark.parametrize("name,tasks,first", [("fsc6", 6, 6), ("fsc3", 3, 11), ("slurp6", 6, 3), ("slurp3", 3, 6)])
def test_presets_cover_every_class_once(name, tasks, first):
    s = ClassIncremental.preset(name)
    assert s.num_tasks == tasks and s.increments[0] == first
    flat = [c for t in range(tasks) for c in s.classes_of(t)]
    assert sorted(flat) == list(range(s.num_classes)) and len(flat) == s.num_classes


def test_seeded_orders_are_repeatable_permutations():
    a, b = ClassIncremental.preset("fsc6", seed=1), ClassIncremental.preset("fsc6", seed=1)
    c = ClassIncremental.preset("fsc6", seed=2)
    assert a == b and a.class_order != c.class_order
    assert sorted(a.class_order) == list(range(31))
    assert ClassIncremental.preset("fsc10", seed=0).class_order != FSC10_CLASS_ORDER


def test_task_and_seen_indices():
    s = ClassIncremental.build(6, increment=2, class_order=[5, 4, 3, 2, 1, 0])
    labels = [0, 1, 2, 3, 4, 5, 5, 0]
    assert s.task_indices(labels, 0) == [4, 5, 6]
    assert s.task_indices(labels, 2) == [0, 1, 7]
    assert s.seen_indices(labels, 1) == [2, 3, 4, 5, 6]
    assert s.task_of_class() == {5: 0, 4: 0, 3: 1, 2: 1, 1: 2, 0: 2}
    with pytest.raises(InputError, match="class ids \\[6\\]"):
        s.check_labels([0, 6])


def test_build_arguments_like_continuum():
    assert ClassIncremental.build(10, nb_tasks=5).increments == (2,) * 5
    assert ClassIncremental.build(10, nb_tasks=4, initial_increment=4).increments == (4, 2, 2, 2)
    assert ClassIncremental.build(10, increment=[5, 3, 2]).increments == (5, 3, 2)
    with pytest.raises(ConfigError, match="do not split into 3 equal tasks"):
        ClassIncremental.build(10, nb_tasks=3)
    with pytest.raises(ConfigError, match="first task of 4 and tasks of 4"):
        ClassIncremental.build(10, increment=4)
    with pytest.raises(ConfigError, match="permutation"):
        ClassIncremental.build(3, increment=1, class_order=[0, 0, 1])
    with pytest.raises(ConfigError, match="unknown stream preset"):
        ClassIncremental.preset("fsc7")
    with pytest.raises(ConfigError, match="task 3 outside"):
        ClassIncremental.build(6, increment=2).classes_of(3)
