//! Figures as PNG and SVG (plotters): a `Figure` says what to draw (axes, series,
//! labels) and `render` draws it on either backend, so both files show the same.
//!
//! Text needs a TrueType font, read from the system at run time (`EXPLORE_FONT`, or a
//! DejaVu/Liberation/Arial file where distributions put them); without one the
//! figures are skipped with a note saying how to give one.

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 750);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// Small grey dots: points of a grid.
    Dot,
    /// Filled circles with their name beside them.
    Labelled,
    /// Hollow circles joined by a line: a Pareto front.
    Front,
    /// Triangles: published figures.
    Published,
    /// Points joined by a line, in order.
    Line,
    /// Crosses: figures quoted from other work.
    Quoted,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub mark: Mark,
    /// (x, y, name) in drawing order (for a front, cheapest first).
    pub points: Vec<(f64, f64, String)>,
    /// A vertical error bar's half-height per point (y - e to y + e), such as a
    /// standard deviation over seeds; empty for none, 0 or NaN for a point without.
    pub errors: Vec<f64>,
}

impl Series {
    pub fn new(label: impl Into<String>, mark: Mark, points: Vec<(f64, f64, String)>) -> Series {
        Series { label: label.into(), mark, points, errors: Vec::new() }
    }

    /// The same series with error bars (`errors[i]` for `points[i]`).
    pub fn with_errors(self, errors: Vec<f64>) -> Series {
        Series { errors, ..self }
    }

    /// Each point's y extent: the point, or its error bar's ends.
    fn y_extent(&self) -> impl Iterator<Item = f64> + '_ {
        self.points.iter().enumerate().flat_map(|(i, p)| {
            let e = self.errors.get(i).copied().filter(|e| e.is_finite()).unwrap_or(0.0);
            [p.1 - e, p.1 + e]
        })
    }
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub y_log: bool,
    pub series: Vec<Series>,
}

fn font_bytes() -> Result<&'static [u8], String> {
    static FONT_DATA: OnceLock<Result<&'static [u8], String>> = OnceLock::new();
    FONT_DATA
        .get_or_init(|| {
            let mut candidates: Vec<PathBuf> = std::env::var_os("EXPLORE_FONT").map(PathBuf::from).into_iter().collect();
            candidates.extend(
                [
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
                    "/System/Library/Fonts/Supplemental/Arial.ttf",
                    "/Library/Fonts/Arial.ttf",
                    "C:\\Windows\\Fonts\\arial.ttf",
                ]
                .map(PathBuf::from),
            );
            for path in candidates {
                if let Ok(bytes) = std::fs::read(&path) {
                    // Registered once for the life of the process, as plotters requires.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                        return Ok(bytes);
                    }
                }
            }
            Err("no TrueType font found for the plots (install fonts-dejavu-core, or set EXPLORE_FONT=/path/to/font.ttf); CSV written, plots skipped".into())
        })
        .clone()
}

/// Writes `stem.png` and `stem.svg`; returns their paths.
pub fn write(fig: &Figure, stem: &Path) -> Result<Vec<PathBuf>, String> {
    font_bytes()?;
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    render(BitMapBackend::new(&png, SIZE).into_drawing_area(), fig).map_err(|e| format!("{}: {e}", png.display()))?;
    render(SVGBackend::new(&svg, SIZE).into_drawing_area(), fig).map_err(|e| format!("{}: {e}", svg.display()))?;
    Ok(vec![png, svg])
}

/// Axis range with a margin: multiplicative on a log axis, additive otherwise.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) =
        values.filter(|v| v.is_finite() && (!log || *v > 0.0)).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        (lo, hi) = (1.0, 10.0);
    }
    if log {
        (lo / 1.6, hi * 1.6)
    } else {
        let pad = if hi > lo { (hi - lo) * 0.08 } else { (hi.abs() * 0.1).max(0.5) };
        (lo - pad, hi + pad)
    }
}

/// Compact tick labels: 1k, 2.5M, 120, 0.05.
fn tick(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    // Two decimals at most, trailing zeros dropped: 84.5, 2.5M, 0.05, 86.
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    let s = if s == "-0" { "0" } else { s };
    format!("{s}{unit}")
}

