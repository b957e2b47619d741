//! The backend trait: the operations a network needs, forward and backward,
//! over the backend's own tensor type. [`Native`](crate::native::Native)
//! runs them on genocnn's SIMD kernels; a candle backend (CPU and CUDA)
//! implements the same trait. Layers, backprop, optimizers and training are
//! written once, against this trait.
//!
//! A backend implements the primitives. The fused operations at the end
//! (a convolution, its activation and a max pool of 2; a pool and the
//! activation moved past it) and the container helpers have default
//! implementations composed of the primitives, which a backend may
//! override for speed, as the native one does.

use kernels::conv1d::Conv1dParams;
use kernels::conv2d::Conv2dParams;
use kernels::pool::{Pool1dParams, Pool2dParams, PoolKind};
use kernels::Activation;

use crate::error::{NnError, Result};

/// What a training-mode batch-norm forward keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct BnSaved<T> {
    pub mean: T,
    pub inv_std: T,
}

/// The result of a training-mode batch-norm forward: the output, what the
/// backward pass needs, and the updated running mean and variance.
pub type BnTrain<T> = (T, BnSaved<T>, T, T);

/// The gradients of a weighted layer: (input if asked for, weights, bias).
pub type Grads<T> = (Option<T>, T, T);

/// A dense layer's weights in a form a backend prepared for many forward
/// passes with the same weights ([`Backend::dense_prepare`]).
pub type Prepared = Box<dyn std::any::Any + Send + Sync>;

/// The gradients of batch norm: (input, gamma, beta).
pub type BnGrads<T> = (T, T, T);

/// Hyperparameters of one optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// SGD with momentum (0 for plain SGD), optionally Nesterov.
    Sgd {
        lr: f32,
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    /// Adam (decoupled = false) or AdamW (decoupled weight decay = true).
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        decoupled: bool,
        step: u32,
    },
}

impl Update {
    /// The step's learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Update::Sgd { lr, .. } | Update::Adam { lr, .. } => *lr,
        }
    }
}

/// The max pool of 2 (stride 2) that the fused 1D operations end with.
fn max_pool2_1d() -> Pool1dParams {
    Pool1dParams::new(PoolKind::Max, 2)
}

/// The 2 × 2 max pool (stride 2) that the fused 2D operations end with.
fn max_pool2_2d() -> Pool2dParams {
    Pool2dParams::new(PoolKind::Max, 2)
}

