//! Outlook messages (`.msg`): an OLE compound file, read with `cfb`, whose MAPI properties are
//! laid out as MS-OXMSG describes.
//!
//! Like an `.eml` (see [`email`](super::email)): the body is the one page (the plain-text body,
//! else the HTML body rendered to text, else the compressed RTF body as text), sender,
//! recipients, date, subject and message id become metadata, the subject the title.
//! Attachments of a supported type become child documents. A message attached *as an item*
//! (Outlook's "attach item", a storage inside the attachment rather than a file) is rebuilt
//! as a compound file of its own and becomes a child `.msg`, so that the pipeline's
//! attachment depth limit bounds the recursion and the child can be opened by anyone who
//! downloads it. Other embedded OLE objects and attachments of unsupported types are listed
//! in `skipped_attachments`. A panic inside the reader fails the message, never the worker.
//!
//! The properties are read here rather than through a `.msg` crate: `msg_parser` (the one
//! maintained candidate) could not hand over messages attached as items and listed the
//! attachments of such items as the outer message's own.

use std::collections::HashMap;
use std::io::{self, Cursor, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use encoding_rs::Encoding;
use serde_json::Value;

use super::email::{attachment_kind, format_address};
use super::{Attachment, DocumentKind, ParseError, ParsedDocument};

fn malformed(reason: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        kind: "Outlook message".into(),
        reason: reason.into(),
    }
}

/// The first bytes of every OLE compound file (`.msg`, `.doc`, `.xls`).
const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// The stream of fixed-size properties in every message, recipient and attachment storage.
const PROPERTIES: &str = "__properties_version1.0";
/// The storage holding the named-property map; only the top-level message has one.
const NAMED_PROPERTIES: &str = "__nameid_version1.0";
/// An attachment's data as a storage: an embedded message or OLE object.
const EMBEDDED_STORAGE: &str = "__substg1.0_3701000D";
const ATTACHMENT_PREFIX: &str = "__attach_version1.0_#";
const RECIPIENT_PREFIX: &str = "__recip_version1.0_#";

/// Header sizes of the properties stream: top-level message, embedded message, and
/// recipient or attachment storage.
const TOP_HEADER: usize = 32;
const EMBEDDED_HEADER: usize = 24;
const CHILD_HEADER: usize = 8;

/// MAPI property ids (MS-OXPROPS).
mod id {
    pub const MESSAGE_CLASS: u16 = 0x001A;
    pub const SUBJECT: u16 = 0x0037;
    pub const CLIENT_SUBMIT_TIME: u16 = 0x0039;
    pub const SENT_REPRESENTING_NAME: u16 = 0x0042;
    pub const TRANSPORT_HEADERS: u16 = 0x007D;
    pub const SENDER_NAME: u16 = 0x0C1A;
    pub const SENDER_ADDRESS_TYPE: u16 = 0x0C1E;
    pub const SENDER_EMAIL: u16 = 0x0C1F;
    pub const RECIPIENT_TYPE: u16 = 0x0C15;
    pub const DISPLAY_CC: u16 = 0x0E03;
    pub const DISPLAY_TO: u16 = 0x0E04;
    pub const DELIVERY_TIME: u16 = 0x0E06;
    pub const BODY: u16 = 0x1000;
    pub const RTF_COMPRESSED: u16 = 0x1009;
    pub const HTML: u16 = 0x1013;
    pub const INTERNET_MESSAGE_ID: u16 = 0x1035;
    pub const DISPLAY_NAME: u16 = 0x3001;
    pub const ADDRESS_TYPE: u16 = 0x3002;
    pub const EMAIL_ADDRESS: u16 = 0x3003;
    pub const CREATION_TIME: u16 = 0x3007;
    pub const ATTACH_FILENAME: u16 = 0x3704;
    pub const ATTACH_METHOD: u16 = 0x3705;
    pub const ATTACH_LONG_FILENAME: u16 = 0x3707;
    pub const ATTACH_DATA: u16 = 0x3701;
    pub const ATTACH_MIME_TAG: u16 = 0x370E;
    pub const SMTP_ADDRESS: u16 = 0x39FE;
    pub const INTERNET_CODEPAGE: u16 = 0x3FDE;
    pub const MESSAGE_CODEPAGE: u16 = 0x3FFD;
    pub const SENDER_SMTP_ADDRESS: u16 = 0x5D01;
    pub const SENT_REPRESENTING_SMTP_ADDRESS: u16 = 0x5D02;
}

