"""A synthetic 2-D physics world: labelled clips of moving objects, optionally with a physics violation.

Objects (circles, squares, triangles; several colours and sizes) move with constant velocity or under gravity, bounce
elastically off the walls and off each other, and may pass behind a grey occluder. Irrelevant detail (per-frame
pixel noise, a textured or flickering background) can be added without changing the motion: physics, violations and
detail each draw from their own random stream, all derived from the clip's seed. A clip can be rendered with a
violation at a chosen frame (teleport, vanish, appear, colour or shape change, passing through another object);
`make_pair` returns a plausible clip and its violating twin, identical before the violation; both carry the labels of
the plausible world, and only the violating one says which violation it shows and from which frame.

Everything is numpy and fast enough to render training data on the fly. This module knows nothing about models or
files (`jepa_demo.video.write_video` writes mp4/gif).
"""

import dataclasses
import numbers
from dataclasses import dataclass, field

import numpy as np

VIOLATIONS: tuple[str, ...] = ("teleport", "vanish", "appear", "color_change", "shape_change", "pass_through")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
_AREA_PER_SQUARED_RADIUS = {"circle": np.pi, "square": 2.0, "triangle": 3 * np.sqrt(3) / 4}  # inscribed in the circle
BACKGROUNDS: tuple[str, ...] = ("plain", "texture", "flicker", "mixed")
COLORS = np.array([[230, 40, 40], [40, 200, 60], [50, 90, 240], [240, 220, 40], [220, 50, 220], [40, 220, 220],
                   [250, 140, 30]], dtype=np.float32)
_PLAIN_BACKGROUND = np.array([22, 22, 30], dtype=np.float32)
_OCCLUDER_GREY = np.array([150, 150, 150], dtype=np.float32)
_MIN_FRAMES_BEFORE = 6
_SETTLE_PASSES = 8  # an object held at a wall takes half of each push: 8 passes leave 1/256 of an overlap
_APPEAR_TRIES = 20  # paths tried for an appearing object; about 1 in 5 crosses another object
_PLACE_TRIES = 100  # random spots tried for each new object before the placement starts again
_PLACE_RESTARTS = 20
_CROWD_CHECKS = 64  # crowded starts a config must place (see WorldConfig)
# Drawing holds float32 frames and float64 noise besides the uint8 clip, about 16 bytes per byte of it: 256 MB (1024 px
# x 85 frames, 64 px x 4096) peaks near 4 GB; 1024 px x 4096 frames, each in range, asked for 200 GB
_MAX_CLIP_MB = 256
_MAX_ATTEMPTS = 1000  # derived seeds make_pair tries; a start with a collision in view is the rarest (~1 in 15)
DERIVED_SEED_STEP = 7_919_003  # make_pair's n-th derived start: seed + n * this, far from any block of seeds in use


