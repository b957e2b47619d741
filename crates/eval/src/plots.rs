//! Plots of a cross-validation, as SVG and PNG, with a bundled font (no
//! system font library is needed at run time): r per fold by model, and
//! observed against predicted per model.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::error::{EvalError, Result};
use crate::report::{model_order, Prediction, Record};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn font() {
    REGISTER.call_once(|| {
        // The bundled font is valid; registration cannot fail.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn perr<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> EvalError + '_ {
    move |e| EvalError::Plot(format!("{what}: {e:?}"))
}

fn r_by_fold<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    records: &[Record],
    title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr("fill"))?;
    let models = model_order(records);
    let rs: Vec<f64> = records
        .iter()
        .map(|r| r.metrics.r)
        .filter(|v| v.is_finite())
        .collect();
    let lo = rs.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
    let hi = rs
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(0.1);
    let pad = 0.08 * (hi - lo).max(0.1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..models.len() as f64 - 0.5, (lo - pad)..(hi + pad))
        .map_err(perr("chart"))?;
    let names = models.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(models.len().max(2))
        .x_label_formatter(&move |x| {
            let k = x.round();
            if (x - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < names.len() {
                names[k as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc("Pearson r on the test fold")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(perr("mesh"))?;
    for (k, m) in models.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let pts: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| &r.model == m && r.metrics.r.is_finite())
            .enumerate()
            .map(|(i, r)| {
                (
                    k as f64 + ((i * 37 % 17) as f64 / 17.0 - 0.5) * 0.35,
                    r.metrics.r,
                )
            })
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 5, color.mix(0.75).filled())),
            )
            .map_err(perr("points"))?;
        if !pts.is_empty() {
            let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(k as f64 - 0.3, mean), (k as f64 + 0.3, mean)],
                    color.stroke_width(3),
                )))
                .map_err(perr("mean"))?;
        }
    }
    root.present().map_err(perr("present"))?;
    Ok(())
}

fn observed_vs_predicted<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    preds: &[Prediction],
    models: &[String],
    trait_name: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr("fill"))?;
    let panels = root.split_evenly((1, models.len().max(1)));
    for (k, (m, area)) in models.iter().zip(panels).enumerate() {
        let pts: Vec<(f64, f64)> = preds
            .iter()
            .filter(|p| {
                &p.model == m && p.repeat == 0 && p.prediction.is_finite() && p.observed.is_finite()
            })
            .map(|p| (p.prediction, p.observed))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let range = |f: fn(&(f64, f64)) -> f64| {
            let lo = pts.iter().map(f).fold(f64::INFINITY, f64::min);
            let hi = pts.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
            let pad = 0.05 * (hi - lo).max(1e-9);
            (lo - pad)..(hi + pad)
        };
        let (xr, yr) = (range(|p| p.0), range(|p| p.1));
        let r = crate::metrics::pearson(
            &pts.iter().map(|p| p.0).collect::<Vec<_>>(),
            &pts.iter().map(|p| p.1).collect::<Vec<_>>(),
        );
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("{m} (r = {r:.3})"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(xr.clone(), yr.clone())
            .map_err(perr("chart"))?;
        chart
            .configure_mesh()
            .x_desc("predicted")
            .y_desc(format!("observed {trait_name}"))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(perr("mesh"))?;
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 3, color.mix(0.5).filled())),
            )
            .map_err(perr("points"))?;
        // The least-squares line of observed on predicted.
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx > 0.0 {
            let b = sxy / sxx;
            let line = vec![
                (xr.start, my + b * (xr.start - mx)),
                (xr.end, my + b * (xr.end - mx)),
            ];
            chart
                .draw_series(std::iter::once(PathElement::new(
                    line,
                    BLACK.stroke_width(2),
                )))
                .map_err(perr("line"))?;
        }
    }
    root.present().map_err(perr("present"))?;
    Ok(())
}