/// A log axis's grid from `lo` to `hi`: bold, labelled lines at 1, 2 and 5 times each
/// power of ten (at the powers alone over more than five decades), light ones at the
/// other whole multiples. (plotters' own key points start at the first power of ten
/// in the range, so an axis from 2k to 35k had lines at 10k, 20k and 30k only, and
/// labelled all nine per decade on a wider one, where they ran together: "90k100k".)
fn log_key_points(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let wide = (hi / lo).log10() > 5.0;
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    let mut power = 10f64.powf(lo.log10().floor());
    while power <= hi {
        for m in 1..=9 {
            let v = power * m as f64;
            if v < lo || v > hi {
                continue;
            }
            if m == 1 || (!wide && (m == 2 || m == 5)) { bold.push(v) } else { light.push(v) }
        }
        power *= 10.0;
    }
    (bold, light)
}

fn style(mark: Mark) -> (RGBColor, u32) {
    match mark {
        Mark::Dot => (RGBColor(150, 150, 150), 4),
        Mark::Labelled => (RGBColor(31, 90, 180), 6),
        Mark::Front => (RGBColor(200, 40, 40), 8),
        Mark::Published => (RGBColor(230, 140, 0), 8),
        Mark::Line => (RGBColor(31, 90, 180), 4),
        Mark::Quoted => (RGBColor(20, 130, 60), 7),
    }
}

type DrawResult<E> = Result<(), DrawingAreaErrorKind<E>>;

pub fn render<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult<DB::ErrorType> {
    root.fill(&WHITE)?;
    let all = || fig.series.iter().flat_map(|s| s.points.iter());
    // A log axis over less than a decade would show no tick labels: draw it linear.
    let wide = |v: Vec<f64>| {
        let (lo, hi) = v.iter().filter(|x| x.is_finite() && **x > 0.0).fold((f64::INFINITY, 0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        hi / lo >= 10.0
    };
    let fig = &Figure {
        x_log: fig.x_log && wide(all().map(|p| p.0).collect()),
        y_log: fig.y_log && wide(all().map(|p| p.1).collect()),
        ..fig.clone()
    };
    let all = || fig.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(all().map(|p| p.0), fig.x_log);
    let (y0, y1) = range(fig.series.iter().flat_map(|s| s.y_extent()), fig.y_log);
    let mut builder = ChartBuilder::on(&root);
    builder.caption(&fig.title, (FONT, 26)).margin(20).margin_right(40).x_label_area_size(65).y_label_area_size(90);
    let log_axis = |lo: f64, hi: f64| {
        let (bold, light) = log_key_points(lo, hi);
        (lo..hi).log_scale().with_key_points(bold).with_light_points(light)
    };
    match (fig.x_log, fig.y_log) {
        (true, true) => {
            let mut c = builder.build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))?;
            draw_chart(&mut c, fig, [(x0, x1), (y0, y1)])?;
        }
        (true, false) => {
            let mut c = builder.build_cartesian_2d(log_axis(x0, x1), y0..y1)?;
            draw_chart(&mut c, fig, [(x0, x1), (y0, y1)])?;
        }
        (false, true) => {
            let mut c = builder.build_cartesian_2d(x0..x1, log_axis(y0, y1))?;
            draw_chart(&mut c, fig, [(x0, x1), (y0, y1)])?;
        }
        (false, false) => {
            let mut c = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            draw_chart(&mut c, fig, [(x0, x1), (y0, y1)])?;
        }
    }
    root.present()
}

