"""Text classification's stages (`python -m tasks.<stage>` when project.task is
text_classification).

* clean: `tasks.core.text_clean` (normalise, dedupe, labels, split).
* train: the pretrained MiniLM fine-tuned (`train.model: minilm`, the default, its own WordPiece
  tokenizer), a Transformer encoder from scratch (`transformer`, tokenizer char or byte) or
  logistic regression on a bag of tokens and hashed bigrams (`linear`, any tokenizer; minilm's
  WordPiece by default), through the one loop `tasks.core.engine.fit`. models/card.json keeps
  the preprocessing serving must repeat: `preprocessing.text` (clean.text normalisation) and
  `preprocessing.tokenizer` (the spec; char vocabulary inline, minilm's tokenizer.json next to
  the weights).
* evaluate: accuracy, macro-F1, per-class precision/recall, confusion matrix on the test split,
  with `tasks.core.classification` (scikit-learn's metrics), as image classification; beside
  them the baselines on the same split (`tasks.core.baselines`): the majority class and TF-IDF +
  logistic regression on the texts normalised as the model reads them.
* export: export/model.onnx, input `ids` int64 (batch, max_len) -> `logits` float32; written only
  after an ONNX Runtime vs PyTorch parity check.
An empty class, a tokenizer that does not fit the model, a NaN loss fail the stage naming the
cause, before anything is written to models/.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core.classification import EvalResult, write_reports
from tasks.core.dataset import DataError, check_labels
from tasks.core.distributed import is_rank0
from tasks.core.engine import TaskData, TrainError, fit, pick_device
from tasks.core.io import atomic_dir, write_bytes
from tasks.core.models import ModelError, build_model, load_model, predict_logits, save_model
from tasks.core.objectives import classification_metrics
from tasks.core.onnx_export import ExportError, compare_logits, exporting, write_export
from tasks.core.paths import CHECKPOINTS_DIR, CLEAN_ITEMS, EXPORT_DIR, MODELS_DIR, REPORTS_DIR
from tasks.core.text_clean import clean_texts_stage
from tasks.core.text_norm import normalise_text
from tasks.core.tokenizers import (
    Tokenizer,
    TokenizerError,
    encode_texts,
    fit_tokenizer,
    tokenizer_files,
    tokenizer_from_spec,
)
from tasks.core.training import TrainResult, checkpoint_key, engine_config, write_live
from tasks.types.text_classification.minilm import MiniLMError, package_dir, pretrained_classifier
from tasks.types.text_classification.models import ARCHITECTURES, LinearBagConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from tasks.core.params import ExportParams, Params

logger = logging.getLogger("kiln.train")

ERRORS = (DataError, ModelError, TokenizerError, TrainError, ValueError)
INPUT, OUTPUT = "ids", "logits"


def clean_stage(params: Params) -> int:
    return clean_texts_stage(params, classify=True)


def read_items(path: Path = CLEAN_ITEMS) -> tuple[pd.DataFrame, str]:
    """data/clean/items.parquet and its data version (sha256 of the file)."""
    try:
        blob = path.read_bytes()
        items = pd.read_parquet(path, columns=["text", "label", "label_index", "split"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return items, hashlib.sha256(blob).hexdigest()


def _split(items: pd.DataFrame, name: str) -> tuple[list[str], np.ndarray]:
    part = items[items["split"] == name]
    return part["text"].tolist(), part["label_index"].to_numpy(np.int64, copy=True)


def _check_classes(items: pd.DataFrame, classes: list[str]) -> None:
    check_labels(items, classes, "params labels.classes")
    train = items[items["split"] == "train"]
    empty = [c for c in classes if not (train["label"] == c).any()]
    if empty:
        raise DataError(
            f"class(es) {empty} have no train rows in {CLEAN_ITEMS} (labels.classes lists them): "
            "crawl more, or drop them from labels.classes"
        )
    if not (items["split"] == "val").any():
        raise DataError(f"{CLEAN_ITEMS} has no val rows: {items['split'].value_counts().to_dict()}")


def build_classifier(
    params: Params, tokenizer: Tokenizer, n_classes: int
) -> tuple[nn.Module, str, dict[str, Any]]:
    """(fresh network, architecture name, config) for train.model; seed torch first."""
    cfg = params.train
    if cfg.model == "minilm":
        try:
            model, config = pretrained_classifier(
                n_classes, cfg.dropout, tokenizer.vocab_size, tokenizer.pad_id
            )
        except MiniLMError as exc:
            raise ModelError(str(exc)) from None
        return model, "minilm", asdict(config)
    if cfg.model == "linear":
        config = {
            "vocab_size": tokenizer.vocab_size,
            "max_len": tokenizer.max_len,
            "n_classes": n_classes,
            "bigram_buckets": LinearBagConfig.bigram_buckets,
            "pad_id": tokenizer.pad_id,
            "gain": LinearBagConfig.gain,
        }
        return build_model(ARCHITECTURES, "linear_bag", config), "linear_bag", config
    config = {
        "vocab_size": tokenizer.vocab_size,
        "max_len": tokenizer.max_len,
        "n_classes": n_classes,
        "d_model": cfg.d_model,
        "n_heads": cfg.heads,
        "n_layers": cfg.layers,
        "dropout": cfg.dropout,
        "pad_id": tokenizer.pad_id,
    }
    return build_model(ARCHITECTURES, "transformer_encoder", config), "transformer_encoder", config


def train_stage(params: Params) -> int:
    cfg, classes = params.train, list(params.labels.classes)
    try:
        items, version = read_items()
        _check_classes(items, classes)
        (train_texts, y_train), (val_texts, y_val) = _split(items, "train"), _split(items, "val")
        minilm = package_dir() if cfg.tokenizer == "minilm" else None  # auto resolved
        tokenizer = fit_tokenizer(cfg.text_settings(), train_texts, minilm)
        torch.manual_seed(cfg.seed)
        model, architecture, config = build_classifier(params, tokenizer, len(classes))
        device = pick_device(cfg.device)
        data = TaskData(
            *(torch.from_numpy(a) for a in (tokenizer.encode(train_texts), y_train)),
            *(torch.from_numpy(a) for a in (tokenizer.encode(val_texts), y_val)),
        )
        logger.info(
            f"{architecture}: {len(train_texts)} train / {len(val_texts)} val texts, "
            f"{len(classes)} classes, tokenizer {tokenizer.kind} ({tokenizer.vocab_size} ids, "
            f"max_len {tokenizer.max_len}), data version {version[:12]}"
        )
        key = checkpoint_key(cfg, version, classes)
        path = CHECKPOINTS_DIR / f"text-{key}"
        loss_fn, metric_fn = F.cross_entropy, classification_metrics
        run = fit(
            model, data, loss_fn, metric_fn, cfg=engine_config(cfg, device), checkpoint_path=path
        )
    except ERRORS as exc:
        logger.error("train failed: %s (models/ left as it was)", exc)
        return 1
    if not is_rank0():  # under torchrun: rank 0 writes models/ and reports/, the others nothing
        return 0
    card = {
        "architecture": architecture,
        "config": config,
        "classes": classes,
        "preprocessing": {
            "text": params.clean.text.model_dump(mode="json"),
            "tokenizer": tokenizer.spec(),
            "max_len": tokenizer.max_len,  # tokens per text (GET /model shows it)
        },
        "data_version": version,
        "train_params": cfg.model_dump(mode="json"),
        "epochs_run": run.epochs_run,
        "best_epoch": run.best_epoch,
        "best_val_loss": run.best["val_loss"],
    }
    with atomic_dir(MODELS_DIR) as tmp:
        card = save_model(run.model, tmp, card)
        for name, blob in tokenizer_blobs(tokenizer).items():  # minilm: tokenizer.json
            write_bytes(tmp / name, blob)
    result = TrainResult(
        run.model,
        config,
        card["preprocessing"],
        path,
        run.epochs_run,
        run.best_epoch,
        run.best["val_loss"],
        run.best["val_acc"],
        run.history,
    )
    write_live(result, REPORTS_DIR / "train", params.train.monitor)
    shutil.rmtree(path, ignore_errors=True)  # done: the next run starts fresh
    logger.info(f"wrote {MODELS_DIR} (weights sha256 {card['weights_sha256'][:12]}…)")
    return 0


def tokenizer_blobs(tokenizer: Tokenizer) -> dict[str, bytes]:
    """The files a tokenizer needs next to the weights ({} for char and byte)."""
    spec = tokenizer.spec()
    return {spec["file"]: tokenizer.blob} if "file" in spec else {}  # type: ignore[attr-defined]


def card_tokenizer(card: dict[str, Any], model_dir: Path | str) -> Tokenizer:
    """The tokenizer the card describes, checked against the model config."""
    spec = card["preprocessing"]["tokenizer"]
    tokenizer = tokenizer_from_spec(spec, tokenizer_files(spec, model_dir))
    config = card["config"]
    limit = config.get("max_len", config.get("max_positions"))
    if tokenizer.vocab_size != config["vocab_size"] or tokenizer.max_len > limit:
        raise ModelError(
            f"card.json tokenizer ({tokenizer.kind}, {tokenizer.vocab_size} ids, max_len "
            f"{tokenizer.max_len}) does not fit config.vocab_size {config['vocab_size']} / "
            f"max length {limit}"
        )
    return tokenizer


def evaluate_dir(model_dir: Path | str, items_file: Path = CLEAN_ITEMS) -> EvalResult:
    """The model in `model_dir` on the test split of `items_file` (data/clean/items.parquet)."""
    return evaluate_model_dir(model_dir, items_file)[0]


def evaluate_model_dir(
    model_dir: Path | str, items_file: Path = CLEAN_ITEMS
) -> tuple[EvalResult, dict[str, Any]]:
    """`evaluate_dir`, and the model's card."""
    model, card = load_model(model_dir, ARCHITECTURES)
    items, _ = read_items(items_file)
    check_labels(items, card["classes"], f"{model_dir}/card.json classes")
    texts, actual = _split(items, "test")
    if not texts:
        raise DataError(f"{CLEAN_ITEMS} has no test rows")
    ids = torch.from_numpy(
        encode_texts(texts, card["preprocessing"], card_tokenizer(card, model_dir))
    )
    predicted = predict_logits(model, ids, what="evaluate.test").argmax(1).numpy()
    return EvalResult(list(card["classes"]), actual, predicted), card


