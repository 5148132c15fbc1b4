"""rbe.utils.data: datasets, samplers, DataLoader and collation."""
from collections import namedtuple

import numpy as np
import pytest
import torch

import rbe
from rbe.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler, SequentialSampler,
                            Subset, TensorDataset, default_collate, random_split)


def test_tensor_dataset_and_errors():
    ds = TensorDataset(rbe.arange(10), rbe.arange(10) * 2)
    assert len(ds) == 10 and [t.item() for t in ds[3]] == [3, 6]
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(rbe.zeros(3), rbe.zeros(4))


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_shapes_and_len(drop_last):
    ds = TensorDataset(rbe.randn(10, 3), rbe.arange(10))
    dl = DataLoader(ds, batch_size=4, drop_last=drop_last)
    batches = list(dl)
    assert len(dl) == len(batches) == (2 if drop_last else 3)
    assert tuple(batches[0][0].shape) == (4, 3) and batches[0][1].tolist() == [0, 1, 2, 3]
    if not drop_last:
        assert tuple(batches[-1][0].shape) == (2, 3)


def test_shuffle_is_a_permutation_reproducible_and_changes_per_epoch():
    ds = TensorDataset(rbe.arange(50))
    rbe.manual_seed(3)
    dl = DataLoader(ds, batch_size=7, shuffle=True)
    e1 = [i for (b,) in dl for i in b.tolist()]
    e2 = [i for (b,) in dl for i in b.tolist()]
    assert sorted(e1) == list(range(50)) and sorted(e2) == list(range(50))
    assert e1 != e2 and e1 != list(range(50))
    rbe.manual_seed(3)
    assert [i for (b,) in dl for i in b.tolist()] == e1
    g = rbe.Generator().manual_seed(5)
    a = [i for (b,) in DataLoader(ds, batch_size=50, shuffle=True, generator=g) for i in b.tolist()]
    g2 = rbe.Generator().manual_seed(5)
    assert a == [i for (b,) in DataLoader(ds, batch_size=50, shuffle=True, generator=g2) for i in b.tolist()]


def test_default_collate_structures():
    P = namedtuple("P", "x y")
    assert default_collate([1, 2, 3]).dtype == rbe.int64
    assert default_collate([1.0, 2.0]).dtype == rbe.float32
    assert default_collate([True, False]).dtype == rbe.bool
    out = default_collate([{"a": rbe.ones(2), "b": 1}, {"a": rbe.zeros(2), "b": 2}])
    assert tuple(out["a"].shape) == (2, 2) and out["b"].tolist() == [1, 2]
    out = default_collate([(np.ones(3), 1.5), (np.zeros(3), 2.5)])
    assert isinstance(out, tuple) and tuple(out[0].shape) == (2, 3) and out[1].tolist() == [1.5, 2.5]
    p = default_collate([P(rbe.ones(1), 0), P(rbe.ones(1), 1)])
    assert isinstance(p, P) and p.y.tolist() == [0, 1]
    t = torch.utils.data.default_collate([{"a": [1, 2]}, {"a": [3, 4]}])
    r = default_collate([{"a": [1, 2]}, {"a": [3, 4]}])
    assert [x.tolist() for x in r["a"]] == [x.tolist() for x in t["a"]]


def test_random_split_sizes_disjoint_reproducible():
    ds = TensorDataset(rbe.arange(23))
    for lengths in ([10, 13], [0.3, 0.3, 0.4], [0.5, 0.5]):
        parts = random_split(ds, lengths, generator=rbe.Generator().manual_seed(0))
        tparts = torch.utils.data.random_split(range(23), lengths, generator=torch.Generator().manual_seed(0))
        assert [len(p) for p in parts] == [len(p) for p in tparts]
        idx = [i for p in parts for i in p.indices]
        assert sorted(idx) == list(range(23))
    a = random_split(ds, [5, 18], generator=rbe.Generator().manual_seed(1))
    b = random_split(ds, [5, 18], generator=rbe.Generator().manual_seed(1))
    assert a[0].indices == b[0].indices
    with pytest.raises(ValueError):
        random_split(ds, [5, 5])


def test_subset_concat_samplers_and_errors():
    a, b = TensorDataset(rbe.arange(3)), TensorDataset(rbe.arange(3, 5))
    c = a + b
    assert isinstance(c, ConcatDataset) and len(c) == 5 and c[4][0].item() == 4 and c[-1][0].item() == 4
    s = Subset(c, [4, 0])
    assert [s[i][0].item() for i in range(2)] == [4, 0]
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    rs = list(RandomSampler(range(6)))
    assert sorted(rs) == list(range(6))
    assert len(list(RandomSampler(range(6), replacement=True, num_samples=20))) == 20
    assert list(BatchSampler(SequentialSampler(range(5)), 2, False)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        DataLoader(a, batch_size=0)
    with pytest.raises(ValueError):
        DataLoader(a, shuffle=True, sampler=SequentialSampler(a))

    class Squares(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"x": float(i), "y": i * i}

    batches = list(DataLoader(Squares(), batch_size=3))
    assert batches[0]["y"].tolist() == [0, 1, 4] and batches[1]["x"].tolist() == [3.0]
