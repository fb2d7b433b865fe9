"""`pisr-ros train` checks its data root before it builds or writes anything: one line, exit 2."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pisr_ros import cli
from pisr_ros.data import synth

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "config" / "models" / "pd_light_base.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synth.generate(root, "train", 2, (32, 64), seed=3, workers=1)
    synth.generate(root, "val", 2, (32, 64), seed=4, workers=1)
    return root


def _train(data, out, *extra):
    return cli.main(["train", "--config", str(SPEC), "--data", str(data), "--out", str(out), "--iters", "1",
                     "--workers", "0", *extra])


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_images_without_gtfine(dataset, tmp_path, capsys):
    data = tmp_path / "images_only"
    shutil.copytree(dataset / "leftImg8bit", data / "leftImg8bit")
    assert _train(data, tmp_path / "run") == 2
    err = _one_line(capsys)
    assert f"--data {data}: 2 of 2 train images have no labels" in err and "gtFine" in err
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_a_val_split_without_labels(dataset, tmp_path, capsys):
    data = tmp_path / "no_val_labels"
    shutil.copytree(dataset, data)
    shutil.rmtree(data / "gtFine" / "val")
    assert _train(data, tmp_path / "run") == 2
    assert "2 of 2 val images have no labels" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_no_images_and_no_folder(dataset, tmp_path, capsys):
    assert _train(tmp_path / "nowhere", tmp_path / "run") == 2
    assert f"--data {tmp_path / 'nowhere'}: no such folder" in _one_line(capsys)
    (tmp_path / "empty").mkdir()
    assert _train(tmp_path / "empty", tmp_path / "run") == 2
    assert "no train images" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_complete_root_passes_the_check(dataset):
    from pisr_ros.training.train import TrainOptions
    from pisr_ros.training.train_cli import check_data

    check_data(TrainOptions(config=str(SPEC), data=str(dataset), out="unused"))
    # A root without a val split is fine: validation is then skipped.
    check_data(TrainOptions(config=str(SPEC), data=str(dataset), out="unused", val_split="nosuchsplit"))
