//! HTML files, parsed with `scraper` (html5ever, the browsers' parsing algorithm).
//!
//! Only visible text is kept: `<script>`, `<style>`, `<noscript>`, `<template>`, `<svg>`,
//! embedded objects, elements with the `hidden` attribute or an inline `display: none`, and the
//! whole `<head>` are skipped (the `<title>` becomes the document title). The text is rendered
//! as light Markdown so the chunker can break at headings: blocks are separated by blank lines,
//! `h1`–`h6` become `#` lines, list items `- ` lines, table rows `cell | cell` lines and `<pre>`
//! fenced code blocks. Runs of whitespace inside inline text collapse to one space.

use mail_parser::decoders::charsets::map::charset_decoder;
use scraper::{ElementRef, Html, Node, Selector};

use super::{Heading, ParseError, ParsedDocument};

/// Parses an HTML document into one Markdown page with its headings (char offsets into the
/// page) and its title (`<title>`, else the first `h1`).
pub fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let source = decode_html(bytes);
    let (text, headings, title) = render(&source);
    if text.trim().is_empty() {
        return Err(ParseError::NoText);
    }
    Ok(ParsedDocument {
        title,
        pages: vec![text],
        headings,
        markdown: true,
        ..ParsedDocument::default()
    })
}

/// Renders an HTML document (already decoded) to Markdown text, returning the text, its
/// headings and the document title. Used by the email parser for HTML-only messages.
pub(crate) fn render(source: &str) -> (String, Vec<Heading>, Option<String>) {
    let document = Html::parse_document(source);
    let mut renderer = Renderer::default();
    renderer.walk(document.root_element());
    renderer.finish();
    let title = document_title(&document).or_else(|| renderer.first_h1.clone());
    (renderer.out, renderer.headings, title)
}

/// The text of the document's `<title>`, whitespace collapsed; `None` when absent or blank.
fn document_title(document: &Html) -> Option<String> {
    let selector = Selector::parse("head title").ok()?;
    let title = document.select(&selector).next()?;
    let collapsed = collapse_whitespace(&title.text().collect::<String>());
    (!collapsed.is_empty()).then_some(collapsed)
}

