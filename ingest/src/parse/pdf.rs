//! PDF files: text per page with `pdf-extract`, document info and the outline (headings) with
//! `lopdf`.
//!
//! pdf-extract can panic, abort (stack overflow on hostile fonts) or loop forever, so the
//! pipeline runs it in a child process: [`extract_isolated`] starts the program described by a
//! [`PdfIsolation`] (the main binary re-executing itself with a hidden subcommand whose body
//! is [`child_main`]), feeds it the PDF on stdin and reads one framed JSON result from its
//! stdout. A timeout, a signal or an exit without a result become [`ParseError::Timeout`] or
//! [`ParseError::Crashed`]; the parent process is never at risk.
//!
//! [`extract_in_process`] does the actual work and is what the child runs.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::time::Duration;

use lopdf::{Dictionary, Document, Object};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::columns::{self, ColumnGaps};
use super::{Heading, ParseError, ParsedDocument, outline};

/// The line that precedes the child's JSON result on its stdout. Anything a library prints to
/// stdout comes before it; the parent reads what follows the last occurrence.
pub const RESULT_MARKER: &str = "\n--enclave-pdf-result--\n";

/// How much of the child's stderr is kept (its tail) to explain a crash.
const STDERR_TAIL: usize = 64 * 1024;

/// Info dictionary entries copied into metadata, with their metadata keys.
const INFO_TEXT_KEYS: &[(&[u8], &str)] = &[
    (b"Author", "author"),
    (b"Subject", "subject"),
    (b"Keywords", "keywords"),
    (b"Creator", "creator"),
    (b"Producer", "producer"),
];
const INFO_DATE_KEYS: &[(&[u8], &str)] = &[(b"CreationDate", "created"), (b"ModDate", "modified")];

/// How to start the PDF extraction child: `program args...`, killed after `timeout`.
#[derive(Debug, Clone)]
pub struct PdfIsolation {
    /// The executable (normally the running binary, `std::env::current_exe()`).
    pub program: PathBuf,
    /// Its arguments (normally the hidden subcommand that calls [`child_main`]).
    pub args: Vec<String>,
    /// Wall-clock limit for one extraction.
    pub timeout: Duration,
    /// Address-space limit of the child in MiB (0: none): a hostile PDF that makes the
    /// extractor allocate without end fails alone, named, instead of exhausting the machine.
    pub memory_mb: u64,
}

/// The environment variable through which the parent tells the child its memory limit.
const MEMORY_ENV: &str = "ENCLAVE_PDF_CHILD_MEMORY_MB";

/// Limits this process's address space to `mb` MiB.
fn limit_memory(mb: u64) {
    let bytes = mb.saturating_mul(1024 * 1024);
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct it is given; failure leaves the limit unset.
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &limit);
    }
}

/// The child's answer, serialized as `{"ok": {...}}` or `{"err": <ParseError>}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ChildReply {
    Ok(ChildDocument),
    Err(ParseError),
}

/// The parts of a [`ParsedDocument`] a PDF produces.
#[derive(Debug, Serialize, Deserialize)]
struct ChildDocument {
    #[serde(default)]
    title: Option<String>,
    pages: Vec<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, Value>,
    #[serde(default)]
    headings: Vec<Heading>,
    #[serde(default)]
    scanned_pages: Vec<usize>,
}

impl From<ChildDocument> for ParsedDocument {
    fn from(doc: ChildDocument) -> Self {
        ParsedDocument {
            title: doc.title,
            pages: doc.pages,
            metadata: doc.metadata,
            headings: doc.headings,
            scanned_pages: doc.scanned_pages,
            ..ParsedDocument::default()
        }
    }
}

/// Extracts a PDF in this process: one page of text per PDF page, the title and metadata
/// (`author`, `subject`, `keywords`, `creator`, `producer`, `created`, `modified`,
/// `page_count`, `encrypted`, `failed_pages`) from the Info dictionary.
///
/// Panics inside lopdf or pdf-extract are caught and become [`ParseError::Crashed`] (or, when
/// only some pages fail, those pages are left empty and listed in `failed_pages`). Aborts and
/// endless loops are not caught: run this in a child process ([`extract_isolated`]).
pub fn extract_in_process(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    match catch_unwind(AssertUnwindSafe(|| extract_unguarded(bytes))) {
        Ok(result) => result,
        Err(payload) => Err(ParseError::Crashed(panic_message(payload.as_ref()))),
    }
}

