"""Panoptic-DeepLab + PISR: shapes, gradients, specs, checkpoints, ONNX parity, a tiny training run."""
import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pisr_ros.data.targets import collate_targets, make_targets
from pisr_ros.models.losses import PanopticDeepLabLoss, hard_pixel_cross_entropy
from pisr_ros.models.pisr import PISR, select_centers
from pisr_ros.models.spec import (
    CheckpointMismatchError,
    ModelSpec,
    build_model,
    count_parameters,
    load_checkpoint,
    load_spec,
    save_checkpoint,
    spec_differences,
)
from pisr_ros.taxonomy import IS_THING, NUM_CLASSES, by_name

CONFIGS = Path(__file__).resolve().parents[2] / "config" / "models"


def tiny_spec(**pisr) -> ModelSpec:
    return ModelSpec.from_dict(dict(
        name="tiny", input_size=[64, 128],
        backbone=dict(name="mobilenet", width=8, stages=[[1, 8, 1, 2], [2, 8, 1, 2], [2, 16, 1, 2], [2, 16, 1, 2]]),
        semantic_decoder=dict(aspp_channels=16, aspp_dilations=[1, 2, 3], project_channels=[8, 8],
                              channels=16, kernel_size=3),
        instance_decoder=dict(aspp_channels=16, aspp_dilations=[1, 2, 3], project_channels=[8, 8],
                              channels=16, kernel_size=3),
        heads=dict(semantic_channels=16, center_channels=8, offset_channels=8, kernel_size=3),
        pisr=dict(dict(top_k=4, channels=16, key_channels=8, value_channels=16, out_channels=8,
                       reweight_hidden=8, separable=False, downsample=1), **pisr)))


def test_pisr_shapes_and_weights_in_unit_interval():
    spec = tiny_spec().pisr
    pisr = PISR(24, IS_THING.tolist(), spec, stride=4)
    n, h, w = 2, 16, 20
    feats = torch.randn(n, 24, h, w)
    f_pan, extras = pisr(feats, torch.randn(n, NUM_CLASSES, h, w), torch.rand(n, 1, h, w),
                         torch.randn(n, 2, h, w) * 8, return_extras=True)
    categories = NUM_CLASSES + spec.top_k
    assert f_pan.shape == (n, spec.out_channels, h, w)
    assert extras["E"].shape == (n, categories, spec.channels)
    assert extras["attention"].shape == (n, categories, h, w)
    omega = extras["omega"]
    assert omega.shape == (n, categories, 1) and ((omega > 0) & (omega < 1)).all()
    # Coarser PISR grid: same output size.
    coarse = PISR(24, IS_THING.tolist(), dataclasses.replace(spec, downsample=2), stride=4)
    assert coarse(feats, torch.randn(n, NUM_CLASSES, h, w), torch.rand(n, 1, h, w),
                  torch.zeros(n, 2, h, w)).shape == f_pan.shape


def test_center_selection_takes_local_maxima_in_score_order():
    center = torch.zeros(1, 1, 8, 8)
    center[0, 0, 1, 2] = 0.9
    center[0, 0, 1, 3] = 0.5  # not a local maximum
    center[0, 0, 6, 5] = 0.7
    scores, rows, cols = select_centers(center, 3, 3)
    assert scores.tolist()[0][:2] == pytest.approx([0.9, 0.7]) and scores[0, 2] == 0
    assert (rows[0, :2].tolist(), cols[0, :2].tolist()) == ([1.0, 6.0], [2.0, 5.0])


@pytest.mark.parametrize("pisr", [dict(enabled=False), dict(reweight=False), dict(),
                                  dict(downsample=2, separable=True),
                                  dict(downsample=2, fusion="residual")])
