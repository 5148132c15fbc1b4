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
    for (t, what) in others {
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
    let pd = p.data_mut::<T>();
    let gd = g.data::<T>();
    let (lr, mom, damp, wd) = (T::c(c.lr), T::c(c.momentum), T::c(c.dampening), T::c(c.weight_decay));
    let mut bd = buf.map(|b| b.data_mut::<T>());
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
pub fn adam_step(params: &[Tensor], grads: &[Tensor], m: &[Tensor], v: &[Tensor], vmax: &[Option<Tensor>], steps: &[u64], cfg: AdamConfig) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        check(p, &[(&grads[i], "grad"), (&m[i], "exp_avg"), (&v[i], "exp_avg_sq")])?;
        if let Some(x) = &vmax[i] {
            check(p, &[(x, "max_exp_avg_sq")])?;
        }
        crate::dispatch_float!(p.dtype(), "adam", T => adam_one::<T>(p, &grads[i], &m[i], &v[i], vmax[i].as_ref(), steps[i], cfg));
        p.storage().bump_version();
    }
    Ok(())
}

fn adam_one<T: Real>(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, vmax: Option<&Tensor>, step: u64, c: AdamConfig) {
    let pd = p.data_mut::<T>();
    let gd = g.data::<T>();
    let md = m.data_mut::<T>();
    let vd = v.data_mut::<T>();
    let mut xd = vmax.map(|x| x.data_mut::<T>());
    let bc1 = 1.0 - c.beta1.powi(step as i32);
    let bc2 = 1.0 - c.beta2.powi(step as i32);
    let step_size = T::c(c.lr / bc1);
    let bc2_sqrt = T::c(bc2.sqrt());
    let (w1, b2, eps) = (T::c(1.0 - c.beta1), T::c(c.beta2), T::c(c.eps));
    let one_m_b2 = T::c(1.0 - c.beta2);
    let decay = T::c(1.0 - c.lr * c.weight_decay);
    let wd = T::c(c.weight_decay);
    for k in 0..pd.len() {
        let mut gk = if c.maximize { -gd[k] } else { gd[k] };
        if c.weight_decay != 0.0 {
            if c.decoupled {
                pd[k] = pd[k] * decay;
            } else {
                gk = gk + wd * pd[k];
            }
        }
        // m.lerp_(g, 1 - beta1)
        md[k] = md[k] + w1 * (gk - md[k]);
        vd[k] = vd[k] * b2 + one_m_b2 * gk * gk;
        let denom = match xd.as_deref_mut() {
            Some(x) => {
                x[k] = x[k].max_(vd[k]);
                x[k].sqrt() / bc2_sqrt + eps
            }
            None => vd[k].sqrt() / bc2_sqrt + eps,
        };
        pd[k] = pd[k] - step_size * (md[k] / denom);
    }
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
pub fn rmsprop_step(params: &[Tensor], grads: &[Tensor], sq: &[Tensor], gavg: &[Option<Tensor>], bufs: &[Option<Tensor>], cfg: RmsConfig) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        check(p, &[(&grads[i], "grad"), (&sq[i], "square_avg")])?;
        crate::dispatch_float!(p.dtype(), "rmsprop", T => rms_one::<T>(p, &grads[i], &sq[i], gavg[i].as_ref(), bufs[i].as_ref(), cfg));
        p.storage().bump_version();
    }
    Ok(())
}

fn rms_one<T: Real>(p: &Tensor, g: &Tensor, sq: &Tensor, gavg: Option<&Tensor>, buf: Option<&Tensor>, c: RmsConfig) {
    let pd = p.data_mut::<T>();
    let gd = g.data::<T>();
    let sd = sq.data_mut::<T>();
    let mut ga = gavg.map(|t| t.data_mut::<T>());
    let mut bd = buf.map(|t| t.data_mut::<T>());
    let (alpha, one_m_a, eps, lr, mom, wd) = (T::c(c.alpha), T::c(1.0 - c.alpha), T::c(c.eps), T::c(c.lr), T::c(c.momentum), T::c(c.weight_decay));
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