fn extract_unguarded(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let mut doc = Document::load_mem(bytes).map_err(|e| malformed(e.to_string()))?;
    // lopdf already decrypts documents whose user password is empty while loading; one that
    // is still encrypted needs a password we do not have.
    let mut encrypted = doc.was_encrypted();
    if doc.is_encrypted() {
        if doc.decrypt("").is_err() {
            return Err(ParseError::Encrypted);
        }
        encrypted = true;
    }

    let mut metadata = serde_json::Map::new();
    let title = read_info(&doc, &mut metadata);
    let page_count = doc.get_pages().len();
    metadata.insert("page_count".into(), Value::from(page_count));
    if encrypted {
        metadata.insert("encrypted".into(), Value::Bool(true));
    }
    if page_count == 0 {
        return Err(malformed("the document has no pages".to_string()));
    }

    let (pages, failures) = extract_pages(&doc, page_count);
    let pages: Vec<String> = pages.iter().map(|p| clean_page(p)).collect();

    // Pages with an image and (almost) no text: scans, for OCR.
    let page_ids: Vec<_> = doc.get_pages().into_values().collect();
    let scanned_pages: Vec<usize> = pages
        .iter()
        .enumerate()
        .filter(|(_, text)| text.chars().filter(|c| c.is_alphanumeric()).count() < SCAN_MAX_CHARS)
        .filter(|(i, _)| page_ids.get(*i).is_some_and(|&id| has_xobjects(&doc, id)))
        .map(|(i, _)| i + 1)
        .collect();
    if pages.iter().all(|p| p.is_empty()) && scanned_pages.is_empty() {
        return Err(failures
            .into_iter()
            .next()
            .map_or(ParseError::NoText, |(_, e)| e));
    }
    if !failures.is_empty() {
        let numbers = failures.iter().map(|(n, _)| Value::from(*n)).collect();
        metadata.insert("failed_pages".into(), Value::Array(numbers));
    }
    let mut parsed = ParsedDocument {
        title,
        pages,
        metadata,
        scanned_pages,
        ..ParsedDocument::default()
    };
    // Headings: the outline where there is one, else numbered section headings in the text.
    // They are a bonus: an outline that cannot be read leaves the text as it is.
    let starts = parsed.page_starts();
    let entries = catch_unwind(AssertUnwindSafe(|| {
        outline::outline_entries(&doc, decode_pdf_string)
    }))
    .unwrap_or_default();
    parsed.headings = if entries.is_empty() {
        outline::numbered_headings(&parsed.pages, &starts)
    } else {
        outline::place(&entries, &parsed.pages, &starts)
    };
    Ok(parsed)
}

/// The raw text of every page, with the pages that failed (number and error; their text is
/// empty). The whole document is extracted in one pass; when that fails on a page, the pages
/// after it are extracted one by one (slower: pdf-extract walks the page tree for each).
fn extract_pages(doc: &Document, page_count: usize) -> (Vec<String>, Vec<(usize, ParseError)>) {
    let mut failures = Vec::new();
    let mut pages = match extract_all_pages(doc) {
        Ok(pages) if pages.len() == page_count => return (pages, failures),
        Ok(pages) => pages,
        Err((done, error)) => {
            let mut pages = done;
            failures.push((pages.len() + 1, error));
            pages.push(String::new());
            pages
        }
    };
    pages.truncate(page_count);
    for number in pages.len() + 1..=page_count {
        let text = u32::try_from(number)
            .map_err(|_| malformed("too many pages".to_string()))
            .and_then(|n| extract_page(doc, n));
        match text {
            Ok(text) => pages.push(text),
            Err(e) => {
                pages.push(String::new());
                failures.push((number, e));
            }
        }
    }
    (pages, failures)
}

/// One pass of pdf-extract over the whole document. On failure: the pages completed before the
/// failing one, and the error (a panic becomes [`ParseError::Crashed`]).
fn extract_all_pages(doc: &Document) -> Result<Vec<String>, (Vec<String>, ParseError)> {
    let sink = PageSink::default();
    let mut output = PagedText::new(&sink);
    let result = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::output_doc(doc, &mut output)
    }));
    let completed = output.completed;
    drop(output);
    let mut pages = sink.pages.take();
    match result {
        Ok(Ok(())) => Ok(pages),
        Ok(Err(e)) => {
            pages.truncate(completed);
            let number = completed + 1;
            Err((pages, malformed(format!("page {number}: {e}"))))
        }
        Err(payload) => {
            pages.truncate(completed);
            let number = completed + 1;
            let message = panic_message(payload.as_ref());
            Err((
                pages,
                ParseError::Crashed(format!("page {number}: {message}")),
            ))
        }
    }
}

/// Where [`PagedText`] has pdf-extract's plain-text output written: one string per page.
#[derive(Clone, Default)]
struct PageSink {
    pages: Rc<RefCell<Vec<String>>>,
}

impl std::fmt::Write for PageSink {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if let Some(page) = self.pages.borrow_mut().last_mut() {
            page.push_str(s);
        }
        Ok(())
    }
}

impl pdf_extract::ConvertToFmt for PageSink {
    type Writer = PageSink;
    fn convert(self) -> PageSink {
        self
    }
}

/// pdf-extract's plain-text output device, starting a new string at each page.
struct PagedText {
    sink: PageSink,
    /// Pages whose `end_page` was reached.
    completed: usize,
    inner: pdf_extract::PlainTextOutput<PageSink>,
    /// Where a table's column opens: a tab goes before the space pdf-extract writes there.
    columns: ColumnGaps,
}

impl PagedText {
    fn new(sink: &PageSink) -> Self {
        Self {
            sink: sink.clone(),
            completed: 0,
            inner: pdf_extract::PlainTextOutput::new(sink.clone()),
            columns: ColumnGaps::default(),
        }
    }
}

impl pdf_extract::OutputDev for PagedText {
    fn begin_page(
        &mut self,
        page_num: u32,
        media_box: &pdf_extract::MediaBox,
        art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        self.sink.pages.borrow_mut().push(String::new());
        self.columns.begin_page();
        self.inner.begin_page(page_num, media_box, art_box)
    }

    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.end_page()?;
        self.completed += 1;
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        if self.columns.opens_column(trm, width, font_size) {
            use std::fmt::Write as _;
            let _ = self.sink.write_str("\t");
        }
        self.inner
            .output_character(trm, width, spacing, font_size, char)
    }

    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.columns.begin_word();
        self.inner.begin_word()
    }

    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.end_word()
    }

    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.inner.end_line()
    }
}

