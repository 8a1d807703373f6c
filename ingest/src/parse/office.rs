//! Office documents, read from their zip packages: Word (.docx) and OpenDocument text (.odt)
//! become Markdown with their headings, lists and tables (a Word document has no pages: its
//! headings are its sections); PowerPoint (.pptx) and OpenDocument presentations (.odp) become
//! one page per slide, in the presentation's order, the slide's title as its heading. Title,
//! author and dates come from the package's properties.
//!
//! Nothing in a package is executed (macros are never read). Every part is read through a
//! limit, so a zip bomb fails the document with a named reason; so do password-protected
//! files.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use super::text::markdown_headings;
use super::{ParseError, ParsedDocument};

/// The most entries a package may have.
pub const MAX_ENTRIES: usize = 10_000;
/// The most bytes one part may expand to.
pub const MAX_PART_BYTES: u64 = 64 << 20;
/// The most bytes all the parts read from one package may expand to.
pub const MAX_PACKAGE_BYTES: u64 = 256 << 20;
/// The most slides read from one presentation.
pub const MAX_SLIDES: usize = 5_000;

/// The office formats read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficeFormat {
    Docx,
    Odt,
    Pptx,
    Odp,
    /// Excel workbooks (.xlsx, .xlsm): the cells are read by [`super::sheet`].
    Xlsx,
    /// OpenDocument spreadsheets (.ods): the cells are read by [`super::sheet`].
    Ods,
}

impl OfficeFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Docx => "Word document",
            Self::Odt => "OpenDocument text",
            Self::Pptx => "PowerPoint presentation",
            Self::Odp => "OpenDocument presentation",
            Self::Xlsx => "Excel workbook",
            Self::Ods => "OpenDocument spreadsheet",
        }
    }
}

/// Checks a workbook's package before its cells are read: a readable zip within the entry
/// limit, every part within the size limits once expanded (a zip bomb fails here, named), no
/// encrypted parts. Returns its properties (title, author, created, modified).
pub fn workbook_properties(
    bytes: &[u8],
    format: OfficeFormat,
) -> Result<Map<String, Value>, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut package = Package::open(bytes, format)?;
    let names: Vec<String> = package.zip.file_names().map(str::to_string).collect();
    for name in names {
        package.part(&name)?;
    }
    package.read = 0;
    if format == OfficeFormat::Ods {
        package.refuse_odf_encryption()?;
        package.odf_properties()
    } else {
        package.ooxml_properties()
    }
}

/// Parses an office document of `format`.
pub fn parse(bytes: &[u8], format: OfficeFormat) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut package = Package::open(bytes, format)?;
    let (pages, metadata) = match format {
        OfficeFormat::Docx => {
            let body = package.required("word/document.xml")?;
            let pages = vec![docx_markdown(&body).map_err(|e| package.malformed(e))?];
            (pages, package.ooxml_properties()?)
        }
        OfficeFormat::Pptx => {
            let mut pages = Vec::new();
            for slide in package.pptx_slides()? {
                let xml = package.required(&slide)?;
                pages.push(pptx_slide_markdown(&xml).map_err(|e| package.malformed(e))?);
            }
            (pages, package.ooxml_properties()?)
        }
        OfficeFormat::Xlsx | OfficeFormat::Ods => {
            return Err(package.malformed("a workbook is read by the spreadsheet parser"));
        }
        OfficeFormat::Odt | OfficeFormat::Odp => {
            package.refuse_odf_encryption()?;
            let content = package.required("content.xml")?;
            let pages = odf_markdown(&content, format == OfficeFormat::Odp)
                .map_err(|e| package.malformed(e))?;
            (pages, package.odf_properties()?)
        }
    };
    let mut doc = ParsedDocument {
        pages,
        markdown: true,
        ..ParsedDocument::default()
    };
    if doc.is_blank() {
        return Err(ParseError::NoText);
    }
    doc.headings = markdown_headings(&doc.text());
    let mut metadata = metadata;
    doc.title = metadata
        .remove("title")
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            doc.headings
                .iter()
                .find(|h| h.level == 1 && !h.title.is_empty())
                .map(|h| h.title.clone())
        });
    doc.metadata = metadata;
    Ok(doc)
}