fn collapse_whitespace(s: &str) -> String {
    s.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes HTML bytes: a byte-order mark wins, then valid UTF-8, then the charset declared in
/// the first 1024 bytes (`<meta charset=...>` or `content="...; charset=..."`), then
/// windows-1252 (the web's default for undeclared legacy pages).
fn decode_html(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest).into_owned();
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return super::text::decode_text(bytes).unwrap_or_default();
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let head = &bytes[..bytes.len().min(1024)];
    let decoder = declared_charset(head)
        .and_then(charset_decoder)
        .or_else(|| charset_decoder(b"windows-1252"));
    match decoder {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The charset name after the first `charset=` in `head`, without quotes.
fn declared_charset(head: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"charset=";
    let at = head
        .windows(KEY.len())
        .position(|w| w.eq_ignore_ascii_case(KEY))?;
    let rest = &head[at + KEY.len()..];
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
        .count();
    (len > 0).then(|| &rest[..len])
}

/// Elements whose content is never visible text.
fn is_skipped(name: &str) -> bool {
    matches!(
        name,
        "head"
            | "script"
            | "style"
            | "noscript"
            | "template"
            | "svg"
            | "iframe"
            | "object"
            | "embed"
            | "canvas"
            | "video"
            | "audio"
            | "select"
            | "datalist"
    )
}

/// Elements that start and end a block of text.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "body"
            | "caption"
            | "center"
            | "dd"
            | "details"
            | "dialog"
            | "dir"
            | "div"
            | "dl"
            | "dt"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "header"
            | "hgroup"
            | "hr"
            | "html"
            | "legend"
            | "main"
            | "menu"
            | "nav"
            | "p"
            | "section"
            | "summary"
            | "table"
            | "tbody"
            | "tfoot"
            | "thead"
            | "textarea"
    )
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// True for elements hidden by the `hidden` attribute or an inline `display: none`.
fn is_hidden(element: &scraper::node::Element) -> bool {
    if element.attr("hidden").is_some() {
        return true;
    }
    element.attr("style").is_some_and(|style| {
        let compact: String = style
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        compact.contains("display:none")
    })
}

/// Builds the Markdown text while the DOM is walked.
#[derive(Default)]
struct Renderer {
    /// The text produced so far (complete blocks only).
    out: String,
    /// `out.chars().count()`, kept up to date.
    out_chars: usize,
    headings: Vec<Heading>,
    first_h1: Option<String>,
    /// Inline text of the block being built; lines are separated by `\n` (from `<br>`).
    inline: String,
    /// Whitespace was seen since the last character of `inline`.
    space_pending: bool,
    /// Level of the heading being built, with the nesting depth of heading elements.
    heading: Option<u8>,
    heading_depth: usize,
    /// Raw text of the `<pre>` being built, with the nesting depth of `pre` elements.
    pre: String,
    pre_depth: usize,
    /// Open list items: whether each one has emitted its first block yet.
    items: Vec<bool>,
    /// Open table rows: a row's cells are joined on one line.
    row_depth: usize,
    /// The last emitted block was a list item or a table row (tight separation).
    last_tight: bool,
}

impl Renderer {
    /// Walks the tree without recursion (deeply nested documents must not overflow the stack).
    fn walk(&mut self, root: ElementRef<'_>) {
        let root = *root;
        let mut node = root;
        'walk: loop {
            if self.open(node.value())
                && let Some(child) = node.first_child()
            {
                node = child;
                continue;
            }
            loop {
                self.close(node.value());
                if node == root {
                    break 'walk;
                }
                if let Some(sibling) = node.next_sibling() {
                    node = sibling;
                    break;
                }
                match node.parent() {
                    Some(parent) => node = parent,
                    None => break 'walk,
                }
            }
        }
    }

    /// Handles the start of a node; returns whether its children are to be visited.
    fn open(&mut self, node: &Node) -> bool {
        match node {
            Node::Text(text) => {
                self.text(text);
                false
            }
            Node::Element(element) => {
                let name = element.name();
                if is_skipped(name) || is_hidden(element) {
                    return false;
                }
                self.open_element(name);
                true
            }
            _ => false,
        }
    }

    /// Handles the end of a node (called for every node `open` was called for).
    fn close(&mut self, node: &Node) {
        if let Node::Element(element) = node {
            let name = element.name();
            if !(is_skipped(name) || is_hidden(element)) {
                self.close_element(name);
            }
        }
    }

    fn open_element(&mut self, name: &str) {
        if self.pre_depth > 0 {
            if name == "pre" {
                self.pre_depth += 1;
            } else if name == "br" {
                self.pre.push('\n');
            }
            return;
        }
        if self.heading.is_some() {
            if heading_level(name).is_some() {
                self.heading_depth += 1;
            } else if name == "br" || is_block(name) {
                self.space_pending = true;
            }
            return;
        }
        if let Some(level) = heading_level(name) {
            self.flush();
            self.heading = Some(level);
            self.heading_depth = 1;
            return;
        }
        match name {
            "br" => {
                self.inline.push('\n');
                self.space_pending = false;
            }
            "pre" => {
                self.flush();
                self.pre_depth = 1;
                self.pre.clear();
            }
            "li" => {
                self.flush();
                self.items.push(false);
            }
            "ul" | "ol" => self.flush(),
            "tr" => {
                self.flush();
                self.row_depth += 1;
            }
            "td" | "th" => {
                if self.row_depth > 0 && !self.inline.trim().is_empty() {
                    self.inline.push_str(" | ");
                    self.space_pending = false;
                } else {
                    self.space_pending = true;
                }
            }
            _ if is_block(name) => self.flush(),
            _ => {}
        }
    }

    fn close_element(&mut self, name: &str) {
        if self.pre_depth > 0 {
            if name == "pre" {
                self.pre_depth -= 1;
                if self.pre_depth == 0 {
                    self.emit_pre();
                }
            }
            return;
        }
        if let Some(level) = self.heading {
            if heading_level(name).is_some() {
                self.heading_depth -= 1;
                if self.heading_depth == 0 {
                    self.emit_heading(level);
                }
            } else if is_block(name) {
                self.space_pending = true;
            }
            return;
        }
        match name {
            "li" => {
                self.flush();
                self.items.pop();
            }
            "ul" | "ol" => self.flush(),
            "tr" => {
                self.flush();
                self.row_depth = self.row_depth.saturating_sub(1);
            }
            "td" | "th" => self.space_pending = true,
            _ if is_block(name) => self.flush(),
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.pre_depth > 0 {
            self.pre.extend(
                text.chars()
                    .filter(|&c| c == '\n' || c == '\t' || !c.is_control()),
            );
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                self.space_pending = true;
            } else if !c.is_control() {
                if self.space_pending && !self.inline.is_empty() && !self.inline.ends_with('\n') {
                    self.inline.push(' ');
                }
                self.space_pending = false;
                self.inline.push(c);
            }
        }
    }

    /// Ends the block being built: its inline text becomes a paragraph, list item or table row.
    fn flush(&mut self) {
        let inline = std::mem::take(&mut self.inline);
        self.space_pending = false;
        let lines: Vec<&str> = inline
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return;
        }
        let depth = self.items.len();
        let (first_prefix, rest_prefix) = match self.items.last_mut() {
            Some(started) => {
                let indent = "  ".repeat(depth - 1);
                let first = if *started {
                    format!("{indent}  ")
                } else {
                    format!("{indent}- ")
                };
                *started = true;
                (first, format!("{indent}  "))
            }
            None => (String::new(), String::new()),
        };
        let mut block = String::new();
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                block.push('\n');
            }
            let prefix = if i == 0 { &first_prefix } else { &rest_prefix };
            block.push_str(prefix);
            // A paragraph line starting with `#` must not read as a Markdown heading.
            if prefix.is_empty() && line.starts_with('#') {
                block.push('\\');
            }
            block.push_str(line);
        }
        let tight = depth > 0 || self.row_depth > 0;
        self.emit(&block, tight);
    }

    fn emit_heading(&mut self, level: u8) {
        let title = std::mem::take(&mut self.inline)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        self.heading = None;
        self.space_pending = false;
        if title.is_empty() {
            return;
        }
        let line = format!("{} {title}", "#".repeat(usize::from(level)));
        let offset = self.emit(&line, false);
        if level == 1 && self.first_h1.is_none() {
            self.first_h1 = Some(title.clone());
        }
        self.headings.push(Heading {
            offset,
            level,
            title,
        });
    }

    fn emit_pre(&mut self) {
        let raw = std::mem::take(&mut self.pre);
        // The first newline right after `<pre>` is not content (the parser usually drops it).
        let raw = raw.strip_prefix('\n').unwrap_or(&raw);
        let body: Vec<&str> = raw.trim_end().split('\n').map(str::trim_end).collect();
        let body = body.join("\n");
        if body.trim().is_empty() {
            return;
        }
        let longest_run = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest_run.max(2) + 1);
        let block = format!("{fence}\n{body}\n{fence}");
        self.emit(&block, false);
    }

    /// Appends a block after the right separator; returns the char offset where it starts.
    fn emit(&mut self, block: &str, tight: bool) -> usize {
        if !self.out.is_empty() {
            let sep = if tight && self.last_tight {
                "\n"
            } else {
                "\n\n"
            };
            self.push_out(sep);
        }
        let offset = self.out_chars;
        self.push_out(block);
        self.last_tight = tight;
        offset
    }

    fn push_out(&mut self, s: &str) {
        self.out.push_str(s);
        self.out_chars += s.chars().count();
    }

    /// Flushes whatever is still open (unclosed elements in a truncated document).
    fn finish(&mut self) {
        if self.pre_depth > 0 {
            self.pre_depth = 0;
            self.emit_pre();
        }
        if let Some(level) = self.heading {
            self.emit_heading(level);
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heading_line(doc: &ParsedDocument, h: &Heading) -> String {
        doc.text()
            .chars()
            .skip(h.offset)
            .take_while(|&c| c != '\n')
            .collect()
    }

    #[test]
    fn renders_visible_text_as_markdown() {
        let html = r#"<!DOCTYPE html>
<html><head><title>  The   Page </title>
<style>body { color: red }</style><script>var x = "<p>no</p>";</script></head>
<body>
  <h1>Main   heading</h1>
  <p>First    paragraph
     with <b>bold</b> and <a href="x">a link</a>.</p>
  <noscript>enable js</noscript>
  <template><p>template text</p></template>
  <svg><text>svg text</text></svg>
  <div hidden>hidden text</div>
  <div style="display: none">invisible</div>
  <h2>Section <em>two</em></h2>
  <ul><li>one</li><li>two <ul><li>nested</li></ul></li></ul>
  <p>line<br>break</p>
  <table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>
  <pre>
fn main() {
    # not a heading
}
</pre>
  <p># hash paragraph</p>
</body></html>"#;
        let doc = parse(html.as_bytes()).unwrap();
        assert!(doc.markdown);
        assert_eq!(doc.title.as_deref(), Some("The Page"));
        let expected = "# Main heading\n\n\
First paragraph with bold and a link.\n\n\
## Section two\n\n\
- one\n- two\n  - nested\n\n\
line\nbreak\n\n\
A | B\n1 | 2\n\n\
```\nfn main() {\n    # not a heading\n}\n```\n\n\
\\# hash paragraph";
        assert_eq!(doc.pages[0], expected);
        let hs: Vec<(u8, &str)> = doc
            .headings
            .iter()
            .map(|h| (h.level, h.title.as_str()))
            .collect();
        assert_eq!(hs, vec![(1, "Main heading"), (2, "Section two")]);
        for h in &doc.headings {
            assert_eq!(
                heading_line(&doc, h),
                format!("{} {}", "#".repeat(h.level.into()), h.title)
            );
        }
    }

    #[test]
    fn heading_offsets_count_chars_not_bytes() {
        let doc = parse("<p>ééé €€</p><h3>Ünïcode</h3>".as_bytes()).unwrap();
        assert_eq!(doc.pages[0], "ééé €€\n\n### Ünïcode");
        assert_eq!(doc.headings[0].offset, 8);
        assert_eq!(heading_line(&doc, &doc.headings[0]), "### Ünïcode");
    }

    #[test]
    fn title_falls_back_on_first_h1() {
        let doc = parse(b"<body><h2>Sub</h2><h1>Real Title</h1><p>x</p></body>").unwrap();
        assert_eq!(doc.title.as_deref(), Some("Real Title"));
        let doc = parse(b"<p>no headings</p>").unwrap();
        assert_eq!(doc.title, None);
    }

    #[test]
    fn empty_and_invisible_documents() {
        assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse(b"<html><head><title>T</title><script>x()</script></head><body>  </body></html>")
                .unwrap_err(),
            ParseError::NoText
        );
    }

    #[test]
    fn legacy_charset_is_decoded() {
        let html =
            b"<html><head><meta charset=\"iso-8859-1\"></head><body><p>caf\xE9</p></body></html>";
        let doc = parse(html).unwrap();
        assert_eq!(doc.pages[0], "caf\u{e9}");
        // Undeclared and invalid UTF-8: windows-1252.
        let doc = parse(b"<p>\x93quoted\x94</p>").unwrap();
        assert_eq!(doc.pages[0], "\u{201c}quoted\u{201d}");
    }

    #[test]
    fn deeply_nested_document_does_not_overflow() {
        let depth = 20_000;
        let mut html = "<div>".repeat(depth);
        html.push_str("deep text");
        html.push_str(&"</div>".repeat(depth));
        let doc = parse(html.as_bytes()).unwrap();
        assert_eq!(doc.pages[0], "deep text");
    }

    #[test]
    fn list_item_with_paragraphs_and_unclosed_tags() {
        let doc = parse(b"<ol><li><p>first para</p><p>second para</p></li><li>next").unwrap();
        assert_eq!(doc.pages[0], "- first para\n  second para\n- next");
    }
}
