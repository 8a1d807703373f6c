//! Email messages (`.eml`, RFC 5322 / MIME), parsed with `mail-parser`.
//!
//! The message body becomes one page (text/plain parts preferred; an HTML-only body is rendered
//! to text by the [`html`](super::html) module). Headers become metadata, the subject the
//! title. Attachments of a supported type (PDF, text, Markdown, HTML, nested messages) are
//! returned as [`Attachment`]s so they become child documents; the names of the others are
//! listed in the `skipped_attachments` metadata entry.

use std::path::Path;

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use serde_json::Value;

use super::{Attachment, DocumentKind, ParseError, ParsedDocument};

/// Headers of which at least one must be present for the bytes to count as an email.
const EMAIL_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "sender",
    "reply-to",
    "received",
    "return-path",
    "mime-version",
    "in-reply-to",
    "references",
];

/// Parses an email message: body text as the single page, headers as metadata
/// (`from`, `to`, `cc`, `date` in RFC 3339, `subject`, `message_id`, `skipped_attachments`),
/// subject as title, supported attachments as [`Attachment`]s.
pub fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let message = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| malformed("no message headers found"))?;
    let is_email = message
        .headers()
        .iter()
        .any(|h| EMAIL_HEADERS.contains(&h.name().to_ascii_lowercase().as_str()));
    if !is_email {
        return Err(malformed(
            "no email headers found (From, To, Subject, Date, Message-ID, ...)",
        ));
    }

    let mut metadata = serde_json::Map::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            metadata.insert(key.to_string(), Value::String(value));
        }
    };
    put("from", message.from().map(format_address));
    put("to", message.to().map(format_address));
    put("cc", message.cc().map(format_address));
    put(
        "date",
        message
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_rfc3339()),
    );
    let subject = message
        .subject()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty());
    put("subject", subject.clone());
    put("message_id", message.message_id().map(str::to_string));

    let body = body_text(&message);

    let mut attachments = Vec::new();
    let mut skipped = Vec::new();
    for (i, part) in message.attachments().enumerate() {
        let file_name = part
            .attachment_name()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("attachment-{}", i + 1));
        let mime = part_mime_type(part);
        match attachment_kind(&mime, &file_name, part.contents().len()) {
            Some(kind) => attachments.push(Attachment {
                file_name,
                mime_type: kind.mime_type().to_string(),
                bytes: part.contents().to_vec(),
            }),
            None => skipped.push(Value::String(file_name)),
        }
    }
    if !skipped.is_empty() {
        metadata.insert("skipped_attachments".to_string(), Value::Array(skipped));
    }

    if body.trim().is_empty() && attachments.is_empty() {
        return Err(ParseError::EmptyEmail);
    }
    Ok(ParsedDocument {
        title: subject,
        pages: vec![body],
        metadata,
        attachments,
        ..ParsedDocument::default()
    })
}

/// The kind an attachment is indexed as, from its declared MIME type and its name; `None` for
/// a type Enclave does not read and for images too small to be a scan (logos, signatures):
/// those are listed in `skipped_attachments`.
pub(super) fn attachment_kind(mime: &str, file_name: &str, len: usize) -> Option<DocumentKind> {
    DocumentKind::from_mime(mime, Path::new(file_name))
        .filter(|kind| !kind.is_image() || len >= MIN_IMAGE_ATTACHMENT_BYTES)
}

/// Image attachments smaller than this are left out (listed in `skipped_attachments`): a
/// scanned page is larger, a logo or a signature image smaller.
pub const MIN_IMAGE_ATTACHMENT_BYTES: usize = 16 * 1024;

fn malformed(reason: &str) -> ParseError {
    ParseError::Malformed {
        kind: "email".to_string(),
        reason: reason.to_string(),
    }
}

