"""Training throughput of a recipe on this machine: clips/s, peak memory and model FLOPs utilisation (MFU).

    python benchmarks/train_throughput.py --config train/configs/gpu.yaml [key=value ...] [--steps 30]
    python benchmarks/train_throughput.py --config train/configs/cpu.yaml --steps 20 --threads 2

Runs the real training step (`train.loop.train_step`: masks, forward, backward, AdamW, EMA; bf16 autocast, SDPA,
fused AdamW and torch.compile on CUDA as the recipe asks) on batches from the recipe's data pipeline (workers and
pinned memory as configured). FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` for each timed step's
own mask (a future mask shows the encoder three quarters of the tokens, a long-range multi-block one a tenth), on one
clip in eager mode, times the batch: matmuls, convolutions and attention (PyTorch's counter has no formula for the
CPU attention kernel; this script adds one), forward and backward; the EMA and optimizer are not counted, as in the
usual MFU convention. MFU = counted FLOPs / seconds / peak FLOP/s. The peak is --peak-tflops, else the dense bf16 peak
of a known GPU, else (CPU) a measured float32 matmul rate. Prints a table and writes JSON (default, for a recipe of
train/configs: benchmarks/train_throughput_<recipe>.json; another recipe needs --json).
"""

import argparse
import dataclasses
import math
import os
import re
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from jepa_demo.checkpoint import first_line  # noqa: E402
from jepa_demo.cli import out_of_memory  # noqa: E402
from jepa_demo.config import PreprocessConfig, model_config_from_preset  # noqa: E402
from jepa_demo.hardware import cpu_model  # noqa: E402
from jepa_demo.masks import mask_to_indices  # noqa: E402
from jepa_demo.model import VideoJEPA  # noqa: E402
from train.__main__ import data_worker_died, own_message  # noqa: E402
from train.config import config_to_dict, load_config  # noqa: E402
from train.data import make_loader  # noqa: E402
from train.loop import (  # noqa: E402
    build_dataset,
    build_optimizer,
    mask_for_step,
    setup_runtime,
    train_step,
    wrap_for_speed,
)

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity), by the model's name as
# torch.cuda.get_device_name gives it; a GPU not listed gets no MFU unless --peak-tflops is given.
GPU_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200 NVL": 835.0, "H200": 989.0,
                   "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def gpu_peak_tflops(name: str) -> float | None:
    """The longest listed model named as a whole word in `name` ("NVIDIA L40S" is an L40S, not an L4; "NVIDIA H100
    NVL" an H100 NVL, not an H100)."""
    if re.search(r"\bMIG\b", name):  # a slice of the GPU ("... MIG 1g.10gb"): the whole GPU's peak would not be its
        return None
    found = [key for key in GPU_PEAK_TFLOPS if re.search(rf"\b{re.escape(key)}\b", name)]
    return GPU_PEAK_TFLOPS[max(found, key=len)] if found else None


