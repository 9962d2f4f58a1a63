"""Video in the multimodal path: frame sampling and loading (frame lists, directories, GIFs),
the decoder check at dataset load, the `motion` task's verifier, video prompts on an
image-only model (one image per frame) and on a video processor, vision-input selection,
and runs on the tiny LLaVA: CoPD with text hub + image + video branches, LoRA branches,
MOPD on image prompts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_support import tiny_overrides

from copd.policy.vlm import FRAMES_CAPTION, VisionInputs, prepare_vlm_prompt
from copd.spec import apply_overrides
from copd.tasks import DatasetError, get_task
from copd.tasks import media as M
from copd.tasks.motion import DIRECTIONS, FRAME_SIZE, Clip, MotionTask

# Distinct frame colours: frame i is filled with COLOURS[i] (so a frame names its index).
COLOURS = [(10 * i, 200 - 10 * i, 7) for i in range(12)]


def _write_frames(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        Image.new("RGB", (8, 8), COLOURS[i]).save(folder / name)
        paths.append(folder / name)
    return paths


def _indices(frames) -> list[int]:
    return [COLOURS.index(f.getpixel((3, 3))) for f in frames]


# ----------------------------------------------------------------------------- frames
def test_sample_indices_are_evenly_spread_and_keep_short_clips_whole():
    assert M.sample_indices(5, 8) == [0, 1, 2, 3, 4]
    assert M.sample_indices(8, 8) == list(range(8))
    assert M.sample_indices(10, 4) == [1, 3, 6, 8]  # middles of 4 segments of 2.5 frames
    assert M.sample_indices(100, 1) == [50]
    idx = M.sample_indices(1000, 8)
    gaps = {b - a for a, b in zip(idx, idx[1:], strict=False)}
    assert len(idx) == 8 and gaps == {125}
    with pytest.raises(ValueError, match="max_frames"):
        M.sample_indices(10, 0)


def test_frames_from_a_list_are_sampled_in_order(tmp_path):
    paths = _write_frames(tmp_path, [f"x{i}.png" for i in range(10)])
    frames = M.Video(tuple(str(p) for p in paths), max_frames=4).frames()
    assert _indices(frames) == [1, 3, 6, 8]
    assert all(f.mode == "RGB" and f.size == (8, 8) for f in frames)
    # a plain list in Example.videos reads the same way (default max_frames = 8)
    assert _indices(M.video_frames([str(p) for p in paths[:5]])) == [0, 1, 2, 3, 4]


def test_frames_from_a_directory_sort_by_name_with_numbers_as_numbers(tmp_path):
    names = ["f1.png", "f2.png", "f10.png", "f11.jpg"]  # written in this (true) order
    _write_frames(tmp_path / "clip", names)
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    v = M.Video(str(tmp_path / "clip"), max_frames=8)
    assert v.kind == "directory"
    assert [Path(p).name for p in v.frame_items()] == names
    frames = v.frames()
    assert _indices(frames[:3]) == [0, 1, 2]  # jpg is lossy: compare the png frames exactly
    assert len(frames) == 4
    assert M.check_video(v) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no images" in M.check_video(M.Video(str(empty)))


def test_animated_gif_decodes_without_a_video_library(tmp_path):
    frames = [Image.new("RGB", (8, 8), COLOURS[i]) for i in range(6)]
    path = tmp_path / "clip.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
    out = M.Video(str(path), max_frames=3).frames()
    assert len(out) == 3 and all(f.mode == "RGB" for f in out)

    def nearest(f) -> int:  # GIF palettes may shift colours slightly
        px = f.getpixel((3, 3))
        return min(
            range(6), key=lambda i: sum(abs(a - b) for a, b in zip(px, COLOURS[i], strict=True))
        )

    got = [nearest(f) for f in out]
    assert got == M.sample_indices(6, 3) == [1, 3, 5]


def test_video_file_without_a_decoder_fails_at_dataset_load_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "DECODERS", ("copd_no_such_decoder",))
    assert M.decoder() is None
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 64)
    rows = [{"q": f"what happens {i}?", "a": "x", "video": "a.mp4"} for i in range(3)]
    data = tmp_path / "v.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError) as err:
        get_task("dataset", path=str(data), prompt_field="q", answer_field="a",
                 video_field="video", eval_fraction=0.0)  # fmt: skip
    msg = str(err.value)
    assert "3 video file(s)" in msg and "line 1" in msg and "a.mp4" in msg
    assert "pip install av" in msg and "frame images" in msg
    with pytest.raises(RuntimeError, match="pip install av"):
        M.Video(str(tmp_path / "a.mp4")).frames()


def test_video_file_decodes_evenly_spaced_frames_with_pyav(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "0", "preset": "ultrafast"}
        for i in range(20):  # frame i: red = 20 + 10 i
            arr = np.zeros((32, 32, 3), np.uint8)
            arr[..., 0] = 20 + 10 * i
            out.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        out.mux(stream.encode())
    assert M.check_video(M.Video(str(path))) is None
    frames = M.Video(str(path), max_frames=4).frames()
    reds = [f.getpixel((5, 5))[0] for f in frames]
    expected = [20 + 10 * i for i in M.sample_indices(20, 4)]  # YUV rounding: a few levels
    assert len(frames) == 4 and all(abs(r - e) <= 4 for r, e in zip(reds, expected, strict=True))


def test_dataset_video_cells_frames_directories_and_max_frames(tmp_path):
    _write_frames(tmp_path / "d1", [f"{i:03d}.png" for i in range(10)])
    _write_frames(tmp_path / "d2", ["a.png", "b.png"])
    frames = [f"d1/{i:03d}.png" for i in range(3)]
    rows = [
        {"q": "one directory", "a": "1", "video": "d1"},
        {"q": "one video as frames", "a": "2", "video": frames},
        {"q": "two directories", "a": "3", "video": ["d1", "d2"]},
        {"q": "two frame lists", "a": "4", "video": [frames, ["d2/a.png"]]},
    ]
    data = tmp_path / "v.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("dataset", path=str(data), prompt_field="q", answer_field="a",
                    video_field="video", eval_fraction=0.0, max_frames=4)  # fmt: skip
    ex = {e.answer: e for e in task.train}
    assert [v.max_frames for e in task.train for v in e.videos] == [4] * 6
    assert ex["1"].videos == (M.Video(str(tmp_path / "d1"), 4),)
    assert _indices(ex["1"].videos[0].frames()) == [1, 3, 6, 8]
    assert ex["2"].videos == (M.Video(tuple(str(tmp_path / f) for f in frames), 4),)
    assert [v.kind for v in ex["3"].videos] == ["directory", "directory"]
    assert [len(v.frames()) for v in ex["4"].videos] == [3, 1]

    bad = [
        {"q": "missing", "a": "1", "video": "nowhere"},
        {"q": "mixed", "a": "1", "video": ["d1/000.png", "d2"]},
        {"q": "lost frame", "a": "1", "video": ["d1/000.png", "d1/999.png"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DatasetError) as err:
        get_task("dataset", path=str(data), prompt_field="q", answer_field="a",
                 video_field="video", eval_fraction=0.0)  # fmt: skip
    msg = str(err.value)
    assert "line 1" in msg and "does not exist" in msg
    assert "line 2" in msg and "mixing frame images and videos" in msg
    assert "line 3" in msg and "999.png does not exist" in msg
    with pytest.raises(DatasetError, match="max_frames"):
        get_task("dataset", path=str(data), video_field="video", max_frames=0)


# ----------------------------------------------------------------------------- motion
def _centre(frame, colour):
    xs, ys = [], []
    for y in range(frame.height):
        for x in range(frame.width):
            if frame.getpixel((x, y)) == colour:
                xs.append(x)
                ys.append(y)
    return sum(xs) / len(xs), sum(ys) / len(ys)


@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_motion_answer_is_the_direction_the_target_moves_across_frames(difficulty):
    from copd.tasks.shapes import COLOURS as SHAPE_COLOURS

    task = get_task("motion", difficulty=difficulty)
    train = task.sample(random.Random(difficulty), 24)
    assert {ex.answer for ex in train} <= set(DIRECTIONS)
    for ex in train[:8]:
        (clip,) = ex.videos
        assert isinstance(clip, Clip) and not ex.images
        frames = clip.frames()
        assert len(frames) == task.n_frames >= 3
        assert all(f.size == (FRAME_SIZE, FRAME_SIZE) for f in frames)
        target = clip.movers[0]
        assert f"{target.colour} {target.kind}" in ex.prompt
        # the target is unique in the clip and every mover stays inside every frame
        assert sum((m.kind, m.colour) == (target.kind, target.colour) for m in clip.movers) == 1
        for m in clip.movers:
            for t in range(clip.n_frames):
                x, y = m.x + t * m.dx, m.y + t * m.dy
                assert x > 0 and x + m.size < FRAME_SIZE and y > 0 and y + m.size < FRAME_SIZE
        # the answer is what the pixels show: alone in a clip, the target's centre moves
        # that way by at least 3 px a frame; in the real clip it is drawn on top
        colour = SHAPE_COLOURS[target.colour]
        alone = Clip((target,), clip.n_frames).frames()
        (x0, y0), (x1, y1) = _centre(alone[0], colour), _centre(alone[-1], colour)
        dx, dy = DIRECTIONS[ex.answer]
        assert (x1 - x0) * dx + (y1 - y0) * dy >= 3 * (clip.n_frames - 1)
        c = target.size // 2
        for t, f in enumerate(frames):
            centre = (target.x + t * target.dx + c, target.y + t * target.dy + c)
            assert f.getpixel(centre) == colour
        assert task.reward(ex, f" {ex.answer}\n") == 1.0
        assert all(task.reward(ex, d) == 0.0 for d in DIRECTIONS if d != ex.answer)
    held = task.eval_examples(16)
    assert held == task.eval_examples(16)
    assert not {ex.videos for ex in held} & {ex.videos for ex in train}
    assert all(set(ex.prompt + ex.answer) <= set(task.alphabet) for ex in train)
    assert MotionTask.max_answer_chars == 5


def test_motion_covers_every_direction():
    answers = {ex.answer for ex in get_task("motion").sample(random.Random(0), 60)}
    assert answers == set(DIRECTIONS)


# ----------------------------------------------------------------------------- prompts
class _VideoProcessor:
    """The parts of a processor with `videos=` support that prompt rendering reads."""

    image_token, video_token, chat_template = "<I>", "<V>", None
    video_processor = object()


def test_video_prompt_on_an_image_only_processor_is_one_image_per_frame(tiny_vlm_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm_dir)
    ex = get_task("motion", difficulty=2).sample(random.Random(0), 1)[0]
    p = prepare_vlm_prompt(processor, ex)
    n = len(ex.videos[0].frames())
    assert p.text == FRAMES_CAPTION.format(n=n) + "<image>" * n + ex.prompt
    assert p.videos == [] and len(p.images) == n
    assert [list(im.getdata()) for im in p.images] == [
        list(f.getdata()) for f in ex.videos[0].frames()
    ]
    enc = processor(text=[p.text], images=p.images, return_tensors="pt")
    assert enc["pixel_values"].shape[0] == n


def test_video_prompt_on_a_video_processor_goes_to_videos():
    ex = get_task("motion").sample(random.Random(0), 1)[0]
    ex = type(ex)(ex.prompt, ex.answer, ex.domain, images=(ex.videos[0].frames()[0],),
                  videos=ex.videos * 2)  # fmt: skip
    p = prepare_vlm_prompt(_VideoProcessor(), ex)
    assert p.text == "<I><V><V>" + ex.prompt
    assert len(p.images) == 1 and len(p.videos) == 2 and len(p.videos[0]) == 3


# ----------------------------------------------------------------------------- selection
def test_select_cuts_per_image_rows_patch_spans_and_prompt_rows():
    # 3 prompts with 2, 0, 1 images; LLaVA-style pixels (one row per image)
    pv = torch.arange(3).float()[:, None, None, None].expand(3, 3, 2, 2)
    v = VisionInputs({"pixel_values": pv, "prompt_flag": torch.tensor([10, 11, 12])},
                     torch.arange(3)[:, None], (2, 0, 1), (0, 0, 0))  # fmt: skip
    s = v.select([2, 0])
    assert s.tensors["pixel_values"][:, 0, 0, 0].tolist() == [2.0, 0.0, 1.0]
    assert s.tensors["prompt_flag"].tolist() == [12, 10]
    assert s.token_types_P_L[:, 0].tolist() == [2, 0] and s.images_P == (1, 2)
    assert v.select([1]) is None  # a text-only prompt: no vision inputs at all
    # Qwen-style: variable-length patches with a grid per image and per video
    grid = torch.tensor([[1, 2, 2], [1, 2, 4], [1, 2, 2]])  # 4, 8, 4 patches
    vgrid = torch.tensor([[2, 2, 2]])  # 8 patches
    q = VisionInputs(
        {"pixel_values": torch.arange(16.0)[:, None], "image_grid_thw": grid,
         "pixel_values_videos": torch.arange(100.0, 108.0)[:, None], "video_grid_thw": vgrid},
        None, (1, 2, 0), (0, 0, 1),
    )  # fmt: skip
    s = q.select([1, 2])
    assert s.tensors["pixel_values"][:, 0].tolist() == list(range(4, 16))
    assert s.tensors["image_grid_thw"].tolist() == grid[1:].tolist()
    assert s.tensors["pixel_values_videos"].shape[0] == 8
    s = q.select([0])
    assert s.tensors["pixel_values"][:, 0].tolist() == [0, 1, 2, 3]
    assert s.tensors["pixel_values_videos"].shape[0] == 0 and s.videos_P == (0,)
    with pytest.raises(ValueError, match="one per image"):
        VisionInputs({"pixel_values": pv}, None, (1, 1, 0), (0, 0, 0)).select([0])


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def tiny_vlm_dir() -> str:
    from copd.builders.tiny_vlm import tiny_test_vlm

    return str(tiny_test_vlm(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))


def _vlm_cfg(model_dir: str, extra: list[str]):
    from copd.spec import presets

    return apply_overrides(
        presets.get("demo"),
        tiny_overrides(model_dir)
        + [
            'task_options={"add": {"difficulty": 1}, "shapes": {"difficulty": 1}, '
            '"motion": {"difficulty": 1}}',
            "schedule.cycles=1",
            "schedule.rl_steps=1",
            "schedule.opd_steps=1",
            "sampling.max_new_tokens=3",
            "grpo.prompts_per_step=2",
            "grpo.group_size=2",
            "opd.cross_prompts_per_step=2",
            "eval.n_prompts=2",
            "diagnostics.n_prompts=2",
            "grpo.lr=1e-3",
            *extra,
        ],
    ).validate()


def _nudge(branch) -> None:
    """Move a branch off the shared base, so its peers' OPD advantages are not all 0 even
    when no GRPO group of this two-step run happens to draw a reward signal."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in branch.params:
            p.add_(1e-2 * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))


