//! Spreadsheets: Excel workbooks (.xlsx, .xlsm, legacy .xls) and OpenDocument spreadsheets
//! (.ods) read with `calamine`, and delimited text (.csv, .tsv) read with `csv`.
//!
//! A sheet is a page, in the workbook's order, headed by its name. Its rows become Markdown
//! tables of at most [`BLOCK_CHARS`] characters, each under a `## Rows a–b` heading and each
//! repeating the sheet's header row, so that a chunk holds whole rows with their header and a
//! citation names the sheet and the rows (its section: `Budget › Rows 2–40`). The header row
//! is the first row when all its cells are text; otherwise the columns are named by their
//! letters (A, B, ...). Dates are written as ISO 8601. Formulas are not evaluated: a cell shows
//! the value the workbook saved. Macros are never read.
//!
//! A sheet beyond [`MAX_ROWS`] rows or a workbook beyond [`MAX_CELLS`] cells fails the document
//! with a named reason; so do password-protected workbooks and damaged packages.

use std::io::Cursor;

use calamine::{Data, Ods, Reader, SheetType, SheetVisible, Xls, Xlsx};
use serde_json::Value;

use super::office::{self, OfficeFormat};
use super::text::{decode_text, markdown_headings};
use super::{ParseError, ParsedDocument};

/// The most rows one sheet may have.
pub const MAX_ROWS: usize = 200_000;
/// The most cells (rows × columns of the used area) all the sheets of a workbook may have.
pub const MAX_CELLS: usize = 4_000_000;
/// The most characters of one cell kept (the rest is cut, marked with `…`).
pub const MAX_CELL_CHARS: usize = 1_000;
/// The size a block of rows (a Markdown table with its header) aims at, in characters: below
/// the chunker's budget, so that a chunk holds whole rows and their header.
pub const BLOCK_CHARS: usize = 600;

/// The workbook formats read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkbookFormat {
    Xlsx,
    Xls,
    Ods,
}

impl WorkbookFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Xlsx => "Excel workbook",
            Self::Xls => "Excel 97-2003 workbook",
            Self::Ods => "OpenDocument spreadsheet",
        }
    }
}

/// Parses a workbook: one page per worksheet (chart sheets have no cells and are left out).
pub fn parse_workbook(bytes: &[u8], format: WorkbookFormat) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut metadata = match format {
        WorkbookFormat::Xlsx => office::workbook_properties(bytes, OfficeFormat::Xlsx)?,
        WorkbookFormat::Ods => office::workbook_properties(bytes, OfficeFormat::Ods)?,
        WorkbookFormat::Xls => super::ole::summary_information(bytes),
    };
    let sheets = match format {
        WorkbookFormat::Xlsx => read_sheets::<Xlsx<_>>(bytes, format)?,
        WorkbookFormat::Xls => read_sheets::<Xls<_>>(bytes, format)?,
        WorkbookFormat::Ods => read_sheets::<Ods<_>>(bytes, format)?,
    };
    let names: Vec<Value> = sheets
        .iter()
        .map(|s| Value::from(s.name.as_str()))
        .collect();
    metadata.insert("sheets".into(), Value::Array(names));
    // Hidden sheets are read like the others (their cells are in the file for anyone who
    // opens it) and named, so that a curator can see why a passage cites a sheet that the
    // spreadsheet program does not show.
    let hidden: Vec<Value> = sheets
        .iter()
        .filter(|s| s.hidden)
        .map(|s| Value::from(s.name.as_str()))
        .collect();
    if !hidden.is_empty() {
        metadata.insert("hidden_sheets".into(), Value::Array(hidden));
    }
    let title = metadata
        .remove("title")
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|t| !t.trim().is_empty());
    let pages = sheets
        .iter()
        .map(|s| sheet_markdown(&s.name, &s.rows))
        .collect();
    finish(pages, title, metadata)
}

/// Parses delimited text: one page (one sheet). The delimiter is the one of `,` `;` tab `|`
/// that splits the first lines most evenly.
pub fn parse_csv(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let text = decode_text(bytes)?;
    let delimiter = sniff_delimiter(&text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if i >= MAX_ROWS {
            return Err(too_big(format!("more than {MAX_ROWS} rows")));
        }
        let record = record.map_err(|e| ParseError::Malformed {
            kind: "CSV file".into(),
            reason: e.to_string(),
        })?;
        let cells: Vec<String> = record.iter().map(cell_text).collect();
        rows.push(Row {
            number: i + 1,
            cells,
        });
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "delimiter".into(),
        Value::from((delimiter as char).to_string()),
    );
    finish(vec![rows_markdown(&rows)], None, metadata)
}