// ---------------------------------------------------------------- the package

struct Package<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    format: OfficeFormat,
    read: u64,
}

impl<'a> Package<'a> {
    fn open(bytes: &'a [u8], format: OfficeFormat) -> Result<Self, ParseError> {
        // Password-protected OOXML files are OLE compound files holding an encrypted package.
        if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
            let utf16: Vec<u8> = "EncryptionInfo"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            if bytes.windows(utf16.len()).any(|w| w == utf16.as_slice()) {
                return Err(ParseError::Protected(format.name().to_string()));
            }
            return Err(ParseError::Malformed {
                kind: format.name().to_string(),
                reason: "this is a legacy binary Office file (.doc, .ppt, .xls), not a zip \
                         package: save it in the current format"
                    .into(),
            });
        }
        let zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| ParseError::Malformed {
            kind: format.name().to_string(),
            reason: format!("not a readable zip package: {e}"),
        })?;
        if zip.len() > MAX_ENTRIES {
            return Err(ParseError::Malformed {
                kind: format.name().to_string(),
                reason: format!(
                    "the package has {} entries, at most {MAX_ENTRIES} are read",
                    zip.len()
                ),
            });
        }
        Ok(Self {
            zip,
            format,
            read: 0,
        })
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> ParseError {
        ParseError::Malformed {
            kind: self.format.name().to_string(),
            reason: reason.to_string(),
        }
    }

    /// One part's bytes (`None` when the package has no such part), through the size limits.
    fn part(&mut self, name: &str) -> Result<Option<Vec<u8>>, ParseError> {
        let format = self.format;
        let mut file = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(zip::result::ZipError::UnsupportedArchive(m)) if m.contains("ncrypt") => {
                return Err(ParseError::Protected(format.name().to_string()));
            }
            Err(e) => {
                return Err(ParseError::Malformed {
                    kind: format.name().to_string(),
                    reason: format!("part {name}: {e}"),
                });
            }
        };
        if file.encrypted() {
            return Err(ParseError::Protected(format.name().to_string()));
        }
        let limit = MAX_PART_BYTES.min(MAX_PACKAGE_BYTES.saturating_sub(self.read));
        let mut out = Vec::new();
        (&mut file)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| ParseError::Malformed {
                kind: format.name().to_string(),
                reason: format!("part {name}: {e}"),
            })?;
        if out.len() as u64 > limit {
            return Err(ParseError::Malformed {
                kind: format.name().to_string(),
                reason: format!(
                    "part {name} expands to more than {} MiB (a zip bomb?): not read",
                    limit >> 20
                ),
            });
        }
        self.read += out.len() as u64;
        Ok(Some(out))
    }

    fn required(&mut self, name: &str) -> Result<Vec<u8>, ParseError> {
        self.part(name)?
            .ok_or_else(|| self.malformed(format!("the package has no {name}")))
    }

    /// The slide parts of a presentation, in the order the presentation shows them.
    fn pptx_slides(&mut self) -> Result<Vec<String>, ParseError> {
        let presentation = self.required("ppt/presentation.xml")?;
        let rels = self.required("ppt/_rels/presentation.xml.rels")?;
        let mut ids = Vec::new();
        walk(&presentation, |node| {
            if let Node::Open(b"sldId", e) = node
                && let Some(id) = prefixed_attr(e, b"id")
            {
                ids.push(id);
            }
        })
        .map_err(|e| self.malformed(e))?;
        let mut targets = Vec::new();
        walk(&rels, |node| {
            if let Node::Open(b"Relationship", e) = node
                && let (Some(id), Some(target)) = (attr(e, b"Id"), attr(e, b"Target"))
            {
                targets.push((id, target));
            }
        })
        .map_err(|e| self.malformed(e))?;
        if ids.len() > MAX_SLIDES {
            return Err(self.malformed(format!(
                "{} slides, at most {MAX_SLIDES} are read",
                ids.len()
            )));
        }
        Ok(ids
            .iter()
            .filter_map(|id| targets.iter().find(|(rid, _)| rid == id))
            .map(|(_, target)| match target.strip_prefix('/') {
                Some(absolute) => absolute.to_string(),
                None => format!("ppt/{target}"),
            })
            .collect())
    }

    /// `docProps/core.xml`: title, author (creator), created and modified.
    fn ooxml_properties(&mut self) -> Result<Map<String, Value>, ParseError> {
        let mut out = Map::new();
        let Some(core) = self.part("docProps/core.xml")? else {
            return Ok(out);
        };
        let fields = element_texts(&core, &[b"title", b"creator", b"created", b"modified"])
            .map_err(|e| self.malformed(e))?;
        for (name, value) in fields {
            let key = match name {
                b"creator" => "author",
                b"title" => "title",
                b"created" => "created",
                _ => "modified",
            };
            put(&mut out, key, &value);
        }
        Ok(out)
    }

    /// `meta.xml`: title, author (initial creator, else creator), created and modified.
    fn odf_properties(&mut self) -> Result<Map<String, Value>, ParseError> {
        let mut out = Map::new();
        let Some(meta) = self.part("meta.xml")? else {
            return Ok(out);
        };
        let fields = element_texts(
            &meta,
            &[
                b"title",
                b"initial-creator",
                b"creator",
                b"creation-date",
                b"date",
            ],
        )
        .map_err(|e| self.malformed(e))?;
        for (name, value) in fields {
            let key = match name {
                b"title" => "title",
                b"initial-creator" => "author",
                b"creator" if !out.contains_key("author") => "author",
                b"creator" => continue,
                b"creation-date" => "created",
                _ => "modified",
            };
            put(&mut out, key, &value);
        }
        Ok(out)
    }

    /// An OpenDocument package whose manifest declares encrypted parts.
    fn refuse_odf_encryption(&mut self) -> Result<(), ParseError> {
        if let Some(manifest) = self.part("META-INF/manifest.xml")? {
            let mut encrypted = false;
            walk(&manifest, |node| {
                if let Node::Open(b"encryption-data", _) = node {
                    encrypted = true;
                }
            })
            .map_err(|e| self.malformed(e))?;
            if encrypted {
                return Err(ParseError::Protected(self.format.name().to_string()));
            }
        }
        Ok(())
    }
}

