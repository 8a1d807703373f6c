//! Plain text and Markdown files.
//!
//! Both become one page. Bytes are decoded as UTF-8 (a byte-order mark is stripped; a UTF-16
//! byte-order mark selects UTF-16; invalid UTF-8 is replaced, never rejected), NUL characters
//! are dropped and line endings are normalised to `\n`. Markdown files additionally get their
//! ATX (`#`) headings recorded so the chunker can break at them.

use super::{Heading, ParseError, ParsedDocument};

/// Parses a plain text file: one page, no title (the caller falls back on the file name).
pub fn parse_text(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let text = decode_text(bytes)?;
    Ok(ParsedDocument {
        pages: vec![text],
        ..ParsedDocument::default()
    })
}

/// Parses a Markdown file: one page, `markdown = true`, headings from ATX `#` lines outside
/// fenced code blocks, title = the first level-1 heading.
pub fn parse_markdown(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let text = decode_text(bytes)?;
    let headings = markdown_headings(&text);
    let title = headings
        .iter()
        .find(|h| h.level == 1 && !h.title.is_empty())
        .map(|h| h.title.clone());
    Ok(ParsedDocument {
        title,
        pages: vec![text],
        headings,
        markdown: true,
        ..ParsedDocument::default()
    })
}

/// Decodes the bytes of a text file into normalised text; [`ParseError::Empty`] when nothing
/// but whitespace remains.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<String, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let decoded = decode_bytes(bytes);
    let text = normalize_newlines(&decoded);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(text)
}

/// UTF-8 (BOM stripped, invalid sequences replaced) or UTF-16 when the bytes start with a
/// UTF-16 byte-order mark.
fn decode_bytes(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest).into_owned();
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return decode_utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return decode_utf16(rest, u16::from_be_bytes);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Drops NUL characters and turns CRLF and lone CR line endings into LF.
pub(crate) fn normalize_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\0' => {}
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            c => out.push(c),
        }
    }
    out
}

/// The ATX headings of a Markdown text, with char offsets of their line starts. Lines inside
/// fenced code blocks (```` ``` ```` or `~~~`) are not headings.
pub(crate) fn markdown_headings(text: &str) -> Vec<Heading> {
    let mut headings = Vec::new();
    // The open fence: its character and length.
    let mut fence: Option<(char, usize)> = None;
    let mut offset = 0;
    for line in text.split('\n') {
        let line_chars = line.chars().count();
        let content = strip_indent(line);
        match (fence, content) {
            (Some((ch, len)), Some(content)) => {
                let run = content.chars().take_while(|&c| c == ch).count();
                if run >= len && content[run * ch.len_utf8()..].trim().is_empty() {
                    fence = None;
                }
            }
            (Some(_), None) => {}
            (None, Some(content)) => {
                if let Some(open) = fence_open(content) {
                    fence = Some(open);
                } else if let Some((level, title)) = atx_heading(content) {
                    headings.push(Heading {
                        offset,
                        level,
                        title,
                    });
                }
            }
            (None, None) => {}
        }
        offset += line_chars + 1;
    }
    headings
}

/// The line without its indentation when that is at most three spaces (more makes it an
/// indented code block, which holds neither headings nor fences).
fn strip_indent(line: &str) -> Option<&str> {
    let spaces = line.bytes().take_while(|&b| b == b' ').count();
    (spaces <= 3).then(|| &line[spaces..])
}

/// A fence opening: three or more backticks or tildes (a backtick fence's info string may not
/// contain a backtick).
fn fence_open(content: &str) -> Option<(char, usize)> {
    let ch = content.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let run = content.chars().take_while(|&c| c == ch).count();
    if run < 3 {
        return None;
    }
    if ch == '`' && content[run..].contains('`') {
        return None;
    }
    Some((ch, run))
}

