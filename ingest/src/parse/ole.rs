//! What Outlook messages and legacy Office files (OLE compound files, read with `cfb`) share:
//! FILETIME dates, and the summary property set (MS-OLEPS) that gives an Excel 97-2003
//! workbook its title, author and dates.

use std::io::{Cursor, Read};

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};

/// A FILETIME (100 ns ticks since 1601-01-01 UTC) as a date, if it is a plausible one:
/// Outlook writes 4500-08-31 for "no date", and nothing here predates 1971.
pub(super) fn filetime(ticks: i64) -> Option<DateTime<Utc>> {
    const TICKS_PER_SECOND: i64 = 10_000_000;
    const SECONDS_1601_TO_1970: i64 = 11_644_473_600;
    if ticks <= 0 {
        return None;
    }
    let date = DateTime::from_timestamp(
        ticks / TICKS_PER_SECOND - SECONDS_1601_TO_1970,
        u32::try_from((ticks % TICKS_PER_SECOND) * 100).ok()?,
    )?;
    (1971..4500).contains(&date.year()).then_some(date)
}

/// The title, author, and created and modified dates (RFC 3339) of a compound file's
/// `\u{5}SummaryInformation` stream, under the keys the office formats use (`title`,
/// `author`, `created`, `modified`). A file without one, or with a damaged one, has none:
/// the properties are a courtesy, never a reason to fail the document.
pub fn summary_information(bytes: &[u8]) -> Map<String, Value> {
    let read = || -> Option<Vec<u8>> {
        let mut ole = cfb::CompoundFile::open(Cursor::new(bytes)).ok()?;
        let mut stream = ole.open_stream("/\u{5}SummaryInformation").ok()?;
        let mut data = Vec::new();
        stream.read_to_end(&mut data).ok()?;
        Some(data)
    };
    read()
        .and_then(|data| property_set(&data))
        .unwrap_or_default()
}

/// Property ids of the summary information set (MS-OLEPS 2.25.1).
const CODEPAGE: u32 = 1;
const TITLE: u32 = 2;
const AUTHOR: u32 = 4;
const CREATED: u32 = 12;
const SAVED: u32 = 13;

/// Variant types used by those properties.
const VT_I2: u16 = 0x0002;
const VT_LPSTR: u16 = 0x001E;
const VT_LPWSTR: u16 = 0x001F;
const VT_FILETIME: u16 = 0x0040;

/// The code page that marks 8-bit strings as UTF-16.
const CP_UTF16: u16 = 1200;