/// Stores a property: dates as RFC 3339 (OpenDocument's lack a zone: read as UTC).
fn put(out: &mut Map<String, Value>, key: &str, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    let value = if key == "created" || key == "modified" {
        match chrono::DateTime::parse_from_rfc3339(value) {
            Ok(d) => d.to_rfc3339(),
            Err(_) => match chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f") {
                Ok(d) => d.and_utc().to_rfc3339(),
                Err(_) => return,
            },
        }
    } else {
        value.to_string()
    };
    out.insert(key.to_string(), Value::String(value));
}

// ---------------------------------------------------------------- XML

enum Node<'x, 'e> {
    /// An element opens (an empty element opens and closes): its local name.
    Open(&'x [u8], &'e BytesStart<'x>),
    Close(&'x [u8]),
    Text(Cow<'x, str>),
}

/// Calls `f` for every element and text of an XML part; local names, no prefixes.
fn walk(xml: &[u8], mut f: impl FnMut(Node<'_, '_>)) -> Result<(), String> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().expand_empty_elements = true;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML error at byte {}: {e}", reader.buffer_position()))?;
        match &event {
            Event::Start(e) => f(Node::Open(e.local_name().into_inner(), e)),
            Event::End(e) => f(Node::Close(e.local_name().into_inner())),
            Event::Text(t) => f(Node::Text(t.decode().map_err(|e| e.to_string())?)),
            Event::CData(t) => f(Node::Text(t.decode().map_err(|e| e.to_string())?)),
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or_default()
                            .to_string()
                    }
                };
                f(Node::Text(Cow::Owned(text)))
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

/// Which prefix an attribute may carry.
#[derive(Clone, Copy)]
enum Prefix {
    /// None (`Id`, `type`).
    Without,
    /// Some prefix (`r:id`).
    With,
    /// Whatever it is (`w:val`, `text:outline-level`).
    Any,
}

/// The value of the attribute with this local name and prefix rule.
fn find_attr(e: &BytesStart<'_>, name: &[u8], prefix: Prefix) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| {
            let prefixed = a.key.prefix().is_some();
            a.key.local_name().into_inner() == name
                && match prefix {
                    Prefix::Without => !prefixed,
                    Prefix::With => prefixed,
                    Prefix::Any => true,
                }
        })
        .and_then(|a| {
            // Office parts are UTF-8 (`unescape_value` is not there when quick-xml decodes
            // other encodings, which calamine asks of it).
            let raw = String::from_utf8_lossy(&a.value);
            quick_xml::escape::unescape(&raw).ok().map(Cow::into_owned)
        })
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    find_attr(e, name, Prefix::Without)
}