fn draw_chart<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    fig: &Figure,
    ranges: [(f64, f64); 2],
) -> DrawResult<DB::ErrorType>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(&fig.x_label)
        .y_desc(&fig.y_label)
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 16))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .y_labels(15)
        // Four light lines between labels on a linear axis (plotters' ten made a dense
        // grey field); a log axis has its own (`log_key_points`).
        .max_light_lines(4)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    for s in &fig.series {
        let (color, size) = style(s.mark);
        let pts = s.points.iter().map(|p| (p.0, p.1));
        // Error bars first, under the marks: a line from y - e to y + e with caps.
        let bars = || s.points.iter().zip(&s.errors).filter(|(_, e)| e.is_finite() && **e > 0.0);
        chart.draw_series(bars().map(|(p, &e)| PathElement::new(vec![(p.0, p.1 - e), (p.0, p.1 + e)], color.stroke_width(1))))?;
        chart.draw_series(bars().flat_map(|(p, &e)| {
            [p.1 - e, p.1 + e].map(|y| EmptyElement::at((p.0, y)) + PathElement::new(vec![(-5, 0), (5, 0)], color.stroke_width(1)))
        }))?;
        match s.mark {
            Mark::Dot => {
                chart
                    .draw_series(pts.map(|p| Circle::new(p, size, color.filled())))?
                    .label(&s.label)
                    .legend(move |(x, y)| Circle::new((x, y), size, color.filled()));
            }
            Mark::Front => {
                // A staircase: a front point holds its accuracy until the next one.
                let mut stairs = Vec::new();
                for (i, p) in s.points.iter().enumerate() {
                    if i > 0 {
                        stairs.push((p.0, s.points[i - 1].1));
                    }
                    stairs.push((p.0, p.1));
                }
                chart.draw_series(LineSeries::new(stairs, color.stroke_width(2)))?;
                chart
                    .draw_series(pts.map(|p| Circle::new(p, size, color.stroke_width(2))))?
                    .label(&s.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], color.stroke_width(2)));
            }
            Mark::Line => {
                chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
                chart
                    .draw_series(pts.map(|p| Circle::new(p, size, color.filled())))?
                    .label(&s.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], color.stroke_width(2)));
            }
            Mark::Published => {
                chart
                    .draw_series(pts.map(|p| TriangleMarker::new(p, size, color.filled())))?
                    .label(&s.label)
                    .legend(move |(x, y)| TriangleMarker::new((x, y), size, color.filled()));
            }
            Mark::Quoted => {
                chart
                    .draw_series(pts.map(|p| Cross::new(p, size, color.stroke_width(2))))?
                    .label(&s.label)
                    .legend(move |(x, y)| Cross::new((x, y), size, color.stroke_width(2)));
            }
            Mark::Labelled => {
                let others = fig.series.iter().flat_map(|o| o.points.iter().map(|p| (p.0, p.1)));
                let labels = place_labels(&s.points, others, ranges, [fig.x_log, fig.y_log]);
                let drawn = chart.draw_series(labels.into_iter().map(|(x, y, text, dx, dy)| {
                    // A label moved off its line gets a leader from its point, so that
                    // it is not read as a neighbour's.
                    let end = if dx > 0 { 8 } else { -8 };
                    let leader = if dy == 0 || text.is_empty() { vec![] } else { vec![(0, 0), (end, dy - 9)] };
                    EmptyElement::at((x, y))
                        + PathElement::new(leader, RGBColor(120, 120, 120))
                        + Circle::new((0, 0), size, color.filled())
                        + Text::new(text, (dx, -16 + dy), (FONT, 14).into_font().color(&BLACK))
                }))?;
                // An unnamed series of labels gets no legend entry.
                if !s.label.is_empty() {
                    drawn.label(&s.label).legend(move |(x, y)| Circle::new((x, y), size, color.filled()));
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .position(legend_corner(fig, ranges))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 16))
        .draw()
}

/// Where a value sits in the plot area, in pixels from its top left (approximately:
/// the area's size is the figure's less the margins and axis labels).
fn pixel(x: f64, y: f64, ranges: [(f64, f64); 2], log: [bool; 2]) -> (f64, f64) {
    let unit = |v: f64, axis: usize| {
        let (lo, hi) = ranges[axis];
        if log[axis] { (v.max(1e-300).ln() - lo.ln()) / (hi.ln() - lo.ln()) } else { (v - lo) / (hi - lo) }
    };
    let (w, h) = ((SIZE.0 - 170) as f64, (SIZE.1 - 170) as f64);
    (unit(x, 0) * w, (1.0 - unit(y, 1)) * h)
}

