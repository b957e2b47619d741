//! `branches`: parallel towers on the same input, merged by channel
//! concatenation (`merge = "concat"`, as in an Inception block) or by sum
//! (`merge = "add"`, as in summed towers). Each branch is a list of layers:
//!
//! ```toml
//! [[layers]]
//! type = "branches"
//! merge = "concat"
//! [[layers.branch]]          # branch 0: layers.N.branch.0.layers.0, …
//! [[layers.branch.layers]]
//! type = "conv1d"
//! filters = 8
//! kernel = 1
//! [[layers.branch]]          # branch 1
//! [[layers.branch.layers]]
//! type = "conv1d"
//! filters = 8
//! kernel = 3
//! padding = "same"
//! ```

use serde::{Deserialize, Serialize};

use super::sequential::{sequence, Sequential};
use super::{describe, At, Builder, Layer, LayerSpec, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};

/// How branch outputs are merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Joined along the channels: the other dimensions must agree.
    #[default]
    Concat,
    /// Summed: the shapes must agree.
    Add,
}

/// One branch: its layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    pub layers: Vec<LayerSpec>,
}

/// Parallel branches and their merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchesSpec {
    #[serde(default)]
    pub merge: Merge,
    pub branch: Vec<BranchSpec>,
}

impl SpecNode for BranchesSpec {
    fn nested(&self) -> Vec<&LayerSpec> {
        self.branch.iter().flat_map(|b| &b.layers).collect()
    }
    fn nested_mut(&mut self) -> Vec<&mut LayerSpec> {
        self.branch.iter_mut().flat_map(|b| &mut b.layers).collect()
    }
}

/// Built branches.
pub struct Branches<B: Backend> {
    path: String,
    merge: Merge,
    branches: Vec<Sequential<B>>,
    /// Each branch's output channels (for splitting a concatenated gradient).
    channels: Vec<usize>,
    shape: Vec<usize>,
}

pub fn build<B: Backend>(
    s: &BranchesSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    if s.branch.len() < 2 {
        return Err(at.err(format!(
            "has {} branch(es); list two or more with [[layers.branch]]",
            s.branch.len()
        )));
    }
    let branches = s
        .branch
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let at = at.child(&format!("branch.{k}"), "branch");
            sequence(&b.layers, &at, &at.path, input, cx)
        })
        .collect::<Result<Vec<_>>>()?;
    let shapes: Vec<&[usize]> = branches.iter().map(|b| b.output_shape()).collect();
    let first = shapes[0];
    let shape = match s.merge {
        Merge::Add => {
            if let Some(k) = shapes.iter().position(|s| *s != first) {
                return Err(at.err(format!(
                    "merge = \"add\" needs branches of one shape, but branch 0 gives {} and branch {k} gives {}",
                    describe(first),
                    describe(shapes[k])
                )));
            }
            first.to_vec()
        }
        Merge::Concat => {
            let fits =
                |s: &[usize]| !s.is_empty() && s.len() == first.len() && s[1..] == first[1..];
            if let Some(k) = shapes.iter().position(|s| !fits(s)) {
                return Err(at.err(format!(
                    "merge = \"concat\" joins channels, so the other dimensions must agree, but branch 0 gives {} and branch {k} gives {} (use padding = \"same\")",
                    describe(first),
                    describe(shapes[k])
                )));
            }
            let mut shape = first.to_vec();
            shape[0] = shapes.iter().map(|s| s[0]).sum();
            shape
        }
    };
    let channels = shapes.iter().map(|s| s[0]).collect();
    Ok(Box::new(Branches {
        path: at.path.clone(),
        merge: s.merge,
        branches,
        channels,
        shape,
    }))
}

impl<B: Backend> Layer<B> for Branches<B> {
    fn kind(&self) -> &'static str {
        "branches"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let n = self.branches.len();
        let mut outs = Vec::with_capacity(n);
        let mut x = Some(x);
        for (k, branch) in self.branches.iter().enumerate() {
            // The last branch takes the input itself; the others a copy.
            let input = if k + 1 == n {
                x.take().expect("input")
            } else {
                x.clone().expect("input")
            };
            outs.push(f.run(branch, input)?);
        }
        let be = f.backend;
        match self.merge {
            Merge::Concat => be.concat_channels(&outs.iter().collect::<Vec<_>>()),
            Merge::Add => {
                let mut it = outs.into_iter();
                let mut sum = it.next().expect("two or more branches");
                for o in it {
                    be.add_scaled(&mut sum, &o, 1.0)?;
                }
                Ok(sum)
            }
        }
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let be = b.backend;
        let parts = match self.merge {
            Merge::Concat => be.split_channels(&dy, &self.channels)?,
            Merge::Add => vec![dy; self.branches.len()],
        };
        // In the reverse order of forward, as the tape was written.
        let mut dx: Option<B::Tensor> = None;
        for (branch, g) in self.branches.iter().zip(parts).rev() {
            if let Some(d) = b.run(branch, g, need_dx)? {
                match &mut dx {
                    Some(acc) => be.add_scaled(acc, &d, 1.0)?,
                    None => dx = Some(d),
                }
            }
        }
        Ok(dx)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        for br in &self.branches {
            br.visit_params(f);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        for br in &mut self.branches {
            br.visit_params_mut(f);
        }
    }

    fn children(&self) -> Vec<&dyn Layer<B>> {
        self.branches.iter().map(|b| b as &dyn Layer<B>).collect()
    }

    fn visit_sequences_mut(&mut self, f: &mut dyn FnMut(&mut super::LayerList<B>)) {
        for br in &mut self.branches {
            br.visit_sequences_mut(f);
        }
    }
}