/// The MIME type of a part as declared (`type/subtype`, lower case); nested messages are
/// `message/rfc822` and parts without a Content-Type are `text/plain`, as RFC 2045 says.
fn part_mime_type(part: &mail_parser::MessagePart<'_>) -> String {
    if matches!(part.body, PartType::Message(_)) {
        return "message/rfc822".to_string();
    }
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

/// The body text: the message's text body parts (mail-parser puts the text/plain alternative
/// there, or the HTML part when there is no plain text), HTML rendered to text, joined by
/// blank lines, with line endings normalised.
fn body_text(message: &mail_parser::Message<'_>) -> String {
    let mut parts = Vec::new();
    for part in message.text_bodies() {
        let text = match &part.body {
            PartType::Text(text) => super::text::normalize_newlines(text),
            PartType::Html(html) => super::html::render(html).0,
            _ => continue,
        };
        let text = text.trim_end();
        if !text.trim().is_empty() {
            parts.push(text.trim_start_matches('\n').to_string());
        }
    }
    parts.join("\n\n")
}

/// `Name <addr>` (or just one of them) for each address, joined by `, `; group members are
/// listed without the group name.
pub(super) fn format_address(address: &Address<'_>) -> String {
    address
        .iter()
        .filter_map(|addr| {
            let name = addr.name().map(str::trim).filter(|n| !n.is_empty());
            let email = addr.address().map(str::trim).filter(|a| !a.is_empty());
            match (name, email) {
                (Some(name), Some(email)) => Some(format!("{name} <{email}>")),
                (None, Some(email)) => Some(email.to_string()),
                (Some(name), None) => Some(name.to_string()),
                (None, None) => None,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(doc: &'a ParsedDocument, key: &str) -> Option<&'a str> {
        doc.metadata.get(key).and_then(Value::as_str)
    }

    #[test]
    fn plain_message_metadata_and_body() {
        let eml = "From: Alice Example <alice@example.org>\r\n\
To: Bob <bob@example.org>, carol@example.org\r\n\
Cc: \"Dan D.\" <dan@example.org>\r\n\
Subject: =?UTF-8?Q?Caf=C3=A9?= meeting\r\n\
Date: Tue, 1 Jul 2025 10:52:37 +0200\r\n\
Message-ID: <abc123@example.org>\r\n\
\r\n\
Hello Bob,\r\n\
\r\n\
see you at the café.\r\n";
        let doc = parse(eml.as_bytes()).unwrap();
        assert_eq!(doc.title.as_deref(), Some("Café meeting"));
        assert_eq!(
            doc.pages,
            vec!["Hello Bob,\n\nsee you at the café.".to_string()]
        );
        assert_eq!(
            meta(&doc, "from"),
            Some("Alice Example <alice@example.org>")
        );
        assert_eq!(
            meta(&doc, "to"),
            Some("Bob <bob@example.org>, carol@example.org")
        );
        assert_eq!(meta(&doc, "cc"), Some("Dan D. <dan@example.org>"));
        assert_eq!(meta(&doc, "subject"), Some("Café meeting"));
        assert_eq!(meta(&doc, "date"), Some("2025-07-01T10:52:37+02:00"));
        assert_eq!(meta(&doc, "message_id"), Some("abc123@example.org"));
        assert!(!doc.markdown);
        assert!(doc.attachments.is_empty());
        assert!(!doc.metadata.contains_key("skipped_attachments"));
    }

    #[test]
    fn absent_headers_are_omitted() {
        let doc = parse(b"From: a@example.org\n\nbody\n").unwrap();
        assert_eq!(meta(&doc, "from"), Some("a@example.org"));
        for key in ["to", "cc", "date", "subject", "message_id"] {
            assert!(!doc.metadata.contains_key(key), "{key}");
        }
        assert_eq!(doc.title, None);
    }

    #[test]
    fn alternative_prefers_plain_text() {
        let eml = "From: a@example.org\r\nSubject: alt\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n\
--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html <b>version</b></p>\r\n\
--b1--\r\n";
        let doc = parse(eml.as_bytes()).unwrap();
        assert_eq!(doc.pages[0], "plain version");
        assert!(doc.attachments.is_empty());
    }

    #[test]
    fn html_only_body_is_rendered() {
        let eml = "From: a@example.org\r\nSubject: html\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><style>p{}</style></head><body><h2>News</h2><p>Hello   <i>world</i></p></body></html>\r\n";
        let doc = parse(eml.as_bytes()).unwrap();
        assert_eq!(doc.pages[0], "## News\n\nHello world");
    }

    #[test]
    fn attachments_are_kept_or_skipped_by_type() {
        let pdf_b64 = "JVBERi0xLjQKJSBmYWtlCg=="; // "%PDF-1.4\n% fake\n"
        let eml = format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
--mix\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
--mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{pdf_b64}\r\n\
--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nsome notes\r\n\
--mix\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"readme.md\"\r\n\r\n# Readme\r\n\
--mix\r\nContent-Type: image/png\r\n\
Content-Disposition: attachment; filename=\"photo.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--mix\r\nContent-Type: application/zip\r\n\
Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n\
--mix\r\nContent-Type: message/rfc822\r\n\
Content-Disposition: attachment\r\n\r\n\
From: inner@example.org\r\nSubject: inner\r\n\r\ninner body\r\n\
--mix--\r\n"
        );
        let doc = parse(eml.as_bytes()).unwrap();
        assert_eq!(doc.pages[0], "See attached.");
        let got: Vec<(&str, &str)> = doc
            .attachments
            .iter()
            .map(|a| (a.file_name.as_str(), a.mime_type.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("report.pdf", "application/pdf"),
                ("notes.txt", "text/plain"),
                ("readme.md", "text/markdown"),
                ("attachment-6", "message/rfc822"),
            ]
        );
        assert_eq!(doc.attachments[0].bytes, b"%PDF-1.4\n% fake\n");
        assert_eq!(doc.attachments[1].bytes, b"some notes");
        assert_eq!(doc.attachments[2].bytes, b"# Readme");
        let inner = parse(&doc.attachments[3].bytes).unwrap();
        assert_eq!(inner.title.as_deref(), Some("inner"));
        assert_eq!(inner.pages[0], "inner body");
        assert_eq!(
            doc.metadata.get("skipped_attachments"),
            Some(&serde_json::json!(["photo.png", "attachment-5"]))
        );
    }

    #[test]
    fn no_body_with_attachment_is_an_empty_page() {
        let eml = "From: a@example.org\r\nSubject: only a file\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nfile text\r\n\
--m--\r\n";
        let doc = parse(eml.as_bytes()).unwrap();
        assert_eq!(doc.pages, vec![String::new()]);
        assert_eq!(doc.attachments.len(), 1);
        assert_eq!(doc.attachments[0].file_name, "a.txt");
    }

    #[test]
    fn no_body_and_no_attachment_is_an_empty_email() {
        let err = parse(b"From: a@example.org\r\nSubject: empty\r\n\r\n  \r\n").unwrap_err();
        assert_eq!(err, ParseError::EmptyEmail);
        // Only an unsupported attachment: nothing to index either.
        let eml = "From: a@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"p.png\"\r\n\r\nxx\r\n\
--m--\r\n";
        assert_eq!(parse(eml.as_bytes()).unwrap_err(), ParseError::EmptyEmail);
    }

    #[test]
    fn non_email_bytes_are_malformed() {
        for bytes in [
            &b"\x00\x01\x02\xff\xfe binary junk"[..],
            b"just some text without any headers\n",
            b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n",
            b"Note: this is not an email\n\nbody\n",
        ] {
            match parse(bytes) {
                Err(ParseError::Malformed { kind, .. }) => assert_eq!(kind, "email"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
    }
}
