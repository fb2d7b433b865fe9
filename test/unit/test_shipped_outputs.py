"""The shipped model files, unchanged, give exactly the outputs they gave before the code around
them changed: raw heads bit for bit (torch on the .pt, ONNX Runtime on the .onnx) and the
Predictor's id maps, against test/data/shipped_outputs.npz (recorded by
test/data/record_shipped_outputs.py from the code of commit 7c1d075, before the model-family seam).

Float kernels differ between CPU instruction sets, so the head digests are compared only on the
CPU capability they were recorded on; the id maps are compared everywhere (exactly on that
CPU, to 99.9 % of pixels elsewhere).
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "test" / "data"


def _recorder():
    spec = importlib.util.spec_from_file_location("record_shipped_outputs", DATA / "record_shipped_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()
STORED = np.load(DATA / "shipped_outputs.npz")
META = json.loads(str(STORED["meta"]))
CASES = [(m, b) for m in REC.MODELS for b in REC.BACKENDS]


@pytest.fixture(scope="module")
def scene():
    torch.set_num_threads(1)
    return REC.scene()


@pytest.mark.parametrize("model,backend", CASES, ids=[f"{m}-{b}" for m, b in CASES])
def test_shipped_model_outputs_are_unchanged(model, backend, scene):
    from pisr_ros.inference.model_files import sha256_of

    file = model + REC.BACKENDS[backend]
    assert sha256_of(ROOT / "models" / file) == META["files"][file], (
        f"models/{file} is not the file the outputs were recorded from; if it was replaced on purpose, "
        "run test/data/record_shipped_outputs.py")
    digest, id_map = REC.outputs(model, backend, scene)
    expected = STORED[f"{model}/{backend}"]
    assert id_map.shape == expected.shape
    if torch.backends.cpu.get_cpu_capability() == META["cpu_capability"]:
        assert digest == META["heads"][f"{model}/{backend}"]
        np.testing.assert_array_equal(id_map, expected)
    else:
        assert (id_map == expected).mean() > 0.999