def test_metrics(model_dir: Path, clean_dir: Path, params: Params) -> dict[str, Any]:  # noqa: ARG001
    return evaluate_dir(model_dir, clean_dir / CLEAN_ITEMS.name).metrics()


def text_baselines(
    classes: list[str], text_settings: dict[str, Any], items_file: Path = CLEAN_ITEMS
) -> dict[str, dict[str, Any]]:
    """The baselines of reports/metrics.json on the splits of `items_file`: the majority class
    and TF-IDF + logistic regression on the texts normalised by `text_settings` (the card's
    preprocessing.text, as the model reads them)."""
    from tasks.core.baselines import classification_baselines, tfidf_features  # noqa: PLC0415

    items, _ = read_items(items_file)
    check_labels(items, classes, "card.json classes")
    settings = SimpleNamespace(**text_settings)
    splits = {name: _split(items, name) for name in ("train", "val", "test")}
    texts = [[normalise_text(t, settings) for t in splits[name][0]] for name in splits]
    return classification_baselines(
        classes,
        *(splits[name][1] for name in ("train", "val", "test")),
        features=tfidf_features(*texts),
        classical=("tfidf_logreg", "TF-IDF of word 1-2-grams"),
    )


def evaluate_stage(params: Params) -> int:
    from tasks.core.baselines import baseline_lines  # noqa: PLC0415

    log = logging.getLogger("kiln.evaluate")
    try:
        result, card = evaluate_model_dir(MODELS_DIR)
        baselines = text_baselines(list(card["classes"]), card["preprocessing"]["text"])
    except ERRORS as exc:
        log.error("evaluate failed: %s", exc)
        return 1
    write_reports(result, REPORTS_DIR, baselines)
    metrics, bound = result.metrics(), params.evaluate.min_accuracy
    log.info(
        f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} on "
        f"{result.n_test} texts; wrote {REPORTS_DIR}/metrics.json, {REPORTS_DIR}/evaluation/"
    )
    for line in baseline_lines(metrics, baselines, ("accuracy", "macro_f1")):
        log.info(line)
    if result.accuracy < bound:
        log.error(f"test accuracy {result.accuracy:.4f} is below evaluate.min_accuracy {bound}")
        return 1
    return 0


