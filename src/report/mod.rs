//! `infomax report RUN`: one self-contained HTML page for a run folder,
//! with SVG plots drawn by `plotters` (docs/eval.md, "The report"):
//! loss, MI estimate and score means against steps, the k-NN curve of the
//! probes during training, the probe accuracies beside the baselines, a
//! PCA map of Y on test images, and the run's config and timings.
//!
//! Every plot has its own pale background and every series its own colour
//! ([`PLOTS`]), so a screenshot can be checked without reading text
//! (`tests/report.rs` counts series pixels inside each plot's box).

pub mod pca;
mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::data::Split;
use crate::host_error::{HostError, Result};
use crate::train::evaluate::Report as EvalReport;
use crate::train::{EpochLog, TrainConfig, WindowLog, checkpoint};

/// An RGB colour.
pub type Rgb = [u8; 3];

/// What a plot shows: its id (the HTML element's), its background, and
/// its series (name, colour).
#[derive(Clone, Copy, Debug)]
pub struct PlotSpec {
    /// Element id and short name.
    pub id: &'static str,
    /// Title above it.
    pub title: &'static str,
    /// The plot area's background: unique per plot.
    pub background: Rgb,
    /// Size in CSS pixels.
    pub size: (u32, u32),
    /// Series names and colours.
    pub series: &'static [(&'static str, Rgb)],
}

/// The ten class colours of the map (matplotlib's tab10).
pub const CLASS_COLOURS: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const WINDOW: Rgb = [31, 119, 180];
const EPOCH: Rgb = [255, 127, 14];
const DIM: Rgb = [31, 119, 180];
const UNTRAINED: Rgb = [127, 127, 127];
const UNTRAINED_BN: Rgb = [140, 86, 75];
const PIXELS: Rgb = [188, 189, 34];

/// The plots, in page order. The map's series are the classes
/// ([`CLASS_COLOURS`]; as many as the data has).
pub const PLOTS: [PlotSpec; 6] = [
    PlotSpec {
        id: "loss",
        title: "DIM loss",
        background: [248, 248, 240],
        size: (640, 340),
        series: &[("window mean", WINDOW), ("epoch mean", EPOCH)],
    },
    PlotSpec {
        id: "mi",
        title: "MI estimate (nats)",
        background: [248, 248, 241],
        size: (640, 340),
        series: &[("window mean", WINDOW), ("epoch mean", EPOCH)],
    },
    PlotSpec {
        id: "scores",
        title: "Mean scores of positive and negative pairs",
        background: [248, 248, 242],
        size: (640, 340),
        series: &[("positive pairs", [44, 160, 44]), ("negative pairs", [214, 39, 40])],
    },
    PlotSpec {
        id: "knn",
        title: "k-NN accuracy of Y during training (%)",
        background: [248, 248, 243],
        size: (640, 340),
        series: &[
            ("k-NN probe", [148, 103, 189]),
            ("final evaluation", [23, 190, 207]),
            ("untrained encoder", UNTRAINED),
            ("raw pixels", PIXELS),
        ],
    },
    PlotSpec {
        id: "probes",
        title: "Test accuracy on Y by probe (%)",
        background: [248, 248, 244],
        size: (640, 360),
        series: &[
            ("DIM", DIM),
            ("untrained (BN default stats)", UNTRAINED),
            ("untrained (BN stats from data)", UNTRAINED_BN),
            ("raw pixels", PIXELS),
        ],
    },
    PlotSpec {
        id: "map",
        title: "Y of test images, first two principal components",
        background: [248, 248, 245],
        size: (640, 640),
        series: &[],
    },
];

/// Most test images on the map (a seeded sample of larger test sets).
pub const MAP_POINTS: usize = 2000;

/// A run's `train.jsonl`: epoch lines and window lines.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// Epoch lines, in order.
    pub epochs: Vec<EpochLog>,
    /// Window lines (with the k-NN probes), in order.
    pub windows: Vec<WindowLog>,
}

impl RunLog {
    /// The window lines with a k-NN probe.
    pub fn probes(&self) -> impl Iterator<Item = &WindowLog> {
        self.windows.iter().filter(|w| w.knn.is_some())
    }
}

