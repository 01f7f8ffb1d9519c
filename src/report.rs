//! Tables for people and scripts, whatever command made them: an aligned text table,
//! CSV, Markdown, or the command's whole report as JSON. Knows rows and columns,
//! nothing of costs, sweeps or protocols.

use serde::Serialize;

/// The output format every command's `--format` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns and a few lines of prose, for people.
    Table,
    /// The command's main table as CSV (RFC 4180, header first).
    Csv,
    /// The whole report as JSON, for scripts.
    Json,
    /// The command's main table as a GitHub-flavoured Markdown table.
    Markdown,
}

/// A table: a header and rows of cells; the first `left` columns are text (left
/// aligned), the rest numbers (right aligned).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub left: usize,
}

impl Table {
    pub fn new(header: &[&str], left: usize) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new(), left }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Lines of aligned text: the header, then one per row.
    pub fn lines(&self) -> Vec<String> {
        columns(&self.header, &self.rows, self.left)
    }

    /// The aligned lines joined, each ending in a newline.
    pub fn text(&self) -> String {
        self.lines().iter().map(|l| format!("{l}\n")).collect()
    }

    /// CSV through the csv crate (quoting as RFC 4180 asks).
    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail.
        w.write_record(&self.header).expect("in-memory write");
        for r in &self.rows {
            w.write_record(r).expect("in-memory write");
        }
        String::from_utf8(w.into_inner().expect("in-memory flush")).expect("CSV of UTF-8 fields is UTF-8")
    }

    /// The rows as JSON objects keyed by the header (for commands whose report is the
    /// table itself).
    pub fn records(&self) -> Vec<std::collections::BTreeMap<&str, &str>> {
        self.rows.iter().map(|r| self.header.iter().map(String::as_str).zip(r.iter().map(String::as_str)).collect()).collect()
    }

    /// A Markdown table; `|` inside a cell is escaped.
    pub fn markdown(&self) -> String {
        let cell = |c: &String| c.replace('|', "\\|");
        let line = |cells: &[String]| format!("| {} |\n", cells.iter().map(cell).collect::<Vec<_>>().join(" | "));
        let rule: Vec<String> = (0..self.header.len()).map(|i| if i < self.left { "---".into() } else { "---:".into() }).collect();
        let mut out = line(&self.header);
        out += &format!("|{}|\n", rule.join("|"));
        for r in &self.rows {
            out += &line(r);
        }
        out
    }
}

/// Renders a command's result: `text` for people, `table` as CSV or Markdown, the
/// whole `value` as pretty JSON (newline-terminated).
pub fn render<T: Serialize>(format: Format, value: &T, text: impl FnOnce() -> String, table: impl FnOnce() -> Table) -> String {
    match format {
        Format::Table => text(),
        Format::Csv => table().csv(),
        Format::Markdown => table().markdown(),
        Format::Json => json(value),
    }
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize>(value: &T) -> String {
    // Reports are plain data with string keys: serialization cannot fail.
    serde_json::to_string_pretty(value).expect("report serializes") + "\n"
}

/// Lines of an aligned table: the header, then one per row; the first `left` columns
/// are left-aligned, the rest right-aligned, two spaces apart.
pub fn columns(header: &[String], rows: &[Vec<String>], left: usize) -> Vec<String> {
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|cells| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i < left { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect();
            padded.join("  ").trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["layer", "bits"], 1);
        t.push(vec!["conv1".into(), "12".into()]);
        t.push(vec!["a,b|c".into(), "3".into()]);
        t
    }

    #[test]
    fn text_aligns_left_then_right() {
        assert_eq!(sample().text(), "layer  bits\nconv1    12\na,b|c     3\n");
    }

    #[test]
    fn csv_quotes_and_markdown_escapes() {
        assert_eq!(sample().csv(), "layer,bits\nconv1,12\n\"a,b|c\",3\n");
        assert_eq!(sample().markdown(), "| layer | bits |\n|---|---:|\n| conv1 | 12 |\n| a,b\\|c | 3 |\n");
    }
}
