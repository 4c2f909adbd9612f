import pytest
import torch

from jepa_demo.masks import MASK_KINDS, future_mask, mask_to_indices, multiblock_mask, sample_mask

GRID = (8, 8, 8)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_same_seed_same_mask_and_both_sets_nonempty(kind):
    a = sample_mask(kind, GRID, torch.Generator().manual_seed(7))
    b = sample_mask(kind, GRID, torch.Generator().manual_seed(7))
    assert a.shape == GRID and a.dtype == torch.bool
    assert torch.equal(a, b)
    assert a.any() and not a.all()


@pytest.mark.parametrize("kind", ["multiblock", "tube", "random"])
def test_different_seeds_give_different_masks(kind):
    masks = {tuple(sample_mask(kind, GRID, torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(10)}
    assert len(masks) > 5


@pytest.mark.parametrize("kind", ["multiblock", "tube"])
def test_tube_masks_are_constant_through_time(kind):
    mask = sample_mask(kind, GRID, torch.Generator().manual_seed(2))
    assert torch.equal(mask, mask[:1].expand_as(mask))


def test_future_mask_hides_exactly_the_last_steps():
    mask = future_mask(GRID, 3)
    assert mask[5:].all() and not mask[:5].any()
    with pytest.raises(ValueError):
        future_mask(GRID, 8)


def test_random_ratio_is_respected():
    mask = sample_mask("random", GRID, torch.Generator().manual_seed(0), ratio=0.25)
    assert int(mask.sum()) == round(0.25 * 512)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_tube_ratio_is_respected_at_every_time_step(ratio):
    mask = sample_mask("tube", GRID, torch.Generator().manual_seed(1), ratio=ratio)
    assert mask.flatten(1).sum(1).tolist() == [round(ratio * 64)] * GRID[0]


def test_long_range_blocks_hide_more_than_short_range_ones():
    """V-JEPA's two block sets: 8 small blocks (15 % of the frame each) or 2 large ones (70 %), forced either way."""
    def mean_hidden(long_range):
        return sum(float(multiblock_mask(GRID, torch.Generator().manual_seed(s), long_range).float().mean())
                   for s in range(50)) / 50
    short, long = mean_hidden(False), mean_hidden(True)
    assert 0.5 < short < long < 0.95


def test_multiblock_by_name_flips_between_short_and_long_range_blocks():
    """The coin is the generator's first draw; either block set is then drawn from the rest of the stream."""
    def after_the_coin(seed, long_range):
        gen = torch.Generator().manual_seed(seed)
        torch.rand((), generator=gen)
        return multiblock_mask(GRID, gen, long_range)

    drawn = set()
    for seed in range(20):
        mask = sample_mask("multiblock", GRID, torch.Generator().manual_seed(seed))
        matches = {long_range for long_range in (False, True) if torch.equal(mask, after_the_coin(seed, long_range))}
        assert len(matches) == 1, seed
        drawn |= matches
    assert drawn == {False, True}


@pytest.mark.parametrize("grid", [(2, 1, 2), (2, 2, 1), (2, 2, 2)])
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("ratio", [0.1, 0.75])
def test_the_smallest_grids_a_model_accepts_keep_both_sets_nonempty(grid, kind, ratio):
    """Blocks can cover a 2-token frame whole (then one tube is revealed), and a ratio can round to every token (0.75
    of 2) or to none (0.1 of 4)."""
    for seed in range(100):
        mask = sample_mask(kind, grid, torch.Generator().manual_seed(seed), ratio=ratio, num_future=1)
        assert mask.any() and not mask.all(), seed


def test_indices_partition_the_grid():
    mask = sample_mask("multiblock", GRID, torch.Generator().manual_seed(4))
    context, target = mask_to_indices(mask, batch_size=3)
    assert context.shape[0] == target.shape[0] == 3
    together = torch.cat([context[0], target[0]]).sort().values
    assert torch.equal(together, torch.arange(512))
    assert mask.flatten()[target[0]].all() and not mask.flatten()[context[0]].any()


def test_unknown_kind_and_degenerate_masks_are_refused():
    with pytest.raises(ValueError, match="unknown mask"):
        sample_mask("checkerboard", GRID, torch.Generator())
    for nothing_visible_or_nothing_hidden in (torch.ones(GRID, dtype=torch.bool), torch.zeros(GRID, dtype=torch.bool)):
        with pytest.raises(ValueError, match="at least one visible and one hidden token"):
            mask_to_indices(nothing_visible_or_nothing_hidden)