/// `PidTagAttachMethod` of a message attached as an item.
const ATTACH_EMBEDDED_MESSAGE: i32 = 5;

/// Parses an Outlook message: body as the single page, headers as metadata (`from`, `to`,
/// `cc`, `date` in RFC 3339, `subject`, `message_id`, `skipped_attachments`), subject as
/// title, supported attachments (messages attached as items included) as [`Attachment`]s.
pub fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if !bytes.starts_with(&OLE_MAGIC) {
        return Err(malformed(
            "not an OLE compound file (an Outlook .msg starts with D0 CF 11 E0)",
        ));
    }
    catch_unwind(AssertUnwindSafe(|| read(bytes)))
        .map_err(|_| malformed("the message's structure could not be read (the reader panicked)"))?
}

fn read(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let ole = cfb::CompoundFile::open(Cursor::new(bytes))
        .map_err(|e| malformed(format!("the compound file cannot be read: {e}")))?;
    let mut reader = Reader {
        ole,
        encoding: encoding_rs::WINDOWS_1252,
    };
    let root = PathBuf::from("/");
    if !reader.ole.is_stream(root.join(PROPERTIES)) {
        return Err(malformed(
            "an OLE file without message properties (a Word or Excel 97-2003 file renamed .msg?)",
        ));
    }
    reader.message(&root, TOP_HEADER)
}

/// The fixed-size properties of one storage, by property tag (id in the high 16 bits, type
/// in the low 16 bits): the 8 bytes of each value.
struct Properties(HashMap<u32, [u8; 8]>);

impl Properties {
    fn parse(stream: &[u8], header: usize) -> Self {
        let entries = stream.get(header..).unwrap_or_default().chunks_exact(16);
        Self(
            entries
                .map(|e| {
                    let tag = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                    let mut value = [0u8; 8];
                    value.copy_from_slice(&e[8..16]);
                    (tag, value)
                })
                .collect(),
        )
    }

    /// A `PtypInteger32` property.
    fn int(&self, id: u16) -> Option<i32> {
        self.0
            .get(&((u32::from(id) << 16) | 0x0003))
            .map(|v| i32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }

    /// A `PtypTime` property (a FILETIME), if it is a plausible date.
    fn time(&self, id: u16) -> Option<DateTime<Utc>> {
        let value = self.0.get(&((u32::from(id) << 16) | 0x0040))?;
        super::ole::filetime(i64::from_le_bytes(*value))
    }
}

/// Reads properties out of the compound file.
struct Reader<'a> {
    ole: cfb::CompoundFile<Cursor<&'a [u8]>>,
    /// How 8-bit (`PtypString8`) strings are decoded: the message's code page.
    encoding: &'static Encoding,
}

