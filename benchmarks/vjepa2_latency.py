"""The V-JEPA 2 backend at real size: latency of embed, masked prediction and surprise through `jepa_demo`.

    python benchmarks/vjepa2_latency.py [--frames-per-clip 16] [--clip-frames 32] [--threads N] [--json out.json]

Builds a randomly initialised `VJEPA2Model` with the sizes of Meta's ViT-L release (facebook/vjepa2-vitl-fpc64-256:
1024 wide, 24 layers, 16-pixel patches, 256-pixel crops, a 12-layer predictor 384 wide), saves it with
`save_pretrained` and loads it with `jepa_demo.load_model` as a user would: no download, and speed does not depend on
the weights. On a GPU it runs in bf16, as the app would. Each call is timed once after one warm-up call. The
released model reads 64 frames per clip; `--frames-per-clip` lowers that so a CPU finishes in minutes (attention
grows with the square of the tokens). Prints a table and writes JSON.
"""

import argparse
import importlib.metadata
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402
from jepa_demo import load_model  # noqa: E402
from jepa_demo.checkpoint import first_line  # noqa: E402
from jepa_demo.hardware import cpu_model  # noqa: E402
from jepa_demo.vjepa2 import model_config as vjepa2_model_config  # noqa: E402
from jepa_demo.world import WorldConfig, render_clip  # noqa: E402

VITL = dict(crop_size=256, patch_size=16, tubelet_size=2, hidden_size=1024, num_hidden_layers=24,
            num_attention_heads=16, mlp_ratio=4.0, pred_hidden_size=384, pred_num_hidden_layers=12,
            pred_num_attention_heads=12, pred_num_mask_tokens=10)


def random_model_config(frames_per_clip: int, **sizes):
    """The VJEPA2Config of ViT-L sizes (or `sizes` instead)."""
    from transformers import VJEPA2Config

    return VJEPA2Config(frames_per_clip=frames_per_clip, **{**VITL, **sizes})