@dataclass(frozen=True)
class WorldConfig:
    """What kind of clips to draw. Radii, speeds and gravity are fractions of `size` (per frame, per frame^2)."""

    size: int = 64  # square frames
    num_frames: int = 16
    min_objects: int = 1
    max_objects: int = 3
    gravity_prob: float = 0.5  # share of clips with downward gravity
    occluder_prob: float = 0.3  # share of clips with a grey bar objects pass behind
    noise_std: float = 0.0  # per-frame Gaussian pixel noise, in [0, 1] units of intensity
    background: str = "plain"  # plain | texture | flicker | mixed (mixed: one of the three per clip)
    radius: tuple[float, float] = (0.07, 0.11)  # object radius range, as a fraction of `size`
    speed: tuple[float, float] = (0.018, 0.04)  # speed range, fraction of `size` per frame
    gravity: float = 0.004  # downward acceleration, fraction of `size` per frame^2

    def __post_init__(self):
        for name in ("size", "num_frames", "min_objects", "max_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            object.__setattr__(self, name, int(value))  # a NumPy int32 would wrap round in the clip's size below
        for name in ("gravity_prob", "occluder_prob", "noise_std", "gravity"):
            # True was noise_std 1 (a clip of noise) and occluder_prob 1; a string met a bare TypeError below
            if not _is_number(value := getattr(self, name)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be between 16 and 1024 pixels, got {self.size}")
        if not 2 <= self.num_frames <= 4096:
            raise ValueError(f"num_frames must be between 2 and 4096, got {self.num_frames}")
        if (clip_mb := self.num_frames * self.size**2 * 3 / 2**20) > _MAX_CLIP_MB:
            raise ValueError(f"{self.num_frames} frames of {self.size} px make a clip of {clip_mb:.0f} MB, more than "
                             f"{_MAX_CLIP_MB} MB (drawing one takes about 16 times that): fewer frames or a smaller "
                             "size")
        if not 1 <= self.min_objects <= self.max_objects <= len(COLORS):
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {len(COLORS)} (one colour per object)")
        if not (0 <= self.gravity_prob <= 1 and 0 <= self.occluder_prob <= 1):
            raise ValueError("gravity_prob and occluder_prob must be between 0 and 1")
        if not 0 <= self.noise_std <= 1:
            raise ValueError(f"noise_std is in units of full intensity: between 0 and 1, got {self.noise_std}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        _check_fraction_range("radius", self.radius, 0.01, 0.25)
        _check_fraction_range("speed", self.speed, 0.0, 0.2)
        if self.speed[1] > self.radius[0]:  # two such objects meeting head-on close by less than their radii a frame
            raise ValueError(f"the fastest speed ({self.speed[1]}) must not exceed the smallest radius "
                             f"({self.radius[0]}): faster objects could pass through each other between two frames")
        if not 0 <= self.gravity <= 0.05:
            raise ValueError(f"gravity is a fraction of size per frame^2: between 0 and 0.05, got {self.gravity}")
        crowd = np.full(self.max_objects, self.radius[1] * self.size)  # the most crowded start this config can draw
        # Two tries each, where drawing a clip gets _PLACE_RESTARTS: a config whose single try fails 15 % of the time
        # passes one check in 4, and then fails once in 10^16 draws; one failing 46 % (seven objects of radius 0.13)
        # never passes. The seeds are fixed, so each config is refused or accepted for good (0.115 is, 0.12 is not).
        try:
            for seed in range(_CROWD_CHECKS):
                _place_apart(np.random.default_rng(seed), crowd, self.size, restarts=2)
        except ValueError:
            raise ValueError(f"{self.max_objects} objects of radius {self.radius[1]} x {self.size} px do not fit apart "
                             "in the frame: lower max_objects or the radius range") from None


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_fraction_range(name: str, value, low: float, high: float) -> None:
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value))
            and low <= value[0] <= value[1] <= high):
        raise ValueError(f"{name} is a (min, max) pair of fractions of size with {low} <= min <= max <= {high}, "
                         f"got {value!r}")


def _place_apart(rng, radius: np.ndarray, size: int, restarts: int = _PLACE_RESTARTS) -> np.ndarray:
    """Random centres inside the frame, 1 px apart at least. An overlapping start would show two objects merged from
    frame 0, so a start that cannot be placed is a ValueError, never drawn."""
    for _ in range(restarts):  # early objects can split the free space into gaps too small for a later one
        pos = _try_placing(rng, radius, size)
        if pos is not None:
            return pos
    raise ValueError(f"could not place {len(radius)} objects of radius up to {radius.max():.1f} px apart in a "
                     f"{size}-pixel frame: use fewer or smaller objects")


def _try_placing(rng, radius: np.ndarray, size: int) -> np.ndarray | None:
    pos = np.zeros((len(radius), 2))
    for i, r in enumerate(radius):
        for _ in range(_PLACE_TRIES):
            pos[i] = rng.uniform(r, size - r, size=2)
            if all(np.hypot(*(pos[i] - pos[j])) > r + radius[j] + 1 for j in range(i)):
                break
        else:
            return None
    return pos


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    labels: dict  # JSON-serialisable facts about the clip (see `_labels`)
    states: dict = field(repr=False, default_factory=dict)  # per-frame object positions/visibility, for tests


@dataclass
class _Scene:
    """Everything physics needs; arrays are per object."""

    pos: np.ndarray  # (n, 2) x, y
    vel: np.ndarray  # (n, 2)
    radius: np.ndarray  # (n,)
    shape: np.ndarray  # (n,) index into SHAPES
    color: np.ndarray  # (n,) index into COLORS
    visible: np.ndarray  # (n,) bool
    collides: np.ndarray  # (n,) bool
    gravity: float
    occluder: tuple[float, float] | None  # x-range of the bar, or None
    size: int


# Why a violation may not be possible at a given frame of a given start
_CANNOT_SHOW = {"teleport": "no object in plain view there, or no free spot far enough away to move one to",
                "vanish": "no object in plain view there",
                "appear": "no free spot, colour and path for a new object",
                "color_change": "no object in plain view there, or no colour left that no object has",
                "shape_change": "no object in plain view there",
                "pass_through": "no collision in view, or none whose pair would be drawn over each other"}


