"""Loads CIFAR-10 from the official python batches, safely, and the digits images as a fallback.

Layout (the python version of https://www.cs.toronto.edu/~kriz/cifar.html, as torchvision keeps
it)::

    DIR/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta

``DIR`` comes from ``--data-dir`` or ``$CIFAR10_DIR``; the ``cifar-10-batches-py`` folder itself
is accepted too. Nothing is ever downloaded: a missing, truncated or corrupt folder is a
:class:`CifarError` whose one-line message names the layout and says to copy the files there.

The batches are pickles, and docs/architecture.md forbids unpickling outside data: they are read with
:class:`RestrictedUnpickler`, which resolves exactly the three globals a numpy array needs and
refuses every other one, so a crafted file cannot run code. Shapes, label range and dtype are
then checked, and each file's md5 is compared with the official one (a mismatch with valid
contents is allowed, e.g. synthetic test files, and reported).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ALL_FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
IMAGE_SHAPE = (3, 32, 32)
N_CLASSES = 10
# The official batches are ~31 MB; anything far larger is not a CIFAR batch.
MAX_FILE_BYTES = 256 * 1024 * 1024

LAYOUT = (f"DIR/{BATCHES_FOLDER}/{{data_batch_1..5,test_batch,batches.meta}} "
          "(the python version of CIFAR-10)")
HOW_TO_FIX = ("copy the files there manually (nothing is downloaded) and pass --data-dir DIR "
              "or set CIFAR10_DIR=DIR")


class CifarError(ValueError):
    """The CIFAR-10 folder is missing or unusable; ``str(err)`` is one line."""


def _numpy_reconstruct():
    # numpy 2 moved the module to numpy._core; old pickles still name numpy.core.multiarray.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for data only: dicts, lists, str/bytes, numbers and numpy arrays.

    Pickle runs code by naming a global (any importable callable) and calling it. A CIFAR batch
    only needs three globals, all to rebuild a numpy array: ``_reconstruct`` (makes an empty
    ndarray of a given class), ``ndarray`` (the class it is asked for) and ``dtype`` (the element
    type). None of them can reach the file system, import modules or call other functions, so
    they are allowed by exact (module, name) and every other global is refused. Dicts, lists,
    strings, bytes and ints are pickle opcodes, not globals, and need nothing. Files written by
    Python 3 with protocol 2 encode bytes through ``_codecs.encode``; that is refused too, so
    write test files with protocol 3 or later.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return np.ndarray if name == "ndarray" else np.dtype


def safe_load(raw: bytes) -> object:
    """Unpickle data-only bytes (see :class:`RestrictedUnpickler`).

    ``encoding='latin1'`` is what the official Python 2 pickles need for their numpy buffers
    (torchvision reads them the same way); their dict keys then come back as ``str``.
    """
    return RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()


@dataclass
class ImageData:
    """A labelled image set as uint8 tensors (N, C, H, W) plus how to normalise and augment it."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips are label-preserving (not for digits)
    translate: int  # random translation in pixels (reflect padding)
    classes: tuple[str, ...] = ()
    checks: dict = field(default_factory=dict)  # md5 report and where the files came from

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return N_CLASSES if not self.classes else len(self.classes)


def resolve_cifar_dir(data_dir: str | os.PathLike | None) -> Path:
    """The batches folder from --data-dir or $CIFAR10_DIR (CifarError when neither is usable)."""
    given = data_dir if data_dir is not None else os.environ.get("CIFAR10_DIR")
    if not given:
        raise CifarError(f"CIFAR-10 location not given: expected {LAYOUT}; {HOW_TO_FIX}")
    root = Path(given).expanduser()
    for candidate in (root / BATCHES_FOLDER, root):
        if (candidate / TRAIN_FILES[0]).exists() or (candidate / TEST_FILE).exists():
            return candidate
    if (root / BATCHES_FOLDER).is_dir():
        return root / BATCHES_FOLDER
    raise CifarError(f"CIFAR-10 not found in {root}: expected {LAYOUT}; {HOW_TO_FIX}")


