//! Fused optimizer updates: one call updates every parameter of a group in
//! place (no autograd, no temporaries). The formulas follow torch's
//! single-tensor implementations operation by operation.
use crate::elem::Real;
use crate::error::Result;
use crate::tensor::Tensor;
use crate::{dtype_err, shape_err};

fn check(p: &Tensor, others: &[(&Tensor, &str)]) -> Result<()> {
    if !p.dtype().is_float() {
        return Err(dtype_err!("optimizer: parameters must be floating point, got {}", p.dtype().name()));
    }
    if !p.is_contiguous() {
        return Err(shape_err!("optimizer: parameters must be contiguous (got strides {:?})", p.strides()));
    }
    for (k, (t, what)) in others.iter().enumerate() {
        // the kernels write the parameter and the state buffers through
        // mutable slices, so no two of them may share memory
        let shares = |a: &Tensor, b: &Tensor| std::sync::Arc::ptr_eq(a.storage(), b.storage()) && a.numel() > 0;
        if shares(t, p) || others[..k].iter().any(|(u, _)| shares(t, u)) {
            return Err(crate::value_err!(
                "optimizer: {what} shares memory with the parameter or another state tensor of shape {:?}",
                p.shape()
            ));
        }
        if t.shape() != p.shape() || t.dtype() != p.dtype() || !t.is_contiguous() {
            return Err(shape_err!(
                "optimizer: {what} has shape {:?} / dtype {}, expected a contiguous tensor of shape {:?} / dtype {}",
                t.shape(),
                t.dtype().name(),
                p.shape(),
                p.dtype().name()
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

/// SGD with momentum; `bufs[i]` is the momentum buffer (`first[i]`: not yet initialised).
pub fn sgd_step(params: &[Tensor], grads: &[Tensor], bufs: &[Option<Tensor>], first: &[bool], cfg: SgdConfig) -> Result<()> {
    for (i, (p, g)) in params.iter().zip(grads).enumerate() {
        check(p, &[(g, "grad")])?;
        if let Some(b) = &bufs[i] {
            check(p, &[(b, "momentum_buffer")])?;
        }
        crate::dispatch_float!(p.dtype(), "sgd", T => sgd_one::<T>(p, g, bufs[i].as_ref(), first[i], cfg));
        p.storage().bump_version();
    }
    Ok(())
}

fn sgd_one<T: Real>(p: &Tensor, g: &Tensor, buf: Option<&Tensor>, first: bool, c: SgdConfig) {
    // SAFETY: `check` ensured p, g and buf are contiguous tensors of dtype T
    // over pairwise distinct storages; the optimiser owns them during the step.
    let pd = unsafe { p.data_mut::<T>() };
    let gd = g.data::<T>();
    let (lr, mom, damp, wd) = (T::c(c.lr), T::c(c.momentum), T::c(c.dampening), T::c(c.weight_decay));
    // SAFETY: as above.
    let mut bd = buf.map(|b| unsafe { b.data_mut::<T>() });
    for k in 0..pd.len() {
        let mut d = if c.maximize { -gd[k] } else { gd[k] };
        if c.weight_decay != 0.0 {
            d = d + wd * pd[k];
        }
        if let Some(b) = bd.as_deref_mut() {
            b[k] = if first { d } else { b[k] * mom + (T::ONE - damp) * d };
            d = if c.nesterov { d + mom * b[k] } else { b[k] };
        }
        pd[k] = pd[k] - lr * d;
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    /// AdamW: decay the weights directly instead of adding to the gradient.
    pub decoupled: bool,
}

/// Adam / AdamW. `steps[i]` is the step count of parameter i after this update.
pub fn adam_step(
    params: &[Tensor],
    grads: &[Tensor],
    m: &[Tensor],
    v: &[Tensor],
    vmax: &[Option<Tensor>],
    steps: &[u64],
    cfg: AdamConfig,
) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        check(p, &[(&grads[i], "grad"), (&m[i], "exp_avg"), (&v[i], "exp_avg_sq")])?;
        if let Some(x) = &vmax[i] {
            check(p, &[(x, "max_exp_avg_sq")])?;
        }
        if p.dtype() != params[0].dtype() {
            // one group, one dtype per call: mixed groups go parameter by parameter
            for j in 0..params.len() {
                let one = |t: &[Tensor]| vec![t[j].clone()];
                adam_step(&one(params), &one(grads), &one(m), &one(v), &[vmax[j].clone()], &[steps[j]], cfg)?;
            }
            return Ok(());
        }
    }
    if params.is_empty() {
        return Ok(());
    }
    crate::dispatch_float!(params[0].dtype(), "adam", T => adam_group::<T>(params, grads, m, v, vmax, steps, cfg));
    for p in params {
        p.storage().bump_version();
    }
    Ok(())
}

/// Elements per task when an optimizer step runs on the thread pool (updates are
/// elementwise, so the split cannot change any result).
const OPT_CHUNK: usize = 1 << 15;
const OPT_PAR_THRESHOLD: usize = 1 << 18;

/// Runs `f(i, start, end)` over chunks of every parameter `i` of length `lens[i]`:
/// on the pool (entered once) when the step is large, else on this thread.
fn for_chunks(lens: &[usize], f: impl Fn(usize, usize, usize) + Sync) {
    let total: usize = lens.iter().sum();
    if total < OPT_PAR_THRESHOLD || crate::parallel::num_threads() == 1 {
        for (i, &n) in lens.iter().enumerate() {
            f(i, 0, n);
        }
        return;
    }
    let tasks: Vec<(usize, usize, usize)> = lens
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| (0..n.div_ceil(OPT_CHUNK)).map(move |c| (i, c * OPT_CHUNK, ((c + 1) * OPT_CHUNK).min(n))))
        .collect();
    crate::parallel::pool().install(|| {
        use rayon::prelude::*;
        tasks.par_iter().for_each(|&(i, a, b)| f(i, a, b));
    });
}

use crate::parallel::SendPtr as Ptr;

#[derive(Clone, Copy)]
struct AdamK<T> {
    sign: T,
    wd: T,
    decay: T,
    w1: T,
    b2: T,
    one_m_b2: T,
    bc2_sqrt: T,
    eps: T,
    step_size: T,
}

/// One chunk of Adam; WD: 0 none, 1 added to the gradient, 2 decoupled (AdamW).
#[inline(always)]
fn adam_chunk<T: Real, const WD: u8, const AMS: bool>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], x: &mut [T], k: AdamK<T>) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let mut gk = g[i] * k.sign;
        if WD == 2 {
            p[i] = p[i] * k.decay;
        } else if WD == 1 {
            gk = gk + k.wd * p[i];
        }
        // m.lerp_(g, 1 - beta1)
        m[i] = m[i] + k.w1 * (gk - m[i]);
        v[i] = v[i] * k.b2 + k.one_m_b2 * gk * gk;
        let vv = if AMS {
            x[i] = x[i].max_(v[i]);
            x[i]
        } else {
            v[i]
        };
        let denom = vv.sqrt() / k.bc2_sqrt + k.eps;
        p[i] = p[i] - k.step_size * (m[i] / denom);
    }
}

