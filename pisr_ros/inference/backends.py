"""Backends: one network call, normalised images in, head tensors out.

Every backend has ``name``, ``device`` (where the Predictor prepares its input),
``input_size`` (H, W) and ``run(images) -> {output name: tensor}``, the outputs of the model's
family (``pisr_ros.families``; Panoptic-DeepLab: semantic, center, offset): ``images`` is
float32 (N,3,H,W), normalised, contiguous, on ``device``; the outputs are float32 torch tensors
on ``device`` (CUDA outputs stay on the GPU so post-processing runs there).

  torch        the checkpoint in PyTorch eager mode (CPU, or CUDA with optional fp16)
  onnxruntime  an exported ONNX file (CPU; CUDA provider when installed and asked for)
  tensorrt     an engine built from the ONNX file, cached (pisr_ros.inference.tensorrt_backend)
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from pisr_ros.errors import UsageError
from pisr_ros.families import HeadOutput
from pisr_ros.inference.model_files import ONNX_INPUT, ModelInfo, onnx_for

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# Not a way to serve a model: heads of an empty street (road everywhere, no centers) at no
# cost, so that benchmarks can measure everything around the network.
NOOP = "noop"


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, input_size: tuple[int, int], output_names: tuple[str, ...],
                 device: str = "cpu", fp16: bool = False, threads: int | None = None):
        self.device = torch.device(device)
        self.output_names = tuple(output_names)
        if fp16 and self.device.type != "cuda":
            raise UsageError("fp16 needs a CUDA device (PyTorch's CPU half convolutions are slow)")
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.fp16 = fp16
        self.model = model.to(self.device).eval()
        if fp16:
            self.model = self.model.half()
        self.input_size = tuple(input_size)

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(images.half() if self.fp16 else images)
        return {name: out[name].float() for name in self.output_names}


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path, input_size: tuple[int, int], outputs: tuple[HeadOutput, ...], device: str = "cpu",
                 threads: int | None = None):
        import onnxruntime as ort

        self.device = torch.device(device)
        self.input_size = tuple(input_size)
        self.outputs = tuple(outputs)
        self.output_names = [o.name for o in self.outputs]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's threads busy-wait after a run by default; on a few cores that steals
        # the CPU from the torch post-processing that follows (measured: 4 -> 10 ms on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UsageError("onnxruntime has no CUDA provider here; install onnxruntime-gpu, "
                                 "or use --device cpu, or the torch backend")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.onnx_path = onnx_path
        missing = sorted(set(self.output_names) - {o.name for o in self.session.get_outputs()})
        if missing:
            raise UsageError(f"{onnx_path} has no output(s) {', '.join(missing)} that its model family needs; "
                             "export it again with `pisr-ros export`")

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.device.type == "cpu":
            outs = self.session.run(self.output_names, {ONNX_INPUT: images.numpy()})
            return {name: torch.from_numpy(o) for name, o in zip(self.output_names, outs)}
        # On CUDA, bind torch tensors so nothing crosses to the host.
        index = self.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(ONNX_INPUT, "cuda", index, np.float32, tuple(images.shape), images.data_ptr())
        n, _, h, w = images.shape
        outs = {o.name: torch.empty(o.shape(n, (h, w)), dtype=torch.float32, device=self.device)
                for o in self.outputs}
        for name, t in outs.items():
            binding.bind_output(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # the input is written
        self.session.run_with_iobinding(binding)
        return outs


class NoopBackend:
    name = NOOP

    def __init__(self, heads: dict[str, torch.Tensor], input_size: tuple[int, int], device: str = "cpu"):
        """``heads``: one image's fake outputs (the family's ``fake_heads``), on ``device``."""
        self.device = torch.device(device)
        self.input_size = tuple(input_size)
        self._heads = heads

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n = images.shape[0]
        return {k: v.expand(n, -1, -1, -1) for k, v in self._heads.items()}


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def available(device: str = "cpu") -> list[str]:
    """Backends that can run on ``device`` on this machine, fastest first."""
    cuda = torch.device(device).type == "cuda"
    names = []
    if cuda and tensorrt_available():
        names.append("tensorrt")
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        if not cuda or "CUDAExecutionProvider" in ort.get_available_providers():
            names.append("onnxruntime")
    names.append("torch")
    if cuda:
        # On a GPU, PyTorch (fp16 where asked) comes before an ONNX Runtime whose CUDA provider
        # copies through its own allocator; TensorRT stays first.
        names = [n for n in ("tensorrt", "torch", "onnxruntime") if n in names]
    return names


def resolve(backend: str, device: str = "cpu") -> str:
    """``auto`` -> the fastest available backend on ``device``; others are checked to exist."""
    if backend == "auto":
        return available(device)[0]
    if backend == NOOP:
        return NOOP
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    if backend not in available(device):
        need = {"tensorrt": "TensorRT (pip install tensorrt) and a CUDA GPU",
                "onnxruntime": "onnxruntime (CPU) or onnxruntime-gpu (CUDA)",
                "torch": "torch"}[backend]
        raise UsageError(f"backend {backend!r} is not available on {device} here: it needs {need}. "
                         f"Available: {', '.join(available(device))}")
    return backend


def make_backend(info: ModelInfo, backend: str = "auto", device: str = "cpu", *, fp16: bool = False,
                 threads: int | None = None, input_size: tuple[int, int] | None = None, **tensorrt_options):
    """A backend for the model file ``info`` describes, running the network at ``input_size``
    (default: the size the model was trained or exported at). A checkpoint serves every
    backend (ONNX Runtime and TensorRT get an ONNX export of it, made once and cached:
    ``onnx_for``); an ONNX file serves onnxruntime and tensorrt at its own size."""
    name = resolve(backend, device)
    size = tuple(input_size) if input_size else info.input_size
    family = info.family
    if name == NOOP:
        return NoopBackend(family.fake_heads(info.model_spec, size, torch.device(device)), size, device)
    if name == "torch":
        if info.kind != "checkpoint":
            raise UsageError(f"the torch backend needs the checkpoint (.pt), not {info.path}")
        from pisr_ros.models.spec import load_checkpoint

        model, _ = load_checkpoint(info.path)
        return TorchBackend(model, size, info.output_names, device, fp16=fp16, threads=threads)
    if info.kind == "onnx" and size != info.input_size:
        raise UsageError(f"{info.path} was exported for {info.input_size[0]}x{info.input_size[1]} input; "
                         f"export the checkpoint at {size[0]}x{size[1]} (pisr-ros export --size) or keep its size")
    onnx_path = info.path if info.kind == "onnx" else onnx_for(info, size)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, size, family.outputs(info.model_spec), device, threads=threads)
    from pisr_ros.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(onnx_path, output_names=info.output_names, device=device, fp16=fp16, **tensorrt_options)


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
