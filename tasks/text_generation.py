"""Text generation (`project.task: text_generation`): the stages of a byte- or character-level LM.

`python -m tasks.clean|train|evaluate|export` hand over here (tasks/task_types.py):

* clean: `tasks.text_clean.clean_texts_stage` (normalise, dedupe, split; no labels).
* train: the texts of the train split, each followed by an end-of-text id, become one id stream
  (`token_stream`), cut into blocks of `train.text.max_len + 1` ids (x = block[:-1], y =
  block[1:]): train blocks start every max_len / TRAIN_OFFSETS ids, val (and test) blocks every
  max_len ids, so each of their ids is a target exactly once; a `char_transformer`
  (tasks/models_seq.py, context = max_len) learns them through `tasks.engine.fit`.
  models/card.json holds the tokenizer and the text normalisation (`preprocessing`), so
  evaluation and serving encode exactly as training did.
* evaluate: test loss (nats per token; `val_loss`, the name promote compares), perplexity and
  bits per UTF-8 byte over every id of the test stream; samples from `evaluate.generate` in
  reports/evaluation/samples.md (to read) and samples.json.
* export: export/model.onnx, int64 ids (batch, seq <= max_len) -> float32 logits (batch, seq,
  vocab), written only after ONNX Runtime matches PyTorch within `export.atol`.

The tokenizer and the sampler are plain python/numpy and import no torch: `serve.text_generation`
uses them over either backend's `run(ids) -> logits`, and evaluate samples through the same code.
Sample k of a prompt draws from `numpy.random.default_rng([seed, k])`, so a sample is the same
whatever else is generated beside it (serving with seed s gives evaluate's sample 0 of seed s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.io import atomic_dir, write_bytes, write_json
from tasks.text_norm import normalise_text

if TYPE_CHECKING:
    from torch import nn

    from tasks.params import GenerateParams, Params, TextModelParams

logger = logging.getLogger("kiln.text_generation")

CLEAN_DIR, MODELS_DIR = Path("data/clean"), Path("models")
REPORTS_DIR, EVALUATION_DIR = Path("reports"), Path("reports/evaluation")
EXPORT_DIR, CHECKPOINTS_DIR = Path("export"), Path(".kiln/checkpoints")
ONNX_FILE, ONNX_CARD, INPUT, OUTPUT = "model.onnx", "onnx.json", "ids", "logits"
ARCHITECTURE = "char_transformer"
CHECKPOINT_FORMAT = 1  # bump when the stream, blocks or model input change meaning
# Overlapping train blocks: on the jokes (66 KB of train text, d_model 128, 4 layers, max_len 64),
# 4 offsets reached val loss 2.41 nats/token in 4 epochs where 1 offset needed 15 for 2.46.
TRAIN_OFFSETS = 4
EVAL_BLOCKS = 64  # blocks per forward pass when measuring the test loss: bounds memory only
SPLITS = ("train", "val", "test")
BYTE_EOT = 256  # byte tokenizer: ids 0..255 are the UTF-8 bytes, 256 ends a text
CHAR_EOT, CHAR_UNK = 0, 1  # char tokenizer: 0 ends a text, 1 any character not kept, 2.. chars


class TokenizerError(ValueError):
    """A tokenizer spec (models/card.json) is not one this code can rebuild."""


@dataclass(frozen=True)
class Tokenizer:
    """byte: UTF-8 bytes + end-of-text (257 ids, nothing to learn); char: the train split's most
    frequent characters + unknown + end-of-text (`train.text.vocab_size` ids at most)."""

    kind: str  # "byte" or "char"
    chars: tuple[str, ...] = ()  # char: id CHAR_UNK + 1 + i is chars[i]

    @property
    def eot_id(self) -> int:
        return BYTE_EOT if self.kind == "byte" else CHAR_EOT

    @property
    def vocab_size(self) -> int:
        return BYTE_EOT + 1 if self.kind == "byte" else CHAR_UNK + 1 + len(self.chars)

    def encode(self, text: str) -> list[int]:
        if self.kind == "byte":
            return list(text.encode("utf-8"))
        return [self._index.get(c, CHAR_UNK) for c in text]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars, CHAR_UNK + 1)}

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; end-of-text ids are dropped, broken UTF-8 and unknowns become U+FFFD."""
        ids = [int(i) for i in ids if int(i) != self.eot_id]
        if self.kind == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join("\ufffd" if i == CHAR_UNK else self.chars[i - CHAR_UNK - 1] for i in ids)

    def spec(self) -> dict[str, Any]:
        """What models/card.json stores (`preprocessing.tokenizer`)."""
        spec: dict[str, Any] = {"kind": self.kind, "vocab_size": self.vocab_size}
        spec["eot_id"] = self.eot_id
        if self.kind == "char":
            spec.update(unk_id=CHAR_UNK, chars=list(self.chars))
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Tokenizer:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind not in ("byte", "char"):
            raise TokenizerError(f"tokenizer kind {kind!r} is not 'byte' or 'char'")
        chars = spec.get("chars", [])
        if kind == "char" and not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise TokenizerError("tokenizer chars must be single characters")
        tokenizer = cls(kind, tuple(chars) if kind == "char" else ())
        if spec.get("vocab_size") != tokenizer.vocab_size or spec.get("eot_id") != tokenizer.eot_id:
            raise TokenizerError(
                f"tokenizer vocab_size {spec.get('vocab_size')} / eot_id {spec.get('eot_id')} "
                f"disagree with its {kind} vocabulary ({tokenizer.vocab_size} / {tokenizer.eot_id})"
            )
        return tokenizer


