//! Text that has no text layer, and PDFs the first extractor cannot read.
//!
//! - **OCR**: images (.png, .jpg, .tiff) and the pages of a PDF that have an image but (almost)
//!   no text (fewer than [`super::pdf::SCAN_MAX_CHARS`] letters and digits) go through
//!   Tesseract; a PDF page is first rendered by poppler's `pdftoppm`. The
//!   text layer of the other pages is kept as it is. The pages read by OCR are recorded in the
//!   document's metadata (`ocr_pages`) so that a passage can say where its text came from.
//! - **Recovery**: a PDF that the extraction child could not read (malformed, crashed, stopped
//!   at its time limit, no text found) goes to poppler's `pdftotext`, which rebuilds broken
//!   cross-reference tables; pages it cannot read either go through OCR. A document read this
//!   way records `recovered_by` and the first extractor's error (`recovered_from`). When neither
//!   reads it, the first extractor's error stands.
//!
//! Every tool runs as its own process with a time limit per page (per image), killed when it
//! runs over: a page that hangs or crashes a tool fails that page (listed in `failed_pages`),
//! never the worker. The tools are Debian's `tesseract-ocr` (with its language packs) and
//! `poppler-utils`; a missing tool is named in the error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ParseError, ParsedDocument};

/// How OCR and recovery run.
#[derive(Debug, Clone)]
pub struct OcrOptions {
    /// Read images and image-only PDF pages by OCR.
    pub enabled: bool,
    /// Tesseract's languages, `+`-joined (`eng`, `eng+deu`).
    pub languages: String,
    /// Resolution PDF pages are rendered at for OCR.
    pub dpi: u32,
    /// Time one page (one image) may take to render and read.
    pub page_timeout: Duration,
    /// Pages of one PDF read at the same time (at least 1).
    pub page_workers: usize,
    /// Give PDFs the first extractor cannot read to `pdftotext`.
    pub recover_pdfs: bool,
    /// Where `tesseract`, `pdftoppm` and `pdftotext` are (`None`: the `PATH`).
    pub tools_dir: Option<PathBuf>,
}

impl Default for OcrOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            languages: "eng".into(),
            dpi: 200,
            page_timeout: Duration::from_secs(60),
            page_workers: 1,
            recover_pdfs: true,
            tools_dir: None,
        }
    }
}

impl OcrOptions {
    fn program(&self, name: &str) -> PathBuf {
        match &self.tools_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }
}

/// What a tool run came to.
#[derive(Debug)]
enum ToolError {
    /// The program is not installed (or not where the settings say).
    Missing(String),
    Timeout,
    Failed(String),
}

impl ToolError {
    fn into_parse_error(self, what: &str, timeout: Duration) -> ParseError {
        match self {
            Self::Missing(program) => ParseError::Ocr(format!(
                "{program} is not installed (Debian: tesseract-ocr and poppler-utils)"
            )),
            Self::Timeout => ParseError::Ocr(format!(
                "{what} did not finish within {} s (ocr.page_timeout_secs)",
                timeout.as_secs()
            )),
            Self::Failed(m) => ParseError::Ocr(format!("{what}: {m}")),
        }
    }
}

/// Runs `program args`, feeding `input` to its stdin; its stdout, or why there is none. The
/// process is killed once `timeout` has passed.
fn run_tool(
    program: &Path,
    args: &[&str],
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<u8>, ToolError> {
    let mut child = Command::new(program)
        .args(args)
        // One thread per Tesseract: documents are already read side by side.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ToolError::Missing(program.display().to_string()),
            _ => ToolError::Failed(format!("could not start {}: {e}", program.display())),
        })?;
    let writer = child.stdin.take().zip(input).map(|(mut stdin, bytes)| {
        std::thread::spawn(move || {
            // A tool that exits early closes the pipe; its exit status tells why.
            let _ = stdin.write_all(&bytes);
        })
    });
    let reader = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolError::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(ToolError::Failed(e.to_string())),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let err = String::from_utf8_lossy(&err);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(ToolError::Failed(format!(
            "{} exited with {status}: {last}",
            program.display()
        )))
    }
}