/// The text of one page (numbered from 1); a panic becomes [`ParseError::Crashed`].
fn extract_page(doc: &Document, number: u32) -> Result<String, ParseError> {
    let run = || {
        let sink = PageSink::default();
        {
            let mut output = PagedText::new(&sink);
            pdf_extract::output_doc_page(doc, &mut output, number)?;
        }
        let text = sink.pages.take().concat();
        Ok::<_, pdf_extract::OutputError>(text)
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(malformed(format!("page {number}: {e}"))),
        Err(payload) => Err(ParseError::Crashed(format!(
            "page {number}: {}",
            panic_message(payload.as_ref())
        ))),
    }
}

/// Pages with fewer letters and digits than this, and an image, are candidates for OCR.
pub const SCAN_MAX_CHARS: usize = 16;

/// True when the page's resources (its own or inherited) name any XObject: an image, or a form
/// that may hold one.
fn has_xobjects(doc: &Document, page: lopdf::ObjectId) -> bool {
    let Ok((own, inherited)) = doc.get_page_resources(page) else {
        return false;
    };
    let mut dicts = own.into_iter().chain(
        inherited
            .iter()
            .filter_map(|id| doc.get_dictionary(*id).ok()),
    );
    dicts.any(|resources| {
        let Ok(x) = resources.get(b"XObject") else {
            return false;
        };
        match doc.dereference(x) {
            Ok((_, Object::Dictionary(d))) => !d.is_empty(),
            _ => false,
        }
    })
}

fn malformed(reason: String) -> ParseError {
    ParseError::Malformed {
        kind: "PDF".to_string(),
        reason,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Copies the Info dictionary into `metadata`; returns the title.
fn read_info(doc: &Document, metadata: &mut serde_json::Map<String, Value>) -> Option<String> {
    let info = info_dictionary(doc)?;
    let text = |key: &[u8]| {
        let object = info.get(key).ok()?;
        let (_, object) = doc.dereference(object).ok()?;
        let bytes = object.as_str().ok()?;
        let text = decode_pdf_string(bytes);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!text.is_empty()).then_some(text)
    };
    for (key, name) in INFO_TEXT_KEYS {
        if let Some(value) = text(key) {
            metadata.insert((*name).to_string(), Value::String(value));
        }
    }
    for (key, name) in INFO_DATE_KEYS {
        if let Some(date) = text(key).and_then(|d| pdf_date_to_rfc3339(&d)) {
            metadata.insert((*name).to_string(), Value::String(date));
        }
    }
    text(b"Title")
}

fn info_dictionary(doc: &Document) -> Option<&Dictionary> {
    let info = doc.trailer.get(b"Info").ok()?;
    match doc.dereference(info).ok()?.1 {
        Object::Dictionary(dict) => Some(dict),
        _ => None,
    }
}

/// Decodes a PDF text string: UTF-16BE (or, leniently, UTF-16LE) with a byte-order mark,
/// UTF-8 with a byte-order mark (PDF 2.0), else PDFDocEncoding. Control characters are dropped.
fn decode_pdf_string(bytes: &[u8]) -> String {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units = rest.chunks_exact(2).map(|c| unit([c[0], c[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>()
    };
    let text = if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        utf16(rest, u16::from_be_bytes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        bytes.iter().map(|&b| pdf_doc_char(b)).collect()
    };
    text.chars().filter(|c| !c.is_control()).collect()
}

/// PDFDocEncoding: Latin-1 except for 0x18–0x1F and 0x80–0x9F (PDF 32000 Annex D).
fn pdf_doc_char(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{2022}', '\u{2020}', '\u{2021}', '\u{2026}', '\u{2014}', '\u{2013}', '\u{0192}',
        '\u{2044}', '\u{2039}', '\u{203A}', '\u{2212}', '\u{2030}', '\u{201E}', '\u{201C}',
        '\u{201D}', '\u{2018}', '\u{2019}', '\u{201A}', '\u{2122}', '\u{FB01}', '\u{FB02}',
        '\u{0141}', '\u{0152}', '\u{0160}', '\u{0178}', '\u{017D}', '\u{0131}', '\u{0142}',
        '\u{0153}', '\u{0161}', '\u{017E}', '\u{FFFD}',
    ];
    const LOW: [char; 8] = [
        '\u{02D8}', '\u{02C7}', '\u{02C6}', '\u{02D9}', '\u{02DD}', '\u{02DB}', '\u{02DA}',
        '\u{02DC}',
    ];
    match b {
        0x18..=0x1F => LOW[usize::from(b - 0x18)],
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        0xA0 => '\u{20AC}',
        0xAD => '\u{FFFD}',
        _ => char::from(b),
    }
}

/// Converts a PDF date (`D:YYYYMMDDHHmmSSOHH'mm'`, everything after the year optional) to
/// RFC 3339; `None` when it is not a valid date.
fn pdf_date_to_rfc3339(date: &str) -> Option<String> {
    let s = date.trim();
    let s = s.strip_prefix("D:").unwrap_or(s);
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits < 4 || digits % 2 != 0 || digits > 14 {
        return None;
    }
    let field = |at: usize, default: u32| -> u32 {
        s.get(at..at + 2)
            .filter(|_| at + 2 <= digits)
            .and_then(|f| f.parse().ok())
            .unwrap_or(default)
    };
    let year: u32 = s.get(..4)?.parse().ok()?;
    let (month, day) = (field(4, 1), field(6, 1));
    let (hour, minute, second) = (field(8, 0), field(10, 0), field(12, 0));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let zone = s[digits..].trim_end_matches('\'');
    let offset = match zone.chars().next() {
        None | Some('Z') => "Z".to_string(),
        Some(sign @ ('+' | '-')) => {
            let parts: Vec<&str> = zone[1..].split('\'').collect();
            let hh: u32 = parts.first()?.parse().ok()?;
            let mm: u32 = match parts.get(1) {
                Some(m) if !m.is_empty() => m.parse().ok()?,
                _ => 0,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            format!("{sign}{hh:02}:{mm:02}")
        }
        Some(_) => return None,
    };
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{offset}"
    ))
}

/// Cleans the text of one page: line endings normalised, NULs and control characters other
/// than `\n` and `\t` dropped, typographic ligatures expanded, trailing spaces of each line
/// trimmed, runs of 3+ newlines collapsed to 2, the page trimmed; rows of cells separated by
/// column gaps (tabs) become Markdown tables ([`columns::tables_to_markdown`]).
pub(super) fn clean_page(raw: &str) -> String {
    let normalized = super::text::normalize_newlines(raw);
    let mut chars = String::with_capacity(normalized.len());
    for c in normalized.chars() {
        match c {
            '\u{FB00}' => chars.push_str("ff"),
            '\u{FB01}' => chars.push_str("fi"),
            '\u{FB02}' => chars.push_str("fl"),
            '\u{FB03}' => chars.push_str("ffi"),
            '\u{FB04}' => chars.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => chars.push_str("st"),
            // The space pdf-extract writes after a column gap's tab.
            ' ' if chars.ends_with('\t') => {}
            '\n' | '\t' => chars.push(c),
            c if c.is_control() => {}
            c => chars.push(c),
        }
    }
    let mut out = String::with_capacity(chars.len());
    let mut newlines = 0;
    for line in chars.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            newlines += 1;
            continue;
        }
        let line = collapse_dot_leaders(line);
        if out.is_empty() {
            out.push_str(line.trim_start());
        } else {
            out.push_str(if newlines > 1 { "\n\n" } else { "\n" });
            out.push_str(&line);
        }
        newlines = 1;
    }
    columns::tables_to_markdown(&out)
}

