"""Regenerate the README's figures from the shipped checkpoint: `python docs/make_figures.py`.

docs/masks.png:    one synthetic clip with each mask kind shaded (what the context encoder does not see).
docs/surprise.png: surprise over time for a plausible clip and its twin with each kind of physics violation.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jepa_demo import load_model  # noqa: E402
from jepa_demo.checkpoint import atomic_write  # noqa: E402
from jepa_demo.gallery import EXAMPLE_SEED  # noqa: E402
from jepa_demo.masks import MASK_KINDS, sample_mask  # noqa: E402
from jepa_demo.views import shade_hidden  # noqa: E402
from jepa_demo.world import VIOLATIONS, WorldConfig, make_pair, render_clip  # noqa: E402


def masks_figure(model, out: Path) -> None:
    clip = render_clip(3, WorldConfig(size=model.preprocess.img_size, num_frames=model.cfg.num_frames)).frames
    steps = [0, 3, 6, 7]
    fig, axes = plt.subplots(len(MASK_KINDS), len(steps), figsize=(2 * len(steps), 2 * len(MASK_KINDS)))
    for row, kind in enumerate(MASK_KINDS):
        mask = sample_mask(kind, model.cfg.grid, torch.Generator().manual_seed(1)).numpy()
        shaded = shade_hidden(clip, mask, model.cfg.patch_size, model.cfg.tubelet)
        for col, step in enumerate(steps):
            ax = axes[row, col]
            ax.imshow(shaded[step * model.cfg.tubelet])
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(kind)
            if row == 0:
                ax.set_title(f"time step {step}")
    fig.suptitle("Masks: pale tokens are hidden from the context encoder; the predictor must fill in their latents",
                 fontsize=10)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))  # a stopped run leaves no half picture
    plt.close(fig)


def surprise_figure(model, out: Path) -> None:
    cfg = WorldConfig(size=model.preprocess.img_size, num_frames=32)
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharey=True)
    for ax, kind in zip(axes.flat, VIOLATIONS):
        # the app's example scene: one no model trained on (seed 2026 was a training clip's), found on the first try
        # for every kind, so one scene throughout
        plausible, implausible = make_pair(EXAMPLE_SEED, kind, cfg)
        assert implausible.labels["seed"] == EXAMPLE_SEED, kind
        for clip, label, colour in ((plausible, "plausible", "tab:blue"), (implausible, kind, "tab:red")):
            result = model.surprise(clip.frames)
            ax.plot(result.step_frames, result.per_step, label=label, color=colour)
        ax.axvline(implausible.labels["violation_frame"], color="grey", ls="--", lw=1)
        ax.set_title(kind), ax.set_xlabel("frame"), ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("surprise (latent L1 error)")
    fig.suptitle("JEPA surprise on matched pairs; dashed line = moment of the violation", fontsize=10)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))  # a stopped run leaves no half picture
    plt.close(fig)


if __name__ == "__main__":
    model = load_model(ROOT / "checkpoints" / "default")
    masks_figure(model, ROOT / "docs" / "masks.png")
    surprise_figure(model, ROOT / "docs" / "surprise.png")