/// Tesseract over one image (any format Leptonica reads: PNG, JPEG, TIFF, PNM); the text of
/// each of its pages (a multi-page TIFF has several).
fn tesseract(image: Vec<u8>, options: &OcrOptions) -> Result<Vec<String>, ToolError> {
    let out = run_tool(
        &options.program("tesseract"),
        &["stdin", "stdout", "-l", &options.languages, "--psm", "3"],
        Some(image),
        options.page_timeout,
    )?;
    let text = String::from_utf8_lossy(&out);
    // Tesseract ends every page with a form feed.
    let mut pages: Vec<String> = text.split('\u{c}').map(clean_ocr_text).collect();
    if pages.len() > 1 && pages.last().is_some_and(String::is_empty) {
        pages.pop();
    }
    Ok(pages)
}

/// OCR text: lines trimmed, runs of blank lines collapsed to one.
fn clean_ocr_text(raw: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in raw.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// Reads an image by OCR: one page per image page. Nothing but whitespace is
/// [`ParseError::NoText`].
pub fn parse_image(bytes: &[u8], options: &OcrOptions) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if !options.enabled {
        return Err(ParseError::Ocr("OCR is off (ocr.enabled)".into()));
    }
    let pages = tesseract(bytes.to_vec(), options)
        .map_err(|e| e.into_parse_error("reading the image", options.page_timeout))?;
    let mut doc = ParsedDocument {
        pages,
        ..ParsedDocument::default()
    };
    if doc.is_blank() {
        return Err(ParseError::NoText);
    }
    let numbers = (1..=doc.pages.len()).map(Value::from).collect();
    doc.metadata
        .insert("ocr_pages".into(), Value::Array(numbers));
    Ok(doc)
}

/// Letters and digits in a page's text.
fn text_chars(text: &str) -> usize {
    text.chars().filter(|c| c.is_alphanumeric()).count()
}