/// Writes `r_by_fold.{svg,png}` and `observed_vs_predicted.{svg,png}` into
/// `dir`; returns their paths.
/// `suffix` goes between a plot's name and its extension (`_TRAIT` for
/// each trait of a multi-trait run).
pub fn write_plots(
    dir: &Path,
    records: &[Record],
    preds: &[Prediction],
    trait_name: &str,
    suffix: &str,
) -> Result<Vec<PathBuf>> {
    font();
    let title = format!("Predictive ability per fold: {trait_name}");
    let models = model_order(records);
    let mut out = Vec::new();
    let (w1, h1) = (160 + 140 * models.len() as u32, 480);
    let (w2, h2) = (380 * models.len().max(1) as u32, 400);
    // Each plot is drawn into a temporary file in the same folder (its name
    // keeps the extension, which picks the image format) and then renamed.
    let mut place = |name: &str, draw: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let (stem, ext) = name.rsplit_once('.').expect("a plot name has an extension");
        let name = format!("{stem}{suffix}.{ext}");
        let (tmp, p) = (
            dir.join(format!(".tmp-{}-{name}", std::process::id())),
            dir.join(&name),
        );
        let done = draw(&tmp).and_then(|()| {
            std::fs::rename(&tmp, &p).map_err(|e| EvalError::Plot(format!("{}: {e}", p.display())))
        });
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        out.push(p);
        done
    };
    place("r_by_fold.svg", &|t| {
        r_by_fold(
            SVGBackend::new(t, (w1, h1)).into_drawing_area(),
            records,
            &title,
        )
    })?;
    place("r_by_fold.png", &|t| {
        r_by_fold(
            BitMapBackend::new(t, (w1, h1)).into_drawing_area(),
            records,
            &title,
        )
    })?;
    place("observed_vs_predicted.svg", &|t| {
        observed_vs_predicted(
            SVGBackend::new(t, (w2, h2)).into_drawing_area(),
            preds,
            &models,
            trait_name,
        )
    })?;
    place("observed_vs_predicted.png", &|t| {
        observed_vs_predicted(
            BitMapBackend::new(t, (w2, h2)).into_drawing_area(),
            preds,
            &models,
            trait_name,
        )
    })?;
    Ok(out)
}

fn confusion_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    counts: &[Vec<u64>],
    labels: &[String],
    title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr("fill"))?;
    let k = counts.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
        .map_err(perr("chart"))?;
    let name = |v: &SegmentValue<usize>, flip: bool| match v {
        SegmentValue::CenterOf(i) if *i < k => {
            let i = if flip { k - 1 - i } else { *i };
            labels.get(i).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(k)
        .y_labels(k)
        .x_label_formatter(&|v| name(v, false))
        .y_label_formatter(&|v| name(v, true))
        .x_desc("predicted")
        .y_desc("true")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr("mesh"))?;
    let cell_font = if k <= 12 { 13 } else { 9 };
    for (t, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (p, &c) in row.iter().enumerate() {
            let f = c as f64 / total;
            // White to dark blue by the fraction of the true class.
            let shade = |lo: f64, hi: f64| (lo + (hi - lo) * f.sqrt()) as u8;
            let color = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
            let y = k - 1 - t;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                )))
                .map_err(perr("cell"))?;
            if c > 0 {
                let ink = if f.sqrt() > 0.5 { WHITE } else { BLACK };
                let style = ("sans-serif", cell_font)
                    .into_font()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        c.to_string(),
                        (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                        style,
                    )))
                    .map_err(perr("count"))?;
            }
        }
    }
    root.present().map_err(perr("present"))?;
    Ok(())
}

/// Writes a confusion matrix (`counts[true][predicted]`) as a PNG heat map,
/// shaded by the fraction of each true class, with the counts in the cells.
/// The file is written to a temporary file and renamed.
pub fn confusion_png(
    path: &Path,
    counts: &[Vec<u64>],
    labels: &[String],
    title: &str,
) -> Result<()> {
    font();
    let side = (120 + 48 * counts.len().max(2)) as u32;
    let (w, h) = (side + 40, side + 40);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    confusion_chart(
        BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(),
        counts,
        labels,
        title,
    )?;
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(perr("png"))?;
        wr.write_image_data(&buf).map_err(perr("png"))?;
    }
    geno::write_atomic(path, &bytes)
        .map_err(|e| EvalError::Plot(format!("{}: {e}", path.display())))
}

/// One panel of a Manhattan plot: a title, the y axis's name, and a value
/// per marker (NaN: not drawn).
pub struct ManhattanPanel<'a> {
    pub title: String,
    pub y_label: String,
    pub values: &'a [f64],
}

/// The markers of a Manhattan plot, and what to mark on it.
pub struct ManhattanLayout<'a> {
    pub chromosomes: &'a [String],
    pub positions: &'a [i64],
    pub ids: &'a [String],
    /// Known loci: (chromosome, position), drawn as red ticks on the x axis.
    pub truth: &'a [(String, i64)],
    /// How many top markers of each panel are labelled.
    pub label_top: usize,
}

/// Genome coordinates: chromosomes in order of first appearance laid end
/// to end (marker index when no positions are known); returns each
/// marker's x and each chromosome's (name, start, end).
fn genome_x(layout: &ManhattanLayout) -> (Vec<f64>, Vec<(String, f64, f64)>) {
    let by_index = layout.positions.iter().all(|&p| p <= 0);
    let mut order: Vec<String> = Vec::new();
    let mut max: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for (j, c) in layout.chromosomes.iter().enumerate() {
        if !max.contains_key(c.as_str()) {
            order.push(c.clone());
        }
        let p = if by_index {
            j as f64
        } else {
            layout.positions[j] as f64
        };
        let e = max.entry(c.as_str()).or_insert(0.0);
        *e = e.max(p);
    }
    let gap = if by_index {
        0.0
    } else {
        0.01 * max.values().sum::<f64>()
    };
    let mut offset = std::collections::HashMap::new();
    let mut spans = Vec::new();
    let mut at = 0.0;
    for c in &order {
        offset.insert(c.as_str(), at);
        let end = at + max[c.as_str()];
        spans.push((c.clone(), at, end));
        at = if by_index { end } else { end + gap };
    }
    let x = layout
        .chromosomes
        .iter()
        .enumerate()
        .map(|(j, c)| {
            if by_index {
                j as f64
            } else {
                offset[c.as_str()] + layout.positions[j] as f64
            }
        })
        .collect();
    (x, spans)
}

