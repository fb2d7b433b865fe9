"""Checkpoints that cannot be used: one line naming the file and what to do, never a traceback
(``read_checkpoint`` and the spec check, through the library and ``pisr-ros predict``)."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pisr_ros.errors import UsageError
from pisr_ros.models.spec import ModelSpec, read_checkpoint

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pd_light_pisr_residual_synth.pt"


def bad_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the refusal must contain)."""
    data = SHIPPED.read_bytes()
    good = torch.load(SHIPPED, weights_only=True)
    files = {}

    def write(name, content, phrase):
        path = folder / f"{name}.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        files[name] = (path, phrase)

    write("truncated", data[: len(data) // 2], "cut short")
    write("empty", b"", "empty")
    write("random_bytes", np.random.default_rng(0).bytes(5000), "cut short or not a PyTorch file")
    write("random_zip", b"PK\x03\x04" + np.random.default_rng(1).bytes(3000), "cut short or not a PyTorch file")
    write("num_classes_7", dict(good, spec=dict(good["spec"], num_classes=7)), "num_classes must be 19")
    write("input_size_0", dict(good, spec=dict(good["spec"], input_size=[0, 0])), "input_size must be")
    write("no_weights", {k: v for k, v in good.items() if k != "state_dict"}, "without its spec or weights")
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return bad_checkpoints(tmp_path_factory.mktemp("bad_checkpoints"))


def test_a_shipped_checkpoint_still_reads():
    ckpt = read_checkpoint(SHIPPED)
    assert ModelSpec.from_dict(ckpt["spec"]).num_classes == 19


@pytest.mark.parametrize("name", ["truncated", "empty", "random_bytes", "random_zip", "num_classes_7",
                                  "input_size_0", "no_weights"])
def test_read_checkpoint_refuses_naming_the_file(bad_files, name):
    path, phrase = bad_files[name]
    with pytest.raises(UsageError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and phrase in str(err.value), str(err.value)


@pytest.mark.parametrize("change, phrase", [
    ({"num_classes": 7}, "num_classes must be 19"), ({"input_size": [0, 0]}, "input_size must be"),
    ({"input_size": [512]}, "input_size must be"), ({"pixel_std": [1.0, 0.0, 1.0]}, "pixel_std must be positive"),
    ({"backbone": {"name": "vgg"}}, "backbone.name"), ({"backbone": {"output_stride": 8}}, "output_stride"),
    ({"backbone": {"name": "resnet", "depth": 42}}, "backbone.depth"),
])
def test_specs_no_network_can_be_built_from_are_refused(change, phrase):
    with pytest.raises(UsageError) as err:
        ModelSpec.from_dict(change)
    assert phrase in str(err.value)


def test_predict_refuses_each_bad_checkpoint_in_one_line(bad_files, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((64, 128, 3), np.uint8))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    for name, (path, phrase) in bad_files.items():
        done = subprocess.run([sys.executable, "-m", "pisr_ros.cli", "predict", "--model", str(path), "--images",
                               str(images), "--out", str(tmp_path / f"out_{name}")],
                              capture_output=True, text=True, timeout=300, env=env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (name, done.returncode, done.stderr[-2000:])
        assert str(path) in lines[0] and phrase in lines[0] and "Traceback" not in done.stdout, (name, lines)


class NotPlainData:
    pass


def test_a_checkpoint_holding_objects_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"format": "pisr_ros.checkpoint/1", "spec": {}, "state_dict": {}, "extra": NotPlainData()}, path)
    with pytest.raises(UsageError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and "weights_only" in str(err.value)
