"""OANet's spatial ranking module as YOLO-Panoptic's merge (issue 16): the painted tensor and the
ranking scores against plain loops, the loss's ignored cells, an occlusion the detection order
gets wrong and an overfitted module gets right, and merge: ranking through the Predictor (torch
and ONNX Runtime), its refusal without weights, and `pisr-ros train-ranking`."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pisr_ros.models.yolo_panoptic.spatial_ranking import (CHECKPOINT_KEY, IGNORE, SpatialRanking, paint,
                                                           ranking_loss, ranking_scores, ranking_target)
from pisr_ros.panoptic import LABEL_DIVISOR
from pisr_ros.postprocess.yolo_panoptic import YoloPanopticSettings, merge
from pisr_ros.taxonomy import NUM_CLASSES, THING_TRAIN_IDS

CAR, PERSON = THING_TRAIN_IDS.index(13), THING_TRAIN_IDS.index(11)  # detection classes (index into thing_ids)


def random_masks(seed, k=6, h=9, w=11, classes=4):
    rng = np.random.default_rng(seed)
    masks = np.zeros((k, h, w), bool)
    for i in range(k):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        masks[i, y:y + rng.integers(2, 6), x:x + rng.integers(2, 7)] = True
    return masks, rng.integers(0, classes, k)


def reference_paint(masks, classes, num_things):
    k, h, w = masks.shape
    out = np.zeros((num_things, h, w))
    for i in range(k):
        for y in range(h):
            for x in range(w):
                if masks[i, y, x]:
                    out[classes[i], y, x] = 1.0
    return out


def reference_scores(module, masks, classes):
    """Paint, k x 1 then 1 x k convolution (zero padding), softmax per cell, mean of each
    instance's class channel over its mask: loops over every index."""
    t, kernel, p = module.num_things, module.kernel, module.kernel // 2
    w1, b1 = module.vertical.weight.detach().double().numpy(), module.vertical.bias.detach().double().numpy()
    w2, b2 = module.horizontal.weight.detach().double().numpy(), module.horizontal.bias.detach().double().numpy()
    painted = reference_paint(masks, classes, t)
    _, h, w = painted.shape
    mid = np.zeros((t, h, w))
    for o in range(t):
        for y in range(h):
            for x in range(w):
                acc = b1[o]
                for i in range(t):
                    for d in range(kernel):
                        if 0 <= y + d - p < h:
                            acc += w1[o, i, d, 0] * painted[i, y + d - p, x]
                mid[o, y, x] = acc
    logits = np.zeros((t, h, w))
    for o in range(t):
        for y in range(h):
            for x in range(w):
                acc = b2[o]
                for i in range(t):
                    for d in range(kernel):
                        if 0 <= x + d - p < w:
                            acc += w2[o, i, 0, d] * mid[i, y, x + d - p]
                logits[o, y, x] = acc
    scores = []
    for k in range(len(masks)):
        total, count = 0.0, 0
        for y in range(h):
            for x in range(w):
                if masks[k, y, x]:
                    z = [math.exp(logits[c, y, x]) for c in range(t)]
                    total += z[classes[k]] / sum(z)
                    count += 1
        scores.append(total / count if count else 0.0)
    return painted, np.array(scores)


@pytest.mark.parametrize("seed", [0, 1])
def test_painted_tensor_and_ranking_scores_match_plain_loops(seed):
    torch.manual_seed(seed)
    masks, classes = random_masks(seed)
    module = SpatialRanking(4, 5)
    painted = paint(torch.tensor(masks), torch.tensor(classes), 4)
    want_painted, want_scores = reference_scores(module, masks, classes)
    np.testing.assert_array_equal(painted.numpy(), want_painted)
    # The case has what the reference is about: shared channels and cells of two classes.
    assert len(set(classes.tolist())) < len(classes) and (want_painted.sum(0) >= 2).any()
    got = ranking_scores(module, torch.tensor(masks).float(), torch.tensor(classes))
    np.testing.assert_allclose(got.detach().numpy(), want_scores, rtol=1e-5)


