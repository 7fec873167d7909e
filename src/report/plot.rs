//! The report's plots, drawn with `plotters` into SVG strings.

use plotters::prelude::*;

use super::{CLASS_COLOURS, PlotSpec, Rgb, RunReport};
use crate::host_error::{HostError, Result};

/// An SVG, its legend (the series drawn) and a note.
type Drawn = (String, Vec<(String, Rgb)>, Option<String>);
/// Points of a plot.
type Points = Vec<(f64, f64)>;
/// A line series: name, colour, points, and whether they are joined.
type Series = (String, Rgb, Points, bool);

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

fn err(e: impl std::fmt::Display) -> HostError {
    HostError::Config(format!("drawing the report: {e}"))
}

/// A padded range holding every value (0..1 if there are none).
fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1.0));
    lo - pad..hi + pad
}

/// A line plot of named series of (x, y) points, each drawn as a 3-pixel
/// line with 4-pixel dots.
fn lines(spec: &PlotSpec, x_desc: &str, series: &[Series]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, spec.size).into_drawing_area();
        root.fill(&rgb(spec.background)).map_err(err)?;
        let xs = range(series.iter().flat_map(|s| s.2.iter().map(|p| p.0)));
        let ys = range(series.iter().flat_map(|s| s.2.iter().map(|p| p.1)));
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(xs, ys)
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_desc).light_line_style(rgb([236, 236, 232])).draw().map_err(err)?;
        for (_, c, pts, joined) in series {
            let colour = rgb(*c);
            if *joined && pts.len() > 1 {
                chart.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(3))).map_err(err)?;
            }
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled()))).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn legend(series: &[Series]) -> Vec<(String, Rgb)> {
    series.iter().filter(|s| !s.2.is_empty()).map(|s| (s.0.clone(), s.1)).collect()
}

/// The Y row of method `m` (raw pixels: its only tap).
fn y_row<'a>(r: &'a RunReport, method: &str) -> Option<&'a crate::train::evaluate::TapResult> {
    let m = r.eval.as_ref()?.iter().find(|m| m.method == method)?;
    m.tap("y").or_else(|| m.tap("pixels"))
}

/// Draws `spec`'s plot of `r`.
pub fn draw(spec: &PlotSpec, r: &RunReport) -> Result<Drawn> {
    let windows = &r.log.windows;
    let probes: Vec<&crate::train::WindowLog> = r.log.probes().collect();
    let epochs = &r.log.epochs;
    let s = |i: usize| (spec.series[i].0.to_string(), spec.series[i].1);
    let windowed = |f: fn(&crate::train::WindowLog) -> Option<f64>| -> Vec<(f64, f64)> {
        windows.iter().filter_map(|p| f(p).map(|v| (p.step as f64, v))).collect()
    };
    let per_epoch = |f: fn(&crate::train::EpochLog) -> f64| -> Vec<(f64, f64)> {
        epochs.iter().map(|e| (e.step as f64, f(e))).collect()
    };
    match spec.id {
        "loss" | "mi" => {
            let (w, e) = if spec.id == "loss" {
                (windowed(|p| p.loss), per_epoch(|e| e.loss))
            } else {
                (windowed(|p| p.mi), per_epoch(|e| e.mi))
            };
            let series = vec![(s(0).0, s(0).1, w, true), (s(1).0, s(1).1, e, false)];
            Ok((lines(spec, "step", &series)?, legend(&series), None))
        }
        "scores" => {
            // Windows if the run probed, else epoch means.
            let (pos, neg) = if windows.iter().any(|p| p.pos_mean.is_some()) {
                (windowed(|p| p.pos_mean), windowed(|p| p.neg_mean))
            } else {
                (per_epoch(|e| e.pos_mean), per_epoch(|e| e.neg_mean))
            };
            let series = vec![(s(0).0, s(0).1, pos, true), (s(1).0, s(1).1, neg, true)];
            Ok((lines(spec, "step", &series)?, legend(&series), None))
        }
        "knn" => {
            let last = epochs.last().map_or(0.0, |e| e.step as f64);
            let first = probes.first().map_or(0.0, |p| p.step as f64);
            let curve: Vec<(f64, f64)> =
                probes.iter().filter_map(|p| p.knn.map(|k| (p.step as f64, 100.0 * k))).collect();
            let fin: Vec<(f64, f64)> = y_row(r, "DIM").map(|t| vec![(last, 100.0 * t.knn)]).unwrap_or_default();
            let flat = |m: &str| -> Vec<(f64, f64)> {
                y_row(r, m).map(|t| vec![(first, 100.0 * t.knn), (last, 100.0 * t.knn)]).unwrap_or_default()
            };
            let series = vec![
                (s(0).0, s(0).1, curve, true),
                (s(1).0, s(1).1, fin, false),
                (s(2).0, s(2).1, flat("untrained (BN default stats)"), true),
                (s(3).0, s(3).1, flat("raw pixels"), true),
            ];
            let note = match probes.last() {
                None => Some("no probes during training (--probe-every N draws this curve)".into()),
                Some(p) => Some(format!(
                    "the probes score {} test images against {} train images (a fixed sample of larger splits); the \
                     final evaluation and the baselines score the whole splits",
                    p.queries.unwrap_or(0),
                    p.bank.unwrap_or(0)
                )),
            };
            Ok((lines(spec, "step", &series)?, legend(&series), note))
        }
        "probes" => probes_plot(spec, r),
        "map" => map_plot(spec, r),
        other => Err(HostError::Config(format!("no plot named {other}"))),
    }
}

