//! Prior matching (docs/method.md §4.4): the discriminator loss, its gradient penalty
//! and the penalty's second-order parameter gradient against finite
//! differences in f64; the penalty against a naive per-sample input
//! gradient; detach; the docs/method.md §9.2 constants; a toy problem (docs/method.md §10 item 7); typed
//! errors.

mod common;

use common::{Rng as TestRng, coords};
use infomax::dim::prior::{
    DiscLayout, DiscScratch, Prior, PriorConfig, discriminator_logits, discriminator_loss, encoder_loss,
    gradient_penalty,
};
use infomax::optim::AdamConfig;
use infomax::params::ParamTable;
use infomax::rng::Rng;
use infomax::{Error, bounds};

const LN2: f64 = core::f64::consts::LN_2;

/// A small discriminator in f64, weights at PyTorch init scaled ×3 so that
/// logits and input gradients are O(1) and every term matters.
fn setup(y_dim: usize, hidden: (usize, usize), seed: u64) -> (DiscLayout, ParamTable, Vec<f64>) {
    let (lay, table) = DiscLayout::build(y_dim, hidden).unwrap();
    let mut p = vec![0f32; table.len()];
    table.init(&mut p, seed);
    (lay, table, p.iter().map(|&v| 3.0 * v as f64).collect())
}

fn tensor<'a>(table: &ParamTable, p: &'a [f64], name: &str) -> &'a [f64] {
    &p[table.get(name).unwrap().range()]
}

/// Direct-loop forward: (logits, pre-activations of both hidden layers).
fn naive_forward(table: &ParamTable, p: &[f64], u: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let w1 = tensor(table, p, "prior.disc.0.weight");
    let b1 = tensor(table, p, "prior.disc.0.bias");
    let w2 = tensor(table, p, "prior.disc.2.weight");
    let b2 = tensor(table, p, "prior.disc.2.bias");
    let w3 = tensor(table, p, "prior.disc.4.weight");
    let b3 = tensor(table, p, "prior.disc.4.bias");
    let (h1, h2, d) = (b1.len(), b2.len(), u.len() / n);
    let (mut logits, mut pre) = (Vec::new(), Vec::new());
    for i in 0..n {
        let x = &u[i * d..(i + 1) * d];
        let z1: Vec<f64> = (0..h1).map(|j| b1[j] + (0..d).map(|k| w1[j * d + k] * x[k]).sum::<f64>()).collect();
        let a1: Vec<f64> = z1.iter().map(|&v| v.max(0.0)).collect();
        let z2: Vec<f64> = (0..h2).map(|j| b2[j] + (0..h1).map(|k| w2[j * h1 + k] * a1[k]).sum::<f64>()).collect();
        logits.push(b3[0] + (0..h2).map(|j| w3[j] * z2[j].max(0.0)).sum::<f64>());
        pre.extend(z1);
        pre.extend(z2);
    }
    (logits, pre)
}