def measured_cpu_peak_tflops(size: int = 2048, repeats: int = 5, bursts: int = 5) -> float:
    """float32 matmul rate on this CPU, the best of `bursts`: the ceiling a CPU training step could reach. One burst
    (half a second) met by other work on the machine read as low as half the rate, and the MFU as twice as high."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    rates = []
    for _ in range(bursts):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        rates.append(2 * size**3 * repeats / (time.perf_counter() - start) / 1e12)
    return max(rates)


# The CPU attention kernel's forward and backward, counted like the GPU kernels PyTorch's counter knows.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad, q, k, v),
}


def step_flops(model, clip: torch.Tensor, step: int, cfg, runtime) -> tuple[int, int]:
    """(FLOPs, of which attention) of training step `step`'s forward and backward on one clip (1, 3, T, H, W), under
    that step's mask; every operation is per clip, so a batch costs batch_size times as much."""
    _, mask = mask_for_step(step, cfg, model.cfg.grid)
    context_idx, target_idx = (i.to(runtime.device) for i in mask_to_indices(mask, 1))
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        with runtime.autocast:
            loss = model(clip, context_idx, target_idx, sigreg_weight=cfg.sigreg_weight)["loss"]
        loss.backward()
    model.zero_grad(set_to_none=True)
    attention = sum(count for op, count in counter.get_flop_counts()["Global"].items()
                    if "scaled_dot_product" in str(op))
    return counter.get_total_flops(), attention


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup untimed ones)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (torch.compile compiles in them), and two more per data worker, "
                             "for the batches made ahead during the compilation (a pipeline nearly as fast as the "
                             "device refills them meanwhile: compare with the clips/s training logs)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU")
    parser.add_argument("--json", help="default: benchmarks/train_throughput_<recipe>.json, for a recipe of "
                                       "train/configs (needed for any other)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if min(args.steps, 1 if args.threads is None else args.threads) < 1 or args.warmup < 0:
        parser.error("--steps and --threads must be at least 1, --warmup at least 0")
    if args.peak_tflops is not None and not 0 < args.peak_tflops < math.inf:  # nan too
        parser.error(f"--peak-tflops must be a number above 0, got {args.peak_tflops:g}")
    if "RANK" in os.environ:  # under torchrun every process would divide the whole batch's FLOPs by one GPU's peak
        parser.error("run it as one process (python, not torchrun): it measures one device")
    if not args.config.strip():  # load_config's own message offers to leave --config out, which is required here
        parser.error("--config is empty: give a recipe file, e.g. train/configs/cpu.yaml")
    recipe_json = ROOT / "benchmarks" / f"train_throughput_{Path(args.config).stem}.json"
    out = _report.check_output(parser, recipe_json if args.json is None else args.json)  # "" is no record's name
    if args.threads:
        torch.set_num_threads(args.threads)
    if any(override.partition("=")[0] == "steps" for override in args.overrides):
        parser.error("steps is set by --warmup and --steps here")
    try:  # the recipe, a setting or the data folder, as `python -m train` reports them
        cfg = load_config(args.config, [*args.overrides, "steps=1"])  # for num_workers: steps are set below
        if args.json is None and Path(args.config).resolve().parent != ROOT / "train" / "configs":
            # an edited copy, experiments/cpu.yaml, would overwrite the shipped recipe's record, which the README
            # quotes
            raise ValueError(f"--json is needed for a recipe outside train/configs: {recipe_json.name} records the "
                             f"shipped train/configs/{Path(args.config).name}")
        warmup = args.warmup + 2 * cfg.num_workers  # DataLoader's default prefetch: two batches a worker
        # the recipe read once: a second read of `--config <(sed ...)` finds the pipe empty
        cfg = dataclasses.replace(cfg, steps=warmup + args.steps)
        runtime = setup_runtime(cfg)
        recorded_for = {"cpu": "cpu", "gpu": "cuda"}.get(Path(args.config).stem)
        if args.json is None and recorded_for and runtime.device.type != recorded_for:  # device=auto took the other
            where = {"cpu": "the CPU", "cuda": "a GPU"}
            raise ValueError(f"{recipe_json.name} records {args.config} on {where[recorded_for]}, and this run would "
                             f"be on {where[runtime.device.type]}: add device={recorded_for} to measure it there, or "
                             "give --json for another record")
        model_cfg = model_config_from_preset(cfg.model, objective=cfg.objective)
        preprocess = PreprocessConfig(img_size=model_cfg.img_size, num_frames=model_cfg.num_frames)
        dataset = build_dataset(cfg, preprocess, runtime)
    except ValueError as err:
        parser.error(str(err))
    try:
        measured = measure(cfg, runtime, model_cfg, dataset, warmup, args.steps)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as err:  # out of memory, a data worker killed, a loss gone NaN: as training says
        if isinstance(err, RuntimeError) and not (out_of_memory(err) or data_worker_died(err)):
            raise  # a bug (one in a data worker too): the traceback says where
        print(f"error: {first_line(err, message=own_message(err))}; nothing written", file=sys.stderr)
        return 1
    # the resolved settings too: the recipe file may change after the run, its command then measuring another
    result = {"command": _report.command(__file__, argv), "config": args.config, "overrides": args.overrides,
              "settings": config_to_dict(cfg), **measured}
    result.update(mfu(result["achieved_tflops"], result["device"], args.peak_tflops, runtime.device.type == "cuda"))
    print_table(result)
    _report.write(out, result)
    return 0


def measure(cfg, runtime, model_cfg, dataset, warmup: int, steps: int) -> dict:
    """Trains `warmup` untimed steps, then times `steps` more: their speed, counted FLOPs and peak memory."""
    cuda = runtime.device.type == "cuda"
    torch.manual_seed(cfg.seed)  # the recorded seed, as training seeds its model
    model = VideoJEPA(model_cfg).to(runtime.device)
    optimizer = build_optimizer(model, cfg, runtime.device)
    timed = range(warmup, warmup + steps)
    # FLOPs depend on the shapes alone: a blank clip counts as a real one. Counted before the data workers start, or
    # they would make batches ahead meanwhile, which the timed steps would then take for free
    clip = torch.zeros(1, 3, model_cfg.num_frames, model_cfg.img_size, model_cfg.img_size, device=runtime.device)
    counted = [step_flops(model, clip, step, cfg, runtime) for step in timed]
    batches = iter(make_loader(dataset, 0, cfg.steps, cfg.num_workers, pin_memory=cuda))
    forward = wrap_for_speed(model, cfg, runtime)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def train(steps: range) -> None:
        for step in steps:
            batch = next(batches).to(runtime.device, non_blocking=True)
            train_step(model, forward, optimizer, batch, step, cfg, runtime)
        sync()

    train(range(warmup))  # includes torch.compile's compilation
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train(timed)
    seconds = time.perf_counter() - start
    rss_unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, in KiB on Linux
    memory = (torch.cuda.max_memory_allocated(runtime.device) if cuda
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * rss_unit)
    clip_flops = sum(total for total, _ in counted)  # one clip's, all timed steps together
    device = torch.cuda.get_device_name(runtime.device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    return {"device": device, "machine": cpu_model(), "torch": torch.__version__, "batch_size": cfg.batch_size,
            "model": cfg.model, "params_total": sum(p.numel() for p in model.parameters()),
            # the jepa objective's EMA teacher is a frozen copy of the encoder: in the total, not trained
            "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "warmup": warmup, "steps": steps, "seconds": seconds, "clips_per_s": cfg.batch_size * steps / seconds,
            "gflops_per_step": cfg.batch_size * clip_flops / steps / 1e9,
            "attention_share_of_flops": sum(attention for _, attention in counted) / max(1, clip_flops),
            "achieved_tflops": cfg.batch_size * clip_flops / seconds / 1e12,
            "peak_memory_gib": memory / 2**30, "peak_memory_kind": "CUDA max allocated" if cuda else "process max RSS"}


def mfu(achieved_tflops: float, device: str, peak_tflops: float | None, cuda: bool) -> dict:
    """The achieved rate against the device's peak: --peak-tflops, else a known GPU's, else (CPU) one measured."""
    if peak_tflops is not None:
        peak, source = peak_tflops, "--peak-tflops"
    elif cuda:
        peak = gpu_peak_tflops(device)
        source = "data sheet" if peak else None
    else:
        peak, source = measured_cpu_peak_tflops(), "float32 matmul measured here"
    return {"peak_tflops": peak, "peak_source": source, "mfu": achieved_tflops / peak if peak else None}


def print_table(result: dict) -> None:
    print("| device | model | batch | clips/s | GFLOP/step | TFLOP/s | peak TFLOP/s | MFU | peak memory (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    shown_mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
    print(f"| {result['device']} | {result['model']} | {result['batch_size']} | {result['clips_per_s']:.1f} | "
          f"{result['gflops_per_step']:.2f} | {result['achieved_tflops']:.3f} | "
          f"{result['peak_tflops'] or math.nan:.3f} | {shown_mfu} | {result['peak_memory_gib']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
