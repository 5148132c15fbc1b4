"""``RBELinear``: a linear layer whose weight matrix is generated block by
block from a few 128-bit atoms (RBE structured weights).

See ``docs/rbe.md`` for the model, the choices made where the specification
is silent, and the size/accuracy study.
"""
from __future__ import annotations

import math
import operator
import weakref
from collections import namedtuple
from typing import Optional, Tuple, Union

import numpy as np

from .._core import structured as _native
from .._grad import no_grad_ctx as _no_grad
from ..nn.modules.module import Module
from ..nn.parameter import Parameter

__all__ = ["RBELinear", "RBESizeReport"]

#: ``(B, J, K, bits, ratio, rmse, rel_frob, energy)``: block shape, atoms and
#: residual coefficients per block, stored bits (spec section 6), compression
#: ratio against float32, and the errors of the stored (quantised) matrix
#: against a reference.
RBESizeReport = namedtuple("RBESizeReport", ["B", "J", "K", "bits", "ratio", "rmse", "rel_frob", "energy"])

#: Bytes of the fixed header of a packed layer (magic, version, shape, block,
#: J, K, kappa, flags), counted in ``size_report().bits``.
HEADER_BYTES = 40
_MAGIC = "RBE1"

_TRACKS = ("sin", "tanh", "mixed")


def _block_pair(block) -> Tuple[int, int]:
    if isinstance(block, int):
        block = (block, block)
    try:
        br, bc = (int(b) for b in block)
    except (TypeError, ValueError):
        raise TypeError(f"RBELinear: block must be an int or a pair of ints, got {block!r}") from None
    if br < 1 or bc < 1 or br * bc > 65536:
        raise ValueError(f"RBELinear: block must be at least 1x1 and hold at most 65536 entries, got {br}x{bc}")
    return br, bc


def low_frequency_indices(br: int, bc: int, k: int) -> np.ndarray:
    """The ``k`` DCT coefficients of lowest frequency (order of ``u + v``,
    then ``u``), as flat indices ``u * bc + v``."""
    pairs = sorted(((u + v, u, v) for u in range(br) for v in range(bc)))[:k]
    return np.array(sorted(u * bc + v for _, u, v in pairs), dtype=np.int64)


