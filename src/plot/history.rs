//! `layerpar plot HISTORY.csv`: a training history as three panels — objective and loss
//! (log scale), accuracy (or validation RMSE and R² for regression), and the MGRIT residuals
//! per iteration (log scale). Columns are read by name; empty cells are skipped.

use super::{empty_panel, linear_range, log_label, log_range, DrawResult, Figure};
use crate::csvtable::Table;
use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One curve: its label, colour and (x, y) points.
struct Curve {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The figure of a history.
pub struct HistoryFigure {
    title: String,
    /// x of every row: the iteration, counted on across nested levels.
    levels_start: Vec<f64>,
    x_max: f64,
    losses: Vec<Curve>,
    /// Accuracy (classification) or RMSE and R² (regression).
    scores: Vec<Curve>,
    regression: bool,
    residuals: Vec<Curve>,
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE_: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);

impl HistoryFigure {
    pub fn new(table: &Table, title: &str) -> Result<HistoryFigure> {
        let Some(iters) = table.numbers("iter") else {
            bail!("{title}: no `iter` column (is it a layerpar history?)");
        };
        if table.rows.is_empty() {
            bail!("{title}: no rows");
        }
        let levels = table
            .numbers("level")
            .unwrap_or_else(|| vec![Some(0.0); iters.len()]);
        // Nested levels restart `iter` at 0: count on from the previous level's last one.
        let mut x = Vec::with_capacity(iters.len());
        let mut levels_start = Vec::new();
        let (mut offset, mut last_iter, mut last_level) = (0.0, 0.0, None);
        for (i, l) in iters.iter().zip(&levels) {
            let (i, l) = (i.unwrap_or(last_iter), l.unwrap_or(0.0));
            if last_level.is_some_and(|p| p != l) {
                offset += last_iter;
                levels_start.push(offset);
            }
            last_level = Some(l);
            last_iter = i;
            x.push(offset + i);
        }
        let curve = |name: &str, label: &'static str, color: RGBColor| -> Option<Curve> {
            let v = table.numbers(name)?;
            let points: Vec<(f64, f64)> = x
                .iter()
                .zip(v)
                .filter_map(|(&x, y)| y.filter(|y| y.is_finite()).map(|y| (x, y)))
                .collect();
            (!points.is_empty()).then_some(Curve {
                label,
                color,
                points,
            })
        };
        let losses = [
            curve("objective", "objective J (training)", BLUE_),
            curve("loss", "training loss", ORANGE_),
            curve("val_loss", "validation loss", GREEN_),
        ];
        let accuracy = [
            curve("train_acc", "training accuracy", ORANGE_),
            curve("val_acc", "validation accuracy", GREEN_),
        ];
        let regression = accuracy.iter().all(Option::is_none)
            && (table.has_values("val_rmse") || table.has_values("val_r2"));
        let scores = if regression {
            [
                curve("val_rmse", "validation RMSE", RED_),
                curve("val_r2", "validation R²", GREEN_),
            ]
        } else {
            accuracy
        };
        let residuals = [
            curve("fwd_res", "forward (state) MGRIT residual", BLUE_),
            curve("adj_res", "adjoint MGRIT residual", RED_),
        ];
        Ok(HistoryFigure {
            title: title.to_string(),
            levels_start,
            x_max: x.iter().copied().fold(1.0, f64::max),
            losses: losses.into_iter().flatten().collect(),
            scores: scores.into_iter().flatten().collect(),
            regression,
            residuals: residuals.into_iter().flatten().collect(),
        })
    }

    fn x_desc(&self) -> &'static str {
        if self.levels_start.is_empty() {
            "iteration"
        } else {
            "iteration (nested levels one after another)"
        }
    }
}

fn legend_line(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2))
}

/// The curves of a panel with a legend at `legend`, and a faint vertical line where each
/// nested level starts (from y = lo to hi).
fn draw_curves<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    fig: &HistoryFigure,
    curves: &[Curve],
    (lo, hi): (f64, f64),
    legend: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for &s in &fig.levels_start {
        chart.draw_series(LineSeries::new([(s, lo), (s, hi)], BLACK.mix(0.25)))?;
    }
    for c in curves {
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                c.color.stroke_width(2),
            ))?
            .label(c.label)
            .legend(legend_line(c.color));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// A panel with a log-scale y axis.
