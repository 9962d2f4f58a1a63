"""Media of multimodal examples: images, videos as frames, even frame sampling, checks.

    v = Video("clips/cat.mp4", max_frames=8)     # a video file (PyAV or decord decodes it)
    v = Video("clips/cat/")                       # a directory of frame images, by name
    v = Video(("f0.png", "f1.png", "f2.png"))     # the frames themselves, in order
    frames = v.frames()                           # at most max_frames RGB PIL images
    check_video(v)                                # None, or what is wrong and the fix

A video is always handed to a model as frames: at most `max_frames`, spread evenly over
the clip (the middle frame of `max_frames` equal segments, `sample_indices`). Frame
directories sort by name with numbers compared as numbers (`f2.png` before `f10.png`).
Animated GIFs decode with Pillow. Other video files need a decoder: PyAV (`pip install av`,
or the `video` extra) or decord; `check_video` says so when neither is importable, so a
dataset task fails at load time, before any training, rather than mid-run.

Pixels are read lazily (when a prompt is encoded), so examples stay small and hashable.
Any object with `frames()` (e.g. `copd.tasks.motion.Clip`) is a video too, and any object
with `to_pil()` (e.g. `copd.tasks.shapes.Scene`) an image.
"""

from __future__ import annotations

import importlib.util
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copd.errors import ConfigError

DEFAULT_MAX_FRAMES = 8
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpeg", ".mpg", ".flv", ".wmv", ".ts"}
)
DECODERS = ("av", "decord")  # tried in this order
DECODER_FIX = (
    "install a decoder (pip install av, or pip install -e .[video]), or convert each video "
    "to a directory of frame images (ffmpeg -i clip.mp4 clip/%05d.png) and give the directories"
)


def sample_indices(n: int, k: int) -> list[int]:
    """`k` frame indices spread evenly over `n` frames: the middle frame of each of `k`
    equal segments, increasing; all `n` indices when n <= k. Pure."""
    if k < 1:
        raise ValueError(f"max_frames={k!r} must be >= 1, e.g. 8")
    if n <= k:
        return list(range(n))
    return [int((i + 0.5) * n / k) for i in range(k)]


