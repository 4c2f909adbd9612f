"""Our video encoder against transformers' VJEPA2Model encoder at an equal configuration, side by side in one run.

    python benchmarks/encoder_speed.py [--threads 2] [--batch 4] [--repeats 9] [--json benchmarks/encoder_speed.json]

For each size (our `small` and `vit-s` presets), both encoders get the same input size, patch, tubelet, width, depth,
heads and MLP ratio; they differ only where the architectures do (V-JEPA 2 uses 3-D rotary positions in every
attention layer, we add fixed sin-cos positions once). Inference forward of a batch of clips, after warm-up, the two
encoders in turn (which goes first alternating), so that a change in the machine's load between them moves both: the
ratio is the median of the repeats' paired ratios, and their range says how far one run can be trusted. Prints a table
and writes JSON. Weights are random: speed does not depend on them.
"""

import argparse
import importlib.metadata
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from jepa_demo.config import MODEL_PRESETS, model_config_from_preset  # noqa: E402
from jepa_demo.hardware import cpu_model  # noqa: E402
from jepa_demo.model import VideoEncoder  # noqa: E402


def vjepa2_encoder(cfg):
    """transformers' encoder with our config's sizes (predictor sizes do not matter: it is not run)."""
    from transformers import VJEPA2Config, VJEPA2Model

    config = VJEPA2Config(crop_size=cfg.img_size, frames_per_clip=cfg.num_frames, patch_size=cfg.patch_size,
                          tubelet_size=cfg.tubelet, hidden_size=cfg.dim, num_hidden_layers=cfg.depth,
                          num_attention_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, pred_hidden_size=cfg.pred_dim,
                          pred_num_hidden_layers=1, pred_num_attention_heads=cfg.pred_heads,
                          attn_implementation="sdpa")
    model = VJEPA2Model(config).eval()
    return lambda x: model.get_vision_features(x.transpose(1, 2)), sum(p.numel() for p in model.encoder.parameters())


def seconds(forward, x) -> float:
    start = time.perf_counter()
    forward(x)
    return time.perf_counter() - start


def paired_seconds(ours, theirs, x, repeats: int) -> tuple[list[float], list[float]]:
    """Each encoder's seconds per forward, `repeats` pairs timed back to back (timing all of one, then all of the
    other, put any change of load between the blocks into the ratio: 1.19 and 1.08 in two runs of one machine)."""
    ours_s, theirs_s = [], []
    with torch.inference_mode():
        ours(x), theirs(x)  # warm-up
        for i in range(repeats):
            if i % 2:
                theirs_s.append(seconds(theirs, x))
                ours_s.append(seconds(ours, x))
            else:
                ours_s.append(seconds(ours, x))
                theirs_s.append(seconds(theirs, x))
    return ours_s, theirs_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--presets", nargs="+", default=["small", "vit-s"])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "encoder_speed.json"))
    args = parser.parse_args(argv)
    if min(args.threads, args.batch, args.repeats) < 1:
        parser.error("--threads, --batch and --repeats must be at least 1")
    if unknown := [name for name in args.presets if name not in MODEL_PRESETS]:
        parser.error(f"unknown preset {', '.join(unknown)}; choose from {', '.join(sorted(MODEL_PRESETS))}")
    out = _report.check_output(parser, args.json)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for preset in args.presets:
        cfg = model_config_from_preset(preset)
        x = torch.randn(args.batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
        ours = VideoEncoder(cfg).eval()
        theirs, their_params = vjepa2_encoder(cfg)
        ours_s, theirs_s = paired_seconds(ours, theirs, x, args.repeats)
        ratios = [t / o for o, t in zip(ours_s, theirs_s)]
        rows.append({"preset": preset, "tokens": cfg.num_tokens, "dim": cfg.dim, "depth": cfg.depth,
                     "params_ours": sum(p.numel() for p in ours.parameters()), "params_vjepa2": their_params,
                     "ours_s": statistics.median(ours_s), "vjepa2_s": statistics.median(theirs_s),
                     "ratio_vjepa2_over_ours": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)]})
    machine = cpu_model()
    print(f"CPU forward, batch {args.batch}, {args.threads} threads, medians of {args.repeats} paired repeats "
          f"(torch {torch.__version__}, {machine})")
    print("| preset | tokens | width x depth | ours (s) | VJEPA2Model (s) | VJEPA2 / ours [range over pairs] |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        low, high = r["ratio_range"]
        print(f"| {r['preset']} | {r['tokens']} | {r['dim']} x {r['depth']} | {r['ours_s']:.3f} | "
              f"{r['vjepa2_s']:.3f} | {r['ratio_vjepa2_over_ours']:.2f} [{low:.2f}, {high:.2f}] |")
    _report.write(out, {"command": _report.command(__file__, argv), "device": "cpu", "threads": args.threads,
                        "batch": args.batch, "repeats": args.repeats, "torch": torch.__version__,
                        "transformers": importlib.metadata.version("transformers"), "machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