fn prefixed_attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    find_attr(e, name, Prefix::With)
}

fn any_attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    find_attr(e, name, Prefix::Any)
}

/// The text of the first element of each of these local names.
fn element_texts<'n>(xml: &[u8], names: &[&'n [u8]]) -> Result<Vec<(&'n [u8], String)>, String> {
    let mut out: Vec<(&[u8], String)> = Vec::new();
    let mut current: Option<(&[u8], String)> = None;
    walk(xml, |node| match node {
        Node::Open(name, _) => {
            if let Some(n) = names.iter().find(|n| **n == name)
                && !out.iter().any(|(m, _)| m == n)
            {
                current = Some((n, String::new()));
            }
        }
        Node::Text(t) => {
            if let Some((_, s)) = current.as_mut() {
                s.push_str(&t);
            }
        }
        Node::Close(name) => {
            if current.as_ref().is_some_and(|(n, _)| *n == name) {
                out.extend(current.take());
            }
        }
    })?;
    Ok(out)
}

// ---------------------------------------------------------------- Markdown out

/// Text gathered into Markdown blocks: paragraphs, headings, list items and tables (a row
/// stays with its header row).
#[derive(Default)]
struct Blocks {
    blocks: Vec<String>,
    /// Open tables, innermost last: rows of cells.
    tables: Vec<Table>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
}

/// How a paragraph is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Heading(u8),
    ListItem,
}

impl Blocks {
    fn paragraph(&mut self, text: &str, style: Style) {
        let text = clean(text);
        if text.is_empty() {
            return;
        }
        if let Some(table) = self.tables.last_mut() {
            if !table.cell.is_empty() {
                table.cell.push(' ');
            }
            table.cell.push_str(&text);
            return;
        }
        self.blocks.push(match style {
            Style::Plain => text,
            Style::Heading(level) => {
                format!("{} {}", "#".repeat(level.clamp(1, 6) as usize), text)
            }
            Style::ListItem => format!("- {text}"),
        });
    }

    fn open_table(&mut self) {
        self.tables.push(Table::default());
    }

    fn open_row(&mut self) {
        if let Some(t) = self.tables.last_mut() {
            t.row.clear();
        }
    }

    fn close_cell(&mut self, repeat: usize) {
        if let Some(t) = self.tables.last_mut() {
            let cell = std::mem::take(&mut t.cell);
            for _ in 0..repeat.max(1) {
                t.row.push(cell.clone());
            }
        }
    }

    fn close_row(&mut self) {
        if let Some(t) = self.tables.last_mut() {
            // Trailing empty cells are padding (spreadsheet-like tables repeat them).
            while t.row.last().is_some_and(String::is_empty) {
                t.row.pop();
            }
            if !t.row.is_empty() {
                let row = std::mem::take(&mut t.row);
                t.rows.push(row);
            }
        }
    }

    fn close_table(&mut self) {
        let Some(table) = self.tables.pop() else {
            return;
        };
        if table.rows.is_empty() {
            return;
        }
        match self.tables.last_mut() {
            // A table inside a cell: its text joins the cell.
            Some(outer) => {
                let text: Vec<String> = table.rows.iter().map(|r| r.join(" ")).collect();
                if !outer.cell.is_empty() {
                    outer.cell.push(' ');
                }
                outer.cell.push_str(&text.join(" "));
            }
            None => self.blocks.push(markdown_table(&table.rows)),
        }
    }