fn masks(table: &ParamTable, p: &[f64], inputs: &[(&[f64], usize)]) -> Vec<bool> {
    inputs.iter().flat_map(|&(u, n)| naive_forward(table, p, u, n).1.into_iter().map(|v| v > 0.0)).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Central differences of `f` at the sampled coordinates of every tensor,
/// compared with `analytic` to 1e-5 relative (plus a 1e-8 floor for
/// roundoff of an O(1) loss at h = 1e-6). Coordinates whose ±h perturbation
/// flips a ReLU mask (a kink, where the derivative is undefined) are skipped.
fn check_params_fd(
    what: &str,
    table: &ParamTable,
    p: &[f64],
    analytic: &[f64],
    inputs: &[(&[f64], usize)],
    mut f: impl FnMut(&[f64]) -> f64,
) {
    const H: f64 = 1e-6;
    let mut rng = TestRng(17);
    let base = masks(table, p, inputs);
    let (mut checked, mut skipped) = (0, 0);
    let mut q = p.to_vec();
    for e in table.entries() {
        for c in coords(e.len, 12, &mut rng) {
            let i = e.offset + c;
            q[i] = p[i] + H;
            let (fp, mp) = (f(&q), masks(table, &q, inputs));
            q[i] = p[i] - H;
            let (fm, mm) = (f(&q), masks(table, &q, inputs));
            q[i] = p[i];
            if mp != base || mm != base {
                skipped += 1;
                continue;
            }
            let num = (fp - fm) / (2.0 * H);
            let a = analytic[i];
            assert!(
                (a - num).abs() <= 1e-5 * num.abs() + 1e-8,
                "{what}: {}[{c}]: analytic {a:e} vs finite-difference {num:e}",
                e.name
            );
            checked += 1;
        }
    }
    assert!(skipped * 10 <= checked, "{what}: {skipped} kinks skipped, only {checked} checked");
}

fn data(n: usize, y_dim: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut r = TestRng(seed);
    let z: Vec<f64> = (0..n * y_dim).map(|_| 0.5 + 0.5 * r.uniform()).collect();
    let y: Vec<f64> = (0..n * y_dim).map(|_| 2.0 * r.uniform()).collect();
    (z, y)
}

#[test]
fn discriminator_loss_gradient_with_penalty_matches_finite_differences() {
    let (n, y_dim) = (4, 5);
    let (lay, table, p) = setup(y_dim, (9, 7), 3);
    let (z, y) = data(n, y_dim, 5);
    let fake: Vec<f64> = y.iter().map(|&v| sigmoid(v)).collect();
    let inputs = [(&z[..], n), (&fake[..], n)];
    let mut sc = DiscScratch::default();
    for lambda in [0.0, 1.0, 5.0] {
        let mut g = vec![0.0; lay.len()];
        let s = discriminator_loss(&lay, &p, &z, &y, n, lambda, Some(&mut g), &mut sc).unwrap();
        assert!(s.gp > 1e-2, "penalty too small to test: {}", s.gp);
        let mut sc2 = DiscScratch::default();
        check_params_fd(&format!("L_D (λ = {lambda})"), &table, &p, &g, &inputs, |q| {
            discriminator_loss(&lay, q, &z, &y, n, lambda, None, &mut sc2).unwrap().loss
        });
    }
    // The penalty's share of the weight gradients is not negligible, so the
    // check above really exercises the second-order terms.
    let grad = |lambda: f64| {
        let mut g = vec![0.0; lay.len()];
        discriminator_loss(&lay, &p, &z, &y, n, lambda, Some(&mut g), &mut DiscScratch::default()).unwrap();
        g
    };
    let (g0, g5) = (grad(0.0), grad(5.0));
    for name in ["prior.disc.0.weight", "prior.disc.2.weight", "prior.disc.4.weight"] {
        let (a, b) = (tensor(&table, &g0, name), tensor(&table, &g5, name));
        let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
        let size: f64 = a.iter().map(|x| x.abs()).sum();
        assert!(diff > 0.1 * size, "{name}: penalty changes the gradient by only {diff:e} (of {size:e})");
    }
    // Gradients accumulate: a second call adds the same again.
    let mut g = grad(1.0);
    discriminator_loss(&lay, &p, &z, &y, n, 1.0, Some(&mut g), &mut sc).unwrap();
    for (a, b) in g.iter().zip(grad(1.0)) {
        assert!((a - 2.0 * b).abs() <= 1e-12 * b.abs().max(1.0));
    }
}

#[test]
fn gradient_penalty_parameter_gradient_matches_finite_differences() {
    let (n, y_dim) = (5, 4);
    let (lay, table, p) = setup(y_dim, (11, 6), 8);
    let (u, _) = data(n, y_dim, 9);
    let mut g = vec![0.0; lay.len()];
    let mut sc = DiscScratch::default();
    let gp = gradient_penalty(&lay, &p, &u, n, Some(&mut g), &mut sc).unwrap();
    assert!(gp > 1e-2);
    check_params_fd("GP", &table, &p, &g, &[(&u[..], n)], |q| {
        gradient_penalty(&lay, q, &u, n, None, &mut DiscScratch::default()).unwrap()
    });
    // Masks are piecewise constant and the output bias does not enter ∂d/∂u:
    // the penalty has no bias gradient.
    for name in ["prior.disc.0.bias", "prior.disc.2.bias", "prior.disc.4.bias"] {
        assert!(tensor(&table, &g, name).iter().all(|&v| v == 0.0), "{name}");
    }
}

#[test]
fn encoder_loss_gradient_matches_finite_differences_and_is_added() {
    let (n, y_dim, gamma) = (3, 5, 0.7);
    let (lay, table, p) = setup(y_dim, (8, 6), 11);
    let (_, y) = data(n, y_dim, 12);
    let before: Vec<f64> = TestRng(13).vec(n * y_dim);
    let mut dy = before.clone();
    let mut sc = DiscScratch::default();
    let loss = encoder_loss(&lay, &p, &y, n, gamma, &mut dy, &mut sc).unwrap();
    let u: Vec<f64> = y.iter().map(|&v| sigmoid(v)).collect();
    let logits = naive_forward(&table, &p, &u, n).0;
    let want = gamma * logits.iter().map(|&d| (1.0 + (-d).exp()).ln()).sum::<f64>() / n as f64;
    assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    const H: f64 = 1e-6;
    let mut q = y.clone();
    let mut scratch = vec![0.0; n * y_dim];
    for i in 0..y.len() {
        q[i] = y[i] + H;
        let fp = encoder_loss(&lay, &p, &q, n, gamma, &mut scratch, &mut sc).unwrap();
        q[i] = y[i] - H;
        let fm = encoder_loss(&lay, &p, &q, n, gamma, &mut scratch, &mut sc).unwrap();
        q[i] = y[i];
        let num = (fp - fm) / (2.0 * H);
        let a = dy[i] - before[i];
        assert!((a - num).abs() <= 1e-5 * num.abs() + 1e-9, "dY[{i}]: analytic {a:e} vs fd {num:e}");
        assert!(num.abs() > 1e-6, "dY[{i}] is too small to test");
    }
}

#[test]
fn gradient_penalty_equals_naive_per_sample_input_gradients() {
    let (n, y_dim) = (6, 7);
    let (lay, table, p) = setup(y_dim, (13, 9), 21);
    let (u, _) = data(n, y_dim, 22);
    // Logits against the direct-loop forward.
    let logits = discriminator_logits(&lay, &p, &u, n).unwrap();
    let (naive, _) = naive_forward(&table, &p, &u, n);
    for (a, b) in logits.iter().zip(&naive) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // GP = mean over samples of ||∂d/∂u_i||², ∂d/∂u_i by central differences
    // of d(u_i) alone (not the reference's last-sample penalty, docs/method.md §9.5).
    const H: f64 = 1e-6;
    let mut total = 0.0;
    let mut per_sample = Vec::new();
    for i in 0..n {
        let row = &u[i * y_dim..(i + 1) * y_dim];
        let mut x = row.to_vec();
        let mut sq = 0.0;
        for k in 0..y_dim {
            x[k] = row[k] + H;
            let dp = discriminator_logits(&lay, &p, &x, 1).unwrap()[0];
            x[k] = row[k] - H;
            let dm = discriminator_logits(&lay, &p, &x, 1).unwrap()[0];
            x[k] = row[k];
            sq += ((dp - dm) / (2.0 * H)).powi(2);
        }
        per_sample.push(sq);
        total += sq;
    }
    let want = total / n as f64;
    let got = gradient_penalty(&lay, &p, &u, n, None, &mut DiscScratch::default()).unwrap();
    assert!((got - want).abs() <= 1e-7 * want, "GP {got} vs naive {want}");
    // The per-sample penalties differ, so the mean is not the last sample's.
    let last = per_sample[n - 1] / n as f64;
    assert!((got - last).abs() > 1e-3 * got, "GP equals the reference's last-sample penalty");
    // L_D's penalty term is ½(GP(z) + GP(σY)), each a per-sample mean.
    let (z, y) = data(n, y_dim, 23);
    let fake: Vec<f64> = y.iter().map(|&v| sigmoid(v)).collect();
    let mut sc = DiscScratch::default();
    let s = discriminator_loss(&lay, &p, &z, &y, n, 2.0, None, &mut sc).unwrap();
    let gz = gradient_penalty(&lay, &p, &z, n, None, &mut sc).unwrap();
    let gf = gradient_penalty(&lay, &p, &fake, n, None, &mut sc).unwrap();
    assert!((s.gp_real - gz).abs() < 1e-12 && (s.gp_fake - gf).abs() < 1e-12);
    assert!((s.gp - 0.5 * (gz + gf)).abs() < 1e-12);
    let sp = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    let dz = naive_forward(&table, &p, &z, n).0;
    let df = naive_forward(&table, &p, &fake, n).0;
    let want_loss = dz.iter().map(|&d| sp(-d)).sum::<f64>() / n as f64
        + df.iter().map(|&d| sp(d)).sum::<f64>() / n as f64
        + 2.0 * 0.5 * (gz + gf);
    assert!((s.loss - want_loss).abs() < 1e-12, "{} vs {want_loss}", s.loss);
}

fn small_cfg() -> PriorConfig {
    PriorConfig { hidden: (32, 16), ..PriorConfig::default() }
}

fn encoder_samples(n: usize, y_dim: usize, seed: u64) -> Vec<f32> {
    // σ(Y) ≈ 0.2 ± 0.05 on every coordinate.
    let mut r = TestRng(seed);
    (0..n * y_dim)
        .map(|_| {
            let s = 0.2 + 0.05 * r.uniform();
            (s / (1.0 - s)).ln() as f32
        })
        .collect()
}

#[test]
fn discriminator_step_detaches_y_and_encoder_loss_leaves_the_discriminator_alone() {
    let (n, y_dim) = (8, 6);
    let mut prior = Prior::new(y_dim, small_cfg(), 1).unwrap();
    let y = encoder_samples(n, y_dim, 2);
    let y0 = y.clone();
    let mut rng = Rng::new(3);
    prior.discriminator_step(&y, n, &mut rng).unwrap();
    assert_eq!(y, y0, "discriminator_step changed Y");
    // The discriminator step takes no dY at all: the encoder gets nothing from L_D.
    let (params, grads) = (prior.params().to_vec(), prior.grads().to_vec());
    let (m, v, t) = prior.adam_state();
    let (m, v) = (m.to_vec(), v.to_vec());
    assert!(grads.iter().any(|&g| g != 0.0));
    let mut dy = vec![0f32; n * y_dim];
    prior.encoder_loss(&y, n, &mut dy).unwrap();
    assert_eq!(y, y0, "encoder_loss changed Y");
    assert!(dy.iter().any(|&g| g != 0.0));
    assert_eq!(prior.params(), &params[..], "encoder_loss changed the discriminator");
    assert_eq!(prior.grads(), &grads[..], "encoder_loss touched the discriminator's gradients");
    let (m2, v2, t2) = prior.adam_state();
    assert!(m2 == &m[..] && v2 == &v[..] && t2 == t);
}

#[test]
fn zero_discriminator_gives_the_sign_convention_constants() {
    // docs/method.md §9.2: d ≡ 0 ⇒ L_D = 2 ln 2 (the penalty is 0 too: ∂d/∂u = 0), L_E = γ ln 2.
    let (n, y_dim) = (16, 8);
    let (lay, table, mut p) = setup(y_dim, (20, 10), 4);
    for name in ["prior.disc.4.weight", "prior.disc.4.bias"] {
        p[table.get(name).unwrap().range()].fill(0.0);
    }
    let (z, y) = data(n, y_dim, 6);
    let mut sc = DiscScratch::default();
    for lambda in [0.0, 1.0] {
        let s = discriminator_loss(&lay, &p, &z, &y, n, lambda, None, &mut sc).unwrap();
        assert!((s.loss - 2.0 * LN2).abs() < 1e-14, "{}", s.loss);
        assert_eq!((s.gp, s.d_real_mean, s.d_fake_mean), (0.0, 0.0, 0.0));
    }
    let mut dy = vec![0.0; n * y_dim];
    let le = encoder_loss(&lay, &p, &y, n, 0.3, &mut dy, &mut sc).unwrap();
    assert!((le - 0.3 * LN2).abs() < 1e-14, "{le}");
    assert!(dy.iter().all(|&g| g == 0.0));

    // The f32 owner, same constants (the loss is summed in f64 from f32
    // logits that are exactly 0).
    let cfg = PriorConfig { gamma: 0.1, ..small_cfg() };
    let mut prior = Prior::new(y_dim, cfg, 9).unwrap();
    let r = prior.table().get("prior.disc.4.weight").unwrap().range();
    prior.params_mut()[r].fill(0.0);
    let r = prior.table().get("prior.disc.4.bias").unwrap().range();
    prior.params_mut()[r].fill(0.0);
    let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let mut dy = vec![0f32; n * y_dim];
    let le = prior.encoder_loss(&y32, n, &mut dy).unwrap();
    assert!((le - 0.1 * LN2).abs() < 1e-14);
    let s = prior.discriminator_step(&y32, n, &mut Rng::new(1)).unwrap();
    assert!((s.d_loss - 2.0 * LN2).abs() < 1e-14, "{}", s.d_loss);
    assert!((s.e_loss - 0.1 * LN2).abs() < 1e-14);
    assert_eq!(s.gp, 0.0);
}

/// 200 discriminator steps on docs/method.md §10 item 7's toy problem: encoder samples
/// concentrated at σ(Y) ≈ 0.2, prior U[0,1]^16, the reference's
/// discriminator and optimiser. Returns the prior, the mean of the first and
/// last ten losses and the last step's stats.
fn train_toy(lambda: f64) -> (Prior, f64, f64, infomax::dim::prior::PriorStats) {
    let (n, y_dim) = (64, 16);
    let cfg = PriorConfig { gamma: 1.0, lambda, ..PriorConfig::default() };
    let mut prior = Prior::new(y_dim, cfg, 5).unwrap();
    let mut rng = Rng::new(6);
    let mut losses = Vec::new();
    let mut last = Default::default();
    for step in 0..200 {
        let y = encoder_samples(n, y_dim, 100 + step);
        last = prior.discriminator_step(&y, n, &mut rng).unwrap();
        assert!(last.d_loss.is_finite());
        losses.push(last.d_loss);
    }
    let first = losses[..10].iter().sum::<f64>() / 10.0;
    let final_ = losses[190..].iter().sum::<f64>() / 10.0;
    (prior, first, final_, last)
}

#[test]
fn toy_problem_discriminator_learns_and_encoder_gradient_points_to_the_prior() {
    let (n, y_dim) = (64, 16);
    let (mut prior, first, final_, last) = train_toy(1.0);
    assert!((first - 2.0 * LN2).abs() < 0.1, "starts near 2 ln 2: {first}");
    // With λ = 1 the penalty caps |∇d| (its value settles near 0.14), so
    // L_D plateaus near 1.2; the classification part alone falls further.
    assert!(final_ < first - 0.1, "L_D did not decrease clearly: {first} → {final_}");
    assert!(last.d_loss - last.gp < 1.15, "classification part {}", last.d_loss - last.gp);
    assert!(last.d_real_mean > last.d_fake_mean + 0.4, "d(z) {} vs d(σY) {}", last.d_real_mean, last.d_fake_mean);
    // Encoder side: −∂L_E/∂Y > 0 on average (raise σ(Y) from 0.2 toward the
    // prior's mass), and a small step along it lowers L_E.
    let y = encoder_samples(n, y_dim, 7);
    let mut dy = vec![0f32; n * y_dim];
    let le = prior.encoder_loss(&y, n, &mut dy).unwrap();
    let mean_neg: f64 = dy.iter().map(|&g| -(g as f64)).sum::<f64>() / dy.len() as f64;
    assert!(mean_neg > 0.0, "mean −∂L_E/∂Y = {mean_neg}");
    let y2: Vec<f32> = y.iter().zip(&dy).map(|(&v, &g)| v - 50.0 * g).collect();
    let le2 = prior.encoder_loss(&y2, n, &mut vec![0f32; n * y_dim]).unwrap();
    assert!(le2 < le, "L_E {le} → {le2} after a step against its gradient");
    // Without the penalty the same run separates the two much further
    // (L_D 1.33 → 0.11 when measured).
    let (_, first0, final0, last0) = train_toy(0.0);
    assert!(final0 < 0.3, "λ = 0: {first0} → {final0}");
    assert!(last0.d_real_mean > last0.d_fake_mean + 3.0, "λ = 0: {last0:?}");
}

#[test]
fn f32_prior_matches_the_f64_functions_and_is_deterministic() {
    let (n, y_dim) = (8, 6);
    let cfg = small_cfg();
    let mut a = Prior::new(y_dim, cfg, 12).unwrap();
    let mut b = Prior::new(y_dim, cfg, 12).unwrap();
    let y = encoder_samples(n, y_dim, 13);
    // The same z as the step draws: n·y_dim uniforms, row-major.
    let mut r = Rng::new(14);
    let z: Vec<f64> = (0..n * y_dim).map(|_| r.uniform() as f32 as f64).collect();
    let p64: Vec<f64> = a.params().iter().map(|&v| v as f64).collect();
    let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    let mut g64 = vec![0.0; p64.len()];
    let want =
        discriminator_loss(a.layout(), &p64, &z, &y64, n, cfg.lambda, Some(&mut g64), &mut DiscScratch::default())
            .unwrap();
    let s = a.discriminator_step(&y, n, &mut Rng::new(14)).unwrap();
    assert!((s.d_loss - want.loss).abs() < 1e-5, "{} vs {}", s.d_loss, want.loss);
    assert!((s.gp - want.gp).abs() < 1e-5 * want.gp.max(1.0));
    let gmax = g64.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in a.grads().iter().zip(&g64).enumerate() {
        assert!((g as f64 - w).abs() <= 1e-4 * gmax, "grad[{i}]: {g} vs {w}");
    }
    // The first Adam step moves every parameter with a nonzero gradient by ≈ lr.
    for ((&p1, &p0), &g) in a.params().iter().zip(&p64).zip(&g64) {
        if g.abs() > 1e-3 * gmax {
            assert!(((p1 as f64 - p0).abs() - cfg.adam.lr).abs() < 1e-6);
        }
    }
    assert_eq!(a.adam_state().2, 1);
    // Same seeds, same steps: same bits.
    b.discriminator_step(&y, n, &mut Rng::new(14)).unwrap();
    let mut ra = Rng::new(15);
    let mut rb = Rng::new(15);
    for _ in 0..3 {
        a.discriminator_step(&y, n, &mut ra).unwrap();
        b.discriminator_step(&y, n, &mut rb).unwrap();
    }
    assert_eq!(a.params(), b.params());
    // Adam state round-trips.
    let (m, v, t) = a.adam_state();
    let (m, v) = (m.to_vec(), v.to_vec());
    let mut c = Prior::new(y_dim, cfg, 99).unwrap();
    c.set_adam_state(&m, &v, t).unwrap();
    c.params_mut().copy_from_slice(a.params());
    a.discriminator_step(&y, n, &mut Rng::new(16)).unwrap();
    c.discriminator_step(&y, n, &mut Rng::new(16)).unwrap();
    assert_eq!(a.params(), c.params());
}

#[test]
fn table_names_shapes_and_init() {
    let prior = Prior::new(64, PriorConfig::default(), 0).unwrap();
    let t = prior.table();
    let names: Vec<(&str, &[usize])> = t.entries().iter().map(|e| (e.name.as_str(), &e.shape[..])).collect();
    assert_eq!(
        names,
        [
            ("prior.disc.0.weight", &[1000, 64][..]),
            ("prior.disc.0.bias", &[1000][..]),
            ("prior.disc.2.weight", &[200, 1000][..]),
            ("prior.disc.2.bias", &[200][..]),
            ("prior.disc.4.weight", &[1, 200][..]),
            ("prior.disc.4.bias", &[1][..]),
        ]
    );
    assert_eq!(prior.params().len(), 64 * 1000 + 1000 + 1000 * 200 + 200 + 200 + 1);
    // PyTorch default init: U(±1/√fan_in).
    for (name, fan_in) in [("prior.disc.0.weight", 64.0f64), ("prior.disc.2.bias", 1000.0)] {
        let v = &prior.params()[t.get(name).unwrap().range()];
        let bound = 1.0 / fan_in.sqrt();
        assert!(v.iter().all(|&x| (x as f64).abs() <= bound));
        assert!(v.iter().any(|&x| (x as f64).abs() > 0.5 * bound));
    }
    let cfg = PriorConfig::default();
    assert_eq!((cfg.lambda, cfg.adam, cfg.hidden), (1.0, AdamConfig::dim(), (1000, 200)));
}

#[test]
fn typed_errors() {
    let (n, y_dim) = (4, 3);
    let cfg = small_cfg();
    let bad = |c: PriorConfig| Prior::new(y_dim, c, 0).unwrap_err();
    for g in [-0.1, f64::NAN, f64::INFINITY] {
        assert!(matches!(bad(PriorConfig { gamma: g, ..cfg }), Error::InvalidParameter { what: "prior gamma", .. }));
        assert!(matches!(bad(PriorConfig { lambda: g, ..cfg }), Error::InvalidParameter { what: "prior lambda", .. }));
    }
    assert!(matches!(bad(PriorConfig { hidden: (0, 4), ..cfg }), Error::ZeroSize { .. }));
    assert!(matches!(bad(PriorConfig { hidden: (4, 0), ..cfg }), Error::ZeroSize { .. }));
    let adam = AdamConfig { lr: 0.0, ..AdamConfig::dim() };
    assert!(matches!(bad(PriorConfig { adam, ..cfg }), Error::OutOfRange { bound, .. } if *bound == bounds::LR));
    assert!(matches!(Prior::new(0, cfg, 0).unwrap_err(), Error::ZeroSize { what: "prior y_dim" }));
    assert!(matches!(
        Prior::new(usize::MAX / 2, PriorConfig { hidden: (4, 4), ..cfg }, 0).unwrap_err(),
        Error::Overflow { .. }
    ));
    assert!(matches!(
        Prior::new(1, PriorConfig { hidden: (usize::MAX - 1, 1), ..cfg }, 0).unwrap_err(),
        Error::Overflow { .. }
    ));

    let mut prior = Prior::new(y_dim, cfg, 0).unwrap();
    let y = vec![0f32; n * y_dim];
    let mut dy = vec![0f32; n * y_dim];
    let mut rng = Rng::new(0);
    let len_err = |e: Error| matches!(e, Error::LengthMismatch { .. });
    assert!(len_err(prior.encoder_loss(&y[1..], n, &mut dy).unwrap_err()));
    assert!(len_err(prior.encoder_loss(&y, n, &mut dy[1..]).unwrap_err()));
    assert!(len_err(prior.encoder_loss(&y, n + 1, &mut dy).unwrap_err()));
    assert!(len_err(prior.discriminator_step(&y[1..], n, &mut rng).unwrap_err()));
    assert!(matches!(prior.encoder_loss(&[], 0, &mut []).unwrap_err(), Error::ZeroSize { what: "prior batch" }));
    assert!(matches!(prior.discriminator_step(&[], 0, &mut rng).unwrap_err(), Error::ZeroSize { what: "prior batch" }));
    assert!(matches!(prior.discriminator_step(&y, usize::MAX, &mut rng).unwrap_err(), Error::Overflow { .. }));
    let (m, v, _) = prior.adam_state();
    let (m, v) = (m.to_vec(), v.to_vec());
    assert!(len_err(prior.set_adam_state(&m[1..], &v, 1).unwrap_err()));
    assert!(len_err(prior.set_adam_state(&m, &v[1..], 1).unwrap_err()));
    // Failed calls change nothing.
    assert_eq!(prior.adam_state().2, 0);
    assert!(dy.iter().all(|&g| g == 0.0));

    // The generic functions check the same things, plus γ/λ and buffer lengths.
    let lay = *prior.layout();
    let p: Vec<f64> = prior.params().iter().map(|&x| x as f64).collect();
    let y64 = vec![0.0; n * y_dim];
    let mut sc = DiscScratch::default();
    let mut dy64 = vec![0.0; n * y_dim];
    for g in [-1.0, f64::NAN] {
        assert!(matches!(
            encoder_loss(&lay, &p, &y64, n, g, &mut dy64, &mut sc).unwrap_err(),
            Error::InvalidParameter { what: "prior gamma", .. }
        ));
        assert!(matches!(
            discriminator_loss(&lay, &p, &y64, &y64, n, g, None, &mut sc).unwrap_err(),
            Error::InvalidParameter { what: "prior lambda", .. }
        ));
    }
    assert!(len_err(discriminator_loss(&lay, &p[1..], &y64, &y64, n, 1.0, None, &mut sc).unwrap_err()));
    assert!(len_err(discriminator_loss(&lay, &p, &y64[1..], &y64, n, 1.0, None, &mut sc).unwrap_err()));
    let mut short = vec![0.0; p.len() - 1];
    assert!(len_err(discriminator_loss(&lay, &p, &y64, &y64, n, 1.0, Some(&mut short), &mut sc).unwrap_err()));
    assert!(len_err(gradient_penalty(&lay, &p, &y64, n, Some(&mut short), &mut sc).unwrap_err()));
    assert!(len_err(gradient_penalty(&lay, &p, &y64[1..], n, None, &mut sc).unwrap_err()));
    assert!(len_err(discriminator_logits(&lay, &p, &y64[1..], n).unwrap_err()));
    assert!(matches!(discriminator_logits(&lay, &p, &[], 0).unwrap_err(), Error::ZeroSize { .. }));
}
