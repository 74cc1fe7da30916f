"""`POST /predict` for text generation: prompts in, sampled continuations out (`kiln serve`).

Request: `{"instances": [{"prompt": "Why did the ", "max_new_tokens": 80, "temperature": 0.8,
"seed": 1}], "model": "champion"}`; response: `{"model_version": "v0001", "generations":
[{"prompt": ..., "text": ...}]}` where `text` is the continuation (without the prompt), ended by
the model's end-of-text or by max_new_tokens.

The prompt is normalised and tokenised as training did (models/card.json `preprocessing`, the code
of `tasks.types.text_generation.sampling`); sampling is numpy over `loaded.run` (ids -> logits), so
the ONNX and the torch backends share it and nothing here imports torch. With a seed, a request is
deterministic, and equals the evaluate stage's sample 0 for that prompt and seed (up to float
rounding between backends); without one, each request draws fresh randomness."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from serve.schemas import Request, Strict, TaskSpec
from tasks.types.text_generation.sampling import Tokenizer, generate, prompt_ids

MAX_PROMPT_CHARS = 2000  # characters; the model sees only its last block_size tokens anyway
MAX_NEW_TOKENS = 1000  # tokens per instance: each is one forward pass of up to block_size ids
MAX_INSTANCES = 64  # per request, below serve.max_batch: generation is ~max_new_tokens passes


class GenerationInstance(Strict):
    prompt: str = Field(
        max_length=MAX_PROMPT_CHARS,
        description=f"Text to continue (may be empty: a text from scratch), at most "
        f"{MAX_PROMPT_CHARS} characters; normalised as the training texts were.",
    )
    max_new_tokens: Annotated[int, Field(strict=True, ge=1, le=MAX_NEW_TOKENS)] = Field(
        120,
        description=f"Tokens (bytes for the byte tokenizer) generated at most, 1 to "
        f"{MAX_NEW_TOKENS}; the model may end the text sooner.",
    )
    temperature: Annotated[float, Field(strict=True, gt=0.0, le=10.0, allow_inf_nan=False)] = Field(
        0.8, description="Softmax temperature, > 0 and at most 10; lower is more predictable."
    )
    seed: Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)] | None = Field(
        None, description="Sampling seed (0 to 2^63-1): same seed, same text; none: random."
    )


class Generation(Strict):
    prompt: str = Field(description="The prompt as sent.")
    text: str = Field(description="The generated continuation (without the prompt).")


class TextGenerationResponse(Strict):
    task: Literal["text_generation"] = "text_generation"
    model_version: str = Field(description="The registry version that generated the texts.")
    generations: list[Generation] = Field(description="One per instance, in order.")


def text_generation_request(max_batch: int) -> type[Request]:
    most = min(max_batch, MAX_INSTANCES)

    class TextGenerationRequest(Request):
        """A batch of prompts (a single prompt is a batch of one)."""

        task: Literal["text_generation"] = "text_generation"
        instances: list[GenerationInstance] = Field(
            min_length=1, max_length=most, description=f"1 to {most} prompts."
        )

    return TextGenerationRequest


def _rng(seed: int | None) -> np.random.Generator:
    # [seed, 0]: the seeding of the evaluate stage's sample 0 (tasks.types.text_generation.stages).
    return np.random.default_rng(None if seed is None else [seed, 0])


def predict(request: Any, loaded: Any) -> TextGenerationResponse:
    card = loaded.card
    tokenizer = Tokenizer.from_spec(card["preprocessing"]["tokenizer"])
    generations = []
    for instance in request.instances:  # one at a time: prompts differ in length
        (out,) = generate(
            loaded.run,
            prompt_ids(instance.prompt, card),
            [_rng(instance.seed)],
            context=int(card["config"]["block_size"]),
            eot_id=tokenizer.eot_id,
            max_new_tokens=instance.max_new_tokens,
            temperature=instance.temperature,
        )
        generations.append(Generation(prompt=instance.prompt, text=tokenizer.decode(out.ids)))
    return TextGenerationResponse(model_version=loaded.version, generations=generations)


SPEC = TaskSpec(text_generation_request, TextGenerationResponse, predict)


def spec() -> TaskSpec:
    return SPEC
