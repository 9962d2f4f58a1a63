"""CUDA-only checks (marker `gpu`): skipped cleanly on machines without a CUDA device."""

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_sampling_on_cuda_with_cpu_rng_stream_is_deterministic(tiny_model_dir):
    from copd.policy.decoding import Decoding
    from copd.policy.models import load_policy
    from copd.policy.sampler import sample_tokens

    model, tok = load_policy(tiny_model_dir, device="cuda")
    enc = tok(["3+4=", "abc>"], return_tensors="pt", padding=True).to("cuda")
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(0)  # the checkpointed CPU stream
        runs.append(
            sample_tokens(
                model,
                enc["input_ids"],
                enc["attention_mask"],
                Decoding(temperature=1.0, max_new_tokens=4),
                eos_id=tok.eos_token_id,
                pad_id=tok.pad_token_id,
                generator=gen,
            )
        )
    assert runs[0].device.type == "cuda"
    assert torch.equal(runs[0], runs[1])


def test_full_branches_go_one_per_gpu(tiny_cfg):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    from copd.train.world import World

    world = World.build(tiny_cfg("demo"))
    assert [b.device.index for b in world.branches] == [0, 1]
