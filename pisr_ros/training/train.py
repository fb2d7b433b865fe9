"""The training loop: Panoptic-DeepLab (+ PISR) on the Cityscapes layout, on one CPU, one GPU,
or many GPUs under ``torchrun``.

    opts = TrainOptions(config="config/models/pd_light_pisr.yaml", data="data/cityscapes",
                        out="runs/light", iters=60000, batch_size=8, crop_size=(256, 512))
    summary = train(opts)

What it follows and why:
- Channels-last (NHWC) weights and images by default: oneDNN's depthwise convolutions, most
  of the light models' time, run faster that way on CPU (training 1.25x, inference 1.7x on
  the 2-core reference machine).
- Adam, poly learning rate (power 0.9) after a linear warm-up, no weight decay: detectron2's
  Panoptic-DeepLab Cityscapes recipe. The rate is a function of the iteration alone, so a
  resumed run continues the same schedule.
- Iterations, not epochs (``sampler.IterationBatchSampler``): batch t is a function of t and
  the seed, so ``--resume`` continues exactly where ``last.pt`` stopped.
- Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) each process joins
  the process group, trains its shard of every global batch through DDP with SyncBatchNorm
  on GPUs, and only rank 0 logs, saves and validates. Without those variables it is one
  process and nothing distributed is touched.
- Outputs in ``out``: ``last.pt`` (model, optimizer, iteration, RNG; every ``save_every``
  iterations and at the end, replaced atomically), ``final.pt`` (weights and spec only),
  ``log.csv`` (one row per iteration), ``val_metrics.json`` (PQ/SQ/RQ, per class, mIoU of the
  val split, when there is one) and ``val/`` (those predictions).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pisr_ros.errors import UsageError
from pisr_ros.taxonomy import CLASSES
from pisr_ros.workers import start_context

LOG_CSV = "log.csv"
VAL_LOG_CSV = "val_log.csv"
LAST = "last.pt"
FINAL = "final.pt"
VAL_METRICS = "val_metrics.json"


def default_workers() -> int:
    """DataLoader workers: one core per worker, one left for the training process; 1 on 2 cores."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class TrainOptions:
    config: str  # model spec YAML (config/models/*.yaml)
    data: str  # root of the Cityscapes layout
    out: str
    iters: int = 90000
    batch_size: int = 8  # per process
    crop_size: tuple[int, int] | None = None  # default: half the spec's input_size
    lr: float = 1e-3
    warmup: int | None = None  # default: min(1000, iters // 20)
    weight_decay: float = 0.0
    scale_range: tuple[float, float] = (0.5, 2.0)
    seed: int = 0
    resume: bool = False
    init_from: str | None = None  # checkpoint to start from (pisr_ros.models.warm_start); ignored on resume
    freeze: tuple[str, ...] = ()  # parts of the network kept fixed (pisr_ros.models.freeze), e.g. backbone
    workers: int | None = None  # default: default_workers()
    threads: int | None = None  # torch CPU threads; default: this process's share of the cores
    val_every: int = 0  # 0: validate only at the end
    stop_at: int | None = None  # pause after this iteration (last.pt only); the schedule still ends at iters
    save_every: int = 500
    save_minutes: float = 0.0  # also write last.pt when this many minutes passed since the last (0: off)
    thing_crops: float = 0.0  # share of crops placed on a thing instance (pisr_ros.data.augment.Augment)
    signal_frames: int = 20  # val frames the instance signals (instance_signals.py) are measured on
    log: str = "csv"  # "csv" or "tensorboard" (the CSV is always written)
    device: str = "auto"
    amp: bool = False  # bfloat16 autocast on CUDA
    channels_last: bool = True  # NHWC tensors: about 1.25x faster training on CPU (oneDNN)
    train_split: str = "train"
    val_split: str = "val"
    val_data: str | None = None  # root of the val split; default: data
    progress: bool = True

    def plain(self) -> dict:
        """JSON- and weights_only-safe copy, kept in checkpoints."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def poly_lr(iteration: int, total: int, base_lr: float, warmup: int, power: float = 0.9) -> float:
    """Linear warm-up from base_lr / 100 over ``warmup`` iterations, then base_lr (1 - t/T)^power."""
    if iteration < warmup:
        return base_lr * (0.01 + 0.99 * iteration / warmup)
    return base_lr * max(0.0, 1.0 - iteration / total) ** power


# ----------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def setup_distributed(device: str) -> Dist:
    """The process's place in a ``torchrun`` job, or a single process when not launched by one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
        dev = torch.device("cuda", local_rank) if world_size > 1 or device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, local_rank, world_size, dev)


