"""The CPU model in models/: it loads against its spec and has learnt something real.

The scenes below come from a seed used neither for training (seed 1) nor for the model card's
val set (seed 7). The bar is far below the model card's numbers and far above what untrained
weights score (about 1/19 of pixels right), so it catches missing, stale or wrong weights.
"""
from pathlib import Path

import pytest

from pisr_ros.data.synth import render_scene
from pisr_ros.inference.predictor import Predictor
from pisr_ros.models.spec import count_parameters, load_checkpoint, load_spec
from pisr_ros.taxonomy import LABEL_TO_TRAIN, VOID_TRAIN_ID

ROOT = Path(__file__).resolve().parents[2]
# shipped file -> the spec it must have been trained from
SHIPPED = {"pd_light_base_synth.pt": "pd_light_base.yaml",
           "pd_light_pisr_residual_synth.pt": "pd_light_pisr_residual.yaml"}


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def model(request):
    model, spec = load_checkpoint(ROOT / "models" / request.param,
                                  load_spec(ROOT / "config" / "models" / SHIPPED[request.param]))
    return model


# Training runs in progress, committed so that the next session resumes them: file -> its spec.
RESUME = {"pd_light_base_synth.resume.pt": "pd_light_base.yaml",
          "yolo_panoptic_light_synth.resume.pt": "yolo_panoptic_light.yaml"}


def test_every_shipped_checkpoint_is_tested():
    assert sorted(p.name for p in (ROOT / "models").glob("*.pt")) == sorted({**SHIPPED, **RESUME})


@pytest.mark.parametrize("name", sorted(RESUME))
def test_resume_checkpoints_resume_a_run_of_their_spec(name):
    """A run's last.pt: the weights of its spec plus what `pisr-ros train --resume` needs."""
    from pisr_ros.models.spec import read_checkpoint

    ckpt = read_checkpoint(ROOT / "models" / name)
    assert {"optimizer", "iteration", "options"} <= set(ckpt["extra"])
    load_checkpoint(ROOT / "models" / name, load_spec(ROOT / "config" / "models" / RESUME[name]))


def test_every_shipped_checkpoint_has_its_onnx():
    # The node's default backend serves models/<name>.onnx; without it every user's first start
    # exports one into the cache instead.
    missing = [name for name in sorted(SHIPPED) if not (ROOT / "models" / name).with_suffix(".onnx").is_file()]
    assert missing == [], f"models/ lacks the ONNX export of {missing}"
    float_onnx = [p.name for p in (ROOT / "models").glob("*.onnx") if not p.name.endswith(".int8.onnx")]
    assert sorted(float_onnx) == sorted(Path(name).with_suffix(".onnx").name for name in SHIPPED)


def test_shipped_model_is_the_light_spec(model):
    assert 0.9e6 < count_parameters(model) < 1.1e6
    assert tuple(model.spec.input_size) == (512, 1024)


def test_shipped_model_segments_unseen_scenes(model):
    correct = total = 0
    for index in range(2):
        rgb, label_ids, _ = render_scene(seed=99, split="val", index=index, size=(512, 1024))
        result = Predictor.from_module(model, model.spec)(rgb)
        semantic = result.semantic_head
        assert result.id_map.shape == semantic.shape == label_ids.shape
        truth = LABEL_TO_TRAIN[label_ids]
        scored = truth != VOID_TRAIN_ID
        correct += int((semantic[scored] == truth[scored]).sum())
        total += int(scored.sum())
        assert any(s.class_id == 0 for s in result.segments)  # road: the largest class there is
    assert correct / total > 0.5


def test_shipped_onnx_is_the_export_of_the_shipped_checkpoint():
    """models/*.onnx beside a checkpoint is what the node's ONNX Runtime backend serves: it must
    come from exactly that checkpoint (else the Predictor exports its own into the cache)."""
    from pisr_ros.inference.model_files import onnx_for, read_model_info

    for name in sorted(SHIPPED):
        ckpt = ROOT / "models" / name
        onnx_path = ckpt.with_suffix(".onnx")
        assert onnx_path.is_file(), f"{onnx_path} is missing"
        info = read_model_info(ckpt)
        assert read_model_info(onnx_path).source_sha256 == info.source_sha256, f"{onnx_path} is stale"
        assert onnx_for(info) == onnx_path
