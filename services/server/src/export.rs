//! A conversation exported for reading elsewhere: Markdown, and PDF (built with lopdf, the
//! PDF library already used to read PDFs: the standard Helvetica fonts, text in the
//! Windows-1252 character set (characters outside it print as `?`), one link annotation per
//! cited source pointing to its passage view).

use enclave_corpus::Thread;
use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, dictionary};

use crate::dto::AnswerOut;
use crate::ui::short_time;

/// A file name (without extension) made from a title.
pub fn file_stem(title: &str) -> String {
    let name: String = title
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-");
    if name.is_empty() {
        "conversation".into()
    } else {
        name
    }
}

fn title_of(thread: &Thread) -> &str {
    if thread.conversation.title.is_empty() {
        "Conversation"
    } else {
        &thread.conversation.title
    }
}

/// Link text as Markdown shows it literally.
fn md_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace('\n', " ")
}

/// A thread as Markdown: each question, what it was searched as, the answer with every
/// citation marker linked to its passage, and the sources with their quotes. `base` is the
/// server's address that passage links start with.
pub fn thread_markdown(thread: &Thread, base: &str) -> String {
    let base = base.trim_end_matches('/');
    let c = &thread.conversation;
    let title = title_of(thread);
    let mut out = format!(
        "# {}\n\nExported from Enclave: {} question{}, from {} to {} (UTC).\n",
        md_text(title),
        thread.turns.len(),
        if thread.turns.len() == 1 { "" } else { "s" },
        short_time(&c.created_at),
        short_time(&c.updated_at),
    );
    for t in &thread.turns {
        out.push_str(&format!(
            "\n## {}. {}\n\n",
            t.turn.position,
            md_text(&t.turn.question)
        ));
        if let Some(s) = &t.turn.standalone {
            out.push_str(&format!("*Searched as:* {}\n\n", md_text(s)));
        }
        let Some(answer) = &t.answer else {
            out.push_str(&format!("{}\n", t.turn.answer_text));
            continue;
        };
        let shown = AnswerOut::from(answer);
        let mut text = shown.text.clone();
        for cit in &shown.citations {
            text = text.replace(
                &format!("[{}]", cit.number),
                &format!("[\\[{}\\]]({base}{}#cited)", cit.number, cit.url),
            );
        }
        out.push_str(&format!("{text}\n"));
        if answer.refused {
            out.push_str("\n*The documents do not contain the answer.*\n");
            continue;
        }
        if !shown.citations.is_empty() {
            out.push_str("\n**Sources**\n\n");
        }
        for cit in &shown.citations {
            out.push_str(&format!(
                "{}. [{}, {}]({base}{}#cited)\n",
                cit.number,
                md_text(&cit.title),
                cit.locator,
                cit.url
            ));
            for line in cit.quote.lines().filter(|l| !l.trim().is_empty()) {
                out.push_str(&format!("   > {}\n", line.trim()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- PDF

/// Widths of Helvetica's printable ASCII characters (32..=126), in thousandths of the size.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 56.0;

/// A character's byte in Windows-1252 (the standard fonts' WinAnsiEncoding), `?` outside it.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{A0}'..='\u{FF}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        '\t' => b' ',
        _ => b'?',
    }
}

/// Width of a text in points (bold type is a little wider).
fn width(text: &str, size: f32, bold: bool) -> f32 {
    let units: u32 = text
        .chars()
        .map(|c| match c {
            ' '..='~' => u32::from(HELVETICA[c as usize - 32]),
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0 * if bold { 1.06 } else { 1.0 }
}

/// Lines of at most `max` points, broken at spaces (a word longer than a line is cut).
fn wrap(text: &str, size: f32, bold: bool, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if width(&candidate, size, bold) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // A word wider than the line is cut where it fills it.
            let mut rest = word.to_string();
            while width(&rest, size, bold) > max {
                let mut cut = String::new();
                for c in rest.chars() {
                    if width(&format!("{cut}{c}"), size, bold) > max {
                        break;
                    }
                    cut.push(c);
                }
                if cut.is_empty() {
                    break;
                }
                rest = rest[cut.len()..].to_string();
                lines.push(cut);
            }
            line = rest;
        }
        lines.push(line);
    }
    lines
}

/// What is laid out, block by block.
enum Block {
    Title(String),
    Heading(String),
    Text(String),
    Muted(String),
    Quote(String),
    /// A line linked to a URL.
    Link(String, String),
}

/// A link's rectangle on its page (x0, y0, x1, y1 in points) and its URL.
type LinkArea = ([f32; 4], String);

/// Lays blocks out on A4 pages: text operations per page, and link rectangles per page.
struct Layout {
    pages: Vec<(Vec<Operation>, Vec<LinkArea>)>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Self {
            pages: vec![(Vec::new(), Vec::new())],
            y: PAGE_H - MARGIN,
        }
    }

    fn line(
        &mut self,
        text: &str,
        font: &str,
        size: f32,
        indent: f32,
        gray: f32,
        link: Option<&str>,
    ) {
        let leading = size * 1.35;
        if self.y - leading < MARGIN {
            self.pages.push((Vec::new(), Vec::new()));
            self.y = PAGE_H - MARGIN;
        }
        self.y -= leading;
        let x = MARGIN + indent;
        let bytes: Vec<u8> = text.chars().map(win_ansi).collect();
        let (ops, links) = self.pages.last_mut().expect("a page");
        ops.extend([
            Operation::new("BT", vec![]),
            Operation::new("g", vec![gray.into()]),
            Operation::new("Tf", vec![font.into(), size.into()]),
            Operation::new("Td", vec![x.into(), self.y.into()]),
            Operation::new("Tj", vec![Object::string_literal(bytes)]),
            Operation::new("ET", vec![]),
        ]);
        if let Some(url) = link {
            let w = width(text, size, false);
            links.push(([x, self.y - 2.0, x + w, self.y + size], url.to_string()));
        }
    }

    fn block(&mut self, block: &Block) {
        let full = PAGE_W - 2.0 * MARGIN;
        match block {
            Block::Title(t) => {
                for l in wrap(t, 18.0, true, full) {
                    self.line(&l, "F2", 18.0, 0.0, 0.0, None);
                }
                self.y -= 4.0;
            }
            Block::Heading(t) => {
                self.y -= 10.0;
                for l in wrap(t, 12.5, true, full) {
                    self.line(&l, "F2", 12.5, 0.0, 0.0, None);
                }
                self.y -= 2.0;
            }
            Block::Text(t) => {
                for l in wrap(t, 10.5, false, full) {
                    self.line(&l, "F1", 10.5, 0.0, 0.0, None);
                }
                self.y -= 4.0;
            }
            Block::Muted(t) => {
                for l in wrap(t, 9.0, false, full) {
                    self.line(&l, "F3", 9.0, 0.0, 0.35, None);
                }
                self.y -= 3.0;
            }
            Block::Quote(t) => {
                for l in wrap(t, 9.0, false, full - 28.0) {
                    self.line(&l, "F1", 9.0, 28.0, 0.35, None);
                }
                self.y -= 3.0;
            }
            Block::Link(t, url) => {
                for l in wrap(t, 10.0, false, full - 14.0) {
                    self.line(&l, "F1", 10.0, 14.0, 0.0, Some(url));
                }
            }
        }
    }
}

/// The blocks of a thread: the title, then per turn the question, what it was searched as,
/// the answer, and its sources (each linked to its passage) with their quotes.
fn blocks(thread: &Thread, base: &str) -> Vec<Block> {
    let base = base.trim_end_matches('/');
    let c = &thread.conversation;
    let mut out = vec![
        Block::Title(title_of(thread).to_string()),
        Block::Muted(format!(
            "Exported from Enclave: {} question{}, from {} to {} (UTC).",
            thread.turns.len(),
            if thread.turns.len() == 1 { "" } else { "s" },
            short_time(&c.created_at),
            short_time(&c.updated_at),
        )),
    ];
    for t in &thread.turns {
        out.push(Block::Heading(format!(
            "{}. {}",
            t.turn.position, t.turn.question
        )));
        if let Some(s) = &t.turn.standalone {
            out.push(Block::Muted(format!("Searched as: {s}")));
        }
        let Some(answer) = &t.answer else {
            out.push(Block::Muted(t.turn.answer_text.clone()));
            continue;
        };
        out.push(Block::Text(answer.text.clone()));
        if answer.refused {
            continue;
        }
        let shown = AnswerOut::from(answer);
        if !shown.citations.is_empty() {
            out.push(Block::Muted("Sources".into()));
        }
        for cit in &shown.citations {
            out.push(Block::Link(
                format!("[{}] {}, {}", cit.number, cit.title, cit.locator),
                format!("{base}{}#cited", cit.url),
            ));
            out.push(Block::Quote(
                cit.quote.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
        }
    }
    out
}

/// A thread as a PDF: the same content as the Markdown export, every cited source a link to
/// its passage view.
pub fn thread_pdf(thread: &Thread, base: &str) -> Vec<u8> {
    let mut layout = Layout::new();
    for b in blocks(thread, base) {
        layout.block(&b);
    }
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = |doc: &mut Document, name: &str| {
        doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => name,
            "Encoding" => "WinAnsiEncoding",
        })
    };
    let regular = font(&mut doc, "Helvetica");
    let bold = font(&mut doc, "Helvetica-Bold");
    let oblique = font(&mut doc, "Helvetica-Oblique");
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold, "F3" => oblique },
    });
    let mut kids = Vec::new();
    for (ops, links) in layout.pages {
        let content = Content { operations: ops };
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            content.encode().unwrap_or_default(),
        ));
        let annots: Vec<Object> = links
            .into_iter()
            .map(|(rect, url)| {
                doc.add_object(dictionary! {
                    "Type" => "Annot",
                    "Subtype" => "Link",
                    "Rect" => rect.iter().map(|v| Object::Real(*v)).collect::<Vec<_>>(),
                    "Border" => vec![0.into(), 0.into(), 0.into()],
                    "A" => dictionary! {
                        "S" => "URI",
                        "URI" => Object::string_literal(url.into_bytes()),
                    },
                })
                .into()
            })
            .collect();
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
            "Annots" => annots,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), (PAGE_W as i64).into(), (PAGE_H as i64).into()],
        }),
    );
    let info_id = doc.add_object(dictionary! {
        "Title" => Object::string_literal(title_of(thread).chars().map(win_ansi).collect::<Vec<u8>>()),
        "Producer" => Object::string_literal("Enclave"),
    });
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    doc.trailer.set("Info", info_id);
    doc.compress();
    let mut out = Vec::new();
    // Writing to memory cannot fail.
    let _ = doc.save_to(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_titles() {
        assert_eq!(file_stem("What is Debian?"), "What-is-Debian");
        assert_eq!(file_stem("../../etc"), "etc");
        assert_eq!(file_stem(""), "conversation");
    }

    #[test]
    fn link_text_cannot_break_out() {
        assert_eq!(md_text("a [b](c)\nd"), "a \\[b\\](c) d");
    }

    #[test]
    fn lines_fit_the_page_and_keep_every_word() {
        let text = "Debian is a free operating system ".repeat(30) + &"x".repeat(200);
        let lines = wrap(&text, 10.5, false, 483.0);
        assert!(lines.len() > 5);
        for l in &lines {
            assert!(width(l, 10.5, false) <= 483.0, "{l}");
        }
        let joined: String = lines.concat().split_whitespace().collect();
        let original: String = text.split_whitespace().collect();
        assert_eq!(joined, original);
        assert_eq!(win_ansi('é'), 0xE9);
        assert_eq!(win_ansi('—'), 0x97);
        assert_eq!(win_ansi('漢'), b'?');
    }
}