fn finish(
    pages: Vec<String>,
    title: Option<String>,
    metadata: serde_json::Map<String, Value>,
) -> Result<ParsedDocument, ParseError> {
    let mut doc = ParsedDocument {
        title,
        pages,
        metadata,
        markdown: true,
        ..ParsedDocument::default()
    };
    if doc.is_blank() {
        return Err(ParseError::NoText);
    }
    doc.headings = markdown_headings(&doc.text());
    Ok(doc)
}

fn too_big(what: String) -> ParseError {
    ParseError::Malformed {
        kind: "spreadsheet".into(),
        reason: format!("{what}: too large to index"),
    }
}

/// One non-empty row: its number in the sheet (1-based) and its cells' text.
#[derive(Debug)]
struct Row {
    number: usize,
    cells: Vec<String>,
}

/// The worksheets of a workbook, each as its non-empty rows.
/// One worksheet's rows.
struct Sheet {
    name: String,
    /// Hidden in the spreadsheet program (hidden or "very hidden").
    hidden: bool,
    rows: Vec<Row>,
}

fn read_sheets<R>(bytes: &[u8], format: WorkbookFormat) -> Result<Vec<Sheet>, ParseError>
where
    R: Reader<Cursor<Vec<u8>>>,
    R::Error: std::fmt::Display,
{
    let malformed = |e: &dyn std::fmt::Display| {
        let message = e.to_string();
        if message.to_ascii_lowercase().contains("password") {
            ParseError::Protected(format.name().to_string())
        } else {
            ParseError::Malformed {
                kind: format.name().to_string(),
                reason: message,
            }
        }
    };
    let mut workbook = R::new(Cursor::new(bytes.to_vec())).map_err(|e| malformed(&e))?;
    let sheets: Vec<(String, bool)> = workbook
        .sheets_metadata()
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet)
        .map(|s| (s.name.clone(), s.visible != SheetVisible::Visible))
        .collect();
    let mut cells = 0usize;
    let mut out = Vec::new();
    for (name, hidden) in sheets {
        let range = workbook.worksheet_range(&name).map_err(|e| malformed(&e))?;
        let (height, width) = range.get_size();
        if height > MAX_ROWS {
            return Err(too_big(format!(
                "sheet {name:?} has {height} rows, at most {MAX_ROWS} are read"
            )));
        }
        cells = cells.saturating_add(height.saturating_mul(width));
        if cells > MAX_CELLS {
            return Err(too_big(format!(
                "the workbook has more than {MAX_CELLS} cells"
            )));
        }
        let first_row = range.start().map_or(0, |(row, _)| row as usize);
        let rows = range
            .rows()
            .enumerate()
            .map(|(i, cells)| Row {
                number: first_row + i + 1,
                cells: cells.iter().map(data_text).collect(),
            })
            .collect();
        out.push(Sheet { name, hidden, rows });
    }
    Ok(out)
}

/// A cell as text: numbers as written, dates as ISO 8601, errors as their code (`#DIV/0!`).
fn data_text(data: &Data) -> String {
    match data {
        Data::DateTime(d) => match d.as_datetime() {
            Some(t) if d.is_datetime() => {
                if t.time() == chrono::NaiveTime::MIN {
                    t.date().to_string()
                } else {
                    t.format("%Y-%m-%d %H:%M:%S").to_string()
                }
            }
            _ => d.to_string(),
        },
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => cell_text(&other.to_string()),
    }
}

/// Cell text on one line, pipes escaped, cut at [`MAX_CELL_CHARS`].
fn cell_text(raw: &str) -> String {
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut text: String = one_line.chars().take(MAX_CELL_CHARS).collect();
    if one_line.chars().count() > MAX_CELL_CHARS {
        text.push('…');
    }
    text.replace('|', "\\|")
}

/// A sheet as Markdown: `# name`, then its rows in blocks.
fn sheet_markdown(name: &str, rows: &[Row]) -> String {
    let body = rows_markdown(rows);
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.is_empty() {
        format!("# {name}")
    } else {
        format!("# {name}\n\n{body}")
    }
}

