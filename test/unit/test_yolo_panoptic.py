"""YOLO-Panoptic (issue 15): the network's outputs per scale, gradients everywhere, RoIAlign,
NMS and the merge against plain references written here, targets, a short training that lowers
every loss part, torch against ONNX Runtime through the Predictor, and `pisr-ros train`."""
from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest
import torch

from pisr_ros.families import get_family
from pisr_ros.models.yolo_panoptic.spec import YoloPanopticSpec, scaled_coco_anchors
from pisr_ros.panoptic import LABEL_DIVISOR
from pisr_ros.taxonomy import IS_THING, NUM_CLASSES

FAMILY = get_family("yolo_panoptic")
ROAD, CAR, PERSON, CARAVAN = 7, 26, 24, 29  # Cityscapes labelIds
CAR_TRAIN, PERSON_TRAIN = 13, 11


def tiny_spec(**changes) -> YoloPanopticSpec:
    base = YoloPanopticSpec(name="yolo_tiny", input_size=(64, 128), width=0.125, depth=0.2,
                            anchors=scaled_coco_anchors(64), semantic_channels=16, mask_channels=8,
                            mask_head_channels=8)
    return dataclasses.replace(base, **changes)


def scene(seed: int, size=(64, 128)):
    """An RGB image and its instanceIds: road, a red car and a blue person at random places."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.full((h, w, 3), 90, np.uint8)
    inst = np.full((h, w), ROAD, np.int32)
    y, x = rng.integers(4, h - 28), rng.integers(4, w // 2 - 40)
    image[y:y + 24, x:x + 36] = (220, 30, 30)
    inst[y:y + 24, x:x + 36] = CAR * 1000 + 1
    y, x = rng.integers(2, h - 34), rng.integers(w // 2, w - 16)
    image[y:y + 30, x:x + 12] = (30, 30, 220)
    inst[y:y + 30, x:x + 12] = PERSON * 1000 + 1
    return image, inst


def batch(n=4, size=(64, 128)):
    from pisr_ros.data.dataset import collate
    from pisr_ros.data.yolo_targets import yolo_targets

    items = []
    for i in range(n):
        image, inst = scene(i, size)
        t = yolo_targets(inst, YoloPanopticSpec().thing_ids)
        t["image"], t["index"] = image.transpose(2, 0, 1).copy(), np.int64(i)
        items.append(t)
    out = collate(items)
    out.pop("index")
    return out


def normalized(images, spec):
    from pisr_ros.inference.predictor import normalize

    return normalize(images, spec.pixel_mean, spec.pixel_std)


# ------------------------------------------------------------------------------ network


@pytest.mark.parametrize("size", [(64, 128), (96, 160)])
def test_outputs_have_the_family_shapes_at_each_scale(size):
    spec = tiny_spec(input_size=size)
    model = FAMILY.build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, *size))
    assert set(out) == {o.name for o in FAMILY.outputs(spec)}  # eval mode: tensors only
    for o in FAMILY.outputs(spec):
        assert tuple(out[o.name].shape) == o.shape(2, size), o.name
    assert out["det32"].shape[1] == 3 * (5 + 8)  # three anchors: box, objectness, 8 thing classes


def test_the_full_ppm_reads_1024_channels_as_the_thesis():
    from pisr_ros.models.spec import load_spec
    from pisr_ros.models.yolo_panoptic.network import PyramidPoolingHead

    full = load_spec("config/models/yolo_panoptic_full.yaml")
    assert (full.width, full.depth) == (1.0, 1.0)
    ppm = PyramidPoolingHead((128, 256, 512), NUM_CLASSES, full.semantic_channels, full.ppm_bins)
    assert ppm.in_channels == 1024 and ppm.pools[0].out_channels == 256
    light = load_spec("config/models/yolo_panoptic_light.yaml")
    assert light.family == "yolo_panoptic" and light.mask_head == "deep"


@pytest.mark.parametrize("bins,size", [(1, 64), (2, 64), (3, 128), (6, 128), (6, 7), (5, 5)])
def test_pool_upsampling_matrices_are_bilinear_interpolation(bins, size):
    """The PPM's pools upsample by matrix products; F.interpolate is the reference."""
    import torch.nn.functional as F

    from pisr_ros.models.yolo_panoptic.network import upsample_bilinear

    x = torch.randn(2, 3, bins, bins + 1, dtype=torch.float64)
    want = F.interpolate(x, size=(size, 2 * size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_bilinear(x, (size, 2 * size)), want, rtol=0, atol=1e-12)


def test_fuse_reduce_puts_a_1x1_conv_before_the_ppm_3x3():
    model = FAMILY.build_model(tiny_spec(fuse_reduce=12))
    reduce, fuse = model.ppm.fuse
    assert reduce[0].kernel_size == (1, 1) and reduce[0].out_channels == 12
    assert fuse[0].kernel_size == (3, 3) and fuse[0].in_channels == 12
    assert FAMILY.build_model(tiny_spec()).ppm.fuse[0].kernel_size == (3, 3)  # 0: the thesis's head
    with pytest.raises(Exception, match="fuse_reduce"):
        tiny_spec(fuse_reduce=-1)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    spec = tiny_spec()
    model = FAMILY.build_model(spec).train()
    b = batch(2)
    parts = FAMILY.loss(spec)(model(normalized(b.pop("image"), spec)), b)
    parts["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert set(FAMILY.loss_parts) <= set(parts)


@pytest.mark.parametrize("kind,crop", [("deep", 20), ("shallow", 40)])
def test_mask_head_variants(kind, crop):
    spec = tiny_spec(mask_head=kind)
    head = FAMILY.build_model(spec).mask_head
    assert head.crop == crop
    assert tuple(head(torch.zeros(3, spec.mask_channels + 1, crop, crop)).shape) == (3, 1, crop, crop)


# ------------------------------------------------------------------------------ RoIAlign


def _bilinear(fm, y, x):
    """torchvision's roi_align bilinear sample (its CPU kernel's rules), written as a loop."""
    h, w = fm.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fm[y0, x0] + (1 - ly) * lx * fm[y0, x1]
            + ly * (1 - lx) * fm[y1, x0] + ly * lx * fm[y1, x1])


def reference_roi_align(features, boxes, index, size, scale, ratio):
    out = np.zeros((len(boxes), features.shape[1], size, size))
    for k, (box, n) in enumerate(zip(boxes, index)):
        x1, y1, x2, y2 = (v * scale - 0.5 for v in box)
        bw, bh = (x2 - x1) / size, (y2 - y1) / size
        for c in range(features.shape[1]):
            for i in range(size):
                for j in range(size):
                    acc = 0.0
                    for iy in range(ratio):
                        for ix in range(ratio):
                            y = y1 + i * bh + (iy + 0.5) * bh / ratio
                            x = x1 + j * bw + (ix + 0.5) * bw / ratio
                            acc += _bilinear(features[n, c], y, x)
                    out[k, c, i, j] = acc / ratio ** 2
    return out


def test_roi_align_matches_a_plain_loop():
    from pisr_ros.models.yolo_panoptic.roi_align import roi_align

    rng = np.random.default_rng(3)
    features = rng.normal(size=(2, 3, 7, 9))
    boxes = np.array([[0, 0, 36, 28], [5.5, 3.2, 20.1, 17.9], [-10, -6, 8, 40], [30, 20, 50, 31], [12, 12, 13, 13]])
    index = np.array([0, 1, 1, 0, 1])
    got = roi_align(torch.tensor(features, dtype=torch.float64), torch.tensor(boxes, dtype=torch.float64),
                    torch.tensor(index), 4, 0.25, 2)
    np.testing.assert_allclose(got.numpy(), reference_roi_align(features, boxes, index, 4, 0.25, 2), atol=1e-10)


# ------------------------------------------------------------------------------ post-processing


def test_class_nms_matches_a_plain_greedy_pass():
    from pisr_ros.postprocess.yolo_panoptic import class_nms

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 60, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (40, 2))], 1)
    scores = rng.uniform(0, 1, 40)
    classes = rng.integers(0, 3, 40)

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    kept = []
    for i in sorted(range(40), key=lambda i: -scores[i]):
        if all(classes[j] != classes[i] or iou(boxes[i], boxes[j]) <= 0.4 for j in kept):
            kept.append(i)
    got = class_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(classes), 0.4)
    assert got.tolist() == kept