def render_clip(seed: int, cfg: WorldConfig = WorldConfig(), violation: str | None = None,
                violation_frame: int | None = None) -> Clip:
    """The clip for `seed`; with `violation`, the same clip until `violation_frame`, then the violation."""
    if violation is None and violation_frame is not None:  # else a plausible clip, as if the frame were heeded
        raise ValueError(f"violation_frame={violation_frame} needs a violation (one of {', '.join(VIOLATIONS)})")
    seed = _check_seed(seed)
    scene = _new_scene(seed, cfg)
    plausible = _simulate(scene, cfg.num_frames)
    if violation is None:
        return _finish(seed, cfg, scene, plausible, plausible, None, None)
    t_v = _check_violation(violation, violation_frame, cfg, scene, plausible)
    trajectory = _violate(seed, cfg, scene, plausible, violation, t_v)
    if trajectory is None:
        raise ValueError(f"seed {seed} cannot show a {violation!r} at frame {t_v}: {_CANNOT_SHOW[violation]}, or the "
                         "change would not show in the pixels; make_pair searches for a start that can")
    return _finish(seed, cfg, scene, plausible, trajectory, violation, t_v)


def with_detail(cfg: WorldConfig, noise_std: float = 0.05, background: str = "mixed") -> WorldConfig:
    """`cfg` with irrelevant detail (by default the mix training and evaluation use); the motion stays the same."""
    return dataclasses.replace(cfg, noise_std=noise_std, background=background)


def make_pair(seed: int, kind: str, cfg: WorldConfig = WorldConfig(),
              violation_frame: int | None = None) -> tuple[Clip, Clip]:
    """(plausible, implausible) from the same start. Tries seed, then derived seeds, until the violation can be shown
    (an object in plain view at the violation frame; for pass_through, a collision in view inside the allowed
    window whose pair, not bouncing, is drawn over each other; for appear, a free spot and a path clear of the
    others) and shows in the pixels, at the violation frame or after it: the frame is the event's, and a
    pass-through's twins can part a frame or two later (at the collision frame the bounce has moved the pair apart by
    less than a pixel; two frames in about 1 pair of 150 at 16 pixels). Both share their irrelevant detail (noise,
    background, flicker) frame by frame, after the violation too: a scorer comparing them sees the violation, not
    other noise.
    `labels["seed"]` is the seed used: render_clip(labels["seed"], cfg, kind, frame) gives the twin again."""
    _check_kind(kind, cfg)
    seed = _check_seed(seed)
    for attempt in range(_MAX_ATTEMPTS):
        candidate = seed + attempt * DERIVED_SEED_STEP
        scene = _new_scene(candidate, cfg)
        plausible = _simulate(scene, cfg.num_frames)
        t_v = _default_frame(kind, cfg, scene, plausible) if violation_frame is None else violation_frame
        if t_v is None:
            continue
        t_v = _check_violation(kind, t_v, cfg, scene, plausible)
        trajectory = _violate(candidate, cfg, scene, plausible, kind, t_v)
        if trajectory is not None:
            return (_finish(candidate, cfg, scene, plausible, plausible, None, None),
                    _finish(candidate, cfg, scene, plausible, trajectory, kind, t_v))
    also = "" if violation_frame is None else ", as does leaving violation_frame out"
    raise ValueError(f"no start found for a {kind!r} pair from seed {seed} in {_MAX_ATTEMPTS} tries with this config "
                     f"({_EASIER[kind]} make one easier to find{also})")