/// Reads `train.jsonl` (bounded); a line that is neither an epoch's nor a
/// window's is an error naming its number.
pub fn read_log(path: &Path) -> Result<RunLog> {
    let text = crate::files::read_text_bounded(path, crate::files::MAX_LOG_BYTES)
        .map_err(crate::host_error::io(path, "read the training log"))?;
    let mut log = RunLog::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |e: serde_json::Error| HostError::Format {
            path: path.to_path_buf(),
            reason: format!("line {}: {e}", i + 1),
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
        if v.get("kind").is_some() {
            log.windows.push(serde_json::from_value(v).map_err(bad)?);
        } else {
            log.epochs.push(serde_json::from_value(v).map_err(bad)?);
        }
    }
    Ok(log)
}

/// The map of Y: points and their labels.
#[derive(Clone, Debug)]
pub struct Map {
    /// PCA coordinates.
    pub points: Vec<[f64; 2]>,
    /// Label of each point.
    pub labels: Vec<u16>,
    /// Class names (image folders) or empty.
    pub class_names: Vec<String>,
    /// Classes.
    pub classes: usize,
    /// Variance share of each axis.
    pub explained: [f64; 2],
}

/// Everything a report shows.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The run folder.
    pub run: PathBuf,
    /// The checkpoint read (config, map).
    pub checkpoint: Option<PathBuf>,
    /// The training log.
    pub log: RunLog,
    /// The run's `eval.json`, if any.
    pub eval: Option<Vec<EvalReport>>,
    /// The training config, from the checkpoint.
    pub config: Option<TrainConfig>,
    /// The map, or why there is none.
    pub map: std::result::Result<Map, String>,
}

/// Gathers a run folder's report: its log (required), `eval.json` and the
/// latest checkpoint (config, and the encoder for the map) if present.
pub fn gather(run: &Path) -> Result<RunReport> {
    let log_path = run.join("train.jsonl");
    if !log_path.exists() {
        return Err(HostError::Config(format!(
            "{}: no train.jsonl here (report takes a run folder, e.g. runs/fmnist)",
            run.display()
        )));
    }
    let log = read_log(&log_path)?;
    let eval_path = run.join("eval.json");
    let eval =
        if eval_path.exists() {
            let text = crate::files::read_text_bounded(&eval_path, crate::files::MAX_CONFIG_BYTES * 16)
                .map_err(crate::host_error::io(&eval_path, "read"))?;
            Some(serde_json::from_str::<Vec<EvalReport>>(&text).map_err(|e| HostError::Format {
                path: eval_path.clone(),
                reason: format!("not an evaluation: {e}"),
            })?)
        } else {
            None
        };
    let checkpoint = checkpoint::latest(run)?;
    let config = match &checkpoint {
        Some(p) => match checkpoint::read_metadata(p)?.get("train_config") {
            Some(t) => Some(
                serde_json::from_str::<TrainConfig>(t)
                    .map_err(|e| HostError::Format { path: p.clone(), reason: format!("train_config: {e}") })?,
            ),
            None => None,
        },
        None => None,
    };
    let map = match (&checkpoint, &config) {
        (Some(p), Some(c)) => map_of(p, c),
        _ => Err("the run has no checkpoint yet".into()),
    };
    Ok(RunReport { run: run.to_path_buf(), checkpoint, log, eval, config, map })
}