def export_stage(params: Params) -> int:
    log = logging.getLogger("kiln.export")
    try:
        model, card = load_model(MODELS_DIR, ARCHITECTURES)
        tokenizer = card_tokenizer(card, MODELS_DIR)
        items, _ = read_items()
        texts, _ = _split(items, "test")
        batch = parity_batch(
            encode_texts(texts[: params.export.parity_batch], card["preprocessing"], tokenizer),
            tokenizer,
        )
        with exporting(log):
            blob, info = export_text_model(model, card, batch, params.export)
    except (*ERRORS, ExportError) as exc:
        log.error("export failed: %s", exc)
        return 1
    write_export(blob, info, EXPORT_DIR)
    parity = info["parity"]
    log.info(
        f"wrote {EXPORT_DIR}/model.onnx ({len(blob)} bytes); parity on {parity['n']} texts: "
        f"max |logit diff| {parity['max_abs_diff']:.2e} ≤ {parity['atol']:g}, argmax equal on all"
    )
    return 0


def parity_batch(test_ids: np.ndarray, tokenizer: Tokenizer) -> np.ndarray:
    """Test texts, an empty text, and a seed-0 random full-length text (ids past cls)."""
    max_len = tokenizer.max_len
    empty = tokenizer.encode([""])
    rng = np.random.default_rng(0)
    noise = rng.integers(0, tokenizer.vocab_size, (1, max_len), dtype=np.int64)
    noise[:, 0] = empty[0, 0]  # starts like every text (cls)
    return np.concatenate([test_ids.reshape(-1, max_len), empty, noise]).astype(np.int64)


