"""Training throughput of a recipe on this machine: clips/s, peak memory and model FLOPs utilisation (MFU).

    python benchmarks/train_throughput.py --config train/configs/gpu.yaml [key=value ...] [--steps 30]
    python benchmarks/train_throughput.py --config train/configs/cpu.yaml --steps 20 --threads 2

Runs the real training step (`train.loop.train_step`: masks, forward, backward, AdamW, EMA; bf16 autocast, SDPA,
fused AdamW and torch.compile on CUDA as the recipe asks) on batches from the recipe's data pipeline (workers and
pinned memory as configured). FLOPs per step are counted once with `torch.utils.flop_counter.FlopCounterMode` on an
eager step (matmuls, convolutions and attention, forward and backward; the EMA and optimizer are not counted, as in
the usual MFU convention). MFU = counted FLOPs x steps / seconds / peak FLOP/s. The peak is --peak-tflops, else the
dense bf16 peak of a known GPU, else (CPU) a measured float32 matmul rate. Prints a table and writes JSON.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jepa_demo.config import PreprocessConfig, model_config_from_preset  # noqa: E402
from jepa_demo.model import VideoJEPA  # noqa: E402
from train.config import load_config  # noqa: E402
from train.data import make_loader  # noqa: E402
from train.loop import build_dataset, build_optimizer, setup_runtime, train_step, wrap_for_speed  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity).
GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def gpu_peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in GPU_PEAK_TFLOPS.items() if key in name), None)


def measured_cpu_peak_tflops(size: int = 2048, repeats: int = 5) -> float:
    """float32 matmul rate on this CPU: the ceiling a CPU training step could reach."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def count_step_flops(model, forward, optimizer, batch, cfg, runtime) -> int:
    with FlopCounterMode(display=False) as counter:
        train_step(model, forward, optimizer, batch, 0, cfg, runtime)
    return counter.get_total_flops()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup untimed ones)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "train_throughput.json"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if min(args.steps, args.threads or 1) < 1 or args.warmup < 0:
        parser.error("--steps and --threads must be at least 1, --warmup at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, [*args.overrides, f"steps={args.warmup + args.steps + 1}"])
        runtime = setup_runtime(cfg)
    except ValueError as err:  # the recipe or a setting, as `python -m train` reports it
        parser.error(str(err))
    model_cfg = model_config_from_preset(cfg.model, objective=cfg.objective)
    preprocess = PreprocessConfig(img_size=model_cfg.img_size, num_frames=model_cfg.num_frames)
    torch.manual_seed(0)
    model = VideoJEPA(model_cfg).to(runtime.device)
    optimizer = build_optimizer(model, cfg, runtime.device)
    batches = iter(make_loader(build_dataset(cfg, preprocess, runtime), 0, cfg.steps, cfg.num_workers,
                               pin_memory=runtime.device.type == "cuda"))
    first = next(batches).to(runtime.device)
    flops = count_step_flops(model, model, optimizer, first, cfg, runtime)
    forward = wrap_for_speed(model, cfg, runtime)
    cuda = runtime.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for step in range(1, args.warmup + 1):  # includes torch.compile's compilation
        train_step(model, forward, optimizer, next(batches).to(runtime.device, non_blocking=True), step, cfg, runtime)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(args.warmup + 1, args.warmup + 1 + args.steps):
        train_step(model, forward, optimizer, next(batches).to(runtime.device, non_blocking=True), step, cfg, runtime)
    sync()
    seconds = time.perf_counter() - start
    device = torch.cuda.get_device_name(runtime.device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    peak = args.peak_tflops or (gpu_peak_tflops(device) if cuda else measured_cpu_peak_tflops())
    memory = (torch.cuda.max_memory_allocated(runtime.device) if cuda
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    achieved = flops * args.steps / seconds / 1e12
    result = {"config": args.config, "overrides": args.overrides, "device": device, "batch_size": cfg.batch_size,
              "model": cfg.model, "params": sum(p.numel() for p in model.parameters()), "steps": args.steps,
              "seconds": seconds, "clips_per_s": cfg.batch_size * args.steps / seconds,
              "gflops_per_step": flops / 1e9, "achieved_tflops": achieved, "peak_tflops": peak,
              "mfu": achieved / peak if peak else None, "peak_memory_gb": memory / 2**30,
              "peak_memory_kind": "CUDA max allocated" if cuda else "process max RSS"}
    print("| device | model | batch | clips/s | GFLOP/step | TFLOP/s | peak TFLOP/s | MFU | peak memory (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
    print(f"| {device} | {cfg.model} | {cfg.batch_size} | {result['clips_per_s']:.1f} | {flops / 1e9:.2f} | "
          f"{achieved:.3f} | {peak or float('nan'):.3f} | {mfu} | {result['peak_memory_gb']:.2f} |")
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
