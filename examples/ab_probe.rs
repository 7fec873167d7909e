//! The probe `scripts/same-bits.sh` and `scripts/perf-ab.sh` run in each of
//! two builds of infomax to compare them. The dumps print raw little-endian
//! f32 bytes to stdout, for `sha256sum` to hash:
//!
//! - `ab_probe tensors CKPT weights|optim`: the checkpoint's tensors in name
//!   order, either the model's (weights and BN buffers) or the optimiser's
//!   (`optim.m.*`, `optim.v.*`);
//! - `ab_probe encode WEIGHTS BATCH`: Y of `infer::Plan::encode` for BATCH
//!   fixed images;
//! - `ab_probe time WEIGHTS BATCH SECONDS`: encodes for about SECONDS and
//!   prints the median images/s of the calls;
//! - `ab_probe probes`: trains the linear and the MLP probe
//!   (`eval::train_classifier`, 3 epochs) on fixed synthetic features and
//!   dumps their parameters, BN statistics, accuracy curves and losses.
//!
//! It uses only the safetensors crate, `infomax::infer` and
//! `infomax::eval::train_classifier`, whose API is the same in every build
//! the scripts compare.

use std::io::Write;
use std::time::{Duration, Instant};

use infomax::infer::{Plan, Weights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["tensors", path, which @ ("weights" | "optim")] => {
            let bytes = std::fs::read(path)?;
            let st = safetensors::SafeTensors::deserialize(&bytes)?;
            let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
            names.sort();
            let optim = *which == "optim";
            let mut count = 0;
            for name in names.iter().filter(|n| n.starts_with("optim.") == optim) {
                out.write_all(st.tensor(name)?.data())?;
                count += 1;
            }
            if count == 0 {
                return Err(format!("{path}: no {which} tensors").into());
            }
        }
        ["encode", path, batch] => {
            let bytes = std::fs::read(path)?;
            let weights = Weights::<32>::parse(&bytes)?;
            let (plan, x) = setup(&weights, batch.parse()?)?;
            let mut scratch = vec![0f32; plan.scratch_len()];
            let mut y = vec![0f32; plan.output_len()];
            plan.encode(&weights, &x, &mut scratch, &mut y)?;
            for v in &y {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        ["time", path, batch, seconds] => {
            let bytes = std::fs::read(path)?;
            let weights = Weights::<32>::parse(&bytes)?;
            let (plan, x) = setup(&weights, batch.parse()?)?;
            let budget = Duration::from_secs_f64(seconds.parse()?);
            let mut scratch = vec![0f32; plan.scratch_len()];
            let mut y = vec![0f32; plan.output_len()];
            plan.encode(&weights, &x, &mut scratch, &mut y)?; // warm-up
            let (start, mut times) = (Instant::now(), Vec::new());
            while start.elapsed() < budget || times.len() < 5 {
                let t = Instant::now();
                plan.encode(&weights, &x, &mut scratch, &mut y)?;
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            writeln!(out, "{:.1} img/s median over {} calls", plan.batch() as f64 / median, times.len())?;
        }
        ["probes"] => {
            use infomax::eval::{ClassifierKind, EvalConfig, EvalData, train_classifier};
            let (dim, classes, n_train, n_test) = (24, 5, 600, 200);
            let feature = |i: usize| ((i as u64 * 2_654_435_761) % 1021) as f32 / 510.0 - 1.0;
            let (train, test): (Vec<f32>, Vec<f32>) =
                ((0..n_train * dim).map(feature).collect(), (0..n_test * dim).map(|i| feature(i + 7)).collect());
            let label = |i: usize| (i * 7 + i / 3) % classes;
            let (ytr, yte): (Vec<usize>, Vec<usize>) =
                ((0..n_train).map(label).collect(), (0..n_test).map(label).collect());
            let data = EvalData::new(&train, &ytr, &test, &yte, dim, classes)?;
            let cfg = EvalConfig { epochs: 3, batch: 64, ..EvalConfig::default() };
            for kind in [ClassifierKind::Linear, ClassifierKind::Mlp] {
                let (model, result) = train_classifier(kind, &data, &cfg, 11)?;
                for v in model.params().iter().chain(model.running_mean()).chain(model.running_var()) {
                    out.write_all(&v.to_le_bytes())?;
                }
                for v in result.curve.iter().chain([&result.train_loss]) {
                    out.write_all(&v.to_le_bytes())?;
                }
            }
        }
        _ => {
            return Err(
                "usage: ab_probe tensors CKPT weights|optim | encode WEIGHTS BATCH | time WEIGHTS BATCH SECONDS | probes"
                    .into(),
            );
        }
    }
    Ok(())
}

/// The plan for `batch` images and fixed inputs in [-1, 1] (a
/// multiplicative hash of the index).
fn setup(weights: &Weights<'_, 32>, batch: usize) -> Result<(Plan, Vec<f32>), Box<dyn std::error::Error>> {
    let plan = Plan::from_weights(weights, batch)?;
    let x = (0..plan.input_len()).map(|i| ((i as u64 * 2_654_435_761) % 511) as f32 / 255.0 - 1.0).collect();
    Ok((plan, x))
}
