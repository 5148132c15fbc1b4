//! `rbe._core.structured`: bindings of the RBE front-end (crate
//! `rbe-structured`): the two differentiable ops and the Packed128 record
//! codec. The Python front-end `rbe.structured` (`RBELinear`, ...) builds on
//! these. Stub: `python/rbe/_core/structured.pyi`.
use crate::conv::*;
use crate::tensor::{guard_nogil, PyTensor};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rbe_core::{value_err, Tensor};
use rbe_structured::packed::{self, Atom, ChartChoice, Packed128, Track};
use rbe_structured::{rbe_generate as gen, rbe_linear as lin, Layout, RbeParams};

/// The submodule, exported from `_core` in `lib.rs` (which makes it
/// importable as `rbe._core.structured`). A new function is one name in the
/// `use` list (and its entry in the stub).
#[pymodule(submodule)]
pub mod structured {
    #[pymodule_export]
    use super::{default_kappa, generate, linear, pack, phase_sin_cos, unpack};
}

fn opt_tensor(o: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Tensor>> {
    crate::conv::protect(|| match o {
        Some(v) if !v.is_none() => Ok(Some(tensor_arg(v, what)?)),
        _ => Ok(None),
    })
}

/// `layout = (out, in, br, bc, kappa)`.
type LayoutArg = (usize, usize, usize, usize, f64);

fn layout(l: LayoutArg) -> PyResult<Layout> {
    crate::conv::protect(|| Layout::new(l.0, l.1, l.2, l.3, Some(l.4)).py())
}

#[pyfunction]
#[pyo3(signature = (layout_, atoms, tracks, res_vals=None, res_idx=None))]
pub(crate) fn generate(
    py: Python<'_>,
    layout_: LayoutArg,
    atoms: &Bound<'_, PyAny>,
    tracks: &Bound<'_, PyAny>,
    res_vals: Option<&Bound<'_, PyAny>>,
    res_idx: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let lay = layout(layout_)?;
        let (a, t) = (tensor_arg(atoms, "rbe_generate")?, tensor_arg(tracks, "rbe_generate")?);
        let (rv, ri) = (opt_tensor(res_vals, "rbe_generate")?, opt_tensor(res_idx, "rbe_generate")?);
        let work = lay.out * lay.inp * (a.shape().get(1).copied().unwrap_or(0) + 1);
        guard_nogil(py, work, || gen(&lay, &RbeParams { atoms: &a, tracks: &t, res_vals: rv.as_ref(), res_idx: ri.as_ref() }))
    })
}

#[pyfunction]
#[pyo3(signature = (input, layout_, atoms, tracks, res_vals=None, res_idx=None, bias=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    layout_: LayoutArg,
    atoms: &Bound<'_, PyAny>,
    tracks: &Bound<'_, PyAny>,
    res_vals: Option<&Bound<'_, PyAny>>,
    res_idx: Option<&Bound<'_, PyAny>>,
    bias: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let lay = layout(layout_)?;
        let x = tensor_arg(input, "rbe_linear")?;
        let (a, t) = (tensor_arg(atoms, "rbe_linear")?, tensor_arg(tracks, "rbe_linear")?);
        let (rv, ri) = (opt_tensor(res_vals, "rbe_linear")?, opt_tensor(res_idx, "rbe_linear")?);
        let b = opt_tensor(bias, "rbe_linear")?;
        let work = x.numel().saturating_mul(lay.out) / 8;
        guard_nogil(py, work, || {
            lin(&x, &lay, &RbeParams { atoms: &a, tracks: &t, res_vals: rv.as_ref(), res_idx: ri.as_ref() }, b.as_ref())
        })
    })
}

#[pyfunction]
pub(crate) fn default_kappa(br: usize, bc: usize) -> f64 {
    Layout::default_kappa(br, bc)
}

fn chart_choice(s: &str) -> PyResult<ChartChoice> {
    crate::conv::protect(|| match s {
        "auto" => Ok(ChartChoice::Auto),
        "polar" => Ok(ChartChoice::Polar),
        "tangent" => Ok(ChartChoice::Tangent),
        _ => Err(value_err!("chart must be 'auto', 'polar' or 'tangent', got {s:?}")).py(),
    })
}

/// Pack atoms into records: `fields` is a flat list of `(A, phi, px, py)`
/// (4 per atom), `tracks` one 0/1 per atom. Returns the records as
/// little-endian bytes, `(hi, lo)` per atom.
#[pyfunction]
#[pyo3(signature = (fields, tracks, chart="auto"))]
pub(crate) fn pack<'py>(py: Python<'py>, fields: Vec<f64>, tracks: Vec<u8>, chart: &str) -> PyResult<Bound<'py, PyBytes>> {
    crate::conv::protect(|| {
        let choice = chart_choice(chart)?;
        if fields.len() != 4 * tracks.len() {
            return Err(value_err!("rbe_pack: {} fields for {} tracks (expected 4 per atom)", fields.len(), tracks.len())).py();
        }
        let mut out = Vec::with_capacity(16 * tracks.len());
        for (i, &t) in tracks.iter().enumerate() {
            let track = match t {
                0 => Track::Sin,
                1 => Track::Tanh,
                v => return Err(value_err!("rbe_pack: atom {i} has track {v}; tracks are 0 (SIN) or 1 (TANH)")).py(),
            };
            let f = &fields[4 * i..4 * i + 4];
            let rec = Packed128::pack(&Atom { amp: f[0], phase: f[1], px: f[2], py: f[3], track }, choice)
                .map_err(|e| value_err!("rbe_pack: atom {i}: {e}"))
                .py()?;
            out.extend_from_slice(&rec.hi.to_le_bytes());
            out.extend_from_slice(&rec.lo.to_le_bytes());
        }
        Ok(PyBytes::new(py, &out))
    })
}

/// Decode records (bytes as produced by `pack`): returns the flat fields
/// `(A, phi, px, py)` and the tracks. Invalid records raise `ValueError`.
#[pyfunction]
pub(crate) fn unpack(data: &[u8]) -> PyResult<(Vec<f64>, Vec<u8>)> {
    crate::conv::protect(|| {
        if !data.len().is_multiple_of(16) {
            return Err(value_err!("rbe_unpack: {} bytes is not a whole number of 16-byte records", data.len())).py();
        }
        let n = data.len() / 16;
        let (mut fields, mut tracks) = (Vec::with_capacity(4 * n), Vec::with_capacity(n));
        for i in 0..n {
            let word = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
            let rec = Packed128 { hi: word(16 * i), lo: word(16 * i + 8) };
            let a = rec.unpack().map_err(|e| value_err!("rbe_unpack: record {i}: {e}")).py()?;
            fields.extend_from_slice(&[a.amp, a.phase, a.px, a.py]);
            tracks.push(match a.track {
                Track::Sin => 0,
                Track::Tanh => 1,
            });
        }
        Ok((fields, tracks))
    })
}

/// `(sin, cos)` of the phase-register angles `2 pi q / 2^20`, by exact quadrant reduction.
#[pyfunction]
pub(crate) fn phase_sin_cos(q: Vec<u32>) -> (Vec<f64>, Vec<f64>) {
    (q.iter().map(|&v| packed::phase_sin(v)).collect(), q.iter().map(|&v| packed::phase_cos(v)).collect())
}
