//! Outlook messages (`.msg`, an OLE compound file as MS-OXMSG describes it), read with
//! `msg_parser`.
//!
//! Like an `.eml` (see [`email`](super::email)): the body is the one page (the plain-text body,
//! else the HTML body rendered to text, else the RTF body), sender, recipients, date, subject and
//! message id become metadata, the subject the title. Attachments of a supported type become
//! child documents; an attached `.msg` file is one of them, so that the pipeline's attachment
//! depth limit bounds the recursion. A message embedded as an OLE storage (Outlook's
//! "attach as item") is read only where `msg_parser` can hand it over as a file of its own;
//! otherwise it is listed in `skipped_attachments`. A panic inside the parser fails the
//! message, never the worker.

use std::panic::{AssertUnwindSafe, catch_unwind};

use msg_parser::{Outlook, Person};
use serde_json::Value;

use super::email::attachment_kind;
use super::{Attachment, DocumentKind, ParseError, ParsedDocument};

fn malformed(reason: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        kind: "Outlook message".into(),
        reason: reason.into(),
    }
}

/// The first bytes of every OLE compound file (`.msg`, `.doc`, `.xls`).
const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Parses an Outlook message: body as the single page, headers as metadata (`from`, `to`,
/// `cc`, `date` in RFC 3339, `subject`, `message_id`, `skipped_attachments`), subject as
/// title, supported attachments (embedded messages included) as [`Attachment`]s.
pub fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if !bytes.starts_with(&OLE_MAGIC) {
        return Err(malformed(
            "not an OLE compound file (an Outlook .msg starts with D0 CF 11 E0)",
        ));
    }
    let message = catch_unwind(AssertUnwindSafe(|| Outlook::from_slice(bytes)))
        .map_err(|_| malformed("the message's structure could not be read (parser panicked)"))?
        .map_err(|e| malformed(e.to_string()))?;
    if message.message_class.is_empty()
        && message.subject.is_empty()
        && message.body.is_empty()
        && message.attachments.is_empty()
    {
        return Err(malformed(
            "an OLE file without message properties (a Word or Excel 97-2003 file renamed .msg?)",
        ));
    }

    let mut metadata = serde_json::Map::new();
    let mut put = |key: &str, value: String| {
        if !value.trim().is_empty() {
            metadata.insert(key.to_string(), Value::String(value));
        }
    };
    put("from", person(&message.sender));
    put("to", people(&message.to));
    put("cc", people(&message.cc));
    let date = [
        &message.client_submit_time,
        &message.message_delivery_time,
        &message.creation_time,
    ]
    .into_iter()
    .find(|d| chrono::DateTime::parse_from_rfc3339(d).is_ok())
    .cloned()
    .unwrap_or_default();
    put("date", date);
    let subject = message
        .subject
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    put("subject", subject.clone());
    put(
        "message_id",
        message
            .headers
            .message_id
            .trim()
            .trim_matches(|c| c == '<' || c == '>')
            .to_string(),
    );

    let body = body_text(&message);

    let mut attachments = Vec::new();
    let mut skipped = Vec::new();
    for (i, a) in message.attachments.iter().enumerate() {
        if a.is_embedded_message() {
            // msg_parser hands over an embedded message only when it can rebuild it as a
            // file of its own; the others are named as skipped.
            if !a.payload_bytes.starts_with(&OLE_MAGIC) {
                skipped.push(Value::String(attachment_name(a, i)));
                continue;
            }
            let name = a.display_name.trim();
            let name = if name.is_empty() {
                format!("message-{}", i + 1)
            } else {
                name.to_string()
            };
            attachments.push(Attachment {
                file_name: format!("{name}.msg"),
                mime_type: DocumentKind::Msg.mime_type().to_string(),
                bytes: a.payload_bytes.clone(),
            });
            continue;
        }
        let file_name = attachment_name(a, i);
        match attachment_kind(&a.mime_tag, &file_name, a.payload_bytes.len()) {
            Some(kind) if !a.payload_bytes.is_empty() => attachments.push(Attachment {
                file_name,
                mime_type: kind.mime_type().to_string(),
                bytes: a.payload_bytes.clone(),
            }),
            _ => skipped.push(Value::String(file_name)),
        }
    }
    if !skipped.is_empty() {
        metadata.insert("skipped_attachments".to_string(), Value::Array(skipped));
    }

    if body.trim().is_empty() && attachments.is_empty() {
        return Err(ParseError::EmptyEmail);
    }
    Ok(ParsedDocument {
        title: (!subject.is_empty()).then_some(subject),
        pages: vec![body],
        metadata,
        attachments,
        ..ParsedDocument::default()
    })
}

/// The attachment's file name: the long name, else the 8.3 name, else the display name, else
/// `attachment-N`.
fn attachment_name(a: &msg_parser::Attachment, index: usize) -> String {
    [&a.long_file_name, &a.file_name, &a.display_name]
        .into_iter()
        .map(|n| n.trim())
        .find(|n| !n.is_empty())
        .map_or_else(|| format!("attachment-{}", index + 1), str::to_string)
}

/// The body: plain text when the message has it, else its HTML rendered to text, else its
/// RTF body (compressed RTF, the form Outlook stores) as text.
fn body_text(message: &Outlook) -> String {
    let plain = super::text::normalize_newlines(&message.body);
    if !plain.trim().is_empty() {
        return plain.trim().to_string();
    }
    let html = if message.html.trim().is_empty() {
        message.html_from_rtf().unwrap_or_default()
    } else {
        message.html.clone()
    };
    if !html.trim().is_empty() {
        return super::html::render(&html).0.trim().to_string();
    }
    message
        .rtf_decompressed()
        .and_then(|rtf| super::rtf::parse(&rtf).ok())
        .map(|doc| doc.text().trim().to_string())
        .unwrap_or_default()
}

/// `Name <addr>`, or whichever of the two the message holds.
fn person(p: &Person) -> String {
    match (p.name.trim(), p.email.trim()) {
        ("", "") => String::new(),
        (name, "") => name.to_string(),
        ("", email) => email.to_string(),
        (name, email) if name == email => email.to_string(),
        (name, email) => format!("{name} <{email}>"),
    }
}

fn people(list: &[Person]) -> String {
    list.iter()
        .map(person)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_ole_file_is_named() {
        let err = parse(b"From: a@example.org\r\n\r\nhello").unwrap_err();
        assert!(
            err.to_string().contains("not an OLE compound file"),
            "{err}"
        );
        assert_eq!(parse(b"").unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn truncated_ole_header_is_malformed() {
        let mut bytes = OLE_MAGIC.to_vec();
        bytes.extend_from_slice(&[0u8; 100]);
        let err = parse(&bytes).unwrap_err();
        assert!(
            matches!(&err, ParseError::Malformed { kind, .. } if kind == "Outlook message"),
            "{err:?}"
        );
    }
}
