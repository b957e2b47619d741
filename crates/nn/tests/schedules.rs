//! The learning-rate schedules against their formulas, epoch by epoch
//! (issue 16: no test covered them).

use nn::{Schedule, ScheduleState};

#[test]
fn constant_step_and_cosine_follow_their_formulas() {
    let lrs = |s: Schedule, epochs: usize| -> Vec<f32> {
        let mut st = ScheduleState::new(s, 0.1, epochs);
        (0..epochs).map(|e| st.lr(e)).collect()
    };
    assert_eq!(lrs(Schedule::Constant, 4), vec![0.1; 4]);
    // lr · γ^⌊e / every⌋.
    let step = lrs(
        Schedule::Step {
            every: 3,
            gamma: 0.5,
        },
        8,
    );
    let want = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025];
    for (g, w) in step.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{step:?}");
    }
    // min + ½(lr − min)(1 + cos(π e / (E − 1))): lr at the first epoch,
    // the midpoint halfway, min at the last.
    let cos = lrs(Schedule::Cosine { min_lr: 0.01 }, 11);
    for (e, g) in cos.iter().enumerate() {
        let w = 0.01 + 0.5 * 0.09 * (1.0 + (std::f64::consts::PI * e as f64 / 10.0).cos());
        assert!((*g as f64 - w).abs() < 1e-6, "epoch {e}: {g} vs {w}");
    }
    assert!(
        (cos[0] - 0.1).abs() < 1e-7
            && (cos[5] - 0.055).abs() < 1e-6
            && (cos[10] - 0.01).abs() < 1e-7
    );
}

#[test]
fn reduce_on_plateau_waits_its_patience_then_cuts_down_to_the_floor() {
    let mut st = ScheduleState::new(
        Schedule::ReduceOnPlateau {
            factor: 0.5,
            patience: 2,
            min_lr: 0.03,
        },
        0.1,
        20,
    );
    // Improving, then flat: the cut comes after `patience` + 1 epochs
    // without improvement, and the count starts again after a cut.
    let losses = [
        1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.6,
    ];
    let mut seen = Vec::new();
    for (e, l) in losses.iter().enumerate() {
        seen.push(st.lr(e));
        st.observe(*l);
    }
    let want = [
        0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03,
    ];
    for (e, (g, w)) in seen.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-7, "epoch {e}: {seen:?}");
    }
}