fn property_set(data: &[u8]) -> Option<Map<String, Value>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    if u16_at(0)? != 0xFFFE {
        return None;
    }
    // A 28-byte header, then the first section's FMTID (16 bytes) and offset.
    let section = u32_at(44)? as usize;
    let count = (u32_at(section + 4)? as usize).min(1024);
    let properties: Vec<(u32, usize)> = (0..count)
        .filter_map(|i| {
            let id = u32_at(section + 8 + i * 8)?;
            let offset = section.checked_add(u32_at(section + 12 + i * 8)? as usize)?;
            Some((id, offset))
        })
        .collect();
    let codepage = properties
        .iter()
        .find(|(id, at)| *id == CODEPAGE && u16_at(*at) == Some(VT_I2))
        .and_then(|(_, at)| u16_at(at + 4))
        .unwrap_or(1252);

    let mut out = Map::new();
    for (id, at) in properties {
        let key = match id {
            TITLE => "title",
            AUTHOR => "author",
            CREATED => "created",
            SAVED => "modified",
            _ => continue,
        };
        let value = || -> Option<String> {
            match u16_at(at)? {
                VT_LPSTR => {
                    let len = u32_at(at + 4)? as usize;
                    let raw = data.get(at + 8..(at + 8).checked_add(len)?)?;
                    Some(if codepage == CP_UTF16 {
                        utf16(raw)
                    } else {
                        codepage::to_encoding(codepage)
                            .unwrap_or(encoding_rs::WINDOWS_1252)
                            .decode(raw)
                            .0
                            .into_owned()
                    })
                }
                VT_LPWSTR => {
                    let chars = u32_at(at + 4)? as usize;
                    let raw = data.get(at + 8..(at + 8).checked_add(chars.checked_mul(2)?)?)?;
                    Some(utf16(raw))
                }
                VT_FILETIME => {
                    let ticks = i64::from_le_bytes(data.get(at + 4..at + 12)?.try_into().ok()?);
                    Some(filetime(ticks)?.to_rfc3339())
                }
                _ => None,
            }
        };
        let Some(value) = value() else {
            continue;
        };
        let value = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        if !value.is_empty() {
            out.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
    Some(out)
}

/// UTF-16 (little-endian, as compound files store it) as text; an odd last byte is dropped.
pub(super) fn utf16(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary information stream with the given (id, type, value bytes) properties.
    fn stream(props: &[(u32, u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0xFE, 0xFF, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(&[0u8; 16]); // CLSID
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]); // FMTID
        out.extend_from_slice(&48u32.to_le_bytes());
        let mut section = Vec::new();
        let mut values = Vec::new();
        let table = 8 + props.len() * 8;
        for (id, vt, value) in props {
            section.extend_from_slice(&id.to_le_bytes());
            section.extend_from_slice(&((table + values.len()) as u32).to_le_bytes());
            values.extend_from_slice(&u32::from(*vt).to_le_bytes());
            values.extend_from_slice(value);
        }
        out.extend_from_slice(&((table + values.len()) as u32).to_le_bytes());
        out.extend_from_slice(&(props.len() as u32).to_le_bytes());
        out.extend_from_slice(&section);
        out.extend_from_slice(&values);
        out
    }

    fn lpstr(bytes: &[u8]) -> Vec<u8> {
        let mut v = ((bytes.len() + 1) as u32).to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        v.push(0);
        v
    }

    #[test]
    fn title_author_and_dates_in_the_files_code_page() {
        // 2024-03-01T12:00:00Z
        let ticks: i64 = (1_709_294_400 + 11_644_473_600) * 10_000_000;
        let data = stream(&[
            (CODEPAGE, VT_I2, 1251u32.to_le_bytes().to_vec()),
            (TITLE, VT_LPSTR, lpstr(&[0xCE, 0xF2, 0xF7, 0xB8, 0xF2])),
            (AUTHOR, VT_LPSTR, lpstr(b"Ann Lee")),
            (CREATED, VT_FILETIME, ticks.to_le_bytes().to_vec()),
            (SAVED, VT_FILETIME, 0i64.to_le_bytes().to_vec()),
        ]);
        let props = property_set(&data).unwrap();
        assert_eq!(props["title"], "Отчёт");
        assert_eq!(props["author"], "Ann Lee");
        assert_eq!(props["created"], "2024-03-01T12:00:00+00:00");
        assert!(props.get("modified").is_none(), "{props:?}");
    }

    #[test]
    fn damaged_sets_give_nothing_and_never_panic() {
        let data = stream(&[(TITLE, VT_LPSTR, lpstr(b"Budget"))]);
        assert_eq!(property_set(&data).unwrap()["title"], "Budget");
        for cut in 0..data.len() {
            let _ = property_set(&data[..cut]);
        }
        let mut huge = data.clone();
        let at = huge.len() - 11;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(property_set(&huge).unwrap().get("title").is_none());
        assert!(summary_information(b"not an OLE file").is_empty());
    }

    #[test]
    fn filetimes_outside_plausible_dates_are_none() {
        assert_eq!(filetime(0), None);
        assert_eq!(filetime(-5), None);
        // 4500-08-31, Outlook's "none".
        assert_eq!(filetime(915_045_983_400_000_000), None);
        assert!(filetime(133_537_680_000_000_000).is_some());
    }
}
