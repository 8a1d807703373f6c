//! Chunking: the document text is cut at the highest structural boundary that keeps a chunk
//! within the embedding model's token budget (headings, then paragraphs, lines, sentences,
//! words), with an overlap between neighbours. A table in plain text (a PDF's, written as
//! Markdown by the parser) is cut from the prose around it, so that its rows stay together
//! and a table too long for one chunk is cut between rows. Sizes are counted in the embedding
//! model's own word pieces by text-splitter with the model's tokenizer.

use std::sync::Arc;

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use crate::IngestError;
use crate::parse::{Heading, ParsedDocument};

/// Joins the headings of a heading path.
pub const PATH_SEPARATOR: &str = " › ";

/// One chunk of a document. `char_start..char_end` are char offsets into
/// [`ParsedDocument::text`] and give back `text` exactly; pages are 1-based.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub ordinal: usize,
    pub text: String,
    pub char_start: usize,
    pub char_end: usize,
    pub page_start: usize,
    pub page_end: usize,
    pub token_count: usize,
    /// The heading path above the chunk (top level first, joined by [`PATH_SEPARATOR`]), when
    /// the document has headings (a PDF: its outline).
    pub section: Option<String>,
}

/// Where plain text is cut at headings: (char offset, byte offset) of each heading after the
/// start of the text, in order, once each.
fn heading_cuts(text: &str, headings: &[Heading]) -> Vec<(usize, usize)> {
    let mut wanted: Vec<usize> = headings
        .iter()
        .map(|h| h.offset)
        .filter(|&o| o > 0)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut wanted = wanted.into_iter().peekable();
    let mut cuts = Vec::new();
    for (char_index, (byte_index, _)) in text.char_indices().enumerate() {
        match wanted.peek() {
            Some(&w) if w == char_index => {
                cuts.push((char_index, byte_index));
                wanted.next();
            }
            Some(_) => {}
            None => break,
        }
    }
    cuts
}

/// True for a line of a Markdown table: it starts and ends with `|`.
fn is_table_row(line: &str) -> bool {
    let line = line.trim();
    line.len() >= 2 && line.starts_with('|') && line.ends_with('|')
}

/// Where plain text is cut around its Markdown tables (runs of two or more table lines, as
/// the PDF parser writes the tables of a text layer), so that a table's rows are chunked
/// together and apart from the prose around them: (char offset, byte offset) of each table's
/// first line and of the line after its last, inside the text only.
fn table_cuts(text: &str) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    // (char, byte) offset of the current run of table lines, and its length in lines.
    let mut run: Option<((usize, usize), usize)> = None;
    let (mut chars, mut bytes) = (0, 0);
    let total = text.len();
    let mut close = |run: Option<((usize, usize), usize)>, at: (usize, usize)| {
        if let Some((start, _)) = run.filter(|(_, rows)| *rows >= 2) {
            cuts.extend([start, at].into_iter().filter(|&(_, b)| b > 0 && b < total));
        }
    };
    for line in text.split_inclusive('\n') {
        if is_table_row(line) {
            run = Some(run.map_or(((chars, bytes), 1), |(start, rows)| (start, rows + 1)));
        } else {
            close(run.take(), (chars, bytes));
        }
        chars += line.chars().count();
        bytes += line.len();
    }
    close(run, (chars, bytes));
    cuts
}

/// The heading path at `offset`: for each level, the last heading before it whose parents are
/// still open, top level first. `None` before the first heading.
pub fn heading_path(headings: &[Heading], offset: usize) -> Option<String> {
    let mut open: Vec<&Heading> = Vec::new();
    for h in headings.iter().take_while(|h| h.offset <= offset) {
        while open.last().is_some_and(|o| o.level >= h.level) {
            open.pop();
        }
        open.push(h);
    }
    (!open.is_empty()).then(|| {
        open.iter()
            .map(|h| h.title.trim())
            .collect::<Vec<_>>()
            .join(PATH_SEPARATOR)
    })
}