def to_onnx(model: nn.Module, max_len: int, opset: int) -> bytes:
    """ONNX bytes of ids (batch, max_len) -> logits, batch dynamic (TorchScript exporter)."""
    import onnx  # noqa: PLC0415 (only export needs it)

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # "legacy TorchScript-based ONNX export": chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks fixed at max_len
        # transformers' attention mask indexes with a boolean mask: indices are never negative
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            model.eval(),
            (torch.full((2, max_len), 2, dtype=torch.int64),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    return buffer.getvalue()


def check_parity(blob: bytes, model: nn.Module, batch: np.ndarray, atol: float) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch logits on `batch`; raises ExportError beyond `atol`."""
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: batch})[0]
    want = predict_logits(model, torch.from_numpy(batch)).numpy()
    return compare_logits(got, want, atol, " texts")


def export_text_model(
    model: nn.Module, card: dict[str, Any], batch: np.ndarray, cfg: ExportParams
) -> tuple[bytes, dict[str, Any]]:
    """(model.onnx bytes, onnx.json content) after the parity check on `batch`; pure."""
    import onnxruntime as ort  # noqa: PLC0415

    max_len = card["preprocessing"]["tokenizer"]["max_len"]
    blob = to_onnx(model, max_len, cfg.opset)
    parity = check_parity(blob, model, batch, cfg.atol)
    info = {
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_sha256": card["weights_sha256"],
        "opset": cfg.opset,
        "input": {"name": INPUT, "dtype": "int64", "shape": ["batch", max_len]},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", len(card["classes"])]},
        "classes": list(card["classes"]),
        "parity": parity,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    return blob, info


def torch_runner(version_dir: Path | str) -> Callable[..., np.ndarray]:
    """The PyTorch twin of export/model.onnx: token ids (N, max_len) -> logits."""
    model, _ = load_model(version_dir, ARCHITECTURES)

    def run(ids: np.ndarray) -> np.ndarray:
        return predict_logits(model, torch.from_numpy(np.asarray(ids, np.int64))).numpy()

    return run