def test_variants_build_and_run(pisr):
    model = build_model(tiny_spec(**pisr))
    x = torch.randn(2, 3, 64, 128)
    out = model.train()(x)
    expect = {"semantic": (2, NUM_CLASSES, 16, 32), "center": (2, 1, 16, 32), "offset": (2, 2, 16, 32)}
    if pisr.get("enabled", True):
        expect.update({f"{k}_aux": v for k, v in expect.items()})
    assert {k: tuple(v.shape) for k, v in out.items()} == expect
    with torch.no_grad():
        assert set(model.eval()(x)) == {"semantic", "center", "offset"}
    assert (model.pisr is None) == (not pisr.get("enabled", True))
    if model.pisr is not None:
        assert (model.pisr.reweight is None) == (pisr.get("reweight") is False)


def synthetic_batch(n=2, h=64, w=128, seed=0):
    """Images with cars (bright) and persons (dark) on a mid-grey road, and their targets."""
    rng = np.random.default_rng(seed)
    road, car, person = by_name("road"), by_name("car"), by_name("person")
    images, targets = [], []
    for _ in range(n):
        inst = np.full((h, w), road.label_id, np.int32)
        img = np.full((h, w, 3), 128.0)
        for k in range(3):
            cls, value = (car, 230.0) if k % 2 == 0 else (person, 20.0)
            y, x = rng.integers(0, h - 20), rng.integers(0, w - 24)
            inst[y:y + 16, x:x + 20] = cls.label_id * 1000 + k
            img[y:y + 16, x:x + 20] = value
        img += rng.normal(0, 5, img.shape)
        images.append(torch.from_numpy((img - 128) / 64).permute(2, 0, 1).float())
        targets.append(make_targets(inst, scale=0.1))
    return torch.stack(images), collate_targets(targets)


@pytest.mark.parametrize("pisr", [dict(), dict(downsample=2, separable=True),
                                  dict(downsample=2, fusion="residual")])
def test_every_pisr_parameter_gets_a_gradient(pisr):
    torch.manual_seed(0)
    spec = tiny_spec(**pisr)
    model = build_model(spec).train()
    images, targets = synthetic_batch()
    losses = PanopticDeepLabLoss(spec.loss)(model(images), targets)
    assert set(losses) >= {"loss", "semantic", "center", "offset", "semantic_aux", "center_aux", "offset_aux"}
    losses["loss"].backward()
    dead = [name for name, p in model.pisr.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"PISR parameters without gradient: {dead}"


def test_tiny_training_run_lowers_the_loss():
    torch.manual_seed(0)
    spec = tiny_spec()
    model = build_model(spec).train()
    criterion = PanopticDeepLabLoss(spec.loss)
    images, targets = synthetic_batch(h=64, w=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(20):
        opt.zero_grad()
        loss = criterion(model(images), targets)["loss"]
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3]), history


def test_hard_pixel_mining_averages_the_hardest_fifth():
    logits = torch.zeros(1, 3, 1, 10)
    labels = torch.tensor([[[0, 0, 0, 0, 0, 0, 0, 0, 1, 255]]])
    logits[0, 0, 0, :8] = 5.0  # easy pixels
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    top2 = per_pixel.flatten().topk(2).values.mean()
    assert hard_pixel_cross_entropy(logits, labels) == pytest.approx(top2.item())
    weights = torch.ones(1, 1, 10)
    weights[0, 0, 8] = 3.0
    assert hard_pixel_cross_entropy(logits, labels, weights) == pytest.approx(
        (3 * per_pixel[0, 0, 8] + per_pixel[0, 0, 0]).item() / 2)


def test_loss_gamma_weights_the_intermediate_terms():
    spec = tiny_spec()
    model = build_model(spec).train()
    images, targets = synthetic_batch()
    out = model(images)
    for gamma in (0.0, 2.0):
        losses = PanopticDeepLabLoss(dataclasses.replace(spec.loss, gamma=gamma))(out, targets)
        final = losses["semantic"] + losses["center"] + losses["offset"]
        aux = losses["semantic_aux"] + losses["center_aux"] + losses["offset_aux"]
        assert losses["loss"].item() == pytest.approx((final + gamma * aux).item(), rel=1e-6)