impl Reader<'_> {
    fn stream(&mut self, path: &Path) -> Option<Vec<u8>> {
        let mut stream = self.ole.open_stream(path).ok()?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    fn properties(&mut self, storage: &Path, header: usize) -> Properties {
        let stream = self.stream(&storage.join(PROPERTIES)).unwrap_or_default();
        Properties::parse(&stream, header)
    }

    /// A string property (`PtypString`, UTF-16, else `PtypString8` in the message's code
    /// page), trimmed; `None` when absent or blank.
    fn string(&mut self, storage: &Path, id: u16) -> Option<String> {
        let text = if let Some(raw) = self.stream(&substg(storage, id, 0x001F)) {
            super::ole::utf16(&raw)
        } else {
            let bytes = self.stream(&substg(storage, id, 0x001E))?;
            self.encoding.decode(&bytes).0.into_owned()
        };
        let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        (!text.is_empty()).then(|| text.to_string())
    }

    /// A binary property (`PtypBinary`).
    fn binary(&mut self, storage: &Path, id: u16) -> Option<Vec<u8>> {
        self.stream(&substg(storage, id, 0x0102))
    }

    /// The direct child storages whose names start with `prefix`, in name order.
    fn children(&self, storage: &Path, prefix: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = self
            .ole
            .read_storage(storage)
            .map(|entries| {
                entries
                    .filter(|e| e.is_storage() && e.name().starts_with(prefix))
                    .map(|e| e.path().to_path_buf())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    /// Reads the message in `storage` (the root, or an embedded message's storage, whose
    /// properties header is `header` bytes).
    fn message(&mut self, storage: &Path, header: usize) -> Result<ParsedDocument, ParseError> {
        let props = self.properties(storage, header);
        if let Some(encoding) = [id::MESSAGE_CODEPAGE, id::INTERNET_CODEPAGE]
            .into_iter()
            .filter_map(|p| props.int(p))
            .find_map(|cp| u16::try_from(cp).ok().and_then(codepage::to_encoding))
        {
            self.encoding = encoding;
        }
        let headers = self
            .string(storage, id::TRANSPORT_HEADERS)
            .unwrap_or_default();
        let headers = mail_parser::MessageParser::default().parse_headers(headers.as_bytes());
        let header_from = headers
            .as_ref()
            .and_then(|h| h.from())
            .map(format_address)
            .filter(|f| !f.is_empty());

        let mut metadata = serde_json::Map::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
                metadata.insert(key.to_string(), Value::String(value));
            }
        };
        put("from", self.sender(storage).or(header_from));
        let (to, cc) = self.recipients(storage);
        put("to", to);
        put("cc", cc);
        let date = [id::CLIENT_SUBMIT_TIME, id::DELIVERY_TIME]
            .into_iter()
            .find_map(|p| props.time(p))
            .or_else(|| {
                let d = headers.as_ref()?.date()?;
                d.is_valid()
                    .then(|| DateTime::parse_from_rfc3339(&d.to_rfc3339()).ok())?
                    .map(|d| d.with_timezone(&Utc))
            })
            .or_else(|| props.time(id::CREATION_TIME));
        put("date", date.map(|d| d.to_rfc3339()));
        let subject = self
            .string(storage, id::SUBJECT)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
        put("subject", subject.clone());
        let message_id = self
            .string(storage, id::INTERNET_MESSAGE_ID)
            .or_else(|| Some(headers.as_ref()?.message_id()?.to_string()))
            .map(|id| id.trim_matches(|c| c == '<' || c == '>').to_string());
        put("message_id", message_id);

        let body = self.body(storage);
        let (attachments, skipped) = self.attachments(storage);
        if !skipped.is_empty() {
            metadata.insert(
                "skipped_attachments".to_string(),
                Value::Array(skipped.into_iter().map(Value::String).collect()),
            );
        }
        if body.is_empty() && attachments.is_empty() {
            if subject.is_none() && self.string(storage, id::MESSAGE_CLASS).is_none() {
                return Err(malformed(
                    "no message properties (no subject, body, class or attachments)",
                ));
            }
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

    /// `Name <address>` of the sender (or of whom the message was sent for), with the SMTP
    /// address where the message holds one (an Exchange sender's own address is an X.500
    /// name, not shown).
    fn sender(&mut self, storage: &Path) -> Option<String> {
        let name = self
            .string(storage, id::SENDER_NAME)
            .or_else(|| self.string(storage, id::SENT_REPRESENTING_NAME));
        let smtp_type = self
            .string(storage, id::SENDER_ADDRESS_TYPE)
            .is_some_and(|t| t.eq_ignore_ascii_case("SMTP"));
        let address = self
            .string(storage, id::SENDER_SMTP_ADDRESS)
            .or_else(|| self.string(storage, id::SENT_REPRESENTING_SMTP_ADDRESS))
            .or_else(|| {
                smtp_type
                    .then(|| self.string(storage, id::SENDER_EMAIL))
                    .flatten()
            });
        person(name, address)
    }

    /// `To` and `Cc` lines from the recipient storages, else from the display lines.
    fn recipients(&mut self, storage: &Path) -> (Option<String>, Option<String>) {
        let (mut to, mut cc) = (Vec::new(), Vec::new());
        for recipient in self.children(storage, RECIPIENT_PREFIX) {
            let props = self.properties(&recipient, CHILD_HEADER);
            let name = self.string(&recipient, id::DISPLAY_NAME);
            let smtp_type = self
                .string(&recipient, id::ADDRESS_TYPE)
                .is_some_and(|t| t.eq_ignore_ascii_case("SMTP"));
            let address = self.string(&recipient, id::SMTP_ADDRESS).or_else(|| {
                smtp_type
                    .then(|| self.string(&recipient, id::EMAIL_ADDRESS))
                    .flatten()
            });
            let Some(entry) = person(name, address) else {
                continue;
            };
            match props.int(id::RECIPIENT_TYPE).map(|t| t & 0x0F) {
                Some(2) => cc.push(entry),
                Some(3) => {} // Bcc: not shown to other recipients, not shown here.
                _ => to.push(entry),
            }
        }
        let join = |list: Vec<String>| (!list.is_empty()).then(|| list.join(", "));
        let to = join(to).or_else(|| self.string(storage, id::DISPLAY_TO));
        let cc = join(cc).or_else(|| self.string(storage, id::DISPLAY_CC));
        (to, cc)
    }

    /// The body: plain text when the message has it, else its HTML rendered to text, else
    /// its compressed RTF body as text.
    fn body(&mut self, storage: &Path) -> String {
        if let Some(plain) = self.string(storage, id::BODY) {
            return super::text::normalize_newlines(&plain).trim().to_string();
        }
        let html = match self.binary(storage, id::HTML) {
            Some(bytes) => Some(match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => self.encoding.decode(e.as_bytes()).0.into_owned(),
            }),
            None => self.string(storage, id::HTML),
        };
        if let Some(html) = html.filter(|h| !h.trim().is_empty()) {
            return super::html::render(&html).0.trim().to_string();
        }
        self.binary(storage, id::RTF_COMPRESSED)
            .and_then(|compressed| decompress_rtf(&compressed))
            .and_then(|rtf| super::rtf::parse(rtf.as_bytes()).ok())
            .map(|doc| doc.text().trim().to_string())
            .unwrap_or_default()
    }

    /// The attachments to index as children, and the names of those left out.
    fn attachments(&mut self, storage: &Path) -> (Vec<Attachment>, Vec<String>) {
        let (mut kept, mut skipped) = (Vec::new(), Vec::new());
        for (i, attachment) in self
            .children(storage, ATTACHMENT_PREFIX)
            .into_iter()
            .enumerate()
        {
            let props = self.properties(&attachment, CHILD_HEADER);
            let name = [
                id::ATTACH_LONG_FILENAME,
                id::ATTACH_FILENAME,
                id::DISPLAY_NAME,
            ]
            .into_iter()
            .find_map(|p| self.string(&attachment, p));
            let embedded = attachment.join(EMBEDDED_STORAGE);
            if self.ole.is_storage(&embedded) {
                let is_message = props.int(id::ATTACH_METHOD) == Some(ATTACH_EMBEDDED_MESSAGE)
                    || self.ole.is_stream(embedded.join(PROPERTIES));
                let rebuilt = is_message
                    .then(|| self.standalone(&embedded))
                    .and_then(Result::ok);
                match rebuilt {
                    Some(bytes) => {
                        // The item's name is usually its subject: no path separators.
                        let name = name
                            .or_else(|| self.string(&embedded, id::SUBJECT))
                            .unwrap_or_else(|| format!("message-{}", i + 1))
                            .replace(['/', '\\'], "-");
                        let file_name = if name.to_ascii_lowercase().ends_with(".msg") {
                            name
                        } else {
                            format!("{name}.msg")
                        };
                        kept.push(Attachment {
                            file_name,
                            mime_type: DocumentKind::Msg.mime_type().to_string(),
                            bytes,
                        });
                    }
                    None => {
                        skipped.push(name.unwrap_or_else(|| format!("attachment-{}", i + 1)));
                    }
                }
                continue;
            }
            let file_name = name.unwrap_or_else(|| format!("attachment-{}", i + 1));
            let mime = self
                .string(&attachment, id::ATTACH_MIME_TAG)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let data = self
                .binary(&attachment, id::ATTACH_DATA)
                .unwrap_or_default();
            match attachment_kind(&mime, &file_name, data.len()) {
                Some(kind) if !data.is_empty() => kept.push(Attachment {
                    file_name,
                    mime_type: kind.mime_type().to_string(),
                    bytes: data,
                }),
                _ => skipped.push(file_name),
            }
        }
        (kept, skipped)
    }

    /// The message embedded in `storage` as a `.msg` file of its own: its streams and
    /// storages copied to the root of a new compound file, its properties header widened to
    /// a top-level message's, and the outer message's named-property map copied along (an
    /// embedded message uses its parent's).
    fn standalone(&mut self, storage: &Path) -> io::Result<Vec<u8>> {
        let root = Path::new("/");
        let mut entries: Vec<(PathBuf, PathBuf, bool)> = self
            .ole
            .walk_storage(storage)?
            .filter(|e| e.path() != storage)
            .filter_map(|e| {
                let relative = e.path().strip_prefix(storage).ok()?;
                Some((e.path().to_path_buf(), root.join(relative), e.is_stream()))
            })
            .collect();
        let named = self.ole.walk_storage(root.join(NAMED_PROPERTIES));
        if let (Ok(named), false) = (named, self.ole.exists(storage.join(NAMED_PROPERTIES))) {
            entries.extend(named.map(|e| {
                (
                    e.path().to_path_buf(),
                    e.path().to_path_buf(),
                    e.is_stream(),
                )
            }));
        }
        let mut out = cfb::CompoundFile::create(Cursor::new(Vec::new()))?;
        for (source, target, is_stream) in entries {
            if !is_stream {
                out.create_storage(&target)?;
                continue;
            }
            let mut data = self.stream(&source).unwrap_or_default();
            if target == root.join(PROPERTIES) && data.len() >= EMBEDDED_HEADER {
                // Counts are kept; the top-level header has 8 more reserved bytes.
                let entries = data.split_off(EMBEDDED_HEADER);
                data.extend_from_slice(&[0u8; TOP_HEADER - EMBEDDED_HEADER]);
                data.extend_from_slice(&entries);
            }
            out.create_stream(&target)?.write_all(&data)?;
        }
        out.flush()?;
        Ok(out.into_inner().into_inner())
    }
}

/// The path of a property stream: `__substg1.0_IIIITTTT` (id, type, upper-case hex).
fn substg(storage: &Path, id: u16, kind: u16) -> PathBuf {
    storage.join(format!("__substg1.0_{id:04X}{kind:04X}"))
}

/// `Name <address>`, or whichever of the two there is.
fn person(name: Option<String>, address: Option<String>) -> Option<String> {
    match (name, address) {
        (None, None) => None,
        (Some(name), None) => Some(name),
        (None, Some(address)) => Some(address),
        (Some(name), Some(address)) if name == address => Some(address),
        (Some(name), Some(address)) => Some(format!("{name} <{address}>")),
    }
}

/// Outlook's compressed RTF (MS-OXRTFCP) as RTF text. A header that promises more than the
/// format can expand to (at most 8 output bytes per input byte) is refused before any
/// allocation.
fn decompress_rtf(compressed: &[u8]) -> Option<String> {
    let declared = u32::from_le_bytes(compressed.get(4..8)?.try_into().ok()?) as usize;
    if compressed.len() < 16 || declared > compressed.len().saturating_mul(8) + 4096 {
        return None;
    }
    compressed_rtf::decompress_rtf(compressed).ok()
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

    /// A message written here, property by property, as Outlook lays it out.
    fn message(build: impl FnOnce(&mut cfb::CompoundFile<Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut ole = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        build(&mut ole);
        ole.flush().unwrap();
        ole.into_inner().into_inner()
    }

    fn put(ole: &mut cfb::CompoundFile<Cursor<Vec<u8>>>, path: &str, data: &[u8]) {
        ole.create_stream(path).unwrap().write_all(data).unwrap();
    }

    fn utf16(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn properties(header: usize, entries: &[(u32, [u8; 8])]) -> Vec<u8> {
        let mut bytes = vec![0u8; header];
        for (tag, value) in entries {
            bytes.extend_from_slice(&tag.to_le_bytes());
            bytes.extend_from_slice(&6u32.to_le_bytes());
            bytes.extend_from_slice(value);
        }
        bytes
    }

    #[test]
    fn ansi_strings_are_decoded_by_the_code_page_and_times_read() {
        // 2024-03-01T12:00:00Z as a FILETIME.
        let ticks: i64 = (1_709_294_400 + 11_644_473_600) * 10_000_000;
        let bytes = message(|ole| {
            let mut codepage = [0u8; 8];
            codepage[..4].copy_from_slice(&1251i32.to_le_bytes());
            put(
                ole,
                "/__properties_version1.0",
                &properties(
                    TOP_HEADER,
                    &[(0x3FFD_0003, codepage), (0x0039_0040, ticks.to_le_bytes())],
                ),
            );
            // "Отчёт" in Windows-1251.
            put(
                ole,
                "/__substg1.0_0037001E",
                &[0xCE, 0xF2, 0xF7, 0xB8, 0xF2],
            );
            put(
                ole,
                "/__substg1.0_1000001F",
                &utf16("Body text.\r\nSecond line.\0"),
            );
        });
        let doc = parse(&bytes).unwrap();
        assert_eq!(doc.title.as_deref(), Some("Отчёт"));
        assert_eq!(doc.pages, vec!["Body text.\nSecond line.".to_string()]);
        assert_eq!(doc.metadata["date"], "2024-03-01T12:00:00+00:00");
    }

    #[test]
    fn an_rtf_only_body_is_decompressed_and_read() {
        let rtf =
            r"{\rtf1\ansi\deff0 {\fonttbl {\f0 Arial;}} The quarterly audit is due in May.\par}";
        let compressed = compressed_rtf::compress_rtf(rtf).unwrap();
        let bytes = message(|ole| {
            put(
                ole,
                "/__properties_version1.0",
                &properties(TOP_HEADER, &[]),
            );
            put(ole, "/__substg1.0_0037001F", &utf16("Audit"));
            put(ole, "/__substg1.0_10090102", &compressed);
        });
        let doc = parse(&bytes).unwrap();
        assert!(
            doc.pages[0].contains("The quarterly audit is due in May."),
            "{:?}",
            doc.pages
        );
    }

    #[test]
    fn an_rtf_body_that_claims_to_expand_too_far_is_ignored() {
        let mut compressed = compressed_rtf::compress_rtf(r"{\rtf1 hello}").unwrap();
        compressed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decompress_rtf(&compressed), None);
        assert_eq!(decompress_rtf(&compressed[..10]), None);
    }

    #[test]
    fn a_message_attached_as_an_item_becomes_a_child_message() {
        let bytes = message(|ole| {
            put(
                ole,
                "/__properties_version1.0",
                &properties(TOP_HEADER, &[]),
            );
            put(ole, "/__substg1.0_0037001F", &utf16("FW: minutes"));
            put(
                ole,
                "/__substg1.0_1000001F",
                &utf16("See the attached minutes."),
            );
            ole.create_storage("/__attach_version1.0_#00000000")
                .unwrap();
            let mut method = [0u8; 8];
            method[..4].copy_from_slice(&5i32.to_le_bytes());
            put(
                ole,
                "/__attach_version1.0_#00000000/__properties_version1.0",
                &properties(CHILD_HEADER, &[(0x3705_0003, method)]),
            );
            let inner = "/__attach_version1.0_#00000000/__substg1.0_3701000D";
            ole.create_storage(inner).unwrap();
            put(
                ole,
                &format!("{inner}/__properties_version1.0"),
                &properties(EMBEDDED_HEADER, &[]),
            );
            put(
                ole,
                &format!("{inner}/__substg1.0_0037001F"),
                &utf16("Board minutes"),
            );
            put(
                ole,
                &format!("{inner}/__substg1.0_1000001F"),
                &utf16("The board approved the budget."),
            );
        });
        let doc = parse(&bytes).unwrap();
        assert_eq!(doc.attachments.len(), 1, "{:?}", doc.metadata);
        let child = &doc.attachments[0];
        assert_eq!(child.file_name, "Board minutes.msg");
        assert_eq!(child.mime_type, "application/vnd.ms-outlook");
        let inner = parse(&child.bytes).unwrap();
        assert_eq!(inner.title.as_deref(), Some("Board minutes"));
        assert_eq!(
            inner.pages,
            vec!["The board approved the budget.".to_string()]
        );
        assert!(inner.attachments.is_empty());
    }
}