THREE = (
    'branches=[{"name": "text", "task": "add", "device": "cpu"}, '
    '{"name": "image", "task": "shapes", "device": "cpu"}, '
    '{"name": "video", "task": "motion", "device": "cpu"}]'
)


def test_one_copd_cycle_text_hub_with_image_and_video_branches(tiny_vlm_dir, tmp_path):
    from test_engine import Recorder

    from copd.train.algorithms.copd import train
    from copd.train.world import World

    cfg = _vlm_cfg(tiny_vlm_dir, [THREE, "topology.kind=hub", "topology.hub=text"])
    rec = Recorder()
    world = World.build(cfg, rec)
    _nudge(world.branch("text"))
    lm = {n for n, _ in world.base.module.named_parameters() if "language_model" in n}
    before = {b.name: {n: p.detach().clone() for n, p in b.view.module.named_parameters()
                       if n in lm} for b in world.branches}  # fmt: skip
    scores = train(world, tmp_path)
    for b in world.branches:
        params = dict(b.view.module.named_parameters())
        assert any(not torch.equal(p0, params[n].detach()) for n, p0 in before[b.name].items())
    keys = rec.keys()
    assert {f"branch/{b}/reward/mean" for b in ("text", "image", "video")} <= keys
    # hub: the text branch teaches both modalities and learns from both
    assert {"branch/video/opd/adv_mean/text", "branch/image/opd/adv_mean/text"} <= keys
    assert {"branch/text/opd/adv_mean/video", "branch/text/opd/adv_mean/image"} <= keys
    assert "branch/video/opd/adv_mean/image" not in keys
    assert set(scores) == {"text", "image", "video", "merged"}
    assert all(0.0 <= s["overall"] <= 1.0 for s in scores.values())


