"""Prompt rendering: chat templates for instruction models, the plain prompt otherwise.

    from copd.policy.chat import render_prompt, uses_chat_template
    text = render_prompt(tokenizer, example)     # what the policy sees before its answer
    ids = tokenizer(text, add_special_tokens=not uses_chat_template(tokenizer))

An instruction-tuned tokenizer carries a Jinja chat template; the example becomes the
messages [system?, user] rendered with `add_generation_prompt=True`, so the text ends where
the assistant's answer starts. The rendered text already holds the template's special
tokens (a bos, role markers), so it must be encoded with `add_special_tokens=False`: the
tokenizer's own post-processor would otherwise add a second bos in front.

A tokenizer without a template (the built-in character tokenizer) sees the bare prompt,
with the system prompt, if any, in front of it on its own paragraph; it is encoded with
the tokenizer's special tokens as usual.
"""

from __future__ import annotations

from copd.tasks import Example


def uses_chat_template(tokenizer) -> bool:
    """Whether `tokenizer` has a chat template (and prompts are rendered through it)."""
    return bool(getattr(tokenizer, "chat_template", None))


def messages_of(example: Example) -> list[dict[str, str]]:
    """The chat messages for one example: an optional system message, then the user turn."""
    msgs = [{"role": "system", "content": example.system}] if example.system else []
    return [*msgs, {"role": "user", "content": example.prompt}]


def render_prompt(tokenizer, example: Example) -> str:
    """The text the policy is conditioned on for `example` (see the module docstring)."""
    if not uses_chat_template(tokenizer):
        return f"{example.system}\n\n{example.prompt}" if example.system else example.prompt
    msgs = messages_of(example)
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    except Exception as e:
        # Some templates (Gemma's, for one) reject a system role: fold it into the user turn.
        if not example.system or "system" not in str(e).lower():
            raise
        merged = Example(f"{example.system}\n\n{example.prompt}", example.answer, example.domain)
        text = tokenizer.apply_chat_template(
            messages_of(merged), tokenize=False, add_generation_prompt=True
        )
    if not isinstance(text, str):  # a tokenizer that ignores tokenize=False
        raise TypeError(
            f"{type(tokenizer).__name__}.apply_chat_template returned {type(text).__name__}, "
            "not text; update transformers or remove the tokenizer's chat_template"
        )
    return text


def render_prompts(tokenizer, examples: list[Example]) -> tuple[list[str], bool]:
    """Rendered prompts and whether they hold the template's special tokens already (then
    encode them with `add_special_tokens=False`)."""
    return [render_prompt(tokenizer, ex) for ex in examples], uses_chat_template(tokenizer)