def test_the_loss_looks_only_where_two_classes_meet_on_one_of_them():
    h, w = 6, 8
    masks = np.zeros((4, h, w), bool)
    masks[0, :, 0:4] = True  # class 0 ...
    masks[1, :, 2:5] = True  # ... and another instance of class 0 over it: one channel, nothing to choose
    masks[2, :, 6:8] = True  # class 1 alone
    classes = torch.tensor([0, 0, 1, 2])
    truth = torch.full((h, w), 1)  # a class-1 thing everywhere
    truth[:, 4] = IGNORE  # stuff or void
    painted = paint(torch.tensor(masks), classes, 3)
    target = ranking_target(painted, truth)
    assert (target == IGNORE).all()  # no cell has two classes painted
    logits = torch.randn(1, 3, h, w, requires_grad=True)
    loss = ranking_loss(logits, target[None])
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()

    # Class 2 over the class-1 instance: the overlap is supervised where the truth is class 1
    # or 2, not where it is stuff or a class painted nowhere there.
    masks[3, 1:5, 3:8] = True
    truth[1, 5] = 0
    painted = paint(torch.tensor(masks), classes, 3)
    target = ranking_target(painted, truth)
    want = np.full((h, w), IGNORE)
    want[1:5, 6:8] = 1  # class 1 and class 2 meet on class-1 truth
    # cells 3..5 meet classes 0 and 2 (or 2 alone at 5): truth 1 is neither there, so ignored
    np.testing.assert_array_equal(target.numpy(), want)
    loss = ranking_loss(logits.detach(), target[None])
    log_p = torch.log_softmax(logits.detach()[0], 0)
    by_hand = -np.mean([log_p[1, y, x].item() for y in range(1, 5) for x in range(6, 8)])
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_an_overfitted_module_puts_the_occluder_on_top():
    """A person stands in front of a car: the car's box is the more confident detection, so the
    heuristic gives it the overlap; a module trained on this one frame gives it to the person."""
    h, w = 24, 40
    car = np.zeros((h, w), bool)
    car[6:20, 4:32] = True
    person = np.zeros((h, w), bool)
    person[2:22, 20:28] = True
    masks = torch.tensor(np.stack([car, person])).float()  # most confident first
    classes = torch.tensor([CAR, PERSON])
    train_ids = torch.tensor([THING_TRAIN_IDS[CAR], THING_TRAIN_IDS[PERSON]])
    objectness, scores = torch.tensor([0.9, 0.6]), torch.tensor([0.85, 0.55])
    truth = torch.full((h, w), IGNORE)
    truth[torch.tensor(car)] = CAR
    truth[torch.tensor(person)] = PERSON  # the person occludes the car
    sem = torch.zeros(NUM_CLASSES, h, w)
    sem[0] = 5.0  # road around them
    cfg = YoloPanopticSettings(stuff_area=0)
    overlap = torch.tensor(car & person)

    ids, _, _ = merge(sem, masks, objectness, scores, train_ids, cfg)
    assert (ids[overlap] // LABEL_DIVISOR == THING_TRAIN_IDS[CAR]).all()  # the heuristic's mistake

    torch.manual_seed(0)
    module = SpatialRanking(len(THING_TRAIN_IDS), 7)
    painted = paint(masks, classes, module.num_things)[None]
    target = ranking_target(painted[0], truth)[None]
    assert (target != IGNORE).sum() == overlap.sum()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.02)
    for _ in range(300):
        loss = ranking_loss(module(painted), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    order = ranking_scores(module.eval(), masks, classes).detach()
    assert order[1] > order[0]
    ids, _, _ = merge(sem, masks, objectness, scores, train_ids, cfg, order)
    assert (ids[overlap] // LABEL_DIVISOR == THING_TRAIN_IDS[PERSON]).all()
    assert (ids[torch.tensor(car & ~person)] // LABEL_DIVISOR == THING_TRAIN_IDS[CAR]).all()


# ------------------------------------------------------------------------------ through the Predictor


def _tiny_checkpoint(path, ranking_bias=None):
    """An untrained tiny YOLO-Panoptic (test_yolo_panoptic's), with a ranking module whose score
    map is a constant preference over the classes (zero weights, ``ranking_bias``) when given.
    Stored settings: every candidate box kept, masks filling their boxes, so masks overlap."""
    from test_yolo_panoptic import tiny_spec

    from pisr_ros.families import get_family
    from pisr_ros.models.spec import save_checkpoint

    torch.manual_seed(0)
    spec = tiny_spec(ranking=dataclasses.replace(tiny_spec().ranking, kernel=3))
    model = get_family("yolo_panoptic").build_model(spec).eval()
    # Untrained, every box would have the same class and about the same objectness: the stride-16
    # head's boxes are made cars and the more confident, the stride-32 head's larger boxes persons,
    # the stride-8 head's boxes are switched off. So cars and persons overlap, cars on top.
    fields = 5 + spec.num_things
    scales = model.yolo.detection.scales  # YOLOv3's order: strides 32, 16, 8
    with torch.no_grad():
        for scale, cls, obj in ((scales[0], PERSON, 2.0), (scales[1], CAR, 3.0), (scales[2], CAR, -8.0)):
            for a in range(3):
                scale.out.bias[a * fields + 4] += obj
                scale.out.bias[a * fields + 5 + cls] += 8.0
    save_checkpoint(path, model, spec)
    ckpt = torch.load(str(path), weights_only=True)
    ckpt["postprocess"] = {"cpu": {"score_threshold": 0.5, "mask_threshold": 0.0}}
    if ranking_bias is not None:
        module = SpatialRanking(spec.num_things, spec.ranking.kernel)
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
            module.horizontal.bias.copy_(torch.as_tensor(ranking_bias, dtype=torch.float32))
        ckpt[CHECKPOINT_KEY] = {"state_dict": module.state_dict(), "trained": {}}
    torch.save(ckpt, str(path))
    return spec


def _frame(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (64, 128, 3), dtype=np.uint8)


def _class_pixels(result):
    ids = result.id_map
    inst = ids[(ids >= 0) & (ids % LABEL_DIVISOR > 0)] // LABEL_DIVISOR
    return {int(c): int((inst == c).sum()) for c in np.unique(inst)}, (ids >= 0) & (ids % LABEL_DIVISOR > 0)


def test_ranking_merge_through_the_predictor_follows_the_module(tmp_path):
    """A module that prefers one class everywhere: with merge: ranking that class wins every
    pixel it contests, so it only gains pixels over the heuristic, the instances' union stays,
    and a live change of the settings switches back."""
    from pisr_ros.inference.predictor import Predictor

    favour = [0.0] * len(THING_TRAIN_IDS)
    favour[PERSON] = 5.0
    _tiny_checkpoint(tmp_path / "ranked.pt", favour)
    predictor = Predictor.from_file(str(tmp_path / "ranked.pt"), backend="torch")
    assert predictor.postprocess.merge == "heuristic"  # the default, also with the weights there
    before = predictor(_frame())
    predictor.postprocess = dataclasses.replace(predictor.postprocess, merge="ranking")
    after = predictor(_frame())
    (c_before, union_before), (c_after, union_after) = _class_pixels(before), _class_pixels(after)
    top = THING_TRAIN_IDS[PERSON]
    assert THING_TRAIN_IDS[CAR] in c_before and c_before.get(top, 0) < c_before[THING_TRAIN_IDS[CAR]]  # as made
    assert (union_before == union_after).all()
    assert (after.id_map[(before.id_map // LABEL_DIVISOR == top) & union_before] // LABEL_DIVISOR == top).all()
    assert c_after[top] > c_before.get(top, 0), (c_before, c_after)
    predictor.postprocess = dataclasses.replace(predictor.postprocess, merge="heuristic")
    assert (predictor(_frame()).id_map == before.id_map).all()


def test_merge_ranking_without_the_weights_is_refused_with_what_to_do(tmp_path):
    from pisr_ros.errors import UsageError
    from pisr_ros.inference.predictor import Predictor, model_settings
    from pisr_ros.inference.model_files import read_model_info

    _tiny_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(UsageError, match=r"plain.pt.*pisr-ros train-ranking --model"):
        Predictor.from_file(str(tmp_path / "plain.pt"), backend="torch",
                            postprocess=model_settings(read_model_info(tmp_path / "plain.pt"), "cpu", merge="ranking"))
    predictor = Predictor.from_file(str(tmp_path / "plain.pt"), backend="torch")
    assert "train-ranking" in predictor.settings_problem(dataclasses.replace(predictor.postprocess, merge="ranking"))
    assert predictor.settings_problem(predictor.postprocess) is None


def test_onnx_export_carries_the_module_and_onnxruntime_ranks_as_torch(tmp_path, monkeypatch):
    from pisr_ros.inference.export import export_checkpoint
    from pisr_ros.inference.predictor import Predictor, model_settings
    from pisr_ros.inference.model_files import read_model_info

    monkeypatch.setenv("PISR_ROS_CACHE", str(tmp_path / "cache"))
    bias = [0.0] * len(THING_TRAIN_IDS)
    bias[PERSON] = 5.0
    _tiny_checkpoint(tmp_path / "ranked.pt", bias)
    export_checkpoint(tmp_path / "ranked.pt", tmp_path / "ranked.onnx")
    cfg = model_settings(read_model_info(tmp_path / "ranked.pt"), "cpu", merge="ranking")
    want = Predictor.from_file(str(tmp_path / "ranked.pt"), backend="torch", postprocess=cfg)(_frame(1))
    got = Predictor.from_file(str(tmp_path / "ranked.onnx"), backend="onnxruntime", postprocess=cfg)(_frame(1))
    assert (got.id_map == want.id_map).mean() > 0.999
    assert _class_pixels(want)[0], "no instance: the comparison would not reach the ranking merge"


def test_train_ranking_writes_one_checkpoint_that_serves_both_merges(tmp_path, capsys):
    from test_yolo_panoptic import _write_layout

    from pisr_ros import cli
    from pisr_ros.inference.predictor import Predictor, model_settings
    from pisr_ros.inference.model_files import read_model_info
    from pisr_ros.models.spec import read_checkpoint

    _write_layout(tmp_path / "data", n=3)
    _tiny_checkpoint(tmp_path / "yolo.pt")
    out = tmp_path / "ranked.pt"
    args = ["train-ranking", "--model", str(tmp_path / "yolo.pt"), "--data", str(tmp_path / "data"),
            "--out", str(out), "--iters", "20", "--batch-size", "2", "--kernel", "5", "--threads", "1"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "3 frames read" in printed and "wrote" in printed
    ckpt = read_checkpoint(out)
    assert ckpt["spec"]["ranking"] == {"kernel": 5}
    assert ckpt[CHECKPOINT_KEY]["trained"]["iterations"] == 20 and ckpt[CHECKPOINT_KEY]["trained"]["supervised_cells"] > 0
    assert ckpt["state_dict"].keys() == read_checkpoint(tmp_path / "yolo.pt")["state_dict"].keys()
    for merge_name in ("heuristic", "ranking"):
        cfg = model_settings(read_model_info(out), "cpu", merge=merge_name)
        Predictor.from_file(str(out), backend="torch", postprocess=cfg)(_frame())
    assert cli.main(args[:5] + ["--out", str(tmp_path / "yolo.pt")]) == 2  # never over its input
