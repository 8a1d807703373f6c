//! A PDF's outline (its bookmarks) as headings: the structure a reader sees in the side panel
//! becomes the heading path of each chunk, as headings do for Markdown, HTML and Office files.
//! A PDF without an outline gets its numbered section headings ("1.2.1 Compiling with
//! Ethernet") instead, found in its text by [`numbered_headings`].
//!
//! lopdf's own `get_toc` is not used: it keys entries by title (a second "Introduction" is
//! dropped) and follows `Next` links without a guard, so a cyclic outline would never end.
//! Here every outline item and name-tree node is visited once, with a cap on their number.

use std::collections::{HashMap, HashSet};

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::Heading;

/// Outline items read at most: more are ignored (a hostile or generated outline).
const MAX_ITEMS: usize = 5_000;
/// Deepest outline level read.
const MAX_LEVEL: u8 = 12;
/// Name-tree nodes visited at most when resolving a named destination.
const MAX_NAME_NODES: usize = 10_000;

/// The outline's entries in reading order: (level from 1, title, 1-based page number). Items
/// without a title or whose destination is not a page of the document are skipped; an
/// unreadable outline gives none.
pub fn outline_entries(doc: &Document, decode: fn(&[u8]) -> String) -> Vec<(u8, String, usize)> {
    let pages: HashMap<ObjectId, usize> = doc
        .get_pages()
        .into_iter()
        .map(|(n, id)| (id, n as usize))
        .collect();
    let Some(root) = doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"Outlines").ok())
        .and_then(|o| dictionary(doc, o))
    else {
        return Vec::new();
    };
    let mut names = NamedDestinations::new(doc);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // Depth first, in order: an item's children before its next sibling.
    let mut stack: Vec<(ObjectId, u8)> = Vec::new();
    if let Ok(first) = root.get(b"First").and_then(Object::as_reference) {
        stack.push((first, 1));
    }
    while let Some((id, level)) = stack.pop() {
        if seen.len() >= MAX_ITEMS || !seen.insert(id) {
            continue;
        }
        let Ok(item) = doc.get_dictionary(id) else {
            continue;
        };
        if let Ok(next) = item.get(b"Next").and_then(Object::as_reference) {
            stack.push((next, level));
        }
        if level < MAX_LEVEL
            && let Ok(first) = item.get(b"First").and_then(Object::as_reference)
        {
            stack.push((first, level + 1));
        }
        let title = item
            .get(b"Title")
            .ok()
            .and_then(|t| doc.dereference(t).ok())
            .and_then(|(_, t)| t.as_str().ok())
            .map(decode)
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty());
        let page = destination_of(doc, item)
            .and_then(|d| names.resolve(d))
            .and_then(|page| pages.get(&page).copied());
        if let (Some(title), Some(page)) = (title, page) {
            out.push((level, title, page));
        }
    }
    out
}

/// Headings at char offsets into the document text (`page_starts`: where each page starts): each
/// entry is placed where its title first occurs on its page, after the previous heading
/// (compared by letters and digits only, without case: quotes, dashes and line breaks differ
/// between an outline and the text), or at the top of its page when the title is not in the
/// page's text and no heading was placed on that page yet. A title found nowhere on a page
/// already headed is left out: placing it would name the wrong passage.
pub fn place(
    entries: &[(u8, String, usize)],
    pages: &[String],
    page_starts: &[usize],
) -> Vec<Heading> {
    let mut out: Vec<Heading> = Vec::with_capacity(entries.len());
    let mut normalized: Vec<Option<Loose>> = vec![None; pages.len()];
    for (level, title, page) in entries {
        let Some(index) = page.checked_sub(1).filter(|i| *i < pages.len()) else {
            continue;
        };
        let page_start = page_starts[index];
        let previous = out.last().map_or(0, |h| h.offset);
        let from = previous.saturating_sub(page_start);
        let loose = normalized[index].get_or_insert_with(|| Loose::new(&pages[index]));
        let offset = match loose.find(title, from) {
            Some(at) => page_start + at,
            None if out.is_empty() || page_start > previous => page_start,
            None => continue,
        };
        out.push(Heading {
            offset: offset.max(previous),
            level: *level,
            title: title.clone(),
        });
    }
    out
}

/// Deepest section number taken for a heading ("1.2.3.4.5.6").
const MAX_NUMBER_PARTS: usize = 6;
/// Longest numbered heading title, in words.
const MAX_TITLE_WORDS: usize = 14;