def _worker_init(_worker_id: int) -> None:
    import cv2

    # Each worker is one core's worth of work; library thread pools would only contend.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


# ----------------------------------------------------------------------------- logs


class CsvLog:
    """Rows appended and flushed as they come; on resume, rows beyond the resumed iteration go."""

    def __init__(self, path: Path, fields: list[str], keep_until: int | None):
        rows = []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= keep_until]
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _tensorboard_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise UsageError("--log tensorboard needs the tensorboard package (pip install tensorboard); "
                         "--log csv needs nothing") from exc
    return SummaryWriter


def _tensorboard(out: Path):
    return _tensorboard_writer_class()(str(out / "tensorboard"))


# ----------------------------------------------------------------------------- checkpoints


def _save_atomically(path: Path, model, spec, **extra) -> None:
    from pisr_ros.models.spec import save_checkpoint

    tmp = path.with_suffix(path.suffix + ".tmp")
    save_checkpoint(tmp, model, spec, **extra)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated last.pt


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _load_resume(path: Path, model, optimizer, spec) -> dict:
    from pisr_ros.models.spec import checkpoint_problems, read_checkpoint

    if not path.is_file():
        raise UsageError(f"--resume: no {path}; start without --resume (it is written every --save-every iterations)")
    ckpt = read_checkpoint(path)
    if "optimizer" not in ckpt.get("extra", {}):
        raise UsageError(f"{path} is not a training checkpoint of `pisr-ros train` (no optimizer state)")
    # Only the name may differ: input size and loss shape what the optimizer state means.
    problems = checkpoint_problems(ckpt, spec, model, free_fields=("name:",))
    if problems:
        raise UsageError(f"--resume: {path} was trained with a different model spec: " + "; ".join(problems[:8]))
    model.load_state_dict(ckpt["state_dict"])
    try:
        optimizer.load_state_dict(ckpt["extra"]["optimizer"])
    except ValueError as exc:  # other parameters train than when it was written
        raise UsageError(f"--resume: {path} was trained with another --freeze than now; resume with the "
                         "same --freeze") from exc
    return ckpt["extra"]


# ----------------------------------------------------------------------------- validation


def validate(model, spec, root: Path, split: str, out: Path, workers: int = 1,
             progress: bool = True) -> dict | None:
    """Predict ``split`` into ``out`` and score it with the project's evaluators: the
    ``pisr-ros evaluate --json-out`` dict (All/Things/Stuff/per_class and "semantic"), or None
    when the split has no images. PQ needs the panoptic json of cityscapesscripts'
    ``createPanopticImgs``; without it only mIoU is scored.

    ``workers`` stays 1 here: the evaluators' process pool forks, and a forked child that calls
    cv2 after this process has used cv2's thread pool (every large resize does) hangs forever
    in cv2's thread-pool teardown."""
    from pisr_ros import cityscapes_layout as layout
    from pisr_ros.evaluation import panoptic_quality, semantic
    from pisr_ros.image_files import find_images
    from pisr_ros.inference.predict_files import write_predictions
    from pisr_ros.inference.predictor import Predictor

    image_dir = root / "leftImg8bit" / split
    if not layout.list_split(root, split):
        return None
    was_training = model.training
    try:
        # The node's path: the same Predictor, preprocessing and post-processing for the device.
        predictor = Predictor.from_module(model, spec, next(model.parameters()).device)
        written = write_predictions(predictor, find_images(image_dir), out, progress=progress)
    finally:
        model.train(was_training)
    results: dict = {}
    gt_json = layout.panoptic_json(root, split)
    if gt_json.is_file():
        ev = panoptic_quality.evaluate(str(gt_json), str(layout.panoptic_dir(root, split)),
                                       str(written.json), str(written.panoptic), workers=workers)
        results.update(ev.results)
        results["table"] = panoptic_quality.format_table(ev)
    else:
        print(f"no {gt_json}: PQ not scored (cityscapesscripts' csCreatePanopticImgs writes it); mIoU only")
    gt_sem = root / "gtFine" / split
    if gt_sem.is_dir():
        results["semantic"] = semantic.evaluate_semantic(str(gt_sem), str(written.semantic), workers=workers)
    results["seconds_per_image"] = written.seconds_per_image
    return results