/// Where a chunk's own content starts: past the blank lines and the heading lines it opens
/// with (char offset), so that a chunk that begins with "# Budget" then "## Rows 2–40" is under
/// "Budget › Rows 2–40", not under "Budget" alone. A heading whose title the page wrapped onto
/// the next lines ("The Debian package management" then "tools") takes those lines with it.
fn content_start(headings: &[Heading], char_start: usize, piece: &str) -> usize {
    let mut at = char_start;
    // The words of the last heading's title not yet seen on its lines.
    let mut rest: Vec<&str> = Vec::new();
    for line in piece.split_inclusive('\n') {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(h) = headings.iter().find(|h| h.offset == at) {
            let title: Vec<&str> = h.title.split_whitespace().collect();
            rest = match title.strip_prefix(words.as_slice()) {
                Some(tail) if !words.is_empty() => tail.to_vec(),
                _ => Vec::new(),
            };
        } else if !words.is_empty() {
            match rest.strip_prefix(words.as_slice()) {
                Some(tail) => rest = tail.to_vec(),
                None => break,
            }
        }
        at += line.chars().count();
    }
    at
}

/// The most tokens over the budget a chunk may grow by taking the bare headings before it
/// ([`Chunker::join_bare_headings`]) or a fragment beside it ([`Chunker::join_fragments`]): a
/// few headings' or a sentence's worth, far below the embedding models' input limits.
pub const JOIN_ALLOWANCE: usize = 32;

/// How many tokens over a budget of `max_tokens` a joined chunk may grow, and the size under
/// which a piece is a fragment (one line of its own, "Switches control the format of display
/// information:", next to the table it introduces; the end of a section cut off by the size
/// limit): a quarter of the budget, at most [`JOIN_ALLOWANCE`], so that a collection that asks
/// for small chunks does not get chunks twice their size.
pub fn join_allowance(max_tokens: usize) -> usize {
    JOIN_ALLOWANCE.min(max_tokens / 4)
}

/// Whether `piece` (at char offset `char_start`) opens with a heading and holds no letter past
/// its heading lines (a section number such as "2.5.1" at most).
fn is_bare_heading(headings: &[Heading], char_start: usize, piece: &str) -> bool {
    let content = content_start(headings, char_start, piece);
    content > char_start
        && !piece
            .chars()
            .skip(content - char_start)
            .any(char::is_alphabetic)
}

/// Cuts documents into chunks sized in the embedding model's tokens.
#[derive(Clone)]
pub struct Chunker {
    tokenizer: Arc<tokenizers::Tokenizer>,
    max_tokens: usize,
    overlap_tokens: usize,
    headings: bool,
    /// Most tokens the embedding model reads of a chunk: a chunk joined to bare headings
    /// stays within it.
    input_limit: usize,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("max_tokens", &self.max_tokens)
            .field("overlap_tokens", &self.overlap_tokens)
            .field("headings", &self.headings)
            .field("input_limit", &self.input_limit)
            .finish()
    }
}

impl Chunker {
    /// A chunker with the embedding model's tokenizer (truncation off) and its budget.
    pub fn new(
        tokenizer: Arc<tokenizers::Tokenizer>,
        max_tokens: usize,
        overlap_tokens: usize,
    ) -> Result<Self, IngestError> {
        // Validate once here so that chunking itself cannot fail on configuration.
        ChunkConfig::new(max_tokens)
            .with_overlap(overlap_tokens)
            .map_err(|e| IngestError::Config(format!("chunking: {e}")))?;
        Ok(Self {
            tokenizer,
            max_tokens,
            overlap_tokens,
            headings: true,
            input_limit: usize::MAX,
        })
    }

    /// Whether the document's headings shape the chunks (default: yes): plain text (a PDF
    /// with an outline) is cut at every heading before it is cut by size, and a chunk's
    /// heading path is embedded and indexed with its text. Off: only Markdown's own headings
    /// cut, and only the title is added.
    pub fn with_headings(mut self, on: bool) -> Self {
        self.headings = on;
        self
    }

