import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels, trainId2label

from pisr_ros import taxonomy as t


def test_nineteen_training_classes_in_trainid_order():
    assert t.NUM_CLASSES == 19
    assert [c.train_id for c in t.CLASSES] == list(range(19))
    for c in t.CLASSES:
        ref = trainId2label[c.train_id]
        assert (c.name, c.label_id, c.is_thing, c.color) == (ref.name, ref.id, ref.hasInstances, ref.color)


def test_things_are_trainids_11_to_18():
    assert t.THING_TRAIN_IDS == tuple(range(11, 19))
    assert t.STUFF_TRAIN_IDS == tuple(range(0, 11))
    assert t.IS_THING.tolist() == [i >= 11 for i in range(19)]


def test_lookup_tables_roundtrip_and_send_the_rest_to_void():
    train = np.arange(19, dtype=np.uint8)
    assert (t.LABEL_TO_TRAIN[t.TRAIN_TO_LABEL[train]] == train).all()
    assert t.TRAIN_TO_LABEL[255] == 0
    unused = [lab.id for lab in labels if lab.trainId in (255, -1) and lab.id >= 0]
    assert set(t.LABEL_TO_TRAIN[unused].tolist()) == {255}
    assert tuple(t.TRAIN_COLORS[13]) == (0, 0, 142)  # car
    assert tuple(t.LABEL_COLORS[1]) == (0, 0, 0) and tuple(t.LABEL_COLORS[5]) == (111, 74, 0)


def test_lookups_by_name_and_label_id():
    assert t.by_name("traffic light").train_id == 6
    assert t.by_label_id(26).name == "car"
    with pytest.raises(KeyError, match="no training class named 'cat'"):
        t.by_name("cat")
    with pytest.raises(KeyError, match="labelId 9"):
        t.by_label_id(9)  # parking: evaluated as void
