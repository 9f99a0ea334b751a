"""Trains a small ResNet-like conv net on an image set; only the optimizer changes between runs.

The recipe follows the spirit of Keller Jordan's cifar10-airbench (airbench94): conv groups of
conv -> max-pool -> batch norm -> GELU -> conv -> batch norm -> GELU with widths (w, 4w, 4w),
a max-pooled linear head scaled by 1/9, label smoothing 0.2, random flips and translations done
on the device, a short warm-up then linear decay of every group's learning rate, bf16 autocast
and channels_last on CUDA, and ``torch.compile`` on request. With the default width 64 this is
airbench94's (64, 256, 256) network without its whitening layer, lookahead and TTA; it is a
fixed testbed for comparing optimizers, not a record attempt.

Hyperparameters live in :class:`Recipe` with their units; the learning rate is swept by the
caller (:mod:`evolve.bench.validate`), because each optimizer has its own best rate.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from fitness.training.cifar import ImageData
from fitness.training.torch_tasks import ASCEND, MakeOptimizer, RunResult, set_mode


@dataclass(frozen=True)
class Recipe:
    """One training run's settings (the optimizer and its learning rate come separately)."""

    epochs: int = 8  # passes over the training images
    batch_size: int = 512  # images per step
    width: int = 64  # channels of the first conv group; the other two have 4x
    label_smoothing: float = 0.2
    warmup: float = 0.1  # fraction of the steps with linearly rising learning rate
    weight_decay: float | None = None  # None: each optimizer's default
    device: str = "cpu"
    compile: bool = False  # torch.compile the model (slow to start, faster on GPU)
    profile_step: bool = True  # time optimizer.step() (synchronises CUDA around it)
    eval_batch: int = 1000
    curve_points: int = 40

    def to_json(self) -> dict:
        return asdict(self)


class ConvGroup(nn.Module):
    """conv -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU (airbench's block)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(c_out, momentum=0.4)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out, momentum=0.4)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class SmallResNet(nn.Module):
    """Stem conv, then one conv group per halving of the image side, max-pool and a linear head.

    32x32 images get three groups (32 -> 4), 8x8 digits two (8 -> 2).
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: int = 64,
                 image_size: int = 32) -> None:
        super().__init__()
        n_groups = 3 if image_size >= 32 else 2
        widths = [width, 4 * width, 4 * width][:n_groups]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, max(8, width // 2), 3, padding=1),
                                  nn.GELU())
        groups, c_in = [], max(8, width // 2)
        for c_out in widths:
            groups.append(ConvGroup(c_in, c_out))
            c_in = c_out
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c_in, n_classes, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.groups(self.stem(x))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) / 9.0


