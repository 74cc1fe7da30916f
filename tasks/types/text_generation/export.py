"""Text generation's ONNX export and parity check (the core of its `export_stage`).

`export_onnx` turns the char_transformer or char_lstm of models/ into ONNX bytes of int64 ids
(batch, seq <= max_len) -> float32 logits (batch, seq, vocab), batch and seq dynamic, and checks
them against PyTorch on fixed batches (`parity_batches`: test blocks, random ids, a short
prompt-like sequence) within `export.atol` before the stage writes anything; it returns the bytes
and export/onnx.json. torch, onnx and onnxruntime are imported inside the functions: only this
stage needs them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from tasks.core.params import ExportParams
    from tasks.types.text_generation.sampling import Tokenizer

INPUT, OUTPUT = "ids", "logits"


def to_onnx(model: nn.Module, card: dict[str, Any], opset: int) -> bytes:
    """ONNX bytes of ids (batch, seq) -> logits (batch, seq, vocab), batch and seq dynamic."""
    import io  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    import onnx  # noqa: PLC0415 (only this stage needs the onnx package)
    import torch  # noqa: PLC0415

    example = torch.zeros(2, min(8, card["config"]["block_size"]), dtype=torch.int64)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # legacy exporter on purpose; traced shape checks are fine
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 1: "seq"}, OUTPUT: {0: "batch", 1: "seq"}},
        )
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    return buffer.getvalue()


def parity_batches(test_blocks: np.ndarray, n: int, vocab: int, max_len: int) -> list[np.ndarray]:
    """The fixed batches: the first n full test blocks (max_len ids), seeded random ids of full
    length, and a 2 x 5 batch (a short sequence, as a prompt starts) to exercise the dynamic seq."""
    rng = np.random.default_rng(0)
    batches = [test_blocks[:n, :-1]] if len(test_blocks) else []
    batches.append(rng.integers(0, vocab, (2, max_len), dtype=np.int64))
    batches.append(rng.integers(0, vocab, (2, min(5, max_len)), dtype=np.int64))
    return batches


def check_parity(
    blob: bytes, model: nn.Module, batches: list[np.ndarray], atol: float
) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch logits on each batch; raises ExportError beyond `atol`.

    Only the logit difference decides: with 257 ids per position an argmax can flip between two
    logits closer than atol, which is no difference in the model; the agreement is reported."""
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from tasks.core.models import predict_logits  # noqa: PLC0415
    from tasks.core.onnx_export import ExportError  # noqa: PLC0415

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    diff, agree, positions = 0.0, 0, 0
    for batch in batches:
        got = session.run([OUTPUT], {INPUT: batch})[0]
        want = predict_logits(model.cpu(), torch.from_numpy(batch)).numpy()
        if got.shape != want.shape:
            raise ExportError(f"ONNX logits have shape {got.shape}, PyTorch {want.shape}")
        diff = max(diff, float(np.abs(got - want).max()))
        agree += int((got.argmax(-1) == want.argmax(-1)).sum())
        positions += got.shape[0] * got.shape[1]
    if not diff <= atol:  # `not <=`: a NaN difference fails too
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree on the parity batches: max |logit diff| "
            f"{diff:.3g} > export.atol {atol:g}"
        )
    return {
        "n": sum(len(b) for b in batches),
        "seq_lengths": sorted({b.shape[1] for b in batches}),
        "max_abs_diff": diff,
        "atol": atol,
        "argmax_agree": agree,
        "positions": positions,
    }


def export_onnx(
    model: nn.Module,
    card: dict[str, Any],
    tokenizer: Tokenizer,
    test_blocks: np.ndarray,
    cfg: ExportParams,
) -> tuple[bytes, dict[str, Any]]:
    """(ONNX bytes, export/onnx.json) of `model`, checked by `check_parity`; raises ExportError."""
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    max_len, vocab = card["config"]["block_size"], tokenizer.vocab_size
    blob = to_onnx(model, card, cfg.opset)
    batches = parity_batches(test_blocks, cfg.parity_batch, vocab, max_len)
    parity = check_parity(blob, model, batches, cfg.atol)
    info = {
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_sha256": card["weights_sha256"],
        "opset": cfg.opset,
        "input": {"name": INPUT, "dtype": "int64", "shape": ["batch", "seq"], "max_seq": max_len},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", "seq", vocab]},
        "classes": [],
        "tokenizer": tokenizer.spec(),
        "parity": parity,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    return blob, info
