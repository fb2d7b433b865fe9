"""TensorRT backend: build an engine from our ONNX export (cached by ``EngineCache``) and run it
on torch CUDA tensors.

Written against the TensorRT >= 10 Python API: named I/O tensors (``num_io_tensors``,
``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``) and ``execute_async_v3``.
Buffers are torch CUDA tensors (no pycuda), so the Predictor's pre- and post-processing stay on
the GPU around the engine. ``tensorrt`` is imported only when a function here needs it.
TensorRT 11 removed the weak-typing builder flags: there ``--fp16``/``--int8`` are refused with
a message, and FP32 engines build as before.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from pisr_ros.errors import UsageError
from pisr_ros.inference.engine_cache import (
    EngineCache,
    EngineKey,
    TensorRTUnavailable,
    _import_tensorrt,
    build_command,
    calibration_images,
    calibration_sha256,
    cuda_device,
    current_key,
    file_sha256,
)
from pisr_ros.inference.model_files import EXPORT_HINT
from pisr_ros.inference.model_files import ONNX_INPUT as INPUT

ADDRESS_ALIGNMENT = 256  # IExecutionContext::setTensorAddress: "at least 256-byte alignment"
PROGRESS_DEPTH = 1  # phases nested deeper than this are not printed (there are hundreds)
PROGRESS_EVERY_S = 5.0  # at most one step line per phase this often

_LOGGER = None  # one logger for every Builder/Runtime: TensorRT warns when they differ


def _trt_logger(trt):
    """A TensorRT logger that prints warnings and errors to stderr and keeps the last errors,
    so a failed build can say why."""
    global _LOGGER
    if _LOGGER is None:
        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: deque[str] = deque(maxlen=20)

            def log(self, severity, msg):
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    self.errors.append(msg)
                    print(f"[TensorRT] error: {msg}", file=sys.stderr, flush=True)
                elif severity == trt.ILogger.WARNING:
                    print(f"[TensorRT] warning: {msg}", file=sys.stderr, flush=True)

        _LOGGER = _Logger()
    return _LOGGER


def _progress_monitor(trt, out=None):
    """An ``IProgressMonitor`` printing one line per top-level phase start/finish and a step
    count at most every few seconds. TensorRT calls it from its own threads, hence the lock;
    Ctrl-C inside a callback cancels the build (``step_complete`` returns False)."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._phases: dict[str, list] = {}  # name -> [depth, num_steps, start, last print]
            self.cancelled = False

        def _print(self, depth: int, text: str) -> None:
            print(f"  {'  ' * depth}{text}", file=out or sys.stderr, flush=True)

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                with self._lock:
                    parent = self._phases.get(parent_phase) if parent_phase is not None else None
                    depth = 0 if parent is None else parent[0] + 1
                    now = time.monotonic()
                    self._phases[phase_name] = [depth, num_steps, now, now]
                    if depth <= PROGRESS_DEPTH:
                        self._print(depth, f"{phase_name} ({num_steps} step{'s' if num_steps != 1 else ''})")
            except KeyboardInterrupt:
                self.cancelled = True

        def step_complete(self, phase_name, step):
            try:
                with self._lock:
                    phase = self._phases.get(phase_name)
                    now = time.monotonic()
                    if phase and phase[0] <= PROGRESS_DEPTH and now - phase[3] >= PROGRESS_EVERY_S:
                        phase[3] = now
                        self._print(phase[0], f"{phase_name}: {step + 1}/{phase[1]}")
            except KeyboardInterrupt:
                self.cancelled = True
            # Anything but True cancels the build (an exception here reads as False too).
            return not self.cancelled

        def phase_finish(self, phase_name):
            try:
                with self._lock:
                    phase = self._phases.pop(phase_name, None)
                    if phase and phase[0] <= PROGRESS_DEPTH:
                        self._print(phase[0], f"{phase_name} done in {time.monotonic() - phase[2]:.1f} s")
            except KeyboardInterrupt:
                self.cancelled = True

    return _Monitor()