def save_random_model(folder: Path, config) -> int:
    """A random V-JEPA 2 of `config` in `folder`, saved with save_pretrained (safetensors); returns its parameter
    count."""
    from transformers import VJEPA2Model

    torch.manual_seed(0)
    model = VJEPA2Model(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def stop_on_sigterm(removing: str | None = None) -> None:
    """A plain `kill` (or `timeout`) ends the run with status 143 as Ctrl-C would: by default SIGTERM ends Python at
    once, which left the saved model (1.3 GB at the release's size) in the temporary folder. While `removing` names
    that folder, the handler removes it and ends with os._exit, not an exception: raising wherever the main thread
    stands (inside transformers or torch) and the interpreter's shutdown, with the progress-bar thread save_pretrained
    starts still alive, once ended a run with SIGABRT instead (in CI; 160 runs here did not reproduce it), and nothing
    else of the run needs closing then. Otherwise it raises SystemExit, so that the report's write removes its
    temporary file and stdout is flushed."""

    def stop(signum, frame):
        if removing is None:
            sys.exit(128 + signum)
        shutil.rmtree(removing, ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def timed(fn) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames-per-clip", type=int, default=16, help="the released model reads 64")
    parser.add_argument("--clip-frames", type=int, default=32, help="frames of the clip surprise slides over")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--hidden-size", type=int, default=VITL["hidden_size"], help="smaller only to test the script")
    parser.add_argument("--layers", type=int, default=VITL["num_hidden_layers"])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "vjepa2_latency.json"))
    args = parser.parse_args(argv)
    if min(args.frames_per_clip, args.clip_frames, args.threads, args.hidden_size, args.layers) < 1:
        parser.error("every size and count must be at least 1")
    if args.frames_per_clip % VITL["tubelet_size"] or args.frames_per_clip < 2 * VITL["tubelet_size"]:
        parser.error(f"--frames-per-clip must be a multiple of the tubelet ({VITL['tubelet_size']}) and at least two "
                     f"of them ({2 * VITL['tubelet_size']})")
    if args.hidden_size % VITL["num_attention_heads"]:
        parser.error(f"--hidden-size must be a multiple of the heads ({VITL['num_attention_heads']})")
    # JEPAModel.surprise_frames: the window and a time step more per step predicted (2, or 1 in a 2-step window)
    steps = min(2, args.frames_per_clip // VITL["tubelet_size"] - 1)
    needs = args.frames_per_clip + steps * VITL["tubelet_size"]
    if args.clip_frames < needs:  # found out only after minutes of building and timing otherwise
        parser.error(f"--clip-frames {args.clip_frames} is too short for surprise, which slides the model's clip "
                     f"(--frames-per-clip {args.frames_per_clip}) over {needs} frames at least")
    if args.clip_frames > 4 * args.frames_per_clip:  # JEPAModel.frames_wanted: surprise would thin it to another clip
        parser.error(f"--clip-frames {args.clip_frames} is more than surprise reads of a clip (4 x --frames-per-clip "
                     f"{args.frames_per_clip} = {4 * args.frames_per_clip}): it would time fewer frames than it says")
    if args.clip_frames % VITL["tubelet_size"]:  # surprise drops the frames short of a whole tubelet
        parser.error(f"--clip-frames must be a multiple of the tubelet ({VITL['tubelet_size']}): surprise would time "
                     f"{args.clip_frames - args.clip_frames % VITL['tubelet_size']} frames")
    config = random_model_config(args.frames_per_clip, hidden_size=args.hidden_size, num_hidden_layers=args.layers)
    try:  # the sizes load_model accepts, checked before minutes of building and saving a model it would refuse
        vjepa2_model_config(config.to_dict())
    except ValueError as err:
        parser.error(f"these sizes: {err}")
    out = _report.check_output(parser, args.json)
    stop_on_sigterm()
    torch.set_num_threads(args.threads)
    video = render_clip(3, WorldConfig(size=256, num_frames=args.clip_frames)).frames
    with tempfile.TemporaryDirectory() as tmp:
        stop_on_sigterm(removing=tmp)
        try:
            params = save_random_model(Path(tmp), config)
        except (OSError, SafetensorError) as err:  # a small /tmp: the release's size is 1.3 GB
            # safetensors says a full disk as "Error while serializing: I/O error: No space left on device (os
            # error 28)", no OSError
            reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
            print(f"error: cannot save the model in {tmp}: {reason} (TMPDIR=... picks another folder)", file=sys.stderr)
            return 1
        start = time.perf_counter()
        model = load_model(tmp)
        load_s = time.perf_counter() - start
        # just written, so read from the page cache: a user's first load, from disk or the Hub, takes longer
        seconds = {"load (hot page cache)": load_s,
                   "embed": timed(lambda: model.embed(video)),
                   "predict_masked (multiblock)": timed(lambda: model.predict_masked(video, "multiblock")),
                   "surprise": timed(lambda: model.surprise(video))}
    stop_on_sigterm()  # the folder is gone
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {args.threads} threads"
    print(f"V-JEPA 2, {args.hidden_size} wide x {args.layers} layers, random weights ({params / 1e6:.0f} M "
          f"parameters), {args.frames_per_clip} frames per clip at 256 px, a {args.clip_frames}-frame clip; {device}")
    for name, value in seconds.items():
        print(f"{name:<30}{value:>8.2f} s")
    report = {"command": _report.command(__file__, argv), "model": "V-JEPA 2, random weights",
              "hidden_size": args.hidden_size, "layers": args.layers, "parameters": params,
              "frames_per_clip": args.frames_per_clip, "clip_frames": args.clip_frames, "device": device,
              "seconds": seconds, "torch": torch.__version__,
              "transformers": importlib.metadata.version("transformers"), "machine": cpu_model()}
    _report.write(out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