/// The non-empty rows as blocks of Markdown tables, each under `## Rows a–b` and each with the
/// header row.
fn rows_markdown(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.cells.iter().any(|c| !c.is_empty()))
        .collect();
    let Some(first) = rows.first() else {
        return String::new();
    };
    let width = rows
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .rposition(|c| !c.is_empty())
                .map_or(0, |i| i + 1)
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let is_header = rows.len() > 1
        && first.cells.len() >= width
        && first
            .cells
            .iter()
            .take(width)
            .all(|c| !c.is_empty() && c.parse::<f64>().is_err());
    let (header, body): (Vec<String>, &[&Row]) = if is_header {
        (first.cells[..width].to_vec(), &rows[1..])
    } else {
        ((0..width).map(column_name).collect(), &rows[..])
    };
    let line = |cells: &[String]| {
        let mut cells: Vec<&str> = cells.iter().take(width).map(String::as_str).collect();
        cells.resize(width, "");
        format!("| {} |", cells.join(" | "))
    };
    let head = format!("{}\n|{}", line(&header), " --- |".repeat(width));
    let mut blocks = Vec::new();
    let mut block: Vec<String> = Vec::new();
    let mut block_chars = head.len();
    let mut block_first = 0usize;
    let mut block_last = 0usize;
    let flush = |blocks: &mut Vec<String>, block: &mut Vec<String>, first: usize, last: usize| {
        if block.is_empty() {
            return;
        }
        let range = if first == last {
            format!("Row {first}")
        } else {
            format!("Rows {first}–{last}")
        };
        blocks.push(format!("## {range}\n\n{head}\n{}", block.join("\n")));
        block.clear();
    };
    for row in body {
        let text = line(&row.cells);
        if !block.is_empty() && block_chars + text.len() + 1 > BLOCK_CHARS {
            flush(&mut blocks, &mut block, block_first, block_last);
            block_chars = head.len();
        }
        if block.is_empty() {
            block_first = row.number;
        }
        block_last = row.number;
        block_chars += text.len() + 1;
        block.push(text);
    }
    flush(&mut blocks, &mut block, block_first, block_last);
    if blocks.is_empty() {
        // A sheet of one row: that row is its content.
        return format!("## Row {}\n\n{head}", first.number);
    }
    blocks.join("\n\n")
}

/// A spreadsheet column's letters: 0 → A, 25 → Z, 26 → AA.
fn column_name(mut index: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The delimiter that splits the first lines into the same, largest number of fields.
fn sniff_delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    let mut best = (b',', 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| l.bytes().filter(|b| *b == d).count())
            .collect();
        let Some(&first) = counts.first() else {
            continue;
        };
        let consistent = counts.iter().filter(|&&c| c == first).count();
        // Lines that agree, weighted by how many fields they make.
        let score = if first == 0 {
            0
        } else {
            consistent * 100 + first
        };
        if score > best.1 {
            best = (d, score);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_header_in_every_block() {
        let mut csv = String::from("Package;Version;Maintainer\n");
        for i in 0..60 {
            csv.push_str(&format!("pkg-{i};1.{i};Team {i} <t{i}@example.org>\n"));
        }
        let doc = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(doc.metadata["delimiter"], ";");
        let text = doc.text();
        let blocks: Vec<&str> = text.split("## ").filter(|b| !b.is_empty()).collect();
        assert!(blocks.len() > 2, "{text}");
        for b in &blocks {
            assert!(b.contains("| Package | Version | Maintainer |"), "{b}");
            assert!(b.len() <= BLOCK_CHARS + 40, "{}", b.len());
        }
        assert!(blocks[0].starts_with("Rows 2–"), "{}", blocks[0]);
        assert!(text.contains("| pkg-59 | 1.59 | Team 59 <t59@example.org> |"));
        // Headings: one per block, named by their rows.
        assert_eq!(doc.headings.len(), blocks.len());
        assert!(doc.headings.last().unwrap().title.ends_with("61"));
    }

    #[test]
    fn numeric_first_rows_get_column_letters() {
        let doc = parse_csv(b"1,2,x|y\n3,4\n").unwrap();
        assert_eq!(
            doc.pages[0],
            "## Rows 1–2\n\n| A | B | C |\n| --- | --- | --- |\n| 1 | 2 | x\\|y |\n| 3 | 4 |  |"
        );
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(27), "AB");
        assert_eq!(column_name(701), "ZZ");
        assert_eq!(column_name(702), "AAA");
    }

    #[test]
    fn bad_workbooks_fail_with_their_reason() {
        let e = parse_workbook(b"not a zip", WorkbookFormat::Xlsx).unwrap_err();
        assert!(e.to_string().contains("not a readable zip"), "{e}");
        let e = parse_workbook(b"not an OLE file", WorkbookFormat::Xls).unwrap_err();
        assert!(e.to_string().starts_with("malformed Excel 97-2003"), "{e}");
        assert_eq!(parse_csv(b"").unwrap_err(), ParseError::Empty);
    }
}
