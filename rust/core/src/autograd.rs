//! Reverse-mode autodiff: nodes recorded as ops run, backward as a scan of the
//! reachable nodes in reverse recording order.
//!
//! Every backward formula is written with differentiable tensor ops, so with
//! `create_graph` the backward pass records its own graph and can be
//! differentiated again, to any order.
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::{Shape, Tensor, TensorImpl};
use crate::{autograd_err, shape_err};
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}
/// Set grad mode for this thread; returns the previous mode.
pub fn set_grad_enabled(on: bool) -> bool {
    GRAD_ENABLED.with(|g| g.replace(on))
}

/// Restores the previous grad mode when dropped.
pub struct GradModeGuard(bool);
impl GradModeGuard {
    pub fn new(on: bool) -> Self {
        GradModeGuard(set_grad_enabled(on))
    }
}
impl Drop for GradModeGuard {
    fn drop(&mut self) {
        set_grad_enabled(self.0);
    }
}
pub fn no_grad() -> GradModeGuard {
    GradModeGuard::new(false)
}

thread_local! {
    static DROP_DEPTH: Cell<u32> = const { Cell::new(0) };
    static PENDING_DROPS: std::cell::RefCell<Vec<Arc<Node>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Drop a node reference without recursing: a long chain of nodes (each
/// holding the previous one through its edges or saved tensors) would
/// otherwise be freed by a recursion as deep as the chain and overflow the stack.
fn release_node(n: Arc<Node>) {
    let nested = DROP_DEPTH.with(|d| d.get()) > 0;
    if nested {
        PENDING_DROPS.with(|p| p.borrow_mut().push(n));
        return;
    }
    DROP_DEPTH.with(|d| d.set(1));
    drop(n);
    while let Some(next) = PENDING_DROPS.with(|p| p.borrow_mut().pop()) {
        drop(next);
    }
    DROP_DEPTH.with(|d| d.set(0));
}

impl Drop for Node {
    fn drop(&mut self) {
        for e in std::mem::take(&mut self.edges).into_iter().flatten() {
            release_node(e.node);
        }
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        if let Some(f) = self.grad_fn.take() {
            release_node(f);
        }
    }
}

#[derive(Default)]
pub struct Meta {
    pub(crate) grad: Option<Tensor>,
    pub(crate) grad_fn: Option<Arc<Node>>,
    /// Which output of `grad_fn` this tensor is (0 for single-output nodes).
    pub(crate) output_nr: u32,
    pub(crate) accumulator: Option<Arc<Node>>,
    pub(crate) retains_grad: bool,
    /// For views: the tensor whose storage this view aliases, when that
    /// tensor took part in autograd (used to refuse in-place on views of leaves).
    pub(crate) view_base: Option<Tensor>,
}

pub type BackwardFn = Box<dyn Fn(&BwCtx, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;
/// The backward of a node with several outputs: one call receives the
/// gradient of every output (`None`, or zeros when the node materialises
/// them, for outputs that no gradient reached).
pub type MultiBackwardFn = Box<dyn Fn(&BwCtx, &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// A backward function is shared (`Arc`), so passes in several threads over
/// one retained graph can each call it; a pass that frees the graph only
/// drops the node's reference.
type SharedBackward = Arc<dyn Fn(&BwCtx, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;
type SharedMultiBackward = Arc<dyn Fn(&BwCtx, &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

enum NodeKind {
    Op(Mutex<Option<SharedBackward>>),
    Multi { f: Mutex<Option<SharedMultiBackward>>, materialize: bool },
    Leaf(Weak<TensorImpl>),
}

/// Where a gradient flows: output `nr` of `node`.
#[derive(Clone)]
pub struct Edge {
    pub node: Arc<Node>,
    pub nr: u32,
}

/// Outputs of a node that retain their gradient: (output number, tensor).
type Retained = SmallVec<[(u32, Weak<TensorImpl>); 1]>;

pub struct Node {
    seq: u64,
    name: &'static str,
    edges: SmallVec<[Option<Edge>; 2]>,
    input_meta: SmallVec<[(Shape, DType); 2]>,
    /// Shapes and dtypes of the outputs of a multi-output node (empty for
    /// single-output nodes, whose one gradient is always present when they run).
    output_meta: SmallVec<[(Shape, DType); 1]>,
    kind: NodeKind,
    releasable: bool,
    /// Non-leaf outputs that called `retain_grad`, with their output number.
    retain: Mutex<Retained>,
    /// For `SliceBackward0`: (dim, start, step) of the slice, so that a
    /// first-order backward adds the gradient into the slice of the input's
    /// gradient buffer instead of materialising zeros of the full shape.
    slice: Option<(usize, usize, usize)>,
}

static SEQ: AtomicU64 = AtomicU64::new(1);

impl Node {
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn is_leaf_accumulator(&self) -> bool {
        matches!(self.kind, NodeKind::Leaf(_))
    }
    pub fn next_functions(&self) -> &[Option<Edge>] {
        &self.edges
    }
    /// Number of outputs (1 but for nodes made by `attach_multi`).
    pub fn num_outputs(&self) -> usize {
        self.output_meta.len().max(1)
    }
}

/// What a backward function sees of its node.
pub struct BwCtx<'a> {
    node: &'a Arc<Node>,
    needed: &'a [bool],
}
impl BwCtx<'_> {
    /// Does input `i` need a gradient in this pass?
    pub fn needs(&self, i: usize) -> bool {
        self.needed.get(i).copied().unwrap_or(false)
    }
    pub fn node_name(&self) -> &'static str {
        self.node.name
    }
}

/// A tensor kept for backward, with the storage version it had when saved.
pub struct SavedTensor {
    t: Tensor,
    version: u64,
    /// `Some(k)` when this is output `k` of the node that saves it.
    output: Option<u32>,
}

impl SavedTensor {
    /// Save an input of the op.
    pub fn input(t: &Tensor) -> SavedTensor {
        SavedTensor { t: t.clone(), version: t.version(), output: None }
    }
    /// Save the op's own output (kept without its history to avoid a cycle;
    /// the history is re-attached when unpacked).
    pub fn output(t: &Tensor) -> SavedTensor {
        SavedTensor::output_nr(t, 0)
    }
    /// Save output `nr` of a multi-output op (see `output`).
    pub fn output_nr(t: &Tensor, nr: u32) -> SavedTensor {
        SavedTensor { t: t.detach(), version: t.version(), output: Some(nr) }
    }
    pub fn get(&self, ctx: &BwCtx) -> Result<Tensor> {
        let v = self.t.version();
        if v != self.version {
            return Err(autograd_err!(
                "one of the variables needed for gradient computation has been modified by an inplace operation: [rbe.{} {:?}], which is {} of {}, is at version {}; expected version {} instead. Hint: do the operation out of place, or clone() the tensor before modifying it.",
                self.t.dtype().name(),
                self.t.shape(),
                match self.output {
                    Some(k) => format!("output {k}"),
                    None => "an input".to_string(),
                },
                ctx.node.name,
                v,
                self.version
            ));
        }
        if let Some(nr) = self.output {
            let t = self.t.detach();
            {
                let mut m = t.0.meta.lock();
                m.grad_fn = Some(ctx.node.clone());
                m.output_nr = nr;
            }
            t.set_requires_grad_flag(true);
            Ok(t)
        } else {
            Ok(self.t.clone())
        }
    }
}

/// True when an op on these inputs must be recorded.
#[inline]
pub fn needs_grad(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// The node output a gradient for `t` flows into: its grad_fn, or its leaf accumulator.
pub fn grad_edge(t: &Tensor) -> Option<Edge> {
    if !t.requires_grad() {
        return None;
    }
    let mut m = t.0.meta.lock();
    if let Some(f) = &m.grad_fn {
        return Some(Edge { node: f.clone(), nr: m.output_nr });
    }
    if m.accumulator.is_none() {
        m.accumulator = Some(Arc::new(Node {
            seq: 0,
            name: "AccumulateGrad",
            edges: SmallVec::new(),
            input_meta: SmallVec::new(),
            output_meta: SmallVec::new(),
            kind: NodeKind::Leaf(Arc::downgrade(&t.0)),
            releasable: false,
            retain: Mutex::new(SmallVec::new()),
            slice: None,
        }));
    }
    m.accumulator.clone().map(|node| Edge { node, nr: 0 })
}

/// Record `out` as produced by an op on `inputs` with backward `f`.
/// `f(ctx, grad_out)` returns one optional gradient per input.
/// `saves` says whether `f` holds saved tensors (then a second backward without
/// `retain_graph` is an error, as in torch).
pub fn attach<F>(out: &Tensor, name: &'static str, inputs: &[&Tensor], saves: bool, f: F)
where
    F: Fn(&BwCtx, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
{
    let node = Arc::new(Node {
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
        name,
        edges: inputs.iter().map(|t| grad_edge(t)).collect(),
        input_meta: inputs.iter().map(|t| (Shape::from(t.shape()), t.dtype())).collect(),
        output_meta: SmallVec::new(),
        kind: NodeKind::Op(Mutex::new(Some(Arc::new(f)))),
        releasable: saves,
        retain: Mutex::new(SmallVec::new()),
        slice: None,
    });
    set_history(out, node, 0);
}

fn set_history(out: &Tensor, node: Arc<Node>, nr: u32) {
    {
        let mut m = out.0.meta.lock();
        m.grad_fn = Some(node);
        m.output_nr = nr;
    }
    out.set_requires_grad_flag(true);
}

/// Record `outputs` as the outputs of one node on `inputs` with backward `f`.
///
/// `f(ctx, grads)` is called once per backward pass with one entry per
/// output: its gradient, or for an output no gradient reached, zeros of its
/// shape when `materialize` is true and `None` otherwise (torch's
/// `materialize_grads`). It returns one optional gradient per input. An output
/// may be saved for backward with `SavedTensor::output_nr(out, k)`.
pub fn attach_multi<F>(outputs: &[&Tensor], name: &'static str, inputs: &[&Tensor], saves: bool, materialize: bool, f: F) -> Result<()>
where
    F: Fn(&BwCtx, &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
{
    if outputs.is_empty() {
        return Err(autograd_err!("attach_multi: {name} has no outputs"));
    }
    if outputs.len() > u32::MAX as usize {
        return Err(autograd_err!("attach_multi: {name} has too many outputs ({})", outputs.len()));
    }
    if let Some(k) = outputs.iter().position(|o| !o.dtype().is_float()) {
        return Err(autograd_err!(
            "attach_multi: output {k} of {name} has dtype {}; only floating point outputs can require gradients",
            outputs[k].dtype().name()
        ));
    }
    for (a, o) in outputs.iter().enumerate() {
        if outputs[..a].iter().any(|p| p.same(o)) {
            return Err(autograd_err!("attach_multi: output {a} of {name} is the same tensor as an earlier output"));
        }
    }
    let node = Arc::new(Node {
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
        name,
        edges: inputs.iter().map(|t| grad_edge(t)).collect(),
        input_meta: inputs.iter().map(|t| (Shape::from(t.shape()), t.dtype())).collect(),
        output_meta: outputs.iter().map(|t| (Shape::from(t.shape()), t.dtype())).collect(),
        kind: NodeKind::Multi { f: Mutex::new(Some(Arc::new(f))), materialize },
        releasable: saves,
        retain: Mutex::new(SmallVec::new()),
        slice: None,
    });
    for (k, o) in outputs.iter().enumerate() {
        set_history(o, node.clone(), k as u32);
    }
    Ok(())
}

/// `attach` for a slice view of `input` along `dim` (see `Node::slice`).
pub fn attach_slice<F>(out: &Tensor, input: &Tensor, spec: (usize, usize, usize), f: F)
where
    F: Fn(&BwCtx, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
{
    attach(out, "SliceBackward0", &[input], false, f);
    if let Some(n) = out.0.meta.lock().grad_fn.as_mut().and_then(Arc::get_mut) {
        n.slice = Some(spec);
    }
}

/// Adds `g` into the slice `spec` of the gradient held in `slot` (zeros of
/// `shape` if empty). False when the slot's buffer cannot be written in place.
fn accumulate_slice(slot: &mut Option<Tensor>, g: &Tensor, shape: &[usize], dt: crate::DType, spec: (usize, usize, usize)) -> Result<bool> {
    if g.dtype() != dt || !dt.is_float() {
        return Ok(false);
    }
    let buf = match slot {
        Some(b) if exclusively_owned(b) && b.dtype() == dt && b.shape() == shape => b.clone(),
        Some(_) => return Ok(false),
        None => Tensor::zeros(shape, dt)?,
    };
    let (dim, start, step) = spec;
    let len = g.shape()[dim];
    let mut st = buf.strides().to_vec();
    let off = if len > 0 { start as isize * st[dim] } else { 0 } as usize;
    st[dim] *= step as isize;
    let region = buf.alias(g.shape(), &st, off)?;
    let sum = crate::ops::binary::arith_raw(crate::ops::binary::Arith::Add, &region, g)?;
    crate::kernels::copy_into(&region, &sum)?;
    drop(region);
    *slot = Some(buf);
    Ok(true)
}

/// Make `t` take the history of `out` (after an in-place op wrote `out`'s values into `t`).
pub(crate) fn rebase_history(t: &Tensor, out: &Tensor) {
    let (f, nr) = {
        let m = out.0.meta.lock();
        (m.grad_fn.clone(), m.output_nr)
    };
    let req = out.requires_grad();
    {
        let mut m = t.0.meta.lock();
        m.grad_fn = f;
        m.output_nr = nr;
    }
    t.set_requires_grad_flag(req);
}

pub fn retain_grad(t: &Tensor) -> Result<()> {
    if !t.requires_grad() {
        return Err(autograd_err!("can't retain_grad on Tensor that has requires_grad=False"));
    }
    let (f, nr) = {
        let mut m = t.0.meta.lock();
        let Some(f) = m.grad_fn.clone() else { return Ok(()) };
        m.retains_grad = true;
        (f, m.output_nr)
    };
    let mut r = f.retain.lock();
    r.retain(|(k, w)| *k != nr && w.strong_count() > 0);
    r.push((nr, Arc::downgrade(&t.0)));
    Ok(())
}

fn accumulate_into(slot: &mut Option<Tensor>, g: Tensor, create_graph: bool) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        Some(old) => {
            if !create_graph && exclusively_owned(&old) && old.shape() == g.shape() && old.dtype() == g.dtype() {
                crate::ops::binary::add_assign_raw(&old, &g)?;
                old
            } else {
                crate::ops::binary::add(&old, &g)?
            }
        }
    });
    Ok(())
}

fn exclusively_owned(t: &Tensor) -> bool {
    Arc::strong_count(&t.0) == 1 && Arc::strong_count(t.storage()) == 1 && t.is_contiguous()
}

/// A gradient as stored in `.grad`: detached, contiguous, owning its buffer.
fn grad_for_storage(g: Tensor, create_graph: bool) -> Tensor {
    if create_graph {
        return g;
    }
    if exclusively_owned(&g) && g.is_leaf() {
        g
    } else {
        crate::kernels::copy_contiguous(&g)
    }
}

fn accumulate_leaf_grad(t: &Tensor, g: Tensor, create_graph: bool) -> Result<()> {
    // The read-modify-write of `.grad` holds the tensor's lock, so backward
    // passes running in several threads into the same leaf add up instead of
    // losing contributions. Nothing below locks `t`'s metadata again (`.grad`
    // may not be the tensor itself, see `Tensor::set_grad`).
    let mut m = t.0.meta.lock();
    let new = match m.grad.clone() {
        None => grad_for_storage(g, create_graph),
        Some(old) => {
            if create_graph || old.requires_grad() {
                crate::ops::binary::add(&old, &g)?
            } else {
                let _ng = no_grad();
                crate::ops::binary::add_assign_raw(&old, &g)?;
                old
            }
        }
    };
    m.grad = Some(new);
    Ok(())
}

/// A hasher for node addresses (the map of a backward pass is keyed by them).
#[derive(Default)]
struct PtrHasher(u64);
impl std::hash::Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, v: usize) {
        self.0 = ((v as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
type NodeMap = std::collections::HashMap<*const Node, usize, std::hash::BuildHasherDefault<PtrHasher>>;

/// Node -> slot map of one backward pass: a linear list for the small graphs
/// of most passes (no allocation, no hashing), a hash map beyond.
// the inline list is the point: it lives on the stack of the pass
#[allow(clippy::large_enum_variant)]
enum Seen {
    Small(SmallVec<[(*const Node, usize); 24]>),
    Big(NodeMap),
}

impl Seen {
    fn new() -> Seen {
        Seen::Small(SmallVec::new())
    }
    /// Sets `k`'s slot; returns whether `k` was already there.
    fn insert(&mut self, k: *const Node, v: usize) -> bool {
        match self {
            Seen::Small(l) => {
                if let Some(e) = l.iter_mut().find(|e| e.0 == k) {
                    e.1 = v;
                    return true;
                }
                if l.len() < 24 {
                    l.push((k, v));
                    return false;
                }
                let mut m: NodeMap = l.iter().copied().collect();
                m.insert(k, v);
                *self = Seen::Big(m);
                false
            }
            Seen::Big(m) => m.insert(k, v).is_some(),
        }
    }
    fn get(&self, k: *const Node) -> Option<usize> {
        match self {
            Seen::Small(l) => l.iter().find(|e| e.0 == k).map(|e| e.1),
            Seen::Big(m) => m.get(&k).copied(),
        }
    }
}

/// Run backward from `roots` (seeded with `root_grads`). With `inputs`, return
/// the gradients with respect to them instead of accumulating into `.grad`.
pub fn run_backward(
    roots: &[Tensor],
    root_grads: &[Tensor],
    retain_graph: bool,
    create_graph: bool,
    inputs: Option<&[Tensor]>,
    allow_unused: bool,
) -> Result<Vec<Option<Tensor>>> {
    if roots.len() != root_grads.len() {
        return Err(autograd_err!("backward: got {} tensors but {} gradients", roots.len(), root_grads.len()));
    }
    let _mode = GradModeGuard::new(create_graph);
    let mut order: SmallVec<[Arc<Node>; 16]> = SmallVec::new();
    let mut stack: SmallVec<[Arc<Node>; 16]> = SmallVec::new();
    let mut root_edges = Vec::with_capacity(roots.len());
    for (i, r) in roots.iter().enumerate() {
        let e = grad_edge(r).ok_or_else(|| autograd_err!("element {i} of tensors does not require grad and does not have a grad_fn"))?;
        if r.shape() != root_grads[i].shape() {
            return Err(shape_err!(
                "Mismatch in shape: grad_output[{i}] has a shape of {:?} and output[{i}] has a shape of {:?}.",
                root_grads[i].shape(),
                r.shape()
            ));
        }
        stack.push(e.node.clone());
        root_edges.push(e);
    }
    let mut input_edges = Vec::new();
    if let Some(inps) = inputs {
        for (i, t) in inps.iter().enumerate() {
            let e = grad_edge(t).ok_or_else(|| autograd_err!("One of the differentiated Tensors (index {i}) does not require grad"))?;
            stack.push(e.node.clone());
            input_edges.push(e);
        }
    }
    // The walk's bookkeeping is local to this pass (nothing is written into
    // the nodes), so passes in several threads over one graph do not interfere.
    let mut seen = Seen::new();
    while let Some(n) = stack.pop() {
        if seen.insert(Arc::as_ptr(&n), 0) {
            continue;
        }
        for e in n.edges.iter().flatten() {
            if seen.get(Arc::as_ptr(&e.node)).is_none() {
                stack.push(e.node.clone());
            }
        }
        order.push(n);
    }
    // Reverse recording order; leaf accumulators (seq 0) come last.
    order.sort_unstable_by_key(|n| std::cmp::Reverse(n.seq));
    for (i, n) in order.iter().enumerate() {
        seen.insert(Arc::as_ptr(n), i);
    }
    let n_nodes = order.len();
    // The gradient of output `k` of the node in slot `i` lives at `base[i] + k`.
    let mut base: SmallVec<[usize; 16]> = SmallVec::with_capacity(n_nodes);
    let mut n_grads = 0usize;
    for n in &order {
        base.push(n_grads);
        n_grads += n.num_outputs();
    }
    let slot_of = |n: &Arc<Node>, _order: &[Arc<Node>]| -> usize {
        seen.get(Arc::as_ptr(n)).expect("every node of the pass was recorded in the walk")
    };
    // Which nodes must run: with `inputs`, only those leading to an input.
    let mut needed: SmallVec<[bool; 16]> = SmallVec::from_elem(inputs.is_none(), n_nodes);
    // For each node, the (input index, output number) pairs whose gradient is returned.
    // (slot, input index, output number) of the nodes whose gradient is returned
    let mut capture: SmallVec<[(usize, usize, u32); 2]> = SmallVec::new();
    for (k, e) in input_edges.iter().enumerate() {
        let s = slot_of(&e.node, &order);
        capture.push((s, k, e.nr));
        needed[s] = true;
    }
    if inputs.is_some() {
        for i in (0..n_nodes).rev() {
            if !needed[i] && order[i].edges.iter().flatten().any(|e| needed[slot_of(&e.node, &order)]) {
                needed[i] = true;
            }
        }
    }
    let mut grads: SmallVec<[Option<Tensor>; 16]> = SmallVec::from_elem(None, n_grads);
    for (e, g) in root_edges.iter().zip(root_grads) {
        let s = base[slot_of(&e.node, &order)] + e.nr as usize;
        let g = if create_graph { g.clone() } else { g.detach() };
        accumulate_into(&mut grads[s], g, create_graph)?;
    }
    let mut results: Vec<Option<Tensor>> = vec![None; input_edges.len()];
    let mut edge_needed: SmallVec<[bool; 4]> = SmallVec::new();
    let mut multi: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
    for i in 0..n_nodes {
        let node = &order[i];
        let b = base[i];
        let nout = node.num_outputs();
        if grads[b..b + nout].iter().all(|g| g.is_none()) {
            continue;
        }
        if !needed[i] {
            for g in &mut grads[b..b + nout] {
                *g = None;
            }
            continue;
        }
        for &(_, k, nr) in capture.iter().filter(|c| c.0 == i) {
            results[k] = grads[b + nr as usize].clone();
        }
        let retained: SmallVec<[(u32, Tensor); 1]> =
            node.retain.lock().iter().filter_map(|(nr, w)| w.upgrade().map(|t| (*nr, Tensor(t)))).collect();
        for (nr, t) in retained {
            if let Some(g) = &grads[b + nr as usize] {
                accumulate_leaf_grad(&t, g.clone(), create_graph)?;
            }
        }
        let out_grads = match &node.kind {
            NodeKind::Leaf(w) => {
                let g = grads[b].take();
                if inputs.is_none() {
                    if let (Some(t), Some(g)) = (w.upgrade(), g) {
                        accumulate_leaf_grad(&Tensor(t), g, create_graph)?;
                    }
                }
                continue;
            }
            NodeKind::Op(f) => {
                let g = grads[b].take().expect("checked above: a single-output node has its gradient");
                if let (Some(spec), false, Some(Some(e))) = (node.slice, create_graph, node.edges.first()) {
                    let s = slot_of(&e.node, &order);
                    let (shape, dt) = &node.input_meta[0];
                    if needed[s] && g.ndim() == shape.len() && accumulate_slice(&mut grads[base[s] + e.nr as usize], &g, shape, *dt, spec)?
                    {
                        continue;
                    }
                }
                let func = backward_fn(f, node, !retain_graph && node.releasable)?;
                set_edge_needed(&mut edge_needed, node, &needed, &mut |e| slot_of(e, &order));
                let ctx = BwCtx { node, needed: &edge_needed };
                let res = func(&ctx, &g);
                drop(func);
                res?
            }
            NodeKind::Multi { f, materialize } => {
                multi.clear();
                for (k, g) in grads[b..b + nout].iter_mut().enumerate() {
                    let g = g.take();
                    multi.push(match g {
                        None if *materialize => {
                            let (shape, dt) = &node.output_meta[k];
                            Some(Tensor::zeros(shape, *dt)?)
                        }
                        g => g,
                    });
                }
                let func = backward_fn(f, node, !retain_graph && node.releasable)?;
                set_edge_needed(&mut edge_needed, node, &needed, &mut |e| slot_of(e, &order));
                let ctx = BwCtx { node, needed: &edge_needed };
                let res = func(&ctx, &multi);
                drop(func);
                multi.clear();
                res?
            }
        };
        for (j, e) in node.edges.iter().enumerate() {
            let (Some(e), Some(Some(gi))) = (e, out_grads.get(j)) else { continue };
            if !edge_needed[j] {
                continue;
            }
            let (shape, dt) = &node.input_meta[j];
            if gi.shape() != &shape[..] {
                return Err(shape_err!(
                    "Function {} returned an invalid gradient at index {j} - got {:?} but expected shape compatible with {:?}",
                    node.name,
                    gi.shape(),
                    shape
                ));
            }
            let gi = if gi.dtype() != *dt { crate::ops::unary::to_dtype(gi, *dt)? } else { gi.clone() };
            let s = base[slot_of(&e.node, &order)] + e.nr as usize;
            accumulate_into(&mut grads[s], gi, create_graph)?;
        }
    }
    if inputs.is_some() && !allow_unused {
        if let Some(k) = results.iter().position(|r| r.is_none()) {
            return Err(autograd_err!(
                "One of the differentiated Tensors (index {k}) appears to not have been used in the graph. Set allow_unused=True if this is the desired behavior."
            ));
        }
    }
    Ok(results)
}

/// The node's backward function for this call: a shared reference, or with
/// `release` (a pass that frees the graph) the node's own, leaving it empty.
fn backward_fn<F: ?Sized>(slot: &Mutex<Option<Arc<F>>>, node: &Node, release: bool) -> Result<Arc<F>> {
    let mut s = slot.lock();
    let f = if release { s.take() } else { s.clone() };
    f.ok_or_else(|| {
        autograd_err!(
            "Trying to backward through the graph a second time (or directly access saved tensors after they have already been freed). Saved intermediate values of the graph are freed when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the graph a second time or if you need to access saved tensors after calling backward. (node {})",
            node.name
        )
    })
}

fn set_edge_needed(out: &mut SmallVec<[bool; 4]>, node: &Node, needed: &[bool], slot_of: &mut dyn FnMut(&Arc<Node>) -> usize) {
    out.clear();
    out.extend(node.edges.iter().map(|e| match e {
        Some(e) => needed[slot_of(&e.node)],
        None => false,
    }));
}
