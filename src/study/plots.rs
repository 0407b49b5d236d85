//! Box plots of a study: one panel per summarized metric (validation accuracy, validation
//! loss, …), one box per group over its runs that ended ok, each run drawn as a dot.

use super::summary::GroupSummary;
use crate::plot::{empty_panel, linear_range, DrawResult, Figure};
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct BoxPlots<'a> {
    pub title: String,
    pub groups: &'a [GroupSummary],
    pub reach: f64,
}

/// A metric's panel title and axis label.
fn describe(metric: &str) -> (&'static str, &'static str) {
    match metric {
        "val_acc" => ("Validation accuracy", "accuracy (fraction correct)"),
        "val_loss" => ("Validation loss", "mean loss (cross-entropy or MSE)"),
        "val_rmse" => ("Validation RMSE", "RMSE (target units)"),
        "val_r2" => ("Validation R²", "R² (fraction of variance)"),
        _ => ("", ""),
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    plots: &BoxPlots,
    m: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let metric = plots.groups[0].metrics[m].0.as_str();
    let (title, y_desc) = describe(metric);
    let labels: Vec<String> = plots
        .groups
        .iter()
        .map(|g| format!("{} ({}/{} ok)", g.group, g.ok, g.runs))
        .collect();
    let values: Vec<&Vec<f64>> = plots.groups.iter().map(|g| &g.values[m]).collect();
    let Some((lo, hi)) = linear_range(values.iter().flat_map(|v| v.iter().copied())) else {
        return empty_panel(area, title, &format!("no {metric} in the runs' histories"));
    };
    let (lo, hi) = if metric == "val_acc" {
        (
            lo.min(plots.reach - 0.02).max(0.0),
            hi.max(plots.reach + 0.02).min(1.0) + 0.005,
        )
    } else {
        (lo, hi)
    };
    let n = labels.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .margin_right(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, lo..hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("group (runs that ended ok / all runs)")
        .y_desc(y_desc)
        .x_label_style(("sans-serif", 14))
        .x_labels(2 * n + 1)
        .x_label_formatter(&|x| {
            // Group i's label sits at its box, x = i + 0.5.
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-9 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ];
    if metric == "val_acc" {
        chart
            .draw_series(LineSeries::new(
                [(0.0, plots.reach), (n as f64, plots.reach)],
                BLACK.mix(0.5),
            ))?
            .label(format!("reach_acc = {}", plots.reach))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    for (i, v) in values.iter().enumerate() {
        let Some(b) = BoxStats::new(v) else {
            continue;
        };
        let c = colors[i % colors.len()];
        let x = i as f64 + 0.5;
        let (l, r) = (x - 0.2, x + 0.2);
        let line = c.stroke_width(2);
        chart.draw_series([Rectangle::new([(l, b.q1), (r, b.q3)], c.mix(0.15).filled())])?;
        chart.draw_series([Rectangle::new([(l, b.q1), (r, b.q3)], line)])?;
        for seg in [
            [(l, b.median), (r, b.median)],
            [(x, b.q3), (x, b.hi)],
            [(x, b.q1), (x, b.lo)],
            [(x - 0.08, b.hi), (x + 0.08, b.hi)],
            [(x - 0.08, b.lo), (x + 0.08, b.lo)],
        ] {
            chart.draw_series(LineSeries::new(seg, line))?;
        }
        // Every run as a dot, spread a little sideways so that equal values stay visible.
        chart.draw_series(v.iter().enumerate().map(|(k, &y)| {
            let dx = 0.12 * (((k * 7) % 11) as f64 / 10.0 - 0.5);
            Circle::new((x + 0.3 + dx, y), 3, c.mix(0.7).filled())
        }))?;
    }
    if metric == "val_acc" {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    Ok(())
}

/// A box: quartiles (linear interpolation between order statistics) and whiskers reaching
/// the furthest values within 1.5 interquartile ranges of the box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxStats {
    pub lo: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub hi: f64,
}

impl BoxStats {
    pub fn new(values: &[f64]) -> Option<BoxStats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let h = p * (v.len() - 1) as f64;
            let (i, f) = (h.floor() as usize, h - h.floor());
            v[i] + f * (v[(i + 1).min(v.len() - 1)] - v[i])
        };
        let (q1, median, q3) = (q(0.25), q(0.5), q(0.75));
        let iqr = q3 - q1;
        let lo = v
            .iter()
            .copied()
            .find(|&x| x >= q1 - 1.5 * iqr)
            .unwrap_or(q1);
        let hi = v
            .iter()
            .rev()
            .copied()
            .find(|&x| x <= q3 + 1.5 * iqr)
            .unwrap_or(q3);
        Some(BoxStats {
            lo,
            q1,
            median,
            q3,
            hi,
        })
    }
}

impl Figure for BoxPlots<'_> {
    fn size(&self) -> (u32, u32) {
        let panels = self.groups.first().map_or(1, |g| g.metrics.len().max(1));
        (40 + 520 * panels as u32, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 20))?;
        let Some(first) = self.groups.first() else {
            return empty_panel(&root, "", "no finished runs");
        };
        let areas = root.split_evenly((1, first.metrics.len().max(1)));
        for (m, area) in areas.iter().enumerate().take(first.metrics.len()) {
            panel(area, self, m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::BoxStats;

    #[test]
    fn boxes_have_quartiles_and_whiskers_within_the_data() {
        let b = BoxStats::new(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(
            (b.lo, b.q1, b.median, b.q3, b.hi),
            (1.0, 2.0, 3.0, 4.0, 5.0)
        );
        // An outlier lies beyond the whisker.
        let b = BoxStats::new(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!((b.q3, b.hi), (4.0, 4.0));
        assert_eq!(BoxStats::new(&[0.5]).unwrap().hi, 0.5);
        assert!(BoxStats::new(&[]).is_none());
    }
}
