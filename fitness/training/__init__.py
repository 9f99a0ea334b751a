"""Torch training: the benchmark's tasks, the real-data tier (tier 2), image validation, CIFAR-10.

Importing this package does not import torch; the names of the real-data tier's built-in tasks
live here so that a campaign's config can name them without loading torch.
"""

# The real-data tier's built-in tasks (fitness.training.real_tasks defines them, in this order).
REAL_TASK_NAMES = ("mixture_mlp", "diabetes_mlp", "teacher_resmlp", "manifold_autoencoder",
                   "recall_attention", "bars_cnn", "adding_gru")
