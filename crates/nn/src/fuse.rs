//! The fusion pass: rewrites a built network's layer lists so that a
//! convolution and the max pool after it run as one [`ConvPool`] layer.
//! It runs after building ([`crate::NetworkBuilder::fuse`] switches it
//! off) and changes neither the function nor the parameters (their names
//! and values stay); a fused layer still runs as its parts when a pass asks
//! for every layer's output.

use kernels::pool::PoolKind;
use kernels::Activation;

use crate::backend::Backend;
use crate::layers::conv::{Conv, ConvGeom};
use crate::layers::conv_pool::{ConvPool, Fused};
use crate::layers::pool::{Pool, PoolGeom};
use crate::layers::Layer;

/// Fuses every fusable pair in `root` and in every list nested in it.
pub(crate) fn fuse<B: Backend>(root: &mut dyn Layer<B>) {
    root.visit_sequences_mut(&mut fuse_list::<B>);
}

fn fuse_list<B: Backend>(layers: &mut Vec<Box<dyn Layer<B>>>) {
    let old = std::mem::take(layers);
    let mut it = old.into_iter().peekable();
    while let Some(layer) = it.next() {
        let how = it
            .peek()
            .and_then(|next| plan(layer.as_ref(), next.as_ref()));
        match how {
            Some(how) => {
                let pool = it.next().expect("peeked");
                let conv = layer.into_any().downcast::<Conv<B>>().expect("planned");
                let pool = pool.into_any().downcast::<Pool>().expect("planned");
                layers.push(Box::new(ConvPool::new(*conv, *pool, how)));
            }
            None => layers.push(layer),
        }
    }
}

/// How a convolution `a` and a layer `b` after it fuse, if they do.
fn plan<B: Backend>(a: &dyn Layer<B>, b: &dyn Layer<B>) -> Option<Fused> {
    let conv = a.as_any().downcast_ref::<Conv<B>>()?;
    let pool = b.as_any().downcast_ref::<Pool>()?;
    let act = conv.act;
    if pool.geom.kind() != PoolKind::Max || !act.is_monotonic() {
        return None;
    }
    let pool2 = match (conv.geom, pool.geom) {
        (ConvGeom::One(c), PoolGeom::One(p)) => {
            p.size == 2 && p.stride == 2 && p.pad == 0 && c.l_out(conv.input[1]) >= 2
        }
        (ConvGeom::Two(c), PoolGeom::Two(p)) => {
            p.size == (2, 2)
                && p.stride == (2, 2)
                && p.pad == (0, 0)
                && kernels::conv2d::fusable_with_pool2(&c, conv.input[1], conv.input[2])
        }
        _ => return None,
    };
    if pool2 {
        Some(Fused::Pool2)
    } else if act != Activation::Linear {
        Some(Fused::Deferred)
    } else {
        None
    }
}