def test_lora_branches_on_a_vlm_adapt_the_language_model_only(tiny_vlm_dir, tmp_path):
    from copd.train.algorithms.copd import train
    from copd.train.results import merged_model
    from copd.train.world import World

    pair = (
        'branches=[{"name": "text", "task": "add", "device": "cpu"}, '
        '{"name": "video", "task": "motion", "device": "cpu"}]'
    )
    cfg = _vlm_cfg(tiny_vlm_dir, [pair, "model.branch_kind=lora", "model.lora.r=4"])
    world = World.build(cfg)
    peft_model = world.base.module
    lora_names = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert lora_names and all(".language_model." in n for n in lora_names)
    wrapped = {n.rsplit(".", 1)[-1] for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(cfg.model.lora.target_modules)
    frozen = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n}
    _nudge(world.branch("text"))
    adapters = {b.name: {k: v.clone() for k, v in b.trainable_state().items()}
                for b in world.branches}  # fmt: skip
    scores = train(world, tmp_path)
    for n, p in peft_model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(frozen[n], p.detach()), f"{n} changed (not a LoRA weight)"
    for b in world.branches:
        after = b.trainable_state()
        assert any(not torch.equal(adapters[b.name][k], after[k]) for k in after), b.name
    assert set(scores) == {"text", "video", "merged"}
    merged = merged_model(world)
    assert type(merged).__name__ == "LlavaForConditionalGeneration"
    assert (tmp_path / "merged" / "processor_config.json").exists()
    # the merge changed language-model weights and left the vision tower as it was
    base = {k.replace(".base_layer.", "."): v for k, v in peft_model.get_base_model()
            .state_dict().items() if "lora_" not in k}  # fmt: skip
    msd = merged.state_dict()
    shared = [k for k in msd if k in base]
    assert all(torch.equal(msd[k], base[k]) for k in shared if "vision_tower" in k)
    assert any(not torch.equal(msd[k], base[k]) for k in shared if "language_model" in k)


