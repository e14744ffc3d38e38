//! The SVG chart: server CPU time per request in every benchmark, grouped by benchmark,
//! relative to eventide (or, when eventide did not run, to the cheapest server).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Bench;

const EVENTIDE_COLOR: RGBColor = RGBColor(214, 82, 24);
const PEER_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

struct Group {
    name: String,
    /// (server, ratio to baseline, absolute CPU µs/req)
    bars: Vec<(String, f64, f64)>,
}

/// Writes the chart; returns an error string when there is nothing to draw or drawing failed.
pub fn write_svg(path: &Path, benches: &[Bench], title: &str) -> Result<(), String> {
    let mut baseline_is_eventide = true;
    let mut groups = Vec::new();
    for b in benches {
        let vals: Vec<(String, f64)> = b
            .servers
            .iter()
            .filter_map(|s| b.summary(s).cpu_us.map(|v| (s.clone(), v)))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        if vals.is_empty() {
            continue;
        }
        let base = match b
            .eventide
            .as_ref()
            .and_then(|e| vals.iter().find(|(s, _)| s == e))
        {
            Some((_, v)) => *v,
            None => {
                baseline_is_eventide = false;
                vals.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min)
            }
        };
        groups.push(Group {
            name: b.name.clone(),
            bars: vals.into_iter().map(|(s, v)| (s, v / base, v)).collect(),
        });
    }
    if groups.is_empty() {
        return Err("no CPU-per-request figures to chart".into());
    }

    // Stable colours: eventide first, then peers in order of appearance.
    let mut names: Vec<String> = Vec::new();
    for b in benches {
        if let Some(e) = &b.eventide {
            if !names.contains(e) {
                names.insert(0, e.clone());
            }
        }
    }
    for g in &groups {
        for (s, _, _) in &g.bars {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    let is_eventide = |s: &str| benches.iter().any(|b| b.eventide.as_deref() == Some(s));
    let mut peer_i = 0;
    let colors: Vec<(String, RGBColor)> = names
        .iter()
        .map(|s| {
            if is_eventide(s) {
                (s.clone(), EVENTIDE_COLOR)
            } else {
                peer_i += 1;
                (s.clone(), PEER_COLORS[(peer_i - 1) % PEER_COLORS.len()])
            }
        })
        .collect();

    let n = groups.len();
    let top = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.1))
        .fold(1.0f64, f64::max);
    let ycap = (top * 1.18).clamp(1.3, 3.5);
    let err = |e: &dyn std::fmt::Display| e.to_string();

    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(18)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ycap)
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
    let y_desc = if baseline_is_eventide {
        "server CPU per request, eventide = 1 (lower is better)"
    } else {
        "server CPU per request, cheapest = 1 (lower is better)"
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;

    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        )))
        .map_err(|e| err(&e))?;

    for (server, color) in &colors {
        let mut rects = Vec::new();
        let mut texts = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            let k = g.bars.len() as f64;
            let w = 0.8 / k;
            if let Some(j) = g.bars.iter().position(|(s, _, _)| s == server) {
                let (_, ratio, abs) = &g.bars[j];
                let x0 = gi as f64 - 0.4 + j as f64 * w;
                let h = ratio.min(ycap * 0.97);
                rects.push(Rectangle::new(
                    [(x0 + w * 0.06, 0.0), (x0 + w * 0.94, h)],
                    color.filled(),
                ));
                let label = TextStyle::from(("sans-serif", 11).into_font())
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                texts.push(Text::new(
                    format!("{ratio:.2}× · {}", crate::report::fmt_num(*abs)),
                    (x0 + w / 2.0, h + ycap * 0.008),
                    label,
                ));
            }
        }
        let c = *color;
        chart
            .draw_series(rects)
            .map_err(|e| err(&e))?
            .label(server.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
        chart.draw_series(texts).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
