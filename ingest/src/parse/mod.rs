//! Parsing: bytes of one file become a [`ParsedDocument`] (title, pages of text, headings,
//! metadata, attachments) or a [`ParseError`] that names what is wrong with that one file.
//!
//! PDF extraction runs in a child process (see [`pdf`]) because pdf-extract can panic, abort or
//! loop forever on hostile fonts; OCR and the recovery of damaged PDFs run Tesseract and
//! poppler's tools as processes of their own, a time limit per page (see [`ocr`]); every other
//! format is parsed in-process by maintained crates (office packages with `zip` and
//! `quick-xml`, see [`office`]; Outlook messages with `cfb`, see [`msg`]; workbooks
//! with `calamine` and `csv`, see [`sheet`]; RTF with `rtf-parser`, see [`rtf`]).

mod columns;
pub mod email;
pub mod html;
pub mod msg;
pub mod ocr;
pub mod office;
mod ole;
mod outline;
pub mod pdf;
pub mod rtf;
pub mod sheet;
pub mod text;

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a file is, decided from its name and its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocumentKind {
    Pdf,
    Text,
    Markdown,
    Html,
    Email,
    /// Outlook message (.msg).
    Msg,
    /// Word (.docx).
    Docx,
    /// OpenDocument text (.odt).
    Odt,
    /// PowerPoint (.pptx).
    Pptx,
    /// OpenDocument presentation (.odp).
    Odp,
    /// Excel workbook (.xlsx, .xlsm).
    Xlsx,
    /// Excel 97-2003 workbook (.xls).
    Xls,
    /// OpenDocument spreadsheet (.ods).
    Ods,
    /// Delimited text (.csv, .tsv).
    Csv,
    /// Rich Text Format (.rtf).
    Rtf,
    /// Images, read by OCR.
    Png,
    Jpeg,
    Tiff,
}

impl DocumentKind {
    /// The MIME type recorded for documents of this kind.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Text => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
            Self::Email => "message/rfc822",
            Self::Msg => "application/vnd.ms-outlook",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Self::Odt => "application/vnd.oasis.opendocument.text",
            Self::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Self::Odp => "application/vnd.oasis.opendocument.presentation",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Xls => "application/vnd.ms-excel",
            Self::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Self::Csv => "text/csv",
            Self::Rtf => "application/rtf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Tiff => "image/tiff",
        }
    }

    /// Every kind Enclave reads.
    pub const ALL: [DocumentKind; 18] = [
        Self::Pdf,
        Self::Text,
        Self::Markdown,
        Self::Html,
        Self::Email,
        Self::Msg,
        Self::Docx,
        Self::Odt,
        Self::Pptx,
        Self::Odp,
        Self::Xlsx,
        Self::Xls,
        Self::Ods,
        Self::Csv,
        Self::Rtf,
        Self::Png,
        Self::Jpeg,
        Self::Tiff,
    ];

    /// What a person calls this kind.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pdf => "PDF",
            Self::Text => "Text",
            Self::Markdown => "Markdown",
            Self::Html => "HTML",
            Self::Email => "E-mail",
            Self::Msg => "Outlook message",
            Self::Docx => "Word",
            Self::Odt => "OpenDocument text",
            Self::Pptx => "PowerPoint",
            Self::Odp => "OpenDocument presentation",
            Self::Xlsx => "Excel",
            Self::Xls => "Excel 97-2003",
            Self::Ods => "OpenDocument spreadsheet",
            Self::Csv => "CSV",
            Self::Rtf => "RTF",
            Self::Png => "PNG image",
            Self::Jpeg => "JPEG image",
            Self::Tiff => "TIFF image",
        }
    }

    /// The extension an original of this kind is stored with.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Text => "txt",
            Self::Markdown => "md",
            Self::Html => "html",
            Self::Email => "eml",
            Self::Msg => "msg",
            Self::Docx => "docx",
            Self::Odt => "odt",
            Self::Pptx => "pptx",
            Self::Odp => "odp",
            Self::Xlsx => "xlsx",
            Self::Xls => "xls",
            Self::Ods => "ods",
            Self::Csv => "csv",
            Self::Rtf => "rtf",
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Tiff => "tiff",
        }
    }

    /// What a citation calls one of this kind's pages: a slide, a sheet (named by its section:
    /// the sheet and its rows), a section (a word-processor document has no pages: its
    /// heading), or a page.
    pub fn page_noun(self) -> &'static str {
        match self {
            Self::Pptx | Self::Odp => "slide",
            Self::Xlsx | Self::Xls | Self::Ods | Self::Csv => "sheet",
            Self::Docx | Self::Odt => "section",
            _ => "page",
        }
    }

    /// True for kinds whose text comes from OCR alone.
    pub fn is_image(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg | Self::Tiff)
    }

    /// The kind recorded with this MIME type.
    pub fn of_mime_type(mime: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.mime_type() == mime)
    }

    /// The supported extensions, for messages: `.pdf, .txt, ...`.
    pub fn supported() -> String {
        Self::ALL
            .iter()
            .map(|k| format!(".{}", k.extension()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Decides the kind from the file name's extension, falling back on magic bytes (`%PDF-`)
    /// for files without a known extension. `None` means the type is unsupported.
    pub fn detect(name: &Path, head: &[u8]) -> Option<Self> {
        let ext = name
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("pdf") => Some(Self::Pdf),
            Some("txt" | "text") => Some(Self::Text),
            Some("md" | "markdown") => Some(Self::Markdown),
            Some("html" | "htm" | "xhtml") => Some(Self::Html),
            Some("eml") => Some(Self::Email),
            Some("msg") => Some(Self::Msg),
            Some("docx") => Some(Self::Docx),
            Some("odt") => Some(Self::Odt),
            Some("pptx") => Some(Self::Pptx),
            Some("odp") => Some(Self::Odp),
            Some("xlsx" | "xlsm") => Some(Self::Xlsx),
            Some("xls") => Some(Self::Xls),
            Some("ods") => Some(Self::Ods),
            Some("csv" | "tsv") => Some(Self::Csv),
            Some("rtf") => Some(Self::Rtf),
            Some("png") => Some(Self::Png),
            Some("jpg" | "jpeg") => Some(Self::Jpeg),
            Some("tif" | "tiff") => Some(Self::Tiff),
            _ if head.starts_with(b"%PDF-") => Some(Self::Pdf),
            _ if head.starts_with(b"{\\rtf") => Some(Self::Rtf),
            _ if head.starts_with(b"\x89PNG\r\n\x1a\n") => Some(Self::Png),
            _ if head.starts_with(&[0xFF, 0xD8, 0xFF]) => Some(Self::Jpeg),
            _ if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") => Some(Self::Tiff),
            _ => None,
        }
    }

    /// Kind of an email attachment from its MIME type and file name.
    pub fn from_mime(mime: &str, name: &Path) -> Option<Self> {
        match mime.to_ascii_lowercase().as_str() {
            "application/pdf" => Some(Self::Pdf),
            "text/plain" => Some(Self::Text),
            "text/markdown" => Some(Self::Markdown),
            "text/html" => Some(Self::Html),
            "message/rfc822" => Some(Self::Email),
            "text/rtf" => Some(Self::Rtf),
            m => Self::of_mime_type(m).or_else(|| Self::detect(name, &[])),
        }
    }
}

/// A heading found in the text: where it starts (char offset into the document text, see
/// [`ParsedDocument::text`]), its level (1 = top) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heading {
    pub offset: usize,
    pub level: u8,
    pub title: String,
}