def summary_line(results: dict) -> str:
    """One line of headline numbers, in percent."""

    def pct(v):
        return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"

    parts = []
    if "All" in results:
        a = results["All"]
        parts.append(f"PQ {pct(a['pq'])} (SQ {pct(a['sq'])}, RQ {pct(a['rq'])})")
        parts.append(f"PQ_th {pct(results['Things']['pq'])}, PQ_st {pct(results['Stuff']['pq'])}")
    if "semantic" in results:
        parts.append(f"mIoU {pct(results['semantic']['averageScoreClasses'])}")
    return ", ".join(parts) or "no scores"


# ----------------------------------------------------------------------------- the loop


def _init_from(model, path: str, verbose: bool) -> None:
    from pisr_ros.models.spec import read_checkpoint
    from pisr_ros.models.warm_start import warm_start

    try:
        report = warm_start(model, read_checkpoint(path)["state_dict"])
    except ValueError as exc:
        raise UsageError(f"--init-from {path}: {exc}") from exc
    if verbose:
        print(f"--init-from {path}: {report.summary()}")


def _check(opts: TrainOptions, out: Path) -> None:
    if opts.iters < 1:
        raise UsageError(f"--iters must be at least 1, got {opts.iters}")
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if opts.lr <= 0:
        raise UsageError(f"--lr must be positive, got {opts.lr}")
    if opts.workers is not None and opts.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {opts.workers}")
    if opts.log not in ("csv", "tensorboard"):
        raise UsageError(f"--log must be csv or tensorboard, got {opts.log!r}")
    if opts.log == "tensorboard":
        _tensorboard_writer_class()  # fail before any work, not after building the data
    if opts.save_every < 1 or opts.val_every < 0:
        raise UsageError("--save-every must be >= 1 and --val-every >= 0")
    if opts.save_minutes < 0 or not 0 <= opts.thing_crops <= 1 or opts.signal_frames < 0:
        raise UsageError("--save-minutes must be >= 0, --thing-crops in 0..1 and --signal-frames >= 0")
    if opts.stop_at is not None and opts.stop_at < 1:
        raise UsageError(f"--stop-at must be at least 1, got {opts.stop_at}")
    if not opts.resume and (out / LAST).exists():
        raise UsageError(f"{out} already holds a run ({LAST}); pass --resume to continue it, or choose another --out")


@dataclass
class _Run:
    """What the steps of one training share."""

    opts: TrainOptions
    spec: object
    family: object
    dist: Dist
    out: Path
    model: torch.nn.Module  # the module itself (saved, validated)
    ddp: torch.nn.Module  # what the step calls: the model, or its DDP wrapper
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    memory_format: torch.memory_format
    loss_parts: tuple[str, ...]
    threads: int
    crop: tuple[int, int]
    warmup: int
    start: int = 0


def train(opts: TrainOptions) -> dict:
    """Run (or resume) a training; returns the last losses, iteration count and val results."""
    run = _setup(opts)
    dataset, loader = _make_loader(run)
    csv_log, tb = _open_logs(run, dataset, loader)
    state = _LoopState(iteration=run.start, last_save=time.perf_counter())
    try:
        _loop(run, loader, csv_log, tb, state)
    except KeyboardInterrupt:
        # Keep what was learnt: `--resume` picks up from here.
        if state.iteration > run.start:
            _save_last(run, state.iteration)
            if run.dist.main:
                print(f"\ninterrupted at iteration {state.iteration}; saved {run.out / LAST} (continue with --resume)")
        raise
    finally:
        if csv_log is not None:
            csv_log.close()
    return _finish(run, state, tb)


