"""Text generation (`project.task: text_generation`): the stages of a byte- or character-level LM.

`python -m tasks.clean|train|evaluate|export` hand over here (tasks/task_types.py):

* clean: `tasks.core.text_clean.clean_texts_stage` (normalise, dedupe, split; no labels).
* train: the texts of the train split, each followed by an end-of-text id, become one id stream
  (`token_stream`), cut into blocks of `train.text.max_len + 1` ids (x = block[:-1], y =
  block[1:]) starting every max_len / TRAIN_OFFSETS ids. Val (and test) are scored in sliding
  windows (`scored_windows`, Hugging Face's "Perplexity of fixed-length models"): windows of
  max_len start every max_len // 2 ids and each id after the first is a target exactly once, with
  at least max_len // 2 ids of context; plain blocks gave a block's first ids almost none while
  the n-gram baselines always have theirs (on a d_model 96 Transformer of the jokes: test
  perplexity 9.235 in blocks, 9.000 in windows). The model (`train.model`: char_transformer or
  char_lstm, tasks/types/text_generation/models.py, context = max_len) learns through
  `tasks.core.engine.fit`, which early-stops on the windows' val loss. On the jokes
  (examples/jokes_generation.params.yaml) the char_lstm beats the Kneser-Ney 6-gram (test
  perplexity 6.632 vs 6.865) where the char_transformer does not (8.26, scored in blocks).
  models/card.json holds the tokenizer and the text normalisation (`preprocessing`), so
  evaluation and serving encode exactly as training did.
* evaluate: test loss (nats per token; `val_loss`, the name promote compares), perplexity and
  bits per UTF-8 byte over every id of the test stream; the same figures for two baselines on the
  same ids (`baselines` in reports/metrics.json: a unigram and an interpolated Kneser-Ney n-gram
  fitted on the train stream, its order chosen on val; `tasks.core.baselines`); samples from
  `evaluate.generate` in reports/evaluation/samples.md (to read) and samples.json; the bits per
  byte of the model and the baselines as a bar chart, reports/evaluation/plots/bits_per_byte.png.
* export: export/model.onnx, int64 ids (batch, seq <= max_len) -> float32 logits (batch, seq,
  vocab), written only after ONNX Runtime matches PyTorch within `export.atol`.

This module holds the stage functions and the train and evaluate code. The tokenizer, the id stream
and the sampler live in `tasks.types.text_generation.sampling` (no torch: serving uses them too),
the ONNX conversion and parity check in `tasks.types.text_generation.export`. torch and pandas are
imported inside the functions that need them, so the clean stage, which comes through here, loads no
torch. Sample k of a prompt draws from `numpy.random.default_rng([seed, k])`, so a sample is the
same whatever else is generated beside it (serving with seed s gives evaluate's sample 0 of seed s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.core.io import atomic_dir, write_json
from tasks.core.paths import (
    CHECKPOINTS_DIR,
    CLEAN_DIR,
    EVALUATION_DIR,
    EXPORT_DIR,
    MODELS_DIR,
    REPORTS_DIR,
)
from tasks.types.text_generation.export import export_onnx
from tasks.types.text_generation.sampling import (
    IGNORE_ID,
    Tokenizer,
    TokenizerError,
    blocks,
    eval_stride,
    fit_tokenizer,
    generate,
    prompt_ids,
    scored_windows,
    token_stream,
    train_blocks,
)

if TYPE_CHECKING:
    from torch import nn

    from tasks.core.params import Params
    from tasks.types.text_generation.params import GenerateParams

logger = logging.getLogger("kiln.text_generation")

ONNX_FILE, ONNX_CARD = "model.onnx", "onnx.json"
CHECKPOINT_FORMAT = 2  # bump when the stream, blocks or model input change meaning
EVAL_BLOCKS = 64  # windows per forward pass when measuring the test loss: bounds memory only
SPLITS = ("train", "val", "test")


# --- reading data/clean ---------------------------------------------------------------------


def read_texts(clean_dir: Path | str = CLEAN_DIR) -> tuple[dict[str, list[str]], str]:
    """({split: texts in key order}, data version: sha256 of items.parquet)."""
    import pandas as pd  # noqa: PLC0415 (see the module docstring)

    from tasks.core.dataset import DataError  # noqa: PLC0415

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
    """What `tasks.core.training.write_live` logs (history rows: train_loss, val_loss, val_ppl)."""

    model: nn.Module
    config: dict[str, Any]
    checkpoint_path: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_ppl: float
    history: list[dict[str, float]]


def _split_blocks(
    texts: list[str], tokenizer: Tokenizer, max_len: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a split. train: overlapping blocks (train_blocks); val: sliding windows, each
    id a target once with at least max_len - stride ids of context, as test is scored
    (scored_windows; y is IGNORE_ID where an earlier window scored the id)."""
    from tasks.core.dataset import DataError  # noqa: PLC0415

    stream = token_stream(texts, tokenizer)
    if len(stream) < max_len + 1:
        raise DataError(
            f"the {split} split has {len(texts)} texts, {len(stream)} tokens: fewer than the "
            f"{max_len + 1} of one block (train.text.max_len {max_len}); crawl more or lower "
            "train.text.max_len"
        )
    if split == "train":
        full = train_blocks(stream, max_len)
        return full[:, :-1], full[:, 1:]
    return scored_windows(stream, max_len)