def test_paste_puts_each_mask_in_its_box():
    from pisr_ros.postprocess.yolo_panoptic import paste_masks

    logits = torch.full((2, 1, 20, 20), 2.0)
    logits[1, :, :, :10] = -2.0  # left half off
    boxes = torch.tensor([[8.0, 4.0, 24.0, 20.0], [0.0, 0.0, 32.0, 16.0]])
    probs = paste_masks(logits, boxes, (8, 10), 4)
    cx = (torch.arange(10) + 0.5) * 4
    cy = (torch.arange(8) + 0.5) * 4
    inside0 = ((cy >= 4) & (cy <= 20))[:, None] & ((cx >= 8) & (cx <= 24))[None]
    assert torch.allclose(probs[0][inside0], torch.sigmoid(torch.tensor(2.0)))
    assert (probs[0][~inside0] == 0).all()
    assert (probs[1][:4, :3] < 0.5).all() and (probs[1][:4, 5:8] > 0.5).all() and (probs[1][4:] == 0).all()


def reference_merge(sem_logits, masks, objectness, scores, train_ids, min_stuff):
    """Section 3.4.1 pixel by pixel: the highest-objectness instance covering a pixel has it,
    instances win over stuff, thing pixels no instance has are void, stuff classes left with
    fewer than ``min_stuff`` pixels are void; k = 1, 2, ... per class in the given order among
    instances that kept pixels."""
    _, h, w = sem_logits.shape
    sem = sem_logits.argmax(0)
    e = np.exp(sem_logits - sem_logits.max(0))
    prob = (e / e.sum(0)).max(0)
    owner = np.full((h, w), -1)
    for y in range(h):
        for x in range(w):
            best = -1
            for k in range(len(masks)):
                if masks[k, y, x] and (best < 0 or objectness[k] > objectness[best]):
                    best = k
            owner[y, x] = best
    number, count = {}, {}
    for k in range(len(masks)):
        if (owner == k).any():
            count[train_ids[k]] = count.get(train_ids[k], 0) + 1
            number[k] = count[train_ids[k]]
    area = {}
    for y in range(h):
        for x in range(w):
            if owner[y, x] < 0 and not IS_THING[sem[y, x]]:
                area[sem[y, x]] = area.get(sem[y, x], 0) + 1
    ids = np.full((h, w), -1)
    conf = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            k = owner[y, x]
            if k >= 0:
                ids[y, x] = train_ids[k] * LABEL_DIVISOR + number[k]
                conf[y, x] = scores[k]
            else:
                conf[y, x] = prob[y, x]
                if not IS_THING[sem[y, x]] and area[sem[y, x]] >= min_stuff:
                    ids[y, x] = sem[y, x] * LABEL_DIVISOR
    return ids, conf, sem


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_matches_a_plain_reference(seed):
    from pisr_ros.postprocess.yolo_panoptic import YoloPanopticSettings, merge

    rng = np.random.default_rng(seed)
    h, w = 12, 16
    sem_logits = rng.normal(size=(NUM_CLASSES, h, w))
    sem_logits[0, :, :8] += 4  # a large road region; the rest is a patchwork of small segments
    sem_logits[CAR_TRAIN, 6:, 8:] += 4  # thing pixels of the semantic head
    masks = np.zeros((5, h, w), bool)
    masks[0, 2:8, 2:9] = True
    masks[1, 5:11, 6:14] = True  # overlaps 0
    masks[2, 6:9, 7:10] = True  # inside 0 and 1: has pixels only if its objectness is highest
    masks[3, 0:3, 12:16] = True
    masks[4, 9:12, 0:4] = rng.uniform(size=(3, 4)) > 0.3
    objectness = rng.uniform(0.3, 1.0, 5)
    scores = objectness * rng.uniform(0.5, 1.0, 5)
    order = np.argsort(-scores)
    masks, objectness, scores = masks[order], objectness[order], scores[order]
    train_ids = np.array([CAR_TRAIN, CAR_TRAIN, PERSON_TRAIN, CAR_TRAIN, 17])[order]
    cfg = YoloPanopticSettings(stuff_area=int(6 * 1024 * 2048 / (h * w)))  # 6 pixels on this grid
    ids, conf, sem = merge(torch.tensor(sem_logits), torch.tensor(masks).float(), torch.tensor(objectness),
                           torch.tensor(scores), torch.tensor(train_ids), cfg)
    want_ids, want_conf, want_sem = reference_merge(sem_logits, masks, objectness, scores, train_ids, 6)
    np.testing.assert_array_equal(ids.numpy(), want_ids)
    np.testing.assert_allclose(conf.numpy(), want_conf, rtol=1e-5)
    np.testing.assert_array_equal(sem.numpy(), want_sem)
    assert (want_ids == -1).any() and (want_ids % LABEL_DIVISOR > 0).any()  # the case covers void and instances


