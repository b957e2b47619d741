//! End-to-end tests of the `genocnn` command line, one binary with topic modules.

mod bad_input;
mod common;
mod cv;
mod device;
mod explain;
mod formats;
mod image;
mod multitrait;
mod options;
mod qc;
mod real_data;
mod reliability;
mod resume;
mod simulate;
mod solvers;
mod train;
mod transfer;
mod workflows;