/// An ATX heading: 1 to 6 `#` followed by a space, a tab or the end of the line. The title has
/// the optional closing `#` sequence removed.
fn atx_heading(content: &str) -> Option<(u8, String)> {
    let level = content.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &content[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut title = rest.trim();
    let without_closing = title.trim_end_matches('#');
    if without_closing.is_empty() {
        title = "";
    } else if without_closing.ends_with([' ', '\t']) {
        title = without_closing.trim_end();
    }
    let level = u8::try_from(level).ok()?;
    Some((level, title.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_strips_bom_nul_and_crlf() {
        let doc = parse_text(b"\xEF\xBB\xBFline one\r\nline\0 two\rthree\n").unwrap();
        assert_eq!(doc.pages, vec!["line one\nline two\nthree\n".to_string()]);
        assert_eq!(doc.title, None);
        assert!(!doc.markdown);
        assert!(doc.headings.is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let doc = parse_text(b"caf\xE9 au lait").unwrap();
        assert_eq!(doc.pages[0], "caf\u{FFFD} au lait");
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "h\u{e9}llo".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(parse_text(&bytes).unwrap().pages[0], "h\u{e9}llo");
    }

    #[test]
    fn empty_and_whitespace_only_are_empty() {
        assert_eq!(parse_text(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(parse_text(b" \r\n\t\n").unwrap_err(), ParseError::Empty);
        assert_eq!(parse_text(b"\0\0\n").unwrap_err(), ParseError::Empty);
        assert_eq!(
            parse_markdown(b"\xEF\xBB\xBF  \n").unwrap_err(),
            ParseError::Empty
        );
    }

    #[test]
    fn markdown_headings_offsets_and_title() {
        let src = "intro line\r\n# Main Title #\r\n\r\ntext\r\n## Sub section\r\n####### not a heading\r\n#nospace\r\n   ### Indented ok\r\n";
        let doc = parse_markdown(src.as_bytes()).unwrap();
        assert!(doc.markdown);
        assert_eq!(doc.title.as_deref(), Some("Main Title"));
        let text = doc.text();
        let got: Vec<(usize, u8, &str)> = doc
            .headings
            .iter()
            .map(|h| (h.offset, h.level, h.title.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (11, 1, "Main Title"),
                (32, 2, "Sub section"),
                (78, 3, "Indented ok")
            ]
        );
        for h in &doc.headings {
            let line: String = text
                .chars()
                .skip(h.offset)
                .take_while(|&c| c != '\n')
                .collect();
            assert!(line.trim_start().starts_with('#'), "{line:?}");
            assert!(line.contains(&h.title));
        }
    }

    #[test]
    fn markdown_offsets_are_char_offsets() {
        let doc = parse_markdown("é€ line\n# Tïtle\n".as_bytes()).unwrap();
        assert_eq!(doc.headings.len(), 1);
        assert_eq!(doc.headings[0].offset, 8);
        let line: String = doc.text().chars().skip(8).take(7).collect();
        assert_eq!(line, "# Tïtle");
    }

    #[test]
    fn markdown_ignores_headings_in_fenced_code() {
        let src = "## Before\n```sh\n# a shell comment\n```\n~~~~\n# tilde fenced\n~~~\nstill ~~~\n~~~~\n# After\n    # indented code\n";
        let doc = parse_markdown(src.as_bytes()).unwrap();
        let titles: Vec<&str> = doc.headings.iter().map(|h| h.title.as_str()).collect();
        assert_eq!(titles, vec!["Before", "After"]);
        assert_eq!(doc.title.as_deref(), Some("After"));
    }

    #[test]
    fn markdown_without_level_one_heading_has_no_title() {
        let doc = parse_markdown(b"## Only a sub heading\nbody\n").unwrap();
        assert_eq!(doc.title, None);
        assert_eq!(doc.headings.len(), 1);
        assert_eq!(doc.headings[0].level, 2);
    }

    #[test]
    fn markdown_unclosed_fence_swallows_rest() {
        let doc = parse_markdown(b"# Top\n```\n# not a heading\n").unwrap();
        assert_eq!(doc.headings.len(), 1);
    }
}