class RBELinear(Module):
    r"""``y = x W^T + b`` with ``W`` generated from RBE atoms.

    The ``out x in`` matrix is cut into ``block = (Br, Bc)`` blocks; each
    block is ``sum_a A_a g_a(kx_a x + ky_a y + phi_a)`` over ``atoms`` atoms
    (``g`` = sin or tanh, the atom's *track*) plus ``residual`` coefficients
    of its orthonormal 2-D DCT. ``W`` is never materialised in the forward or
    backward pass: SIN atoms and residual terms are separable (rank 2 and
    rank 1), TANH atoms are generated tile by tile.

    Args:
        in_features, out_features: as for ``nn.Linear``.
        block: block shape ``(Br, Bc)`` (or one int for square blocks).
        atoms: atoms per block ``J``.
        residual: DCT residual coefficients per block ``K`` (default 0).
        track: ``"sin"``, ``"tanh"`` or ``"mixed"`` (even atoms SIN, odd TANH).
        bias: learn an additive bias.
        kappa: frequency scale; default ``pi max(Br, Bc) / (4 artanh(1 - 2^-20))``.

    Parameters: ``atoms`` of shape ``(n_blocks, J, 4)`` holding
    ``(A, phi, px, py)`` (wave vector ``k = 2 kappa p``), ``residual``
    ``(n_blocks, K)`` and ``bias``. Buffers: ``tracks`` (``(n_blocks, J)``,
    0 = SIN, 1 = TANH) and ``residual_index`` (``u * Bc + v``).

    The track gradient (``gamma``, spec section 5) is computed when
    ``track_grad_enabled`` is True (the hybrid optimiser turns it on) and is
    then available as ``layer.track_grad``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        block: Union[int, Tuple[int, int]] = (64, 64),
        atoms: int = 4,
        residual: int = 0,
        track: str = "sin",
        bias: bool = True,
        kappa: Optional[float] = None,
        dtype=None,
        device=None,
    ):
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"RBELinear: feature counts must be positive, got in={in_features}, out={out_features}")
        if int(atoms) < 0 or int(residual) < 0:
            raise ValueError(f"RBELinear: atoms and residual must be non-negative, got atoms={atoms}, residual={residual}")
        if track not in _TRACKS:
            raise ValueError(f"RBELinear: track must be one of {_TRACKS}, got {track!r}")
        br, bc = _block_pair(block)
        if residual > br * bc:
            raise ValueError(f"RBELinear: residual={residual} exceeds the {br * bc} DCT coefficients of a {br}x{bc} block")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.block = (br, bc)
        self.n_atoms, self.n_residual = int(atoms), int(residual)
        self.track = track
        self.kappa = float(kappa) if kappa is not None else _native.default_kappa(br, bc)
        if not (math.isfinite(self.kappa) and self.kappa > 0):
            raise ValueError(f"RBELinear: kappa must be finite and positive, got {kappa}")
        self.grid = (-(-self.out_features // br), -(-self.in_features // bc))
        nb = self.grid[0] * self.grid[1]
        from .. import empty, get_default_dtype, zeros, tensor

        dt = dtype if dtype is not None else get_default_dtype()
        self.atoms = Parameter(empty(nb, self.n_atoms, 4, dtype=dt))
        if self.n_residual:
            self.residual = Parameter(zeros(nb, self.n_residual, dtype=dt))
            idx = np.tile(low_frequency_indices(br, bc, self.n_residual), (nb, 1))
            self.register_buffer("residual_index", tensor(idx))
        else:
            self.register_parameter("residual", None)
            self.register_buffer("residual_index", None)
        tr = np.zeros((nb, self.n_atoms))
        if track == "tanh":
            tr[:] = 1.0
        elif track == "mixed":
            tr[:, 1::2] = 1.0
        self.register_buffer("tracks", tensor(tr, dtype=dt))
        if bias:
            self.bias = Parameter(empty(self.out_features, dtype=dt))
        else:
            self.register_parameter("bias", None)
        self._pack_chart = "tangent"
        self._tensors_replaced()
        self.reset_parameters()

    def _tensors_replaced(self) -> None:
        """Tags ``atoms`` with a weak reference to this layer, so that
        optimisers given only parameters (``RBEHybrid``, ``RiemannianAdam``)
        can find it. Called again whenever the parameter object is replaced
        (``.to()``, ``.double()``, copies, unpickling)."""
        self.atoms._rbe_layer = weakref.ref(self)

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._tensors_replaced()

    # ----------------------------------------------------------------- setup
    @property
    def layout(self) -> Tuple[int, int, int, int, float]:
        """``(out, in, Br, Bc, kappa)`` as the core ops take it."""
        return (self.out_features, self.in_features, self.block[0], self.block[1], self.kappa)

    @property
    def n_blocks(self) -> int:
        return self.grid[0] * self.grid[1]

    def reset_parameters(self, generator=None) -> None:
        """Random initialisation scaled like ``nn.Linear``: ``Var(W_ij) ~ 1/(3 in)``.

        Amplitudes ``N(0, sqrt(2 / (3 in J)))`` (``E[sin^2] = 1/2`` under a
        uniform phase), phases uniform in ``[-pi, pi)``, wave vectors uniform
        in the disk of half the grid's Nyquist frequency, residual zero,
        bias uniform in ``+-1/sqrt(in)``.
        """
        from .. import rand, randn

        nb, j = self.n_blocks, self.n_atoms
        with _no_grad():
            if j:
                dt = self.atoms.dtype
                amp = randn(nb, j, generator=generator, dtype=dt) * math.sqrt(2.0 / (3.0 * self.in_features * j))
                phase = (rand(nb, j, generator=generator, dtype=dt) * 2.0 - 1.0) * math.pi
                k_max = 0.5 * math.pi * max(self.block) / 2.0
                rad = rand(nb, j, generator=generator, dtype=dt).sqrt() * (k_max / (2.0 * self.kappa))
                ang = rand(nb, j, generator=generator, dtype=dt) * (2.0 * math.pi)
                from .. import stack

                self.atoms.copy_(stack([amp, phase, rad * ang.cos(), rad * ang.sin()], -1))
            if self.residual is not None:
                self.residual.zero_()
            if self.bias is not None:
                b = 1.0 / math.sqrt(self.in_features)
                self.bias.copy_((rand(self.out_features, generator=generator, dtype=self.bias.dtype) * 2.0 - 1.0) * b)

    @property
    def track_grad_enabled(self) -> bool:
        """Whether the backward pass computes ``gamma = dL/d(track)``."""
        return bool(self.tracks.requires_grad)

    @track_grad_enabled.setter
    def track_grad_enabled(self, on: bool) -> None:
        self.tracks.requires_grad_(bool(on))
        if not on:
            self.tracks.grad = None

    @property
    def track_grad(self):
        """``gamma`` per atom, ``(n_blocks, J)``, from the last backward (None if not computed)."""
        return self.tracks.grad

    # ---------------------------------------------------------------- compute
    def forward(self, input):
        return _native.linear(input, self.layout, self.atoms, self.tracks, self.residual, self.residual_index, self.bias)

    def weight_matrix(self):
        """The generated ``out x in`` matrix (differentiable)."""
        return _native.generate(self.layout, self.atoms, self.tracks, self.residual, self.residual_index)

    def to_dense(self):
        """The generated ``out x in`` matrix as a plain tensor (no graph)."""
        with _no_grad():
            return self.weight_matrix().detach()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, block={self.block}, "
            f"atoms={self.n_atoms}, residual={self.n_residual}, track={self.track!r}, bias={self.bias is not None}"
        )

    # ------------------------------------------------------------ storage
    def bits(self) -> int:
        """Stored bits: ``n_blocks (128 J + 32 K)`` plus the header (spec section 6).
        The bias, when present, is stored as float32 on top of this."""
        return self.n_blocks * (128 * self.n_atoms + 32 * self.n_residual) + 8 * HEADER_BYTES

    def to_packed(self, chart: Optional[str] = None) -> dict:
        """The layer as Packed128 records.

        Returns a dict: ``header`` (a dict of the layout), ``records``
        (``uint64`` array ``(n_blocks * J, 2)``: ``hi``, ``lo`` per atom),
        ``residual_index`` (``uint16``), ``residual_value`` (``float16``),
        ``bias`` (``float32`` or None). Quantisation happens here: phase to
        20 bits, amplitude to a 16-bit log code, frequencies to f32.

        ``chart``: ``"tangent"`` (default) stores the training coordinates
        ``(px, py)`` as f32, which is lossless for a float32 layer, so
        ``from_packed(to_packed())`` round-trips bit for bit; ``"polar"``
        stores the disk point ``(r, theta)`` (the prototypes' layout; the
        frequency error grows like ``ulp(r) / (1 - r^2)`` near the rim, and a
        float32 layer cannot hold the decoded point exactly, so only float64
        layers round-trip bit for bit); ``"auto"`` is polar unless ``r``
        saturates to 1 in f32. Defaults to the chart the layer was loaded with.
        """
        chart = self._pack_chart if chart is None else chart
        fields = self.atoms.detach().double().numpy().reshape(-1)
        tracks = self.tracks.detach().numpy().reshape(-1)
        if np.any((tracks != 0) & (tracks != 1)):
            raise ValueError("RBELinear.to_packed: tracks must be exactly 0 or 1 to be stored (a relaxed track is not a record)")
        raw = _native.pack(fields.tolist(), tracks.astype(np.uint8).tolist(), chart)
        records = np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy()
        header = {
            "magic": _MAGIC,
            "version": 1,
            "out_features": self.out_features,
            "in_features": self.in_features,
            "block": self.block,
            "atoms": self.n_atoms,
            "residual": self.n_residual,
            "kappa": self.kappa,
            "chart": chart,
            "track": self.track,
        }
        if self.n_residual:
            ridx = self.residual_index.numpy().astype(np.uint16)
            rval = self.residual.detach().numpy().astype(np.float16)
            if not np.all(np.isfinite(rval)):
                raise ValueError("RBELinear.to_packed: residual values overflow float16 (|value| > 65504) or are not finite")
        else:
            ridx = np.zeros((self.n_blocks, 0), np.uint16)
            rval = np.zeros((self.n_blocks, 0), np.float16)
        bias = None if self.bias is None else self.bias.detach().numpy().astype(np.float32)
        return {"header": header, "records": records, "residual_index": ridx, "residual_value": rval, "bias": bias}

    @classmethod
    def from_packed(cls, packed: dict, dtype=None) -> "RBELinear":
        """Rebuild a layer from ``to_packed()`` output (records are validated;
        a malformed record raises ``ValueError``)."""
        try:
            h = packed["header"]
            records = np.asarray(packed["records"])
        except (KeyError, TypeError):
            raise ValueError("RBELinear.from_packed: expected a dict with 'header' and 'records' (from to_packed())") from None
        if not isinstance(h, dict) or h.get("magic") != _MAGIC or h.get("version") != 1:
            raise ValueError(f"RBELinear.from_packed: unknown header magic/version {h.get('magic')!r}/{h.get('version')!r}" if isinstance(h, dict) else "RBELinear.from_packed: the header must be a dict")
        # everything is checked against the records before the layer (whose
        # size the header claims) is allocated
        try:
            fin, fout, j, k = (operator.index(h[key]) for key in ("in_features", "out_features", "atoms", "residual"))
            br, bc = (operator.index(v) for v in h["block"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("RBELinear.from_packed: the header needs integer in_features, out_features, atoms, residual and a (rows, cols) block") from None
        if min(fin, fout, br, bc) <= 0 or min(j, k) < 0:
            raise ValueError(f"RBELinear.from_packed: bad layout in the header: in={fin}, out={fout}, block=({br}, {bc}), atoms={j}, residual={k}")
        nb = -(-fout // br) * -(-fin // bc)
        if records.dtype != np.uint64 or records.shape != (nb * j, 2):
            raise ValueError(f"RBELinear.from_packed: records must be uint64 of shape ({nb * j}, 2) for the header's layout, got {records.dtype} {records.shape}")
        if k:
            ridx = np.asarray(packed.get("residual_index"))
            rval = np.asarray(packed.get("residual_value"))
            if ridx.shape != (nb, k) or rval.shape != (nb, k):
                raise ValueError(f"RBELinear.from_packed: residual arrays must have shape ({nb}, {k}), got {ridx.shape} and {rval.shape}")
            if not np.issubdtype(ridx.dtype, np.integer) or np.any(ridx < 0) or np.any(ridx >= br * bc):
                raise ValueError("RBELinear.from_packed: a residual index is outside its block")
            if not np.all(np.isfinite(rval.astype(np.float64))):
                raise ValueError("RBELinear.from_packed: residual values must be finite")
        if packed.get("bias") is not None:
            b = np.asarray(packed["bias"], dtype=np.float64)
            if b.shape != (fout,) or not np.all(np.isfinite(b)):
                raise ValueError(f"RBELinear.from_packed: bias must be {fout} finite values, got shape {b.shape}")
        layer = cls(
            h["in_features"], h["out_features"], block=tuple(h["block"]), atoms=h["atoms"], residual=h["residual"],
            track=h.get("track", "sin"), bias=packed.get("bias") is not None, kappa=h["kappa"], dtype=dtype,
        )
        assert (nb, j, k) == (layer.n_blocks, layer.n_atoms, layer.n_residual)
        fields, tracks = _native.unpack(records.astype("<u8").tobytes())
        from .. import tensor

        dt = layer.atoms.dtype
        with _no_grad():
            layer.atoms.copy_(tensor(np.array(fields).reshape(nb, j, 4), dtype=dt))
            layer.tracks.copy_(tensor(np.frombuffer(bytes(tracks), dtype=np.uint8).astype(np.float64).reshape(nb, j), dtype=dt))
            if k:
                layer.residual_index = tensor(ridx.astype(np.int64))
                layer.residual.copy_(tensor(rval.astype(np.float64), dtype=dt))
            if layer.bias is not None:
                layer.bias.copy_(tensor(np.asarray(packed["bias"], dtype=np.float64), dtype=dt))
        layer._pack_chart = h.get("chart", "auto")
        return layer

    def quantized(self) -> "RBELinear":
        """A copy holding exactly what ``to_packed()`` stores."""
        return RBELinear.from_packed(self.to_packed(), dtype=self.atoms.dtype)

    def size_report(self, W_ref=None) -> RBESizeReport:
        """``(B, J, K, bits, ratio, rmse, rel_frob, energy)`` of the stored layer.

        The errors compare the matrix the packed records generate with
        ``W_ref`` (default: this layer's own unquantised matrix, so the
        errors are then the export's quantisation error). ``energy`` is the
        captured fraction ``1 - |W_ref - W|^2 / |W_ref|^2``.
        """
        ref = self.to_dense() if W_ref is None else W_ref
        ref = np.asarray(ref.detach().double().numpy() if hasattr(ref, "detach") else ref, dtype=np.float64)
        if ref.shape != (self.out_features, self.in_features):
            raise ValueError(f"size_report: W_ref must have shape ({self.out_features}, {self.in_features}), got {ref.shape}")
        w = self.quantized().to_dense().double().numpy()
        err = ref - w
        e2, r2 = float((err**2).sum()), float((ref**2).sum())
        bits = self.bits()
        dense_bits = 32 * self.out_features * self.in_features
        rel = math.sqrt(e2 / r2) if r2 > 0 else (0.0 if e2 == 0 else math.inf)
        energy = 1.0 - e2 / r2 if r2 > 0 else (1.0 if e2 == 0 else -math.inf)
        return RBESizeReport(self.block, self.n_atoms, self.n_residual, bits, dense_bits / bits, math.sqrt(e2 / err.size), rel, energy)

    @classmethod
    def from_dense(
        cls, W, block=(64, 64), atoms=4, residual=0, track="sin", bias=None, kappa=None, refine_steps=200, lr=0.02,
        dtype=None, oversample=8, verbose=False,
    ):
        """An ``RBELinear`` approximating the dense ``W`` (``out x in``).

        Matching pursuit per block: each atom in turn takes the strongest wave of
        what the previous atoms missed (the peak of an ``oversample``-times
        zero-padded 2-D FFT, amplitude and phase by least squares; TANH atoms by
        a search over frequency scales and offsets along the peak's direction;
        ``track="mixed"`` keeps whichever captures more energy). The top-``K``
        DCT coefficients of the remaining error become the residual. Then
        ``refine_steps`` Adam steps on ``|W_rbe - W|^2`` move all atoms jointly,
        and the residual is re-selected. ``bias`` (optional) is copied.
        """
        return _from_dense(cls, W, block, atoms, residual, track, bias, kappa, refine_steps, lr, dtype, oversample, verbose)


# --------------------------------------------------------------------------
# Initialisation from a dense matrix: matching pursuit, then refinement.


def _blocks_of(W: np.ndarray, br: int, bc: int) -> Tuple[np.ndarray, np.ndarray]:
    """``W`` cut into zero-padded blocks ``(n_blocks, br, bc)`` and the mask of real entries."""
    out, inp = W.shape
    nbr, nbc = -(-out // br), -(-inp // bc)
    pad = np.zeros((nbr * br, nbc * bc))
    pad[:out, :inp] = W
    mask = np.zeros_like(pad)
    mask[:out, :inp] = 1.0
    cut = lambda a: a.reshape(nbr, br, nbc, bc).transpose(0, 2, 1, 3).reshape(nbr * nbc, br, bc)
    return cut(pad), cut(mask)


def _pursuit(E: np.ndarray, M: np.ndarray, br: int, bc: int, want: np.ndarray, oversample: int):
    """One greedy atom per block for the masked residual blocks ``E``:
    returns ``(A, phi, kx, ky, track, fitted blocks)``. ``want`` per block is
    0 (SIN), 1 (TANH) or 2 (whichever captures more energy)."""
    nb = E.shape[0]
    x = (2 * np.arange(bc) + 1) / bc - 1
    y = (2 * np.arange(br) + 1) / br - 1
    Lr, Lc = oversample * br, oversample * bc
    F = np.fft.fft2(E * M, s=(Lr, Lc))
    # bin (my, mx) <-> wave vector (pi my / s, pi mx / s); keep mx in the half plane [0, Lc/2]
    mags = np.abs(F[:, :, : Lc // 2 + 1]).reshape(nb, -1)
    best = mags.argmax(axis=1)
    my, mx = np.divmod(best, Lc // 2 + 1)
    my = np.where(my > Lr // 2, my - Lr, my)
    kx = np.pi * mx / oversample
    ky = np.pi * my / oversample
    theta = kx[:, None, None] * x[None, None, :] + ky[:, None, None] * y[None, :, None]
    # least squares a sin(theta) + b cos(theta) on the mask
    s, c = np.sin(theta) * M, np.cos(theta) * M
    ss, cc, sc = (s * s).sum((1, 2)), (c * c).sum((1, 2)), (s * c).sum((1, 2))
    es, ec = (E * s).sum((1, 2)), (E * c).sum((1, 2))
    # a tiny ridge keeps the solve finite where sin or cos vanishes on the grid
    lam = 1e-9 * (ss + cc) + 1e-300
    ss, cc = ss + lam, cc + lam
    det = ss * cc - sc * sc
    a = (es * cc - ec * sc) / det
    b = (ec * ss - es * sc) / det
    sin_fit = a[:, None, None] * s + b[:, None, None] * c
    sin_gain = (E * sin_fit).sum((1, 2))
    amp = np.hypot(a, b)
    phi = np.arctan2(b, a)
    res = dict(amp=amp, phi=phi, kx=kx, ky=ky, track=np.zeros(nb), fit=sin_fit)
    if np.any(want != 0):
        # TANH: a ridge tanh(theta' + phi) along the peak's direction, over a
        # few frequency scales and phase offsets; amplitude by least squares
        t_gain = np.full(nb, -np.inf)
        t_par = np.zeros((nb, 4))
        t_fit = np.zeros_like(E)
        for scale in (0.125, 0.25, 0.5, 1.0):
            th = theta * scale
            for ph in np.linspace(-np.pi, np.pi, 16, endpoint=False):
                t = np.tanh(th + ph) * M
                tt = (t * t).sum((1, 2))
                et = (E * t).sum((1, 2))
                A = et / np.maximum(tt, 1e-300)
                gain = et * A
                better = gain > t_gain
                t_gain = np.where(better, gain, t_gain)
                t_par[better] = np.stack([A, np.full(nb, ph), kx * scale, ky * scale], 1)[better]
                t_fit[better] = (A[:, None, None] * t)[better]
        use_t = (want == 1) | ((want == 2) & (t_gain > sin_gain))
        res["amp"] = np.where(use_t, t_par[:, 0], amp)
        res["phi"] = np.where(use_t, t_par[:, 1], phi)
        res["kx"] = np.where(use_t, t_par[:, 2], kx)
        res["ky"] = np.where(use_t, t_par[:, 3], ky)
        res["track"] = use_t.astype(np.float64)
        res["fit"] = np.where(use_t[:, None, None], t_fit, sin_fit)
    return res


def _from_dense(cls, W, block, atoms, residual, track, bias, kappa, refine_steps, lr, dtype, oversample, verbose):
    from .. import tensor, no_grad
    from ..optim import Adam

    Wn = W.detach().double().numpy() if hasattr(W, "detach") else np.asarray(W, dtype=np.float64)
    if Wn.ndim != 2 or Wn.size == 0:
        raise ValueError(f"RBELinear.from_dense: W must be a non-empty 2-D matrix, got shape {Wn.shape}")
    if not np.all(np.isfinite(Wn)):
        raise ValueError("RBELinear.from_dense: W contains NaN or infinite values")
    out, inp = Wn.shape
    layer = cls(inp, out, block=block, atoms=atoms, residual=residual, track=track, bias=bias is not None, kappa=kappa, dtype=dtype)
    br, bc = layer.block
    nb, J, K = layer.n_blocks, layer.n_atoms, layer.n_residual
    scale = float(np.sqrt(np.mean(Wn**2))) or 1.0
    E, M = _blocks_of(Wn / scale, br, bc)
    fields = np.zeros((nb, J, 4))
    tracks = np.zeros((nb, J))
    for a in range(J):
        want = np.full(nb, {"sin": 0, "tanh": 1, "mixed": 2}[track])
        # in chunks of blocks: the oversampled spectra are large
        step = max(1, (1 << 22) // ((oversample * br) * (oversample * bc)))
        parts = [_pursuit(E[i : i + step], M[i : i + step], br, bc, want[i : i + step], oversample) for i in range(0, nb, step)]
        r = {key: np.concatenate([q[key] for q in parts]) for key in parts[0]}
        fields[:, a] = np.stack([r["amp"], r["phi"], r["kx"] / (2 * layer.kappa), r["ky"] / (2 * layer.kappa)], 1)
        tracks[:, a] = r["track"]
        E = E - r["fit"] * M
    dt = layer.atoms.dtype
    with no_grad():
        layer.atoms.copy_(tensor(fields, dtype=dt))
        layer.tracks.copy_(tensor(tracks, dtype=dt))
    target = tensor(Wn / scale, dtype=dt)

    def set_residual():
        if not K:
            return
        from scipy.fft import dctn

        with no_grad():
            layer.residual.zero_()
            err, _ = _blocks_of(target.numpy() - layer.to_dense().double().numpy(), br, bc)
            coef = dctn(err, axes=(1, 2), norm="ortho").reshape(nb, -1)
            idx = np.sort(np.argsort(-np.abs(coef), axis=1, kind="stable")[:, :K], axis=1)
            layer.residual_index = tensor(idx.astype(np.int64))
            layer.residual.copy_(tensor(np.take_along_axis(coef, idx, 1), dtype=dt))

    set_residual()
    if refine_steps > 0:
        params = [layer.atoms] + ([layer.residual] if K else [])
        opt = Adam(params, lr=lr)
        for step in range(refine_steps):
            opt.zero_grad()
            loss = ((layer.weight_matrix() - target) ** 2).mean()
            loss.backward()
            opt.step()
            if verbose and (step % 50 == 0 or step == refine_steps - 1):
                print(f"from_dense: step {step}: relative MSE {loss.item():.4g}")
            with no_grad():
                # keep TANH offsets inside [-pi, pi) (spec section 3); SIN phases may wrap freely
                ph = layer.atoms[..., 1]
                wrapped = (ph + math.pi) % (2 * math.pi) - math.pi
                layer.atoms[..., 1] = wrapped
        set_residual()
    with no_grad():
        layer.atoms[..., 0] = layer.atoms[..., 0] * scale
        if K:
            layer.residual.mul_(scale)
        if layer.bias is not None:
            b = bias.detach().double().numpy() if hasattr(bias, "detach") else np.asarray(bias, dtype=np.float64)
            if b.shape != (out,):
                raise ValueError(f"RBELinear.from_dense: bias must have shape ({out},), got {b.shape}")
            layer.bias.copy_(tensor(b, dtype=dt))
    return layer
