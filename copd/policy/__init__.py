"""Policies as Hugging Face models: loading and branches (`models`), batched KV-cache
sampling (`sampler`), rollouts and scoring (`rollout`), vision-language prompts (`vlm`),
optional vLLM rollouts (`rollout_vllm`), the rollout batch (`batch`), chat templates
(`chat`) and forward helpers (`hf_cache`)."""
