"""Record what the shipped models output today, for test/unit/test_shipped_outputs.py.

    source env.sh && python test/data/record_shipped_outputs.py

Writes test/data/shipped_outputs.npz: per shipped model and backend (torch on the .pt,
onnxruntime on the .onnx), the raw heads' sha256 and the Predictor's id map on one fixed
synthetic scene, plus the sha256 of each model file and the CPU capability it ran on. Run it
only when a shipped model is replaced on purpose: the test exists to catch code changes that
alter what an unchanged model file outputs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("shipped_outputs.npz")
MODELS = ("pd_light_base_synth", "pd_light_pisr_residual_synth")
BACKENDS = {"torch": ".pt", "onnxruntime": ".onnx"}


def scene() -> np.ndarray:
    from pisr_ros.data.synth import render_scene

    rgb, _, _ = render_scene(seed=123, split="val", index=0, size=(512, 1024))
    return rgb


def heads_digest(heads: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(heads):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(heads[name].detach().cpu().numpy(), dtype=np.float32).tobytes())
    return digest.hexdigest()


def outputs(model: str, backend: str, rgb: np.ndarray) -> tuple[str, np.ndarray]:
    from pisr_ros.inference.predictor import Predictor

    predictor = Predictor.from_file(str(ROOT / "models" / (model + BACKENDS[backend])), backend=backend,
                                    device="cpu", threads=1)
    out = predictor.run_network([rgb], "rgb")
    digest = heads_digest(out.heads)
    result = predictor.finish(out)[0]
    return digest, result.id_map


def main() -> None:
    from pisr_ros.inference.model_files import sha256_of

    torch.set_num_threads(1)
    rgb = scene()
    arrays, meta = {}, {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "files": {}, "heads": {}}
    for model in MODELS:
        for backend, suffix in BACKENDS.items():
            meta["files"][model + suffix] = sha256_of(ROOT / "models" / (model + suffix))
            digest, id_map = outputs(model, backend, rgb)
            meta["heads"][f"{model}/{backend}"] = digest
            arrays[f"{model}/{backend}"] = id_map
    np.savez_compressed(OUT, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    print(f"wrote {OUT.relative_to(ROOT)}: {json.dumps(meta, indent=1)}")


if __name__ == "__main__":
    main()