def test_mopd_routes_image_and_video_prompts_with_their_vision_inputs(tiny_vlm_dir, tmp_path):
    from test_engine import Recorder

    from copd.policy.rollout import completion_logprobs
    from copd.train.algorithms import run
    from copd.train.algorithms.mopd import routed_logp
    from copd.train.world import World

    cfg = _vlm_cfg(tiny_vlm_dir, [THREE, "method=mopd", "grpo.prompts_per_step=3"])
    world = World.build(cfg)
    # routing: every row scored by its own teacher equals that teacher on the whole batch
    examples = [t.sample(random.Random(0), 1)[0] for t in world.tasks.values()]
    teacher_of = {"add": "text", "shapes": "image", "motion": "video"}
    with torch.no_grad():
        for i, b in enumerate(world.branches[:3]):  # make the three teachers differ
            next(p for n, p in b.view.module.named_parameters() if "lm_head" in n or
                 "embed_tokens" in n).add_(0.01 * (i + 1))  # fmt: skip
        batch = world.rollout(world.branch("mopd").view, examples, 2)
        assert batch.vision.images_P == (0, 1, 3)  # add: none; shapes: 1; motion: 3 frames
        routed = routed_logp(
            batch,
            teacher_of,
            lambda t, sub: completion_logprobs(world.branch(t).view.module, sub, 1.0),  # fmt: skip
        )
        m = batch.completion_mask_B_T.bool()
        for t, name in enumerate(("text", "image", "video")):
            full = completion_logprobs(world.branch(name).view.module, batch, 1.0)
            rows = slice(2 * t, 2 * t + 2)
            assert torch.allclose(routed.logp[rows][m[rows]], full[rows][m[rows]], atol=1e-5)
    world.logger = rec = Recorder()
    student = {
        n: p.detach().clone() for n, p in world.branch("mopd").view.module.named_parameters()
    }
    scores = run(world, tmp_path)
    assert {"text", "image", "video", "mopd"} <= set(scores)
    keys = rec.keys()
    assert {f"branch/mopd/reward_on/{d}" for d in teacher_of} <= keys
    changed = [
        n for n, p in world.branch("mopd").view.module.named_parameters()
        if not torch.equal(student[n], p.detach())
    ]  # fmt: skip
    assert any(".language_model." in n for n in changed)