/// The corner for the legend that covers the fewest points and labels (upper left
/// when several are clear): the legend of a sparse figure had sat on its only
/// Pareto point.
fn legend_corner(fig: &Figure, ranges: [(f64, f64); 2]) -> SeriesLabelPosition {
    let log = [fig.x_log, fig.y_log];
    let entries: Vec<&Series> = fig.series.iter().filter(|s| !s.label.is_empty()).collect();
    let (bw, bh) =
        (60.0 + 9.0 * entries.iter().map(|s| s.label.chars().count()).max().unwrap_or(0) as f64, 10.0 + 22.0 * entries.len() as f64);
    let (w, h) = ((SIZE.0 - 170) as f64, (SIZE.1 - 170) as f64);
    // Each point and, for labelled series, its label's box: (left, top, right, bottom).
    let marks: Vec<(f64, f64, f64, f64)> = fig
        .series
        .iter()
        .flat_map(|s| {
            s.points.iter().map(move |p| {
                let (x, y) = pixel(p.0, p.1, ranges, log);
                let text = if s.mark == Mark::Labelled { 9.0 + 7.5 * p.2.chars().count() as f64 } else { 6.0 };
                (x - 6.0, y - 18.0, x + text, y + 6.0)
            })
        })
        .collect();
    let corners = [
        (SeriesLabelPosition::UpperLeft, (0.0, 0.0)),
        (SeriesLabelPosition::UpperRight, (w - bw, 0.0)),
        (SeriesLabelPosition::LowerRight, (w - bw, h - bh)),
        (SeriesLabelPosition::LowerLeft, (0.0, h - bh)),
    ];
    let covered = |(x0, y0): (f64, f64)| marks.iter().filter(|m| m.0 < x0 + bw && m.2 > x0 && m.1 < y0 + bh && m.3 > y0).count();
    // `min_by_key` keeps the first of equals: upper left unless another covers less.
    corners.into_iter().min_by_key(|(_, at)| covered(*at)).map_or(SeriesLabelPosition::UpperLeft, |(c, _)| c)
}

