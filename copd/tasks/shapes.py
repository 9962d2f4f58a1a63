"""`shapes`: a built-in image domain with a verifiable answer (for vision-language branches).

    task = get_task("shapes", difficulty=2)
    ex = task.sample(random.Random(0), 1)[0]
    ex.prompt            # "how many red shapes?"
    ex.images[0]         # a Scene; Scene.to_pil() draws it (56x56 RGB, white background)
    task.reward(ex, "2") # exact match on the count, a digit

Each image holds a few coloured squares and circles, one per cell of a 3x3 grid (so shapes
never overlap and every one is visible). The question asks for the number of shapes of one
colour; the answer may be 0. The difficulty sets how many shapes and colours appear.

Images travel as `Scene` objects: small, frozen and hashable (an `Example` stays hashable,
pickles cheaply to a Ray actor and the held-out split hashes the scene). The pixels are
drawn when the rollout encodes the prompt (`copd.tasks.media.load_image`), deterministically.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass

from copd.tasks.base import Example, SyntheticTask

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220), "black": (0, 0, 0)}
KINDS = ("square", "circle")
IMAGE_SIZE = 56
GRID = 3
# Per difficulty (index = difficulty - 1): (min shapes, max shapes, colours in play).
SHAPE_COUNTS = ((1, 3, 2), (2, 5, 3), (3, 6, 3), (4, 8, 4), (5, 9, 4))
PROMPT = "how many {colour} shapes?"


@dataclass(frozen=True)
class Shape:
    kind: str  # "square" | "circle"
    colour: str  # a key of COLOURS
    cell: int  # 0..GRID*GRID-1, row-major
    dx: int  # offset inside the cell, pixels
    dy: int
    size: int  # side or diameter, pixels


@dataclass(frozen=True)
class Scene:
    """A drawable image: shapes on a white `size` x `size` background."""

    shapes: tuple[Shape, ...]
    size: int = IMAGE_SIZE

    def to_pil(self):
        """The scene as an RGB PIL image (same pixels on every call)."""
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (self.size, self.size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        cell = self.size // GRID
        for s in self.shapes:
            x0 = (s.cell % GRID) * cell + s.dx
            y0 = (s.cell // GRID) * cell + s.dy
            box = (x0, y0, x0 + s.size - 1, y0 + s.size - 1)
            if s.kind == "square":
                draw.rectangle(box, fill=COLOURS[s.colour])
            else:
                draw.ellipse(box, fill=COLOURS[s.colour])
        return img

    def count(self, colour: str) -> int:
        return sum(s.colour == colour for s in self.shapes)


class ShapesTask(SyntheticTask):
    """Count the shapes of one colour in an image: answer one digit (0-9)."""

    name = "shapes"
    alphabet = "".join(sorted(set("".join(PROMPT.format(colour=c) for c in COLOURS)))) + (
        "0123456789"
    )
    max_answer_chars = 1

    def __init__(
        self, difficulty: int = 1, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        super().__init__(difficulty, holdout_fraction, val_fraction)
        self.min_shapes, self.max_shapes, n_colours = SHAPE_COUNTS[difficulty - 1]
        self.colours = tuple(COLOURS)[:n_colours]

    def draw(self, rng: random.Random) -> Hashable:
        n = rng.randint(self.min_shapes, self.max_shapes)
        cells = rng.sample(range(GRID * GRID), n)
        cell_px = IMAGE_SIZE // GRID
        shapes = []
        for c in sorted(cells):
            size = rng.randint(cell_px // 2, cell_px - 4)
            shapes.append(
                Shape(
                    kind=rng.choice(KINDS),
                    colour=rng.choice(self.colours),
                    cell=c,
                    dx=rng.randint(1, cell_px - size - 1),
                    dy=rng.randint(1, cell_px - size - 1),
                    size=size,
                )
            )
        return (Scene(tuple(shapes)), rng.choice(self.colours))

    def render(self, key: Hashable) -> Example:
        scene, colour = key  # type: ignore[misc]
        return Example(
            PROMPT.format(colour=colour), str(scene.count(colour)), self.name, images=(scene,)
        )