# ------------------------------------------------------------------------------ targets


def test_targets_give_one_box_per_instance():
    from pisr_ros.data.yolo_targets import yolo_targets

    inst = np.full((20, 30), ROAD, np.int32)
    inst[2:6, 3:10] = CAR * 1000 + 1
    inst[8:18, 20:24] = PERSON * 1000 + 5
    inst[10:12, 2:9] = CAR  # crowd: car pixels without an instance id
    inst[0:5, 25:29] = CARAVAN * 1000 + 1  # caravan: void in the training classes
    inst[19, 0] = CAR * 1000 + 2  # one pixel: too small for a box
    t = yolo_targets(inst, YoloPanopticSpec().thing_ids, max_boxes=4)
    car, person = YoloPanopticSpec().thing_ids.index(CAR_TRAIN), YoloPanopticSpec().thing_ids.index(PERSON_TRAIN)
    assert t["boxes"].tolist() == [[person, 20, 8, 24, 18], [car, 3, 2, 10, 6], [-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]
    assert (t["instances"] == 1).sum() == 40 and (t["instances"] == 2).sum() == 28 and t["instances"].max() == 2
    assert t["semantic"][2, 3] == CAR_TRAIN and t["semantic"][0, 0] == 0 and t["semantic"][0, 26] == 255


# ------------------------------------------------------------------------------ training


def _train(spec, iterations, lr=3e-3, seed=0):
    torch.manual_seed(seed)
    model = FAMILY.build_model(spec).train()
    criterion = FAMILY.loss(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    b = batch(4, spec.input_size)
    images = normalized(b.pop("image"), spec)
    history = []
    for _ in range(iterations):
        parts = criterion(model(images), b)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in parts.items()})
    return model.eval(), history


