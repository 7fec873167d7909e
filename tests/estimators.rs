//! The MI estimators (docs/method.md §3): constants at S ≡ 0, signs, the efficient
//! infoNCE against the naive log-softmax form, and gradients against
//! finite differences in f64.

mod common;

use common::{Rng, coords, fd_grad};
use infomax::dim::{Estimator, ScoreShape, estimate, estimate_pairs};
use proptest::prelude::*;

fn loss(est: Estimator, sh: ScoreShape, s: &[f64]) -> f64 {
    let mut ds = vec![0.0; s.len()];
    estimate(est, sh, s, &mut ds, 1.0).unwrap().loss
}

#[test]
fn jsd_is_exactly_zero_when_all_scores_are_zero() {
    for (n, p) in [(2, 1), (4, 49), (64, 64)] {
        let sh = ScoreShape { n, k: 1, p };
        let s = vec![0f32; n * n * p];
        let mut ds = vec![0f32; s.len()];
        assert_eq!(estimate(Estimator::Jsd, sh, &s, &mut ds, 1.0).unwrap().loss, 0.0, "n={n} p={p}");
    }
}

#[test]
fn nce_equals_ln_1_plus_n_minus_1_p_when_all_scores_are_zero() {
    for (n, p) in [(2, 1), (4, 49), (64, 64)] {
        let sh = ScoreShape { n, k: 1, p };
        let want = (1.0 + ((n - 1) * p) as f64).ln();
        let got = loss(Estimator::Nce, sh, &vec![0.0; n * n * p]);
        assert!((got - want).abs() < 1e-12, "n={n} p={p}: {got} vs {want}");
    }
    // 64·64 CIFAR-sized: ln(1 + 63·64) = 8.3023 (docs/method.md §3.2: ≈ 8.30).
    assert!((loss(Estimator::Nce, ScoreShape { n: 64, k: 1, p: 64 }, &vec![0.0; 64 * 64 * 64]) - 8.3023).abs() < 1e-3);
}

#[test]
fn dv_is_zero_when_all_scores_are_equal() {
    let sh = ScoreShape { n: 5, k: 1, p: 7 };
    assert!(loss(Estimator::Dv, sh, &vec![3.0; 5 * 5 * 7]).abs() < 1e-12);
}

/// Scores +a on positives and −a on negatives.
fn separated(sh: ScoreShape, a: f64) -> Vec<f64> {
    let mut s = vec![0.0; sh.rows() * sh.cols()];
    for r in 0..sh.rows() {
        for c in 0..sh.cols() {
            s[r * sh.cols() + c] = if c / sh.p == r / sh.k { a } else { -a };
        }
    }
    s
}

#[test]
fn signs_are_right_when_positives_score_high() {
    let sh = ScoreShape { n: 8, k: 1, p: 9 };
    let good = separated(sh, 30.0);
    let bad = separated(sh, -30.0);
    // JSD → −2 ln 2, infoNCE → 0, DV decreases: a good encoder has low loss.
    let jsd = loss(Estimator::Jsd, sh, &good);
    assert!((jsd + 2.0 * std::f64::consts::LN_2).abs() < 1e-9, "{jsd}");
    assert!(loss(Estimator::Nce, sh, &good) < 1e-9);
    assert!(loss(Estimator::Dv, sh, &good) < -50.0);
    for est in [Estimator::Jsd, Estimator::Nce, Estimator::Dv] {
        assert!(loss(est, sh, &good) < loss(est, sh, &bad), "{est:?}");
        // Gradients push positives up and negatives down.
        let mut ds = vec![0.0; good.len()];
        let st = estimate(est, sh, &vec![0.0; good.len()], &mut ds, 1.0).unwrap();
        assert_eq!((st.pos_mean, st.neg_mean), (0.0, 0.0));
        for (c, g) in ds[..sh.cols()].iter().enumerate() {
            if c / sh.p == 0 { assert!(*g < 0.0, "{est:?}: positive gradient {g}") } else { assert!(*g > 0.0) }
        }
    }
    let mut ds = vec![0.0; good.len()];
    let st = estimate(Estimator::Jsd, sh, &good, &mut ds, 1.0).unwrap();
    assert_eq!((st.pos_mean, st.neg_mean), (30.0, -30.0));
    assert!(st.mi > 1.38);
}

/// infoNCE as the reference writes it: for each positive, a log-softmax over
/// [S⁺, all negatives of its row], materialised.
fn nce_naive(sh: ScoreShape, s: &[f64]) -> f64 {
    let mut total = 0.0;
    for r in 0..sh.rows() {
        let i = r / sh.k;
        let row = &s[r * sh.cols()..(r + 1) * sh.cols()];
        let negs: Vec<f64> = (0..sh.cols()).filter(|c| c / sh.p != i).map(|c| row[c]).collect();
        for p in 0..sh.p {
            let pos = row[i * sh.p + p];
            let mut logits = vec![pos];
            logits.extend(&negs);
            let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += lse - pos;
        }
    }
    total / (sh.rows() * sh.p) as f64
}