/// Names of points at the same place joined into one label, and labels that would
/// sit on an earlier label or on any of the figure's `dots` moved up or down a line
/// or more, or to the point's left: (x, y, text, pixel offsets of the text's left
/// edge and of its line).
fn place_labels(
    points: &[(f64, f64, String)],
    dots: impl Iterator<Item = (f64, f64)>,
    ranges: [(f64, f64); 2],
    log: [bool; 2],
) -> Vec<(f64, f64, String, i32, i32)> {
    let mut joined: Vec<(f64, f64, String)> = Vec::new();
    for (x, y, name) in points {
        match joined.iter_mut().find(|p| p.0 == *x && p.1 == *y) {
            Some(p) => {
                p.2.push_str(", ");
                p.2.push_str(name);
            }
            None => joined.push((*x, *y, name.clone())),
        }
    }
    let at = |x: f64, y: f64| pixel(x, y, ranges, log);
    let dots: Vec<(f64, f64)> = dots.map(|(x, y)| at(x, y)).collect();
    // Label boxes (x, y, width) placed so far.
    let mut boxes: Vec<(f64, f64, f64)> = Vec::new();
    joined
        .into_iter()
        .map(|(x, y, text)| {
            let (ax, py) = (at(x, y).0, at(x, y).1 - 16.0);
            let width = 7.5 * text.chars().count() as f64;
            // The text's left edge: right of the point, or left of it.
            let (right, left) = (ax + 9.0, ax - 9.0 - width);
            let clear = |px: f64, dy: f64| {
                let top = py + dy;
                boxes.iter().all(|b| (top - b.1).abs() >= 15.0 || px + width <= b.0 || b.0 + b.2 <= px)
                    && dots.iter().all(|d| d.0 + 6.0 < px || d.0 - 6.0 > px + width || d.1 + 6.0 < top || d.1 - 6.0 > top + 14.0)
            };
            // Right of the point, up to three lines away, then left of it likewise, with
            // a leader when off the point's line (see `draw_chart`): further, a label
            // would be read as another point's. Where no place is clear the label is left
            // out (the point stays, and results.csv names it) rather than printed over
            // another label or point.
            let offsets = [0.0, -14.0, 14.0, -28.0, 28.0, -42.0, 42.0];
            let places = offsets.iter().map(|&d| (right, d)).chain(offsets.iter().map(|&d| (left, d)));
            match places.into_iter().find(|&(px, d)| clear(px, d)) {
                Some((px, dy)) => {
                    boxes.push((px, py + dy, width));
                    (x, y, text, (px - ax) as i32, dy as i32)
                }
                None => (x, y, String::new(), 9, 0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(1000.0), "1k");
        assert_eq!(tick(2_500_000.0), "2.5M");
        assert_eq!(tick(86.0), "86");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(84.5), "84.5");
        assert_eq!(tick(-0.001), "0");
    }

    #[test]
    fn log_axes_name_one_two_and_five_times_a_power_of_ten() {
        let ticks = |v: Vec<f64>| v.into_iter().map(tick).collect::<Vec<_>>();
        let (bold, light) = log_key_points(2.2e3, 35e3);
        assert_eq!(ticks(bold), ["5k", "10k", "20k"]);
        assert_eq!(ticks(light), ["3k", "4k", "6k", "7k", "8k", "9k", "30k"]);
        // Over more than five decades, the powers of ten alone.
        let (bold, light) = log_key_points(0.5, 2e6);
        assert_eq!(ticks(bold), ["1", "10", "100", "1k", "10k", "100k", "1M"]);
        assert_eq!(light.len(), 5 + 6 * 8 + 1, "0.5 to 0.9, 2 to 9 times 1 to 100k, and 2M");
    }

    #[test]
    fn labels_move_off_points_and_other_labels() {
        let (w, h) = ((SIZE.0 - 170) as f64, (SIZE.1 - 170) as f64);
        let ranges = [(0.0, 10.0), (0.0, 10.0)];
        // A dot 15 pixels right of and 9 above point a: where a's label would start.
        let dot = (5.0 + 15.0 * 10.0 / w, 5.0 + 9.0 * 10.0 / h);
        let points = vec![(5.0, 5.0, "a".to_string()), (5.0, 5.0, "b".to_string()), (8.0, 2.0, "c".to_string())];
        let placed = place_labels(&points, [dot, (5.0, 5.0), (8.0, 2.0)].into_iter(), ranges, [false, false]);
        assert_eq!(placed.len(), 2, "a and b sit at one place and share a label");
        assert_eq!(placed[0].2, "a, b");
        assert_ne!(placed[0].4, 0, "the dot is in the way of the first line");
        assert_eq!((placed[1].2.as_str(), placed[1].3, placed[1].4), ("c", 9, 0), "nothing in c's way");
    }

    #[test]
    fn log_ranges_leave_a_margin_and_skip_zero() {
        let (lo, hi) = range([0.0, 10.0, 1000.0].into_iter(), true);
        assert!(lo > 0.0 && lo < 10.0 && hi > 1000.0);
    }

    #[test]
    fn a_figure_renders_to_png_and_svg() {
        if font_bytes().is_err() {
            // The skip itself is what the CLI reports; nothing more to check here.
            return;
        }
        let dir = std::env::temp_dir().join(format!("explore-plot-{}", std::process::id()));
        let fig = Figure {
            title: "t".into(),
            x_label: "x (bytes)".into(),
            y_label: "y (%)".into(),
            x_log: true,
            y_log: false,
            series: vec![
                Series::new("a", Mark::Dot, vec![(10.0, 80.0, "p".into()), (100.0, 82.0, "q".into())]),
                Series::new("f", Mark::Front, vec![(10.0, 80.0, "p".into()), (100.0, 82.0, "q".into())]),
                Series::new("n", Mark::Labelled, vec![(50.0, 81.0, "named".into())]).with_errors(vec![3.0]),
                Series::new("paper", Mark::Published, vec![(60.0, 83.0, "named".into())]),
            ],
        };
        // The error bar reaches 78 and 84: the y axis holds it.
        let (lo, hi) = range(fig.series.iter().flat_map(|s| s.y_extent()), false);
        assert!(lo <= 78.0 && hi >= 84.0, "{lo} {hi}");
        let files = write(&fig, &dir.join("fig")).unwrap();
        let png = image::open(&files[0]).unwrap();
        assert_eq!((png.width(), png.height()), SIZE);
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("<svg") && svg.contains("x (bytes)") && svg.contains("named"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