def natural_key(name: str) -> list:
    """Sort key that compares digit runs as numbers: f2 < f10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def decoder() -> str | None:
    """The first importable video decoder module ("av", "decord"), or None (not imported)."""
    return next((m for m in DECODERS if importlib.util.find_spec(m) is not None), None)


def load_image(item: Any):
    """An RGB PIL image from a file path (read now), a PIL image, or an object with
    `to_pil()`."""
    if isinstance(item, str | Path):
        from PIL import Image

        with Image.open(item) as im:
            return im.convert("RGB")
    if hasattr(item, "to_pil"):
        return item.to_pil()
    return item


@dataclass(frozen=True)
class Video:
    """One video of an example: a file path, a frame directory, or a tuple of frames
    (paths, PIL images or `to_pil()` objects) in order; read at most `max_frames`."""

    source: str | tuple[Any, ...]
    max_frames: int = DEFAULT_MAX_FRAMES

    @property
    def kind(self) -> str:
        """The source kind: "frames" (a tuple), "directory", or "file"."""
        if not isinstance(self.source, str):
            return "frames"
        return "directory" if Path(self.source).is_dir() else "file"

    def frame_items(self) -> list[Any]:
        """Every frame of a frame list or directory (not read); a file has none listed."""
        if self.kind == "frames":
            return list(self.source)
        if self.kind == "directory":
            return sorted(
                (str(p) for p in Path(self.source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                key=lambda s: natural_key(Path(s).name),
            )
        return []

    def frames(self) -> list:
        """At most `max_frames` RGB PIL frames, evenly spaced, in order."""
        if self.kind == "file":
            return decode_video_file(str(self.source), self.max_frames)
        items = self.frame_items()
        return [load_image(items[i]) for i in sample_indices(len(items), self.max_frames)]


def as_video(item: Any, max_frames: int = DEFAULT_MAX_FRAMES):
    """A video object (anything with `frames()`) from an example's `videos` entry: a
    `Video`, a path, or a list/tuple of frames."""
    if hasattr(item, "frames"):
        return item
    if isinstance(item, str | Path):
        return Video(str(item), max_frames)
    return Video(tuple(item), max_frames)


def video_frames(item: Any) -> list:
    """The PIL frames of one `videos` entry (see `as_video`)."""
    return list(as_video(item).frames())


def decode_video_file(path: str, max_frames: int) -> list:
    """At most `max_frames` evenly spaced RGB frames of a video file: Pillow for GIFs,
    else PyAV or decord (whichever imports; see `check_video` for the error)."""
    from PIL import Image

    if Path(path).suffix.lower() == ".gif":
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            out = []
            for i in sample_indices(n, max_frames):
                im.seek(i)
                out.append(im.convert("RGB"))
            return out
    name = decoder()
    if name == "av":
        return _decode_av(path, max_frames)
    if name == "decord":
        import decord

        reader = decord.VideoReader(path)
        idx = sample_indices(len(reader), max_frames)
        return [Image.fromarray(a) for a in reader.get_batch(idx).asnumpy()]
    raise RuntimeError(f"video {path}: no video decoder is importable here; {DECODER_FIX}")


def _decode_av(path: str, max_frames: int) -> list:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        n = stream.frames  # from the header; 0 when the container does not say
        if n > 0:
            want = sample_indices(n, max_frames)
            keep = set(want)
            out = []
            for i, frame in enumerate(container.decode(stream)):
                if i in keep:
                    out.append(frame.to_image().convert("RGB"))
                if len(out) == len(want):
                    return out
            container.seek(0)  # the header over-counted: decode everything and sample
        frames = list(container.decode(stream))
    return [frames[i].to_image().convert("RGB") for i in sample_indices(len(frames), max_frames)]


def check_video(item: Any) -> str | None:
    """What makes a `videos` entry unreadable here, with the fix; None when it is fine.
    Checks existence, the frame directory's contents and, for video files, that a decoder
    is importable. Reads no pixels."""
    v = as_video(item)
    if not isinstance(v, Video):
        return None  # a generated clip
    if v.kind == "frames":
        missing = [f for f in v.source if isinstance(f, str | Path) and not Path(f).is_file()]
        if not v.source:
            return "an empty list of frames"
        if missing:
            return f"frame {missing[0]} does not exist ({len(missing)} missing)"
        return None
    p = Path(v.source)
    if v.kind == "directory":
        if not v.frame_items():
            return (
                f"frame directory {p} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "put the frames there or point the video field elsewhere"
            )
        return None
    if not p.is_file():
        return f"video {p} does not exist (neither a file nor a frame directory)"
    suffix = p.suffix.lower()
    if suffix == ".gif":
        return None
    if suffix not in VIDEO_SUFFIXES:
        return (
            f"{p} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}), a frame "
            "directory or a list of frame images"
        )
    if decoder() is None:
        return f"video file {p} needs a video decoder and none is importable here; {DECODER_FIX}"
    return None


def needs_decoder(item: Any) -> bool:
    """Whether a `videos` entry is a video file that no importable decoder can read."""
    v = as_video(item)
    return (
        isinstance(v, Video)
        and isinstance(v.source, str)
        and Path(v.source).suffix.lower() in VIDEO_SUFFIXES
        and not Path(v.source).is_dir()
        and decoder() is None
    )


def videos_from_cell(value: Any, base: Path, max_frames: int) -> tuple[Video, ...]:
    """The videos of one dataset cell: a path (a video file or a frame directory) is one
    video; a list of image paths is ONE video's frames, in order; a list of video files or
    directories is several videos; a list of lists is several videos given as frames.
    Relative paths are taken from `base` (the data file's folder). Raises TypeError."""
    if value is None:
        return ()

    def resolve(s: Any) -> str:
        if not isinstance(s, str):
            raise TypeError("not a path, a list of frame paths or a list of videos")
        return str(s if Path(s).is_absolute() else base / s)

    if isinstance(value, str):
        return (Video(resolve(value), max_frames),)
    items = list(value)
    if items and all(isinstance(v, list | tuple) for v in items):
        return tuple(Video(tuple(resolve(f) for f in v), max_frames) for v in items)
    paths = [resolve(v) for v in items]
    is_frame = [Path(p).suffix.lower() in IMAGE_SUFFIXES - {".gif"} for p in paths]
    if all(is_frame):
        return (Video(tuple(paths), max_frames),) if paths else ()
    if any(is_frame):
        raise TypeError(
            "a list mixing frame images and videos; give one video's frames as a list of "
            "images, or several videos as a list of files or directories"
        )
    return tuple(Video(p, max_frames) for p in paths)


def check_task_media(tasks: dict[str, Any], n: int = 4) -> None:
    """Fail before any model loads when a task's prompts carry videos this machine cannot
    read (a video file without a decoder, a missing frame): a few prompts per task are
    drawn from a throwaway RNG and checked, no pixels read. Datasets check every row at
    load; this catches custom `module:factory` tasks."""
    for name, task in tasks.items():
        for ex in task.sample(random.Random(0), n):
            for v in ex.videos:
                problem = check_video(v)
                if problem:
                    raise ConfigError(f"task {name}: {problem}")
