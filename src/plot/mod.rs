//! Figures as SVG and PNG: the font (DejaVu Sans, built into the binary, so that text renders
//! the same on any machine without system fonts), and one drawing routine rendered to both
//! formats. [`history`] draws a training history (`layerpar plot`).

pub mod history;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Registers the built-in font as "sans-serif" (once). Every plot calls this first: text
/// layout, in SVG too, needs a font.
pub fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let regular = dejavu::sans::regular();
        let bold = dejavu::sans::bold();
        // The fonts are built in and valid: a failure here is a broken build.
        for (style, bytes) in [(FontStyle::Normal, regular), (FontStyle::Bold, bold)] {
            if plotters::style::register_font("sans-serif", style, bytes).is_err() {
                panic!("the built-in DejaVu Sans font does not load");
            }
        }
    });
}

/// A figure that can be drawn on any plotters backend.
pub trait Figure {
    /// The size in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

pub type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// `PREFIX.svg` and `PREFIX.png`.
pub fn outputs(prefix: &Path) -> (PathBuf, PathBuf) {
    let with = |e: &str| {
        let mut s = prefix.as_os_str().to_os_string();
        s.push(".");
        s.push(e);
        PathBuf::from(s)
    };
    (with("svg"), with("png"))
}

/// Draws `fig` as SVG text.
pub fn svg(fig: &impl Figure) -> Result<String> {
    fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, fig.size()).into_drawing_area();
        fig.draw(&root).map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(svg)
}

/// Draws `fig` as a PNG file's bytes.
pub fn png(fig: &impl Figure) -> Result<Vec<u8>> {
    fonts();
    let (w, h) = fig.size();
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        fig.draw(&root).map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        let mut writer = enc.write_header().map_err(|e| anyhow!("{e}"))?;
        writer.write_image_data(&rgb).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(bytes)
}

/// Writes `PREFIX.svg` and `PREFIX.png` (each atomically); returns their paths.
pub fn write(prefix: &Path, fig: &impl Figure) -> Result<(PathBuf, PathBuf)> {
    let (svg_path, png_path) = outputs(prefix);
    let what = |p: &Path| format!("cannot draw {}", p.display());
    let s = svg(fig).map_err(|e| anyhow!("{}: {e}", what(&svg_path)))?;
    let p = png(fig).map_err(|e| anyhow!("{}: {e}", what(&png_path)))?;
    for (path, bytes) in [(&svg_path, s.as_bytes()), (&png_path, &p[..])] {
        checkpoint::replace_file(path, bytes)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok((svg_path, png_path))
}

/// A panel that only says why it has nothing to show.
pub fn empty_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    message: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2 - 8 * title.len() as i32 / 2, 12),
        ("sans-serif", 18).into_font(),
    ))?;
    area.draw(&Text::new(
        message.to_string(),
        (w as i32 / 2 - 7 * message.len() as i32 / 2, h as i32 / 2),
        ("sans-serif", 15).into_font().color(&BLACK.mix(0.6)),
    ))?;
    Ok(())
}

/// A log axis range covering the positive values `v` (with some room).
pub fn log_range(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = v
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    if hi <= 0.0 {
        return None;
    }
    let (lo, hi) = if lo == hi {
        (lo / 2.0, hi * 2.0)
    } else {
        (lo, hi)
    };
    Some((lo / 1.5, hi * 1.5))
}

/// A linear axis range covering the values `v` (with some room).
pub fn linear_range(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.05 * lo.abs().max(1e-3)
    };
    Some((lo - pad, hi + pad))
}

/// Tick labels of a log axis: 1e-3, 0.01, 0.1, 1, 10, 100, 1e3.
pub fn log_label(y: &f64) -> String {
    let a = y.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-2..1e3).contains(&a) {
        format!("{y}")
    } else {
        format!("{y:.0e}")
    }
}