    /// The most tokens the embedding model reads (without its special tokens): a chunk that
    /// takes the bare headings or the fragment beside it ([`join_allowance`]) never grows past
    /// it.
    pub fn with_input_limit(mut self, limit: usize) -> Self {
        self.input_limit = limit;
        self
    }

    /// The text that is embedded and indexed for a chunk: the document title, the heading path
    /// (unless it is off, or only repeats the title), then the chunk's text. They give a chunk
    /// the context its own words may lack ("Compiling › Ethernet support").
    pub fn indexed_text(&self, title: &str, chunk: &Chunk) -> String {
        match &chunk.section {
            Some(s) if self.headings && s != title => {
                format!("{title}\n{s}\n{}", chunk.text)
            }
            _ => format!("{title}\n{}", chunk.text),
        }
    }

    /// The same tokenizer with other sizes (a collection's own chunking settings).
    pub fn with_sizes(
        &self,
        max_tokens: usize,
        overlap_tokens: usize,
    ) -> Result<Self, IngestError> {
        Ok(
            Self::new(Arc::clone(&self.tokenizer), max_tokens, overlap_tokens)?
                .with_headings(self.headings)
                .with_input_limit(self.input_limit),
        )
    }

    /// The largest chunk, in tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens shared by neighbouring chunks.
    pub fn overlap_tokens(&self) -> usize {
        self.overlap_tokens
    }

