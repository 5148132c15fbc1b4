"""rbe.utils.data: datasets, samplers, DataLoader, collation, random_split (torch as the oracle)."""
import collections
import math
import warnings

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import rbe
from rbe.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset, IterableDataset,
                            RandomSampler, Sampler, SequentialSampler, Subset, SubsetRandomSampler, TensorDataset,
                            default_collate, default_convert, get_worker_info, random_split)

Point = collections.namedtuple("Point", "x y")


def flat(loader):
    """All values of the first field of every batch, in order."""
    return [v for (b, *_) in loader for v in b.tolist()]


def kind(dtype) -> str:
    return {"float32": "f", "float64": "f", "int64": "i", "bool": "b"}[str(dtype).split(".")[-1]]


def plain(x):
    """A comparable form of a collated structure (tensors -> (kind, shape, values); tuples -> lists)."""
    if isinstance(x, (rbe.Tensor, torch.Tensor)):
        return (kind(x.dtype), tuple(x.shape), x.tolist())
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def to_torch(x):
    """The same sample with rbe tensors replaced by torch tensors, for torch's default_collate."""
    if isinstance(x, rbe.Tensor):
        return torch.from_numpy(x.numpy().copy())
    if isinstance(x, dict):
        return {k: to_torch(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(to_torch(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(to_torch(v) for v in x)
    return x


# ---------------------------------------------------------------- datasets
def test_tensor_dataset_indexing_len_and_errors():
    x, y = rbe.arange(12.0).reshape(6, 2), rbe.arange(6) * 10
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    assert xi.tolist() == [8.0, 9.0] and yi.item() == 40
    assert [t.tolist() for t in ds[-1]] == [[10.0, 11.0], 50]
    xs, ys = ds[rbe.tensor([0, 5])]
    assert tuple(xs.shape) == (2, 2) and ys.tolist() == [0, 50]
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(rbe.zeros(3, 2), rbe.zeros(4))
    with pytest.raises(ValueError):
        TensorDataset(rbe.tensor(1.0))
    with pytest.raises(ValueError):
        TensorDataset()
    with pytest.raises(IndexError):
        ds[6]


def test_subset_concat_chain():
    a, b = TensorDataset(rbe.arange(3)), TensorDataset(rbe.arange(3, 8))
    c = a + b
    assert isinstance(c, ConcatDataset) and len(c) == 8 and c.cumulative_sizes == [3, 8]
    assert [c[i][0].item() for i in range(8)] == list(range(8))
    assert c[-1][0].item() == 7 and c[-8][0].item() == 0
    with pytest.raises(IndexError):
        c[8]
    with pytest.raises(ValueError):
        c[-9]
    with pytest.raises(ValueError):
        ConcatDataset([])
    s = Subset(c, [7, 0, 4])
    assert len(s) == 3 and [s[i][0].item() for i in range(3)] == [7, 0, 4]
    ss = Subset(s, [2, 0])
    assert [ss[i][0].item() for i in range(2)] == [4, 7]
    # a DataLoader over a Subset of a ConcatDataset
    assert flat(DataLoader(s, batch_size=2)) == [7, 0, 4]

    class Stream(IterableDataset):
        def __init__(self, lo, hi):
            self.lo, self.hi = lo, hi

        def __iter__(self):
            return iter(range(self.lo, self.hi))

        def __len__(self):
            return self.hi - self.lo

    chained = Stream(0, 3) + Stream(10, 12)
    assert isinstance(chained, ChainDataset) and list(chained) == [0, 1, 2, 10, 11] and len(chained) == 5
    with pytest.raises(TypeError):
        ConcatDataset([a, Stream(0, 2)])


# ---------------------------------------------------------------- DataLoader batching
@pytest.mark.parametrize("n,bs,drop_last", [(10, 4, False), (10, 4, True), (12, 4, False), (12, 4, True),
                                            (3, 5, False), (3, 5, True), (7, 1, False)])
def test_batch_shapes_partial_batch_drop_last_and_len(n, bs, drop_last):
    ds = TensorDataset(rbe.randn(n, 3), rbe.arange(n))
    dl = DataLoader(ds, batch_size=bs, drop_last=drop_last)
    tdl = tud.DataLoader(tud.TensorDataset(torch.randn(n, 3), torch.arange(n)), batch_size=bs, drop_last=drop_last)
    batches = list(dl)
    assert len(dl) == len(tdl) == len(batches)
    assert [tuple(b[0].shape) for b in batches] == [tuple(t[0].shape) for t in tdl]
    assert [b[1].tolist() for b in batches] == [t[1].tolist() for t in tdl]
    assert all(b[1].dtype == rbe.int64 and b[0].dtype == rbe.float32 for b in batches)
    if not drop_last and n % bs:
        assert tuple(batches[-1][0].shape) == (n % bs, 3)
    assert len(iter(dl)) == len(dl)


def test_batch_values_match_the_dataset():
    x = rbe.randn(9, 2, 3)
    batches = list(DataLoader(TensorDataset(x), batch_size=4))
    got = np.concatenate([b.numpy() for (b,) in batches])
    np.testing.assert_array_equal(got, x.numpy())
    assert tuple(batches[0][0].shape) == (4, 2, 3)


# ---------------------------------------------------------------- shuffling
def test_shuffle_is_a_permutation_each_epoch_and_epochs_differ():
    dl = DataLoader(TensorDataset(rbe.arange(100)), batch_size=16, shuffle=True)
    epochs = [flat(dl) for _ in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(100))
        assert e != list(range(100))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_shuffle_reproducible_under_manual_seed():
    dl = DataLoader(TensorDataset(rbe.arange(50)), batch_size=7, shuffle=True)
    rbe.manual_seed(123)
    a1, a2 = flat(dl), flat(dl)
    rbe.manual_seed(123)
    b1, b2 = flat(dl), flat(dl)
    assert (a1, a2) == (b1, b2) and a1 != a2
    rbe.manual_seed(124)
    assert flat(dl) != a1
    # the order is rbe.randperm's under the same seed
    rbe.manual_seed(123)
    assert a1 == rbe.randperm(50).tolist()


def test_shuffle_with_generator_is_reproducible_and_leaves_the_default_stream_alone():
    ds = TensorDataset(rbe.arange(40))

    def run(seed):
        dl = DataLoader(ds, batch_size=8, shuffle=True, generator=rbe.Generator().manual_seed(seed))
        return flat(dl), flat(dl)

    rbe.manual_seed(0)
    first = run(5)
    after = rbe.rand(3).tolist()
    rbe.manual_seed(99)
    assert run(5) == first  # independent of the default seed
    assert first[0] != first[1] and run(6) != first
    rbe.manual_seed(0)
    assert rbe.rand(3).tolist() == after  # the explicit generator did not consume the default stream
    # torch.default_generator-style code: rbe.default_generator means the default generator
    rbe.manual_seed(7)
    a = flat(DataLoader(ds, batch_size=40, shuffle=True, generator=rbe.default_generator))
    rbe.manual_seed(7)
    assert a == flat(DataLoader(ds, batch_size=40, shuffle=True))


# ---------------------------------------------------------------- collation
COLLATE_CASES = {
    "ints": [1, 2, 3],
    "floats": [1.5, 2.0],
    "bools": [True, False, True],
    "tensors": [rbe.tensor([1.0, 2.0]), rbe.tensor([3.0, 4.0])],
    "tuples": [(rbe.tensor([1.0]), 0, 0.5), (rbe.tensor([2.0]), 1, 1.5)],
    "lists": [[1, 2], [3, 4], [5, 6]],
    "dicts": [{"a": rbe.ones(2), "b": 1, "s": "x"}, {"a": rbe.zeros(2), "b": 2, "s": "y"}],
    "numpy": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), dtype=np.float32)],
    "numpy_scalars": [np.float64(0.5), np.float64(1.5)],
    "namedtuple": [Point(rbe.ones(2), 1), Point(rbe.zeros(2), 2)],
    "nested": [{"img": np.zeros(2), "meta": {"id": 1, "tags": (True, 3.0)}, "pts": [rbe.ones(1), 5]},
               {"img": np.ones(2), "meta": {"id": 2, "tags": (False, 4.0)}, "pts": [rbe.zeros(1), 6]}],
    "strings": ["a", "b"],
}


@pytest.mark.parametrize("name", sorted(COLLATE_CASES))
def test_default_collate_structure_matches_torch(name):
    batch = COLLATE_CASES[name]
    ours = default_collate(batch)
    theirs = torch.utils.data.default_collate([to_torch(s) for s in batch])
    assert plain(ours) == plain(theirs)


def test_default_collate_dtypes_and_containers():
    assert default_collate([1, 2]).dtype == rbe.int64
    assert default_collate([1.0, 2.0]).dtype == rbe.get_default_dtype()
    assert default_collate([True, False]).dtype == rbe.bool
    assert default_collate([np.float64(1.0)]).dtype == rbe.float64
    assert default_collate([np.zeros(2, np.float32)]).dtype == rbe.float32
    assert default_collate([np.zeros(2, np.int32)]).dtype == rbe.int64  # rbe has no int32
    rbe.set_default_dtype(rbe.float64)
    try:
        assert default_collate([1.0, 2.0]).dtype == rbe.float64
    finally:
        rbe.set_default_dtype(rbe.float32)
    out = default_collate([(rbe.zeros(3), 1), (rbe.ones(3), 2)])
    assert isinstance(out, tuple) and len(out) == 2 and tuple(out[0].shape) == (2, 3)
    out = default_collate([[rbe.zeros(3), 1], [rbe.ones(3), 2]])
    assert isinstance(out, list) and out[1].tolist() == [1, 2]
    p = default_collate(COLLATE_CASES["namedtuple"])
    assert isinstance(p, Point) and tuple(p.x.shape) == (2, 2) and p.y.tolist() == [1, 2]
    od = default_collate([collections.OrderedDict(b=1, a=2), collections.OrderedDict(b=3, a=4)])
    assert isinstance(od, collections.OrderedDict) and list(od) == ["b", "a"] and od["a"].tolist() == [2, 4]
    nested = default_collate(COLLATE_CASES["nested"])
    assert isinstance(nested["meta"]["tags"], tuple) and nested["meta"]["tags"][0].dtype == rbe.bool
    assert tuple(nested["img"].shape) == (2, 2) and nested["img"].dtype == rbe.float64


def test_default_collate_keeps_the_graph():
    w = rbe.tensor([1.0, 2.0], requires_grad=True)
    out = default_collate([w * 2, w * 3])
    out.sum().backward()
    assert w.grad.tolist() == [5.0, 5.0]


def test_default_collate_errors():
    with pytest.raises(RuntimeError):
        default_collate([rbe.zeros(2), rbe.zeros(3)])
    with pytest.raises(RuntimeError):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError):
        default_collate([object(), object()])
    with pytest.raises(TypeError):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_default_convert_and_unbatched_loader():
    out = default_convert({"a": np.arange(3), "b": [np.float32(1.0), "s"], "c": 2})
    assert isinstance(out["a"], rbe.Tensor) and out["a"].tolist() == [0, 1, 2]
    assert isinstance(out["b"][0], rbe.Tensor) and out["b"][1] == "s" and out["c"] == 2

    class Arrays(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full(2, i, dtype=np.float64)

    dl = DataLoader(Arrays(), batch_size=None)
    items = list(dl)
    assert len(dl) == 3 and all(isinstance(t, rbe.Tensor) and tuple(t.shape) == (2,) for t in items)
    assert [t.tolist() for t in items] == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]


