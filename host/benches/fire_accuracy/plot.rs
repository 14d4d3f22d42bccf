//! The lateness plot: the fraction of fires later than x against x, on log axes.

use std::path::Path;

use hdrhistogram::Histogram;

use attune_timer::schedule::ON_TIME;

use crate::report::ScenarioReport;
use crate::scenario::{thousands, Scenario};
use crate::stats::Dist;

// The plot: fraction of fires later than x, against x, on log axes.

/// One line of the lateness plot.
struct Curve {
    label: String,
    color: plotters::style::RGBColor,
    /// (lateness ms, fraction of fires later than that), every fraction > 0.
    points: Vec<(f64, f64)>,
}

/// Log-spaced lateness values (ms) from `lo` to `hi`, `per_decade` to a decade.
fn log_grid(lo: f64, hi: f64, per_decade: usize) -> Vec<f64> {
    let (a, b) = (lo.log10(), hi.log10());
    let n = ((b - a) * per_decade as f64).ceil().max(1.0) as usize;
    (0..=n)
        .map(|i| 10f64.powf(a + (b - a) * i as f64 / n as f64))
        .collect()
}

/// The fraction of a sorted list of ns values above each grid point (ms), ending at its max.
fn ccdf_sorted(sorted_ns: &[i64], grid_ms: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted_ns.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &x in grid_ms {
        let x_ns = (x * 1e6) as i64;
        let above = n - sorted_ns.partition_point(|v| *v <= x_ns);
        if above == 0 {
            break;
        }
        out.push((x, above as f64 / n as f64));
    }
    let max_ms = (sorted_ns[n - 1] as f64 / 1e6).max(grid_ms[0]);
    out.push((max_ms, 1.0 / n as f64));
    out
}

/// The same for a histogram of ns values.
fn ccdf_hist(h: &Histogram<u64>, grid_ms: &[f64]) -> Vec<(f64, f64)> {
    let n = h.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &x in grid_ms {
        let above = n - h.count_between(0, (x * 1e6) as u64).min(n);
        if above == 0 {
            break;
        }
        out.push((x, above as f64 / n as f64));
    }
    let max_ms = (h.max() as f64 / 1e6).max(grid_ms[0]);
    out.push((max_ms, 1.0 / n as f64));
    out
}

/// Draws the curves on log-log axes into a PNG: plotters' in-memory bitmap, written with
/// `png`; the text in DejaVu Sans from the `dejavu` crate, so no system font is needed.
fn plot_ccdf(
    path: &Path,
    title: &str,
    caption: &[String],
    curves: &[Curve],
    marks: &[(f64, &str)],
) -> Result<(), String> {
    use plotters::prelude::*;
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
    const W: u32 = 1200;
    const H: u32 = 800;
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x_max = points().map(|p| p.0).fold(1.0f64, f64::max);
    let x_hi = 10f64.powf((x_max * 1.5).log10().ceil());
    let x_lo = 1e-3;
    let y_min = points().map(|p| p.1).fold(1.0f64, f64::min);
    let y_lo = 10f64.powf((y_min * 0.5).log10().floor());
    let err = |e: &dyn std::fmt::Display| e.to_string();

    let mut buf = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, rest) = root.split_vertically(60 + 22 * caption.len() as u32);
        top.draw_text(
            title,
            &("sans-serif", 26).into_font().color(&BLACK),
            (20, 12),
        )
        .map_err(|e| err(&e))?;
        for (i, line) in caption.iter().enumerate() {
            top.draw_text(
                line,
                &("sans-serif", 17).into_font().color(&RGBColor(60, 60, 60)),
                (20, 50 + 22 * i as i32),
            )
            .map_err(|e| err(&e))?;
        }
        let mut chart = ChartBuilder::on(&rest)
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(90)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..1.0f64).log_scale())
            .map_err(|e| err(&e))?;
        // Label the powers of ten only.
        let decade = |v: &f64| (v.log10() - v.log10().round()).abs() < 1e-6;
        chart
            .configure_mesh()
            .x_desc("lateness (ms), log scale")
            .y_desc("fraction of fires later than that, log scale")
            .axis_desc_style(("sans-serif", 19))
            .label_style(("sans-serif", 16))
            .x_label_formatter(&|v| match () {
                _ if !decade(v) => String::new(),
                _ if *v >= 1.0 => format!("{}", v.round() as i64),
                _ => format!("{v}"),
            })
            .y_label_formatter(&|v| match () {
                _ if !decade(v) => String::new(),
                _ if *v >= 0.01 => format!("{v}"),
                _ => format!("1e{}", v.log10().round() as i32),
            })
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(|e| err(&e))?;
        let grey = RGBColor(110, 110, 110);
        for &(x, label) in marks {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x, y_lo), (x, 1.0)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.to_string(),
                    (x * 1.08, 0.5),
                    ("sans-serif", 16).into_font().color(&grey),
                )))
                .map_err(|e| err(&e))?;
        }
        for c in curves {
            let color = c.color;
            chart
                .draw_series(LineSeries::new(c.points.clone(), color.stroke_width(3)))
                .map_err(|e| err(&e))?
                .label(c.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 30, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font(("sans-serif", 17))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), W, H);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| err(&e))?;
    writer.write_image_data(&buf).map_err(|e| err(&e))?;
    writer.finish().map_err(|e| err(&e))?;
    Ok(())
}