macro_rules! isa_dispatch {
    ($body:ident::<$($g:tt),*>($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
            unsafe fn v512<T: Real, const WD: u8, const AMS: bool>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], x: &mut [T], k: AdamK<T>) {
                $body::<T, WD, AMS>(p, g, m, v, x, k)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn v256<T: Real, const WD: u8, const AMS: bool>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], x: &mut [T], k: AdamK<T>) {
                $body::<T, WD, AMS>(p, g, m, v, x, k)
            }
            if crate::simd::has_avx512() {
                // SAFETY: the features were detected at run time.
                unsafe { v512::<$($g),*>($($arg),*) }
            } else if crate::simd::has_avx2() {
                // SAFETY: the features were detected at run time.
                unsafe { v256::<$($g),*>($($arg),*) }
            } else {
                $body::<$($g),*>($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body::<$($g),*>($($arg),*)
        }
    }};
}

fn adam_group<T: Real>(
    params: &[Tensor],
    grads: &[Tensor],
    m: &[Tensor],
    v: &[Tensor],
    vmax: &[Option<Tensor>],
    steps: &[u64],
    c: AdamConfig,
) {
    let ks: Vec<AdamK<T>> = steps
        .iter()
        .map(|&step| {
            let bc1 = 1.0 - c.beta1.powi(step as i32);
            let bc2 = 1.0 - c.beta2.powi(step as i32);
            AdamK {
                sign: if c.maximize { -T::ONE } else { T::ONE },
                wd: T::c(c.weight_decay),
                decay: T::c(1.0 - c.lr * c.weight_decay),
                w1: T::c(1.0 - c.beta1),
                b2: T::c(c.beta2),
                one_m_b2: T::c(1.0 - c.beta2),
                bc2_sqrt: T::c(bc2.sqrt()),
                eps: T::c(c.eps),
                step_size: T::c(c.lr / bc1),
            }
        })
        .collect();
    let ptrs: Vec<[Ptr<T>; 5]> = (0..params.len())
        .map(|i| {
            [
                Ptr(params[i].data_ptr::<T>()),
                Ptr(grads[i].data_ptr::<T>()),
                Ptr(m[i].data_ptr::<T>()),
                Ptr(v[i].data_ptr::<T>()),
                Ptr(vmax[i].as_ref().map(|x| x.data_ptr::<T>()).unwrap_or(std::ptr::null_mut())),
            ]
        })
        .collect();
    let lens: Vec<usize> = params.iter().map(|p| p.numel()).collect();
    let wd = if c.weight_decay == 0.0 {
        0u8
    } else if c.decoupled {
        2
    } else {
        1
    };
    for_chunks(&lens, |i, a, b| {
        let q = &ptrs[i];
        let n = b - a;
        let ams = !q[4].0.is_null();
        // SAFETY: the tensors were checked contiguous with numel lens[i], over
        // distinct storages; chunks [a, b) of one tensor are disjoint.
        let (p, g, m, v, x) = unsafe {
            (
                std::slice::from_raw_parts_mut(q[0].0.add(a), n),
                std::slice::from_raw_parts(q[1].0.add(a) as *const T, n),
                std::slice::from_raw_parts_mut(q[2].0.add(a), n),
                std::slice::from_raw_parts_mut(q[3].0.add(a), n),
                if ams { std::slice::from_raw_parts_mut(q[4].0.add(a), n) } else { &mut [][..] },
            )
        };
        let k = ks[i];
        {
            match (wd, ams) {
                (0, false) => isa_dispatch!(adam_chunk::<T, 0, false>(p, g, m, v, x, k)),
                (1, false) => isa_dispatch!(adam_chunk::<T, 1, false>(p, g, m, v, x, k)),
                (2, false) => isa_dispatch!(adam_chunk::<T, 2, false>(p, g, m, v, x, k)),
                (0, true) => isa_dispatch!(adam_chunk::<T, 0, true>(p, g, m, v, x, k)),
                (1, true) => isa_dispatch!(adam_chunk::<T, 1, true>(p, g, m, v, x, k)),
                _ => isa_dispatch!(adam_chunk::<T, 2, true>(p, g, m, v, x, k)),
            }
        }
    });
}