fn manhattan_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[ManhattanPanel],
    layout: &ManhattanLayout,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(perr("fill"))?;
    let (x, spans) = genome_x(layout);
    let x_max = x.iter().copied().fold(1.0, f64::max);
    let areas = root.split_evenly((panels.len().max(1), 1));
    let chrom_index: std::collections::HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, (c, _, _))| (c.as_str(), i))
        .collect();
    let colours = [RGBColor(31, 119, 180), RGBColor(140, 140, 140)];
    for (area, panel) in areas.into_iter().zip(panels) {
        let finite = panel.values.iter().copied().filter(|v| v.is_finite());
        let hi = finite.clone().fold(f64::NEG_INFINITY, f64::max);
        let lo = finite.fold(f64::INFINITY, f64::min).min(0.0);
        let hi = if hi.is_finite() && hi > lo {
            hi
        } else {
            lo + 1.0
        };
        let pad = 0.12 * (hi - lo);
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max * 1.005, lo..hi + pad)
            .map_err(perr("chart"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(panel.y_label.as_str())
            .x_labels(0)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(perr("mesh"))?;
        chart
            .draw_series(
                panel
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(j, &v)| {
                        let ci = chrom_index[layout.chromosomes[j].as_str()];
                        Circle::new((x[j], v), 2, colours[ci % 2].filled())
                    }),
            )
            .map_err(perr("points"))?;
        // Chromosome names under the axis, at each chromosome's middle.
        for (c, a0, b0) in &spans {
            let (px, py) = chart.backend_coord(&((a0 + b0) / 2.0, lo));
            root.draw(&Text::new(
                c.clone(),
                (px, py + 6),
                ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(perr("chromosome"))?;
        }
        // Known loci: red ticks rising from the x axis.
        let tick = 0.06 * (hi + pad - lo);
        for (c, p) in layout.truth {
            if let Some(&ci) = chrom_index.get(c.as_str()) {
                let xt = if layout.positions.iter().all(|&q| q <= 0) {
                    continue;
                } else {
                    spans[ci].1 + *p as f64
                };
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(xt, lo), (xt, lo + tick)],
                        RGBColor(214, 39, 40).stroke_width(2),
                    )))
                    .map_err(perr("truth"))?;
            }
        }
        // The top markers, labelled.
        let mut idx: Vec<usize> = (0..panel.values.len())
            .filter(|&j| panel.values[j].is_finite())
            .collect();
        idx.sort_by(|&a, &b| panel.values[b].total_cmp(&panel.values[a]));
        for &j in idx.iter().take(layout.label_top) {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x[j], panel.values[j]),
                    4,
                    RGBColor(214, 39, 40).filled(),
                )))
                .map_err(perr("top"))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    layout.ids[j].clone(),
                    (x[j], panel.values[j]),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Bottom)),
                )))
                .map_err(perr("label"))?;
        }
    }
    root.present().map_err(perr("present"))?;
    Ok(())
}

/// Writes a Manhattan plot, one panel per entry of `panels`, as
/// `stem.png` and `stem.svg` (each through a temporary file, renamed).
pub fn manhattan(
    stem: &Path,
    panels: &[ManhattanPanel],
    layout: &ManhattanLayout,
) -> Result<Vec<PathBuf>> {
    font();
    let (w, h) = (1400u32, 40 + 230 * panels.len().max(1) as u32);
    let mut out = Vec::new();
    for ext in ["png", "svg"] {
        let p = stem.with_extension(ext);
        let tmp = stem.with_extension(format!("tmp-{}.{ext}", std::process::id()));
        let done = if ext == "png" {
            manhattan_chart(
                BitMapBackend::new(&tmp, (w, h)).into_drawing_area(),
                panels,
                layout,
            )
        } else {
            manhattan_chart(
                SVGBackend::new(&tmp, (w, h)).into_drawing_area(),
                panels,
                layout,
            )
        }
        .and_then(|()| {
            std::fs::rename(&tmp, &p).map_err(|e| EvalError::Plot(format!("{}: {e}", p.display())))
        });
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done?;
        out.push(p);
    }
    Ok(out)
}