def test_paper_vl_video_preset_options_load_a_frame_directory_dataset(tmp_path):
    from copd.spec import presets

    _write_frames(tmp_path / "clips" / "c0", [f"{i}.png" for i in range(12)])
    data = tmp_path / "video.jsonl"
    rows = [{"question": f"what moves in clip {i}?", "answer": "1", "video": "clips/c0"}
            for i in range(4)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = dict(presets.get("paper-vl-video").task_options["dataset#video"], path=str(data))
    task = get_task("dataset#video", **{**opts, "eval_fraction": 0.0})
    (video,) = task.train[0].videos
    assert video.max_frames == 8 and len(video.frames()) == 8
    assert task.train[0].prompt.startswith("what moves in clip")


def unreadable_video_task(path: str):
    """A custom task (`module:factory`) whose prompts carry a video file."""
    from copd.tasks.base import Example, Task

    class _Task(Task):
        name = "clips"
        alphabet = "whatpens0123456789? x"

        def sample(self, rng, n):
            return [Example(f"what happens {i}?", "x", "clips", videos=(path,)) for i in range(n)]

        def eval_examples(self, n):
            return self.sample(None, n)

    return _Task()


def test_world_build_rejects_a_custom_task_video_it_cannot_read(tmp_path, monkeypatch, tiny_cfg):
    from copd.spec import ConfigError
    from copd.train.world import World

    monkeypatch.setattr(M, "DECODERS", ("copd_no_such_decoder",))
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"\x00" * 64)
    cfg = tiny_cfg(
        "demo",
        'branches=[{"name": "a", "task": "test_video:unreadable_video_task"}, '
        '{"name": "b", "task": "add"}]',
        f'task_options={{"test_video:unreadable_video_task": {{"path": "{clip}"}}}}',
        "trust_task_code=true",  # a module:factory task: the opt-in
    )
    with pytest.raises(
        ConfigError, match=r"task test_video:unreadable_video_task: .*pip install av"
    ):
        World.build(cfg)