#[derive(Clone, Copy, Debug)]
pub struct RmsConfig {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
}

/// RMSprop (optionally centered, with momentum).
pub fn rmsprop_step(
    params: &[Tensor],
    grads: &[Tensor],
    sq: &[Tensor],
    gavg: &[Option<Tensor>],
    bufs: &[Option<Tensor>],
    cfg: RmsConfig,
) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        check(p, &[(&grads[i], "grad"), (&sq[i], "square_avg")])?;
        crate::dispatch_float!(p.dtype(), "rmsprop", T => rms_one::<T>(p, &grads[i], &sq[i], gavg[i].as_ref(), bufs[i].as_ref(), cfg));
        p.storage().bump_version();
    }
    Ok(())
}

fn rms_one<T: Real>(p: &Tensor, g: &Tensor, sq: &Tensor, gavg: Option<&Tensor>, buf: Option<&Tensor>, c: RmsConfig) {
    // SAFETY: `check` ensured p, g, sq, gavg and buf are contiguous tensors
    // of dtype T over pairwise distinct storages; the optimiser owns them
    // during the step.
    let (pd, sd) = unsafe { (p.data_mut::<T>(), sq.data_mut::<T>()) };
    let gd = g.data::<T>();
    // SAFETY: as above.
    let mut ga = gavg.map(|t| unsafe { t.data_mut::<T>() });
    // SAFETY: as above.
    let mut bd = buf.map(|t| unsafe { t.data_mut::<T>() });
    let (alpha, one_m_a, eps, lr, mom, wd) =
        (T::c(c.alpha), T::c(1.0 - c.alpha), T::c(c.eps), T::c(c.lr), T::c(c.momentum), T::c(c.weight_decay));
    for k in 0..pd.len() {
        let mut gk = if c.maximize { -gd[k] } else { gd[k] };
        if c.weight_decay != 0.0 {
            gk = gk + wd * pd[k];
        }
        sd[k] = sd[k] * alpha + one_m_a * gk * gk;
        let avg = match ga.as_deref_mut() {
            Some(a) if c.centered => {
                a[k] = a[k] + one_m_a * (gk - a[k]);
                (sd[k] - a[k] * a[k]).sqrt() + eps
            }
            _ => sd[k].sqrt() + eps,
        };
        match bd.as_deref_mut() {
            Some(b) if c.momentum > 0.0 => {
                b[k] = b[k] * mom + gk / avg;
                pd[k] = pd[k] - lr * b[k];
            }
            _ => pd[k] = pd[k] - lr * (gk / avg),
        }
    }
}
