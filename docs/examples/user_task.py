"""An example of bringing your own task to a campaign's real-data tier.

    evolve run --task docs/examples/user_task.py:make_task --out runs/mine

``make_task()`` returns an ``evolve.UserTask``: a function that builds a fresh model (its
weights are drawn under a seed the tier sets), train / validation / test splits as
(inputs, targets) tensors, a loss, and a step budget. Every optimizer, rules and tuned Adam
alike, trains it with the same learning-rate search, schedule, seeds and minibatches; the
validation split chooses the learning rate and the test split is scored.
"""

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer

from fitness.training.real_tasks import UserTask  # also importable as evolve.UserTask


def make_task() -> UserTask:
    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    order = np.random.default_rng(0).permutation(len(x))
    x = torch.tensor(x[order], dtype=torch.float32)
    y = torch.tensor(data.target[order], dtype=torch.long)

    def model() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.Tanh(),
                                   torch.nn.Linear(16, 2))

    return UserTask(
        name="cancer_tanh_mlp",
        model=model,
        train=(x[:369], y[:369]),
        val=(x[369:429], y[369:429]),
        test=(x[429:], y[429:]),
        loss="cross_entropy",
        steps=150,
        batch_size=32,
    )