/// "0.123", "45.6", "789": three significant figures, for the plot's legend.
fn sig3(ms: f64) -> String {
    if ms == 0.0 {
        "0".into()
    } else {
        let digits = (2 - ms.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{ms:.digits$}")
    }
}

/// The plot of one scenario, from its report and the raw distributions.
pub fn plot_scenario(
    path: &Path,
    r: &ScenarioReport,
    sc: &Scenario,
    clock: &Histogram<u64>,
    arrival_sorted: &[i64],
) -> Result<(), String> {
    let legend = |d: &Dist| {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {} ms",
            sig3(d.p50_ms),
            sig3(d.p99_ms),
            sig3(d.p99_9_ms),
            sig3(d.max_ms)
        )
    };
    let hi = (arrival_sorted.last().copied().unwrap_or(0) as f64 / 1e6)
        .max(clock.max() as f64 / 1e6)
        .max(10.0);
    let grid = log_grid(1e-3, hi * 1.01, 100);
    let curves = [
        Curve {
            label: format!(
                "clock: the outbox had it − its tick     {}",
                legend(&r.lateness.dist)
            ),
            color: plotters::style::RGBColor(31, 119, 180),
            points: ccdf_hist(clock, &grid),
        },
        Curve {
            label: format!(
                "arrival: the API received it − its tick   {}",
                legend(&r.arrival_lateness.all)
            ),
            color: plotters::style::RGBColor(214, 39, 40),
            points: ccdf_sorted(arrival_sorted, &grid),
        },
    ];
    let p = &r.params;
    let m = &r.machine;
    let missed = r.cron.sequence.missed + r.interval.sequence.missed;
    let duplicates = r.cron.sequence.duplicates + r.interval.sequence.duplicates;
    let caption = [
        format!(
            "{} fires in a {} s window after {} s warm-up, {} interval rules included; \
             logs {}",
            thousands(r.lateness.dist.n),
            p.window_seconds,
            p.warmup_seconds,
            p.interval_rules,
            format!("{:?}", p.logs).to_lowercase(),
        ),
        format!(
            "missed {missed}, duplicates {duplicates}; {} CPUs ({}), other processes {} cores \
             busy; {}, commit {}",
            m.nproc,
            m.cpu_model,
            m.other_processes_cores_busy,
            r.date_utc,
            r.commit.as_deref().unwrap_or("-"),
        ),
    ];
    let on_time_ms = ON_TIME.as_secs_f64() * 1000.0;
    plot_ccdf(
        path,
        &format!(
            "Fire lateness: {} (+{} interval rules)",
            sc.describe(),
            p.interval_rules
        ),
        &caption,
        &curves,
        &[(on_time_ms, &format!("ON_TIME {on_time_ms} ms"))],
    )
}
