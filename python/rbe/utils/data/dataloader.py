"""``DataLoader``, as ``torch.utils.data.DataLoader``.

Loading always runs in the calling process: ``num_workers > 0`` is accepted
(and validated) so torch code runs unchanged, but no worker processes are
started, ``worker_init_fn`` is never called, ``get_worker_info()`` returns
None, and ``pin_memory``, ``prefetch_factor``, ``persistent_workers``,
``timeout`` and ``multiprocessing_context`` have no effect.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Generic, Iterable, Iterator, List, Optional, TypeVar

from ._collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler

T_co = TypeVar("T_co", covariant=True)

__all__ = ["DataLoader", "get_worker_info", "default_collate", "default_convert"]


def get_worker_info():
    """Always None: rbe's DataLoader loads in the calling process, never in a worker."""
    return None


class _DataLoaderIter:
    """One pass over a DataLoader (what ``iter(loader)`` returns); ``len()`` is the loader's."""

    def __init__(self, loader: "DataLoader"):
        self._loader = loader
        self._it = loader._batches()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def __len__(self) -> int:
        return len(self._loader)


class DataLoader(Generic[T_co]):
    """Iterate over ``dataset`` in mini-batches.

    ``shuffle=True`` samples with ``RandomSampler(dataset, generator=generator)``:
    a fresh permutation each epoch, drawn from ``generator`` or, when it is
    None, from rbe's default generator (so ``rbe.manual_seed`` fixes the
    order). Samples are merged by ``collate_fn`` (``default_collate`` when
    batching, ``default_convert`` when ``batch_size=None``).

    ``num_workers`` is accepted but ignored: batches are loaded in the
    calling process (see the module docstring).
    """

    _FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(
        self,
        dataset: Dataset[T_co],
        batch_size: Optional[int] = 1,
        shuffle: Optional[bool] = None,
        sampler: Optional[Iterable] = None,
        batch_sampler: Optional[Iterable[List]] = None,
        num_workers: int = 0,
        collate_fn: Optional[Callable[[List[T_co]], Any]] = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Optional[Callable[[int], None]] = None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: Optional[int] = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ):
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing. let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        iterable = isinstance(dataset, IterableDataset)
        if iterable:
            if isinstance(shuffle, bool) and shuffle:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler option, "
                                 f"but got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")

        if sampler is None and not iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            # validates batch_size and drop_last (also for an IterableDataset, which batches its stream)
            batch_sampler = BatchSampler(sampler if sampler is not None else [], batch_size, drop_last)
            if iterable:
                batch_sampler = None

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._iterable = iterable
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self._initialized = True

    def __setattr__(self, name, value):
        if getattr(self, "_initialized", False) and name in self._FROZEN:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_size is not None or self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def _fetch(self, indices: list):
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems(indices)
        return [self.dataset[i] for i in indices]

    def _batches(self) -> Iterator:
        collate = self.collate_fn
        if self._iterable:
            if not self._auto_collation:
                for sample in self.dataset:
                    yield collate(sample)
                return
            batch = []
            for sample in self.dataset:
                batch.append(sample)
                if len(batch) == self.batch_size:
                    yield collate(batch)
                    batch = []
            if batch and not self.drop_last:
                yield collate(batch)
            return
        if not self._auto_collation:
            for i in self.sampler:
                yield collate(self.dataset[i])
            return
        for indices in self.batch_sampler:
            yield collate(self._fetch(list(indices)))

    def __iter__(self) -> _DataLoaderIter:
        return _DataLoaderIter(self)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return len(self._index_sampler)