/// Numbered section headings in the text of a document without an outline: a line "1.2 Title"
/// or "1.2. Title", or a number alone on its line with the title on the next one. A number is
/// a heading only if it follows the previous heading (its first child 1.2.1, next sibling 1.3,
/// or the next section of a level above, 2), the first one being 1 (or 1.1): so numbered
/// lists, cross references and table-of-contents lines (whose title ends in a page number)
/// are not taken for headings. A title starts with a capital letter and is not a sentence.
pub fn numbered_headings(pages: &[String], page_starts: &[usize]) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut last: Option<Vec<u32>> = None;
    for (page, &page_start) in pages.iter().zip(page_starts) {
        // Each line with the char offset where its first non-blank char is.
        let mut lines: Vec<(usize, &str)> = Vec::new();
        let mut offset = 0;
        for line in page.split('\n') {
            let lead = line.chars().take_while(|c| c.is_whitespace()).count();
            lines.push((offset + lead, line.trim()));
            offset += line.chars().count() + 1;
        }
        for (i, &(at, line)) in lines.iter().enumerate() {
            let Some((number, rest)) = section_number(line) else {
                continue;
            };
            let title = if rest.is_empty() {
                lines.get(i + 1).map_or("", |(_, l)| *l)
            } else {
                rest
            };
            if !is_title(title) || !follows(last.as_deref(), &number) {
                continue;
            }
            let label: Vec<String> = number.iter().map(u32::to_string).collect();
            out.push(Heading {
                offset: page_start + at,
                level: number.len() as u8,
                title: format!("{} {title}", label.join(".")),
            });
            last = Some(number);
        }
    }
    out
}