def make_model(data: ImageData, width: int) -> SmallResNet:
    return SmallResNet(data.in_channels, data.n_classes, width, int(data.x_train.shape[-1]))


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (N, C, H, W) -> float32 standardised per channel."""
    return (x.float() / 255.0 - mean) / std


def augment(x: Tensor, flip: bool, translate: int, gen: torch.Generator) -> Tensor:
    """Random horizontal flips (half the images) and translations of up to ``translate`` px."""
    n, _, h, w = x.shape
    device = x.device
    if flip:
        mask = torch.rand(n, generator=gen, device=gen.device).to(device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    if translate > 0:
        t = translate
        padded = nn.functional.pad(x, (t, t, t, t), mode="reflect")
        dy = torch.randint(0, 2 * t + 1, (n,), generator=gen, device=gen.device).to(device)
        dx = torch.randint(0, 2 * t + 1, (n,), generator=gen, device=gen.device).to(device)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, :, None]  # (n, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, :]  # (n, 1, w)
        idx = torch.arange(n, device=device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)
    return x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate_images(model: nn.Module, x: Tensor, y: Tensor, mean: Tensor, std: Tensor,
                    recipe: Recipe, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) without augmentation or label smoothing."""
    model.eval()
    total, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    for i in range(0, len(x), recipe.eval_batch):
        xb = normalize(x[i:i + recipe.eval_batch], mean, std)
        yb = y[i:i + recipe.eval_batch]
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits = model(xb).float()
        total += nn.functional.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train()
    return float(total) / len(x), float(correct) / len(x)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_images(data: ImageData, make_optimizer: MakeOptimizer, lr: float, seed: int,
                 recipe: Recipe, train_idx: Tensor | None = None,
                 val_idx: Tensor | None = None, scale_lr: bool = True) -> RunResult:
    """One training run; returns test loss/accuracy, validation loss (on ``val_idx`` images of
    the training set, for choosing the learning rate) and time. NaN/inf or a loss that climbs
    above ASCEND times its start marks the run diverged instead of raising. ``scale_lr=False``
    keeps the rate constant (schedule-free optimizers, which are meant to run without a
    schedule); an optimizer with ``train()``/``eval()`` modes is put in each at its time.
    """
    device = torch.device(recipe.device)
    result = RunResult(lr=lr, seed=seed, diverged=False)
    idx = train_idx if train_idx is not None else torch.arange(len(data.x_train))
    x_train = data.x_train[idx].to(device)
    y_train = data.y_train[idx].to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    shape = (1, -1, 1, 1)
    mean = torch.tensor(data.mean, device=device).view(shape)
    std = torch.tensor(data.std, device=device).view(shape)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model(data, recipe.width)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if recipe.compile else model
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)

    n = len(x_train)
    batch = min(recipe.batch_size, n)
    steps_per_epoch = max(1, n // batch)  # drop the ragged last batch, as airbench
    total = steps_per_epoch * recipe.epochs
    warm = max(1, int(recipe.warmup * total))
    every = max(1, total // recipe.curve_points)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    _sync(device)
    start = time.perf_counter()
    opt = None
    try:
        opt = make_optimizer(model.parameters(), lr, total)
        set_mode(opt, "train")
        base = [g["lr"] for g in opt.param_groups]
        window = torch.zeros((), device=device)
        first = None
        step = 0
        for _ in range(recipe.epochs):
            order = torch.randperm(n, generator=gen, device=gen.device).to(device)
            for b in range(steps_per_epoch):
                step += 1
                # linear warm-up, then linear decay to zero: the same shape for every optimizer
                scale = step / warm if step <= warm else (total - step + 1) / (total - warm + 1)
                scale = scale if scale_lr else 1.0
                for group, lr0 in zip(opt.param_groups, base):
                    group["lr"] = lr0 * scale
                sel = order[b * batch:(b + 1) * batch]
                xb = augment(x_train[sel], data.flip, data.translate, gen)
                xb = normalize(xb, mean, std)
                if device.type == "cuda":
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with _autocast(device):
                    loss = criterion(net(xb).float(), y_train[sel])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.profile_step:
                    _sync(device)
                    t0 = time.perf_counter()
                    opt.step()
                    _sync(device)
                    result.step_seconds += time.perf_counter() - t0
                else:
                    opt.step()
                window += loss.detach()
                if step % every == 0 or step == total:
                    # one host sync per curve point, not per step
                    value = float(window) / (every if step % every == 0 else step % every)
                    window.zero_()
                    first = value if first is None else first
                    if not math.isfinite(value) or value > ASCEND * first:
                        result.diverged = True
                        result.reason = f"training loss {value:.3g} at step {step}"
                        break
                    result.curve.append((step, value))
            if result.diverged:
                break
    except (RuntimeError, ValueError, ArithmeticError) as err:
        result.diverged, result.reason = True, f"{type(err).__name__}: {err}".splitlines()[0]
    if opt is not None:
        set_mode(opt, "eval")  # schedule-free: evaluate the averaged weights
    _sync(device)
    result.seconds = time.perf_counter() - start
    if not result.diverged:
        if val_idx is not None and len(val_idx):
            result.val_loss, _ = evaluate_images(
                net, data.x_train[val_idx].to(device), data.y_train[val_idx].to(device),
                mean, std, recipe, device)
        result.test_loss, result.test_acc = evaluate_images(net, x_test, y_test, mean, std,
                                                            recipe, device)
        if val_idx is None or not len(val_idx):
            result.val_loss = result.test_loss
        if not (math.isfinite(result.val_loss) and math.isfinite(result.test_loss)):
            result.diverged, result.reason = True, "non-finite evaluation loss"
            result.val_loss = result.test_loss = math.inf
            result.test_acc = 0.0
    return result


__all__ = ["ConvGroup", "Recipe", "SmallResNet", "augment", "evaluate_images", "make_model",
           "normalize", "train_images"]