@pytest.fixture(scope="module")
def trained():
    spec = tiny_spec()
    model, history = _train(spec, 60)
    return spec, model, history


@pytest.mark.slow
def test_twenty_iterations_lower_every_loss_part():
    _, history = _train(tiny_spec(), 20)
    for part in ("loss", *FAMILY.loss_parts):
        first = np.mean([h[part] for h in history[:3]])
        last = np.mean([h[part] for h in history[-3:]])
        assert last < first, f"{part}: {first:.4f} -> {last:.4f}"


@pytest.mark.slow
def test_torch_and_onnxruntime_give_the_same_id_maps(trained, tmp_path, monkeypatch):
    from pisr_ros.errors import UsageError
    from pisr_ros.inference.export import check_onnx, export_checkpoint
    from pisr_ros.inference.predictor import Predictor
    from pisr_ros.models.spec import save_checkpoint

    monkeypatch.setenv("PISR_ROS_CACHE", str(tmp_path / "cache"))
    spec, model, _ = trained
    ckpt = tmp_path / "yolo.pt"
    save_checkpoint(ckpt, model, spec)
    onnx_path = tmp_path / "yolo.onnx"
    export_checkpoint(ckpt, onnx_path)
    assert "RoiAlign" not in check_onnx(onnx_path)  # the mask head runs after the graph
    frames = [scene(seed)[0] for seed in range(4)]
    on_torch = Predictor.from_file(str(ckpt), backend="torch")
    results = [on_torch(f) for f in frames]
    instances = [s for r in results for s in r.segments if s.id % LABEL_DIVISOR > 0]
    assert instances, "the trained model finds no instance: the comparison would test the semantic head only"
    for source in (ckpt, onnx_path):  # a checkpoint through ONNX Runtime, and the .onnx served alone
        on_ort = Predictor.from_file(str(source), backend="onnxruntime")
        for frame, want in zip(frames, results):
            got = on_ort(frame)
            assert (got.id_map == want.id_map).mean() > 0.999
            assert sorted(s.id for s in got.segments) == sorted(s.id for s in want.segments)

    import onnx

    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[[p.key for p in proto.metadata_props].index("pisr_ros.yolo_panoptic.mask_head")]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(UsageError, match="no mask head weights"):
        Predictor.from_file(str(bare), backend="onnxruntime")