fn log_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &HistoryFigure,
    title: &str,
    y_desc: &str,
    curves: &[Curve],
    empty: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let Some((lo, hi)) = log_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1))) else {
        return empty_panel(area, title, empty);
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..fig.x_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc(fig.x_desc())
        .y_desc(y_desc)
        .y_label_formatter(&log_label)
        .draw()?;
    draw_curves(
        &mut chart,
        fig,
        curves,
        (lo, hi),
        SeriesLabelPosition::UpperRight,
    )
}

/// A panel with a linear y axis.
fn linear_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &HistoryFigure,
    title: &str,
    y_desc: &str,
    curves: &[Curve],
    fixed: Option<(f64, f64)>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let Some((lo, hi)) =
        fixed.or_else(|| linear_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1))))
    else {
        return empty_panel(area, title, "no values in the history");
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..fig.x_max, lo..hi)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc(fig.x_desc())
        .y_desc(y_desc)
        .draw()?;
    draw_curves(
        &mut chart,
        fig,
        curves,
        (lo, hi),
        SeriesLabelPosition::LowerRight,
    )
}

impl Figure for HistoryFigure {
    fn size(&self) -> (u32, u32) {
        (1500, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, ("sans-serif", 20))?;
        let panels = root.split_evenly((1, 3));
        log_panel(
            &panels[0],
            self,
            "Objective and loss",
            "value (log scale)",
            &self.losses,
            "no objective or loss values",
        )?;
        if self.regression {
            linear_panel(
                &panels[1],
                self,
                "Validation RMSE and R²",
                "RMSE (target units), R² (fraction)",
                &self.scores,
                None,
            )?;
        } else {
            // Accuracy axis: up to 1, from a little below the lowest value.
            let fixed = linear_range(
                self.scores
                    .iter()
                    .flat_map(|c| c.points.iter().map(|p| p.1)),
            )
            .map(|(lo, _)| (lo.clamp(0.0, 0.9), 1.01));
            linear_panel(
                &panels[1],
                self,
                "Accuracy",
                "accuracy (fraction correct)",
                &self.scores,
                fixed,
            )?;
        }
        log_panel(
            &panels[2],
            self,
            "MGRIT residuals",
            "residual norm (log scale)",
            &self.residuals,
            "no MGRIT residuals (serial run)",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIAL: &str = "iter,objective,loss,grad_norm,train_acc,val_acc,fwd_res,adj_res,time_s,step,level\n\
        0,1.6,1.6,0.5,0.2,0.2,,,0.0,0,0\n1,1.2,1.2,0.4,0.5,0.45,,,0.1,1,0\n2,0.8,0.8,0.3,0.7,0.65,,,0.2,1,0\n";

    #[test]
    fn a_serial_history_says_it_has_no_mgrit_residuals() {
        let t = Table::parse(SERIAL, "h.csv").unwrap();
        let f = HistoryFigure::new(&t, "h.csv").unwrap();
        assert_eq!(f.losses.len(), 2);
        assert_eq!(f.scores.len(), 2);
        assert!(f.residuals.is_empty());
        let svg = crate::plot::svg(&f).unwrap();
        for text in [
            "no MGRIT residuals (serial run)",
            "validation accuracy",
            "training loss",
            "accuracy (fraction correct)",
            "value (log scale)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        let png = crate::plot::png(&f).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn nested_levels_are_counted_on_and_regression_columns_are_used() {
        let text = "iter,objective,loss,train_acc,val_acc,fwd_res,adj_res,level,val_loss,val_rmse,val_r2\n\
            0,1,1,,,1e-2,1e-3,0,1,0.5,0.1\n3,0.5,0.5,,,1e-4,1e-5,0,0.6,0.4,0.3\n0,0.5,0.5,,,1e-3,1e-4,1,0.6,0.4,0.3\n2,0.2,0.2,,,1e-6,1e-7,1,0.3,0.2,0.8\n";
        let t = Table::parse(text, "h.csv").unwrap();
        let f = HistoryFigure::new(&t, "h.csv").unwrap();
        assert_eq!(f.levels_start, vec![3.0]);
        assert_eq!(f.x_max, 5.0);
        assert!(f.regression);
        assert_eq!(f.losses.len(), 3);
        assert_eq!(f.residuals[0].points.len(), 4);
        let svg = crate::plot::svg(&f).unwrap();
        assert!(svg.contains("validation RMSE") && svg.contains("nested levels"));
        assert!(HistoryFigure::new(&Table::parse("a,b\n1,2\n", "x").unwrap(), "x").is_err());
    }
}