proptest! {
    #[test]
    fn efficient_nce_equals_naive_log_softmax(n in 2usize..7, k in 1usize..4, p in 1usize..10, seed in any::<u64>(), scale in prop_oneof![Just(1.0), Just(30.0), Just(300.0)]) {
        let sh = ScoreShape { n, k, p };
        let mut rng = Rng(seed);
        let s: Vec<f64> = rng.vec(sh.rows() * sh.cols()).iter().map(|v| v * scale).collect();
        let a = loss(Estimator::Nce, sh, &s);
        let b = nce_naive(sh, &s);
        prop_assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{} vs {}", a, b);
        // The f32 path agrees too, within 1e-5.
        let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        let mut ds = vec![0f32; s.len()];
        let a32 = estimate(Estimator::Nce, sh, &s32, &mut ds, 1.0).unwrap().loss;
        let b32 = nce_naive(sh, &s32.iter().map(|&v| v as f64).collect::<Vec<_>>());
        prop_assert!((a32 - b32).abs() <= 1e-5 * b32.abs().max(1.0));
    }

    #[test]
    fn estimator_gradients_match_fd(n in 2usize..6, k in 1usize..3, p in 1usize..8, seed in any::<u64>()) {
        let sh = ScoreShape { n, k, p };
        let mut rng = Rng(seed);
        let s: Vec<f64> = rng.vec(sh.rows() * sh.cols()).iter().map(|v| v * 4.0).collect();
        for est in [Estimator::Jsd, Estimator::Nce, Estimator::Dv] {
            let mut ds = vec![0.0; s.len()];
            estimate(est, sh, &s, &mut ds, 0.5).unwrap();
            let cs = coords(s.len(), 40, &mut rng);
            for (i, num) in fd_grad(&s, &cs, 1e-6, |sp| 0.5 * loss(est, sh, sp)) {
                prop_assert!((ds[i] - num).abs() <= 1e-6 * num.abs().max(1.0), "{:?}[{}]: {} vs {}", est, i, ds[i], num);
            }
        }
    }
}

#[test]
fn stable_for_huge_scores() {
    let sh = ScoreShape { n: 4, k: 1, p: 3 };
    let mut rng = Rng(3);
    let s: Vec<f32> = rng.vec_f32(48).iter().map(|v| v * 1e4).collect();
    for est in [Estimator::Jsd, Estimator::Nce, Estimator::Dv] {
        let mut ds = vec![0f32; 48];
        let st = estimate(est, sh, &s, &mut ds, 1.0).unwrap();
        assert!(st.loss.is_finite() && ds.iter().all(|v| v.is_finite()), "{est:?}");
    }
    let mut ds = vec![0f32; 4];
    assert!(estimate(Estimator::Jsd, ScoreShape { n: 1, k: 1, p: 4 }, &[0f32; 4], &mut ds, 1.0).is_err(), "batch of 1");
}

fn pair_loss(est: Estimator, pos: &[f64], neg: &[f64]) -> f64 {
    let (mut dp, mut dn) = (vec![0.0; pos.len()], vec![0.0; neg.len()]);
    estimate_pairs(est, pos, neg, &mut dp, &mut dn, 1.0).unwrap().loss
}

proptest! {
    /// A batch of two single-location images has exactly one negative per
    /// positive, so the pair estimator (concat head) must equal the matrix
    /// estimator on S = [[s00, s01], [s10, s11]]: positives s00, s11,
    /// negatives s01 (row 0) and s10 (row 1), for JSD, infoNCE and DV.
    #[test]
    fn pair_estimator_equals_matrix_estimator_on_two_images(s in prop::array::uniform4(-20.0f64..20.0)) {
        let sh = ScoreShape { n: 2, k: 1, p: 1 };
        for est in [Estimator::Jsd, Estimator::Nce, Estimator::Dv] {
            let mut ds = [0.0; 4];
            let m = estimate(est, sh, &s, &mut ds, 1.0).unwrap();
            let (pos, neg) = ([s[0], s[3]], [s[1], s[2]]);
            let (mut dp, mut dn) = ([0.0; 2], [0.0; 2]);
            let q = estimate_pairs(est, &pos, &neg, &mut dp, &mut dn, 1.0).unwrap();
            prop_assert!((m.loss - q.loss).abs() <= 1e-12 * m.loss.abs().max(1.0), "{:?}: {} vs {}", est, m.loss, q.loss);
            prop_assert!((m.pos_mean - q.pos_mean).abs() <= 1e-12 && (m.neg_mean - q.neg_mean).abs() <= 1e-12);
            for (a, b) in [(ds[0], dp[0]), (ds[3], dp[1]), (ds[1], dn[0]), (ds[2], dn[1])] {
                prop_assert!((a - b).abs() <= 1e-12, "{:?} gradient: {} vs {}", est, a, b);
            }
        }
    }

    #[test]
    fn pair_estimator_gradients_match_fd(len in 1usize..40, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let s: Vec<f64> = rng.vec(2 * len).iter().map(|v| v * 4.0).collect();
        for est in [Estimator::Jsd, Estimator::Nce, Estimator::Dv] {
            let (mut dp, mut dn) = (vec![0.0; len], vec![0.0; len]);
            estimate_pairs(est, &s[..len], &s[len..], &mut dp, &mut dn, 0.5).unwrap();
            let d: Vec<f64> = dp.iter().chain(&dn).copied().collect();
            let cs = coords(s.len(), 40, &mut rng);
            for (i, num) in fd_grad(&s, &cs, 1e-6, |sp| 0.5 * pair_loss(est, &sp[..len], &sp[len..])) {
                prop_assert!((d[i] - num).abs() <= 1e-6 * num.abs().max(1.0), "{:?}[{}]: {} vs {}", est, i, d[i], num);
            }
        }
    }
}