/// "1.2.3 Title" or "1.2.3." alone: the number's parts and what follows it.
fn section_number(line: &str) -> Option<(Vec<u32>, &str)> {
    let (head, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let head = head.strip_suffix('.').unwrap_or(head);
    let parts: Vec<u32> = head
        .split('.')
        .map(|p| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (parts.len() <= MAX_NUMBER_PARTS).then_some((parts, rest.trim()))
}

fn is_title(t: &str) -> bool {
    let words = t.split_whitespace().count();
    t.chars().next().is_some_and(char::is_uppercase)
        && (1..=MAX_TITLE_WORDS).contains(&words)
        && !t.ends_with(|c: char| c.is_ascii_digit() || matches!(c, '.' | ',' | ';' | ':'))
}

/// Whether section `n` may come right after section `previous`.
fn follows(previous: Option<&[u32]>, n: &[u32]) -> bool {
    let Some(p) = previous else {
        return n.iter().all(|&x| x == 1) && n.len() <= 2;
    };
    if n.len() == p.len() + 1 && n[..p.len()] == *p && n[p.len()] == 1 {
        return true;
    }
    (1..=p.len()).any(|k| n.len() == k && n[..k - 1] == p[..k - 1] && n[k - 1] == p[k - 1] + 1)
}

/// A page's letters and digits, lower-cased, with the char offset in the original text of
/// every char kept.
#[derive(Clone)]
struct Loose {
    chars: Vec<char>,
    at: Vec<usize>,
}

impl Loose {
    fn new(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut at = Vec::with_capacity(text.len());
        for (i, c) in text.chars().enumerate() {
            if !c.is_alphanumeric() {
                continue;
            }
            for l in c.to_lowercase() {
                chars.push(l);
                at.push(i);
            }
        }
        Self { chars, at }
    }

    /// The original char offset of the first occurrence of `needle` at or after original
    /// offset `from`.
    fn find(&self, needle: &str, from: usize) -> Option<usize> {
        let needle = Loose::new(needle.trim()).chars;
        if needle.is_empty() || needle.len() > self.chars.len() {
            return None;
        }
        let start = self.at.partition_point(|&a| a < from);
        (start..=self.chars.len() - needle.len())
            .find(|&i| self.chars[i..i + needle.len()] == needle[..])
            .map(|i| self.at[i])
    }
}

/// The destination of an outline item: its `Dest`, or the `D` of its GoTo action.
fn destination_of<'a>(doc: &'a Document, item: &'a Dictionary) -> Option<&'a Object> {
    if let Ok(dest) = item.get(b"Dest") {
        return Some(dest);
    }
    let action = dictionary(doc, item.get(b"A").ok()?)?;
    if action.get(b"S").and_then(Object::as_name).ok()? != b"GoTo" {
        return None;
    }
    action.get(b"D").ok()
}

fn dictionary<'a>(doc: &'a Document, object: &'a Object) -> Option<&'a Dictionary> {
    doc.dereference(object).ok()?.1.as_dict().ok()
}

/// Destinations by name: the catalog's `Dests` dictionary (PDF 1.1) and the `Dests` name tree
/// (PDF 1.2), the tree read once on first need.
struct NamedDestinations<'a> {
    doc: &'a Document,
    tree: Option<HashMap<Vec<u8>, &'a Object>>,
}

impl<'a> NamedDestinations<'a> {
    fn new(doc: &'a Document) -> Self {
        Self { doc, tree: None }
    }

    /// The page object a destination points at: an explicit destination `[page /XYZ ...]`, a
    /// dictionary with `D`, or a name or string looked up among the named destinations.
    fn resolve(&mut self, dest: &'a Object) -> Option<ObjectId> {
        let mut dest = self.doc.dereference(dest).ok()?.1;
        for _ in 0..4 {
            match dest {
                Object::Array(a) => return a.first()?.as_reference().ok(),
                Object::Dictionary(d) => dest = self.doc.dereference(d.get(b"D").ok()?).ok()?.1,
                Object::Name(n) | Object::String(n, _) => {
                    let found = self.lookup(n)?;
                    dest = self.doc.dereference(found).ok()?.1;
                }
                _ => return None,
            }
        }
        None
    }

    fn lookup(&mut self, name: &[u8]) -> Option<&'a Object> {
        let doc = self.doc;
        let catalog = doc.catalog().ok()?;
        if let Some(found) = catalog
            .get(b"Dests")
            .ok()
            .and_then(|d| dictionary(doc, d))
            .and_then(|d| d.get(name).ok())
        {
            return Some(found);
        }
        let tree = self.tree.get_or_insert_with(|| {
            let mut map = HashMap::new();
            let root = catalog
                .get(b"Names")
                .ok()
                .and_then(|n| dictionary(doc, n))
                .and_then(|n| n.get(b"Dests").ok())
                .and_then(|d| dictionary(doc, d));
            let mut seen = HashSet::new();
            let mut stack: Vec<&Dictionary> = root.into_iter().collect();
            while let Some(node) = stack.pop() {
                if seen.len() >= MAX_NAME_NODES {
                    break;
                }
                if let Ok(kids) = node.get(b"Kids").and_then(Object::as_array) {
                    for kid in kids {
                        if let Ok(id) = kid.as_reference()
                            && seen.insert(id)
                            && let Ok(d) = doc.get_dictionary(id)
                        {
                            stack.push(d);
                        }
                    }
                }
                if let Ok(pairs) = node.get(b"Names").and_then(Object::as_array) {
                    for pair in pairs.chunks_exact(2) {
                        if let Ok(key) = pair[0].as_str() {
                            map.insert(key.to_vec(), &pair[1]);
                        }
                    }
                }
            }
            map
        });
        tree.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_headings_follow_their_sequence() {
        let pages = vec![
            // A table of contents: titles end in page numbers.
            "1. Overview 4\n2. Data Types 4\nIntroduction".to_string(),
            "1 Compiling And Running A Simulator\nThe simulators have been tested.\n\
             1. Install the package.\n3 Not next\n1.1\nCompiling Under UNIX\ntext"
                .to_string(),
            "see 1.1 above\n1.2.1 Ethernet\n2 Commands\n2.1 Loading".to_string(),
        ];
        let starts = vec![0, 100, 300];
        let hs = numbered_headings(&pages, &starts);
        let titles: Vec<&str> = hs.iter().map(|h| h.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "1 Compiling And Running A Simulator",
                "1.1 Compiling Under UNIX",
                "2 Commands",
                "2.1 Loading"
            ],
        );
        assert_eq!(hs[0].offset, 100);
        assert_eq!(hs[1].offset, 100 + pages[1].find("1.1\n").unwrap());
        assert_eq!(hs.iter().map(|h| h.level).collect::<Vec<_>>(), [1, 2, 1, 2]);
        assert!(follows(Some(&[1, 2]), &[1, 2, 1]));
        assert!(follows(Some(&[1, 2, 3]), &[2]));
        assert!(!follows(Some(&[1, 2]), &[1, 4]));
        assert!(!follows(None, &[3]));
    }

    #[test]
    fn headings_are_placed_where_their_titles_are() {
        let pages = vec![
            "Contents\n\n1  Compiling the\n   simulators\ntext".to_string(),
            "more text\n1.2 Ethernet support here".to_string(),
        ];
        let starts = vec![0, pages[0].chars().count() + 2];
        let entries = vec![
            (1, "1 Compiling the simulators".to_string(), 1),
            (2, "1.1 Not in the text".to_string(), 1),
            (2, "1.2 ‘ETHERNET’ support".to_string(), 2),
            (2, "1.3 Also not in the text".to_string(), 2),
            (1, "Appendix".to_string(), 9),
        ];
        let hs = place(&entries, &pages, &starts);
        let titles: Vec<&str> = hs.iter().map(|h| h.title.as_str()).collect();
        // Not found on a page already headed: left out; a page that is not: its top.
        assert_eq!(
            titles,
            ["1 Compiling the simulators", "1.2 ‘ETHERNET’ support"],
            "{hs:?}"
        );
        assert_eq!(hs[0].offset, pages[0].find("1  Compiling").unwrap());
        // Quotes and case differ between the outline and the text.
        assert_eq!(hs[1].offset, starts[1] + "more text\n".len());
        assert_eq!(hs[1].level, 2);
        let lone = place(&entries[1..2], &pages, &starts);
        assert_eq!(lone[0].offset, 0, "the top of its page");
    }
}