/// Replaces the dot leaders of tables of contents (". . . . ." or ".........") with " ... ":
/// they carry no meaning and would otherwise fill chunks with tokens.
fn collapse_dot_leaders(line: &str) -> std::borrow::Cow<'_, str> {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' {
            // a run of dots, optionally separated by single spaces
            let start = i;
            let mut dots = 0;
            let mut j = i;
            while j < bytes.len() && bytes[j] == b'.' {
                dots += 1;
                j += 1;
                if j + 1 < bytes.len() && bytes[j] == b' ' && bytes[j + 1] == b'.' {
                    j += 1;
                }
            }
            if dots >= 5 {
                out.push_str(line[last..start].trim_end());
                out.push_str(" ... ");
                last = j;
                while last < bytes.len() && bytes[last] == b' ' {
                    last += 1;
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    if last == 0 {
        return std::borrow::Cow::Borrowed(line);
    }
    out.push_str(&line[last..]);
    std::borrow::Cow::Owned(out)
}

/// The body of the PDF extraction child process: reads the PDF from stdin, runs
/// [`extract_in_process`] and writes [`RESULT_MARKER`] followed by one JSON value
/// (`{"ok": {"title", "pages", "metadata"}}` or `{"err": <ParseError>}`) to stdout.
/// Installs a silent panic hook (the process exists for this one job). Returns the exit code:
/// 0, or 1 when the result could not be written.
pub fn child_main() -> i32 {
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(mb) = std::env::var(MEMORY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|mb| *mb > 0)
    {
        limit_memory(mb);
    }
    let mut bytes = Vec::new();
    let result = match std::io::stdin().lock().read_to_end(&mut bytes) {
        Ok(_) => extract_in_process(&bytes),
        Err(e) => Err(ParseError::Crashed(format!(
            "could not read the PDF from stdin: {e}"
        ))),
    };
    let reply = match result {
        Ok(doc) => ChildReply::Ok(ChildDocument {
            title: doc.title,
            pages: doc.pages,
            metadata: doc.metadata,
            headings: doc.headings,
            scanned_pages: doc.scanned_pages,
        }),
        Err(e) => ChildReply::Err(e),
    };
    let Ok(json) = serde_json::to_string(&reply) else {
        return 1;
    };
    let write = || -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(RESULT_MARKER.as_bytes())?;
        stdout.write_all(json.as_bytes())?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    };
    if write().is_ok() { 0 } else { 1 }
}

/// Extracts a PDF in a child process started as `iso.program iso.args...`: the bytes go to
/// its stdin, the framed JSON result comes from its stdout. The child is killed when it
/// exceeds `iso.timeout` ([`ParseError::Timeout`]); a child that dies by a signal or exits
/// without a result gives [`ParseError::Crashed`] naming the signal or exit code and the last
/// line of its stderr. The child is always reaped.
pub async fn extract_isolated(
    bytes: &[u8],
    iso: &PdfIsolation,
) -> Result<ParsedDocument, ParseError> {
    let mut child = tokio::process::Command::new(&iso.program)
        .args(&iso.args)
        .env(MEMORY_ENV, iso.memory_mb.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ParseError::Crashed(format!(
                "could not start the extraction process {}: {e}",
                iso.program.display()
            ))
        })?;

    // Written from a task: a child that does not read its stdin must not block us.
    let stdin = child.stdin.take();
    let input = bytes.to_vec();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A child that exits early closes the pipe; its result tells what happened.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    });
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let outcome = tokio::time::timeout(iso.timeout, async {
        tokio::join!(
            read_all(stdout),
            read_tail(stderr, STDERR_TAIL),
            child.wait()
        )
    })
    .await;
    writer.abort();

    let Ok((stdout, stderr, status)) = outcome else {
        // `kill` also waits for the child, so it does not linger as a zombie.
        let _ = child.kill().await;
        let secs = iso.timeout.as_secs_f64().ceil();
        return Err(ParseError::Timeout(secs as u64));
    };
    let status = status.map_err(|e| {
        ParseError::Crashed(format!("could not wait for the extraction process: {e}"))
    })?;
    match decode_child_output(&stdout, &stderr, status) {
        Err(ParseError::Crashed(_))
            if iso.memory_mb > 0
                && String::from_utf8_lossy(&stderr).contains("memory allocation of") =>
        {
            Err(ParseError::Crashed(format!(
                "the extraction ran out of memory: it is limited to {} MiB (ingest.pdf_memory_mb)",
                iso.memory_mb
            )))
        }
        other => other,
    }
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut stream) = stream {
        // A read error leaves what was read; the decoding step reports a missing result.
        let _ = stream.read_to_end(&mut buf).await;
    }
    buf
}

