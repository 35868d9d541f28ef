//! PNG charts of the project tasks, drawn with plotters: its bitmap backend needs no system
//! library, only a TrueType font for the labels, loaded once from the system's DejaVu.
//!
//! The switchover drill's timeline lives here: a table says how long the longest pause was, the
//! chart shows when it happened relative to the fence, the catch-up and the cut, and whether the
//! consumer re-read (its curve climbing above the acknowledged records) after the cut.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use plotters::prelude::*;
use switchyard_testkit::drill::DrillReport;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The drill's bucket: records per this many milliseconds.
const BUCKET_MS: u64 = 100;

/// Register the labels' font under `sans-serif` (once per process; later calls are no-ops).
pub fn use_font() -> Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let font = std::fs::read(FONT).map_err(|e| format!("a font for the chart's labels: {FONT}: {e}"))?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
            .map_err(|_| format!("{FONT} is not a usable font"))
    });
    loaded.clone().map_err(anyhow::Error::msg)
}

/// The drill's timeline: records per 100 ms acknowledged on the source and on the destination
/// and received by the consumer group (top), acknowledged and received so far (bottom), each
/// switchover phase shaded in both.
pub fn draw_drill(report: &DrillReport, png: &Path) -> Result<()> {
    use_font()?;
    let timeline = &report.timeline;
    let start = timeline
        .acks
        .iter()
        .map(|(t, _)| *t)
        .chain(timeline.consumed.iter().copied())
        .chain(timeline.phases.iter().map(|(_, from, _)| *from))
        .min()
        .context("the drill recorded nothing to draw")?;
    let end = timeline
        .acks
        .iter()
        .map(|(t, _)| *t)
        .chain(timeline.consumed.iter().copied())
        .chain(timeline.phases.iter().map(|(_, _, to)| *to))
        .max()
        .unwrap_or(start)
        .max(start + BUCKET_MS);
    let seconds = |t: u64| (t - start) as f64 / 1000.0;
    let buckets = ((end - start) / BUCKET_MS + 1) as usize;
    let per_bucket = |times: &mut dyn Iterator<Item = u64>| {
        let mut counts = vec![0u32; buckets];
        for t in times {
            counts[((t - start) / BUCKET_MS) as usize] += 1;
        }
        counts.into_iter().enumerate().map(|(i, n)| (i as f64 * BUCKET_MS as f64 / 1000.0, n)).collect::<Vec<_>>()
    };
    let on_source = per_bucket(&mut timeline.acks.iter().filter(|(_, dst)| !dst).map(|(t, _)| *t));
    let on_destination = per_bucket(&mut timeline.acks.iter().filter(|(_, dst)| *dst).map(|(t, _)| *t));
    let consumed = per_bucket(&mut timeline.consumed.iter().copied());
    let cumulative = |counts: &[(f64, u32)]| -> Vec<(f64, u64)> {
        counts
            .iter()
            .scan(0u64, |sum, (x, n)| {
                *sum += u64::from(*n);
                Some((*x, *sum))
            })
            .collect()
    };
    let acked_so_far = cumulative(&per_bucket(&mut timeline.acks.iter().map(|(t, _)| *t)));
    let consumed_so_far = cumulative(&consumed);

    let x_max = seconds(end) + 0.5;
    let rate_max = [&on_source, &on_destination, &consumed].iter().flat_map(|s| s.iter().map(|(_, n)| *n)).max();
    let rate_max = f64::from(rate_max.unwrap_or(1).max(1)) * 1.15;
    let total_max = consumed_so_far.last().map_or(1, |(_, n)| *n).max(acked_so_far.last().map_or(1, |(_, n)| *n));
    let total_max = (total_max as f64 * 1.1).max(1.0);

    let root = BitMapBackend::new(png, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root =
        root.titled(&format!("switchover drill: {} ({} records)", report.mode, report.records), ("sans-serif", 24))?;
    let (top, bottom) = root.split_vertically(470);
    let shades = [RGBColor(255, 200, 80), RGBColor(230, 90, 90), RGBColor(150, 110, 220), RGBColor(60, 170, 90)];

    let mut chart = ChartBuilder::on(&top)
        .caption("records per 100 ms", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..rate_max)?;
    chart.configure_mesh().x_desc("seconds").label_style(("sans-serif", 14)).draw()?;
    for ((name, from, to), color) in timeline.phases.iter().zip(shades.iter().cycle()) {
        let color = *color;
        let label = format!("{name} ({} ms)", to - from);
        // At least 20 ms wide, so a phase of no time still shows.
        let (from, to) = (seconds(*from), seconds(*to).max(seconds(*from) + 0.02));
        chart
            .draw_series([Rectangle::new([(from, 0.0), (to, rate_max)], color.mix(0.35).filled())])?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.mix(0.5).filled()));
    }
    for (name, series, color) in [
        ("acknowledged on the source", &on_source, BLUE),
        ("acknowledged on the destination", &on_destination, GREEN),
        ("received by the consumer group", &consumed, RGBColor(230, 120, 0)),
    ] {
        chart
            .draw_series(LineSeries::new(series.iter().map(|(x, n)| (*x, f64::from(*n))), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;

    let mut chart = ChartBuilder::on(&bottom)
        .caption("records so far: a consumer curve above the acknowledged one is re-reads", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..total_max)?;
    chart.configure_mesh().x_desc("seconds").label_style(("sans-serif", 14)).draw()?;
    for ((_, from, to), color) in timeline.phases.iter().zip(shades.iter().cycle()) {
        let (from, to) = (seconds(*from), seconds(*to).max(seconds(*from) + 0.02));
        chart.draw_series([Rectangle::new([(from, 0.0), (to, total_max)], color.mix(0.35).filled())])?;
    }
    for (name, series, color) in [
        ("acknowledged", &acked_so_far, BLUE),
        ("received by the consumer group", &consumed_so_far, RGBColor(230, 120, 0)),
    ] {
        chart
            .draw_series(LineSeries::new(series.iter().map(|(x, n)| (*x, *n as f64)), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
