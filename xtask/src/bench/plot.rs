//! SVG bar charts for BENCHMARKS.md (plotters' SVG backend, no fonts needed: the text is SVG
//! text, laid out with plotters' estimate of its size).

use plotters::prelude::*;

use super::*;

/// Where the plots go, next to BENCHMARKS.md.
pub(super) const PLOT_DIR: &str = "benchmarks";

/// One series of a horizontal bar chart: a name (in the legend) and a value per category.
pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) values: Vec<Option<f64>>,
}

const COLORS: [RGBColor; 3] =
    [RGBColor(0x4c, 0x72, 0xb0), RGBColor(0xdd, 0x84, 0x52), RGBColor(0x55, 0xa8, 0x68)];

/// A horizontal bar chart: one band per category (labels on the left), one bar per series in
/// each band, the value written at the end of each bar. Returns the SVG text.
pub(super) fn bar_chart(
    title: &str,
    x_label: &str,
    categories: &[String],
    series: &[Series],
) -> Result<String> {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let bands = categories.len().max(1);
    let height = u32::try_from(90 + bands * (18 * series.len() + 14)).unwrap_or(600);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        #[expect(clippy::cast_precision_loss, reason = "a few categories")]
        let y_max = bands as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(230)
            .build_cartesian_2d(0.0..max * 1.18, 0.0..y_max)
            .map_err(plot_error)?;
        let labels = categories.to_vec();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_label)
            .y_labels(bands * 2 + 1)
            .y_label_formatter(&move |y: &f64| {
                // Labels sit at the middle of each band (y = i + 0.5), counted from the top.
                let from_top = y_max - y - 0.5;
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "a band index"
                )]
                let i = from_top.round() as usize;
                if (from_top - from_top.round()).abs() < 0.01 && from_top >= -0.01 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|x| short(*x))
            .draw()
            .map_err(plot_error)?;
        #[expect(clippy::cast_precision_loss, reason = "a few series")]
        let per_bar = 0.8 / series.len() as f64;
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let bars: Vec<(f64, f64, f64)> = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    #[expect(clippy::cast_precision_loss, reason = "a few categories")]
                    let top = y_max - i as f64 - 0.1 - per_bar * k as f64;
                    v.map(|v| (v, top - per_bar, top))
                })
                .collect();
            chart
                .draw_series(
                    bars.iter()
                        .map(|&(v, lo, hi)| Rectangle::new([(0.0, lo), (v, hi)], color.filled())),
                )
                .map_err(plot_error)?
                .label(s.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(bars.iter().map(|&(v, lo, hi)| {
                    Text::new(
                        format!(" {}", short(v)),
                        (v, f64::midpoint(lo, hi) + per_bar * 0.3),
                        ("sans-serif", 12),
                    )
                }))
                .map_err(plot_error)?;
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// `512300` as `512.3k`, `0.25` as `0.25`.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 || (v - v.trunc()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

/// Writes `svg` as `benchmarks/NAME.svg` and returns the Markdown that shows it.
pub(super) fn save(name: &str, alt: &str, svg: &str) -> Result<String> {
    let dir = root().join(PLOT_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.svg"));
    fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    Ok(format!("![{alt}]({PLOT_DIR}/{name}.svg)\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_every_label_and_value() {
        let svg = bar_chart(
            "SYN-ACKs per second",
            "per second",
            &["kernel".into(), "synshield".into()],
            &[
                Series { name: "bare", values: vec![Some(250_000.0), Some(500_000.0)] },
                Series { name: "options", values: vec![None, Some(480_000.0)] },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "SYN-ACKs per second",
            "kernel",
            "synshield",
            "250.0k",
            "500.0k",
            "480.0k",
            "bare",
            "options",
        ] {
            assert!(svg.contains(text), "{text} missing from the chart");
        }
        assert_eq!(short(0.5), "0.50");
        assert_eq!(short(99.0), "99");
        assert_eq!(short(1_500_000.0), "1.50M");
    }
}