/// Reads a stream to its end, keeping only about its last `cap` bytes.
async fn read_tail(stream: Option<impl AsyncRead + Unpin>, cap: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut stream) = stream else {
        return tail;
    };
    let mut chunk = vec![0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * cap {
                    tail.drain(..tail.len() - cap);
                }
            }
        }
    }
    tail
}

/// Turns what the child left (stdout, stderr tail, exit status) into the extraction result.
fn decode_child_output(
    stdout: &[u8],
    stderr: &[u8],
    status: ExitStatus,
) -> Result<ParsedDocument, ParseError> {
    let marker = RESULT_MARKER.as_bytes();
    let result_at = stdout
        .windows(marker.len())
        .rposition(|w| w == marker)
        .map(|at| at + marker.len());
    if let Some(at) = result_at {
        return match serde_json::from_slice::<ChildReply>(stdout[at..].trim_ascii()) {
            Ok(ChildReply::Ok(doc)) => Ok(doc.into()),
            Ok(ChildReply::Err(e)) => Err(e),
            Err(e) => Err(ParseError::Crashed(format!(
                "{}; its result was unreadable: {e}",
                describe_exit(status, stderr)
            ))),
        };
    }
    Err(ParseError::Crashed(format!(
        "{} without a result",
        describe_exit(status, stderr)
    )))
}

/// "the extraction process was killed by signal 11 (SIGSEGV) (stderr: ...)" and the like.
fn describe_exit(status: ExitStatus, stderr: &[u8]) -> String {
    let how = match (status.code(), exit_signal(status)) {
        (_, Some(signal)) => match signal_name(signal) {
            Some(name) => format!("was killed by signal {signal} ({name})"),
            None => format!("was killed by signal {signal}"),
        },
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended abnormally".to_string(),
    };
    let stderr = String::from_utf8_lossy(stderr);
    match stderr.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some(line) => {
            let line: String = line.chars().take(300).collect();
            format!("the extraction process {how} (stderr: {line})")
        }
        None => format!("the extraction process {how}"),
    }
}

#[cfg(unix)]
fn exit_signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn exit_signal(_status: ExitStatus) -> Option<i32> {
    None
}