def _setup(opts: TrainOptions) -> _Run:
    """Spec, processes, threads, the model (fresh, warm-started or resumed), loss and optimizer."""
    from pisr_ros.families import family_of
    from pisr_ros.models.spec import load_spec

    out = Path(opts.out)
    _check(opts, out)
    spec = load_spec(opts.config)
    family = family_of(spec)
    dist = setup_distributed(opts.device)
    threads = opts.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    crop = tuple(opts.crop_size) if opts.crop_size else tuple(max(32, s // 2) for s in spec.input_size)
    warmup = opts.warmup if opts.warmup is not None else min(1000, opts.iters // 20)

    torch.manual_seed(opts.seed)  # the initial weights; DDP broadcasts rank 0's anyway
    model = family.build_model(spec)
    if opts.init_from and not opts.resume:
        _init_from(model, opts.init_from, dist.main)
    if opts.freeze:  # also on resume: the optimizer holds only the parameters that train
        from pisr_ros.models.freeze import freeze
        frozen = freeze(model, opts.freeze)
        if dist.main:
            print(f"--freeze {','.join(opts.freeze)}: {frozen:,} parameters fixed")
    model = model.to(dist.device)
    memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)  # before the optimizer: Adam's state follows it
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=opts.lr,
                                 weight_decay=opts.weight_decay)
    start = _resume(opts, out, model, optimizer, spec, dist) if opts.resume else 0
    if dist.enabled:
        torch.manual_seed(opts.seed * 1000 + dist.rank + 7919 * start)  # dropout differs per rank
        if dist.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    else:
        ddp = model
    return _Run(opts, spec, family, dist, out, model, ddp, family.loss(spec), optimizer, memory_format,
                tuple(family.loss_parts), threads, crop, warmup, start)


def _resume(opts: TrainOptions, out: Path, model, optimizer, spec, dist: Dist) -> int:
    """Load ``last.pt`` into the model and optimizer, restore the RNG; the iteration to go on from."""
    extra = _load_resume(out / LAST, model, optimizer, spec)
    start = int(extra["iteration"])
    if dist.main:
        before = extra.get("options", {})
        changed = [k for k in ("iters", "batch_size", "lr", "seed", "crop_size", "thing_crops") if k in before
                   and before[k] != opts.plain()[k]]
        print(f"resuming {out / LAST} at iteration {start}"
              + (f" (changed: {', '.join(changed)})" if changed else ""))
    if dist.main and "rng" in extra:
        torch.set_rng_state(extra["rng"]["torch"])
        if "cuda" in extra["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(extra["rng"]["cuda"])
    return start


def _make_loader(run: _Run):
    """The training split and a loader whose batch t is a function of t (see the sampler)."""
    from torch.utils.data import DataLoader

    from pisr_ros.data.dataset import collate
    from pisr_ros.training.sampler import IterationBatchSampler

    opts, dist = run.opts, run.dist
    dataset = run.family.dataset(opts.data, opts.train_split, run.spec, crop_size=run.crop, train=True,
                                 scale_range=tuple(opts.scale_range), seed=opts.seed,
                                 thing_crop_prob=opts.thing_crops)
    stop = min(opts.iters, opts.stop_at) if opts.stop_at is not None else opts.iters
    sampler = IterationBatchSampler(len(dataset), opts.batch_size, opts.seed, run.start, stop,
                                    dist.rank, dist.world_size)
    workers = default_workers() if opts.workers is None else opts.workers
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                        pin_memory=dist.device.type == "cuda", worker_init_fn=_worker_init if workers else None,
                        # Its own generator: the loader's base seed must not draw from the global
                        # RNG, or a resumed run's dropout would be one draw off.
                        generator=torch.Generator().manual_seed(opts.seed),
                        # Enough batches in flight that a slow one (a scale-2 crop, a busy core)
                        # does not stall the step.
                        prefetch_factor=4 if workers else None, persistent_workers=False,
                        # Not fork: see pisr_ros.workers (forked workers hang in OpenCV).
                        multiprocessing_context=start_context() if workers else None)
    loader.workers = workers
    return dataset, loader


def _open_logs(run: _Run, dataset, loader):
    """log.csv (rows past the resumed iteration dropped) and TensorBoard; rank 0 only."""
    if not run.dist.main:
        return None, None
    opts, spec = run.opts, run.spec
    fields = ["iteration", "lr", "loss", *run.loss_parts, "seconds", "data_seconds"]
    csv_log = CsvLog(run.out / LOG_CSV, fields, keep_until=run.start if opts.resume else None)
    tb = _tensorboard(run.out) if opts.log == "tensorboard" else None
    print(f"training {spec.name} on {len(dataset)} {opts.train_split} images of {opts.data}: "
          f"iterations {run.start}..{opts.iters}, batch {opts.batch_size} x {run.dist.world_size} process(es), "
          f"crop {run.crop[0]}x{run.crop[1]}, input {spec.input_size[0]}x{spec.input_size[1]}, "
          f"thing crops {opts.thing_crops:g}, {run.dist.device}, {run.threads} threads, "
          f"{loader.workers} loader workers")
    return csv_log, tb


@dataclass
class _LoopState:
    iteration: int
    last_save: float  # perf_counter of the last last.pt
    losses: list = dataclasses.field(default_factory=list)
    last_parts: dict = dataclasses.field(default_factory=dict)
    val_history: list = dataclasses.field(default_factory=list)
    smoothed: float | None = None


def _loop(run: _Run, loader, csv_log, tb, state: _LoopState) -> None:
    from tqdm import tqdm

    opts = run.opts
    bar = tqdm(total=opts.iters, initial=run.start, desc="train", unit="it",
               disable=not (run.dist.main and opts.progress), dynamic_ncols=True)
    t_prev = time.perf_counter()
    try:
        for batch in loader:
            t_data = time.perf_counter() - t_prev
            lr = poly_lr(state.iteration, opts.iters, opts.lr, run.warmup)
            values = _train_step(run, batch, lr, state.iteration)
            state.iteration += 1
            state.last_parts = values
            state.losses.append(values["loss"])
            if run.dist.main:
                _log_step(run, csv_log, tb, bar, state, values, lr, time.perf_counter() - t_prev, t_data)
            _between_steps(run, tb, bar, state)
            t_prev = time.perf_counter()
    finally:
        bar.close()


def _train_step(run: _Run, batch: dict, lr: float, iteration: int) -> dict:
    """One optimizer step on ``batch``; the loss parts (averaged over processes) as floats."""
    from pisr_ros.inference.predictor import normalize

    dist, spec = run.dist, run.spec
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    images = normalize(batch.pop("image").to(dist.device, non_blocking=True), spec.pixel_mean,
                       spec.pixel_std).contiguous(memory_format=run.memory_format)
    batch.pop("index")
    targets = {k: v.to(dist.device, non_blocking=True) for k, v in batch.items()}
    amp = run.opts.amp and dist.device.type == "cuda"
    with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=amp):
        parts = run.criterion(run.ddp(images), targets)
    loss = parts["loss"]
    if not torch.isfinite(loss):
        raise RuntimeError(f"the loss is {loss.item()} at iteration {iteration}; lower --lr "
                           f"(now {lr:g}) or look for broken labels")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    names = [k for k in ("loss", *run.loss_parts) if k in parts]
    logged = torch.stack([parts[k].detach().float() for k in names])
    if dist.enabled:
        torch.distributed.all_reduce(logged)
        logged /= dist.world_size
    return dict(zip(names, logged.tolist()))