/// A file carried inside another (an email attachment) that becomes a child document.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    pub mime_type: String,
    pub bytes: Vec<u8>,
}

/// The result of parsing one file.
#[derive(Debug, Clone, Default)]
pub struct ParsedDocument {
    /// Title from the document itself (PDF info, `<title>`, first `#` heading, email subject);
    /// `None` lets the caller fall back on the file name.
    pub title: Option<String>,
    /// Text per page, in order. Formats without pages have exactly one page.
    pub pages: Vec<String>,
    /// Headings, offsets into [`ParsedDocument::text`].
    pub headings: Vec<Heading>,
    /// Format-specific metadata (email: from, to, cc, date, subject; PDF: author, ...).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Embedded files that become child documents (email attachments).
    pub attachments: Vec<Attachment>,
    /// True when the text is Markdown (headings as `#` lines): chunked with a Markdown-aware splitter.
    pub markdown: bool,
    /// Pages (1-based) that hold an image but (almost) no text: a scan, for OCR
    /// ([`ocr::complete_pdf`]).
    pub scanned_pages: Vec<usize>,
}

/// Pages are joined by this separator to form the document text that chunk offsets point into.
pub const PAGE_SEPARATOR: &str = "\n\n";

impl ParsedDocument {
    /// The whole document text: pages joined by [`PAGE_SEPARATOR`].
    pub fn text(&self) -> String {
        self.pages.join(PAGE_SEPARATOR)
    }

    /// Char offset of the start of each page in [`ParsedDocument::text`].
    pub fn page_starts(&self) -> Vec<usize> {
        let sep = PAGE_SEPARATOR.chars().count();
        let mut starts = Vec::with_capacity(self.pages.len());
        let mut at = 0;
        for p in &self.pages {
            starts.push(at);
            at += p.chars().count() + sep;
        }
        starts
    }

    /// True when no page holds any non-whitespace character.
    pub fn is_blank(&self) -> bool {
        self.pages.iter().all(|p| p.trim().is_empty())
    }
}

/// Why one file could not be parsed. Each variant's message names the problem for a curator.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParseError {
    #[error("unsupported type: {0}")]
    Unsupported(String),
    #[error("empty file")]
    Empty,
    #[error("no extractable text (no text layer, and OCR found none or is off)")]
    NoText,
    /// OCR or PDF recovery could not run: a tool is missing, failed or ran out of time.
    #[error("OCR failed: {0}")]
    Ocr(String),
    #[error("email has no body text and no attachment that can be indexed")]
    EmptyEmail,
    #[error("encrypted PDF: cannot be read without its password")]
    Encrypted,
    /// A password-protected document other than a PDF: what it is.
    #[error("password-protected {0}: cannot be read without its password")]
    Protected(String),
    #[error("malformed {kind}: {reason}")]
    Malformed { kind: String, reason: String },
    #[error("PDF extraction did not finish within {0} s and was stopped")]
    Timeout(u64),
    #[error("PDF extraction crashed: {0}")]
    Crashed(String),
    #[error("file too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
}
