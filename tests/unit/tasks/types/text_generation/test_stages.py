"""Text generation: `python -m pytest tests/unit/tasks/types/text_generation/test_stages.py`.

The tokenizers and the id stream (every id a target exactly once), the numpy sampler (seeded,
per-sample independent, stopping at end-of-text, never past the context), prompt normalisation,
then the train -> evaluate -> export stages on a tiny model and 120 real jokes in a temporary
data/clean, and the served `POST /predict` on both backends (ONNX and torch) against evaluate's
samples. About 20 s on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from crawlers.demo_sections import jokes
from serve.app import create_app
from serve.backends import load_version
from tasks.core import registry
from tasks.core.io import write_parquet
from tasks.core.params import ServeParams, TextCleanParams, TextModelParams, parse_params
from tasks.core.text_norm import text_key
from tasks.types.text_generation import sampling as tgs
from tasks.types.text_generation import stages as tg
from tests.project import REPO

TINY = {  # a model small enough to train in seconds; the numbers are not what is tested
    "train": {  # the Transformer (the example's char_lstm: test_char_lstm_trains_evaluates...)
        "model": "char_transformer",
        "dropout": 0.2,
        "weight_decay": 0.1,
        "epochs": 2,
        "d_model": 16,
        "layers": 1,
        "heads": 2,
        "batch_size": 16,
        "lr": 0.01,
        "text": {"tokenizer": "byte", "max_len": 32},
        "warmup_steps": 5,
    },
    "evaluate": {
        "generate": {
            "prompts": ["", "Why did the "],
            "n_samples": 2,
            "max_new_tokens": 40,
            "temperature": 0.8,
            "seed": 3,
        }
    },
    "export": {"parity_batch": 8},
}


def _params(overrides: dict[str, Any] | None = None) -> Any:
    from tests.project import merge_params  # noqa: PLC0415

    raw = yaml.safe_load((REPO / "examples" / "jokes_generation.params.yaml").read_text())
    return parse_params(merge_params(merge_params(raw, TINY), overrides or {}))


def _write_clean(project: Path, texts: list[str]) -> None:
    """data/clean/items.parquet as the text clean stage writes it (split by a salted key hash)."""
    rows = []
    for i, text in enumerate(texts):
        key = text_key(text)
        u = int(hashlib.sha256(f"kiln{key}".encode()).hexdigest()[:8], 16) / 2**32
        split = "test" if u < 0.15 else "val" if u < 0.3 else "train"
        rows.append(
            {
                "key": key,
                "url": f"http://x/jokes/{i}",
                "text": text,
                "split": split,
                "first_seen": "2026-01-01T00:00:00+00:00",
            }
        )
    (project / "data" / "clean").mkdir(parents=True)
    write_parquet(pd.DataFrame(rows).sort_values("key"), project / "data/clean/items.parquet")


# --- tokenizers, stream, sampler ---------------------------------------------------------


def test_byte_tokenizer_round_trips_any_language_and_spec() -> None:
    tok = tgs.Tokenizer("byte")
    text = "Žluťoučký kůň — 日本語 ok"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode()) and max(ids) < 256
    assert tok.decode([*ids, tok.eot_id]) == text  # end-of-text is not text
    assert tok.vocab_size == 257 and tok.eot_id == 256
    assert tgs.Tokenizer.from_spec(tok.spec()) == tok
    assert tok.decode([0xC5]) == "\ufffd"  # a cut multi-byte character decodes, visibly broken


def test_char_tokenizer_keeps_the_commonest_characters_of_train() -> None:
    cfg = TextModelParams(tokenizer="char", vocab_size=16)
    tok = tgs.fit_tokenizer(cfg, ["aaab", "abc", "dd e"])
    assert tok.chars[:3] == ("a", "b", "d") and tok.vocab_size <= 16
    assert tok.encode("az") == [2, tgs.CHAR_UNK]  # "z" was never seen
    assert tok.decode(tok.encode("bad")) == "bad"
    assert tgs.Tokenizer.from_spec(json.loads(json.dumps(tok.spec()))) == tok
    small = tgs.fit_tokenizer(
        TextModelParams(tokenizer="char", vocab_size=16),
        ["".join(chr(65 + i) * (30 - i) for i in range(26))],
    )
    assert small.vocab_size == 16 and small.chars[0] == "A" and "Z" not in small.chars


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"kind": "wordpiece"}, "kind 'wordpiece'"),
        ({"kind": "byte", "vocab_size": 256, "eot_id": 256}, "vocab_size 256"),
        ({"kind": "char", "vocab_size": 4, "eot_id": 0, "chars": ["ab"]}, "single characters"),
    ],
)
def test_a_bad_tokenizer_spec_is_refused(spec: dict, match: str) -> None:
    with pytest.raises(tgs.TokenizerError, match=match):
        tgs.Tokenizer.from_spec(spec)


@pytest.mark.parametrize("max_len", [3, 4, 7, 100])
def test_blocks_make_every_id_after_the_first_a_target_once(max_len: int) -> None:
    stream = tgs.token_stream(["abcdefg", "hij", "k"], tgs.Tokenizer("byte"))
    assert stream[0] == stream[-1] == 256 and list(stream).count(256) == 4
    full, tail = tgs.blocks(stream, max_len)
    assert full.shape[1:] == (max_len + 1,)
    targets = [*(t for row in full for t in row[1:]), *(t for row in tail for t in row[1:])]
    assert targets == list(stream[1:])


@pytest.mark.parametrize(
    "n, max_len, stride",
    [(200, 16, 8), (200, 16, 16), (200, 16, 1), (200, 16, 5), (17, 16, 8), (18, 16, 8), (5, 16, 8)],
)
def test_scored_windows_score_every_id_once_with_context(n: int, max_len: int, stride: int) -> None:
    stream = np.arange(n, dtype=np.int64) + 1000  # distinct ids: a target's position is its id
    x, y = tgs.scored_windows(stream, max_len, stride)
    assert x.shape == y.shape and x.shape[1] == min(max_len, n - 1)
    assert (y[y != tgs.IGNORE_ID] > 0).all()
    assert (np.where(y == tgs.IGNORE_ID, x + 1, y) == x + 1).all()  # y is x shifted by one
    scored = y[y != tgs.IGNORE_ID]
    assert sorted(scored.tolist()) == stream[1:].tolist()  # every id after the first, once
    # context: a scored id sees all the ids before it in the first window, else >= max_len - stride
    cols = np.nonzero(y != tgs.IGNORE_ID)
    first_row = cols[0] == 0
    assert (cols[1][~first_row] >= max_len - stride).all()
    assert (x[0, 0] == stream[0]) and (y[-1, -1] == stream[-1])  # starts and ends with the stream


def test_scored_windows_edge_cases() -> None:
    assert tgs.scored_windows(np.asarray([7], np.int64), 4)[0].shape == (0, 0)
    x, y = tgs.scored_windows(np.arange(40, dtype=np.int64), 8)  # default stride: max_len // 2
    assert tgs.eval_stride(8) == 4 and x.shape == (9, 8)
    assert (y[1:, :4] == tgs.IGNORE_ID).all() and (y[1:-1, 4:] != tgs.IGNORE_ID).all()
    with pytest.raises(ValueError, match="stride"):
        tgs.scored_windows(np.arange(40, dtype=np.int64), 8, 9)


def test_stream_loss_scores_every_id_once_and_context_helps() -> None:
    """A model that knows the stream's rule only from 3 ids back: windows score each id once
    (the baseline's count) and lose nothing to a block's context-less first ids."""
    import torch  # noqa: PLC0415

    class Lookback(torch.nn.Module):  # predicts id[t] = id[t-1] + id[t-2] - id[t-3] mod 257
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(*ids.shape, 257)
            nxt = (ids[:, 2:] + ids[:, 1:-1] - ids[:, :-2]) % 257
            out[:, 2:] = torch.nn.functional.one_hot(nxt, 257).float() * 20.0
            return out

    rng = np.random.default_rng(0)
    stream = np.zeros(1000, np.int64)
    stream[:3] = rng.integers(0, 257, 3)
    for i in range(3, len(stream)):
        stream[i] = (stream[i - 1] + stream[i - 2] - stream[i - 3]) % 257
    total, count = tg.stream_loss(Lookback(), stream, 32)
    assert count == len(stream) - 1  # ngram_losses' n_test: the same ids
    assert total == pytest.approx(2 * math.log(257), rel=1e-3)  # the stream's first 2 ids only
    # stride max_len: plain blocks, whose first 2 targets each have too little context
    block_total, block_count = tg.stream_loss(Lookback(), stream, 32, stride=32)
    assert block_count == count
    n_blocks = len(range(0, len(stream) - 1 - 32, 32))  # the last window, clamped, overlaps
    assert block_total == pytest.approx(2 * n_blocks * math.log(257), rel=1e-3)


def test_train_blocks_show_each_id_at_several_offsets() -> None:
    stream = np.arange(200, dtype=np.int64)
    rows = tgs.train_blocks(stream, 16)
    assert rows.shape == (46, 17) and (np.diff(rows[:, 0]) == 16 // tgs.TRAIN_OFFSETS).all()
    assert (rows[:, 1:] == rows[:, :-1] + 1).all()  # contiguous ids: (x, y) pairs line up
    assert (np.bincount(rows[:, 1:].ravel())[16:180] == tgs.TRAIN_OFFSETS).all()
    assert tgs.train_blocks(stream[:16], 16).shape == (0, 17)  # too short for one block


def test_sampling_is_seeded_and_follows_the_temperature() -> None:
    logits = np.log(np.array([0.7, 0.2, 0.1]))
    draws = [tgs.sample_token(logits, 1.0, np.random.default_rng(s)) for s in range(3000)]
    share = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(share, [0.7, 0.2, 0.1], atol=0.03)
    cold = [tgs.sample_token(logits, 0.05, np.random.default_rng(s)) for s in range(200)]
    assert set(cold) == {0}
    assert tgs.sample_token(logits, 1.0, np.random.default_rng(5)) == tgs.sample_token(
        logits, 1.0, np.random.default_rng(5)
    )


class _Bigram:
    """A fixed random bigram 'model' over 10 ids (9 = end-of-text) that checks its input."""

    def __init__(self, context: int) -> None:
        self.table = np.random.default_rng(0).normal(size=(10, 10)).astype(np.float32) * 2
        self.context, self.calls = context, 0

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        assert ids.dtype == np.int64 and ids.ndim == 2 and ids.shape[1] <= self.context
        self.calls += 1
        return self.table[ids]  # (n, t, 10): each position's next-id logits


def test_generate_is_deterministic_per_sample_and_stops_at_end_of_text() -> None:
    def run(n: int, seed: int = 0, max_new: int = 50) -> list[tgs.Generation]:
        rngs = [np.random.default_rng([seed, k]) for k in range(n)]
        return tgs.generate(
            _Bigram(4),
            [9, 1, 2],
            rngs,
            context=4,
            eot_id=9,
            max_new_tokens=max_new,
            temperature=1.0,
        )

    three = run(3)
    assert run(3) == three
    assert run(1)[0] == three[0]  # sample k does not depend on how many are drawn beside it
    assert run(3, seed=1) != three
    assert any(g.ended for g in three) and all(9 not in g.ids for g in three)
    capped = run(3, max_new=2)
    assert all(len(g.ids) <= 2 for g in capped)
    model = _Bigram(4)
    tgs.generate(
        model,
        [9],
        [np.random.default_rng(1)],
        context=4,
        eot_id=99,
        max_new_tokens=12,
        temperature=1.0,
    )  # never ends: the window must slide
    assert model.calls == 12


def test_prompts_are_normalised_like_the_training_texts() -> None:
    card = {
        "preprocessing": {
            "tokenizer": {"kind": "byte", "vocab_size": 257, "eot_id": 256},
            "text": TextCleanParams(lowercase=True).model_dump(),
        }
    }
    assert tgs.prompt_ids("", card) == [256]
    ids = tgs.prompt_ids("  Why  did<b>the</b>ﬁsh ", card)
    assert bytes(ids[1:]).decode() == "why did the fish "  # NFKC ligature, tags, case, spaces
    assert bytes(tgs.prompt_ids("Why", card)[1:]).decode() == "why"


# --- the stages on a tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project dir after train, evaluate and export of a tiny LM on 120 real jokes."""
    root = tmp_path_factory.mktemp("textgen")
    _write_clean(root, [text for _jid, _lang, text in jokes()[:: 1000 // 120]][:120])
    params = _params()
    cwd = Path.cwd()
    os.chdir(root)
    try:
        for stage in ("train", "evaluate", "export"):
            assert getattr(tg, f"{stage}_stage")(params) == 0, stage
    finally:
        os.chdir(cwd)
    return root


def test_train_writes_the_tokenizer_and_normalisation_into_the_card(project: Path) -> None:
    card = json.loads((project / "models" / "card.json").read_text())
    assert card["architecture"] == "char_transformer" and card["classes"] == []
    assert card["config"]["block_size"] == 32 and card["config"]["vocab_size"] == 257
    assert card["preprocessing"]["tokenizer"] == {"kind": "byte", "vocab_size": 257, "eot_id": 256}
    assert card["preprocessing"]["text"] == _params().clean.text.model_dump(mode="json")
    assert card["epochs_run"] == 2 and math.isfinite(card["best_val_loss"])
    live = json.loads((project / "reports" / "train" / "metrics.json").read_text())
    assert live["best_epoch"] == card["best_epoch"]  # DVCLive's summary of the run
    assert live["val"]["ppl"] == pytest.approx(math.exp(live["val"]["loss"]), rel=1e-5)
    ppl = (project / "reports/train/plots/metrics/val/ppl.tsv").read_text().splitlines()
    assert len(ppl) == 1 + 2  # header + one row per epoch
    assert not any((project / ".kiln" / "checkpoints").glob("*"))  # removed after success


def test_evaluate_measures_the_test_stream_and_writes_samples(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    items = pd.read_parquet(project / "data/clean/items.parquet")
    test_texts = items.loc[items["split"] == "test", "text"].tolist()
    assert metrics["n_test_texts"] == len(test_texts)
    assert metrics["n_test"] == sum(len(t.encode()) for t in test_texts) + len(test_texts)
    assert 1.0 < metrics["perplexity"] < 257  # learnt something: better than uniform bytes
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["val_loss"]), rel=1e-5)
    assert metrics["bits_per_byte"] == pytest.approx(metrics["val_loss"] / math.log(2), rel=1e-5)
    baselines = metrics.pop("baselines")
    monkeypatch.chdir(project)
    got = tg.test_metrics(project / "models", project / "data/clean", _params())
    assert got == metrics  # what promote measures
    # n-gram baselines on the same test ids: Kneser-Ney uses context, the unigram none
    assert set(baselines) == {"unigram", "kneser_ney"}
    for baseline in baselines.values():
        assert baseline["n_test"] == metrics["n_test"]
        assert baseline["perplexity"] == pytest.approx(math.exp(baseline["val_loss"]), rel=1e-5)
    assert 1 <= baselines["kneser_ney"]["order"] <= 6
    assert baselines["kneser_ney"]["perplexity"] < baselines["unigram"]["perplexity"] < 257
    samples = json.loads((project / "reports/evaluation/samples.json").read_text())
    assert [(s["prompt"], s["sample"]) for s in samples] == [
        ("", 0),
        ("", 1),
        ("Why did the ", 0),
        ("Why did the ", 1),
    ]
    assert all(0 < s["n_tokens"] <= 40 or s["ended"] for s in samples)
    markdown = (project / "reports/evaluation/samples.md").read_text()
    # dvc.yaml's `plots:` folder: the chart alone (samples.md would be "failed to load" there)
    assert [p.name for p in (project / "reports/evaluation/plots").iterdir()] == [
        "bits_per_byte.png"
    ]
    assert (project / "reports/evaluation/plots/bits_per_byte.png").stat().st_size > 5_000
    assert '## Prompt: "Why did the "' in markdown
    assert f"Why did the {samples[2]['text']}" in markdown
    before = (project / "reports/evaluation/samples.json").read_bytes()
    assert tg.evaluate_stage(_params()) == 0
    assert (project / "reports/evaluation/samples.json").read_bytes() == before  # deterministic


def test_export_matches_pytorch_on_any_sequence_length(project: Path) -> None:
    info = json.loads((project / "export" / "onnx.json").read_text())
    blob = (project / "export" / "model.onnx").read_bytes()
    assert info["onnx_sha256"] == hashlib.sha256(blob).hexdigest()
    assert info["parity"]["max_abs_diff"] <= info["parity"]["atol"] == 1e-4
    assert info["parity"]["seq_lengths"] == [5, 32]
    assert info["output"]["shape"] == ["batch", "seq", 257]
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    torch_run = tg.torch_runner(project / "models")
    for shape in [(1, 1), (3, 17), (2, 32)]:
        ids = np.random.default_rng(1).integers(0, 257, shape, dtype=np.int64)
        got = session.run(["logits"], {"ids": ids})[0]
        assert got.shape == (*shape, 257)
        np.testing.assert_allclose(got, torch_run(ids), atol=1e-4)


def test_too_little_text_for_one_block_fails_and_writes_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _write_clean(tmp_path, [text for _jid, _lang, text in jokes()[:6]])
    monkeypatch.chdir(tmp_path)
    params = _params({"train": {"text": {"max_len": 4096}}})
    assert tg.train_stage(params) == 1
    assert "fewer than the 4097 of one block (train.text.max_len 4096)" in caplog.text
    assert not (tmp_path / "models").exists()


def test_evaluate_refuses_a_model_of_another_architecture(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch  # noqa: PLC0415

    from tasks.core.models import build_model, save_model  # noqa: PLC0415
    from tasks.types.forecasting.models import ARCHITECTURES  # noqa: PLC0415

    torch.manual_seed(0)
    config = {"n_features": 1, "horizon": 1, "hidden": 4, "layers": 1}
    other = build_model(ARCHITECTURES, "lstm", config)
    save_model(
        other,
        tmp_path / "models",
        {
            "architecture": "lstm",
            "config": {"n_features": 1, "horizon": 1, "hidden": 4, "layers": 1, "dropout": 0.0},
            "classes": [],
            "preprocessing": {},
        },
    )
    (tmp_path / "data").symlink_to(project / "data")
    monkeypatch.chdir(tmp_path)
    assert tg.evaluate_stage(_params()) == 1
    # text generation's architectures do not include the card's: refused, naming it
    assert "architecture 'lstm'" in caplog.text and "'char_transformer'" in caplog.text
    assert not (tmp_path / "reports").exists()


# --- serving -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(project: Path) -> Path:
    root = project / "registry"
    files = {p.name: p for d in ("models", "export") for p in sorted((project / d).iterdir())}
    info = {
        "task": "text_generation",
        "data_version": "d",
        "git_rev": None,
        "metrics": json.loads((project / "reports" / "metrics.json").read_text()),
    }
    registry.add_version(root, files, info, reason="test")
    registry.set_champion(root, "v0001", action="promote", reason="test")
    return root


def test_served_generation_is_evaluates_sample_zero_on_both_backends(
    project: Path, served: Path
) -> None:
    samples = json.loads((project / "reports/evaluation/samples.json").read_text())
    first = next(s for s in samples if s["prompt"] == "Why did the " and s["sample"] == 0)
    body = {
        "instances": [
            {"prompt": "Why did the ", "max_new_tokens": 40, "temperature": 0.8, "seed": 3},
            {"prompt": "", "max_new_tokens": 5, "temperature": 1.0},
        ]
    }
    with TestClient(create_app(served, ServeParams(max_batch=8))) as client:
        reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["model_version"] == "v0001" and out["task"] == "text_generation"
    assert out["generations"][0] == {"prompt": "Why did the ", "text": first["text"]}
    assert len(out["generations"][1]["text"].encode()) <= 5 * 3  # 5 bytes, each maybe U+FFFD
    torch_loaded = load_version(served, "v0001", backend="torch")
    from tasks.types.text_generation.serving import predict, text_generation_request  # noqa: PLC0415

    request = text_generation_request(8).model_validate(body)
    assert predict(request, torch_loaded).generations[0].text == first["text"]


@pytest.mark.parametrize(
    "instance, field",
    [
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "a", "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompt": "a", "max_new_tokens": 10_000}, "max_new_tokens"),
        ({"prompt": "a", "max_new_tokens": "5"}, "max_new_tokens"),
        ({"prompt": "a", "temperature": 0}, "temperature"),
        ({"prompt": "a", "temperature": 11}, "temperature"),
        ({"prompt": "a", "seed": -1}, "seed"),
        ({"prompt": "a", "top_k": 5}, "top_k"),
        ({"max_new_tokens": 5}, "prompt"),
    ],
)
def test_bad_requests_are_422_naming_the_field(served: Path, instance: dict, field: str) -> None:
    with TestClient(create_app(served, ServeParams(max_batch=8))) as client:
        reply = client.post("/predict", json={"instances": [instance]})
        too_many = client.post("/predict", json={"instances": [{"prompt": "a"}] * 9})
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["loc"] == ["body", "instances", 0, field]
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "instances"]


def test_serving_imports_no_torch(served: Path) -> None:
    code = (
        "import sys; from serve.backends import load_version; "
        "from tasks.types.text_generation.serving import SPEC, text_generation_request; "
        f"m = load_version({str(served)!r}, 'v0001'); "
        "r = text_generation_request(4).model_validate("
        "{'instances': [{'prompt': 'Hi', 'max_new_tokens': 3, 'seed': 1}]}); "
        "print(SPEC.predict(r, m).generations[0].text is not None, 'torch' in sys.modules)"
    )
    import subprocess  # noqa: PLC0415

    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr


def test_char_tokenizer_trains_evaluates_and_exports(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").symlink_to(project / "data")
    monkeypatch.chdir(tmp_path)
    params = _params({"train": {"epochs": 1, "text": {"tokenizer": "char", "vocab_size": 40}}})
    assert [tg.train_stage(params), tg.evaluate_stage(params), tg.export_stage(params)] == [0] * 3
    spec = json.loads((tmp_path / "models" / "card.json").read_text())["preprocessing"]["tokenizer"]
    assert spec["kind"] == "char" and spec["vocab_size"] == 40 and len(spec["chars"]) == 38
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    items = pd.read_parquet(project / "data/clean/items.parquet")
    test_texts = items.loc[items["split"] == "test", "text"].tolist()
    assert metrics["n_test"] == sum(map(len, test_texts)) + len(test_texts)  # one id a character
    n_bytes = sum(len(t.encode()) for t in test_texts) + len(test_texts)
    total_bits = metrics["val_loss"] * metrics["n_test"] / math.log(2)
    assert metrics["bits_per_byte"] == pytest.approx(total_bits / n_bytes, rel=1e-4)
    info = json.loads((tmp_path / "export" / "onnx.json").read_text())
    assert info["output"]["shape"] == ["batch", "seq", 40] and info["tokenizer"] == spec


def test_char_lstm_trains_evaluates_exports_and_serves_like_the_transformer(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").symlink_to(project / "data")
    monkeypatch.chdir(tmp_path)
    params = _params({"train": {"model": "char_lstm", "epochs": 1, "d_model": 32, "layers": 2}})
    assert [tg.train_stage(params), tg.evaluate_stage(params), tg.export_stage(params)] == [0] * 3
    card = json.loads((tmp_path / "models" / "card.json").read_text())
    assert card["architecture"] == "char_lstm" and "n_heads" not in card["config"]
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["n_test"] == metrics["baselines"]["kneser_ney"]["n_test"]
    info = json.loads((tmp_path / "export" / "onnx.json").read_text())
    assert info["parity"]["max_abs_diff"] <= 1e-4 and info["parity"]["seq_lengths"] == [5, 32]
    session = ort.InferenceSession(
        (tmp_path / "export" / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    torch_run = tg.torch_runner(tmp_path / "models")
    ids = np.random.default_rng(2).integers(0, 257, (3, 11), dtype=np.int64)
    np.testing.assert_allclose(session.run(["logits"], {"ids": ids})[0], torch_run(ids), atol=1e-4)
    samples = json.loads((tmp_path / "reports/evaluation/samples.json").read_text())
    assert len(samples) == 4 and all(isinstance(s["text"], str) for s in samples)


def test_export_logs_its_progress_as_one_step(project: Path, tmp_path: Path, caplog, monkeypatch):
    import shutil  # noqa: PLC0415

    from tasks.core.progress import parse  # noqa: PLC0415

    for part in ("models", "data/clean"):  # a copy: the module's project stays as it is
        shutil.copytree(project / part, tmp_path / part)
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO")
    assert tg.export_stage(_params()) == 0
    lines = [line for r in caplog.records if (line := parse(r.getMessage())) is not None]
    export = [line for line in lines if line.what == "export.onnx"]
    assert (export[0].done, export[0].total, export[0].finished) == (0, 1, False)
    assert (export[-1].done, export[-1].finished) == (1, True)
