//! The predicted speedup drawn as SVG (`layerpar scaling --plot`).

use anyhow::Result;
use std::path::Path;

/// Draws the model's speedup over the serial sweep against the rank count (both axes
/// logarithmic), the ideal speedup P, and the measured point, as SVG. The file is written
/// whole under a temporary name and renamed, so a failed run leaves no partial plot.
pub fn plot_speedup(
    path: &Path,
    title: &str,
    curve: &[(f64, f64)],
    measured: (f64, f64),
) -> Result<()> {
    let mut svg = String::new();
    render_speedup(&mut svg, title, curve, measured)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    checkpoint::replace_file(path, svg.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn render_speedup(
    svg: &mut String,
    title: &str,
    curve: &[(f64, f64)],
    measured: (f64, f64),
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    // Text layout needs the built-in font.
    crate::plot::fonts();
    let x_max = curve.last().map_or(2.0, |c| c.0).max(2.0);
    let y_values = curve.iter().map(|c| c.1).chain([measured.1, x_max]);
    let y_max = y_values.clone().fold(1.0_f64, f64::max) * 1.5;
    let y_min = y_values.fold(1.0_f64, f64::min).max(1e-4) / 1.5;
    let root = SVGBackend::with_string(svg, (800, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .x_desc("MPI ranks P")
        .y_desc("speedup over the serial sweep")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, 1.0), (x_max, x_max)],
            BLACK.mix(0.4),
        ))?
        .label("ideal (P)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), BLUE.stroke_width(2)))?
        .label("model")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(curve.iter().map(|&c| Circle::new(c, 3, BLUE.filled())))?;
    chart
        .draw_series([Circle::new(measured, 6, RED.filled())])?
        .label("measured")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plot_has_the_model_curve_the_ideal_line_and_the_measured_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speedup.svg");
        let curve = [(1.0, 0.2), (2.0, 0.35), (4.0, 0.6)];
        super::plot_speedup(&path, "a title", &curve, (2.0, 0.3)).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        for text in ["a title", "model", "ideal (P)", "measured", "MPI ranks P"] {
            assert!(svg.contains(text), "{text} missing: {svg}");
        }
        let err = super::plot_speedup(&dir.path().join("no/such/p.svg"), "t", &curve, (1.0, 1.0));
        assert!(err.unwrap_err().to_string().contains("cannot write"));
    }
}