    fn finish(mut self) -> String {
        while !self.tables.is_empty() {
            self.close_table();
        }
        self.blocks.join("\n\n")
    }
}

/// Collapses runs of spaces, keeps line breaks and tabs as spaces within a block.
fn clean(text: &str) -> String {
    text.split('\n')
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Markdown table, the first row as its header.
fn markdown_table(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let line = |row: &Vec<String>| {
        let mut cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        cells.resize(width, String::new());
        format!("| {} |", cells.join(" | "))
    };
    let mut out = vec![line(&rows[0]), format!("|{}", " --- |".repeat(width))];
    out.extend(rows[1..].iter().map(line));
    out.join("\n")
}

// ---------------------------------------------------------------- Word

/// `word/document.xml` as Markdown.
fn docx_markdown(xml: &[u8]) -> Result<String, String> {
    let mut out = Blocks::default();
    let mut para = String::new();
    let mut style = Style::Plain;
    let (mut in_run, mut in_text) = (0usize, false);
    walk(xml, |node| match node {
        Node::Open(name, e) => match name {
            b"p" => {
                para.clear();
                style = Style::Plain;
            }
            b"pStyle" => {
                if let Some(level) = any_attr(e, b"val").and_then(|v| heading_level(&v)) {
                    style = Style::Heading(level);
                }
            }
            b"outlineLvl" => {
                if let Some(n) = any_attr(e, b"val").and_then(|v| v.parse::<u8>().ok())
                    && n < 6
                {
                    style = Style::Heading(n + 1);
                }
            }
            b"numPr" if style == Style::Plain => style = Style::ListItem,
            b"r" => in_run += 1,
            b"t" if in_run > 0 => in_text = true,
            b"tab" if in_run > 0 => para.push(' '),
            b"br" | b"cr" if in_run > 0 => para.push('\n'),
            b"tbl" => out.open_table(),
            b"tr" => out.open_row(),
            _ => {}
        },
        Node::Text(t) => {
            if in_text {
                para.push_str(&t);
            }
        }
        Node::Close(name) => match name {
            b"t" => in_text = false,
            b"r" => in_run = in_run.saturating_sub(1),
            b"p" => {
                out.paragraph(&para, style);
                para.clear();
            }
            b"tc" => out.close_cell(1),
            b"tr" => out.close_row(),
            b"tbl" => out.close_table(),
            _ => {}
        },
    })?;
    Ok(out.finish())
}

/// The heading level of a Word paragraph style (`Title`, `Heading1`..`Heading6`).
fn heading_level(style: &str) -> Option<u8> {
    let s = style.to_ascii_lowercase();
    if s == "title" {
        return Some(1);
    }
    s.strip_prefix("heading")
        .and_then(|n| n.trim().parse::<u8>().ok())
        .filter(|n| (1..=6).contains(n))
}

// ---------------------------------------------------------------- PowerPoint

/// One slide as Markdown: its title placeholder as a heading, then its text and tables.
fn pptx_slide_markdown(xml: &[u8]) -> Result<String, String> {
    let mut out = Blocks::default();
    let mut para = String::new();
    let (mut title_shape, mut in_text) = (false, false);
    walk(xml, |node| match node {
        Node::Open(name, e) => match name {
            b"sp" => title_shape = false,
            b"ph" => {
                title_shape = matches!(attr(e, b"type").as_deref(), Some("title" | "ctrTitle"))
            }
            b"p" => para.clear(),
            b"t" => in_text = true,
            b"br" => para.push('\n'),
            b"tbl" => out.open_table(),
            b"tr" => out.open_row(),
            _ => {}
        },
        Node::Text(t) => {
            if in_text {
                para.push_str(&t);
            }
        }
        Node::Close(name) => match name {
            b"t" => in_text = false,
            b"p" => {
                let style = if title_shape && out.tables.is_empty() {
                    Style::Heading(1)
                } else {
                    Style::Plain
                };
                out.paragraph(&para, style);
                para.clear();
            }
            b"tc" => out.close_cell(1),
            b"tr" => out.close_row(),
            b"tbl" => out.close_table(),
            _ => {}
        },
    })?;
    Ok(out.finish())
}

// ---------------------------------------------------------------- OpenDocument

/// `content.xml` of a text document (one page) or a presentation (one page per `draw:page`).
fn odf_markdown(xml: &[u8], presentation: bool) -> Result<Vec<String>, String> {
    let mut pages = Vec::new();
    let mut out = Blocks::default();
    // Open paragraphs (a frame inside a paragraph may hold paragraphs of its own).
    let mut paras: Vec<(String, Style)> = Vec::new();
    let mut list_depth = 0usize;
    let mut title_frame = false;
    // Depth inside parts that are not the document's text: notes, annotations, tracked
    // deletions, presenter notes.
    let mut skipped = 0usize;
    let mut repeats: Vec<usize> = Vec::new();
    walk(xml, |node| match node {
        Node::Open(name, e) => {
            if skipped > 0 {
                skipped += 1;
                return;
            }
            match name {
                b"note" | b"annotation" | b"tracked-changes" | b"notes" => skipped = 1,
                b"page" if presentation => out = Blocks::default(),
                b"frame" if presentation => {
                    title_frame = any_attr(e, b"class").as_deref() == Some("title");
                }
                b"h" => {
                    let level = any_attr(e, b"outline-level")
                        .and_then(|l| l.parse::<u8>().ok())
                        .unwrap_or(1);
                    paras.push((String::new(), Style::Heading(level)));
                }
                b"p" => {
                    let style = if presentation && title_frame && out.tables.is_empty() {
                        Style::Heading(1)
                    } else if list_depth > 0 {
                        Style::ListItem
                    } else {
                        Style::Plain
                    };
                    paras.push((String::new(), style));
                }
                b"list-item" => list_depth += 1,
                b"s" => {
                    let n = any_attr(e, b"c")
                        .and_then(|c| c.parse::<usize>().ok())
                        .unwrap_or(1)
                        .min(64);
                    if let Some((p, _)) = paras.last_mut() {
                        p.push_str(&" ".repeat(n));
                    }
                }
                b"tab" => {
                    if let Some((p, _)) = paras.last_mut() {
                        p.push(' ');
                    }
                }
                b"line-break" => {
                    if let Some((p, _)) = paras.last_mut() {
                        p.push('\n');
                    }
                }
                b"table" => out.open_table(),
                b"table-row" => out.open_row(),
                b"table-cell" | b"covered-table-cell" => {
                    let n = any_attr(e, b"number-columns-repeated")
                        .and_then(|c| c.parse::<usize>().ok())
                        .unwrap_or(1);
                    repeats.push(n);
                }
                _ => {}
            }
        }
        Node::Text(t) => {
            if skipped == 0
                && let Some((p, _)) = paras.last_mut()
            {
                p.push_str(&t);
            }
        }
        Node::Close(name) => {
            if skipped > 0 {
                skipped -= 1;
                return;
            }
            match name {
                b"h" | b"p" => {
                    if let Some((text, style)) = paras.pop() {
                        out.paragraph(&text, style);
                    }
                }
                b"list-item" => list_depth = list_depth.saturating_sub(1),
                b"frame" => title_frame = false,
                b"table-cell" | b"covered-table-cell" => {
                    let n = repeats.pop().unwrap_or(1);
                    // Repeated empty cells are layout; repeated content is kept, within
                    // reason.
                    let filled = out.tables.last().is_some_and(|t| !t.cell.is_empty());
                    out.close_cell(if filled { n.min(64) } else { 1 });
                }
                b"table-row" => out.close_row(),
                b"table" => out.close_table(),
                b"page" if presentation => pages.push(std::mem::take(&mut out).finish()),
                _ => {}
            }
        }
    })?;
    if !presentation {
        pages.push(out.finish());
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A package with these parts (stored, uncompressed).
    fn package(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, body) in parts {
            zip.start_file(*name, options).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    #[test]
    fn word_headings_lists_and_tables_become_markdown() {
        let body = format!(
            r#"<w:document {W}><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Leave &amp; absence</w:t></w:r></w:p>
            <w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t xml:space="preserve">Staff get </w:t></w:r><w:r><w:t>25 days.</w:t></w:r></w:p>
            <w:p><w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr><w:r><w:t>Carry over at most 5.</w:t></w:r></w:p>
            <w:p><w:r><w:delText>removed words</w:delText></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Grade</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Days</w:t></w:r></w:p></w:tc></w:tr>
            <w:tr><w:tc><w:p><w:r><w:t>A|1</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>30</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            </w:body></w:document>"#
        );
        let core = r#"<cp:coreProperties xmlns:cp="x" xmlns:dc="d" xmlns:dcterms="t"><dc:title>Leave policy</dc:title><dc:creator>Ann Lee</dc:creator><dcterms:created>2024-03-01T09:00:00Z</dcterms:created></cp:coreProperties>"#;
        let bytes = package(&[("word/document.xml", &body), ("docProps/core.xml", core)]);
        let doc = parse(&bytes, OfficeFormat::Docx).unwrap();
        assert_eq!(
            doc.pages,
            vec![
                "# Leave & absence\n\nStaff get 25 days.\n\n- Carry over at most 5.\n\n\
                 | Grade | Days |\n| --- | --- |\n| A\\|1 | 30 |"
            ]
        );
        assert!(doc.markdown);
        assert_eq!(doc.title.as_deref(), Some("Leave policy"));
        assert_eq!(doc.headings.len(), 1);
        assert_eq!(doc.metadata["author"], "Ann Lee");
        assert_eq!(doc.metadata["created"], "2024-03-01T09:00:00+00:00");
    }

    #[test]
    fn slides_are_pages_in_the_presentations_order() {
        let slide = |title: &str, text: &str| {
            format!(
                r#"<p:sld xmlns:p="p" xmlns:a="a"><p:cSld><p:spTree>
                <p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>{title}</a:t></a:r></a:p></p:txBody></p:sp>
                <p:sp><p:nvSpPr><p:nvPr><p:ph idx="1"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>{text}</a:t></a:r></a:p></p:txBody></p:sp>
                </p:spTree></p:cSld></p:sld>"#
            )
        };
        let presentation = r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId3"/><p:sldId id="257" r:id="rId2"/></p:sldIdLst></p:presentation>"#;
        let rels = r#"<Relationships><Relationship Id="rId2" Type="s" Target="slides/slide1.xml"/><Relationship Id="rId3" Type="s" Target="slides/slide2.xml"/></Relationships>"#;
        let bytes = package(&[
            ("ppt/presentation.xml", presentation),
            ("ppt/_rels/presentation.xml.rels", rels),
            ("ppt/slides/slide1.xml", &slide("Budget", "Up 4%")),
            ("ppt/slides/slide2.xml", &slide("Agenda", "Three items")),
        ]);
        let doc = parse(&bytes, OfficeFormat::Pptx).unwrap();
        assert_eq!(
            doc.pages,
            vec!["# Agenda\n\nThree items", "# Budget\n\nUp 4%"]
        );
        assert_eq!(doc.title.as_deref(), Some("Agenda"));
    }

    #[test]
    fn opendocument_text_and_presentations() {
        let text = r#"<office:document-content xmlns:office="o" xmlns:text="t" xmlns:table="b"><office:body><office:text>
            <text:h text:outline-level="2">Scope</text:h>
            <text:p>Applies<text:s text:c="3"/>to all<text:note><text:note-body><text:p>a footnote</text:p></text:note-body></text:note> sites.</text:p>
            <text:list><text:list-item><text:p>Item one</text:p></text:list-item></text:list>
            <table:table><table:table-row><table:table-cell><text:p>Site</text:p></table:table-cell><table:table-cell table:number-columns-repeated="1000"/></table:table-row>
            <table:table-row><table:table-cell><text:p>Oslo</text:p></table:table-cell></table:table-row></table:table>
            </office:text></office:body></office:document-content>"#;
        let meta = r#"<office:document-meta xmlns:office="o" xmlns:meta="m" xmlns:dc="d"><office:meta><meta:initial-creator>Bo Ek</meta:initial-creator><dc:creator>Someone Else</dc:creator><meta:creation-date>2023-05-06T07:08:09.123</meta:creation-date></office:meta></office:document-meta>"#;
        let bytes = package(&[("content.xml", text), ("meta.xml", meta)]);
        let doc = parse(&bytes, OfficeFormat::Odt).unwrap();
        assert_eq!(
            doc.pages,
            vec!["## Scope\n\nApplies to all sites.\n\n- Item one\n\n| Site |\n| --- |\n| Oslo |"]
        );
        assert_eq!(doc.metadata["author"], "Bo Ek");
        assert_eq!(doc.metadata["created"], "2023-05-06T07:08:09.123+00:00");

        let slides = r#"<office:document-content xmlns:office="o" xmlns:text="t" xmlns:draw="d" xmlns:presentation="p"><office:body><office:presentation>
            <draw:page draw:name="one"><draw:frame presentation:class="title"><draw:text-box><text:p>Roadmap</text:p></draw:text-box></draw:frame>
            <draw:frame presentation:class="outline"><draw:text-box><text:p>Ship in May</text:p></draw:text-box></draw:frame>
            <presentation:notes><draw:frame><draw:text-box><text:p>speaker only</text:p></draw:text-box></draw:frame></presentation:notes></draw:page>
            <draw:page draw:name="two"><draw:frame><draw:text-box><text:p>Questions?</text:p></draw:text-box></draw:frame></draw:page>
            </office:presentation></office:body></office:document-content>"#;
        let doc = parse(&package(&[("content.xml", slides)]), OfficeFormat::Odp).unwrap();
        assert_eq!(doc.pages, vec!["# Roadmap\n\nShip in May", "Questions?"]);
    }

    #[test]
    fn bad_packages_fail_with_their_reason() {
        let err = |bytes: &[u8], f| parse(bytes, f).unwrap_err().to_string();
        assert!(err(b"not a zip at all", OfficeFormat::Docx).contains("not a readable zip"));
        let missing = package(&[("other.xml", "<a/>")]);
        assert!(err(&missing, OfficeFormat::Docx).contains("no word/document.xml"));
        let broken = package(&[("word/document.xml", "<w:document><w:body><w:p>")]);
        assert!(parse(&broken, OfficeFormat::Docx).is_err());
        // An OLE compound file holding an encrypted package.
        let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        ole.extend("EncryptionInfo".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(
            parse(&ole, OfficeFormat::Docx).unwrap_err(),
            ParseError::Protected("Word document".into())
        );
        let manifest = r#"<manifest:manifest xmlns:manifest="m"><manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data/></manifest:file-entry></manifest:manifest>"#;
        let odt = package(&[("META-INF/manifest.xml", manifest), ("content.xml", "<x/>")]);
        assert_eq!(
            parse(&odt, OfficeFormat::Odt).unwrap_err(),
            ParseError::Protected("OpenDocument text".into())
        );
        let empty = package(&[("content.xml", "<office:text/>")]);
        assert_eq!(
            parse(&empty, OfficeFormat::Odt).unwrap_err(),
            ParseError::NoText
        );
    }

    #[test]
    fn a_zip_bomb_is_refused_by_size() {
        // 70 MiB of one repeated byte, deflated to a few hundred KiB.
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", options).unwrap();
        let block = vec![b'a'; 1 << 20];
        for _ in 0..70 {
            zip.write_all(&block).unwrap();
        }
        zip.finish().unwrap();
        let bytes = out.into_inner();
        assert!(bytes.len() < 1 << 20);
        let e = parse(&bytes, OfficeFormat::Docx).unwrap_err().to_string();
        assert!(e.contains("zip bomb"), "{e}");
    }
}