def test_loader_over_a_custom_dataset_of_dicts():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": float(i), "y": i * i, "v": np.array([i, -i])}

    batches = list(DataLoader(Squares(), batch_size=2))
    assert [b["y"].tolist() for b in batches] == [[0, 1], [4, 9], [16]]
    assert batches[0]["x"].dtype == rbe.float32 and batches[1]["v"].tolist() == [[2, -2], [3, -3]]


# ---------------------------------------------------------------- random_split
@pytest.mark.parametrize("n,lengths", [(23, [10, 13]), (23, [0.3, 0.3, 0.4]), (10, [0.33, 0.33, 0.34]),
                                       (7, [0.1, 0.9]), (5, [0.5, 0.5]), (101, [0.7, 0.2, 0.1]),
                                       (9, [1 / 3, 1 / 3, 1 / 3]), (4, [0.25, 0.25, 0.25, 0.25]), (0, [0, 0])])
def test_random_split_sizes_match_torch_and_parts_are_disjoint(n, lengths):
    ds = TensorDataset(rbe.arange(n)) if n else list(range(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = random_split(ds, lengths, generator=rbe.Generator().manual_seed(0))
        tparts = tud.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [len(p) for p in tparts]
    idx = [i for p in parts for i in p.indices]
    assert sorted(idx) == list(range(n))  # disjoint and covering
    if n:
        assert [p[j][0].item() for p in parts for j in range(len(p))] == idx


def test_random_split_fraction_rule_on_random_fractions():
    rng = np.random.default_rng(0)
    for _ in range(30):
        k, n = int(rng.integers(2, 6)), int(rng.integers(1, 200))
        fr = rng.random(k)
        fr = list(fr / fr.sum())
        if not (math.isclose(sum(fr), 1) and sum(fr) <= 1):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = [len(p) for p in random_split(range(n), fr)]
            theirs = [len(p) for p in tud.random_split(range(n), fr)]
        assert ours == theirs and sum(ours) == n


def test_random_split_reproducibility_and_errors():
    ds = TensorDataset(rbe.arange(30))
    a = random_split(ds, [10, 20], generator=rbe.Generator().manual_seed(1))
    b = random_split(ds, [10, 20], generator=rbe.Generator().manual_seed(1))
    c = random_split(ds, [10, 20], generator=rbe.Generator().manual_seed(2))
    assert a[0].indices == b[0].indices and a[1].indices == b[1].indices and a[0].indices != c[0].indices
    rbe.manual_seed(3)
    d = random_split(ds, [0.5, 0.5])
    rbe.manual_seed(3)
    assert random_split(ds, [0.5, 0.5])[0].indices == d[0].indices
    assert sorted(a[0].indices) != list(range(10))  # actually shuffled
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [10, 10])
    with pytest.raises(ValueError):
        random_split(ds, [0.5, 0.4])
    with pytest.raises(ValueError, match="between 0 and 1"):
        random_split(ds, [1.5, -0.5])
    with pytest.raises(ValueError):
        random_split(ds, [31, -1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sizes = [len(p) for p in random_split(TensorDataset(rbe.arange(2)), [0.9, 0.05, 0.05])]
    assert sizes == [2, 0, 0]
    assert [str(w.message) for w in caught] == [f"Length of split at index {i} is 0. This might result in an empty dataset."
                                                for i in (1, 2)]


# ---------------------------------------------------------------- samplers
def test_sequential_random_and_subset_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3] and len(SequentialSampler(range(4))) == 4
    rs = RandomSampler(range(20), generator=rbe.Generator().manual_seed(0))
    e1, e2 = list(rs), list(rs)
    assert sorted(e1) == sorted(e2) == list(range(20)) and e1 != e2 and len(rs) == 20
    assert list(RandomSampler(range(20), generator=rbe.Generator().manual_seed(0))) == e1
    # without replacement, more samples than items: whole permutations, then a cut one
    many = list(RandomSampler(range(5), num_samples=12))
    assert len(many) == 12 and sorted(many[:5]) == sorted(many[5:10]) == list(range(5)) and len(set(many[10:])) == 2
    rep = RandomSampler(range(3), replacement=True, num_samples=300)
    draws = list(rep)
    assert len(rep) == 300 and len(draws) == 300 and set(draws) == {0, 1, 2}
    few = list(RandomSampler(range(10), num_samples=4))
    assert len(few) == 4 and len(set(few)) == 4
    srs = SubsetRandomSampler([10, 20, 30, 40], generator=rbe.Generator().manual_seed(0))
    got = list(srs)
    assert sorted(got) == [10, 20, 30, 40] and len(srs) == 4
    with pytest.raises(ValueError):
        RandomSampler(range(0))
    with pytest.raises(ValueError):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError):
        RandomSampler(range(3), replacement=1)


def test_batch_sampler_matches_torch():
    for n, bs, dl in [(5, 2, False), (5, 2, True), (6, 3, False), (2, 4, True), (2, 4, False)]:
        ours = BatchSampler(SequentialSampler(range(n)), bs, dl)
        theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), bs, dl)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            BatchSampler(range(4), bad, False)
    with pytest.raises(ValueError):
        BatchSampler(range(4), 2, 1)