/// Grouped bars: for each probe (linear, MLP, k-NN, few labels), one bar per
/// method, few-label bars with ±1 standard deviation.
fn probes_plot(spec: &PlotSpec, r: &RunReport) -> Result<Drawn> {
    let mut groups: Vec<String> = vec!["linear".into(), "MLP".into(), "k-NN".into()];
    if let Some(t) = y_row(r, "DIM") {
        groups.extend(t.few.iter().map(|f| format!("{}/class", f.per_class)));
    }
    let methods: Vec<(String, Rgb, Points)> = spec
        .series
        .iter()
        .filter_map(|(name, c)| {
            let t = y_row(r, name)?;
            let mut v = vec![(100.0 * t.linear, 0.0), (100.0 * t.mlp, 0.0), (100.0 * t.knn, 0.0)];
            v.extend(t.few.iter().map(|f| (100.0 * f.mean, 100.0 * f.std)));
            Some((name.to_string(), *c, v))
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, spec.size).into_drawing_area();
        root.fill(&rgb(spec.background)).map_err(err)?;
        let lo = methods.iter().flat_map(|m| m.2.iter().map(|v| v.0 - v.1)).fold(100.0f64, f64::min);
        let y0 = ((lo - 5.0) / 10.0).floor().max(0.0) * 10.0;
        let ng = groups.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..ng, y0..100.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .light_line_style(rgb([236, 236, 232]))
            .draw()
            .map_err(err)?;
        let nm = methods.len().max(1) as f64;
        let w = 0.8 / nm;
        for (k, (_, c, vals)) in methods.iter().enumerate() {
            for (g, &(v, sd)) in vals.iter().enumerate().take(groups.len()) {
                let x0 = g as f64 + 0.1 + k as f64 * w;
                chart
                    .draw_series(std::iter::once(Rectangle::new([(x0, y0), (x0 + w * 0.9, v)], rgb(*c).filled())))
                    .map_err(err)?;
                if sd > 0.0 {
                    let xm = x0 + w * 0.45;
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(xm, v - sd), (xm, v + sd)],
                            BLACK.stroke_width(1),
                        )))
                        .map_err(err)?;
                }
            }
        }
        for (g, name) in groups.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (g as f64 + 0.3, y0 + (100.0 - y0) * 0.03),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let note = if r.eval.is_none() {
        Some("no eval.json in the run folder (train without --no-eval, or eval RUN --out RUN/eval.json)".into())
    } else {
        None
    };
    Ok((svg, methods.into_iter().map(|m| (m.0, m.1)).collect(), note))
}

/// The PCA scatter, one colour per class.
fn map_plot(spec: &PlotSpec, r: &RunReport) -> Result<Drawn> {
    let mut svg = String::new();
    let (legend, note) = match &r.map {
        Ok(m) => {
            let names: Vec<(String, Rgb)> = (0..m.classes.min(CLASS_COLOURS.len()))
                .map(|c| (m.class_names.get(c).cloned().unwrap_or_else(|| format!("class {c}")), CLASS_COLOURS[c]))
                .collect();
            let more = (m.classes > CLASS_COLOURS.len())
                .then(|| format!("classes from {} on share the colours", CLASS_COLOURS.len()));
            (
                names,
                Some(format!(
                    "{} test images; the axes explain {:.1}% and {:.1}% of Y's variance{}",
                    m.points.len(),
                    100.0 * m.explained[0],
                    100.0 * m.explained[1],
                    more.map(|s| format!("; {s}")).unwrap_or_default()
                )),
            )
        }
        Err(why) => (Vec::new(), Some(format!("no map: {why}"))),
    };
    {
        let root = SVGBackend::with_string(&mut svg, spec.size).into_drawing_area();
        root.fill(&rgb(spec.background)).map_err(err)?;
        let pts: &[[f64; 2]] = r.map.as_ref().map(|m| m.points.as_slice()).unwrap_or(&[]);
        let xs = range(pts.iter().map(|p| p[0]));
        let ys = range(pts.iter().map(|p| p[1]));
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(xs, ys)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("PC 1")
            .y_desc("PC 2")
            .light_line_style(rgb([236, 236, 232]))
            .draw()
            .map_err(err)?;
        if let Ok(m) = &r.map {
            chart
                .draw_series(m.points.iter().zip(&m.labels).map(|(p, &l)| {
                    Circle::new((p[0], p[1]), 3, rgb(CLASS_COLOURS[usize::from(l) % CLASS_COLOURS.len()]).filled())
                }))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok((svg, legend, note))
}
