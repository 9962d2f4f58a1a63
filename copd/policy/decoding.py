"""How a completion is decoded, as one frozen value: the settings every sampler takes.

    decoding = Decoding.from_config(cfg.sampling)      # World.build: the training rollouts
    batch = sample_rollouts(model, tok, examples, decoding, group_size=8, generator=gen)
    score = accuracy(model, tok, task, examples, Decoding(max_new_tokens=8, greedy=True))

The built-in sampler (copd/policy/sampler.py), the image/video path (copd/policy/vlm.py),
the rollout entry points (copd/policy/rollout.py) and the vLLM engine
(copd/policy/rollout_vllm.py) all take this value instead of loose keywords, so the
decoding of a run is built once with the world (training rollouts) and once for evaluation
(`copd.train.settings.EvalSettings`), and a reader sees in one place what a sampler obeys.
What varies per call (the random stream, the device, the group size, whether the logits
are kept) stays an argument of the call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from copd.spec import SamplingConfig


@dataclass(frozen=True)
class Decoding:
    """`temperature` divides the logits before the softmax draw; `top_p` keeps the
    smallest set of tokens holding that much probability (1.0: the whole vocabulary);
    `max_new_tokens` caps a completion; `greedy` takes the most likely token at every step
    instead (no draw: the temperature and top-p are then unused)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8
    greedy: bool = False

    @classmethod
    def from_config(cls, sampling: SamplingConfig) -> Decoding:
        """The training rollouts' decoding: the config's `sampling` section."""
        return cls(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
        )

    def as_greedy(self) -> Decoding:
        """The same length cap, decoded greedily."""
        return replace(self, greedy=True)