#[test]
fn pair_estimator_constants_at_zero_scores() {
    let z = [0f64; 10];
    assert_eq!(pair_loss(Estimator::Jsd, &z, &z), 0.0);
    assert!((pair_loss(Estimator::Nce, &z, &z) - std::f64::consts::LN_2).abs() < 1e-15);
    assert!(pair_loss(Estimator::Dv, &z, &z).abs() < 1e-15);
    let (mut dp, mut dn) = ([0.0; 3], [0.0; 2]);
    assert!(
        estimate_pairs(Estimator::Jsd, &[0.0; 3], &[0.0; 2], &mut dp, &mut dn[..], 1.0).is_err(),
        "length mismatch"
    );
}

/// The score tensor as the spec writes it, `S[i, k, j, p]`, read from the
/// `[(i, k), (j, p)]` matrix.
fn s4(sh: ScoreShape, s: &[f64], i: usize, k: usize, j: usize, p: usize) -> f64 {
    s[(i * sh.k + k) * sh.cols() + j * sh.p + p]
}

/// JSD, infoNCE and DV with K globals, materialised from the spec's formulas
/// (docs/method.md §3.1–3.3): every (i, k, p) positive, every (i, k, j ≠ i, p) negative;
/// infoNCE builds the full logit vector of every positive.
fn naive_k(est: Estimator, sh: ScoreShape, s: &[f64]) -> f64 {
    let (n, kk, pp) = (sh.n, sh.k, sh.p);
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for i in 0..n {
        for k in 0..kk {
            for j in 0..n {
                for p in 0..pp {
                    let v = s4(sh, s, i, k, j, p);
                    if i == j { pos.push(v) } else { neg.push(v) }
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ln2 = std::f64::consts::LN_2;
    match est {
        Estimator::Jsd => {
            mean(&neg.iter().map(|&v| common::softplus_ref(v) - ln2).collect::<Vec<_>>())
                + mean(&pos.iter().map(|&v| common::softplus_ref(-v) - ln2).collect::<Vec<_>>())
        }
        Estimator::Nce => {
            let mut total = 0.0;
            for i in 0..n {
                for k in 0..kk {
                    for p in 0..pp {
                        let mut logits = vec![s4(sh, s, i, k, i, p)];
                        for j in (0..n).filter(|&j| j != i) {
                            logits.extend((0..pp).map(|q| s4(sh, s, i, k, j, q)));
                        }
                        total += common::lse_ref(&logits) - logits[0];
                    }
                }
            }
            total / (n * kk * pp) as f64
        }
        Estimator::Dv => common::lse_ref(&neg) - (neg.len() as f64).ln() - mean(&pos),
    }
}

proptest! {
    #![proptest_config(common::cfg(24))]
    /// Multiple globals (docs/method.md §7.1, docs/method.md §9.3): the memory-bounded estimators
    /// (one log-sum-exp per (image, global) for infoNCE, never the
    /// N·P·(N·P+1)·K logits) equal the materialised forms, and their
    /// gradients match finite differences of the materialised forms.
    #[test]
    fn k_global_estimators_equal_the_materialised_forms(n in 2usize..6, k in 1usize..6, p in 1usize..7, seed in any::<u64>(), scale in prop_oneof![Just(1.0), Just(20.0)]) {
        let sh = ScoreShape { n, k, p };
        let mut rng = Rng(seed);
        let s: Vec<f64> = rng.vec(sh.rows() * sh.cols()).iter().map(|v| v * scale).collect();
        for est in [Estimator::Jsd, Estimator::Nce, Estimator::Dv] {
            let mut ds = vec![0.0; s.len()];
            let a = estimate(est, sh, &s, &mut ds, 1.0).unwrap().loss;
            let b = naive_k(est, sh, &s);
            prop_assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "{:?} k={}: {} vs {}", est, k, a, b);
            if scale == 1.0 {
                let cs = coords(s.len(), 30, &mut rng);
                for (i, num) in fd_grad(&s, &cs, 1e-6, |sp| naive_k(est, sh, sp)) {
                    prop_assert!((ds[i] - num).abs() <= 1e-6 * num.abs().max(1.0), "{:?}[{}]: {} vs {}", est, i, ds[i], num);
                }
            }
        }
        // S ≡ 0: infoNCE is ln(1 + (N−1)P) whatever K.
        let z = vec![0.0; s.len()];
        prop_assert!((loss(Estimator::Nce, sh, &z) - (1.0 + ((n - 1) * p) as f64).ln()).abs() < 1e-12);
    }
}