    /// Number of word pieces in `text`, as the embedding model counts them (no special tokens).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map_or(0, |e| e.get_ids().len())
    }

    /// The most tokens a joined piece may hold: [`join_allowance`] over the budget, within the
    /// embedding model's input ([`Chunker::with_input_limit`]).
    fn join_bound(&self) -> usize {
        (self.max_tokens + join_allowance(self.max_tokens)).min(self.input_limit)
    }

    /// Joins each piece that holds only headings to the piece after it, so that no chunk is a
    /// bare title: a section whose title is followed at once by its first subsection's ("How
    /// can R be installed?" then "2.5.1"), or a title the splitter packed alone because the
    /// paragraph after it fills a chunk. Such a chunk matches its question best of all and
    /// gives the reader nothing. A join is made when the joined piece stays within
    /// [`Chunker::join_bound`]; the last piece has nothing to join.
    /// `pieces` are slices of `text`, in order, with their char offsets.
    fn join_bare_headings<'t>(
        &self,
        text: &'t str,
        headings: &[Heading],
        pieces: Vec<(usize, &'t str)>,
    ) -> Vec<(usize, &'t str)> {
        if headings.is_empty() {
            return pieces;
        }
        let byte_of = |piece: &str| piece.as_ptr() as usize - text.as_ptr() as usize;
        let mut out = Vec::with_capacity(pieces.len());
        // The bare pieces waiting for the next piece: (char offset, byte offset) of the first.
        let mut pending: Option<(usize, usize)> = None;
        let mut rest = pieces.into_iter().peekable();
        while let Some((char_start, piece)) = rest.next() {
            let (char_start, byte_start) = pending.take().unwrap_or((char_start, byte_of(piece)));
            let joined = &text[byte_start..byte_of(piece) + piece.len()];
            let bare = is_bare_heading(headings, char_start, joined);
            if bare
                && rest.peek().is_some_and(|&(_, next)| {
                    let with_next = &text[byte_start..byte_of(next) + next.len()];
                    self.count_tokens(with_next) <= self.join_bound()
                })
            {
                pending = Some((char_start, byte_start));
                continue;
            }
            out.push((char_start, joined));
        }
        out
    }

    /// Joins each fragment (a piece of fewer than [`join_allowance`] tokens) to the piece
    /// after it, unless that piece opens a section; else to the piece before it, unless the
    /// fragment opens a section itself. A one-line chunk is passed over by retrieval or, worse,
    /// copied by the model without the table or the paragraph it belongs to. A join is made
    /// within [`Chunker::join_bound`].
    /// `pieces` are slices of `text`, in order, with their char offsets.
    fn join_fragments<'t>(
        &self,
        text: &'t str,
        headings: &[Heading],
        pieces: Vec<(usize, &'t str)>,
    ) -> Vec<(usize, &'t str)> {
        let byte_of = |piece: &str| piece.as_ptr() as usize - text.as_ptr() as usize;
        let allowance = join_allowance(self.max_tokens);
        let bound = self.join_bound();
        let opens_section = |char_start: usize, piece: &str| {
            content_start(headings, char_start, piece) > char_start
        };
        let mut out: Vec<(usize, &'t str)> = Vec::with_capacity(pieces.len());
        // A fragment waiting for the next piece: its (char offset, byte offset).
        let mut pending: Option<(usize, usize)> = None;
        let mut rest = pieces.into_iter().peekable();
        while let Some((char_start, piece)) = rest.next() {
            let (char_start, byte_start) = pending.take().unwrap_or((char_start, byte_of(piece)));
            let joined = &text[byte_start..byte_of(piece) + piece.len()];
            if self.count_tokens(joined) < allowance {
                let forward = rest.peek().is_some_and(|&(next_start, next)| {
                    !opens_section(next_start, next)
                        && self.count_tokens(&text[byte_start..byte_of(next) + next.len()]) <= bound
                });
                if forward {
                    pending = Some((char_start, byte_start));
                    continue;
                }
                if !opens_section(char_start, joined)
                    && let Some(last) = out.last_mut()
                {
                    // Overlapping pieces: the fragment may end inside the one before it.
                    let end = (byte_of(last.1) + last.1.len()).max(byte_start + joined.len());
                    let with_last = &text[byte_of(last.1)..end];
                    if self.count_tokens(with_last) <= bound {
                        last.1 = with_last;
                        continue;
                    }
                }
            }
            out.push((char_start, joined));
        }
        out
    }

    /// Chunks of a parsed document, in order.
    pub fn chunk(&self, doc: &ParsedDocument) -> Vec<Chunk> {
        let text = doc.text();
        let config = ChunkConfig::new(self.max_tokens)
            .with_sizer(self.tokenizer.as_ref())
            .with_overlap(self.overlap_tokens)
            .expect("validated in Chunker::new");
        let pieces: Vec<(usize, &str)> = if doc.markdown {
            MarkdownSplitter::new(config)
                .chunk_char_indices(&text)
                .map(|c| (c.char_offset, c.chunk))
                .collect()
        } else {
            let splitter = TextSplitter::new(config);
            let mut cuts = table_cuts(&text);
            if self.headings {
                cuts.extend(heading_cuts(&text, &doc.headings));
            }
            cuts.sort_unstable();
            cuts.dedup();
            let mut bounds = vec![(0, 0)];
            bounds.extend(cuts);
            bounds.push((text.chars().count(), text.len()));
            bounds
                .windows(2)
                .flat_map(|w| {
                    let ((char_start, from), (_, to)) = (w[0], w[1]);
                    splitter
                        .chunk_char_indices(&text[from..to])
                        .map(move |c| (char_start + c.char_offset, c.chunk))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let pieces: Vec<(usize, &str)> = pieces
            .into_iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .collect();
        let pieces = self.join_bare_headings(&text, &doc.headings, pieces);
        let pieces = self.join_fragments(&text, &doc.headings, pieces);
        let page_starts = doc.page_starts();
        let page_of = |offset: usize| page_starts.partition_point(|&s| s <= offset).max(1);
        pieces
            .into_iter()
            .enumerate()
            .map(|(ordinal, (char_start, piece))| {
                let char_end = char_start + piece.chars().count();
                let section = heading_path(
                    &doc.headings,
                    content_start(&doc.headings, char_start, piece),
                );
                Chunk {
                    ordinal,
                    text: piece.to_string(),
                    char_start,
                    char_end,
                    page_start: page_of(char_start),
                    page_end: page_of(char_end.saturating_sub(1).max(char_start)),
                    token_count: self.count_tokens(piece),
                    section,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(offset: usize, level: u8, title: &str) -> Heading {
        Heading {
            offset,
            level,
            title: title.into(),
        }
    }

    #[test]
    fn heading_paths_follow_the_levels() {
        let hs = [
            h(0, 1, "Compiling"),
            h(10, 2, "UNIX"),
            h(20, 3, "Ethernet"),
            h(30, 2, "Windows"),
            h(40, 1, "Running"),
        ];
        assert_eq!(heading_path(&hs, 5).as_deref(), Some("Compiling"));
        assert_eq!(
            heading_path(&hs, 25).as_deref(),
            Some("Compiling › UNIX › Ethernet")
        );
        // A sibling closes the deeper levels; a new top level closes everything.
        assert_eq!(
            heading_path(&hs, 30).as_deref(),
            Some("Compiling › Windows")
        );
        assert_eq!(heading_path(&hs, 99).as_deref(), Some("Running"));
        assert_eq!(heading_path(&hs[1..], 5), None);
    }

    #[test]
    fn plain_text_is_cut_around_tables() {
        let text = "Prices são:\n| Item | Price |\n| --- | --- |\n| Apple | 1 |\nAfter.\n| not a table |\nEnd\n| A | B |\n| --- | --- |";
        let cuts = table_cuts(text);
        let at = |s: &str| {
            let b = text.find(s).unwrap();
            (text[..b].chars().count(), b)
        };
        // The table's first line, the line after it, the last table's first line; a single
        // table-like line is prose, and the end of the text is no cut.
        assert_eq!(cuts, [at("| Item"), at("After."), at("| A |")]);
        assert!(table_cuts("| A | B |\n| --- | --- |\n").is_empty());
    }

    #[test]
    fn a_piece_of_headings_and_section_numbers_is_bare() {
        let text = "2.5 How can R be installed?\n\n2.5.1\n";
        let hs = [h(0, 2, "2.5 How can R be installed?")];
        assert!(is_bare_heading(&hs, 0, text));
        // Text after the title, or a piece that does not open with a heading, is not bare.
        assert!(!is_bare_heading(
            &hs,
            0,
            "2.5 How can R be installed?\nFrom CRAN."
        ));
        assert!(!is_bare_heading(&hs, 3, "2.5.1\n"));
        assert!(!is_bare_heading(&[], 0, text));
        // A title wrapped onto two lines is one heading; a line that does not continue the
        // title is content.
        let hs = [h(0, 1, "The Debian package management tools")];
        let wrapped = "The Debian package management\ntools\n\n8.1\n";
        assert!(is_bare_heading(&hs, 0, wrapped));
        assert_eq!(content_start(&hs, 0, wrapped), wrapped.find("8.1").unwrap());
        assert!(!is_bare_heading(
            &hs,
            0,
            "The Debian package management\ntools are dpkg and apt.\n"
        ));
        assert!(!is_bare_heading(
            &hs,
            0,
            "The Debian package management\nsystem\n"
        ));
    }

    #[test]
    fn plain_text_is_cut_at_headings() {
        let text = "Intro ü.\n\n1 Compiling\nText.\n\n1.1 Ethernet\nMore.";
        let at = |s: &str| text[..text.find(s).unwrap()].chars().count();
        let hs = [
            h(0, 1, "Intro"),
            h(at("1 Compiling"), 1, "1 Compiling"),
            h(at("1.1 Ethernet"), 2, "1.1 Ethernet"),
        ];
        let cuts = heading_cuts(text, &hs);
        assert_eq!(cuts.len(), 2);
        assert_eq!(&text[cuts[0].1..cuts[1].1], "1 Compiling\nText.\n\n");
        assert_eq!(cuts[0].0, at("1 Compiling"));
    }
}