def _check_seed(seed) -> int:
    """`seed` as an int, refused unless a whole number of at least 0: NumPy's words for -1 name no argument, 1.5 is
    its TypeError, and True was seed 1."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a whole number of at least 0, got {seed!r}")
    return int(seed)


# What makes a start for each kind easier to find, for make_pair's message: more objects crowd out a teleport's landing
# spot and an appearance's room and colour, but give a pass-through its collisions.
_EASIER = {"teleport": "fewer or smaller objects (room to land)",
           "vanish": "a lower occluder_prob (objects in plain view)",
           "appear": "fewer or smaller objects, or shorter clips (room, an unused colour and a path clear of the "
                     "others to the clip's end for the newcomer)",
           "color_change": "fewer objects (an unused colour)",
           "shape_change": "a lower occluder_prob (objects in plain view)",
           "pass_through": "more objects or longer clips (collisions in view)"}


# ----------------------------------------------------------------------------------------------------------- scene


def _new_scene(seed: int, cfg: WorldConfig) -> _Scene:
    rng = np.random.default_rng((seed, 0))  # physics stream: detail and violations never touch it
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    radius = rng.uniform(*cfg.radius, size=n) * cfg.size
    pos = _place_apart(rng, radius, cfg.size)
    angle = rng.uniform(0, 2 * np.pi, size=n)
    speed = rng.uniform(*cfg.speed, size=n) * cfg.size
    vel = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
    gravity = cfg.gravity * cfg.size if rng.random() < cfg.gravity_prob else 0.0
    occluder = None
    if rng.random() < cfg.occluder_prob:
        left = rng.uniform(0.2, 0.65) * cfg.size
        occluder = (left, left + 0.15 * cfg.size)
    return _Scene(pos=pos, vel=vel, radius=radius, shape=rng.integers(0, len(SHAPES), size=n),
                  color=rng.permutation(len(COLORS))[:n], visible=np.ones(n, bool), collides=np.ones(n, bool),
                  gravity=gravity, occluder=occluder, size=cfg.size)


# --------------------------------------------------------------------------------------------------------- physics


def _simulate(scene: _Scene, num_frames: int, event=None, event_frame: int | None = None,
              no_collide: tuple[int, int] | None = None) -> dict:
    """Per-frame states. `event(state)` edits the state just before frame `event_frame` is recorded; from then on the
    pair `no_collide` passes through each other."""
    s = dataclasses.replace(scene, pos=scene.pos.copy(), vel=scene.vel.copy(), shape=scene.shape.copy(),
                            color=scene.color.copy(), visible=scene.visible.copy(), collides=scene.collides.copy())
    record = {k: [] for k in ("pos", "shape", "color", "visible")}
    collisions = []
    for t in range(num_frames):
        if event is not None and t == event_frame:
            event(s)
        for key in record:
            record[key].append(getattr(s, key).copy())
        if t + 1 == num_frames:  # no frame follows: a collision stepped into here would be logged at frame T
            break
        skip = no_collide if event_frame is not None and t + 1 >= event_frame else None
        collisions += [(t + 1, i, j) for i, j in _step(s, skip)]
    states = {k: np.stack(v) for k, v in record.items()}  # pos (T, n, 2); others (T, n)
    states["radius"] = s.radius.copy()  # (n,)
    states["collisions"] = collisions
    return states


def _step(s: _Scene, skip_pair) -> list[tuple[int, int]]:
    """Advance one frame: gravity, motion, walls, object collisions. Returns the pairs that collided.

    Walls come first: mirrored after the collisions, an object that a collision had pushed against a wall came back
    into its partner by twice the push, and the frame showed the two overlapping. A push can still move an object
    past a wall, or into a third object: it is then held at the wall and the pairs pushed apart again, until no push
    is needed (or, for a tight cluster, a few passes have shrunk what is left)."""
    s.vel[:, 1] += s.gravity
    s.pos += s.vel
    _bounce_off_walls(s)
    hits, pushed = _collide_objects(s, skip_pair)
    for _ in range(_SETTLE_PASSES):
        if not pushed:  # nothing moved since the walls last held everything inside
            return hits
        _hold_inside(s)
        more, pushed = _collide_objects(s, skip_pair)
        hits += [pair for pair in more if pair not in hits]
    _hold_inside(s)  # the walls have the last word: what overlap a tight cluster keeps is the lesser fault
    return hits


def _hold_inside(s: _Scene) -> None:
    """Put back at the wall whatever a push moved past it."""
    s.pos = np.clip(s.pos, s.radius[:, None], s.size - s.radius[:, None])


def _collide_objects(s: _Scene, skip_pair) -> tuple[list[tuple[int, int]], bool]:
    """Bounce the pairs that overlap and approach, push every overlapping pair apart: (pairs bounced, any pushed)."""
    hits, pushed = [], False
    n = len(s.radius)
    for i in range(n):
        for j in range(i + 1, n):
            if not (s.collides[i] and s.collides[j]) or (skip_pair and {i, j} == set(skip_pair)):
                continue
            delta = s.pos[j] - s.pos[i]
            dist = float(np.hypot(*delta))
            if dist >= s.radius[i] + s.radius[j] or dist == 0:
                continue
            normal = delta / dist
            approach = float((s.vel[i] - s.vel[j]) @ normal)
            if approach > 0:  # elastic impulse along the normal, masses ~ area
                mi, mj = s.radius[i] ** 2, s.radius[j] ** 2
                s.vel[i] -= 2 * mj / (mi + mj) * approach * normal
                s.vel[j] += 2 * mi / (mi + mj) * approach * normal
                hits.append((i, j))
            overlap = s.radius[i] + s.radius[j] - dist  # push apart so they do not stick together
            s.pos[i] -= normal * overlap / 2
            s.pos[j] += normal * overlap / 2
            pushed = True
    return hits, pushed


def _bounce_off_walls(s: _Scene) -> None:
    """Mirror whatever went past a wall back inside and turn its velocity inwards."""
    low, high = s.radius[:, None], s.size - s.radius[:, None]
    under, over = s.pos < low, s.pos > high
    # Height (y grows downwards) the mirror adds: twice the depth past the floor, minus twice that past the ceiling.
    rise = 2 * np.where(over[:, 1], s.pos[:, 1] - high[:, 0], np.where(under[:, 1], s.pos[:, 1] - low[:, 0], 0.0))
    s.pos = np.where(under, 2 * low - s.pos, np.where(over, 2 * high - s.pos, s.pos))
    before = s.vel[:, 1].copy()
    s.vel = np.where(under, np.abs(s.vel), np.where(over, -np.abs(s.vel), s.vel))
    if s.gravity:  # pay for that height in speed, or every bounce would add energy and speeds would keep growing
        # What `_step`'s rule (v += g, then y += v) keeps between bounces is (v + g/2)^2 / 2 - g y, not v^2 / 2 - g y:
        # kept with v alone, each floor bounce lost about g v of it (a tenth of a drop's height) and each ceiling
        # bounce gained as much.
        half, hit = s.gravity / 2, under[:, 1] | over[:, 1]
        kept = np.sqrt(np.maximum((before + half) ** 2 - 2 * s.gravity * rise, 0))
        s.vel[:, 1] = np.where(hit, np.sign(s.vel[:, 1]) * kept - half, s.vel[:, 1])
    s.pos = np.clip(s.pos, low, high)  # a step longer than the free width would mirror past the other wall


# ------------------------------------------------------------------------------------------------------ violations


def _check_kind(kind: str, cfg: WorldConfig) -> None:
    """Errors that no choice of start can fix."""
    if kind not in VIOLATIONS:
        raise ValueError(f"unknown violation {kind!r}; choose one of {VIOLATIONS}")
    low, high = _violation_window(cfg)
    if low > high:
        raise ValueError(f"num_frames={cfg.num_frames} is too short for a violation ({_MIN_FRAMES_BEFORE} frames "
                         "before it and at least one after): use num_frames >= 8")
    if kind == "pass_through" and cfg.max_objects < 2:
        raise ValueError("pass_through needs two objects that collide: set max_objects >= 2")
    if kind in ("appear", "color_change") and cfg.min_objects >= len(COLORS):
        raise ValueError(f"{kind} needs a colour no object has: with min_objects={cfg.min_objects} all "
                         f"{len(COLORS)} are taken, so set min_objects < {len(COLORS)}")


def _check_violation(kind: str, t_v, cfg: WorldConfig, scene: _Scene, plausible: dict) -> int:
    _check_kind(kind, cfg)
    low, high = _violation_window(cfg)
    if t_v is None:
        t_v = _default_frame(kind, cfg, scene, plausible)
        if t_v is None:
            raise ValueError(f"no collision in plain view between frames {low} and {high} of this clip to pass "
                             "through (make_pair searches for one)")
    if not isinstance(t_v, (int, np.integer)) or not low <= t_v <= high:
        raise ValueError(f"violation_frame must be an integer between {low} and {high} for {cfg.num_frames} frames "
                         f"(enough frames before it and a quarter of the clip after), got {t_v}")
    return int(t_v)


def _violation_window(cfg: WorldConfig) -> tuple[int, int]:
    """Enough frames before the violation for a model to form an expectation; from it on, a quarter of the clip, and
    at least two frames (one after it)."""
    return max(_MIN_FRAMES_BEFORE, cfg.num_frames // 3), cfg.num_frames - max(2, cfg.num_frames // 4)


def _default_frame(kind: str, cfg: WorldConfig, scene: _Scene, plausible: dict) -> int | None:
    """Middle of the clip (in the allowed window: a short clip's middle comes too early); for pass_through the first
    collision in view inside that window (None if none)."""
    low, high = _violation_window(cfg)
    if kind != "pass_through":
        return min(max(cfg.num_frames // 2, low), high)
    return next((t for t in range(low, high + 1) if _collision_in_view(scene, plausible, t)), None)


def _collision_in_view(scene: _Scene, plausible: dict, t: int) -> tuple[int, int] | None:
    """The first pair that bounces at frame t with both objects in plain view (a hidden one shows nothing)."""
    pos = plausible["pos"][t]
    return next(((i, j) for hit_t, i, j in plausible["collisions"] if hit_t == t
                 and _in_open(pos[i], scene.radius[i], scene) and _in_open(pos[j], scene.radius[j], scene)), None)


def _violate(seed: int, cfg: WorldConfig, scene: _Scene, plausible: dict, kind: str, t_v: int) -> dict | None:
    """The implausible trajectory, or None when no object can show this violation at t_v, or when it would not
    show in the pixels (a small shape changed at a small size can cover the same pixels)."""
    trajectory = _violated_states(seed, cfg, scene, plausible, kind, t_v)
    return trajectory if trajectory is not None and _shows(plausible, trajectory, t_v, scene) else None


def _shows(plausible: dict, trajectory: dict, t_v: int, scene: _Scene) -> bool:
    """Whether the objects look different in some frame from t_v on, outside the occluder (a change behind it,
    alone, leaves the twins' frames the same)."""
    for t in range(t_v, len(plausible["pos"])):
        frames = np.zeros((2, scene.size, scene.size, 3), np.float32)
        _draw_objects(frames[0], plausible, t)
        _draw_objects(frames[1], trajectory, t)
        if scene.occluder is not None:
            frames[:, :, slice(*_occluder_columns(scene))] = 0
        if not np.array_equal(frames[0], frames[1]):
            return True
    return False


def _violated_states(seed: int, cfg: WorldConfig, scene: _Scene, plausible: dict, kind: str, t_v: int) -> dict | None:
    rng = np.random.default_rng((seed, 1))  # violation stream
    if kind == "pass_through":
        pair = _collision_in_view(scene, plausible, t_v)
        if pair is None:
            return None
        states = _simulate(scene, cfg.num_frames, event_frame=t_v, no_collide=pair)
        return states if _drawn_overlapping(scene, states, pair, t_v) else None
    if kind == "appear":
        return _appear(rng, scene, plausible, cfg, t_v)
    open_objects = [i for i in range(len(scene.radius)) if _in_open(plausible["pos"][t_v, i], scene.radius[i], scene)]
    if not open_objects:
        return None
    i = int(rng.choice(open_objects))
    event = _EVENTS[kind](rng, scene, i, plausible["pos"][t_v])
    return None if event is None else _simulate(scene, cfg.num_frames, event=event, event_frame=t_v)


def _drawn_overlapping(scene: _Scene, states: dict, pair: tuple[int, int], t_v: int) -> bool:
    """Whether the pair covers a common pixel in view in some frame from t_v on: what a pass-through must show. The
    physics overlaps their circles, but two squares or triangles drawn inside circles that overlap a little can stay
    apart, gliding past each other: a missing bounce, not a pass-through."""
    for t in range(t_v, len(states["pos"])):
        common = _covers(states, t, pair[0], scene.size) & _covers(states, t, pair[1], scene.size)
        if scene.occluder is not None:
            common[:, slice(*_occluder_columns(scene))] = False
        if common.any():
            return True
    return False


def _in_open(pos: np.ndarray, radius: float, scene: _Scene) -> bool:
    """Fully inside the frame and clear of the occluder: a change there is in plain view."""
    inside = bool(np.all(pos >= radius) and np.all(pos <= scene.size - radius))
    if scene.occluder is None:
        return inside
    left, right = scene.occluder
    return inside and (pos[0] + radius < left or pos[0] - radius > right)


def _open_spot(rng, scene: _Scene, radius: float, positions: np.ndarray, away_from=None) -> np.ndarray | None:
    """A random free spot in the open (and, if given, at least a third of the frame away from `away_from`)."""
    for _ in range(200):
        spot = rng.uniform(radius, scene.size - radius, size=2)
        clear = all(np.hypot(*(spot - p)) > radius + r + 1 for p, r in zip(positions, scene.radius))
        far = away_from is None or np.hypot(*(spot - away_from)) > scene.size / 3
        if clear and far and _in_open(spot, radius, scene):
            return spot
    return None


def _teleport(rng, scene, i, positions):
    others = np.delete(positions, i, axis=0)
    spot = _open_spot(rng, dataclasses.replace(scene, radius=np.delete(scene.radius, i)), scene.radius[i], others,
                      away_from=positions[i])
    if spot is None:
        return None

    def event(s):
        s.pos[i] = spot
    return event


def _vanish(rng, scene, i, positions):
    def event(s):
        s.visible[i] = False
        s.collides[i] = False  # a vanished object must not push others around either
    return event


def _color_change(rng, scene, i, positions):
    unused = _unused_colors(scene)
    if not unused:
        return None
    new = int(rng.choice(unused))

    def event(s):
        s.color[i] = new
    return event


def _shape_change(rng, scene, i, positions):
    new = int(rng.choice([k for k in range(len(SHAPES)) if k != scene.shape[i]]))

    def event(s):
        s.shape[i] = new
    return event


def _unused_colors(scene: _Scene) -> list[int]:
    """Colours no object has: a changed or new object must not look like one already there."""
    return [c for c in range(len(COLORS)) if c not in scene.color]


_EVENTS = {"teleport": _teleport, "vanish": _vanish, "color_change": _color_change, "shape_change": _shape_change}


def _appear(rng, scene: _Scene, plausible: dict, cfg: WorldConfig, t_v: int) -> dict | None:
    """An extra object pops into view at t_v, on a path that touches no other object until the clip ends: it never
    collides, so the others move exactly as before, and a path through one would add a pass-through to the pair."""
    unused = _unused_colors(scene)
    if not unused:
        return None
    color = int(rng.choice(unused))
    n = len(scene.radius)
    for _ in range(_APPEAR_TRIES):
        radius = rng.uniform(*cfg.radius) * cfg.size
        spot = _open_spot(rng, scene, radius, plausible["pos"][t_v])
        if spot is None:
            return None
        angle = rng.uniform(0, 2 * np.pi)
        velocity = np.array([np.cos(angle), np.sin(angle)]) * rng.uniform(*cfg.speed) * cfg.size
        extended = dataclasses.replace(
            scene, pos=np.vstack([scene.pos, spot]), vel=np.vstack([scene.vel, velocity]),
            radius=np.append(scene.radius, radius), shape=np.append(scene.shape, rng.integers(len(SHAPES))),
            color=np.append(scene.color, color), visible=np.append(scene.visible, False),
            collides=np.append(scene.collides, False))

        def event(s, spot=spot, velocity=velocity):
            s.pos[n], s.vel[n], s.visible[n] = spot, velocity, True
        states = _simulate(extended, cfg.num_frames, event=event, event_frame=t_v)
        after = states["pos"][t_v:]
        gaps = np.hypot(*(after[:, :n] - after[:, n:]).transpose(2, 0, 1)) - radius - scene.radius  # (T - t_v, n)
        if (gaps > 0).all():
            return states
    return None


# ------------------------------------------------------------------------------------------------------- rendering


def _finish(seed: int, cfg: WorldConfig, scene: _Scene, plausible: dict, states: dict, violation, t_v) -> Clip:
    """Frames of the trajectory `states`; labels from the `plausible` one, so violating twins share them."""
    detail = np.random.default_rng((seed, 2))  # detail stream: noise and backgrounds only
    background = cfg.background if cfg.background != "mixed" else str(detail.choice(["plain", "texture", "flicker"]))
    frames = _background(detail, background, cfg)  # (T, H, W, 3) float
    for t in range(cfg.num_frames):
        _draw_objects(frames[t], states, t)
        if scene.occluder is not None:
            frames[t, :, slice(*_occluder_columns(scene))] = _OCCLUDER_GREY
    if cfg.noise_std > 0:
        frames += detail.normal(0, cfg.noise_std * 255, size=frames.shape).astype(np.float32)
    pixels = np.clip(frames, 0, 255).round().astype(np.uint8)
    return Clip(pixels, _labels(seed, cfg, scene, plausible, background, violation, t_v), states)


def _background(rng, kind: str, cfg: WorldConfig) -> np.ndarray:
    size, t = cfg.size, cfg.num_frames
    if kind == "texture":  # grass-like: green-brown blotches plus fine static grain
        coarse = rng.uniform(0, 1, size=(size // 8 + 1, size // 8 + 1, 1))
        blotches = np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]
        grain = rng.uniform(-1, 1, size=(size, size, 1))
        base = np.array([40, 70, 30]) + blotches * np.array([30, 50, 20]) + grain * 18
        return np.repeat(base[None].astype(np.float32), t, axis=0)
    frames = np.broadcast_to(_PLAIN_BACKGROUND, (t, size, size, 3)).copy()
    if kind == "flicker":  # lighting that brightens and dims at random from frame to frame
        frames *= rng.uniform(0.4, 3.0, size=(t, 1, 1, 1)).astype(np.float32)
    return frames


def object_pixels(clip: Clip) -> np.ndarray:
    """(T, H, W) bool: where a visible object is drawn in each frame (ignoring the occluder in front of it)."""
    frames = np.zeros(clip.frames.shape, np.float32)
    for t in range(len(frames)):
        _draw_objects(frames[t], clip.states, t)
    return frames.any(axis=-1)


def _occluder_columns(scene: _Scene) -> tuple[int, int]:
    """The pixel columns the occluder's bar covers, [left, right)."""
    left, right = scene.occluder
    return int(round(left)), int(round(right))


def _draw_objects(frame: np.ndarray, states: dict, t: int) -> None:
    for i in range(states["pos"].shape[1]):
        drawn = _object_mask(states, t, i, frame.shape[0])
        if drawn is not None:
            box, inside = drawn
            frame[box][inside] = COLORS[states["color"][t, i]]


def _covers(states: dict, t: int, i: int, size: int) -> np.ndarray:
    """(H, W) bool: the pixels object i is drawn on in frame t."""
    pixels = np.zeros((size, size), bool)
    drawn = _object_mask(states, t, i, size)
    if drawn is not None:
        box, inside = drawn
        pixels[box] = inside
    return pixels


def _object_mask(states: dict, t: int, i: int, size: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Where object i is drawn in frame t: a box of the frame and which of its pixels the shape covers; None when it
    is hidden or outside the frame."""
    if not states["visible"][t, i]:
        return None
    x, y = states["pos"][t, i]
    r = states["radius"][i]
    top, bottom = max(0, int(y - r - 1)), min(size, int(y + r + 2))
    left, right = max(0, int(x - r - 1)), min(size, int(x + r + 2))
    if top >= bottom or left >= right:
        return None
    yy, xx = np.mgrid[top:bottom, left:right] + 0.5  # pixel centres
    return (slice(top, bottom), slice(left, right)), _shape_mask(SHAPES[states["shape"][t, i]], xx - x, yy - y, r)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Every shape lies inside the circle of radius r that the physics moves and collides: a square or triangle
    reaching past it would be drawn overlapping an object it had only touched, which is what a pass-through shows."""
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        half = r / np.sqrt(2)
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # equilateral triangle pointing up: apex at -r, base at +r/2, width growing linearly downwards
    height = (dy + r) / (1.5 * r)
    return (height >= 0) & (height <= 1) & (np.abs(dx) <= height * r * np.sqrt(3) / 2)


def _labels(seed: int, cfg: WorldConfig, scene: _Scene, plausible: dict, background: str, violation, t_v) -> dict:
    n = len(scene.radius)
    return {"num_objects": n, "shapes": sorted({SHAPES[k] for k in scene.shape}),
            "main_shape": SHAPES[scene.shape[int(np.argmax(_drawn_area(scene)))]], "gravity": bool(scene.gravity > 0),
            "direction": main_direction(plausible["pos"]), "occluder": scene.occluder is not None,
            "background": background, "noise_std": float(cfg.noise_std), "violation": violation,
            "violation_frame": t_v, "seed": int(seed)}


def _drawn_area(scene: _Scene) -> np.ndarray:
    """(n,) each object's area as drawn: at one radius a square covers 64 % and a triangle 41 % of a circle."""
    return scene.radius**2 * np.array([_AREA_PER_SQUARED_RADIUS[SHAPES[k]] for k in scene.shape])


def main_direction(positions: np.ndarray) -> str:
    """Where the objects travel farthest: each frame-to-frame move of each object split into its rightward,
    leftward, downward and upward parts, summed over the clip. Not the net displacement, which a wall bounce cancels:
    an object that crosses the frame and comes back would be labelled by its small sideways drift."""
    steps = np.diff(positions, axis=0).reshape(-1, 2)  # (T-1) * n moves (dx, dy); y grows downwards
    travel = {"right": steps[:, 0].clip(min=0).sum(), "left": (-steps[:, 0]).clip(min=0).sum(),
              "down": steps[:, 1].clip(min=0).sum(), "up": (-steps[:, 1]).clip(min=0).sum()}
    return max(travel, key=travel.get)