/// The PCA map of Y on (a sample of) the test split; an error says why
/// there is none (the data moved, or has no labels).
fn map_of(ckpt: &Path, cfg: &TrainConfig) -> std::result::Result<Map, String> {
    let inner = || -> Result<Option<Map>> {
        if !cfg.data.has_labels()? {
            return Ok(None);
        }
        let mut model = crate::train::import::load_model(ckpt)?;
        let loaded = cfg.data.load_eval(Split::Test, model.encoder.cfg.input)?;
        let ds = loaded.dataset.sampled(MAP_POINTS, cfg.seed, 0x4d41_5000)?;
        let f = crate::train::extract_features(&mut model, &ds, crate::train::memory::DEFAULT_ENCODE_BATCH)?;
        let Some(p) = pca::project(&f.y.1, f.y.0) else { return Ok(None) };
        Ok(Some(Map {
            points: p.points,
            labels: ds.labels.unwrap_or_default(),
            class_names: loaded.classes,
            classes: ds.classes,
            explained: p.explained,
        }))
    };
    match inner() {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err("the test images have no labels or no spread".into()),
        Err(e) => Err(format!("the test images could not be encoded: {e}")),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn css(c: Rgb) -> String {
    format!("rgb({},{},{})", c[0], c[1], c[2])
}

/// The page.
pub fn render(r: &RunReport) -> Result<String> {
    let mut h = String::new();
    let title = format!("infomax run {}", r.run.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:sans-serif;margin:16px;background:#fff;color:#222;max-width:1000px}}\
         figure{{margin:12px 0 28px 0}} figure svg{{display:block}}\
         .legend span{{display:inline-block;margin-right:14px;font-size:13px}}\
         .sw{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}\
         table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}\
         .note{{color:#666;font-size:13px}}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    if let Some(c) = &r.checkpoint {
        let _ = writeln!(h, "<p class=\"note\">checkpoint {}</p>", esc(&c.display().to_string()));
    }
    for spec in &PLOTS {
        let (svg, legend, note) = plot::draw(spec, r)?;
        let _ = write!(
            h,
            "<figure id=\"{}\"><figcaption><b>{}</b></figcaption>\n{svg}\n<div class=\"legend\">",
            spec.id,
            esc(spec.title)
        );
        for (name, c) in legend {
            let _ = write!(h, "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>", css(c), esc(&name));
        }
        let _ = writeln!(h, "</div>");
        if let Some(n) = note {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(&n));
        }
        let _ = writeln!(h, "</figure>");
    }
    if let Some(e) = &r.eval {
        let _ = writeln!(h, "<h2>Probe table</h2>\n<pre>{}</pre>", esc(&crate::train::evaluate::format_table(e)));
    }
    h += "<h2>Timings</h2>\n<table><tr><th>what</th><th>seconds</th></tr>";
    if let Some(last) = r.log.epochs.last() {
        let _ = write!(
            h,
            "<tr><td>training ({} steps, {} epoch lines)</td><td>{:.1}</td></tr>",
            last.step,
            r.log.epochs.len(),
            last.wall_s
        );
        let ips = r.log.epochs.iter().map(|e| e.images_per_s).sum::<f64>() / r.log.epochs.len() as f64;
        let _ = write!(h, "<tr><td>mean training throughput (images/s)</td><td>{ips:.0}</td></tr>");
    }
    let probes: Vec<&WindowLog> = r.log.probes().collect();
    if !probes.is_empty() {
        let s: f64 = probes.iter().filter_map(|p| p.probe_s).sum();
        let _ = write!(h, "<tr><td>k-NN probes ({}), not in the training time</td><td>{s:.1}</td></tr>", probes.len());
    }
    for m in r.eval.iter().flatten() {
        let _ = write!(h, "<tr><td>evaluation: {}</td><td>{:.1}</td></tr>", esc(&m.method), m.wall_s);
    }
    h += "</table>\n";
    if let Some(c) = &r.config {
        let json = serde_json::to_string_pretty(c).map_err(|e| HostError::Config(e.to_string()))?;
        let _ = writeln!(h, "<h2>Config</h2>\n<pre>{}</pre>", esc(&json));
    }
    h += "</body></html>\n";
    Ok(h)
}

/// Writes `run`'s report to `out` (default `run/report.html`) atomically,
/// never over one of the run's inputs; returns the path and the map's
/// absence reason, if any.
pub fn write(run: &Path, out: Option<&Path>) -> Result<(PathBuf, Option<String>)> {
    let out = out.map_or_else(|| run.join("report.html"), Path::to_path_buf);
    // Refused before the checkpoint is read and the test images encoded.
    let mut inputs = vec![run.join("train.jsonl"), run.join("eval.json")];
    inputs.extend(checkpoint::latest(run)?);
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    crate::files::check_output(&out, &refs).map_err(crate::host_error::io(&out, "write the report to"))?;
    let r = gather(run)?;
    let html = render(&r)?;
    checkpoint::write_atomic(&out, html.as_bytes())?;
    Ok((out, r.map.err()))
}
