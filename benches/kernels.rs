//! The kernel benchmark cases (`kernels::cases`), and the same operations
//! through candle-core's CPU backend in the same run, for a ratio measured
//! side by side. `cargo bench --bench kernels`.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn ours(c: &mut Criterion) {
    let mut group = c.benchmark_group("genocnn");
    group.sample_size(20);
    for mut case in kernels::cases::all() {
        group.throughput(Throughput::Elements(case.flops as u64));
        group.bench_function(case.name, |b| b.iter(|| (case.run)()));
    }
    group.finish();
}

/// candle: forward, then backward through candle's autograd of Σ y ⊙ dy.
fn candle_conv1d(c_in: usize, c_out: usize, l: usize, input_grad: bool) -> impl FnMut() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (32, c_in, l), &dev).unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let w = Var::randn(0f32, 0.1, (c_out, c_in, 5), &dev).unwrap();
    let b = Var::zeros(c_out, DType::F32, &dev).unwrap();
    let dy = Tensor::randn(0f32, 1.0, (32, c_out, l - 4), &dev).unwrap();
    move || {
        let xin: &Tensor = if input_grad {
            x.as_tensor()
        } else {
            &x.as_tensor().detach()
        };
        let y = xin
            .conv1d(w.as_tensor(), 0, 1, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, c_out, 1)).unwrap())
            .unwrap();
        let loss = (y * &dy).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        std::hint::black_box(grads.get(w.as_tensor()).unwrap());
    }
}

fn candle(c: &mut Criterion) {
    let mut group = c.benchmark_group("candle-cpu");
    group.sample_size(10);
    let mut conv1 = candle_conv1d(1, 16, 10_000, false);
    group.bench_function("genomic_conv1", |b| b.iter(&mut conv1));
    let mut conv2 = candle_conv1d(16, 32, 4998, true);
    group.bench_function("genomic_conv2", |b| b.iter(&mut conv2));
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (32, 79_904), &dev).unwrap();
    let w = Var::randn(0f32, 0.01, (64, 79_904), &dev).unwrap();
    let dy = Tensor::randn(0f32, 1.0, (32, 64), &dev).unwrap();
    group.bench_function("genomic_dense", |b| {
        b.iter(|| {
            let y = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
            let grads = (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
            std::hint::black_box(grads.get(w.as_tensor()).unwrap());
        })
    });
    let xp = Var::randn(0f32, 1.0, (32, 32, 1, 4994), &dev).unwrap();
    let dyp = Tensor::randn(0f32, 1.0, (32, 32, 1, 2497), &dev).unwrap();
    group.bench_function("genomic_pool", |b| {
        b.iter(|| {
            let y = xp
                .as_tensor()
                .max_pool2d_with_stride((1, 2), (1, 2))
                .unwrap();
            let grads = (y * &dyp).unwrap().sum_all().unwrap().backward().unwrap();
            std::hint::black_box(grads.get(xp.as_tensor()).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, ours, candle);
criterion_main!(benches);
