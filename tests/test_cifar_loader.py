"""CIFAR-10 loader: the exact python-batch format is read safely, and bad folders are refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from evolve.cli.bench import validate
from fitness.training.cifar import (
    BATCHES_FOLDER,
    CifarError,
    RestrictedUnpickler,
    load_cifar10,
    resolve_cifar_dir,
    safe_load,
    write_cifar_format,
)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_synthetic_files_load_with_shapes_labels_and_md5_report(tmp_path):
    write_cifar_format(tmp_path, n_train=37, n_test=11, seed=3)
    data = load_cifar10(tmp_path)
    assert tuple(data.x_train.shape) == (37, 3, 32, 32)
    assert tuple(data.x_test.shape) == (11, 3, 32, 32)
    assert str(data.x_train.dtype) == "torch.uint8"
    assert int(data.y_train.min()) >= 0 and int(data.y_train.max()) <= 9
    assert len(data.classes) == 10 and data.classes[0] == "airplane"
    # synthetic files are valid but are not the official ones: reported, not refused
    assert data.checks["official"] is False
    assert "data_batch_1" in data.checks["md5_mismatch"]


def test_batches_folder_itself_and_env_variable_are_accepted(tmp_path, monkeypatch):
    batches = write_cifar_format(tmp_path, n_train=10, n_test=5)
    assert resolve_cifar_dir(batches) == batches
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))
    assert resolve_cifar_dir(None) == tmp_path / BATCHES_FOLDER


def test_image_bytes_follow_the_official_channel_major_layout(tmp_path):
    out = write_cifar_format(tmp_path, n_train=5, n_test=2, learnable=False)
    with open(out / "data_batch_1", "rb") as fh:
        raw = safe_load(fh.read())
    data = load_cifar10(tmp_path)
    # row 0 of the file: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32
    assert np.array_equal(data.x_train[0, 1].numpy().ravel(), raw["data"][0, 1024:2048])


def test_restricted_unpickler_refuses_any_other_global():
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        safe_load(pickle.dumps(_RunsCode()))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        safe_load(pickle.dumps({"f": np.save}, protocol=4))
    assert ("numpy", "ndarray") in RestrictedUnpickler._ALLOWED
    assert len(RestrictedUnpickler._ALLOWED) == 4


def test_malicious_batch_is_refused_without_running_it(tmp_path):
    out = write_cifar_format(tmp_path, n_train=10, n_test=5)
    (out / "data_batch_2").write_bytes(pickle.dumps({"data": _RunsCode(), "labels": [0]}))
    with pytest.raises(CifarError, match="data_batch_2 is truncated or corrupt"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "labels", "shape", "missing", "meta"])
def test_damaged_folders_raise_one_line_errors(tmp_path, damage):
    out = write_cifar_format(tmp_path, n_train=10, n_test=5)
    if damage == "truncate":
        raw = (out / "test_batch").read_bytes()
        (out / "test_batch").write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        (out / "data_batch_3").write_bytes(b"\x00not a pickle at all")
    elif damage == "labels":
        with open(out / "data_batch_1", "wb") as fh:
            pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, fh, protocol=4)
    elif damage == "shape":
        with open(out / "data_batch_1", "wb") as fh:
            pickle.dump({"data": np.zeros((2, 1000), np.uint8), "labels": [0, 1]}, fh, protocol=4)
    elif damage == "missing":
        (out / "data_batch_5").unlink()
    elif damage == "meta":
        with open(out / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": ["a"]}, fh, protocol=4)
    with pytest.raises(CifarError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "copy the files there manually" in message


def test_bytes_keys_are_accepted_in_batches_and_in_the_meta_file(tmp_path):
    """Python-2-era pickles key their dicts by bytes; the meta reader refused them."""
    out = write_cifar_format(tmp_path, n_train=10, n_test=5)
    for name in ("data_batch_1", "batches.meta"):
        obj = safe_load((out / name).read_bytes())
        keyed = {k.encode("latin1"): v for k, v in obj.items()}
        if name == "batches.meta":
            keyed[b"label_names"] = [n.encode("latin1") for n in obj["label_names"]]
        with open(out / name, "wb") as fh:
            pickle.dump(keyed, fh, protocol=4)
    data = load_cifar10(tmp_path)
    assert data.classes[:2] == ("airplane", "automobile")
    assert len(data.x_train) == 10


def _invoke(args, env=None):
    return CliRunner().invoke(validate, args, env=env or {"CIFAR10_DIR": ""})


def test_validate_refuses_a_missing_folder_with_exit_2_and_one_line(tmp_path):
    result = _invoke(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "cifar-10-batches-py" in lines[0] and "manually" in lines[0]
    assert not (tmp_path / "o").exists()


def test_validate_refuses_no_location_and_a_corrupt_folder(tmp_path):
    result = _invoke(["--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "CIFAR10_DIR" in result.output
    out = write_cifar_format(tmp_path / "data", n_train=10, n_test=5)
    (out / "data_batch_4").write_bytes(b"\x80\x04garbage")
    result = _invoke(["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "data_batch_4" in result.output and "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
