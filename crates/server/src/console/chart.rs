//! Server-rendered SVG charts (no script, no external fetch; the CSP stays `'self'`): every
//! chart has a title, labelled axes or bars, and the values written next to the marks, so
//! it reads the same without colour and to a screen reader (`<title>` per mark).

use std::fmt::Write as _;

/// Escapes text for SVG/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where a chart's plot lies in its `viewBox`: the y axis at `left` from `top` (the top value)
/// down to `bottom` (zero), where the x axis runs to `right`.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// x of the y axis.
    pub left: f64,
    /// Where the x axis ends.
    pub right: f64,
    /// y of the top value.
    pub top: f64,
    /// y of zero (the x axis).
    pub bottom: f64,
}

impl Frame {
    /// The y of `value` on a scale from zero to `max`.
    pub fn y(&self, value: f64, max: f64) -> f64 {
        self.bottom - value / max * (self.bottom - self.top)
    }
}

/// The axes of every chart that has them: both axis lines, the unit written up the y axis,
/// and the y axis' zero, half and top values (`values`, in that order) with a tick each.
pub fn axes(svg: &mut String, f: Frame, unit: &str, values: [String; 3]) {
    let Frame {
        left,
        right,
        top,
        bottom,
    } = f;
    let mid = f64::midpoint(bottom, top);
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom:.1}" stroke="#5b6573"/><line x1="{left}" y1="{bottom:.1}" x2="{right:.1}" y2="{bottom:.1}" stroke="#5b6573"/><text x="10" y="{mid:.1}" font-size="10" transform="rotate(-90 10 {mid:.1})" text-anchor="middle">{}</text>"##,
        esc(unit)
    );
    for (frac, text) in [0.0, 0.5, 1.0].into_iter().zip(values) {
        let y = f.y(frac, 1.0);
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text><line x1="{:.1}" y1="{y:.1}" x2="{left}" y2="{y:.1}" stroke="#5b6573"/>"##,
            left - 5.0,
            y + 3.0,
            esc(&text),
            left - 3.0,
        );
    }
}

/// Of `groups` labels along an x axis, every how many to write so they stay readable when
/// the chart shrinks to a phone's width: each up to 6, every second up to 12, else every third.
pub fn label_every(groups: usize) -> usize {
    match groups {
        0..=6 => 1,
        7..=12 => 2,
        _ => 3,
    }
}

/// One bar of [`hbars`].
#[derive(Debug, Clone)]
pub struct Bar {
    /// What the bar counts (`patterns 1.2`).
    pub label: String,
    /// Its value.
    pub value: u64,
    /// The value as written (`12 clients`).
    pub text: String,
    /// Drawn in the "good" colour (the newest version).
    pub good: bool,
}

