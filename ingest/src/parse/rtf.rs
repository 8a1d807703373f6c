//! Rich Text Format (.rtf) with `rtf-parser`: the document's text as one page (RTF has no pages
//! a reader would cite; its page breaks depend on the printer).
//!
//! The parser recurses into groups, so a file whose groups nest deeper than [`MAX_DEPTH`] is
//! refused before parsing, by name: a hostile file cannot overflow the stack. A panic inside
//! the parser fails the document, never the worker.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::text::normalize_newlines;
use super::{ParseError, ParsedDocument};

/// The deepest group nesting read.
pub const MAX_DEPTH: usize = 256;

fn malformed(reason: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        kind: "RTF document".into(),
        reason: reason.into(),
    }
}

/// Parses an RTF file: one page, no title (the caller falls back on the file name).
pub fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    // RTF is 7-bit text; other characters are escapes the parser decodes.
    let source = String::from_utf8_lossy(bytes);
    if !source.trim_start().starts_with("{\\rtf") {
        return Err(malformed("no {\\rtf header: not an RTF file"));
    }
    let mut depth = 0usize;
    let mut escaped = false;
    for b in source.bytes() {
        match b {
            b'\\' => {
                escaped = !escaped;
                continue;
            }
            b'{' if !escaped => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(malformed(format!(
                        "groups nest deeper than {MAX_DEPTH} levels"
                    )));
                }
            }
            b'}' if !escaped => depth = depth.saturating_sub(1),
            _ => {}
        }
        escaped = false;
    }
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let tokens = rtf_parser::Lexer::scan(&source).map_err(|e| e.to_string())?;
        rtf_parser::Parser::new(tokens)
            .parse()
            .map(|doc| doc.get_text())
            .map_err(|e| e.to_string())
    }));
    let text = match parsed {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(malformed(e)),
        Err(_) => return Err(ParseError::Crashed("the RTF parser failed".into())),
    };
    let text = normalize_newlines(&text);
    // Paragraphs: runs of spaces collapsed, blank lines kept as paragraph breaks.
    let text = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    let doc = ParsedDocument {
        pages: vec![text.trim().to_string()],
        ..ParsedDocument::default()
    };
    if doc.is_blank() {
        return Err(ParseError::NoText);
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_a_small_document() {
        let doc = parse(
            br"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Records are kept {\b seven} years.\par Then shredded.\par}",
        )
        .unwrap();
        assert!(
            doc.pages[0].contains("Records are kept seven years."),
            "{:?}",
            doc.pages
        );
        assert!(doc.pages[0].contains("Then shredded."), "{:?}", doc.pages);
    }

    #[test]
    fn bad_rtf_fails_by_name() {
        assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
        let e = parse(b"plain text").unwrap_err().to_string();
        assert!(e.contains("not an RTF file"), "{e}");
        let deep = format!("{{\\rtf1 {}x{}}}", "{".repeat(10_000), "}".repeat(10_000));
        let e = parse(deep.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("nest deeper"), "{e}");
    }
}