def test_config_specs_load_and_the_light_default_is_about_1m_parameters():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert {"pd_r50_pisr", "pd_light_pisr", "pd_light_base", "pd_light_pisr_norw"} <= names
    light = load_spec(CONFIGS / "pd_light_pisr.yaml")
    n = count_parameters(build_model(light))
    print(f"pd_light_pisr: {n} parameters")
    assert 0.8e6 <= n <= 1.3e6
    assert light == ModelSpec()  # the dataclass defaults are the CPU default model
    assert not load_spec(CONFIGS / "pd_light_base.yaml").pisr.enabled
    assert not load_spec(CONFIGS / "pd_light_pisr_norw.yaml").pisr.reweight
    # The residual variants differ from the two above in the fusion alone.
    for name in ("pd_light_pisr", "pd_light_pisr_norw"):
        plain, residual = load_spec(CONFIGS / f"{name}.yaml"), load_spec(CONFIGS / f"{name.replace('pisr', 'pisr_residual')}.yaml")
        assert residual.pisr.fusion == "residual"
        assert spec_differences(plain.to_dict(), residual.to_dict()) == [
            f"name: {name!r} != {name.replace('pisr', 'pisr_residual')!r}", "pisr.fusion: 'concat' != 'residual'"]
    r50 = load_spec(CONFIGS / "pd_r50_pisr.yaml")
    assert r50.backbone.name == "resnet" and r50.backbone.depth == 50 and r50.pisr.enabled


def test_spec_yaml_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pisr:\n  topk: 8\n")
    with pytest.raises(Exception, match="topk"):
        load_spec(bad)
    bad.write_text("pisr:\n  fusion: add\n")
    with pytest.raises(Exception, match="pisr.fusion must be one of concat, residual"):
        load_spec(bad)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    spec = tiny_spec()
    model = build_model(spec).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, spec, epoch=3)
    loaded, loaded_spec = load_checkpoint(path)
    assert loaded_spec == spec
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["semantic"], model(x)["semantic"])
    # Same spec given explicitly: fine. A different architecture: refused, naming the parts.
    load_checkpoint(path, spec=spec)
    other = dataclasses.replace(spec, pisr=dataclasses.replace(spec.pisr, top_k=6, reweight=False))
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(path, spec=other)
    msg = str(err.value)
    assert "pisr.top_k" in msg and "pisr.reweight" in msg
    assert "pisr.g_p.weight" in msg and "pisr.reweight.0.weight" in msg
    # Weights that do not fit their own spec: refused too.
    state = model.state_dict()
    state.pop("semantic_head.1.weight")
    torch.save({"format": "pisr_ros.checkpoint/1", "spec": spec.to_dict(), "state_dict": state, "extra": {}},
               tmp_path / "broken.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing weights: semantic_head\.1\.weight"):
        load_checkpoint(tmp_path / "broken.pt")


# Ops TensorRT's ONNX parser supports; the export must stay inside this set.
TENSORRT_OPS = {
    "Add", "AveragePool", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Equal", "Expand",
    "Exp", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "Identity", "MatMul", "MaxPool", "Mul", "Pow", "ReduceMax", "ReduceSum", "Relu",
    "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Sub", "TopK", "Transpose",
    "Unsqueeze", "Where",
}


@pytest.mark.parametrize("downsample, fusion", [(1, "concat"), (2, "concat"), (2, "residual")])
def test_onnx_export_matches_torch(downsample, fusion):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(tiny_spec(downsample=downsample, fusion=fusion)).eval()
    x = torch.randn(1, 3, 64, 128)
    buf = io.BytesIO()
    names = ["semantic", "center", "offset"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, opset_version=17, dynamo=False,
                          input_names=["images"], output_names=names)
    graph = onnx.load_from_string(buf.getvalue())
    unsupported = {node.op_type for node in graph.graph.node} - TENSORRT_OPS
    assert not unsupported, f"ops TensorRT cannot parse: {sorted(unsupported)}"
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(names, {"images": x.numpy()})
    with torch.no_grad():
        want = model(x)
    for name, value in zip(names, got):
        np.testing.assert_allclose(value, want[name].numpy(), rtol=1e-4, atol=1e-4)
