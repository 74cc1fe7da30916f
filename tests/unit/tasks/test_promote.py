"""Promote stage and registry: `python -m pytest tests/unit/tasks/test_promote.py`.

First model, better, worse, tie, forced, rollback; a worse challenger, a crash mid-promotion and a
tampered champion each leave the champion untouched; a challenger that does not beat the best
baseline by promote.min_margin_over_baseline is refused. Two real models on 300 digits: a CNN
trained for a few epochs ("good") and the same architecture untrained ("bad", near chance), each
evaluated and exported by the real stages, so every decision compares measured metrics. Neither
beats the logistic regression on the pixels (~0.9 macro-F1 on these 300 digits), so the tests of
the champion/challenger logic turn the baseline gate off (GATE_OFF).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from tasks import promote
from tasks.core import registry
from tasks.core.models import CARD_FILE, WEIGHTS_FILE, build_model, load_model, save_model
from tasks.core.params import PromoteParams, load_params
from tasks.types.image_classification.evaluate import evaluate_stage
from tasks.types.image_classification.export import export_stage
from tasks.types.image_classification.models import ARCHITECTURES
from tasks.types.image_classification.train import train_stage
from tests.clean_fixture import write_params, write_project

TINY = {"epochs": 4, "batch_size": 32, "channels": 4, "patience": 5}
FLOORS = {"accuracy": 0.2, "macro_f1": 0.0}  # the trained model clears them, the untrained not
NO_FLOORS = {"accuracy": 0.0, "macro_f1": 0.0}
GATE_OFF = {"baseline_gate": False}


def _stages(root: Path, *stages: object) -> None:
    """Run the image plug-in's stages in `root` on its params.yaml, as `python -m tasks.<stage>`
    does."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for stage in stages:
            assert stage(load_params()) == 0, stage


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"good": project dir, "bad": project dir}: models/, export/, reports/metrics.json each."""
    good = tmp_path_factory.mktemp("good")
    write_project(good, 300, train=TINY, evaluate={"min_accuracy": 0.0},
                  promote={"floors": FLOORS, **GATE_OFF})
    _stages(good, train_stage, evaluate_stage, export_stage)
    bad = tmp_path_factory.mktemp("bad")
    shutil.copytree(good, bad, dirs_exist_ok=True)
    _, card = load_model(good / "models", ARCHITECTURES)
    torch.manual_seed(123)
    keep = {k: v for k, v in card.items() if k != "weights_sha256"}
    save_model(build_model(ARCHITECTURES, "cnn", card["config"]), bad / "models", keep)  # untrained
    _stages(bad, evaluate_stage, export_stage)
    return {"good": good, "bad": bad}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    # promote.main() sets up the logging of a stage process (`logging.basicConfig(force=True)`),
    # which would replace pytest's handlers, caplog's included; in process the test keeps them.
    monkeypatch.setattr(promote, "setup_logging", lambda: None)
    return tmp_path


def _use(project: Path, source: Path) -> dict:
    """Put a model (models/, export/, reports/) and its data into the project; its metrics."""
    for name in ("models", "export", "reports", "data"):
        shutil.rmtree(project / name, ignore_errors=True)
        shutil.copytree(source / name, project / name)
    shutil.copy2(source / "params.yaml", project / "params.yaml")
    return json.loads((project / "reports" / "metrics.json").read_text())


def _report(project: Path) -> dict:
    return json.loads((project / "reports" / "promotion.json").read_text())


def _snapshot(project: Path) -> dict[str, str]:
    root = project / "registry"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_decide_states_the_comparison() -> None:
    cfg = PromoteParams(min_improvement=0.005, floors={"macro_f1": 0.8})
    new = {"accuracy": 0.93, "macro_f1": 0.912, "n_test": 270}
    better = promote.decide(cfg, new, {"accuracy": 0.9, "macro_f1": 0.905}, "v0001")
    assert better.promoted
    assert better.reason == ("macro-F1 0.9120 vs champion v0001 0.9050 on the same 270 test "
                             "items, +0.0070 ≥ 0.005: promoted")
    small = promote.decide(cfg, new, {"accuracy": 0.9, "macro_f1": 0.909}, "v0001")
    assert not small.promoted and "+0.0030 < 0.005: not promoted (champion v0001 kept)" in (
        small.reason)
    low = promote.decide(cfg, {**new, "macro_f1": 0.7}, None)
    assert low.outcome == "kept" and low.reason.startswith("macro-F1 0.7000 < floor 0.8")
    tie = promote.decide(PromoteParams(), new, {"accuracy": 0.93, "macro_f1": 0.912}, "v0001")
    assert tie.promoted, "min_improvement 0 means 'must not drop': a tie promotes"


def test_first_model_is_promoted_when_it_clears_the_floors(project: Path,
                                                          models: dict[str, Path]) -> None:
    metrics = _use(project, models["good"])
    assert promote.main() == 0
    report = _report(project)
    assert report["outcome"] == "promoted" and report["champion_after"] == "v0001"
    assert report["reason"].startswith("no champion yet; floors cleared") and "v0001" in (
        report["reason"])
    version, entry = registry.champion(project / "registry")
    card = json.loads((project / "models" / CARD_FILE).read_text())
    assert version == "v0001" and entry["weights_sha256"] == card["weights_sha256"]
    assert entry["data_version"] == card["data_version"]
    assert entry["metrics"] == {k: metrics[k] for k in ("accuracy", "macro_f1", "n_test")}
    assert "git_rev" in entry and entry["forced"] is False
    assert (project / "registry" / "champion").resolve() == (
        project / "registry" / "versions" / "v0001").resolve()
    for name in entry["files"]:  # every copied file passes its hash check
        registry.verified_bytes(project / "registry", "v0001", name)


def test_first_model_below_a_floor_is_not_promoted(project: Path, models: dict) -> None:
    metrics = _use(project, models["good"])
    write_params(project, promote={"floors": {"accuracy": 0.99, "macro_f1": 0.0}, **GATE_OFF})
    assert promote.main() == 0  # a decision, not a failure
    report = _report(project)
    assert report["outcome"] == "kept" and report["champion_after"] is None
    assert f"accuracy {metrics['accuracy']:.4f} < floor 0.99" in report["reason"]
    assert registry.champion(project / "registry") is None


def test_worse_challenger_leaves_the_champion_untouched(project: Path, models: dict) -> None:
    good = _use(project, models["good"])
    assert promote.main() == 0
    before = _snapshot(project)
    bad = _use(project, models["bad"])
    write_params(project, promote={"floors": NO_FLOORS, **GATE_OFF})  # so the comparison decides
    assert bad["macro_f1"] < good["macro_f1"]
    assert promote.main() == 0
    report = _report(project)
    assert report["outcome"] == "kept" and report["champion_after"] == "v0001"
    assert report["champion_before"]["metrics_now"]["macro_f1"] == good["macro_f1"]  # re-measured
    assert f"macro-F1 {bad['macro_f1']:.4f} vs champion v0001 {good['macro_f1']:.4f}" in (
        report["reason"])
    assert "not promoted" in report["reason"]
    assert _snapshot(project) == before  # not a byte of the registry changed


def test_better_challenger_replaces_the_champion(project: Path, models: dict) -> None:
    bad = _use(project, models["bad"])
    write_params(project, promote={"floors": NO_FLOORS, **GATE_OFF})  # the bad model: champion
    assert promote.main() == 0 and _report(project)["champion_after"] == "v0001"
    good = _use(project, models["good"])
    assert promote.main() == 0
    report = _report(project)
    assert report["outcome"] == "promoted" and report["champion_after"] == "v0002"
    assert report["champion_before"] == {"version": "v0001", "metrics_now": {
        k: bad[k] for k in ("accuracy", "macro_f1", "n_test")}}
    assert f"+{good['macro_f1'] - bad['macro_f1']:.4f} ≥ 0; " in report["reason"]
    assert report["reason"].endswith("(baseline gate off): promoted as v0002")
    assert promote.main() == 0  # the same model again: nothing to do, no new version
    assert _report(project)["outcome"] == "unchanged"
    assert sorted(registry.read_registry(project / "registry")["versions"]) == ["v0001", "v0002"]


def test_forced_promotion_and_rollback_through_the_cli(project: Path, models: dict) -> None:
    _use(project, models["good"])
    assert promote.main() == 0
    _use(project, models["bad"])
    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "--project", str(project)])
    assert refused.exit_code == 1 and "--force --reason" in refused.output
    forced = runner.invoke(app, ["promote", "--force", "--reason", "hotfix for ticket 7",
                                 "--project", str(project)])
    assert forced.exit_code == 0, forced.output
    version, entry = registry.champion(project / "registry")
    assert version == "v0002" and entry["forced"] and entry["reason"] == (
        "forced: hotfix for ticket 7")
    listed = runner.invoke(app, ["models", "list", "--project", str(project)])
    assert "*  v0002" in listed.output and "   v0001" in listed.output
    for bad_name in ("v0009", "../v0001", "/etc/passwd"):
        result = runner.invoke(app, ["models", "rollback", bad_name, "--project", str(project)])
        assert result.exit_code == 1 and "not rolled back" in result.output
    back = runner.invoke(app, ["models", "rollback", "v0001", "--project", str(project)])
    assert back.exit_code == 0 and "champion is now v0001 (was v0002)" in back.output
    history = registry.read_registry(project / "registry")["history"]
    assert [(h["action"], h["version"], h["forced"]) for h in history] == [
        ("promote", "v0001", False), ("force", "v0002", True), ("rollback", "v0001", True)]
    assert (project / "registry" / "champion").resolve().name == "v0001"


def test_crash_while_copying_leaves_the_champion(project: Path, models: dict,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _use(project, models["bad"])
    write_params(project, promote={"floors": NO_FLOORS, **GATE_OFF})
    assert promote.main() == 0
    before = _snapshot(project)
    _use(project, models["good"])
    real, copied = shutil.copyfile, []

    def dies_on_second_file(src: object, dst: object) -> object:
        if copied:
            raise KeyboardInterrupt  # a kill in the middle of the copy
        copied.append(src)
        return real(src, dst)

    monkeypatch.setattr(registry.shutil, "copyfile", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        promote.main()
    monkeypatch.undo()
    assert _snapshot(project) == before
    assert sorted(p.name for p in (project / "registry" / "versions").iterdir()) == ["v0001"]


def test_tampered_champion_fails_loudly(project: Path, models: dict,
                                        caplog: pytest.LogCaptureFixture) -> None:
    _use(project, models["bad"])
    write_params(project, promote={"floors": NO_FLOORS, **GATE_OFF})
    assert promote.main() == 0
    weights = project / "registry" / "versions" / "v0001" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    _use(project, models["good"])
    with caplog.at_level(logging.ERROR, logger="kiln.promote"):
        assert promote.main() == 1
    assert "tampered or truncated" in caplog.text and "champion untouched" in caplog.text
    assert registry.champion(project / "registry")[0] == "v0001"


def test_export_of_other_weights_is_refused(project: Path, models: dict,
                                            caplog: pytest.LogCaptureFixture) -> None:
    _use(project, models["good"])
    shutil.rmtree(project / "export")
    shutil.copytree(models["bad"] / "export", project / "export")
    with caplog.at_level(logging.ERROR, logger="kiln.promote"):
        assert promote.main() == 1
    assert "exported from other weights" in caplog.text
    assert not (project / "registry" / "registry.json").exists()


def test_lower_is_better_metrics_compare_and_floor_the_other_way() -> None:
    cfg = PromoteParams(metric="mae", min_improvement=0.01, floors={"mae": 2.0})
    better = promote.decide(cfg, {"mae": 0.39, "n_test": 343}, {"mae": 0.41}, "v0001")
    assert better.promoted
    assert better.reason == (
        "MAE 0.3900 vs champion v0001 0.4100 on the same 343 test items, +0.0200 ≥ 0.01: promoted"
    )
    worse = promote.decide(cfg, {"mae": 0.405, "n_test": 343}, {"mae": 0.41}, "v0001")
    assert worse.outcome == "kept" and "+0.0050 < 0.01" in worse.reason
    too_big = promote.decide(cfg, {"mae": 2.5, "n_test": 343}, None)
    assert too_big.outcome == "kept"
    assert too_big.reason == "MAE 2.5000 > limit 2: not promoted (no champion yet)"
    first = promote.decide(cfg, {"mae": 1.5, "n_test": 343}, None)
    assert first.reason == "no champion yet; floors cleared (MAE 1.5000 ≤ 2): promoted"
    # Classification floors do not apply to a forecast: it has no accuracy to check.
    assert promote.decide(PromoteParams(metric="perplexity"), {"perplexity": 8.3, "n_test": 5},
                          None).promoted


def test_a_champion_of_another_task_type_is_not_a_rival(project: Path, models: dict) -> None:
    """After `kiln use` switched the task type, the first model of the new type is judged on
    the floors only; the old champion stays registered (rollback can bring it back)."""
    _use(project, models["good"])
    assert promote.main() == 0
    data = json.loads((project / "registry" / "registry.json").read_text())
    data["versions"]["v0001"]["task"] = "forecasting"  # as if the last project was the CO2 one
    (project / "registry" / "registry.json").write_text(json.dumps(data))
    _use(project, models["bad"])
    write_params(project, promote={"floors": NO_FLOORS, **GATE_OFF})
    assert promote.main() == 0
    report = _report(project)
    assert report["outcome"] == "promoted" and report["champion_after"] == "v0002"
    assert report["reason"].startswith(
        "champion v0001 is a forecasting model and the project is image_classification now: "
        "judged as its first image_classification model; no champion yet; floors cleared")
    assert set(registry.read_registry(project / "registry")["versions"]) == {"v0001", "v0002"}


BASELINES = {
    "majority_class": {"accuracy": 0.1, "macro_f1": 0.02, "n_test": 270},
    "logreg_pixels": {"accuracy": 0.92, "macro_f1": 0.905, "n_test": 270},
}


def test_the_baseline_gate_is_on_by_default_with_a_positive_margin() -> None:
    cfg = PromoteParams()
    assert cfg.baseline_gate and cfg.min_margin_over_baseline > 0
    with pytest.raises(ValueError, match="min_margin_over_baseline"):
        PromoteParams(min_margin_over_baseline=-0.01)


def test_decide_refuses_a_challenger_that_does_not_beat_the_best_baseline() -> None:
    cfg = PromoteParams(min_margin_over_baseline=0.01)
    new = {"accuracy": 0.93, "macro_f1": 0.912, "n_test": 270}
    below = promote.decide(cfg, new, None, None, BASELINES)
    assert below.outcome == "kept"
    assert below.reason == ("macro-F1 0.9120 vs best baseline logreg_pixels 0.9050, +0.0070 < "
                            "margin 0.01: not promoted (no champion yet)")
    # it beats the champion, but not the baseline: the baseline decides
    kept = promote.decide(cfg, new, {"accuracy": 0.5, "macro_f1": 0.5}, "v0001", BASELINES)
    assert kept.outcome == "kept" and kept.reason.endswith("not promoted (champion v0001 kept)")
    at = promote.decide(cfg, {**new, "macro_f1": 0.915}, None, None, BASELINES)
    assert at.promoted and at.reason == (
        "no champion yet; floors cleared (accuracy 0.9300 ≥ 0, macro-F1 0.9150 ≥ 0); macro-F1 "
        "0.9150 vs best baseline logreg_pixels 0.9050, +0.0100 ≥ margin 0.01: promoted")
    both = promote.decide(cfg, {**new, "macro_f1": 0.92}, {"macro_f1": 0.91}, "v0001", BASELINES)
    assert both.promoted and both.reason == (
        "macro-F1 0.9200 vs champion v0001 0.9100 on the same 270 test items, +0.0100 ≥ 0; "
        "macro-F1 0.9200 vs best baseline logreg_pixels 0.9050, +0.0150 ≥ margin 0.01: promoted")
    tie = promote.decide(PromoteParams(min_margin_over_baseline=0.0),
                         {**new, "macro_f1": 0.905}, None, None, BASELINES)
    assert tie.promoted, "a margin of 0: a tie with the best baseline is enough"


def test_lower_is_better_metrics_need_a_relative_margin_over_the_baseline() -> None:
    cfg = PromoteParams(metric="perplexity", min_margin_over_baseline=0.01)
    baselines = {"unigram": {"perplexity": 39.0}, "kneser_ney": {"perplexity": 9.0}}
    better = promote.decide(cfg, {"perplexity": 8.9, "n_test": 5}, None, None, baselines)
    assert better.promoted and "perplexity 8.9000 vs best baseline kneser_ney 9.0000, +1.11% " \
        "better ≥ margin 1%" in better.reason
    close = promote.decide(cfg, {"perplexity": 8.95, "n_test": 5}, None, None, baselines)
    assert close.outcome == "kept" and close.reason == (
        "perplexity 8.9500 vs best baseline kneser_ney 9.0000, +0.56% better < margin 1%: not "
        "promoted (no champion yet)")
    worse = promote.decide(cfg, {"perplexity": 12.0, "n_test": 5}, None, None, baselines)
    assert worse.outcome == "kept" and "-33.33% better < margin 1%" in worse.reason


def test_the_gate_off_reports_the_baseline_without_refusing() -> None:
    cfg = PromoteParams(baseline_gate=False)
    new = {"accuracy": 0.5, "macro_f1": 0.4, "n_test": 270}
    decision = promote.decide(cfg, new, None, None, BASELINES)
    assert decision.promoted and decision.reason.endswith(
        "macro-F1 0.4000 vs best baseline logreg_pixels 0.9050, -0.5050 < margin 0.01 (baseline "
        "gate off): promoted")
    assert promote.decide(cfg, new, None, None, {}).promoted


def test_metrics_without_baselines_are_refused_while_the_gate_is_on() -> None:
    new = {"accuracy": 0.93, "macro_f1": 0.912, "n_test": 270}
    decision = promote.decide(PromoteParams(), new, None, None, {})
    assert decision.outcome == "kept" and decision.reason == (
        "reports/metrics.json reports no baseline with macro-F1 to beat (promote.baseline_gate: "
        "false promotes without one): not promoted (no champion yet)")


def test_a_model_below_its_measured_baseline_is_refused(project: Path, models: dict) -> None:
    metrics = _use(project, models["good"])
    write_params(project, promote={"floors": FLOORS})  # the gate on, as by default
    best = metrics["baselines"]["logreg_pixels"]["macro_f1"]
    assert metrics["macro_f1"] < best  # 4 epochs of a 4-channel CNN on 210 digits
    assert promote.main() == 0  # a decision, not a failure
    report = _report(project)
    assert report["outcome"] == "kept" and report["champion_after"] is None
    assert report["reason"] == (
        f"macro-F1 {metrics['macro_f1']:.4f} vs best baseline logreg_pixels {best:.4f}, "
        f"{metrics['macro_f1'] - best:+.4f} < margin 0.01: not promoted (no champion yet)")
    assert report["best_baseline"] == {"name": "logreg_pixels", "macro_f1": best}
    assert set(report["challenger"]["baselines"]) == {"majority_class", "logreg_pixels"}
    assert registry.champion(project / "registry") is None


def test_a_model_that_beats_every_baseline_is_promoted(project: Path, models: dict) -> None:
    """The same model where the majority class is the only baseline reported (as a task type
    with no classical model would): it beats it by far."""
    metrics = _use(project, models["good"])
    write_params(project, promote={"floors": FLOORS})
    del metrics["baselines"]["logreg_pixels"]
    (project / "reports" / "metrics.json").write_text(json.dumps(metrics))
    majority = metrics["baselines"]["majority_class"]["macro_f1"]
    assert promote.main() == 0
    report = _report(project)
    assert report["outcome"] == "promoted" and report["champion_after"] == "v0001"
    assert (f"macro-F1 {metrics['macro_f1']:.4f} vs best baseline majority_class {majority:.4f}, "
            f"{metrics['macro_f1'] - majority:+.4f} ≥ margin 0.01: promoted as v0001") in (
        report["reason"])