def _calibrator(trt, files: Sequence[Path], input_size: tuple[int, int], pixel_mean: Sequence[float],
                pixel_std: Sequence[float], device: torch.device, cache_file: Path):
    """An ``IInt8EntropyCalibrator2`` feeding one image per batch, preprocessed as the Predictor
    does on a CUDA device (RGB uint8 uploaded, bilinear resize on the GPU, (x - mean) * 1/std),
    from a torch CUDA tensor whose address ``get_batch`` hands to TensorRT."""
    import numpy as np
    import torch.nn.functional as F

    from pisr_ros.image_files import read_rgb

    height, width = input_size
    mean = torch.tensor(pixel_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(pixel_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._next = 0
            self._batch: torch.Tensor | None = None  # must outlive TensorRT's read of it
            self.error: BaseException | None = None

        def get_batch_size(self):
            return 1  # the calibration profile below fixes batch 1

        def get_batch(self, names):
            if self._next >= len(files) or self.error is not None:
                return []  # no more batches
            try:
                rgb = read_rgb(files[self._next])
                self._next += 1
                x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float()
                if x.shape[-2:] != (height, width):
                    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
                self._batch = ((x - mean) * inv_std).contiguous()
                # TensorRT reads the buffer on its own stream: the copy must have landed.
                torch.cuda.synchronize(device)
                return [int(self._batch.data_ptr())]
            except BaseException as exc:  # noqa: BLE001 - reported after the build, not lost in C++
                self.error = exc
                return []

        # These are called from C++ (noexcept): an exception escaping them would abort the process.
        def read_calibration_cache(self):
            try:
                return cache_file.read_bytes() if cache_file.is_file() else None
            except OSError:
                return None  # calibrate again rather than fail

        def write_calibration_cache(self, cache):
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_name(cache_file.name + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(cache)  # a memoryview over TensorRT's buffer
                tmp.replace(cache_file)
            except OSError as exc:
                print(f"warning: could not write the INT8 calibration cache {cache_file}: {exc}",
                      file=sys.stderr, flush=True)

    return _Calibrator()


def _builder_flag(trt, name: str, option: str):
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise TensorRTUnavailable(
            f"{option}: TensorRT {trt.__version__} has no BuilderFlag.{name} (TensorRT 11 removed the "
            "precision flags; precision comes from a strongly typed ONNX, e.g. converted with ModelOpt "
            "AutoCast or with Q/DQ nodes). Build without it, or use TensorRT 10.")
    return flag


def _pixel_stats(onnx_path: Path, pixel_mean, pixel_std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if pixel_mean is not None and pixel_std is not None:
        return tuple(map(float, pixel_mean)), tuple(map(float, pixel_std))
    from pisr_ros.inference.model_files import read_model_info

    info = read_model_info(onnx_path)  # our export writes the model spec into the ONNX metadata
    return info.pixel_mean, info.pixel_std


def _onnx_input_size(onnx_path: Path) -> tuple[int, int]:
    """(H, W) of the ONNX input ``images``, which must be fixed (the batch may be dynamic)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inputs = {i.name: i for i in graph.input}
    if INPUT not in inputs:
        raise UsageError(f"{onnx_path}: no input named {INPUT!r} (inputs: {sorted(inputs)}); "
                         f"export it with `{EXPORT_HINT.format(path=onnx_path)}`")
    dims = inputs[INPUT].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
        raise UsageError(f"{onnx_path}: input {INPUT!r} must be N x 3 x H x W with fixed H and W")
    return int(dims[2].dim_value), int(dims[3].dim_value)


def expected_outputs(onnx_path: str | Path) -> tuple[str, ...]:
    """The output names the ONNX file's model family produces (from its pisr_ros metadata)."""
    from pisr_ros.inference.model_files import read_model_info

    return read_model_info(onnx_path).output_names


def _check_network(onnx_path: Path, network, max_batch: int) -> tuple[int, int, int]:
    """(fixed batch or -1, H, W) of the parsed network, after checking its I/O names."""
    expected = expected_outputs(onnx_path)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = {network.get_output(i).name for i in range(network.num_outputs)}
    if [t.name for t in inputs] != [INPUT] or not set(expected) <= outputs:
        raise UsageError(f"{onnx_path}: expected input {INPUT!r} and outputs {list(expected)}, got "
                         f"{[t.name for t in inputs]} and {sorted(outputs)}; export it with "
                         f"`{EXPORT_HINT.format(path=onnx_path)}`")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[1] != 3 or shape[2] < 1 or shape[3] < 1:
        raise UsageError(f"{onnx_path}: input {INPUT!r} has shape {shape}; expected N x 3 x H x W with fixed H, W")
    if shape[0] != -1 and shape[0] != max_batch:
        raise UsageError(f"{onnx_path}: the batch size is fixed at {shape[0]} in the ONNX; use --max-batch "
                         f"{shape[0]} or export with a dynamic batch axis")
    return shape[0], shape[2], shape[3]


def build_engine(onnx_path: str | Path, *, fp16: bool = False, int8: bool = False,
                 calib_dir: str | Path | None = None, workspace_mb: int | None = None, max_batch: int = 1,
                 progress: bool = True, device: str = "cuda:0", pixel_mean: Sequence[float] | None = None,
                 pixel_std: Sequence[float] | None = None, calib_cache: str | Path | None = None) -> bytes:
    """Serialized TensorRT engine (plan) for our ONNX export: explicit batch with one
    optimisation profile (batch 1 optimal, up to ``max_batch``), optional FP16/INT8.

    ``pixel_mean``/``pixel_std`` (INT8 calibration only) default to the ONNX metadata our
    export writes; ``calib_cache`` is where TensorRT's calibration table is kept between builds.
    """
    onnx_path = Path(onnx_path)
    if int8 and calib_dir is None:
        raise UsageError("--int8 needs --calib DIR: images to calibrate the INT8 scales with")
    trt = _import_tensorrt()
    dev = cuda_device(device)
    logger = _trt_logger(trt)
    logger.errors.clear()
    with torch.cuda.device(dev):  # the builder times tactics on the current CUDA device
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # 0: explicit batch is the only mode in TensorRT 10
        # The parser owns the weights the network points to: keep it alive until the build ends.
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors or 'no details'}")
        fixed_batch, height, width = _check_network(onnx_path, network, max_batch)

        config = builder.create_builder_config()
        if workspace_mb is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        profile = builder.create_optimization_profile()
        low = 1 if fixed_batch == -1 else fixed_batch
        profile.set_shape(INPUT, (low, 3, height, width), (low, 3, height, width), (max_batch, 3, height, width))
        if config.add_optimization_profile(profile) < 0:
            raise RuntimeError(f"TensorRT rejected the optimisation profile for {INPUT!r} "
                               f"(batch {low}..{max_batch}, {height}x{width})")
        if fp16:
            config.set_flag(_builder_flag(trt, "FP16", "--fp16"))
        calibrator = None
        if int8:
            config.set_flag(_builder_flag(trt, "INT8", "--int8"))
            mean, std = _pixel_stats(onnx_path, pixel_mean, pixel_std)
            cache_file = Path(calib_cache) if calib_cache else Path(f"{onnx_path}.calib")
            calibrator = _calibrator(trt, calibration_images(calib_dir), (height, width), mean, std, dev, cache_file)
            config.int8_calibrator = calibrator
            # Calibration runs at the profile's OPT shape (batch 1), matching get_batch_size().
            config.set_calibration_profile(profile)
        monitor = _progress_monitor(trt) if progress else None
        if monitor is not None:
            config.progress_monitor = monitor

        serialized = builder.build_serialized_network(network, config)
        if monitor is not None and monitor.cancelled:
            raise KeyboardInterrupt
        if calibrator is not None and isinstance(calibrator.error, KeyboardInterrupt):
            raise KeyboardInterrupt
        if calibrator is not None and calibrator.error is not None:
            raise RuntimeError(f"INT8 calibration failed: {calibrator.error}") from calibrator.error
        if serialized is None:
            why = "; ".join(logger.errors) or "see the TensorRT messages above"
            raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}: {why}")
        return bytes(serialized)


@dataclass(frozen=True)
class EngineFile:
    path: Path
    key: EngineKey
    built: bool  # False: reused from the cache
    seconds: float  # build time, 0 when reused
    others: int  # cached engines for the same ONNX under another key (never loaded)


def ensure_engine(onnx_path: str | Path, *, device: str = "cuda:0", fp16: bool = False, int8: bool = False,
                  calib_dir: str | Path | None = None, workspace_mb: int | None = None, max_batch: int = 1,
                  cache_dir: str | Path | None = None, build: bool = True, progress: bool = True,
                  pixel_mean: Sequence[float] | None = None, pixel_std: Sequence[float] | None = None) -> EngineFile:
    """The cached engine for ``onnx_path`` with these settings on this TensorRT and GPU, built
    and stored first when missing (or refused, with ``build=False``)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"no ONNX file at {onnx_path}; make it with `{EXPORT_HINT.format(path=onnx_path)}`")
    if int8 and calib_dir is None:
        raise UsageError("--int8 needs --calib DIR: images to calibrate the INT8 scales with")
    if max_batch < 1:
        raise UsageError(f"--max-batch must be at least 1, got {max_batch}")
    if workspace_mb is not None and workspace_mb < 1:
        raise UsageError(f"--workspace must be at least 1 MB, got {workspace_mb}")
    calib_sha = None
    if int8:
        mean, std = _pixel_stats(onnx_path, pixel_mean, pixel_std)
        calib_sha = calibration_sha256(calibration_images(calib_dir), calib_dir, _onnx_input_size(onnx_path),
                                       mean, std)
    key = current_key(onnx_path, fp16=fp16, int8=int8, calib_sha256=calib_sha, max_batch=max_batch,
                      workspace_mb=workspace_mb, device=device, onnx_sha256=file_sha256(onnx_path))
    cache = EngineCache(cache_dir)
    others = len(cache.others_for(key))
    path = cache.lookup(key)
    if path is not None:
        return EngineFile(path, key, built=False, seconds=0.0, others=others)
    if not build:
        raise UsageError(f"no TensorRT engine for {onnx_path} ({key.precision()}, max batch {max_batch}) built "
                         f"with TensorRT {key.tensorrt_version} for {key.gpu_name} in {cache.root}; build it with "
                         f"`{build_command(onnx_path, key, calib_dir=calib_dir, cache_dir=cache_dir)}`")
    if progress:
        note = f" ({others} cached engine(s) for this ONNX are for another TensorRT/GPU/settings)" if others else ""
        print(f"building a TensorRT engine for {onnx_path} ({key.precision()}, max batch {max_batch}, "
              f"TensorRT {key.tensorrt_version}, {key.gpu_name}); this takes minutes, once{note}",
              file=sys.stderr, flush=True)
    start = time.perf_counter()
    engine = build_engine(onnx_path, fp16=fp16, int8=int8, calib_dir=calib_dir, workspace_mb=workspace_mb,
                          max_batch=max_batch, progress=progress, device=device, pixel_mean=pixel_mean,
                          pixel_std=pixel_std, calib_cache=cache.calibration_path(key) if int8 else None)
    seconds = time.perf_counter() - start
    path = cache.store(key, engine, onnx_path=onnx_path, build_seconds=seconds)
    return EngineFile(path, key, built=True, seconds=seconds, others=others)


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    if dtype.name not in table:
        raise RuntimeError(f"engine tensor of TensorRT type {dtype.name} has no torch equivalent here")
    return table[dtype.name]


class TensorRTBackend:
    """Runs a cached (or freshly built) TensorRT engine on torch CUDA tensors.

    ``run`` takes float32 (N,3,H,W) normalised input on ``self.device`` and returns the model
    family's head tensors as float32 CUDA tensors; nothing is copied to the host. One execution context:
    calls are serialised by a lock.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, *, device: str = "cuda:0", fp16: bool = False, int8: bool = False,
                 calib_dir: str | Path | None = None, workspace_mb: int | None = None,
                 cache_dir: str | Path | None = None, build: bool = True, progress: bool = True,
                 max_batch: int = 1, pixel_mean: Sequence[float] | None = None,
                 pixel_std: Sequence[float] | None = None, output_names: Sequence[str] | None = None):
        """``output_names``: the model family's outputs (default: read from the ONNX metadata)."""
        self.output_names = tuple(output_names or expected_outputs(onnx_path))
        found = ensure_engine(onnx_path, device=device, fp16=fp16, int8=int8, calib_dir=calib_dir,
                              workspace_mb=workspace_mb, max_batch=max_batch, cache_dir=cache_dir, build=build,
                              progress=progress, pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.onnx_path = Path(onnx_path)
        self.engine_path, self.key, self.built = found.path, found.key, found.built
        self.device = cuda_device(device)
        self._load(found.path)

    def _load(self, path: Path) -> None:
        trt = _import_tensorrt()
        logger = _trt_logger(trt)
        logger.errors.clear()
        with torch.cuda.device(self.device):
            # The runtime must outlive the engine, and the engine the context; pybind's keep_alive
            # on deserialize_cuda_engine / create_execution_context holds those references.
            self._runtime = trt.Runtime(logger)
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self._engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {path} ({'; '.join(logger.errors)}); "
                                   f"delete it and {path.with_suffix('.json').name}, then build again")
            engine = self._engine
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            expected = self.output_names
            if inputs != [INPUT] or not set(expected) <= set(outputs):
                raise RuntimeError(f"{path}: engine I/O {inputs} -> {outputs}, expected [{INPUT!r}] -> {list(expected)}")
            if engine.get_tensor_dtype(INPUT) != trt.DataType.FLOAT:
                raise RuntimeError(f"{path}: input {INPUT!r} is {engine.get_tensor_dtype(INPUT).name}, expected FLOAT")
            shape = tuple(engine.get_tensor_shape(INPUT))  # (-1, 3, H, W) with a dynamic batch
            self.input_size = (int(shape[2]), int(shape[3]))
            self.max_batch = int(tuple(engine.get_tensor_profile_shape(INPUT, 0)[2])[0])
            self._dtypes = {n: _torch_dtype(trt, engine.get_tensor_dtype(n)) for n in expected}
            self._context = engine.create_execution_context()
            if self._context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
            # TensorRT asks for a non-default stream (the default one costs extra device syncs).
            self._stream = torch.cuda.Stream(device=self.device)
        self._lock = threading.Lock()

    def _check(self, images: torch.Tensor) -> None:
        h, w = self.input_size
        expected = f"float32 (N,3,{h},{w}) with 1 <= N <= {self.max_batch} on {self.device}"
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a torch tensor, {expected}; got {type(images).__name__}")
        if (images.dtype != torch.float32 or images.device != self.device or images.ndim != 4
                or tuple(images.shape[1:]) != (3, h, w) or not 1 <= images.shape[0] <= self.max_batch):
            raise ValueError(f"images must be {expected}; got {images.dtype} {tuple(images.shape)} on {images.device}")

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check(images)
        images = images.contiguous()
        if images.data_ptr() % ADDRESS_ALIGNMENT:
            images = images.clone()  # a view into a batch can start off the 256-byte boundary
        with self._lock, torch.cuda.device(self.device):
            current = torch.cuda.current_stream(self.device)
            # Run after whatever produced the input on the caller's stream; the caller's stream
            # then waits for the engine. Buffers allocated on `current` are only reused by work
            # ordered after that wait, so no record_stream is needed.
            self._stream.wait_stream(current)
            if not self._context.set_input_shape(INPUT, tuple(images.shape)):
                raise RuntimeError(f"TensorRT refused input shape {tuple(images.shape)}")
            outputs = {}
            for name in self.output_names:
                shape = tuple(self._context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
            for name, tensor in ((INPUT, images), *outputs.items()):
                if not self._context.set_tensor_address(name, int(tensor.data_ptr())):
                    raise RuntimeError(f"TensorRT refused the address of {name!r}")
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT messages above)")
            current.wait_stream(self._stream)
        return {name: t if t.dtype == torch.float32 else t.float() for name, t in outputs.items()}

    def __repr__(self) -> str:
        return (f"TensorRTBackend({self.onnx_path}, {self.key.precision()}, {self.input_size[0]}x{self.input_size[1]}, "
                f"max batch {self.max_batch}, {self.key.gpu_name}, engine {self.engine_path.name})")
