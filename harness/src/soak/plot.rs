//! The soak run's plot: one small chart per resource over the run, with the line fitted to its
//! second half in red. SVG through `plotters`' SVG backend only (no font or system library:
//! text goes into the file as `<text>`).

use plotters::prelude::*;

use super::trend;

/// One small chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Its title (name, unit and verdict).
    pub title: String,
    /// `(minutes, value)`.
    pub points: Vec<(f64, f64)>,
    /// The fitted line over the second half: its two ends, `(minutes, value)`.
    pub fit: Option<[(f64, f64); 2]>,
    /// Whether the resource keeps growing (the fit is drawn heavier).
    pub growing: bool,
}

impl Panel {
    /// A panel of `points` (`(seconds, value)`) with the least-squares line of their second half.
    pub fn new(title: String, points: &[(f64, f64)], growing: bool) -> Self {
        let half = trend::second_half(points);
        let fit = trend::slope(&half).and_then(|b| {
            let n = half.len() as f64;
            let mean_t = half.iter().map(|p| p.0).sum::<f64>() / n;
            let mean_v = half.iter().map(|p| p.1).sum::<f64>() / n;
            let at = |t: f64| (t / 60.0, mean_v + b * (t - mean_t));
            Some([at(half.first()?.0), at(half.last()?.0)])
        });
        Self {
            title,
            points: points.iter().map(|(t, v)| (t / 60.0, *v)).collect(),
            fit,
            growing,
        }
    }
}

/// The panels as an SVG document, `columns` charts a row.
pub fn svg(panels: &[Panel], columns: usize) -> Result<String, String> {
    let columns = columns.max(1);
    let rows = panels.len().div_ceil(columns).max(1);
    let mut out = String::new();
    {
        let size = (360 * columns as u32, 240 * rows as u32);
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((rows, columns));
        for (area, panel) in areas.iter().zip(panels) {
            draw(area, panel).map_err(|e| format!("{}: {e}", panel.title))?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(area: &Area<'_>, panel: &Panel) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let t_max = panel
        .points
        .iter()
        .map(|p| p.0)
        .fold(0.0_f64, f64::max)
        .max(0.5);
    let values = panel
        .points
        .iter()
        .map(|p| p.1)
        .chain(panel.fit.iter().flat_map(|f| [f[0].1, f[1].1]));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    // From zero where the data allow: a flat line should look flat, not zoomed-in noise.
    let lo = if lo >= 0.0 { 0.0 } else { lo * 1.1 };
    let hi = if hi > lo { hi * 1.1 } else { lo + 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .x_labels(6)
        .y_labels(5)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(panel.points.iter().copied(), &BLUE))
        .map_err(e)?;
    if let Some(fit) = panel.fit {
        let width = if panel.growing { 3 } else { 1 };
        chart
            .draw_series(LineSeries::new(fit, RED.stroke_width(width)))
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_panel_is_drawn_with_its_title_and_fit() {
        let points: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 30.0, 10.0 + i as f64))
            .collect();
        let panels = vec![
            Panel::new("api RSS (MiB)".into(), &points, true),
            Panel::new("queue lag (s)".into(), &points[..1], false),
        ];
        assert_eq!(panels[0].fit.map(|f| f[1]), Some((4.5, 19.0)));
        assert_eq!(panels[1].fit, None);
        let svg = svg(&panels, 2).unwrap_or_default();
        assert!(svg.starts_with("<svg"), "{svg:.80}");
        assert!(svg.contains("api RSS (MiB)") && svg.contains("queue lag (s)"));
        // A data line (blue) for each panel, one fit line (red) for the first.
        assert_eq!(svg.matches(r##"stroke="#0000FF""##).count(), 2, "{svg}");
        assert_eq!(svg.matches(r##"stroke="#FF0000""##).count(), 1, "{svg}");
    }

    #[test]
    fn no_panels_still_make_a_document() {
        assert!(svg(&[], 3).is_ok_and(|s| s.contains("</svg>")));
    }
}