/// A compute backend. Tensors are row-major with the batch first:
/// NCL for 1D, NCHW for 2D, (batch, features) for dense layers.
pub trait Backend: Clone + Send + Sync + 'static {
    type Tensor: Clone + Send + Sync + std::fmt::Debug;

    /// A short description, such as `native (avx512, 2 threads)`.
    fn name(&self) -> String;
    /// The number format of this backend's matrix products (f32 unless the
    /// backend says otherwise).
    fn precision(&self) -> crate::Precision {
        crate::Precision::Fp32
    }
    /// Runs `f` on this backend's worker threads. The default runs it on
    /// the caller's (the rayon pool it is in); a backend given a thread
    /// pool of its own runs `f` inside it.
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }
    fn tensor(&self, data: Vec<f32>, shape: &[usize]) -> Result<Self::Tensor>;
    fn to_vec(&self, t: &Self::Tensor) -> Result<Vec<f32>>;
    fn shape(&self, t: &Self::Tensor) -> Vec<usize>;
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor> {
        self.tensor(vec![0.0; shape.iter().product()], shape)
    }
    /// The same values under a new shape (consumes the tensor: no copy).
    fn reshape(&self, t: Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    fn conv1d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        p: &Conv1dParams,
    ) -> Result<Self::Tensor>;
    /// Returns (dx if asked for, dw, db).
    fn conv1d_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Conv1dParams,
        need_dx: bool,
    ) -> Result<Grads<Self::Tensor>>;
    fn conv2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        p: &Conv2dParams,
    ) -> Result<Self::Tensor>;
    fn conv2d_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Conv2dParams,
        need_dx: bool,
    ) -> Result<Grads<Self::Tensor>>;

    fn pool1d(&self, x: &Self::Tensor, p: &Pool1dParams) -> Result<Self::Tensor>;
    fn pool1d_backward(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Pool1dParams,
    ) -> Result<Self::Tensor>;
    fn pool2d(&self, x: &Self::Tensor, p: &Pool2dParams) -> Result<Self::Tensor>;
    fn pool2d_backward(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Pool2dParams,
    ) -> Result<Self::Tensor>;
    /// Pools every channel to one value: (B, C, …) → (B, C).
    fn global_pool(&self, x: &Self::Tensor, kind: PoolKind) -> Result<Self::Tensor>;
    fn global_pool_backward(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        kind: PoolKind,
    ) -> Result<Self::Tensor>;

    /// (B, in) × (out, in)ᵀ + b → (B, out).
    fn dense(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// The weights w (out, in) of a dense layer prepared for many forward
    /// passes with the same weights ([`Backend::dense_prepared`]), where
    /// this backend has such a form and it saves time; `None` by default.
    fn dense_prepare(&self, _w: &Self::Tensor) -> Option<Prepared> {
        None
    }
    /// [`Backend::dense`] with the weights `w` prepared by
    /// [`Backend::dense_prepare`]: the same outputs.
    fn dense_prepared(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        _prepared: &Prepared,
        b: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        self.dense(x, w, b)
    }
    /// Returns (dx if asked for, dw, db).
    fn dense_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        dy: &Self::Tensor,
        need_dx: bool,
    ) -> Result<Grads<Self::Tensor>>;

    fn activation(&self, x: &Self::Tensor, a: Activation) -> Result<Self::Tensor>;
    /// dy · f′(x), from the pre-activation x.
    fn activation_backward(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        a: Activation,
    ) -> Result<Self::Tensor>;

    /// Training-mode batch norm over dimension 1 (channels). Returns the
    /// output, the batch statistics for backward, and the running mean and
    /// variance moved by `momentum` towards the batch's (the inputs are
    /// left as they are).
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_train(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
        eps: f32,
        momentum: f32,
    ) -> Result<BnTrain<Self::Tensor>>;
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_infer(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// The backward pass of [`Backend::batchnorm_train`]: (dx, dgamma, dbeta).
    fn batchnorm_backward(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        saved: &BnSaved<Self::Tensor>,
        dy: &Self::Tensor,
    ) -> Result<BnGrads<Self::Tensor>>;

    /// An inverted-dropout mask (0 or 1/(1 − rate)) of the given shape, from a seed.
    fn dropout_mask(&self, shape: &[usize], rate: f32, seed: u64) -> Result<Self::Tensor>;
    /// Elementwise product.
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// a += s · b, elementwise.
    fn add_scaled(&self, a: &mut Self::Tensor, b: &Self::Tensor, s: f32) -> Result<()>;

    /// Tensors of equal shape but for dimension 1 (channels), joined along it.
    fn concat_channels(&self, parts: &[&Self::Tensor]) -> Result<Self::Tensor>;
    /// The inverse of [`Backend::concat_channels`]: `t` cut along dimension 1
    /// into parts of `sizes` channels.
    fn split_channels(&self, t: &Self::Tensor, sizes: &[usize]) -> Result<Vec<Self::Tensor>>;

    /// Adds the gradient of l1·Σ|w| + l2·Σw² to `grad`; returns the penalty.
    fn add_penalty(
        &self,
        w: &Self::Tensor,
        grad: &mut Self::Tensor,
        l1: f32,
        l2: f32,
    ) -> Result<f32>;
    /// One optimizer step on a parameter: `state` holds the optimizer's
    /// per-parameter buffers (velocity, or first and second moments),
    /// created by the backend on the first step.
    fn update(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        state: &mut Vec<Self::Tensor>,
        u: &Update,
    ) -> Result<()>;

    // ---- Composed operations: defaults built from the primitives above. ----

    /// a + b, elementwise.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        let mut s = a.clone();
        self.add_scaled(&mut s, b, 1.0)?;
        Ok(s)
    }

    /// 1D pooling, then `act`: the activation of a convolution moved past
    /// the max pool that follows it (the same function for a monotonic
    /// activation, applied to fewer values).
    fn pool1d_act(
        &self,
        x: &Self::Tensor,
        p: &Pool1dParams,
        act: Activation,
    ) -> Result<Self::Tensor> {
        let y = self.pool1d(x, p)?;
        if act == Activation::Linear {
            return Ok(y);
        }
        self.activation(&y, act)
    }

    /// The backward pass of [`Backend::pool1d_act`], from its input.
    fn pool1d_act_backward(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Pool1dParams,
        act: Activation,
    ) -> Result<Self::Tensor> {
        if act == Activation::Linear {
            return self.pool1d_backward(x, dy, p);
        }
        let pooled = self.pool1d(x, p)?;
        let dp = self.activation_backward(&pooled, dy, act)?;
        self.pool1d_backward(x, &dp, p)
    }

    /// A 1D convolution, its monotonic activation and max pooling over
    /// windows of 2 (stride 2), fused. Returns the pooled output and a tensor
    /// that only this backend's backward pass reads: by default the
    /// convolution's output before the activation; the native backend keeps
    /// a mask instead and never stores the convolution's output. With
    /// `keep` false (inference: no backward pass follows) that tensor is
    /// not returned, and a backend need not make it.
    fn conv1d_act_pool2(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        p: &Conv1dParams,
        act: Activation,
        keep: bool,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>)> {
        let z = self.conv1d(x, w, b, p)?;
        let y = self.pool1d(&self.activation(&z, act)?, &max_pool2_1d())?;
        Ok((y, keep.then_some(z)))
    }

    /// The backward pass of [`Backend::conv1d_act_pool2`], from its input
    /// and what it kept.
    #[allow(clippy::too_many_arguments)]
    fn conv1d_act_pool2_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        kept: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Conv1dParams,
        act: Activation,
        need_dx: bool,
    ) -> Result<Grads<Self::Tensor>> {
        let a = self.activation(kept, act)?;
        let da = self.pool1d_backward(&a, dy, &max_pool2_1d())?;
        let dz = self.activation_backward(kept, &da, act)?;
        self.conv1d_backward(x, w, &dz, p, need_dx)
    }

    /// A stride-1 2D convolution, its monotonic activation and a 2 × 2 max
    /// pool (stride 2), fused; as [`Backend::conv1d_act_pool2`] (the native
    /// backend keeps the window position of each maximum and the
    /// activation's derivative there).
    fn conv2d_act_pool2(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        p: &Conv2dParams,
        act: Activation,
        keep: bool,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>)> {
        let z = self.conv2d(x, w, b, p)?;
        let y = self.pool2d(&self.activation(&z, act)?, &max_pool2_2d())?;
        Ok((y, keep.then_some(z)))
    }

    /// The backward pass of [`Backend::conv2d_act_pool2`].
    #[allow(clippy::too_many_arguments)]
    fn conv2d_act_pool2_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        kept: &Self::Tensor,
        dy: &Self::Tensor,
        p: &Conv2dParams,
        act: Activation,
        need_dx: bool,
    ) -> Result<Grads<Self::Tensor>> {
        let a = self.activation(kept, act)?;
        let da = self.pool2d_backward(&a, dy, &max_pool2_2d())?;
        let dz = self.activation_backward(kept, &da, act)?;
        self.conv2d_backward(x, w, &dz, p, need_dx)
    }
}

/// A shape error from an operation.
pub(crate) fn shape_err(op: &'static str, message: impl Into<String>) -> NnError {
    NnError::Shape {
        op,
        message: message.into(),
    }
}