/// The name of a Linux signal number (the numbers differ between Unix systems).
fn signal_name(signal: i32) -> Option<&'static str> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use lopdf::content::{Content, Operation};
    use lopdf::{
        EncryptionState, EncryptionVersion, Permissions, Stream, StringFormat, dictionary,
    };

    use super::*;

    /// One page of a test PDF: its text lines, and whether the page has a MediaBox.
    struct Page<'a> {
        lines: &'a [&'a str],
        media_box: bool,
    }

    const fn page<'a>(lines: &'a [&'a str]) -> Page<'a> {
        Page {
            lines,
            media_box: true,
        }
    }

    /// A real PDF: Helvetica text lines per page (a page without lines gets a drawn line and
    /// no text), with an optional Info dictionary.
    fn build_pdf(pages: &[Page<'_>], info: Option<Dictionary>) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
        });
        let resources_id = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut kids = Vec::new();
        for page in pages {
            let mut operations = Vec::new();
            if page.lines.is_empty() {
                operations.push(Operation::new("m", vec![50.into(), 50.into()]));
                operations.push(Operation::new("l", vec![300.into(), 300.into()]));
                operations.push(Operation::new("S", vec![]));
            } else {
                operations.push(Operation::new("BT", vec![]));
                operations.push(Operation::new("Tf", vec!["F1".into(), 24.into()]));
                operations.push(Operation::new("Td", vec![100.into(), 700.into()]));
                for (i, line) in page.lines.iter().enumerate() {
                    if i > 0 {
                        operations.push(Operation::new("Td", vec![0.into(), (-30).into()]));
                    }
                    operations.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
                }
                operations.push(Operation::new("ET", vec![]));
            }
            let content = Content { operations }.encode().unwrap();
            let content_id = doc.add_object(Stream::new(dictionary! {}, content));
            let mut page_dict = dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
                "Resources" => resources_id,
            };
            if page.media_box {
                page_dict.set("MediaBox", vec![0.into(), 0.into(), 595.into(), 842.into()]);
            }
            kids.push(Object::Reference(doc.add_object(page_dict)));
        }
        let count = i64::try_from(kids.len()).unwrap();
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => kids,
                "Count" => count,
            }),
        );
        let catalog_id = doc.add_object(dictionary! {
            "Type" => "Catalog",
            "Pages" => pages_id,
        });
        doc.trailer.set("Root", catalog_id);
        if let Some(info) = info {
            let info_id = doc.add_object(info);
            doc.trailer.set("Info", info_id);
        }
        doc
    }

    fn save(doc: &mut Document) -> Vec<u8> {
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    fn two_page_pdf() -> Vec<u8> {
        let mut title = vec![0xFE, 0xFF];
        for unit in "Résumé – Ünïcode".encode_utf16() {
            title.extend_from_slice(&unit.to_be_bytes());
        }
        let info = dictionary! {
            "Title" => Object::String(title, StringFormat::Hexadecimal),
            "Author" => Object::string_literal("Jane Doe"),
            "Producer" => Object::string_literal("enclave tests"),
            "CreationDate" => Object::string_literal("D:20240102030405+01'00'"),
        };
        save(&mut build_pdf(
            &[
                page(&["Hello World"]),
                page(&["Second page", "more text here"]),
            ],
            Some(info),
        ))
    }

    #[test]
    fn dot_leaders_collapse() {
        assert_eq!(
            collapse_dot_leaders("9.1 How can I keep it current? . . . . . . . . . . 41"),
            "9.1 How can I keep it current? ... 41"
        );
        assert_eq!(collapse_dot_leaders("Intro.......... 3"), "Intro ... 3");
        assert_eq!(
            collapse_dot_leaders("e.g. the end. Next..."),
            "e.g. the end. Next..."
        );
        assert_eq!(collapse_dot_leaders("no dots"), "no dots");
    }

    #[test]
    fn two_pages_with_text_and_info() {
        let doc = extract_in_process(&two_page_pdf()).unwrap();
        assert_eq!(doc.pages.len(), 2);
        assert_eq!(doc.pages[0], "Hello World");
        assert_eq!(doc.pages[1], "Second page\nmore text here");
        assert_eq!(doc.title.as_deref(), Some("Résumé – Ünïcode"));
        assert_eq!(doc.metadata["page_count"], 2);
        assert_eq!(doc.metadata["author"], "Jane Doe");
        assert_eq!(doc.metadata["producer"], "enclave tests");
        assert_eq!(doc.metadata["created"], "2024-01-02T03:04:05+01:00");
        assert!(!doc.metadata.contains_key("encrypted"));
        assert!(!doc.metadata.contains_key("failed_pages"));
        assert!(!doc.markdown);
    }

    #[test]
    fn page_without_text_is_no_text() {
        let bytes = save(&mut build_pdf(&[page(&[])], None));
        assert_eq!(extract_in_process(&bytes).unwrap_err(), ParseError::NoText);
    }

    #[test]
    fn blank_page_among_text_pages_keeps_page_numbers() {
        let bytes = save(&mut build_pdf(
            &[page(&["first"]), page(&[]), page(&["third"])],
            None,
        ));
        let doc = extract_in_process(&bytes).unwrap();
        assert_eq!(doc.pages, vec!["first", "", "third"]);
    }

    #[test]
    fn random_and_empty_bytes() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        match extract_in_process(&random) {
            Err(ParseError::Malformed { kind, .. }) => assert_eq!(kind, "PDF"),
            other => panic!("{other:?}"),
        }
        assert_eq!(extract_in_process(b"").unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn truncated_pdf_is_an_error_not_a_panic() {
        let bytes = two_page_pdf();
        for len in [8, bytes.len() / 3, bytes.len() / 2, bytes.len() - 40] {
            match extract_in_process(&bytes[..len]) {
                Err(ParseError::Malformed { .. } | ParseError::Crashed(_)) => {}
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn pdf_extract_panic_becomes_crashed_or_failed_page() {
        // pdf-extract panics (`expect("MediaBox")`) on a page without a MediaBox.
        let no_box = Page {
            lines: &["unreadable"],
            media_box: false,
        };
        let bytes = save(&mut build_pdf(&[no_box], None));
        match extract_in_process(&bytes) {
            Err(ParseError::Crashed(msg)) => assert!(msg.contains("MediaBox"), "{msg}"),
            other => panic!("{other:?}"),
        }

        let no_box = Page {
            lines: &["unreadable"],
            media_box: false,
        };
        let bytes = save(&mut build_pdf(
            &[page(&["readable"]), no_box, page(&["after the bad page"])],
            None,
        ));
        let doc = extract_in_process(&bytes).unwrap();
        assert_eq!(doc.pages, vec!["readable", "", "after the bad page"]);
        assert_eq!(doc.metadata["page_count"], 3);
        assert_eq!(doc.metadata["failed_pages"], serde_json::json!([2]));
    }

    fn encrypted_pdf(user_password: &str) -> Vec<u8> {
        let mut doc = build_pdf(&[page(&["Top secret text"])], None);
        // The standard security handler derives the key from the file identifier.
        let file_id = Object::String(b"enclave-test-id!".to_vec(), StringFormat::Hexadecimal);
        doc.trailer.set("ID", vec![file_id.clone(), file_id]);
        let version = EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner-pw",
            user_password,
            key_length: 128,
            permissions: Permissions::all(),
        };
        let state = EncryptionState::try_from(version).unwrap();
        doc.encrypt(&state).unwrap();
        save(&mut doc)
    }

    #[test]
    fn encrypted_with_user_password_is_encrypted() {
        let bytes = encrypted_pdf("user-pw");
        assert!(
            !bytes.windows(15).any(|w| w == b"Top secret text"),
            "the test PDF is not really encrypted"
        );
        assert_eq!(
            extract_in_process(&bytes).unwrap_err(),
            ParseError::Encrypted
        );
    }

    #[test]
    fn encrypted_with_empty_user_password_is_read() {
        let doc = extract_in_process(&encrypted_pdf("")).unwrap();
        assert_eq!(doc.pages, vec!["Top secret text"]);
        assert_eq!(doc.metadata["encrypted"], true);
    }

    #[test]
    fn pdf_strings_are_decoded() {
        assert_eq!(decode_pdf_string(b"\xFE\xFF\x00H\x00i\x20\x13"), "Hi–");
        assert_eq!(decode_pdf_string(b"\xFF\xFEH\x00i\x00"), "Hi");
        assert_eq!(decode_pdf_string(b"\xEF\xBB\xBFcaf\xC3\xA9"), "café");
        // PDFDocEncoding: 0x93 is the fi ligature, 0x8D a left double quote, 0xE9 é.
        assert_eq!(
            decode_pdf_string(b"\x8Dcaf\xE9 \x93le\x01"),
            "\u{201C}café \u{FB01}le"
        );
        // Odd trailing byte and unpaired surrogate do not fail.
        assert_eq!(decode_pdf_string(b"\xFE\xFF\x00A\xD8\x00\x00"), "A\u{FFFD}");
    }

    #[test]
    fn pdf_dates() {
        let cases = [
            ("D:20240102030405+01'00'", Some("2024-01-02T03:04:05+01:00")),
            ("D:20240102030405-05'30", Some("2024-01-02T03:04:05-05:30")),
            ("D:20240102030405Z", Some("2024-01-02T03:04:05Z")),
            ("D:20240102030405Z00'00'", Some("2024-01-02T03:04:05Z")),
            ("20240102", Some("2024-01-02T00:00:00Z")),
            ("D:2024", Some("2024-01-01T00:00:00Z")),
            ("D:20241302", None),
            ("yesterday", None),
            ("D:202", None),
        ];
        for (input, expected) in cases {
            assert_eq!(pdf_date_to_rfc3339(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn pages_are_cleaned() {
        let raw =
            "\n\n  title line  \r\nbody\u{0}\u{7} text\t\n\n\n\n\nnext \u{FB01}nd\rlast   \n\n";
        assert_eq!(clean_page(raw), "title line\nbody text\n\nnext find\nlast");
    }

    fn isolation(script: &str, timeout: Duration) -> PdfIsolation {
        PdfIsolation {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".to_string(), script.to_string()],
            timeout,
            memory_mb: 0,
        }
    }

    #[tokio::test]
    async fn isolated_timeout_kills_the_child() {
        let iso = isolation("sleep 30", Duration::from_secs(1));
        let started = Instant::now();
        let err = extract_isolated(b"%PDF-1.4", &iso).await.unwrap_err();
        assert_eq!(err, ParseError::Timeout(1));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn isolated_signal_is_crashed() {
        let iso = isolation("kill -SEGV $$", Duration::from_secs(10));
        match extract_isolated(b"%PDF-1.4", &iso).await {
            Err(ParseError::Crashed(msg)) => {
                assert!(msg.contains("signal 11"), "{msg}");
                assert!(msg.contains("SIGSEGV"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn isolated_exit_code_and_stderr_are_reported() {
        let iso = isolation(
            "cat >/dev/null; echo 'some noise' >&2; echo 'thread main panicked: boom' >&2; exit 3",
            Duration::from_secs(10),
        );
        match extract_isolated(b"%PDF-1.4", &iso).await {
            Err(ParseError::Crashed(msg)) => {
                assert!(msg.contains("status 3"), "{msg}");
                assert!(msg.contains("boom"), "{msg}");
                assert!(!msg.contains("noise"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn isolated_result_follows_the_last_marker() {
        let script = r#"cat >/dev/null; printf 'junk {"ok":{"pages":["fake"]}}\n--enclave-pdf-result--\n{"err":"NoText"}\nmore junk\n--enclave-pdf-result--\n{"ok":{"title":"T","pages":["page one","page two"],"metadata":{"page_count":2}}}\n'"#;
        let iso = isolation(script, Duration::from_secs(10));
        let doc = extract_isolated(b"%PDF-1.4", &iso).await.unwrap();
        assert_eq!(doc.title.as_deref(), Some("T"));
        assert_eq!(doc.pages, vec!["page one", "page two"]);
        assert_eq!(doc.metadata["page_count"], 2);
    }

    #[tokio::test]
    async fn isolated_error_result_and_garbage_result() {
        let script = r#"cat >/dev/null; printf '\n--enclave-pdf-result--\n{"err":{"Malformed":{"kind":"PDF","reason":"bad xref"}}}\n'"#;
        let iso = isolation(script, Duration::from_secs(10));
        assert_eq!(
            extract_isolated(b"x", &iso).await.unwrap_err(),
            ParseError::Malformed {
                kind: "PDF".into(),
                reason: "bad xref".into()
            }
        );
        let script = r#"cat >/dev/null; printf '\n--enclave-pdf-result--\n{"ok": trunc'"#;
        let iso = isolation(script, Duration::from_secs(10));
        match extract_isolated(b"x", &iso).await {
            Err(ParseError::Crashed(msg)) => assert!(msg.contains("unreadable"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn isolated_child_that_ignores_stdin_does_not_deadlock() {
        // Far more than a pipe buffer, to a child that never reads it.
        let big = vec![b'x'; 8 * 1024 * 1024];
        let script = r#"printf '\n--enclave-pdf-result--\n{"err":"NoText"}\n'"#;
        let iso = isolation(script, Duration::from_secs(10));
        assert_eq!(
            extract_isolated(&big, &iso).await.unwrap_err(),
            ParseError::NoText
        );
    }

    #[tokio::test]
    async fn isolated_missing_program_is_crashed() {
        let iso = PdfIsolation {
            program: PathBuf::from("/nonexistent/enclave-pdf-child"),
            args: Vec::new(),
            timeout: Duration::from_secs(5),
            memory_mb: 0,
        };
        assert!(matches!(
            extract_isolated(b"x", &iso).await,
            Err(ParseError::Crashed(_))
        ));
    }

    /// Entry point of the child process for `child_main_end_to_end`: the test binary runs
    /// itself with only this test selected and the variable set.
    #[test]
    #[ignore = "runs only as the child process of child_main_end_to_end"]
    fn child_process_entry() {
        if std::env::var_os("ENCLAVE_PDF_CHILD_TEST").is_some() {
            std::process::exit(child_main());
        }
    }

    /// The real child protocol: the test harness prints its own lines to stdout before the
    /// result, which the marker framing must survive.
    #[tokio::test]
    async fn child_main_end_to_end() {
        let exe = std::env::current_exe().unwrap();
        let iso = PdfIsolation {
            program: PathBuf::from("/bin/sh"),
            args: vec![
                "-c".to_string(),
                r#"ENCLAVE_PDF_CHILD_TEST=1 exec "$0" "$@""#.to_string(),
                exe.to_string_lossy().into_owned(),
                "parse::pdf::tests::child_process_entry".to_string(),
                "--exact".to_string(),
                "--ignored".to_string(),
                "--nocapture".to_string(),
                "--test-threads=1".to_string(),
            ],
            timeout: Duration::from_secs(60),
            memory_mb: 0,
        };
        let doc = extract_isolated(&two_page_pdf(), &iso).await.unwrap();
        assert_eq!(
            doc.pages,
            vec!["Hello World", "Second page\nmore text here"]
        );
        assert_eq!(doc.title.as_deref(), Some("Résumé – Ünïcode"));
        assert_eq!(doc.metadata["page_count"], 2);

        let err = extract_isolated(b"not a pdf at all", &iso)
            .await
            .unwrap_err();
        assert!(matches!(err, ParseError::Malformed { .. }), "{err:?}");

        let no_box = Page {
            lines: &["x"],
            media_box: false,
        };
        let bytes = save(&mut build_pdf(&[no_box], None));
        let err = extract_isolated(&bytes, &iso).await.unwrap_err();
        assert!(matches!(err, ParseError::Crashed(_)), "{err:?}");
    }

    /// Manual check on real PDFs: `cargo test --release -p enclave-ingest --lib
    /// parse::pdf::tests::corpus -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the local corpus in /root/.cache/enclave/corpus"]
    fn corpus() {
        let dir = std::env::var("ENCLAVE_PDF_CORPUS")
            .unwrap_or_else(|_| "/root/.cache/enclave/corpus".to_string());
        let limit: usize = std::env::var("ENCLAVE_PDF_CORPUS_LIMIT")
            .ok()
            .and_then(|l| l.parse().ok())
            .unwrap_or(12);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")))
            .collect();
        paths.sort();
        let mut ok = 0;
        for path in paths.iter().take(limit) {
            let bytes = std::fs::read(path).unwrap();
            let started = Instant::now();
            let result = extract_in_process(&bytes);
            let name = path.file_name().unwrap().to_string_lossy();
            match result {
                Ok(doc) => {
                    ok += 1;
                    let chars: usize = doc.pages.iter().map(|p| p.chars().count()).sum();
                    let blank = doc.pages.iter().filter(|p| p.trim().is_empty()).count();
                    let sample: String = doc.text().chars().take(70).collect();
                    eprintln!(
                        "{name}: {} pages ({blank} blank), {chars} chars, {:?}, title {:?}, failed {:?}, {:.2?}\n    {sample:?}",
                        doc.pages.len(),
                        doc.metadata.get("page_count"),
                        doc.title,
                        doc.metadata.get("failed_pages"),
                        started.elapsed(),
                    );
                }
                Err(e) => eprintln!("{name}: ERROR {e} ({:.2?})", started.elapsed()),
            }
        }
        assert!(ok > 0, "no PDF of the corpus could be extracted");
    }
}