def _str_keys(obj: dict) -> dict:
    """The dict with bytes keys decoded (both readers accept ``b"data"`` and ``"data"``)."""
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,), md5) of one batch file."""
    where = f"{path}"
    if not path.is_file():
        raise CifarError(f"missing {where}: expected {LAYOUT}; {HOW_TO_FIX}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CifarError(f"{where} is {size} bytes, too large for a CIFAR-10 batch; {HOW_TO_FIX}")
    raw = path.read_bytes()
    md5 = hashlib.md5(raw).hexdigest()
    try:
        obj = safe_load(raw)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, OverflowError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CifarError(f"{where} is truncated or corrupt ({reason}); expected {LAYOUT}; "
                         f"{HOW_TO_FIX}") from None
    if not isinstance(obj, dict):
        raise CifarError(f"{where} is not a CIFAR-10 batch (a {type(obj).__name__}, not a dict); "
                         f"{HOW_TO_FIX}")
    batch = _str_keys(obj)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise CifarError(f"{where} lacks 'data' (a uint8 array) or 'labels'; {HOW_TO_FIX}")
    n_values = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != n_values or not len(data):
        raise CifarError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 "
                         f"(N, {n_values}); {HOW_TO_FIX}")
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError):
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or len(y) != len(data) or not np.issubdtype(y.dtype, np.integer):
        raise CifarError(f"{where}: expected {len(data)} integer labels, got {y.dtype} "
                         f"{y.shape}; {HOW_TO_FIX}")
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise CifarError(f"{where}: labels outside 0..{N_CLASSES - 1} "
                         f"(min {y.min()}, max {y.max()}); {HOW_TO_FIX}")
    return data.reshape(-1, *IMAGE_SHAPE), y.astype(np.int64), md5


def _read_meta(path: Path) -> tuple[tuple[str, ...], str]:
    if not path.is_file():
        raise CifarError(f"missing {path}: expected {LAYOUT}; {HOW_TO_FIX}")
    raw = path.read_bytes()
    try:
        obj = safe_load(raw)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, OverflowError) as err:
        raise CifarError(f"{path} is truncated or corrupt ({str(err)[:80]}); {HOW_TO_FIX}") from None
    # files pickled by Python 2 without latin1 decoding (or written as bytes) key by b"label_names"
    meta = _str_keys(obj) if isinstance(obj, dict) else {}
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != N_CLASSES:
        raise CifarError(f"{path}: expected 'label_names' with {N_CLASSES} names; {HOW_TO_FIX}")
    names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    return tuple(names), hashlib.md5(raw).hexdigest()


def load_cifar10(data_dir: str | os.PathLike | None = None) -> ImageData:
    """Read and check every CIFAR-10 file; ``checks`` says which md5s match the official ones."""
    folder = resolve_cifar_dir(data_dir)
    missing = [f for f in ALL_FILES if not (folder / f).is_file()]
    if missing:
        raise CifarError(f"{folder} lacks {', '.join(missing)}: expected {LAYOUT}; {HOW_TO_FIX}")
    md5: dict[str, str] = {}
    xs, ys = [], []
    for name in TRAIN_FILES:
        x, y, md5[name] = _read_batch(folder / name)
        xs.append(x)
        ys.append(y)
    x_test, y_test, md5[TEST_FILE] = _read_batch(folder / TEST_FILE)
    classes, md5[META_FILE] = _read_meta(folder / META_FILE)
    mismatched = [n for n, h in md5.items() if OFFICIAL_MD5[n] != h]
    checks = {"folder": str(folder), "md5": md5, "md5_mismatch": mismatched,
              "official": not mismatched}
    return ImageData(
        name="cifar10",
        x_train=torch.from_numpy(np.concatenate(xs)),
        y_train=torch.from_numpy(np.concatenate(ys)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(y_test),
        # per-channel statistics of the official training set
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        flip=True,
        translate=2,
        classes=classes,
        checks=checks,
    )


def write_cifar_format(folder: str | os.PathLike, n_train: int = 100, n_test: int = 50,
                       seed: int = 0, learnable: bool = True) -> Path:
    """Write random images in the exact CIFAR-10 python layout under ``folder``; returns the
    batches folder. For tests and device checks only (md5s will not match the official ones).

    ``learnable`` adds a class-dependent colour shift so training has something to learn.
    Pickle protocol 4 keeps bytes native (see :class:`RestrictedUnpickler`).
    """
    out = Path(folder) / BATCHES_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int, tag: str) -> dict:
        labels = rng.integers(0, N_CLASSES, size=n)
        data = rng.integers(0, 256, size=(n, int(np.prod(IMAGE_SHAPE))), dtype=np.uint8)
        if learnable:
            shift = (labels % 3)[:, None] * 1024  # brighten one colour plane per class group
            cols = np.arange(1024)[None, :] + shift
            rows = np.arange(n)[:, None]
            data[rows, cols] = np.minimum(255, data[rows, cols].astype(np.int64) + 60 +
                                          8 * labels[:, None]).astype(np.uint8)
        return {"batch_label": f"synthetic {tag}", "labels": labels.tolist(), "data": data,
                "filenames": [f"synthetic_{tag}_{i}.png" for i in range(n)]}

    per = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for name, n in zip(TRAIN_FILES, per):
        with open(out / name, "wb") as fh:
            pickle.dump(batch(n, name), fh, protocol=4)
    with open(out / TEST_FILE, "wb") as fh:
        pickle.dump(batch(n_test, TEST_FILE), fh, protocol=4)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": per[0],
            "num_vis": 3072}
    with open(out / META_FILE, "wb") as fh:
        pickle.dump(meta, fh, protocol=4)
    return out


def digits_images() -> ImageData:
    """scikit-learn's 8x8 digits as 1x8x8 uint8 images (the real-data fallback for validate).

    The test split is the 540 images the digits benchmark tasks test on.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * 15.0).round().astype(np.uint8)[:, None]  # 0..16 -> 0..240
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[:540], order[540:]
    x = torch.from_numpy(images)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    scale = float(images.mean()) / 255.0, float(images.std()) / 255.0
    return ImageData(name="digits", x_train=x[train], y_train=y[train], x_test=x[test],
                     y_test=y[test], mean=(scale[0],), std=(scale[1],), flip=False,
                     translate=1, classes=tuple(str(i) for i in range(10)),
                     checks={"source": "sklearn.datasets.load_digits"})


__all__ = ["ALL_FILES", "BATCHES_FOLDER", "CifarError", "ImageData", "LAYOUT", "OFFICIAL_MD5",
           "RestrictedUnpickler", "digits_images", "load_cifar10", "resolve_cifar_dir",
           "safe_load", "write_cifar_format"]
