//! The report in a real browser: `infomax train` writes a run's report,
//! headless Chromium renders it to a PNG, and every plot's box (found by
//! its own background colour, `report::PLOTS`) must hold pixels of each of
//! its series' colours. No text is read: the machine may have no fonts.
//!
//! The same check on a copy of the run whose log lost its k-NN values must
//! fail, naming that one series: the check can tell an empty series.
//!
//! Chromium: `INFOMAX_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on PATH. Without one the test says so and passes, except
//! under CI (`CI` set), where a missing browser fails it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::scratch::Scratch;
use infomax::data::{self, Split};
use infomax::report::{CLASS_COLOURS, PLOTS, Rgb};

const BIN: &str = env!("CARGO_BIN_EXE_infomax");

fn browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("INFOMAX_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Renders `html` to a PNG of `width`×`height` CSS pixels at scale 1.
fn screenshot(chromium: &Path, html: &Path, png: &Path, profile: &Path, size: (u32, u32)) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(png.is_file(), "chromium wrote no screenshot");
}

/// For each plot, the series whose colour has fewer than `min` pixels
/// inside the plot's box ("plot/series"); also a plot whose box is missing
/// or of the wrong size.
fn missing_series(png: &Path, classes: usize, min: usize) -> Vec<String> {
    let img = image::open(png).unwrap().to_rgb8();
    let mut missing = Vec::new();
    for spec in &PLOTS {
        let bg = image::Rgb(spec.background);
        let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
        for (x, y, p) in img.enumerate_pixels() {
            if *p == bg {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        if x0 == u32::MAX {
            missing.push(format!("{}: no box", spec.id));
            continue;
        }
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        if w.abs_diff(spec.size.0) > 1 || h.abs_diff(spec.size.1) > 1 {
            missing.push(format!("{}: box {w}×{h}, not {}×{}", spec.id, spec.size.0, spec.size.1));
            continue;
        }
        let series: Vec<(String, Rgb)> = if spec.id == "map" {
            (0..classes).map(|c| (format!("class {c}"), CLASS_COLOURS[c])).collect()
        } else {
            spec.series.iter().map(|(n, c)| (n.to_string(), *c)).collect()
        };
        for (name, c) in series {
            let want = image::Rgb(c);
            let mut n = 0;
            for y in y0..=y1 {
                for x in x0..=x1 {
                    n += usize::from(*img.get_pixel(x, y) == want);
                }
            }
            if n < min {
                missing.push(format!("{}/{name} ({n} px)", spec.id));
            }
        }
    }
    missing
}

#[test]
fn the_report_renders_every_series_in_headless_chromium() {
    let Some(chromium) = browser() else {
        assert!(std::env::var_os("CI").is_none(), "CI needs Chromium for the report test (apt-get install chromium)");
        eprintln!("SKIPPED: no Chromium (set INFOMAX_CHROMIUM or install chromium) - the report was not rendered");
        return;
    };
    let dir = Scratch::new("report", "run");
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let test = data::load_mnist_dir(&bundled, Split::Test).unwrap();
    common::write_idx(&data_dir, "train", &data::load_mnist_dir(&bundled, Split::Train).unwrap(), 640);
    common::write_idx(&data_dir, "t10k", &test, 300);
    let classes = {
        let mut seen = [false; 10];
        test.labels.as_ref().unwrap()[..300].iter().for_each(|&l| seen[usize::from(l)] = true);
        assert!(seen.iter().all(|&s| s), "every class in the test slice");
        10
    };

    let run = dir.join("run");
    let o = Command::new(BIN)
        .args(["--threads", "2", "train", "--encoder", "edge", "--mi-units", "16", "--batch-size", "32"])
        .args(["--steps", "40", "--probe-every", "5", "--eval-epochs", "1", "--few-draws", "2", "--no-export"])
        .arg("--data")
        .arg(&data_dir)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = run.join("report.html");
    assert!(stdout.contains(&format!("Report (open in a browser): {}", html.display())), "{stdout}");

    let size = (1000, 3400);
    let png = dir.join("report.png");
    screenshot(&chromium, &html, &png, &dir.join("profile"), size);
    let missing = missing_series(&png, classes, 20);
    assert!(missing.is_empty(), "series not drawn: {missing:?} (screenshot {})", png.display());

    // The control: the same run, its log without the k-NN values.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&run).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.file_name().unwrap() != "train.jsonl" && p.file_name().unwrap() != "report.html" {
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
    }
    let log: String = std::fs::read_to_string(run.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("knn");
            format!("{v}\n")
        })
        .collect();
    std::fs::write(copy.join("train.jsonl"), log).unwrap();
    let o = Command::new(BIN).arg("report").arg(&copy).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png2 = dir.join("control.png");
    screenshot(&chromium, &copy.join("report.html"), &png2, &dir.join("profile2"), size);
    let missing = missing_series(&png2, classes, 20);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].starts_with("knn/k-NN probe"), "{missing:?}");
}
