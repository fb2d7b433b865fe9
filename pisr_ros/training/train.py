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
LOSS_PARTS = ("semantic", "center", "offset", "semantic_aux", "center_aux", "offset_aux")


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
    log: str = "csv"  # "csv" or "tensorboard" (the CSV is always written)
    device: str = "auto"
    amp: bool = False  # bfloat16 autocast on CUDA
    channels_last: bool = True  # NHWC tensors: about 1.25x faster training on CPU (oneDNN)
    train_split: str = "train"
    val_split: str = "val"
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
    from pisr_ros.data import cityscapes_layout as layout
    from pisr_ros.evaluation import panoptic_quality, semantic
    from pisr_ros.inference.predict_cli import find_images, write_predictions

    image_dir = root / "leftImg8bit" / split
    if not layout.list_split(root, split):
        return None
    was_training = model.training
    model.eval()
    try:
        written = write_predictions(model, find_images(image_dir), out, tuple(spec.input_size), progress=progress)
    finally:
        model.train(was_training)
    results: dict = {}
    gt_json = layout.panoptic_json(root, split)
    if gt_json.is_file():
        ev = panoptic_quality.evaluate(str(gt_json), str(layout.panoptic_dir(root, split)),
                                       str(written["json"]), str(written["panoptic"]), workers=workers)
        results.update(ev.results)
        results["table"] = panoptic_quality.format_table(ev)
    else:
        print(f"no {gt_json}: PQ not scored (cityscapesscripts' csCreatePanopticImgs writes it); mIoU only")
    gt_sem = root / "gtFine" / split
    if gt_sem.is_dir():
        results["semantic"] = semantic.evaluate_semantic(str(gt_sem), str(written["semantic"]), workers=workers)
    results["seconds_per_image"] = written["seconds_per_image"]
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
    if opts.stop_at is not None and opts.stop_at < 1:
        raise UsageError(f"--stop-at must be at least 1, got {opts.stop_at}")
    if not opts.resume and (out / LAST).exists():
        raise UsageError(f"{out} already holds a run ({LAST}); pass --resume to continue it, or choose another --out")