/// A horizontal bar chart: one labelled row per bar, the value written at the bar's end.
/// Empty when there are no bars.
#[allow(clippy::cast_precision_loss)]
pub fn hbars(id: &str, title: &str, bars: &[Bar]) -> String {
    const W: f64 = 560.0;
    const LABEL: f64 = 170.0;
    const ROW: f64 = 24.0;
    if bars.is_empty() {
        return String::new();
    }
    let max = bars.iter().map(|b| b.value).max().unwrap_or(1).max(1) as f64;
    let h = ROW * bars.len() as f64 + 8.0;
    // Room for the longest value written after its bar (about 6.5 px a character at 12 px).
    let room = bars
        .iter()
        .map(|b| b.text.chars().count())
        .max()
        .unwrap_or(0) as f64
        * 6.5
        + 10.0;
    let span = (W - LABEL - room).max(60.0);
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {h}" role="img" aria-labelledby="{id}-title" class="chart" id="{id}"><title id="{id}-title">{}</title>"#,
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 4.0 + ROW * i as f64;
        let width = (b.value as f64 / max * span).max(1.0);
        let fill = if b.good { "#2e7d32" } else { "#9a6700" };
        let label: String = b.label.chars().take(26).collect();
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text><rect x="{LABEL}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{fill}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            LABEL - 6.0,
            y + ROW * 0.65,
            esc(&label),
            y + 3.0,
            ROW - 8.0,
            esc(&b.label),
            esc(&b.text),
            LABEL + width + 5.0,
            y + ROW * 0.65,
            esc(&b.text),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One series of [`lines`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name, in the legend.
    pub name: String,
    /// Its colour.
    pub color: &'static str,
    /// (x, y) points, x ascending.
    pub points: Vec<(i64, f64)>,
}

/// A line chart with a labelled y axis (`y_unit`: what the values are), x ticks written by
/// `x_label`, optional vertical markers (`(x, label)`, e.g. each notify) and a legend.
/// Empty when no series has a point.
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
pub fn lines(
    id: &str,
    title: &str,
    y_unit: &str,
    series: &[Series],
    markers: &[(i64, String)],
    x_label: &dyn Fn(i64) -> String,
    y_label: &dyn Fn(f64) -> String,
) -> String {
    const W: f64 = 560.0;
    const H: f64 = 200.0;
    const L: f64 = 64.0;
    const R: f64 = 12.0;
    const T: f64 = 14.0;
    const B: f64 = 40.0;
    let xs: Vec<i64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(markers.iter().map(|m| m.0))
        .collect();
    let (Some(&x0), Some(&x1)) = (xs.iter().min(), xs.iter().max()) else {
        return String::new();
    };
    if series.iter().all(|s| s.points.is_empty()) {
        return String::new();
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let span = (x1 - x0).max(1) as f64;
    let px = |x: i64| L + (x - x0) as f64 / span * (W - L - R);
    let legend_h = 16.0 * series.len() as f64;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {}" role="img" aria-labelledby="{id}-title" class="chart" id="{id}"><title id="{id}-title">{}</title>"#,
        H + legend_h,
        esc(title)
    );
    let frame = Frame {
        left: L,
        right: W - R,
        top: T,
        bottom: H - B,
    };
    axes(
        &mut svg,
        frame,
        y_unit,
        [0.0, 0.5, 1.0].map(|frac| y_label(ymax * frac)),
    );
    let py = |y: f64| frame.y(y, ymax);
    for x in [x0, x0 + (x1 - x0) / 2, x1] {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            px(x).clamp(L + 20.0, W - R - 20.0),
            H - B + 14.0,
            esc(&x_label(x))
        );
    }
    for (x, label) in markers {
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{T}" x2="{:.1}" y2="{:.1}" stroke="#1f5fbf" stroke-dasharray="4 3"><title>{}</title></line><text x="{:.1}" y="{:.1}" font-size="10" fill="#1f5fbf">{}</text>"##,
            px(*x),
            px(*x),
            H - B,
            esc(label),
            px(*x) + 3.0,
            H - B + 28.0,
            esc(label)
        );
    }
    for s in series {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        let mut prev: Option<f64> = None;
        for (x, y) in &s.points {
            // A dot where the value changes (each with its value), not at every sample.
            if prev == Some(*y) {
                continue;
            }
            prev = Some(*y);
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{} at {}: {}</title></circle>"#,
                px(*x),
                py(*y),
                s.color,
                esc(&s.name),
                esc(&x_label(*x)),
                esc(&y_label(*y))
            );
        }
    }
    for (i, s) in series.iter().enumerate() {
        let y = H + 12.0 + 16.0 * i as f64 - 8.0;
        let _ = write!(
            svg,
            r#"<rect x="{L}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            y - 9.0,
            s.color,
            L + 14.0,
            y,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One series of [`grouped_bars`]: a name (legend), a colour and one value per group.
#[derive(Debug, Clone)]
pub struct BarSeries {
    /// Its name, in the legend and each bar's `<title>`.
    pub name: String,
    /// Its colour.
    pub color: &'static str,
    /// One value per group, in the groups' order.
    pub values: Vec<u64>,
}

/// A grouped bar chart: per group (an hour) one bar per series side by side, a y axis
/// (`y_unit`, zero, half and top written by `y_label`), the groups' labels under them (every
/// third past 12 groups), each bar's `<title>` saying `series at group: value`, and a
/// legend. Empty when there are no groups or series.
#[allow(clippy::cast_precision_loss)]
pub fn grouped_bars(
    id: &str,
    title: &str,
    y_unit: &str,
    groups: &[String],
    series: &[BarSeries],
    y_label: &dyn Fn(u64) -> String,
) -> String {
    const W: f64 = 560.0;
    const H: f64 = 170.0;
    const L: f64 = 64.0;
    const R: f64 = 8.0;
    const T: f64 = 22.0;
    if groups.is_empty() || series.is_empty() {
        return String::new();
    }
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (W - L - R) / groups.len().max(4) as f64;
    let bar = slot * 0.8 / series.len() as f64;
    let legend_h = 14.0 * series.len().div_ceil(2) as f64;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {:.1}" role="img" aria-labelledby="{id}-title" class="chart" id="{id}"><title id="{id}-title">{}</title>"#,
        H + 24.0 + legend_h,
        esc(title)
    );
    axes(
        &mut svg,
        Frame {
            left: L,
            right: W - R,
            top: T,
            bottom: H,
        },
        y_unit,
        [0, top / 2, top].map(y_label),
    );
    let every = label_every(groups.len());
    for (g, label) in groups.iter().enumerate() {
        let x0 = L + g as f64 * slot + slot * 0.1;
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(g).copied().unwrap_or(0);
            let h = v as f64 / top as f64 * (H - T);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} at {}: {}</title></rect>"#,
                x0 + k as f64 * bar,
                H - h,
                (bar - 1.0).max(1.0),
                s.color,
                esc(&s.name),
                esc(label),
                esc(&y_label(v))
            );
            // Few bars: each value written above its bar too.
            if groups.len() * series.len() <= 16 && v > 0 {
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                    x0 + k as f64 * bar + bar / 2.0,
                    H - h - 3.0,
                    esc(&y_label(v))
                );
            }
        }
        if g % every == 0 || g + 1 == groups.len() {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                x0 + slot * 0.4,
                H + 13.0,
                esc(label)
            );
        }
    }
    for (k, s) in series.iter().enumerate() {
        let lx = L + if k % 2 == 0 { 0.0 } else { 240.0 };
        let ly = H + 32.0 + 14.0 * (k / 2) as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{ly:.1}" font-size="11">{}</text>"#,
            ly - 9.0,
            s.color,
            lx + 14.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    // The one axis code: the unit, and zero, half and top written at their heights.
    #[test]
    fn axes_write_unit_and_values() {
        let f = Frame {
            left: 60.0,
            right: 500.0,
            top: 20.0,
            bottom: 120.0,
        };
        let mut svg = String::new();
        axes(
            &mut svg,
            f,
            "bytes",
            ["0".into(), "5 B".into(), "<10>".into()],
        );
        for needle in [
            ">bytes<",
            r#"y="123.0" font-size="10" text-anchor="end">0<"#,
            r#"y="73.0" font-size="10" text-anchor="end">5 B<"#,
            r#"y="23.0" font-size="10" text-anchor="end">&lt;10&gt;<"#,
        ] {
            assert!(svg.contains(needle), "{needle}: {svg}");
        }
        assert!((f.y(5.0, 10.0) - 70.0).abs() < 1e-9);
        assert_eq!([1, 6, 7, 12, 13, 24].map(label_every), [1, 1, 2, 2, 3, 3]);
    }

    // Bars carry their value as text and escape labels; no bars, no chart.
    #[test]
    fn bars_write_values() {
        assert_eq!(hbars("x", "t", &[]), "");
        let svg = hbars(
            "d",
            "Versions",
            &[Bar {
                label: "<b>".into(),
                value: 3,
                text: "3 clients".into(),
                good: true,
            }],
        );
        assert!(
            svg.contains("3 clients") && svg.contains("&lt;b&gt;"),
            "{svg}"
        );
        assert!(!svg.contains("<b>"));
    }

    // A line chart writes its axis values and marker labels.
    #[test]
    fn lines_have_axes_and_markers() {
        let s = Series {
            name: "current".into(),
            color: "#000",
            points: vec![(0, 0.0), (10, 4.0)],
        };
        let svg = lines(
            "c",
            "Clients current",
            "clients",
            &[s],
            &[(5, "notify 1".into())],
            &|x| format!("t{x}"),
            &|y| format!("{y:.0}"),
        );
        for needle in ["t0", "t10", ">4<", ">0<", "notify 1", "clients"] {
            assert!(svg.contains(needle), "{needle}: {svg}");
        }
        assert_eq!(
            lines("c", "t", "u", &[], &[], &|x| x.to_string(), &|y| y
                .to_string()),
            ""
        );
    }

    // Grouped bars: one bar per series and group, each titled with its value, zero included.
    #[test]
    fn grouped_bars_title_every_value() {
        let svg = grouped_bars(
            "g",
            "Load",
            "bytes",
            &["22:00".into(), "23:00".into()],
            &[
                BarSeries {
                    name: "a".into(),
                    color: "#000",
                    values: vec![5, 0],
                },
                BarSeries {
                    name: "b".into(),
                    color: "#111",
                    values: vec![2, 3],
                },
            ],
            &|v| format!("{v} B"),
        );
        for needle in [
            "a at 22:00: 5 B",
            "a at 23:00: 0 B",
            "b at 23:00: 3 B",
            ">bytes<",
        ] {
            assert!(svg.contains(needle), "{needle}: {svg}");
        }
        assert_eq!(
            grouped_bars("g", "t", "u", &[], &[], &|v| v.to_string()),
            ""
        );
    }
}