@pytest.mark.slow
def test_trained_detections_sit_on_the_objects(trained):
    """The post-processing decodes boxes where the objects are (a check of the box decoding,
    not of accuracy)."""
    from pisr_ros.inference.predictor import model_settings
    from pisr_ros.postprocess.yolo_panoptic import YoloPanopticPostprocessor

    spec, model, history = trained
    image, inst = scene(0)
    post = YoloPanopticPostprocessor(spec, model.mask_head, "cpu")
    with torch.no_grad():
        heads = model(normalized(torch.from_numpy(image).permute(2, 0, 1)[None], spec))
    from pisr_ros.settings import for_device

    out = post(heads, spec.input_size, for_device(FAMILY.settings_class, "cpu"))
    det = out.detections[0]
    ys, xs = np.nonzero(inst == CAR * 1000 + 1)
    car = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    from pisr_ros.models.yolo_panoptic.boxes import box_iou

    assert len(det.scores) and box_iou(det.boxes, car[None]).max() > 0.5


# ------------------------------------------------------------------------------ pisr-ros train


def _write_layout(root, n=2, size=(64, 128), split="train"):
    for i in range(n):
        image, inst = scene(i, size)
        img_dir = root / "leftImg8bit" / split / "town"
        gt_dir = root / "gtFine" / split / "town"
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_dir / f"town_{i:06d}_000019_leftImg8bit.png"), image[..., ::-1])
        cv2.imwrite(str(gt_dir / f"town_{i:06d}_000019_gtFine_instanceIds.png"), inst.astype(np.uint16))
        labels = np.where(inst >= 1000, inst // 1000, inst).astype(np.uint8)
        cv2.imwrite(str(gt_dir / f"town_{i:06d}_000019_gtFine_labelIds.png"), labels)


@pytest.mark.slow
def test_pisr_ros_train_runs_a_yolo_spec_and_resumes(tmp_path):
    import yaml

    from pisr_ros import cli

    _write_layout(tmp_path / "data")
    _write_layout(tmp_path / "data", n=1, split="val")  # validated at the end, through the Predictor
    config = tmp_path / "yolo_tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_spec().to_dict()))
    args = ["train", "--config", str(config), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
            "--iters", "3", "--batch-size", "2", "--crop", "64x128", "--workers", "0", "--device", "cpu"]
    assert cli.main(args + ["--stop-at", "2"]) == 0
    assert cli.main(args + ["--resume"]) == 0
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[3:8] == list(FAMILY.loss_parts)
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert all(math.isfinite(float(v)) for r in rows[1:] for v in r.split(",")[2:8])
    assert (tmp_path / "run" / "final.pt").is_file()
    metrics = json.loads((tmp_path / "run" / "val_metrics.json").read_text())
    assert 0.0 <= metrics["semantic"]["averageScoreClasses"] <= 1.0  # mIoU of the val frame (no PQ json)
