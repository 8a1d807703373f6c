//! Tables in a PDF's text layer. The text layer has no tables, only characters at positions:
//! while pdf-extract lays a page out, [`ColumnGaps`] marks a gap between two words on one line
//! that is wider than any word space ([`COLUMN_GAP`] times the font size) with a tab. After
//! cleaning, [`tables_to_markdown`] turns runs of such lines (at least [`MIN_TABLE_ROWS`] rows
//! of two or more cells) into Markdown tables, so that the chunker keeps their rows together
//! (see `chunk`) and a row reads as a row; every other tab becomes a space again.

/// A gap between words on one line wider than this many times the font size separates
/// columns (a word space is about a quarter of it, justified text stretches it to about half).
pub const COLUMN_GAP: f64 = 1.5;

/// The fewest rows of two or more cells that make a table.
pub const MIN_TABLE_ROWS: usize = 3;

/// Follows the characters pdf-extract lays out, with the same geometry as its plain-text
/// output, and says where a column gap opens.
#[derive(Debug, Clone, Copy)]
pub(super) struct ColumnGaps {
    last_end: f64,
    last_y: f64,
    word_start: bool,
}

impl Default for ColumnGaps {
    fn default() -> Self {
        Self {
            last_end: f64::INFINITY,
            last_y: 0.0,
            word_start: false,
        }
    }
}

impl ColumnGaps {
    /// A word begins.
    pub(super) fn begin_word(&mut self) {
        self.word_start = true;
    }

    /// A new page begins: nothing before it is on the same line.
    pub(super) fn begin_page(&mut self) {
        *self = Self::default();
    }

    /// One character at `trm` (its text rendering matrix), `width` in text space, of
    /// `font_size`: true when it opens a column, i.e. it starts a word on the same line as
    /// the previous character, further right than [`COLUMN_GAP`] times the font size.
    pub(super) fn opens_column(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        font_size: f64,
    ) -> bool {
        let (x, y) = (trm.m31, trm.m32);
        let vx = font_size * (trm.m11 + trm.m21);
        let vy = font_size * (trm.m12 + trm.m22);
        let size = (vx * vy).abs().sqrt();
        let opens = self.word_start
            && size > 0.0
            && (y - self.last_y).abs() <= size * 0.5
            && x > self.last_end + size * COLUMN_GAP;
        self.word_start = false;
        self.last_y = y;
        self.last_end = x + width * size;
        opens
    }
}

/// The cells of one line: its tab-separated parts, trimmed, empty ones left out.
fn cells(line: &str) -> Vec<&str> {
    line.split('\t')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Turns each run of at least [`MIN_TABLE_ROWS`] consecutive lines of two or more cells (a
/// line of one cell inside a run, a wrapped cell, stays in it) into a Markdown table: the
/// first row its header, every row as wide as the widest. Tabs elsewhere become spaces.
pub fn tables_to_markdown(page: &str) -> String {
    if !page.contains('\t') {
        return page.to_string();
    }
    let lines: Vec<&str> = page.split('\n').collect();
    let widths: Vec<usize> = lines.iter().map(|l| cells(l).len()).collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if widths[i] < 2 {
            out.push(lines[i].replace('\t', " "));
            i += 1;
            continue;
        }
        // A run: rows of 2+ cells, single-cell lines between two such rows.
        let mut end = i + 1;
        let mut rows = 1;
        while end < lines.len() {
            if widths[end] >= 2 {
                rows += 1;
                end += 1;
            } else if widths[end] == 1 && end + 1 < lines.len() && widths[end + 1] >= 2 {
                end += 1;
            } else {
                break;
            }
        }
        if rows < MIN_TABLE_ROWS {
            out.extend(lines[i..end].iter().map(|l| l.replace('\t', " ")));
        } else {
            let columns = widths[i..end].iter().copied().max().unwrap_or(2);
            for (n, line) in lines[i..end].iter().enumerate() {
                let mut row: Vec<String> =
                    cells(line).iter().map(|c| c.replace('|', "\\|")).collect();
                row.resize(columns, String::new());
                out.push(format!("| {} |", row.join(" | ")));
                if n == 0 {
                    out.push(format!("|{}", " --- |".repeat(columns)));
                }
            }
        }
        i = end;
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_rows_become_a_markdown_table() {
        let page = "Prices\nItem\tPrice\tStock\nApple\t1.20\t50\nPear\t0.90\nfrom the orchard\nPlum | red\t2.00\t7\nAfter\tthe table";
        assert_eq!(
            tables_to_markdown(page),
            "Prices\n\
             | Item | Price | Stock |\n\
             | --- | --- | --- |\n\
             | Apple | 1.20 | 50 |\n\
             | Pear | 0.90 |  |\n\
             | from the orchard |  |  |\n\
             | Plum \\| red | 2.00 | 7 |\n\
             | After | the table |  |"
        );
    }

    #[test]
    fn short_runs_and_lone_gaps_stay_text() {
        let page = "1.2\tIntroduction\n\nSome text.\nA\tB\nC\tD\n\nE\tF";
        assert_eq!(
            tables_to_markdown(page),
            "1.2 Introduction\n\nSome text.\nA B\nC D\n\nE F"
        );
        assert_eq!(tables_to_markdown("no tabs"), "no tabs");
    }
}
