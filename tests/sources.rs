//! Data sources through the CLI on generated files: formats recognised
//! without `--dataset`, the paper's STL-10 pipeline (random 64×64 crops of
//! the 96×96 images for training, the centre for evaluation, the unlabeled
//! split), and grayscale data given to an RGB encoder.

mod common;

use std::path::Path;
use std::process::Command;

use common::scratch::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_infomax");

fn tmp(name: &str) -> Scratch {
    Scratch::new("infomax-sources", name)
}

fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Bytes that vary with everything: `n` records of `len`.
fn noise(n: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = common::Rng(seed);
    (0..n * len).map(|_| rng.next_u64() as u8).collect()
}

fn write_stl(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let img = 3 * 96 * 96;
    std::fs::write(dir.join("train_X.bin"), noise(24, img, 1)).unwrap();
    std::fs::write(dir.join("train_y.bin"), (0..24).map(|i| (i % 10 + 1) as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(dir.join("test_X.bin"), noise(12, img, 2)).unwrap();
    std::fs::write(dir.join("test_y.bin"), (0..12).map(|i| (i % 10 + 1) as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(dir.join("unlabeled_X.bin"), noise(40, img, 3)).unwrap();
}

#[test]
fn stl10_is_recognised_and_runs_the_papers_crop_pipeline() {
    let data = tmp("stl");
    write_stl(&data);
    let out = tmp("stl-run");
    let d = data.to_str().unwrap();
    let run = |o: &str, extra: &[&str]| {
        let mut a = vec![
            "train",
            "--data",
            d,
            "--encoder",
            "alex64",
            "--mi-units",
            "8",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--eval-epochs",
            "1",
            "--no-baselines",
            "--no-export",
            "--out",
            o,
        ];
        a.extend_from_slice(extra);
        cli(&a)
    };
    // Without a crop the shapes disagree, and the message gives the fix.
    let no_crop = out.join("no-crop");
    let (c, _, err) = run(no_crop.to_str().unwrap(), &[]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("3×96×96") && err.contains("3×64×64") && err.contains("--crop 64"), "{err}");

    let run_dir = out.join("run");
    let r = run_dir.to_str().unwrap();
    let (c, stdout, err) = run(r, &["--crop", "64", "--unlabeled"]);
    assert_eq!(c, Some(0), "{err}");
    // Trained on the unlabeled split (40 images: 5 batches of 8), probed on
    // the labeled ones (24 train, 12 test), centre-cropped.
    assert!(err.contains("evaluating on 24 train / 12 test images"), "{err}");
    assert!(stdout.contains("| DIM | y |"), "{stdout}");
    let cfg = std::fs::read_to_string(run_dir.join("eval.json")).unwrap();
    assert!(cfg.contains("\"knn\""), "{cfg}");

    // embed takes the same centre crops.
    let feats = out.join("feats.safetensors");
    let (c, _, err) = cli(&["embed", r, "--data", d, "--crop", "64", "--out", feats.to_str().unwrap()]);
    assert_eq!(c, Some(0), "{err}");
    let bytes = std::fs::read(&feats).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("y").unwrap().shape()[0], 12);
    // --unlabeled elsewhere is refused.
    let (c, _, err) =
        cli(&["train", "--unlabeled", "--steps", "1", "--no-eval", "--out", out.join("x").to_str().unwrap()]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("only STL-10 has an unlabeled split"), "{err}");
}

#[test]
fn cifar10_is_recognised_and_gray_data_feeds_an_rgb_encoder() {
    let data = tmp("cifar");
    std::fs::create_dir_all(&*data).unwrap();
    let rec = |n: usize, seed| {
        let mut v = noise(n, 3073, seed);
        for (i, r) in v.chunks_mut(3073).enumerate() {
            r[0] = (i % 10) as u8;
        }
        v
    };
    for b in 1..=5 {
        std::fs::write(data.join(format!("data_batch_{b}.bin")), rec(4, b)).unwrap();
    }
    std::fs::write(data.join("test_batch.bin"), rec(10, 9)).unwrap();
    let out = tmp("cifar-run");
    let d = data.to_str().unwrap();
    let o = out.join("run");
    let args = [
        "train",
        "--data",
        d,
        "--encoder",
        "conv32",
        "--mi-units",
        "8",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--eval-epochs",
        "1",
        "--no-baselines",
        "--no-export",
        "--out",
    ];
    let mut a = args.to_vec();
    a.push(o.to_str().unwrap());
    let (c, _, err) = cli(&a);
    assert_eq!(c, Some(0), "{err}");
    assert!(err.contains("evaluating on 20 train / 10 test images"), "{err}");

    // The bundled Fashion-MNIST (1×28×28) into an RGB 32×32 encoder:
    // converted and resized, on request.
    let o2 = out.join("gray");
    let (c, _, err) = cli(&[
        "train",
        "--encoder",
        "conv32",
        "--mi-units",
        "8",
        "--steps",
        "1",
        "--no-eval",
        "--no-export",
        "--resize",
        "32",
        "--out",
        o2.to_str().unwrap(),
    ]);
    assert_eq!(c, Some(0), "{err}");
}

/// The shipped inference files work where checkpoints do: `eval` (probes
/// only, baselines on request), `embed`, and `--init` for fine-tuning.
#[test]
fn shipped_encoders_evaluate_embed_and_initialise_fine_tuning() {
    let w = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/dim-fmnist-edge.safetensors");
    let out = tmp("weights");
    let json = out.join("eval.json");
    std::fs::create_dir_all(&*out).unwrap();
    let (c, stdout, err) = cli(&["eval", w, "--eval-epochs", "1", "--few-draws", "1", "--out", json.to_str().unwrap()]);
    assert_eq!(c, Some(0), "{err}");
    assert!(stdout.contains("| DIM | y |") && !stdout.contains("raw pixels"), "baselines are opt-in: {stdout}");
    let (c, stdout, err) = cli(&["eval", w, "--eval-epochs", "1", "--few-draws", "0", "--baselines"]);
    assert_eq!(c, Some(0), "{err}");
    assert!(stdout.contains("raw pixels") && stdout.contains("untrained"), "{stdout}");

    let feats = out.join("f.safetensors");
    let (c, _, err) = cli(&["embed", w, "--out", feats.to_str().unwrap()]);
    assert_eq!(c, Some(0), "{err}");
    let run = out.join("ft");
    let (c, stdout, err) = cli(&[
        "train",
        "--init",
        w,
        "--encoder",
        "edge",
        "--steps",
        "2",
        "--no-eval",
        "--no-export",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(c, Some(0), "{err}");
    let all = format!("{stdout}{err}");
    assert!(all.contains("loaded"), "{all}");
    // Into another architecture: refused, naming what does not match.
    let (c, _, err) =
        cli(&["train", "--init", w, "--steps", "1", "--no-eval", "--out", out.join("x").to_str().unwrap()]);
    assert_eq!(c, Some(1), "{err}");
}

/// `embed` writes where its features came from (the model file and its
/// SHA-256, the data, split, fit, taps, normalisation, the labels' dtype),
/// writes only the taps asked for, and names the taps on a wrong `--tap`.
#[test]
fn embed_records_its_provenance_and_writes_the_taps_asked_for() {
    use sha2::Digest;
    let w = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/dim-fmnist-edge.safetensors");
    let out = tmp("embed-meta");
    std::fs::create_dir_all(&*out).unwrap();
    let (all, some) = (out.join("all.safetensors"), out.join("some.safetensors"));
    let (c, _, err) = cli(&["embed", w, "--out", all.to_str().unwrap()]);
    assert_eq!(c, Some(0), "{err}");
    let (c, _, err) = cli(&["embed", w, "--tap", "y", "--tap", "fc", "--out", some.to_str().unwrap()]);
    assert_eq!(c, Some(0), "{err}");

    let bytes = std::fs::read(&some).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let want_sha: String = sha2::Sha256::digest(std::fs::read(w).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(meta["format"], "infomax-features");
    assert_eq!(meta["source_sha256"], want_sha);
    assert_eq!(meta["split"], "test");
    assert_eq!(meta["dataset"], "idx");
    assert_eq!(meta["images"], "2000");
    assert_eq!(meta["input"], "[1,28,28]");
    assert_eq!(meta["taps"], r#"{"fc":[2000,256],"y":[2000,64]}"#);
    assert!(meta["normalisation"].contains("(p/255 - 0.5)/0.5"), "{meta:?}");
    assert!(meta["labels_dtype"].starts_with("I64"), "{meta:?}");

    let some_t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let all_bytes = std::fs::read(&all).unwrap();
    let all_t = safetensors::SafeTensors::deserialize(&all_bytes).unwrap();
    let mut names = some_t.names();
    names.sort();
    assert_eq!(names, ["fc", "labels", "y"], "conv was not asked for");
    assert!(all_t.names().contains(&"conv"));
    for t in ["fc", "y", "labels"] {
        assert_eq!(some_t.tensor(t).unwrap().data(), all_t.tensor(t).unwrap().data(), "{t}: same values either way");
    }
    // The labels are the IDX test labels, as I64.
    let ds = infomax::data::load_mnist_dir(
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset"),
        infomax::data::Split::Test,
    )
    .unwrap();
    let labels = some_t.tensor("labels").unwrap();
    assert_eq!(labels.dtype(), safetensors::Dtype::I64);
    let got: Vec<i64> = labels.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let want: Vec<i64> = ds.labels.unwrap().iter().map(|&l| i64::from(l)).collect();
    assert_eq!(got, want);

    let (c, _, err) = cli(&["embed", w, "--tap", "pool", "--out", out.join("x").to_str().unwrap()]);
    assert_eq!(c, Some(1));
    assert!(err.contains("--tap pool") && err.contains("conv, fc, y"), "{err}");
    assert!(!out.join("x").exists());
}