def _log_step(run: _Run, csv_log, tb, bar, state: _LoopState, values: dict, lr: float,
              seconds: float, data_seconds: float) -> None:
    it = state.iteration
    csv_log.write({"iteration": it, "lr": f"{lr:.6g}", "seconds": f"{seconds:.4f}",
                   "data_seconds": f"{data_seconds:.4f}", **{k: f"{v:.6g}" for k, v in values.items()}})
    if tb is not None:
        for k, v in values.items():
            tb.add_scalar(f"loss/{k}", v, it)
        tb.add_scalar("lr", lr, it)
    state.smoothed = values["loss"] if state.smoothed is None else 0.9 * state.smoothed + 0.1 * values["loss"]
    bar.set_postfix(loss=f"{state.smoothed:.3f}", lr=f"{lr:.2e}", refresh=False)
    bar.update()


def _between_steps(run: _Run, tb, bar, state: _LoopState) -> None:
    """``last.pt`` every ``save_every`` iterations or ``save_minutes``, and validation every
    ``val_every`` iterations (the end of the schedule saves and validates in ``_finish``)."""
    opts, it = run.opts, state.iteration
    if it >= opts.iters:
        return
    due = it % opts.save_every == 0
    if opts.save_minutes and time.perf_counter() - state.last_save >= 60 * opts.save_minutes:
        due = True
    if due:
        _save_last(run, it)
        state.last_save = time.perf_counter()
    if opts.val_every and it % opts.val_every == 0:
        if run.dist.main:
            try:
                row = _validate_and_log(run, it, tb, progress=False)
            except Exception as exc:  # noqa: BLE001 - hours of training outweigh one failed validation
                bar.write(f"iteration {it}: validation failed ({type(exc).__name__}: {exc}); training goes on")
            else:
                if row is not None:
                    state.val_history.append(row)
                    bar.write(f"iteration {it}: {_row_line(row)}")
        run.dist.barrier()


