"""Validate: the image recipe, the sweep-then-seeds protocol and the CLI on tiny synthetic data."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from evolve.bench.validate import split_indices, validate_rules
from evolve.cli.bench import validate
from evolve.errors import UserError
from fitness.training.cifar import write_cifar_format
from fitness.training.image_train import SmallResNet, augment


def test_augment_flips_and_translates_without_changing_shape():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    y = augment(x, flip=True, translate=2, gen=gen)
    assert y.shape == x.shape
    # no flip, no translation: unchanged
    assert torch.equal(augment(x, flip=False, translate=0, gen=gen), x)
    # a translation by up to 2 px keeps the centre 4x4 of the image inside the output
    z = augment(x, flip=False, translate=2, gen=gen)
    for i in range(2):
        centre = x[i, 0, 2:6, 2:6]
        found = any(torch.equal(z[i, 0, r:r + 4, c:c + 4], centre)
                    for r in range(5) for c in range(5))
        assert found


@pytest.mark.parametrize("size,channels", [(32, 3), (8, 1)])
def test_small_resnet_outputs_logits_for_cifar_and_digits_sizes(size, channels):
    net = SmallResNet(channels, 10, width=8, image_size=size)
    assert net(torch.zeros(4, channels, size, size)).shape == (4, 10)


def test_split_holds_out_a_tenth_for_choosing_the_lr():
    train, val = split_indices(1000, subset=200)
    assert len(train) == 180 and len(val) == 20
    assert not set(train.tolist()) & set(val.tolist())


def test_validate_rules_on_digits_reports_every_optimizer():
    results = validate_rules(["adam", "sign(ema(g, 0.9))"], dataset="digits", epochs=1,
                             subset=200, test_subset=100, seeds=2, lrs=[1e-2], width=8,
                             batch_size=32)
    task = results["tasks"]["digits"]
    assert set(task["results"]) == {"adam", "sign(ema(g, 0.9))"}
    adam = task["results"]["adam"]
    assert adam["best_lr"] == 1e-2 and adam["n_seeds"] == 2 and len(adam["runs"]) == 2
    assert 0.0 <= adam["test_acc_mean"] <= 1.0
    assert results["config"]["test_images"] == 100


def test_validate_rules_prepends_baselines_and_rejects_bad_input():
    with pytest.raises(UserError, match="unknown dataset"):
        validate_rules(["adam"], dataset="mnist")
    with pytest.raises(UserError, match="neither a known name"):
        validate_rules("adam,bogus", dataset="digits")
    with pytest.raises(UserError, match="no CUDA"):
        if torch.cuda.is_available():
            raise UserError("no CUDA (skipped: this machine has one)")
        validate_rules(["adam"], dataset="digits", device="cuda")


def test_validate_cli_on_synthetic_cifar_files(tmp_path):
    write_cifar_format(tmp_path / "data", n_train=100, n_test=30, seed=1)
    out = tmp_path / "report"
    result = CliRunner().invoke(validate, [
        "--data-dir", str(tmp_path / "data"), "--rules", "adam,lion,sign(g)", "--epochs", "1",
        "--width", "8", "--batch-size", "30", "--seeds", "2", "--lrs", "1e-3,1e-2",
        "--threads", "1", "--json", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    task = data["tasks"]["cifar10"]
    assert set(task["results"]) == {"adam", "lion", "sign(g)"}
    assert "test_batch" in data["data_checks"]["md5_mismatch"]
    md = (out / "validate.md").read_text()
    assert "md5 differs" in md and "## cifar10" in md
    assert (out / "validate_curves.png").exists() and (out / "validate_lr.png").exists()


def test_validate_cli_digits_needs_no_files(tmp_path):
    result = CliRunner().invoke(validate, [
        "--dataset", "digits", "--rules", "sgd", "--epochs", "1", "--subset", "100",
        "--seeds", "1", "--lrs", "0.1", "--width", "8", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "validate.json").read_text())["tasks"]["digits"]["winner"] == "sgd"


def test_validate_trains_schedule_free_in_its_modes_at_a_constant_rate(tmp_path, monkeypatch):
    import schedulefree

    seen = []
    step = schedulefree.AdamWScheduleFree.step

    def watched(self, closure=None):
        seen.append(self.param_groups[0]["lr"])
        return step(self, closure)

    monkeypatch.setattr(schedulefree.AdamWScheduleFree, "step", watched)
    result = CliRunner().invoke(validate, [
        "--dataset", "digits", "--rules", "schedulefree", "--epochs", "1", "--subset", "100",
        "--seeds", "1", "--lrs", "0.01", "--width", "8", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output  # it raised "not in train mode" before
    row = json.loads((tmp_path / "validate.json").read_text())["tasks"]["digits"]["results"]
    assert not row["schedulefree"]["diverged"]
    assert seen and set(seen) == {0.01}  # no warm-up/decay imposed on top of its own


def test_validate_searches_the_learning_rate_as_the_benchmark_does(tmp_path, monkeypatch):
    from fitness import lr_grid

    asked = []
    search = lr_grid.search

    def watched(evaluate, config):
        asked.append(config)
        return search(evaluate, config)

    monkeypatch.setattr(lr_grid, "search", watched)
    result = CliRunner().invoke(validate, [
        "--dataset", "digits", "--rules", "sgd", "--epochs", "1", "--subset", "100",
        "--seeds", "1", "--width", "8", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert asked == [lr_grid.DEFAULT]
    sweep = json.loads((tmp_path / "validate.json").read_text())["tasks"]["digits"]["results"][
        "sgd"]["sweep"]
    tried = [row["lr"] for row in sweep]
    assert tried == sorted(tried) and len(tried) >= 7  # decades 1e-4..1 and two refinements
