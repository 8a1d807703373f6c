//! Chunking: the document text is cut at the highest structural boundary that keeps a chunk
//! within the embedding model's token budget (headings, then paragraphs, lines, sentences,
//! words), with an overlap between neighbours. Sizes are counted in the embedding model's own
//! word pieces by text-splitter with the model's tokenizer.

use std::sync::Arc;

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use crate::IngestError;
use crate::parse::ParsedDocument;

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
    /// The nearest heading above the chunk, when the document has headings.
    pub section: Option<String>,
}

/// Cuts documents into chunks sized in the embedding model's tokens.
#[derive(Clone)]
pub struct Chunker {
    tokenizer: Arc<tokenizers::Tokenizer>,
    max_tokens: usize,
    overlap_tokens: usize,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("max_tokens", &self.max_tokens)
            .field("overlap_tokens", &self.overlap_tokens)
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
        })
    }

    /// The same tokenizer with other sizes (a collection's own chunking settings).
    pub fn with_sizes(
        &self,
        max_tokens: usize,
        overlap_tokens: usize,
    ) -> Result<Self, IngestError> {
        Self::new(Arc::clone(&self.tokenizer), max_tokens, overlap_tokens)
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
            TextSplitter::new(config)
                .chunk_char_indices(&text)
                .map(|c| (c.char_offset, c.chunk))
                .collect()
        };
        let page_starts = doc.page_starts();
        let page_of = |offset: usize| page_starts.partition_point(|&s| s <= offset).max(1);
        pieces
            .into_iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .enumerate()
            .map(|(ordinal, (char_start, piece))| {
                let char_end = char_start + piece.chars().count();
                let section = doc
                    .headings
                    .iter()
                    .take_while(|h| h.offset <= char_start)
                    .last()
                    .map(|h| h.title.clone());
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
