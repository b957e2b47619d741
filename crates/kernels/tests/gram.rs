//! The int8 Gram kernel (issue 17) against the naive u64 loop, on every int8
//! path this CPU can run: sizes at the register tile (VNNI: 8 rows × 32
//! columns; AMX: tiles of 16, blocks of 32 and 64 bytes per tile row), the
//! parallel block (64 rows) and the pass length (4096 bytes), each ± 1,
//! and two passes and a short one;
//! values up to 127; row strides wider than a row; C accumulated into, with
//! its upper triangle left alone.

use kernels::reference;
use kernels::{gram_lower_u8, Int8Path};

mod common;

fn paths() -> Vec<Int8Path> {
    let paths = Int8Path::available();
    if paths.is_empty() {
        eprintln!("skipped: this CPU has no int8 path (AMX-INT8 or AVX512-VNNI)");
    }
    if !paths.contains(&Int8Path::Amx) {
        eprintln!("AMX-INT8 not tested: this CPU has no AMX, or Linux did not grant it");
    }
    paths
}

fn check(path: Int8Path, n: usize, k: usize, pad: usize, max: u8, parallel: bool, seed: u64) {
    let ldx = k + pad;
    let levels = max as f32 + 1.0;
    let x: Vec<u8> = common::data(n * ldx, seed)
        .iter()
        .map(|v| (((v + 1.0) / 2.0 * levels) as u8).min(max))
        .collect();
    let ldc = n + 3;
    let c0: Vec<i32> = common::data(n * ldc, seed + 1000)
        .iter()
        .map(|v| (v * 1000.0) as i32)
        .collect();
    let mut c = c0.clone();
    gram_lower_u8(path, n, k, &x, ldx, &mut c, ldc, parallel);
    let want = reference::gram_u8(n, k, &x, ldx);
    for i in 0..n {
        for j in 0..ldc {
            let got = c[i * ldc + j] as i64;
            let expect = if j <= i {
                c0[i * ldc + j] as i64 + want[i * n + j] as i64
            } else {
                c0[i * ldc + j] as i64
            };
            assert_eq!(
                got, expect,
                "{path}: n {n}, k {k}, ldx {ldx}, max {max}: C[{i}, {j}]"
            );
        }
    }
}

#[test]
fn gram_matches_the_naive_loop_at_every_edge() {
    for path in paths() {
        let mut seed = 1;
        for n in [1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 129] {
            for k in [
                1, 3, 4, 5, 63, 64, 65, 1023, 1024, 1025, 2051, 4095, 4096, 4097, 8195,
            ] {
                for pad in [0, 5] {
                    seed += 1;
                    check(path, n, k, pad, 2, seed % 2 == 0, seed);
                }
            }
        }
    }
}

#[test]
fn gram_is_exact_for_bytes_up_to_127() {
    for path in paths() {
        check(path, 70, 3000, 1, 127, true, 7);
    }
}

#[test]
#[should_panic(expected = "exceeds 127")]
fn gram_refuses_bytes_above_127() {
    let Some(path) = paths().into_iter().next() else {
        panic!("exceeds 127 (skipped: no int8 path on this CPU)");
    };
    let x = vec![128u8; 4];
    let mut c = vec![0i32; 4];
    gram_lower_u8(path, 2, 2, &x, 2, &mut c, 2, false);
}