def test_loader_with_sampler_batch_sampler_and_collate_fn():
    ds = TensorDataset(rbe.arange(10))

    class Evens(Sampler[int]):
        def __iter__(self):
            return iter(range(0, 10, 2))

        def __len__(self):
            return 5

    dl = DataLoader(ds, batch_size=2, sampler=Evens())
    assert flat(dl) == [0, 2, 4, 6, 8] and len(dl) == 3
    dl = DataLoader(ds, batch_sampler=[[9, 1], [3]])
    assert [b.tolist() for (b,) in dl] == [[9, 1], [3]] and len(dl) == 2
    dl = DataLoader(ds, batch_size=4, collate_fn=lambda samples: sum(s[0].item() for s in samples))
    assert list(dl) == [6, 22, 17]
    # num_workers > 0 is accepted and loads in-process, same batches
    assert flat(DataLoader(ds, batch_size=3, num_workers=2)) == list(range(10))
    assert get_worker_info() is None


def test_iterable_dataset_loader():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter({"v": i, "sq": float(i * i)} for i in range(7))

        def __len__(self):
            return 7

    dl = DataLoader(Stream(), batch_size=3)
    batches = list(dl)
    assert [b["v"].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]] and len(dl) == 3
    dl = DataLoader(Stream(), batch_size=3, drop_last=True)
    assert len(list(dl)) == len(dl) == 2
    with pytest.raises(ValueError):
        DataLoader(Stream(), shuffle=True)
    with pytest.raises(ValueError):
        DataLoader(Stream(), sampler=[0, 1])
    with pytest.raises(ValueError):
        DataLoader(Stream(), batch_size=0)


def test_loader_argument_errors_like_torch():
    ds = TensorDataset(rbe.arange(4))
    bad = [dict(batch_size=0), dict(batch_size=-2), dict(shuffle=True, sampler=SequentialSampler(ds)),
           dict(batch_sampler=[[0]], batch_size=2), dict(batch_sampler=[[0]], shuffle=True),
           dict(batch_sampler=[[0]], drop_last=True), dict(batch_size=None, drop_last=True),
           dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2), dict(persistent_workers=True)]
    for kwargs in bad:
        with pytest.raises(ValueError):
            tud.DataLoader(tud.TensorDataset(torch.arange(4)), **kwargs)  # torch rejects it too
        with pytest.raises(ValueError):
            DataLoader(ds, **kwargs)
    dl = DataLoader(ds, batch_size=2)
    with pytest.raises(ValueError):
        dl.batch_size = 3
