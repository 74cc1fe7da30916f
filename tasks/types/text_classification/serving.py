"""`POST /predict` for text classification: texts in, class probabilities out (`kiln serve`).

Request: `{"instances": [{"text": "Warum ..."}], "model": "champion"}`; response like image
classification's: `{"task": "text_classification", "model_version": "v0001", "predictions":
[{"label": "de", "index": 1, "probability": 0.97, "probabilities": [...]}]}`.

Each text is normalised and tokenised exactly as training did: the card's `preprocessing.text`
through `tasks.core.text_norm.normalise_text`, then the card's tokenizer (`tasks.core.tokenizers`:
char vocabulary from the card, or the minilm `tokenizer.json` registered with the version and
checked against its sha256). Plain Python + numpy: nothing here imports torch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from serve.schemas import ClassPrediction, Request, Strict, TaskSpec, class_predictions
from tasks.core import registry
from tasks.core.tokenizers import Tokenizer, encode_texts, tokenizer_from_spec

MAX_TEXT_CHARS = 10_000  # characters per text; models read at most a few hundred tokens


class TextInstance(Strict):
    text: str = Field(
        max_length=MAX_TEXT_CHARS,
        description=f"The text to classify, at most {MAX_TEXT_CHARS} characters; normalised as "
        "the training texts were, then cut to the model's max_len tokens.",
    )


class TextClassificationResponse(Strict):
    task: Literal["text_classification"] = "text_classification"
    model_version: str = Field(description="The registry version that made the predictions.")
    predictions: list[ClassPrediction] = Field(description="One per instance, in order.")


def text_classification_request(max_batch: int) -> type[Request]:
    class TextClassificationRequest(Request):
        """A batch of texts (a single text is a batch of one)."""

        task: Literal["text_classification"] = "text_classification"
        instances: list[TextInstance] = Field(
            min_length=1, max_length=max_batch, description=f"1 to {max_batch} texts."
        )

    return TextClassificationRequest


_tokenizers: dict[tuple[str, str], Tokenizer] = {}  # (registry root, version) -> tokenizer
_lock = threading.Lock()


def _tokenizer(loaded: Any) -> Tokenizer:
    """The version's tokenizer, built once; its extra file read hash-checked from the registry."""
    root = Path(loaded.root)
    key = (str(root.resolve()), loaded.version)
    with _lock:
        if key not in _tokenizers:
            spec = loaded.card["preprocessing"]["tokenizer"]
            files = {}
            if "file" in spec:
                files[spec["file"]] = registry.verified_bytes(root, loaded.version, spec["file"])
            _tokenizers[key] = tokenizer_from_spec(spec, files)
        return _tokenizers[key]


def predict(request: Any, loaded: Any) -> TextClassificationResponse:
    texts = [instance.text for instance in request.instances]
    ids = encode_texts(texts, loaded.card["preprocessing"], _tokenizer(loaded))
    logits = np.asarray(loaded.run(ids), dtype=np.float32)
    return TextClassificationResponse(
        model_version=loaded.version, predictions=class_predictions(logits, loaded.labels)
    )


SPEC = TaskSpec(text_classification_request, TextClassificationResponse, predict)


def spec() -> TaskSpec:
    return SPEC
