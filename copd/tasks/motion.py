"""`motion`: a built-in video domain whose answer needs more than one frame.

    task = get_task("motion", difficulty=2)
    ex = task.sample(random.Random(0), 1)[0]
    ex.prompt               # "which way does the red square move?"
    ex.videos[0].frames()   # a Clip's frames: 4 RGB PIL images, 48x48, generated in memory
    task.reward(ex, "left") # exact match on one of: left, right, up, down

Each clip shows one target shape (a colour and a kind no other shape in the clip has)
sliding a fixed number of pixels per frame in one of four directions; any single frame
shows only where it is, so the answer needs at least two frames. The difficulty adds
frames, distractor shapes (moving their own ways from difficulty 3) and shrinks the step.

Clips travel as `Clip` objects (frozen, hashable, tiny): the held-out split hashes them and
the pixels are drawn when a rollout encodes the prompt (`copd.tasks.media.video_frames`).
On a model without video input the frames go in as a sequence of images (copd/policy/vlm.py).
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass

from copd.tasks.base import Example, SyntheticTask
from copd.tasks.shapes import COLOURS, KINDS

FRAME_SIZE = 48
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Per difficulty (index = difficulty - 1):
# (frames, distractors, distractors move, min step, max step), steps in pixels per frame.
LEVELS = (
    (3, 0, False, 7, 8),
    (4, 1, False, 5, 7),
    (4, 2, True, 4, 6),
    (5, 3, True, 3, 5),
    (6, 4, True, 3, 4),
)
PROMPT = "which way does the {colour} {kind} move?"


@dataclass(frozen=True)
class Mover:
    """A shape at (x, y) on frame 0 (top-left corner) moving (dx, dy) pixels per frame."""

    kind: str
    colour: str
    x: int
    y: int
    dx: int
    dy: int
    size: int


@dataclass(frozen=True)
class Clip:
    """A generated video: the movers drawn on `n_frames` white `size` x `size` frames; the
    first mover is the target (drawn last, on top)."""

    movers: tuple[Mover, ...]
    n_frames: int
    size: int = FRAME_SIZE

    def frames(self) -> list:
        """The clip's RGB PIL frames, in order (same pixels on every call)."""
        from PIL import Image, ImageDraw

        out = []
        for t in range(self.n_frames):
            img = Image.new("RGB", (self.size, self.size), (255, 255, 255))
            draw = ImageDraw.Draw(img)
            for m in reversed(self.movers):
                x0, y0 = m.x + t * m.dx, m.y + t * m.dy
                box = (x0, y0, x0 + m.size - 1, y0 + m.size - 1)
                shape = draw.rectangle if m.kind == "square" else draw.ellipse
                shape(box, fill=COLOURS[m.colour])
            out.append(img)
        return out


def direction_of(m: Mover) -> str:
    """The direction name of a mover's motion."""
    step = (int(m.dx > 0) - int(m.dx < 0), int(m.dy > 0) - int(m.dy < 0))
    return next(name for name, d in DIRECTIONS.items() if d == step)


class MotionTask(SyntheticTask):
    """Name the direction in which the target shape moves: left, right, up or down."""

    name = "motion"
    alphabet = "".join(
        sorted(
            set("".join(PROMPT.format(colour=c, kind=k) for c in COLOURS for k in KINDS))
            | set("".join(DIRECTIONS))
        )
    )
    max_answer_chars = max(map(len, DIRECTIONS))

    def __init__(
        self, difficulty: int = 1, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        super().__init__(difficulty, holdout_fraction, val_fraction)
        self.n_frames, self.n_distractors, self.distractors_move, lo, hi = LEVELS[difficulty - 1]
        self.steps = (lo, hi)

    def _mover(self, rng: random.Random, kind: str, colour: str, moving: bool) -> Mover:
        size = rng.randint(8, 11)
        step = rng.randint(*self.steps) if moving else 0
        dx, dy = DIRECTIONS[rng.choice(tuple(DIRECTIONS))]
        dx, dy = dx * step, dy * step
        travel = (self.n_frames - 1) * step
        lim = FRAME_SIZE - size - 1  # the top-left corner stays within [1, lim] on every frame
        # Start far enough from the edge it moves towards that the last frame stays inside.
        x = rng.randint(1 + travel * (dx < 0), lim - travel * (dx > 0))
        y = rng.randint(1 + travel * (dy < 0), lim - travel * (dy > 0))
        return Mover(kind, colour, x, y, dx, dy, size)

    def draw(self, rng: random.Random) -> Hashable:
        kind, colour = rng.choice(KINDS), rng.choice(tuple(COLOURS))
        movers = [self._mover(rng, kind, colour, moving=True)]
        others = [(k, c) for k in KINDS for c in COLOURS if (k, c) != (kind, colour)]
        for k, c in rng.sample(others, self.n_distractors):
            movers.append(self._mover(rng, k, c, moving=self.distractors_move))
        return Clip(tuple(movers), self.n_frames)

    def render(self, key: Hashable) -> Example:
        clip: Clip = key  # type: ignore[assignment]
        target = clip.movers[0]
        prompt = PROMPT.format(colour=target.colour, kind=target.kind)
        return Example(prompt, direction_of(target), self.name, videos=(clip,))