def _save_last(run: _Run, iteration: int) -> None:
    if run.dist.main:
        _save_atomically(run.out / LAST, run.model, run.spec, optimizer=run.optimizer.state_dict(),
                         iteration=iteration, rng=_rng_state(), options=run.opts.plain())


def _validate_and_log(run: _Run, iteration: int, tb, progress: bool) -> dict | None:
    """``validate`` (PQ, mIoU) plus the instance signals of the val split, one row of val_log.csv."""
    from pisr_ros.training.instance_signals import instance_signals

    opts = run.opts
    res = validate(run.model, run.spec, _val_root(opts), opts.val_split, run.out / "val", progress=progress)
    if res is None:
        return None
    signals = instance_signals(run.model, run.spec, _val_root(opts), opts.val_split, frames=opts.signal_frames)
    res["instance_signals"] = signals
    return _log_validation(run.out, iteration, res, tb)


def _val_root(opts: TrainOptions) -> Path:
    return Path(opts.val_data or opts.data)


def _row_line(row: dict) -> str:
    def pct(k):
        v = row.get(k)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    return (f"PQ {pct('pq_all')}, PQ_th {pct('pq_things')}, PQ_st {pct('pq_stuff')}, mIoU {pct('miou')}; "
            f"heat at GT centers {row.get('heat_at_centers', float('nan')):.2f}, "
            f"peaks/frame {row.get('peaks_per_frame', float('nan')):.1f} "
            f"(GT instances/frame {row.get('instances_per_frame', float('nan')):.1f}), "
            f"centers found {pct('centers_found')}")


def _finish(run: _Run, state: _LoopState, tb) -> dict:
    """last.pt; at the end of the schedule also final.pt and the final validation."""
    opts, dist, iteration = run.opts, run.dist, state.iteration
    _save_last(run, iteration)
    result = {"iteration": iteration, "losses": state.losses, "last": state.last_parts, "val": None}
    if iteration < opts.iters:
        if dist.main:
            print(f"paused at iteration {iteration} of {opts.iters}: {run.out / LAST} (continue with --resume)")
    elif dist.main:
        _save_atomically(run.out / FINAL, run.model, run.spec, iteration=iteration, options=opts.plain())
        res = validate(run.model, run.spec, _val_root(opts), opts.val_split, run.out / "val", progress=opts.progress)
        if res is None:
            print(f"no {opts.val_split} split under {_val_root(opts)}: nothing validated")
        else:
            from pisr_ros.training.instance_signals import instance_signals

            res["instance_signals"] = instance_signals(run.model, run.spec, _val_root(opts), opts.val_split,
                                                       frames=opts.signal_frames)
            state.val_history.append(_log_validation(run.out, iteration, res, tb))
            table = res.pop("table", None)
            _write_metrics(run.out / VAL_METRICS, {"iteration": iteration, "checkpoint": str(run.out / FINAL),
                                                   "class_names": {c.label_id: c.name for c in CLASSES}, **res})
            if table:
                print(table)
            print(f"{opts.val_split} after {iteration} iterations: {summary_line(res)}  ->  {run.out / VAL_METRICS}")
            print(f"instances: {_row_line(state.val_history[-1])}")
            result["val"] = res
        if tb is not None:
            tb.close()
    dist.barrier()
    if dist.enabled:
        torch.distributed.destroy_process_group()
    return result


def _log_validation(out: Path, iteration: int, res: dict, tb) -> dict:
    row = {"iteration": iteration}
    for group in ("All", "Things", "Stuff"):
        if group in res:
            for m in ("pq", "sq", "rq"):
                row[f"{m}_{group.lower()}"] = res[group][m]
    if "semantic" in res:
        row["miou"] = res["semantic"]["averageScoreClasses"]
    row.update(res.get("instance_signals", {}))
    path = out / VAL_LOG_CSV
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    if tb is not None:
        for k, v in row.items():
            if k != "iteration":
                tb.add_scalar(f"val/{k}", v, iteration)
    return row


def _write_metrics(path: Path, results: dict) -> None:
    from pisr_ros.evaluation.panoptic_quality import write_json

    write_json(results, str(path))