/// Finishes a PDF after the extraction child: OCR of its scanned pages, or recovery by
/// `pdftotext` (and OCR) when the child could not read it. `progress` is told (pages read by
/// OCR, pages to read) as OCR goes. Blocking: run it off the async runtime.
pub fn complete_pdf(
    bytes: &[u8],
    extracted: Result<ParsedDocument, ParseError>,
    options: &OcrOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<ParsedDocument, ParseError> {
    let recoverable = matches!(
        extracted,
        Err(ParseError::Malformed { .. }
            | ParseError::Crashed(_)
            | ParseError::Timeout(_)
            | ParseError::NoText)
    );
    let needs_tools = match &extracted {
        Ok(doc) => {
            !doc.scanned_pages.is_empty() && options.enabled
                || failed_pages(doc).next().is_some() && options.recover_pdfs
        }
        Err(_) => recoverable && options.recover_pdfs,
    };
    if !needs_tools {
        return extracted.and_then(|doc| {
            if doc.is_blank() {
                Err(ParseError::NoText)
            } else {
                Ok(doc)
            }
        });
    }
    let file = tempfile::Builder::new()
        .prefix("enclave-ocr-")
        .suffix(".pdf")
        .tempfile()
        .and_then(|mut f| f.write_all(bytes).map(|()| f))
        .map_err(|e| ParseError::Ocr(format!("could not write a temporary file: {e}")))?;
    let path = file.path();
    match extracted {
        Ok(mut doc) => {
            // Pages the first extractor failed on: poppler's text, when it has some.
            if options.recover_pdfs {
                let failed: Vec<usize> = failed_pages(&doc).collect();
                let mut still_failed = Vec::new();
                for n in failed {
                    match pdftotext(path, Some(n), options) {
                        Ok(pages) if pages.first().is_some_and(|p| text_chars(p) > 0) => {
                            doc.pages[n - 1] = pages.into_iter().next().unwrap_or_default();
                            push_number(&mut doc, "recovered_pages", n);
                        }
                        _ => still_failed.push(n),
                    }
                }
                set_numbers(&mut doc, "failed_pages", &still_failed);
            }
            if options.enabled {
                let pages = std::mem::take(&mut doc.scanned_pages);
                ocr_pages(&mut doc, path, &pages, options, progress)?;
            }
            if doc.is_blank() {
                return Err(ParseError::NoText);
            }
            Ok(doc)
        }
        Err(first) => {
            let mut doc = match pdftotext(path, None, options) {
                Ok(pages) if !pages.is_empty() => ParsedDocument {
                    pages,
                    ..ParsedDocument::default()
                },
                // Poppler cannot read it either: the first extractor's reason stands.
                _ => return Err(first),
            };
            let had_text = !doc.is_blank();
            let blank: Vec<usize> = (1..=doc.pages.len())
                .filter(|&n| text_chars(&doc.pages[n - 1]) < super::pdf::SCAN_MAX_CHARS)
                .collect();
            if options.enabled && !blank.is_empty() {
                // A missing tool or a page that fails leaves poppler's text as it is.
                if let Err(e) = ocr_pages(&mut doc, path, &blank, options, progress) {
                    tracing::warn!("OCR of a recovered PDF failed: {e}");
                }
            }
            if doc.is_blank() {
                return Err(first);
            }
            let by = if had_text { "pdftotext" } else { "ocr" };
            doc.metadata.insert("recovered_by".into(), Value::from(by));
            doc.metadata
                .insert("recovered_from".into(), Value::from(first.to_string()));
            doc.metadata
                .insert("page_count".into(), Value::from(doc.pages.len()));
            Ok(doc)
        }
    }
}

/// The pages the first extractor failed on (1-based), from `failed_pages`.
fn failed_pages(doc: &ParsedDocument) -> impl Iterator<Item = usize> + '_ {
    doc.metadata
        .get("failed_pages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .map(|n| n as usize)
        .filter(|&n| n >= 1 && n <= doc.pages.len())
}

fn push_number(doc: &mut ParsedDocument, key: &str, n: usize) {
    let entry = doc
        .metadata
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = entry {
        a.push(Value::from(n));
    }
}

fn set_numbers(doc: &mut ParsedDocument, key: &str, numbers: &[usize]) {
    if numbers.is_empty() {
        doc.metadata.remove(key);
    } else {
        let values = numbers.iter().map(|&n| Value::from(n)).collect();
        doc.metadata.insert(key.into(), Value::Array(values));
    }
}

/// Reads `pages` (1-based) of the PDF at `path` by OCR into `doc`, recording them in
/// `ocr_pages`; a page that fails is listed in `failed_pages`. Fails as a whole only when no
/// page could be read and the reason is a missing tool. `options.page_workers` pages are read
/// at the same time; `progress` is called on this thread as each one is done.
fn ocr_pages(
    doc: &mut ParsedDocument,
    path: &Path,
    pages: &[usize],
    options: &OcrOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<(), ParseError> {
    let mut failed: Vec<usize> = failed_pages(doc).collect();
    let mut read: Vec<usize> = Vec::new();
    let mut missing = None;
    progress(0, pages.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..options.page_workers.clamp(1, pages.len().max(1)) {
            let (tx, next, stop) = (tx.clone(), &next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(&n) = pages.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if tx.send((n, ocr_pdf_page(path, n, options))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (done, (n, result)) in rx.into_iter().enumerate() {
            match result {
                Ok(text) => {
                    if text_chars(&text) > 0 {
                        doc.pages[n - 1] = text;
                        read.push(n);
                    }
                    failed.retain(|&f| f != n);
                }
                Err(ToolError::Missing(program)) => {
                    stop.store(true, Ordering::Relaxed);
                    missing = Some(program);
                }
                Err(e) => {
                    tracing::warn!(page = n, "OCR of a PDF page failed: {e:?}");
                    if !failed.contains(&n) {
                        failed.push(n);
                    }
                }
            }
            progress(done + 1, pages.len());
        }
    });
    if let Some(program) = missing {
        return Err(ToolError::Missing(program).into_parse_error("OCR", options.page_timeout));
    }
    read.sort_unstable();
    for n in read {
        push_number(doc, "ocr_pages", n);
    }
    failed.sort_unstable();
    set_numbers(doc, "failed_pages", &failed);
    Ok(())
}

/// Page `n` of the PDF at `path`, rendered by `pdftoppm` and read by Tesseract.
fn ocr_pdf_page(path: &Path, n: usize, options: &OcrOptions) -> Result<String, ToolError> {
    let started = Instant::now();
    let page = n.to_string();
    let dpi = options.dpi.to_string();
    let path = path.to_string_lossy();
    let image = run_tool(
        &options.program("pdftoppm"),
        &["-f", &page, "-l", &page, "-r", &dpi, "-gray", &path],
        None,
        options.page_timeout,
    )?;
    if image.is_empty() {
        return Err(ToolError::Failed(format!("pdftoppm rendered no page {n}")));
    }
    let left = options.page_timeout.saturating_sub(started.elapsed());
    let options = OcrOptions {
        page_timeout: left.max(Duration::from_secs(1)),
        ..options.clone()
    };
    Ok(tesseract(image, &options)?.join("\n\n"))
}

/// The text of every page (or of page `only`) by poppler's `pdftotext`, which reads many PDFs
/// whose cross-reference table is broken.
fn pdftotext(
    path: &Path,
    only: Option<usize>,
    options: &OcrOptions,
) -> Result<Vec<String>, ToolError> {
    let path = path.to_string_lossy();
    let page = only.map(|n| n.to_string());
    let mut args = vec!["-q", "-enc", "UTF-8"];
    if let Some(p) = &page {
        args.extend(["-f", p, "-l", p]);
    }
    args.extend([&*path, "-"]);
    // The whole document gets the time of a few pages; one page, one page's.
    let timeout = if only.is_some() {
        options.page_timeout
    } else {
        options.page_timeout * 4
    };
    let out = run_tool(&options.program("pdftotext"), &args, None, timeout)?;
    let text = String::from_utf8_lossy(&out);
    let mut pages: Vec<String> = text.split('\u{c}').map(super::pdf::clean_page).collect();
    // pdftotext ends every page with a form feed.
    if pages.last().is_some_and(String::is_empty) {
        pages.pop();
    }
    Ok(pages)
}

/// Character error rate of `read` against `truth`: the edit distance between the two over the
/// truth's length, both taken as letters and digits in lower case with words joined by single
/// spaces (layout and punctuation are not what OCR is judged on). How the tests and
/// `benches/formats.rs` compare OCR with a page's text layer.
pub fn character_error_rate(truth: &str, read: &str) -> f64 {
    fn normalized(text: &str) -> Vec<char> {
        text.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect::<String>()
            })
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .collect()
    }
    let (a, b) = (normalized(truth), normalized(read));
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_error_rate_ignores_layout_and_counts_edits() {
        assert_eq!(
            character_error_rate("The  Quick,\nfox.", "the quick fox"),
            0.0
        );
        // "quick fox" (9 characters) read as "quack fox": one substitution.
        assert!((character_error_rate("quick fox", "quack fox") - 1.0 / 9.0).abs() < 1e-9);
        assert_eq!(character_error_rate("abc", ""), 1.0);
    }

    #[test]
    fn ocr_text_is_cleaned() {
        assert_eq!(
            clean_ocr_text("  \nFirst line  \n\n\n\nSecond\nThird\n\n"),
            "First line\n\nSecond\nThird"
        );
    }

    #[test]
    fn a_missing_tool_is_named() {
        let options = OcrOptions {
            tools_dir: Some(PathBuf::from("/nonexistent")),
            ..OcrOptions::default()
        };
        let e = parse_image(b"\x89PNG", &options).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/tesseract is not installed"), "{e}");
    }

    #[test]
    fn a_tool_over_its_time_is_stopped() {
        let started = Instant::now();
        let e = run_tool(
            Path::new("sleep"),
            &["30"],
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, ToolError::Timeout), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
