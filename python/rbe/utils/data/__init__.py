"""Datasets and loaders, as ``torch.utils.data``.

* datasets: ``Dataset`` (``a + b`` concatenates), ``IterableDataset``,
  ``TensorDataset``, ``ConcatDataset``, ``ChainDataset``, ``Subset`` and
  ``random_split``;
* samplers: ``Sampler``, ``SequentialSampler``, ``RandomSampler``,
  ``SubsetRandomSampler``, ``BatchSampler``;
* ``DataLoader`` and the collate functions ``default_collate`` /
  ``default_convert``.

Randomness (shuffling, ``random_split``, random samplers) comes from rbe's
generators: the ``generator`` argument when given, else the default one, so
``rbe.manual_seed(s)`` makes orders reproducible.

``num_workers`` is accepted but loading always runs in the calling process
(no worker processes; ``get_worker_info()`` is None). Collation differs from
torch in two deliberate ways: Python floats become the default float dtype
(torch: float64), and a batch of tuples collates to a tuple (torch: a list).
"""
from ._collate import default_collate, default_convert
from .dataloader import DataLoader, get_worker_info
from .dataset import ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset", "Subset", "random_split",
    "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler",
    "DataLoader", "get_worker_info", "default_collate", "default_convert",
]