def train(opts: TrainOptions) -> dict:
    """Run (or resume) a training; returns the last losses, iteration count and val results."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from pisr_ros.data.dataset import CityscapesPanoptic, collate
    from pisr_ros.inference.torch_predict import normalize
    from pisr_ros.models.losses import PanopticDeepLabLoss
    from pisr_ros.models.spec import build_model, load_spec
    from pisr_ros.training.sampler import IterationBatchSampler

    out = Path(opts.out)
    _check(opts, out)
    spec = load_spec(opts.config)
    dist = setup_distributed(opts.device)
    threads = opts.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    crop = tuple(opts.crop_size) if opts.crop_size else tuple(max(32, s // 2) for s in spec.input_size)
    warmup = opts.warmup if opts.warmup is not None else min(1000, opts.iters // 20)

    torch.manual_seed(opts.seed)  # the initial weights; DDP broadcasts rank 0's anyway
    model = build_model(spec)
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
    criterion = PanopticDeepLabLoss(spec.loss)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=opts.lr,
                                 weight_decay=opts.weight_decay)
    start = 0
    if opts.resume:
        extra = _load_resume(out / LAST, model, optimizer, spec)
        start = int(extra["iteration"])
        if dist.main:
            before = extra.get("options", {})
            changed = [k for k in ("iters", "batch_size", "lr", "seed", "crop_size") if k in before
                       and before[k] != opts.plain()[k]]
            print(f"resuming {out / LAST} at iteration {start}"
                  + (f" (changed: {', '.join(changed)})" if changed else ""))
        if dist.main and "rng" in extra:
            torch.set_rng_state(extra["rng"]["torch"])
            if "cuda" in extra["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(extra["rng"]["cuda"])
    if dist.enabled:
        torch.manual_seed(opts.seed * 1000 + dist.rank + 7919 * start)  # dropout differs per rank
        if dist.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    else:
        ddp = model

    dataset = CityscapesPanoptic(opts.data, opts.train_split, tuple(spec.input_size), crop, train=True,
                                 scale_range=tuple(opts.scale_range), seed=opts.seed)
    stop = min(opts.iters, opts.stop_at) if opts.stop_at is not None else opts.iters
    sampler = IterationBatchSampler(len(dataset), opts.batch_size, opts.seed, start, stop,
                                    dist.rank, dist.world_size)
    workers = default_workers() if opts.workers is None else opts.workers
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                        pin_memory=dist.device.type == "cuda", worker_init_fn=_worker_init if workers else None,
                        # Its own generator: the loader's base seed must not draw from the global
                        # RNG, or a resumed run's dropout would be one draw off.
                        generator=torch.Generator().manual_seed(opts.seed),
                        # Not fork: see pisr_ros.workers (forked workers hang in OpenCV).
                        multiprocessing_context=start_context() if workers else None)

    csv_log = tb = None
    if dist.main:
        fields = ["iteration", "lr", "loss", *LOSS_PARTS, "seconds", "data_seconds"]
        csv_log = CsvLog(out / LOG_CSV, fields, keep_until=start if opts.resume else None)
        tb = _tensorboard(out) if opts.log == "tensorboard" else None
        print(f"training {spec.name} on {len(dataset)} {opts.train_split} images of {opts.data}: "
              f"iterations {start}..{opts.iters}, batch {opts.batch_size} x {dist.world_size} process(es), "
              f"crop {crop[0]}x{crop[1]}, input {spec.input_size[0]}x{spec.input_size[1]}, "
              f"{dist.device}, {threads} threads, {workers} loader workers")

    def save_last(iteration: int) -> None:
        if dist.main:
            _save_atomically(out / LAST, model, spec, optimizer=optimizer.state_dict(), iteration=iteration,
                             rng=_rng_state(), options=opts.plain())

    amp = opts.amp and dist.device.type == "cuda"
    losses_seen: list[float] = []
    last_parts: dict = {}
    val_history: list[dict] = []
    iteration = start
    bar = tqdm(total=opts.iters, initial=start, desc="train", unit="it", disable=not (dist.main and opts.progress),
               dynamic_ncols=True)
    smoothed = None
    t_prev = time.perf_counter()
    try:
        for batch in loader:
            t_data = time.perf_counter() - t_prev
            lr = poly_lr(iteration, opts.iters, opts.lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = normalize(batch.pop("image").to(dist.device, non_blocking=True), spec.pixel_mean,
                               spec.pixel_std).contiguous(memory_format=memory_format)
            batch.pop("index")
            targets = {k: v.to(dist.device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=amp):
                parts = criterion(ddp(images), targets)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise RuntimeError(f"the loss is {loss.item()} at iteration {iteration}; lower --lr "
                                   f"(now {lr:g}) or look for broken labels")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1

            logged = torch.stack([parts[k].detach().float() for k in ("loss", *LOSS_PARTS) if k in parts])
            if dist.enabled:
                torch.distributed.all_reduce(logged)
                logged /= dist.world_size
            values = dict(zip([k for k in ("loss", *LOSS_PARTS) if k in parts], logged.tolist()))
            last_parts = values
            losses_seen.append(values["loss"])
            seconds = time.perf_counter() - t_prev
            if dist.main:
                csv_log.write({"iteration": iteration, "lr": f"{lr:.6g}", "seconds": f"{seconds:.4f}",
                               "data_seconds": f"{t_data:.4f}",
                               **{k: f"{v:.6g}" for k, v in values.items()}})
                if tb is not None:
                    for k, v in values.items():
                        tb.add_scalar(f"loss/{k}", v, iteration)
                    tb.add_scalar("lr", lr, iteration)
                smoothed = values["loss"] if smoothed is None else 0.9 * smoothed + 0.1 * values["loss"]
                bar.set_postfix(loss=f"{smoothed:.3f}", lr=f"{lr:.2e}", refresh=False)
                bar.update()
            if iteration % opts.save_every == 0 and iteration < opts.iters:
                save_last(iteration)
            if opts.val_every and iteration % opts.val_every == 0 and iteration < opts.iters:
                if dist.main:
                    res = validate(model, spec, Path(opts.data), opts.val_split, out / "val", progress=False)
                    if res is not None:
                        val_history.append(_log_validation(out, iteration, res, tb))
                        bar.write(f"iteration {iteration}: {summary_line(res)}")
                dist.barrier()
            t_prev = time.perf_counter()
    except KeyboardInterrupt:
        # Keep what was learnt: `--resume` picks up from here.
        if iteration > start:
            save_last(iteration)
            if dist.main:
                print(f"\ninterrupted at iteration {iteration}; saved {out / LAST} (continue with --resume)")
        raise
    finally:
        bar.close()
        if csv_log is not None:
            csv_log.close()

    save_last(iteration)
    result = {"iteration": iteration, "losses": losses_seen, "last": last_parts, "val": None}
    if iteration < opts.iters:
        if dist.main:
            print(f"paused at iteration {iteration} of {opts.iters}: {out / LAST} (continue with --resume)")
    elif dist.main:
        _save_atomically(out / FINAL, model, spec, iteration=iteration, options=opts.plain())
        res = validate(model, spec, Path(opts.data), opts.val_split, out / "val", progress=opts.progress)
        if res is None:
            print(f"no {opts.val_split} split under {opts.data}: nothing validated")
        else:
            val_history.append(_log_validation(out, iteration, res, tb))
            table = res.pop("table", None)
            _write_metrics(out / VAL_METRICS, {"iteration": iteration, "checkpoint": str(out / FINAL),
                                               "class_names": {c.label_id: c.name for c in CLASSES}, **res})
            if table:
                print(table)
            print(f"{opts.val_split} after {iteration} iterations: {summary_line(res)}  ->  {out / VAL_METRICS}")
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