def fit_tokenizer(cfg: TextModelParams, train_texts: list[str]) -> Tokenizer:
    """`train.text.tokenizer` for the train split (char: its vocab_size - 2 commonest chars)."""
    if cfg.tokenizer == "byte":
        return Tokenizer("byte")
    if cfg.tokenizer != "char":
        raise TokenizerError(
            f"train.text.tokenizer {cfg.tokenizer!r}: text_generation takes byte or char"
        )
    counts = Counter(c for text in train_texts for c in text)
    ranked = sorted(counts, key=lambda c: (-counts[c], c))  # ties by code point: deterministic
    return Tokenizer("char", tuple(ranked[: cfg.vocab_size - CHAR_UNK - 1]))


def token_stream(texts: list[str], tokenizer: Tokenizer) -> np.ndarray:
    """int64 ids: end-of-text, then each text followed by end-of-text (a text starts after one,
    as a generation does)."""
    ids = [tokenizer.eot_id]
    for text in texts:
        ids += tokenizer.encode(text)
        ids.append(tokenizer.eot_id)
    return np.asarray(ids, dtype=np.int64)


def blocks(stream: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(full, tail): rows of max_len + 1 ids starting every max_len ids (each id after the first
    is a target exactly once), and the shorter rest (one row, or none)."""
    n_full = (len(stream) - 1) // max_len
    starts = np.arange(n_full)[:, None] * max_len
    full = stream[starts + np.arange(max_len + 1)] if n_full else stream[:0].reshape(0, max_len + 1)
    rest = stream[n_full * max_len :]
    return full, (rest[None] if len(rest) > 1 else rest[:0].reshape(0, 0))


def train_blocks(stream: np.ndarray, max_len: int) -> np.ndarray:
    """Rows of max_len + 1 ids starting every max_len // TRAIN_OFFSETS ids: an epoch shows each
    id at TRAIN_OFFSETS places in the context, not at one fixed place a small model memorises."""
    stride = max(1, max_len // TRAIN_OFFSETS)
    starts = np.arange(0, max(0, len(stream) - max_len), stride)
    return stream[starts[:, None] + np.arange(max_len + 1)].reshape(len(starts), max_len + 1)


def prompt_ids(prompt: str, card: dict[str, Any]) -> list[int]:
    """The ids a prompt continues from: end-of-text, then the prompt normalised as clean did
    (a trailing space survives: "Why did the " asks for the next word, not the end of one)."""
    prep = card["preprocessing"]
    tokenizer = Tokenizer.from_spec(prep["tokenizer"])
    text = normalise_text(prompt, SimpleNamespace(**prep["text"])) if prompt else ""
    if prep["text"].get("collapse_whitespace") and text and prompt[-1:].isspace():
        text += " "
    return [tokenizer.eot_id, *tokenizer.encode(text)]


def sample_token(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One id from softmax(logits / temperature), float64, by inverting the CDF at one uniform."""
    z = logits.astype(np.float64) / temperature
    cdf = np.cumsum(np.exp(z - z.max()))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


@dataclass(frozen=True)
class Generation:
    ids: list[int]  # the new ids, without the end-of-text that stopped it
    ended: bool  # True: the model ended the text; False: max_new_tokens was reached


def generate(  # noqa: PLR0913 (the sampling settings, each named at the call)
    run: Callable[[np.ndarray], np.ndarray],
    start: list[int],
    rngs: list[np.random.Generator],
    *,
    context: int,
    eot_id: int,
    max_new_tokens: int,
    temperature: float,
) -> list[Generation]:
    """One continuation of `start` per rng. `run`: int64 ids (n, t <= context) -> logits (n, t,
    vocab), an ONNX session or the PyTorch model; the unfinished rows run together each step."""
    seqs = [list(start) for _ in rngs]
    new: list[list[int]] = [[] for _ in rngs]
    ended = [False] * len(rngs)
    for _ in range(max_new_tokens):
        live = [i for i, done in enumerate(ended) if not done]
        if not live:
            break
        window = np.asarray([seqs[i][-context:] for i in live], dtype=np.int64)
        last = np.asarray(run(window))[:, -1]
        for row, i in enumerate(live):
            token = sample_token(last[row], temperature, rngs[i])
            if token == eot_id:
                ended[i] = True
            else:
                seqs[i].append(token)
                new[i].append(token)
    return [Generation(ids, done) for ids, done in zip(new, ended, strict=True)]


# --- reading data/clean ---------------------------------------------------------------------


def read_texts(clean_dir: Path | str = CLEAN_DIR) -> tuple[dict[str, list[str]], str]:
    """({split: texts in key order}, data version: sha256 of items.parquet)."""
    import pandas as pd  # noqa: PLC0415 (serving imports this module and needs no pandas)

    from tasks.dataset import DataError  # noqa: PLC0415

    path = Path(clean_dir) / "items.parquet"
    try:
        items = pd.read_parquet(path, columns=["key", "text", "split"])
        version = hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read {path} (columns key, text, split): {exc}") from None
    items = items.sort_values("key", kind="stable")
    texts = {s: items.loc[items["split"] == s, "text"].astype(str).tolist() for s in SPLITS}
    return texts, version


# --- train ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMTrainResult:
    """What `tasks.train._write_live` logs (history rows: train_loss, val_loss, val_ppl)."""

    model: nn.Module
    config: dict[str, Any]
    checkpoint_path: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_ppl: float
    history: list[dict[str, float]]


def _split_blocks(texts: list[str], tokenizer: Tokenizer, max_len: int, split: str) -> np.ndarray:
    """train: overlapping blocks (train_blocks); val: each id a target once, as test is."""
    from tasks.dataset import DataError  # noqa: PLC0415

    stream = token_stream(texts, tokenizer)
    full = train_blocks(stream, max_len) if split == "train" else blocks(stream, max_len)[0]
    if not len(full):
        raise DataError(
            f"the {split} split has {len(texts)} texts, {len(stream)} tokens: fewer than the "
            f"{max_len + 1} of one block (train.text.max_len {max_len}); crawl more or lower "
            "train.text.max_len"
        )
    return full


def checkpoint_key(params: Params, data_version: str) -> str:
    spec = {
        "format": CHECKPOINT_FORMAT,
        "task": "text_generation",
        "train": params.train.model_dump(mode="json"),
        "data_version": data_version,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def train_lm(
    params: Params, texts: dict[str, list[str]], tokenizer: Tokenizer, checkpoint_path: Path
) -> LMTrainResult:
    """Train, or resume from `checkpoint_path`, on the train/val blocks; writes checkpoints."""
    import torch  # noqa: PLC0415 (see the module docstring: serving imports no torch)

    from tasks.engine import TaskData, fit, pick_device  # noqa: PLC0415
    from tasks.models import build_model  # noqa: PLC0415
    from tasks.objectives import OBJECTIVES  # noqa: PLC0415
    from tasks.train import engine_config  # noqa: PLC0415

    cfg, max_len = params.train, params.train.text.max_len
    train = torch.from_numpy(_split_blocks(texts["train"], tokenizer, max_len, "train"))
    val = torch.from_numpy(_split_blocks(texts["val"], tokenizer, max_len, "val"))
    config = {
        "vocab_size": tokenizer.vocab_size,
        "block_size": max_len,
        "d_model": cfg.d_model,
        "n_heads": cfg.heads,
        "n_layers": cfg.layers,
        "dropout": cfg.dropout,
    }
    logger.info(
        f"{ARCHITECTURE} {config}: {tokenizer.kind} tokenizer, {len(train)} train and {len(val)} "
        f"val blocks of {max_len} tokens ({len(texts['train'])} / {len(texts['val'])} texts)"
    )
    torch.manual_seed(cfg.seed)
    model = build_model(ARCHITECTURE, config)
    device = pick_device(cfg.device)
    data = TaskData(train[:, :-1], train[:, 1:], val[:, :-1], val[:, 1:])
    loss_fn, metric_fn = OBJECTIVES["text_generation"]
    run = fit(
        model,
        data,
        loss_fn,
        metric_fn,
        cfg=engine_config(cfg, device),
        checkpoint_path=checkpoint_path,
    )
    return LMTrainResult(
        run.model,
        config,
        checkpoint_path,
        run.epochs_run,
        run.best_epoch,
        run.best["val_loss"],
        run.best["val_ppl"],
        run.history,
    )


def train_stage(params: Params) -> int:
    from tasks.dataset import DataError  # noqa: PLC0415
    from tasks.engine import TrainError  # noqa: PLC0415
    from tasks.models import ModelError, save_model  # noqa: PLC0415
    from tasks.train import REPORTS_DIR as TRAIN_REPORTS  # noqa: PLC0415
    from tasks.train import _write_live  # noqa: PLC0415  # the DVCLive writer of every task

    try:
        texts, version = read_texts(CLEAN_DIR)
        tokenizer = fit_tokenizer(params.train.text, texts["train"])
        path = CHECKPOINTS_DIR / checkpoint_key(params, version)
        result = train_lm(params, texts, tokenizer, path)
    except (DataError, TrainError, ModelError, TokenizerError) as exc:
        logger.error("train failed: %s", exc)
        return 1
    card = {
        "task": "text_generation",
        "architecture": ARCHITECTURE,
        "config": result.config,
        "classes": [],
        "preprocessing": {
            "tokenizer": tokenizer.spec(),
            "text": params.clean.text.model_dump(mode="json"),  # prompts are normalised alike
        },
        "data_version": version,
        "train_params": params.train.model_dump(mode="json"),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "best_val_ppl": result.best_val_ppl,
    }
    with atomic_dir(MODELS_DIR) as tmp:
        card = save_model(result.model, tmp, card)
    _write_live(result, TRAIN_REPORTS)
    shutil.rmtree(result.checkpoint_path, ignore_errors=True)  # done: the next run starts fresh
    logger.info(
        f"wrote {MODELS_DIR} (weights sha256 {card['weights_sha256'][:12]}…): best epoch "
        f"{result.best_epoch}, val loss {result.best_val_loss:.4f} nats/token, val perplexity "
        f"{result.best_val_ppl:.3f}"
    )
    return 0


# --- evaluate ---------------------------------------------------------------------------------


def _load(model_dir: Path | str) -> tuple[nn.Module, dict[str, Any], Tokenizer]:
    from tasks.models import ModelError, load_model  # noqa: PLC0415

    model, card = load_model(model_dir)
    if card["architecture"] != ARCHITECTURE:
        raise ModelError(
            f"{model_dir}/card.json architecture {card['architecture']!r} is not {ARCHITECTURE!r}"
        )
    try:
        tokenizer = Tokenizer.from_spec(card["preprocessing"]["tokenizer"])
    except (KeyError, TypeError, TokenizerError) as exc:
        raise ModelError(f"{model_dir}/card.json preprocessing.tokenizer: {exc}") from None
    if tokenizer.vocab_size != card["config"]["vocab_size"]:
        raise ModelError(
            f"{model_dir}/card.json config.vocab_size {card['config']['vocab_size']} but its "
            f"tokenizer has {tokenizer.vocab_size} ids"
        )
    return model, card, tokenizer


def stream_loss(model: nn.Module, stream: np.ndarray, max_len: int) -> tuple[float, int]:
    """(total nats, ids predicted) of next-id prediction over the whole stream."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415, N812

    from tasks.models import pick_device, predict_logits  # noqa: PLC0415

    device = pick_device("auto")
    model = model.to(device)
    full, tail = blocks(stream, max_len)
    total, count = 0.0, 0
    chunks = [full[i : i + EVAL_BLOCKS] for i in range(0, len(full), EVAL_BLOCKS)]
    for chunk in [*chunks, tail] if len(tail) else chunks:
        ids = torch.from_numpy(chunk).to(device)
        logits = predict_logits(model, ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
        total, count = total + float(loss), count + ids[:, 1:].numel()
    return total, count


def measure(model: nn.Module, card: dict[str, Any], tokenizer: Tokenizer) -> dict[str, Any]:
    """val_loss (the test loss, nats per token), perplexity, bits_per_byte, n_test (test ids)
    and n_test_texts on the current data/clean test split."""
    from tasks.dataset import DataError  # noqa: PLC0415

    texts = read_texts(CLEAN_DIR)[0]["test"]
    if not texts:
        raise DataError(f"{CLEAN_DIR}/items.parquet has no test texts")
    total, count = stream_loss(model, token_stream(texts, tokenizer), card["config"]["block_size"])
    # Each end-of-text counts as one byte, like the newline a plain-text file would hold.
    n_bytes = sum(len(t.encode("utf-8")) for t in texts) + len(texts)
    loss = total / count
    return {
        "val_loss": round(loss, 6),
        "perplexity": round(math.exp(min(loss, 50.0)), 6),  # cap: exp(50) ~ 5e21
        "bits_per_byte": round(total / math.log(2) / n_bytes, 6),
        "n_test": count,
        "n_test_texts": len(texts),
    }


def test_metrics(model_dir: Path | str, params: Params) -> dict[str, Any]:  # noqa: ARG001
    """`measure` of the model in `model_dir` (promote re-measures the champion with it)."""
    return measure(*_load(model_dir))


def _runner(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    import torch  # noqa: PLC0415

    from tasks.models import predict_logits  # noqa: PLC0415

    model = model.cpu()  # on the CPU in float32, as ONNX Runtime serves it: the same samples
    return lambda ids: predict_logits(model, torch.from_numpy(np.asarray(ids, np.int64))).numpy()


def torch_runner(version_dir: Path | str) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch twin of export/model.onnx: int64 ids (n, t) -> float32 logits (n, t, vocab)."""
    return _runner(_load(version_dir)[0])


def sample_generations(
    run: Callable[[np.ndarray], np.ndarray], card: dict[str, Any], cfg: GenerateParams
) -> list[dict[str, Any]]:
    """cfg.n_samples continuations of each of cfg.prompts; deterministic for cfg.seed."""
    tokenizer = Tokenizer.from_spec(card["preprocessing"]["tokenizer"])
    samples = []
    for prompt in cfg.prompts:
        rngs = [np.random.default_rng([cfg.seed, k]) for k in range(cfg.n_samples)]
        outs = generate(
            run,
            prompt_ids(prompt, card),
            rngs,
            context=card["config"]["block_size"],
            eot_id=tokenizer.eot_id,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
        )
        for k, out in enumerate(outs):
            samples.append(
                {
                    "prompt": prompt,
                    "sample": k,
                    "seed": cfg.seed,
                    "temperature": cfg.temperature,
                    "text": tokenizer.decode(out.ids),
                    "n_tokens": len(out.ids),
                    "ended": out.ended,
                }
            )
    return samples


def samples_markdown(samples: list[dict[str, Any]], metrics: dict[str, Any]) -> str:
    lines = [
        "# Sample generations",
        "",
        f"Test perplexity {metrics['perplexity']:.3f}, {metrics['bits_per_byte']:.3f} bits per "
        f"byte over {metrics['n_test']} tokens of {metrics['n_test_texts']} test texts.",
        "Each sample continues its prompt; ⏹ marks where the model ended the text, … where "
        "`evaluate.generate.max_new_tokens` cut it.",
    ]
    for s in samples:
        if s["sample"] == 0:
            lines += ["", f"## Prompt: {json.dumps(s['prompt'], ensure_ascii=False)}", ""]
        end = " ⏹" if s["ended"] else " …"
        text = (s["prompt"] + s["text"]).replace("\n", " ")
        lines.append(f"{s['sample'] + 1}. {text}{end}")
    return "\n".join(lines) + "\n"


def evaluate_stage(params: Params) -> int:
    from tasks.dataset import DataError  # noqa: PLC0415
    from tasks.models import ModelError  # noqa: PLC0415

    try:
        model, card, tokenizer = _load(MODELS_DIR)
        metrics = measure(model, card, tokenizer)
        samples = sample_generations(_runner(model), card, params.evaluate.generate)
    except (DataError, ModelError, TokenizerError) as exc:
        logger.error("evaluate failed: %s", exc)
        return 1
    with atomic_dir(EVALUATION_DIR) as tmp:  # one swap: the samples of one model
        write_json(tmp / "samples.json", samples)
        (tmp / "samples.md").write_text(samples_markdown(samples, metrics), encoding="utf-8")
    write_json(REPORTS_DIR / "metrics.json", metrics)
    logger.info(
        f"test loss {metrics['val_loss']:.4f} nats/token, perplexity {metrics['perplexity']:.3f}, "
        f"{metrics['bits_per_byte']:.3f} bits/byte on {metrics['n_test']} tokens of "
        f"{metrics['n_test_texts']} texts; {len(samples)} samples; wrote {REPORTS_DIR}/"
    )
    return 0


# --- export -----------------------------------------------------------------------------------


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

    from tasks.export import ExportError  # noqa: PLC0415
    from tasks.models import predict_logits  # noqa: PLC0415

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


def export_stage(params: Params) -> int:
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from tasks.dataset import DataError  # noqa: PLC0415
    from tasks.export import ExportError  # noqa: PLC0415
    from tasks.models import ModelError  # noqa: PLC0415

    cfg = params.export
    try:
        model, card, tokenizer = _load(MODELS_DIR)
        max_len, vocab = card["config"]["block_size"], tokenizer.vocab_size
        test_blocks, _ = blocks(token_stream(read_texts(CLEAN_DIR)[0]["test"], tokenizer), max_len)
        blob = to_onnx(model, card, cfg.opset)
        batches = parity_batches(test_blocks, cfg.parity_batch, vocab, max_len)
        parity = check_parity(blob, model, batches, cfg.atol)
    except (DataError, ModelError, ExportError, TokenizerError) as exc:
        logger.error("export failed: %s", exc)
        return 1
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
    with atomic_dir(EXPORT_DIR) as tmp:
        write_bytes(tmp / ONNX_FILE, blob)
        write_json(tmp / ONNX_CARD, info)
    logger.info(
        f"wrote {EXPORT_DIR / ONNX_FILE} ({len(blob)} bytes, sha256 {info['onnx_sha256'][:12]}…); "
        f"parity on {parity['n']} sequences (lengths {parity['seq_lengths']}): max |logit diff| "
        f"{parity['max_abs_diff']:.2e} ≤ {cfg.atol:g}"
    )
    return 0


# --- clean --------------------------------------------------------------------------------------


def clean_stage(params: Params) -> int:
    """Texts normalised, deduplicated and split by the shared text cleaning (no labels)."""
    from tasks.text_clean import clean_texts_stage  # noqa: PLC0415 (torch-free, pandas)

    return clean_texts_stage(params)