def checkpoint_key(params: Params, data_version: str) -> str:
    spec = {
        "format": CHECKPOINT_FORMAT,
        "task": "text_generation",
        "train": params.train.checkpoint_dump(),
        "data_version": data_version,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def train_lm(
    params: Params, texts: dict[str, list[str]], tokenizer: Tokenizer, checkpoint_path: Path
) -> LMTrainResult:
    """Train, or resume from `checkpoint_path`, on the train/val blocks; writes checkpoints."""
    import torch  # noqa: PLC0415 (see the module docstring: clean loads no torch)

    from tasks.core.engine import TaskData, fit, pick_device  # noqa: PLC0415
    from tasks.core.models import build_model  # noqa: PLC0415
    from tasks.core.objectives import lm_loss, lm_metrics  # noqa: PLC0415
    from tasks.core.training import engine_config  # noqa: PLC0415
    from tasks.types.text_generation.models import ARCHITECTURES  # noqa: PLC0415

    cfg, max_len = params.train, params.train.text.max_len
    train, val = (
        [torch.from_numpy(a) for a in _split_blocks(texts[split], tokenizer, max_len, split)]
        for split in ("train", "val")
    )
    config = {
        "vocab_size": tokenizer.vocab_size,
        "block_size": max_len,
        "d_model": cfg.d_model,
        "n_heads": cfg.heads,
        "n_layers": cfg.layers,
        "dropout": cfg.dropout,
    }
    if cfg.model == "char_lstm":  # no attention heads
        del config["n_heads"]
    logger.info(
        f"{cfg.model} {config}: {tokenizer.kind} tokenizer, {len(train[0])} train blocks and "
        f"{len(val[0])} val windows (stride {eval_stride(max_len)}) of {max_len} tokens "
        f"({len(texts['train'])} / {len(texts['val'])} texts)"
    )
    torch.manual_seed(cfg.seed)
    model = build_model(ARCHITECTURES, cfg.model, config)
    device = pick_device(cfg.device)
    data = TaskData(*train, *val)  # lm_loss ignores IGNORE_ID targets
    loss_fn, metric_fn = lm_loss, lm_metrics
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
    from tasks.core.dataset import DataError  # noqa: PLC0415
    from tasks.core.distributed import is_rank0  # noqa: PLC0415
    from tasks.core.engine import TrainError  # noqa: PLC0415
    from tasks.core.models import ModelError, save_model  # noqa: PLC0415
    from tasks.core.paths import TRAIN_REPORTS  # noqa: PLC0415
    from tasks.core.training import write_live  # noqa: PLC0415

    try:
        texts, version = read_texts(CLEAN_DIR)
        tokenizer = fit_tokenizer(params.train.text, texts["train"])
        path = CHECKPOINTS_DIR / checkpoint_key(params, version)
        result = train_lm(params, texts, tokenizer, path)
    except (DataError, TrainError, ModelError, TokenizerError) as exc:
        logger.error("train failed: %s", exc)
        return 1
    if not is_rank0():  # under torchrun: rank 0 writes models/ and reports/, the others nothing
        return 0
    card = {
        "task": "text_generation",
        "architecture": params.train.model,
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
    write_live(result, TRAIN_REPORTS, params.train.monitor)
    shutil.rmtree(result.checkpoint_path, ignore_errors=True)  # done: the next run starts fresh
    logger.info(
        f"wrote {MODELS_DIR} (weights sha256 {card['weights_sha256'][:12]}…): best epoch "
        f"{result.best_epoch}, val loss {result.best_val_loss:.4f} nats/token, val perplexity "
        f"{result.best_val_ppl:.3f}"
    )
    return 0


# --- evaluate ---------------------------------------------------------------------------------


def _load(model_dir: Path | str) -> tuple[nn.Module, dict[str, Any], Tokenizer]:
    from tasks.core.models import ModelError, load_model  # noqa: PLC0415
    from tasks.types.text_generation.models import ARCHITECTURES  # noqa: PLC0415

    model, card = load_model(model_dir, ARCHITECTURES)  # refuses any other architecture
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


def stream_loss(
    model: nn.Module, stream: np.ndarray, max_len: int, stride: int | None = None
) -> tuple[float, int]:
    """(total nats, ids predicted) of next-id prediction over the whole stream: sliding windows
    (scored_windows), every id after the first predicted exactly once, each with at least
    max_len - stride ids of context (stride: eval_stride(max_len) unless given; max_len cuts
    plain blocks), as the n-gram baselines score the same ids."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415, N812

    from tasks.core.engine import pick_device  # noqa: PLC0415
    from tasks.core.models import predict_logits  # noqa: PLC0415
    from tasks.core.progress import QUIET_S, track  # noqa: PLC0415

    device = pick_device("auto")
    model = model.to(device)
    x, y = scored_windows(stream, max_len, stride)
    total, count = 0.0, 0
    chunks = [slice(i, i + EVAL_BLOCKS) for i in range(0, len(x), EVAL_BLOCKS)]
    # progress over the forward passes, when they take longer than QUIET_S (a large test split)
    for rows in track(chunks, "evaluate.loss", unit="batches", logger=logger, quiet_s=QUIET_S):
        targets = torch.from_numpy(y[rows]).to(device)
        logits = predict_logits(model, torch.from_numpy(x[rows]).to(device))
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_ID, reduction="sum"
        )
        total, count = total + float(loss), count + int((targets != IGNORE_ID).sum())
    return total, count


def measure(
    model: nn.Module, card: dict[str, Any], tokenizer: Tokenizer, clean_dir: Path = CLEAN_DIR
) -> dict[str, Any]:
    """val_loss (the test loss, nats per token), perplexity, bits_per_byte, n_test (test ids)
    and n_test_texts on the test split of `clean_dir` (data/clean)."""
    from tasks.core.dataset import DataError  # noqa: PLC0415

    texts = read_texts(clean_dir)[0]["test"]
    if not texts:
        raise DataError(f"{clean_dir}/items.parquet has no test texts")
    total, count = stream_loss(model, token_stream(texts, tokenizer), card["config"]["block_size"])
    return {**_figures(total, count, texts), "n_test_texts": len(texts)}


def _figures(total: float, count: int, texts: list[str]) -> dict[str, Any]:
    """val_loss, perplexity, bits_per_byte, n_test of `total` nats over `count` test ids."""
    # Each end-of-text counts as one byte, like the newline a plain-text file would hold.
    n_bytes = sum(len(t.encode("utf-8")) for t in texts) + len(texts)
    loss = total / count
    return {
        "val_loss": round(loss, 6),
        "perplexity": round(math.exp(min(loss, 50.0)), 6),  # cap: exp(50) ~ 5e21
        "bits_per_byte": round(total / math.log(2) / n_bytes, 6),
        "n_test": count,
    }


def ngram_baselines(tokenizer: Tokenizer, clean_dir: Path = CLEAN_DIR) -> dict[str, Any]:
    """The baselines of reports/metrics.json: n-gram models of the train split's id stream (the
    model's tokenizer, so the test ids and their count are the model's), scored as `measure`
    scores the model: `unigram` (each id's train frequency) and `kneser_ney` (interpolated
    Kneser-Ney, the order of 1..6 with the lowest val loss)."""
    from tasks.core.baselines import ngram_losses  # noqa: PLC0415

    texts = read_texts(clean_dir)[0]
    streams = {split: token_stream(texts[split], tokenizer) for split in SPLITS}
    result = ngram_losses(streams["train"], streams["val"], streams["test"], tokenizer.vocab_size)
    return {
        "unigram": {
            **_figures(result.unigram_test_nats, result.n_test, texts["test"]),
            "description": f"each {tokenizer.kind} id's train frequency, absolute discounting",
        },
        "kneser_ney": {
            **_figures(result.test_nats, result.n_test, texts["test"]),
            "order": result.order,
            "description": f"interpolated Kneser-Ney {result.order}-gram of {tokenizer.kind} ids "
            "fitted on train, the order chosen on val",
        },
    }


def test_metrics(model_dir: Path, clean_dir: Path, params: Params) -> dict[str, Any]:  # noqa: ARG001
    """`measure` of the model in `model_dir` on clean_dir's test texts (promote's champion)."""
    return measure(*_load(model_dir), clean_dir)


def _runner(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    import torch  # noqa: PLC0415

    from tasks.core.models import predict_logits  # noqa: PLC0415

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
    baselines = "; ".join(
        f"{name} {b['perplexity']:.3f}" for name, b in metrics.get("baselines", {}).items()
    )
    lines = [
        "# Sample generations",
        "",
        f"Test perplexity {metrics['perplexity']:.3f}, {metrics['bits_per_byte']:.3f} bits per "
        f"byte over {metrics['n_test']} tokens of {metrics['n_test_texts']} test texts"
        + (f" (baselines' perplexity: {baselines})." if baselines else "."),
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


def plot_bits_per_byte(metrics: dict[str, Any], target: Path) -> None:
    """Bar chart PNG: the test bits per byte of the model and of each baseline (lower is better),
    the chart `dvc plots show` draws for a text generator."""
    import matplotlib  # noqa: PLC0415 (optional: only for the PNG)

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    bars = {"model": metrics["bits_per_byte"]}
    bars |= {
        name: b["bits_per_byte"]
        for name, b in metrics.get("baselines", {}).items()
        if b.get("bits_per_byte") is not None
    }
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(bars) + 1.6), dpi=100)
    names = list(bars)[::-1]  # the model on top
    ax.barh(
        names,
        [bars[n] for n in names],
        color=["tab:blue" if n == "model" else "tab:gray" for n in names],
    )
    for i, name in enumerate(names):
        ax.text(bars[name], i, f" {bars[name]:.3f}", va="center")
    ax.set(
        xlabel="bits per UTF-8 byte (lower is better)",
        title=f"test split: {metrics['n_test']} tokens of {metrics['n_test_texts']} texts",
    )
    ax.set_xlim(0, max(bars.values()) * 1.2)
    fig.tight_layout()
    fig.savefig(target, format="png")  # inside evaluate's atomic_dir: swapped in with the rest
    plt.close(fig)


def evaluate_stage(params: Params) -> int:
    from tasks.core.baselines import baseline_lines  # noqa: PLC0415
    from tasks.core.dataset import DataError  # noqa: PLC0415
    from tasks.core.models import ModelError  # noqa: PLC0415

    try:
        model, card, tokenizer = _load(MODELS_DIR)
        metrics = measure(model, card, tokenizer)
        metrics["baselines"] = ngram_baselines(tokenizer)
        samples = sample_generations(_runner(model), card, params.evaluate.generate)
    except (DataError, ModelError, TokenizerError) as exc:
        logger.error("evaluate failed: %s", exc)
        return 1
    with atomic_dir(EVALUATION_DIR) as tmp:  # one swap: the samples of one model
        write_json(tmp / "samples.json", samples)
        (tmp / "samples.md").write_text(samples_markdown(samples, metrics), encoding="utf-8")
        plots = tmp / "plots"  # EVALUATION_PLOTS, dvc.yaml's `plots:` (samples.md is no plot)
        plots.mkdir()
        try:
            plot_bits_per_byte(metrics, plots / "bits_per_byte.png")
        except ImportError:
            logger.warning("matplotlib is not installed: bits_per_byte.png not written")
    write_json(REPORTS_DIR / "metrics.json", metrics)
    logger.info(
        f"test loss {metrics['val_loss']:.4f} nats/token, perplexity {metrics['perplexity']:.3f}, "
        f"{metrics['bits_per_byte']:.3f} bits/byte on {metrics['n_test']} tokens of "
        f"{metrics['n_test_texts']} texts; {len(samples)} samples; wrote {REPORTS_DIR}/"
    )
    for line in baseline_lines(metrics, metrics["baselines"], ("val_loss", "perplexity")):
        logger.info(line)
    return 0


# --- export -----------------------------------------------------------------------------------


def export_stage(params: Params) -> int:
    """export/model.onnx + export/onnx.json of models/, via `tasks.types.text_generation.export`."""
    from tasks.core.dataset import DataError  # noqa: PLC0415
    from tasks.core.models import ModelError  # noqa: PLC0415
    from tasks.core.onnx_export import ExportError, exporting  # noqa: PLC0415

    cfg = params.export
    try:
        model, card, tokenizer = _load(MODELS_DIR)
        max_len = card["config"]["block_size"]
        test_blocks, _ = blocks(token_stream(read_texts(CLEAN_DIR)[0]["test"], tokenizer), max_len)
        with exporting(logger):
            blob, info = export_onnx(model, card, tokenizer, test_blocks, cfg)
    except (DataError, ModelError, ExportError, TokenizerError) as exc:
        logger.error("export failed: %s", exc)
        return 1
    from tasks.core.onnx_export import write_export  # noqa: PLC0415 (torch: not for clean)

    write_export(blob, info, EXPORT_DIR)
    parity = info["parity"]
    logger.info(
        f"wrote {EXPORT_DIR / ONNX_FILE} ({len(blob)} bytes, sha256 {info['onnx_sha256'][:12]}…); "
        f"parity on {parity['n']} sequences (lengths {parity['seq_lengths']}): max |logit diff| "
        f"{parity['max_abs_diff']:.2e} ≤ {cfg.atol:g}"
    )
    return 0


# --- clean --------------------------------------------------------------------------------------


def clean_stage(params: Params) -> int:
    """Texts normalised, deduplicated and split by the shared text cleaning (no labels)."""
    from tasks.core.text_clean import clean_texts_stage  # noqa: PLC0415 (torch-free, pandas)

    return clean_texts_stage(params, classify=False)
