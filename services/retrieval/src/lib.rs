//! Retrieval: a query becomes the passages of the corpus that answer it.
//!
//! Dense (embedding cosine) and BM25 (sparse, IDF by the store) candidates are searched inside
//! the vector store with the filters applied there, fused by weighted reciprocal rank fusion,
//! checked against the metadata store so that only active versions are returned, de-duplicated
//! where chunks overlap, tables of contents ranked after the passages of content
//! ([`contents`]), and optionally widened with their neighbouring chunks.
//!
//! The fusion is computed here rather than by the store's built-in RRF because the weights are
//! configurable and every passage reports its per-channel scores and ranks.

pub mod calibrate;
pub mod contents;
pub mod eval;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use enclave_embed::{Embedder, OnnxEmbedder};
use enclave_storage::{
    Bm25Encoder, ChunkRecord, Document, MetaStore, VectorFilter, VectorQuery, VectorStore,
};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

/// Errors of retrieval.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error(transparent)]
    Storage(#[from] enclave_storage::StorageError),
    #[error(transparent)]
    Embed(#[from] enclave_embed::EmbedError),
    /// A collection named in the request does not exist.
    #[error("unknown collection '{0}'")]
    UnknownCollection(String),
    /// The request is not usable (empty query, zero limit, ...).
    #[error("invalid search request: {0}")]
    Invalid(String),
}

/// Which channels rank the passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    Dense,
    Bm25,
    #[default]
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = RetrievalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dense" => Ok(Self::Dense),
            "bm25" => Ok(Self::Bm25),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(RetrievalError::Invalid(format!(
                "unknown mode '{other}' (dense, bm25, hybrid)"
            ))),
        }
    }
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dense => "dense",
            Self::Bm25 => "bm25",
            Self::Hybrid => "hybrid",
        })
    }
}

/// Fusion and relevance knobs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalOptions {
    /// Weight of the dense ranking in the fusion.
    pub dense_weight: f32,
    /// Weight of the BM25 ranking in the fusion.
    pub bm25_weight: f32,
    /// The `k` of reciprocal rank fusion (60 in the literature).
    pub rrf_k: f32,
    /// Candidates fetched per channel, as a multiple of the requested limit.
    pub candidates_factor: usize,
    /// The best passage must reach this cosine similarity (dense channel) for the results to
    /// count as relevant; below it, the search reports "nothing relevant found".
    pub min_dense_score: f32,
    /// Whether words of the query that occur in no passage it may return (see
    /// [`SearchResults::unmatched_terms`]) make it "nothing relevant found".
    pub refuse_unmatched: RefuseUnmatched,
    /// Whether, with `refuse_unmatched` on, names of the query that no one document among the
    /// results holds together (see [`SearchResults::names_apart`]) refuse as well.
    pub names_together: bool,
    /// Weight of the sentence ranking in hybrid fusion (see [`sentence_units`]); 0: off.
    pub sentence_weight: f32,
    /// How many of the best fused passages the sentence ranking reorders.
    pub sentence_candidates: usize,
}

/// The passages, best first, whose documents [`SearchResults::names_apart`] looks at.
pub const NAMES_TOGETHER_PASSAGES: usize = 5;

pub use enclave_settings::RefuseUnmatched;

/// The units a passage is ranked by in the sentence ranking: its sentences, white space made
/// single spaces, a sentence shorter than [`SENTENCE_UNIT_CHARS`] joined to the next (a
/// heading, "See below.", a list's number), each with the passage's heading path or, without
/// one, its document's title before it, as its chunk is embedded with them.
pub fn sentence_units(title: &str, section: Option<&str>, text: &str) -> Vec<String> {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut units: Vec<String> = Vec::new();
    let mut current = String::new();
    for sentence in flat.unicode_sentences() {
        current.push_str(sentence);
        if current.trim().chars().count() >= SENTENCE_UNIT_CHARS {
            units.push(current.trim().to_string());
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        match units.last_mut() {
            Some(last) if rest.chars().count() < SENTENCE_UNIT_CHARS => {
                last.push(' ');
                last.push_str(rest);
            }
            _ => units.push(rest.to_string()),
        }
    }
    let prefix = section
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(title.trim());
    if prefix.is_empty() {
        return units;
    }
    units
        .into_iter()
        .map(|u| format!("{prefix}: {u}"))
        .collect()
}

/// Shortest unit of the sentence ranking, in characters (see [`sentence_units`]).
pub const SENTENCE_UNIT_CHARS: usize = 60;

/// Whether a word the collections never mention is a name: it holds a capital letter, a digit
/// or an inner hyphen (Excel, DataFrame, KA10, scikit-learn), as a product, a standard or a
/// model does; plain lower-case words are more often a reader's own wording.
pub fn looks_like_name(word: &str) -> bool {
    word.chars().any(|c| c.is_uppercase() || c.is_ascii_digit())
        || word.trim_matches('-').contains('-')
}

/// The words of a query as the unmatched-word checks read it: split at anything but letters,
/// digits, `_`, `-` and `.`, trimmed of leading and trailing punctuation.
fn query_words(query: &str) -> impl Iterator<Item = &str> {
    query
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
}

/// The words of `query` that look like names ([`looks_like_name`]), distinct, in query order.
/// The first word's leading capital does not count: every sentence has one ("Give me an
/// overview ..." names nothing).
pub fn query_names(query: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, word) in query_words(query).enumerate() {
        let name = if i == 0 {
            let mut chars = word.chars();
            let first = chars.next().map(|c| c.to_lowercase().collect::<String>());
            looks_like_name(&(first.unwrap_or_default() + chars.as_str()))
        } else {
            looks_like_name(word)
        };
        if name && !names.iter().any(|n| n == word) {
            names.push(word.to_string());
        }
    }
    names
}

/// Whether `policy` refuses a search whose query has these names no one document among the
/// results holds together ([`SearchResults::names_apart`]), with `names_together` as
/// `retrieval.names_together`.
pub fn refuses_apart(
    policy: RefuseUnmatched,
    names_together: bool,
    names_apart: &[String],
) -> bool {
    policy != RefuseUnmatched::Off && names_together && !names_apart.is_empty()
}

/// Whether `policy` refuses a search whose query has these unmatched words.
pub fn refuses_unmatched(policy: RefuseUnmatched, unmatched: &[String]) -> bool {
    match policy {
        RefuseUnmatched::Off => false,
        RefuseUnmatched::Names => {
            unmatched.len() >= 2 || unmatched.iter().any(|w| looks_like_name(w))
        }
        RefuseUnmatched::Words => !unmatched.is_empty(),
    }
}

impl RetrievalOptions {
    /// What a ranking of `weight` adds to the fused score of its passage at 0-based `rank`
    /// (weighted reciprocal rank fusion).
    fn rrf_share(&self, weight: f32, rank: usize) -> f32 {
        weight / (self.rrf_k + rank as f32 + 1.0)
    }
}

impl From<&enclave_settings::RetrievalSettings> for RetrievalOptions {
    fn from(s: &enclave_settings::RetrievalSettings) -> Self {
        Self {
            dense_weight: s.dense_weight,
            bm25_weight: s.bm25_weight,
            rrf_k: s.rrf_k,
            candidates_factor: s.candidates_factor,
            min_dense_score: s.min_dense_score,
            refuse_unmatched: s.refuse_unmatched,
            names_together: s.names_together,
            sentence_weight: s.sentence_weight,
            sentence_candidates: s.sentence_candidates,
        }
    }
}

/// The documented defaults of the `[retrieval]` settings.
impl Default for RetrievalOptions {
    fn default() -> Self {
        Self::from(&enclave_settings::RetrievalSettings::default())
    }
}

/// What to search for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub query: String,
    /// Collection names; empty: all collections.
    pub collections: Vec<String>,
    /// Ranking; `None`: the `mode` setting of the collections searched when they all name
    /// the same one (see [`collection_mode`]), else hybrid.
    pub mode: Option<SearchMode>,
    pub limit: usize,
    /// Which documents, besides collections and access, the passages may come from.
    pub scope: Scope,
    /// The caller's access tags: passages must carry one of them (empty: no restriction; the
    /// server always fills this in from the caller's identity).
    pub access: Vec<String>,
    /// Add each passage's neighbouring chunks (one on each side) to its text.
    pub expand_neighbours: bool,
    /// Hybrid fusion weights; `None`: the weights the collections searched agree on (see
    /// [`collection_fusion`]), else `retrieval.dense_weight` and `retrieval.bm25_weight`.
    pub fusion: Option<Fusion>,
    /// Text written to stand beside the query (a hypothetical answer, see
    /// `generation.expand_query`): both channels rank with the query and it together, while
    /// relevance and [`SearchResults::unmatched_terms`] are judged on the query alone.
    pub expansion: Option<String>,
}

/// The weights of the two rankings in hybrid fusion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fusion {
    pub dense_weight: f32,
    pub bm25_weight: f32,
}

impl Fusion {
    /// Weights that give the dense ranking `share` (0 to 1) of the fusion, summing to 2 so
    /// that a share of 0.5 is the default (1, 1).
    pub fn with_dense_share(share: f32) -> Self {
        let share = share.clamp(0.0, 1.0);
        Self {
            dense_weight: 2.0 * share,
            bm25_weight: 2.0 * (1.0 - share),
        }
    }

    /// The dense ranking's share of the fusion.
    pub fn dense_share(&self) -> f32 {
        let sum = self.dense_weight + self.bm25_weight;
        if sum > 0.0 {
            self.dense_weight / sum
        } else {
            0.5
        }
    }
}

/// The hybrid fusion weights a collection's settings name (`{"dense_weight": 1.4,
/// "bm25_weight": 0.6}`, written by `enclave calibrate`), if any.
pub fn collection_fusion(settings: &serde_json::Value) -> Result<Option<Fusion>, RetrievalError> {
    let weight = |key: &str| match settings.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(w) if w.is_finite() && w >= 0.0 => Ok(Some(w as f32)),
            _ => Err(RetrievalError::Invalid(format!(
                "collection setting {key} = {v}: use a number of 0 or more"
            ))),
        },
    };
    match (weight("dense_weight")?, weight("bm25_weight")?) {
        (None, None) => Ok(None),
        (Some(d), Some(b)) if d + b > 0.0 => Ok(Some(Fusion {
            dense_weight: d,
            bm25_weight: b,
        })),
        (Some(_), Some(_)) => Err(RetrievalError::Invalid(
            "collection settings dense_weight and bm25_weight are both 0".into(),
        )),
        _ => Err(RetrievalError::Invalid(
            "collection settings dense_weight and bm25_weight go together: set both".into(),
        )),
    }
}

/// The retrieval mode a collection's settings name (`{"mode": "bm25"}`), if any.
pub fn collection_mode(settings: &serde_json::Value) -> Result<Option<SearchMode>, RetrievalError> {
    match settings.get("mode") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(m)) => m.parse().map(Some),
        Some(other) => Err(RetrievalError::Invalid(format!(
            "collection setting mode = {other}: use \"dense\", \"bm25\" or \"hybrid\""
        ))),
    }
}

/// Document filters of a search, applied inside the vector search. Empty or `None`: no
/// restriction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// Restrict to these MIME types.
    pub mime_types: Vec<String>,
    /// Restrict to documents carrying one of these tags.
    pub tags: Vec<String>,
    /// Only documents dated at or after this instant (Unix seconds; see [`parse_date_bound`]).
    /// A document's date is an email's `Date` or a PDF's creation date (an attachment takes
    /// its email's); undated documents are left out whenever a bound is given.
    pub date_from: Option<i64>,
    /// Only documents dated at or before this instant (Unix seconds).
    pub date_to: Option<i64>,
    /// Only documents by one of these authors or senders: an email address, a display name, or
    /// a PDF's author, matched whole and without regard to case.
    pub authors: Vec<String>,
}

/// Reads a date bound of a search: `YYYY-MM-DD` (the start of that day in UTC, or its last
/// second when `end_of_day`) or an RFC 3339 instant (`2024-03-05T10:00:00+01:00`). Returns
/// Unix seconds.
pub fn parse_date_bound(text: &str, end_of_day: bool) -> Result<i64, RetrievalError> {
    let text = text.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let time = if end_of_day {
            chrono::NaiveTime::from_hms_opt(23, 59, 59)
        } else {
            chrono::NaiveTime::from_hms_opt(0, 0, 0)
        }
        .expect("a valid time of day");
        return Ok(day.and_time(time).and_utc().timestamp());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp())
        .map_err(|_| {
            RetrievalError::Invalid(format!(
                "'{text}' is not a date: use YYYY-MM-DD or an RFC 3339 time \
                 (2024-03-05T10:00:00Z)"
            ))
        })
}

/// Scores of a passage, per channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Cosine similarity to the query, when the dense channel found it.
    pub dense: Option<f32>,
    /// BM25 score, when the BM25 channel found it.
    pub bm25: Option<f32>,
    /// Cosine similarity of the passage's sentence nearest to the query, when the sentence
    /// ranking (`retrieval.sentence_weight`) reordered it.
    #[serde(default)]
    pub sentence: Option<f32>,
    /// Fused score that orders the results.
    pub fused: f32,
}

/// A retrieved passage with everything a citation needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub chunk: ChunkRecord,
    pub document_title: String,
    pub source_uri: String,
    pub scores: Scores,
    /// The text handed to a reader: the chunk, or the chunk with its neighbours.
    pub context: String,
    /// Where the passage is, as a citation names it ([`locator`]).
    #[serde(default)]
    pub locator: String,
    /// Not found by the search: the opening chunk of the section of the passage after it
    /// ([`Retriever::with_section_leads`]), so it has no scores of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub section_lead: bool,
}

/// Where a passage is, as a citation names it. `noun` is what the document calls a page
/// (its metadata's `page_noun`; `page` when it has none): "page 4", "pages 4–5", "slide 3";
/// a sheet by its name and rows and a word-processor document by its section, from the
/// chunk's heading path ("sheet Budget, rows 2–40", "section Security").
pub fn locator(noun: &str, page_start: i64, page_end: i64, section: Option<&str>) -> String {
    let section = section.map(str::trim).filter(|s| !s.is_empty());
    match (noun, section) {
        ("sheet", Some(s)) => {
            let mut parts: Vec<String> = s.split(" › ").map(str::to_string).collect();
            if let Some(rows) = parts.last_mut().filter(|p| p.starts_with("Row")) {
                *rows = rows.replacen("Row", "row", 1);
            }
            if parts.len() > 1 {
                format!("sheet {}", parts.join(", "))
            } else {
                parts.join(", ")
            }
        }
        ("section", Some(s)) => format!("section {s}"),
        ("section", None) => "the document's start".to_string(),
        _ => {
            let noun = if noun == "sheet" || noun.is_empty() {
                "page"
            } else {
                noun
            };
            if page_start == page_end {
                format!("{noun} {page_start}")
            } else {
                format!("{noun}s {page_start}–{page_end}")
            }
        }
    }
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    /// Best first: passages of content by fused score, then tables of contents.
    pub passages: Vec<Passage>,
    /// False when nothing reached the relevance threshold: `passages` are then the nearest
    /// ones, shown for reference only.
    pub relevant: bool,
    /// Cosine similarity of the nearest chunk to the query: `relevant` compares it with the
    /// threshold (`retrieval.min_dense_score`).
    pub best_dense: f32,
    /// Words of the query (stop words aside) that occur in no passage the search may return
    /// (same collections, access and scope), as the query spells them. An answer cannot come
    /// from passages that never mention what the question is about.
    pub unmatched_terms: Vec<String>,
    /// Every name of the query (see [`query_names`]) when no one document among those of the
    /// first [`NAMES_TOGETHER_PASSAGES`] passages mentions them all; empty otherwise. The
    /// manual of one product seldom answers a question that also names a product only other
    /// documents mention ("get SIMH from GitHub").
    pub names_apart: Vec<String>,
    /// Words of the query the BM25 index looks up (stop words aside), distinct.
    pub query_terms: usize,
    pub mode: SearchMode,
    /// The weights the rankings were fused with (dense 1 and BM25 0 in dense mode, the other
    /// way round in BM25 mode).
    pub fusion: Fusion,
    pub took_ms: f64,
}

/// Searches the corpus.
#[derive(Clone)]
pub struct Retriever {
    meta: MetaStore,
    vectors: Arc<dyn VectorStore>,
    embedder: OnnxEmbedder,
    bm25: Bm25Encoder,
    options: RetrievalOptions,
    /// Embedded sentence units of recently ranked chunks (see [`Retriever::rank_by_sentence`]),
    /// by chunk id: a follow-up mostly meets the passages of the question before it.
    sentences: Arc<quick_cache::sync::Cache<String, Arc<Vec<Vec<f32>>>>>,
}

/// Chunks whose sentence vectors stay cached (about 12 KB each).
pub const SENTENCE_CACHE_CHUNKS: usize = 2048;

impl Retriever {
    pub fn new(
        meta: MetaStore,
        vectors: Arc<dyn VectorStore>,
        embedder: OnnxEmbedder,
        options: RetrievalOptions,
    ) -> Result<Self, RetrievalError> {
        Ok(Self {
            meta,
            vectors,
            embedder,
            bm25: Bm25Encoder::new()?,
            options,
            sentences: Arc::new(quick_cache::sync::Cache::new(SENTENCE_CACHE_CHUNKS)),
        })
    }

    /// Its fusion and relevance knobs.
    pub fn options(&self) -> &RetrievalOptions {
        &self.options
    }

    /// The metadata store it reads.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The vector store it searches.
    pub fn vectors(&self) -> Arc<dyn VectorStore> {
        Arc::clone(&self.vectors)
    }

    /// The filter of a request, and the mode and fusion weights its collections' settings
    /// agree on.
    async fn filter(
        &self,
        request: &SearchRequest,
    ) -> Result<(VectorFilter, Option<SearchMode>, Option<Fusion>), RetrievalError> {
        let mut collection_ids = Vec::new();
        let mut modes = Vec::new();
        let mut fusions = Vec::new();
        for name in &request.collections {
            let c = self
                .meta
                .collection_by_name(name)
                .await?
                .ok_or_else(|| RetrievalError::UnknownCollection(name.clone()))?;
            modes.push(collection_mode(&c.settings)?);
            fusions.push(collection_fusion(&c.settings)?);
            collection_ids.push(c.id);
        }
        let agreed = match modes.split_first() {
            Some((first, rest)) if rest.iter().all(|m| m == first) => *first,
            _ => None,
        };
        let fusion = match fusions.split_first() {
            Some((first, rest)) if rest.iter().all(|f| f == first) => *first,
            _ => None,
        };
        let filter = VectorFilter {
            collection_ids,
            document_ids: Vec::new(),
            access_any: request.access.clone(),
            mime_types: request.scope.mime_types.clone(),
            tags_any: request.scope.tags.clone(),
            date_from: request.scope.date_from,
            date_to: request.scope.date_to,
            authors_any: request.scope.authors.clone(),
            include_disabled: false,
        };
        Ok((filter, agreed, fusion))
    }

    /// The settings every named collection has with the same value (none when no collection
    /// is named): what a question to these collections uses.
    pub async fn agreed_settings(
        &self,
        collections: &[String],
    ) -> Result<serde_json::Map<String, serde_json::Value>, RetrievalError> {
        let mut agreed: Option<serde_json::Map<String, serde_json::Value>> = None;
        for name in collections {
            let c = self
                .meta
                .collection_by_name(name)
                .await?
                .ok_or_else(|| RetrievalError::UnknownCollection(name.clone()))?;
            let own = match c.settings {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            agreed = Some(match agreed {
                None => own,
                Some(mut a) => {
                    a.retain(|k, v| own.get(k) == Some(v));
                    a
                }
            });
        }
        let mut agreed = agreed.unwrap_or_default();
        agreed.retain(|_, v| !v.is_null());
        Ok(agreed)
    }

    /// Runs a search.
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchResults, RetrievalError> {
        let started = std::time::Instant::now();
        let query = request.query.trim();
        if query.is_empty() {
            return Err(RetrievalError::Invalid("the query is empty".into()));
        }
        if request.limit == 0 {
            return Err(RetrievalError::Invalid("limit must be at least 1".into()));
        }
        if let (Some(from), Some(to)) = (request.scope.date_from, request.scope.date_to)
            && from > to
        {
            return Err(RetrievalError::Invalid(
                "the date range is empty: its start is after its end".into(),
            ));
        }
        let (filter, collection_default, agreed_fusion) = self.filter(request).await?;
        let mode = request.mode.or(collection_default).unwrap_or_default();
        let candidates = request.limit * self.options.candidates_factor.max(1);

        // The dense channel always runs: its cosine decides relevance, whatever the mode.
        let expanded = request
            .expansion
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| format!("{query} {e}"));
        let mut inputs = vec![query.to_string()];
        inputs.extend(expanded.clone());
        let mut vectors = self.embedder.embed(inputs).await?.into_iter();
        let vector = vectors.next().unwrap_or_default();
        let query_vector = vector.clone();
        let (dense, best_dense) = match vectors.next() {
            // Ranked by the expanded text; relevance from the query's own nearest passage.
            Some(expanded_vector) => {
                let nearest = self
                    .vectors
                    .search(VectorQuery::Dense(vector), &filter, 1)
                    .await?;
                let dense = self
                    .vectors
                    .search(VectorQuery::Dense(expanded_vector), &filter, candidates)
                    .await?;
                (dense, nearest.first().map_or(0.0, |h| h.score))
            }
            None => {
                let dense = self
                    .vectors
                    .search(VectorQuery::Dense(vector), &filter, candidates)
                    .await?;
                let best = dense.first().map_or(0.0, |h| h.score);
                (dense, best)
            }
        };
        let (terms, weights) = self.bm25.query(expanded.as_deref().unwrap_or(query));
        let query_terms = match &expanded {
            Some(_) => self.bm25.query(query).0.len(),
            None => terms.len(),
        };
        let bm25 = if mode == SearchMode::Dense || terms.is_empty() {
            Vec::new()
        } else {
            self.vectors
                .search(VectorQuery::Bm25(terms, weights), &filter, candidates)
                .await?
        };
        let unmatched_terms = self.unmatched_terms(query, &filter).await?;

        // Fuse: weighted reciprocal rank fusion over the channels the mode uses.
        let mut scores: HashMap<String, Scores> = HashMap::new();
        let (wd, wb) = match mode {
            SearchMode::Dense => (1.0, 0.0),
            SearchMode::Bm25 => (0.0, 1.0),
            SearchMode::Hybrid => {
                let f = request.fusion.or(agreed_fusion).unwrap_or(Fusion {
                    dense_weight: self.options.dense_weight,
                    bm25_weight: self.options.bm25_weight,
                });
                (f.dense_weight, f.bm25_weight)
            }
        };
        for (rank, hit) in dense.iter().enumerate() {
            let s = scores.entry(hit.id.clone()).or_default();
            s.dense = Some(hit.score);
            s.fused += self.options.rrf_share(wd, rank);
        }
        for (rank, hit) in bm25.iter().enumerate() {
            let s = scores.entry(hit.id.clone()).or_default();
            s.bm25 = Some(hit.score);
            s.fused += self.options.rrf_share(wb, rank);
        }
        let mut ranked: Vec<(String, Scores)> =
            scores.into_iter().filter(|(_, s)| s.fused > 0.0).collect();
        ranked.sort_by(|a, b| b.1.fused.total_cmp(&a.1.fused).then(a.0.cmp(&b.0)));

        // Only chunks of active versions, in fused order.
        let ids: Vec<String> = ranked.iter().map(|(id, _)| id.clone()).collect();
        let visible: HashMap<String, ChunkRecord> = self
            .meta
            .visible_chunks(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        // The sentence ranking reorders the best fused passages: fetch that many.
        let by_sentence = (mode == SearchMode::Hybrid
            && self.options.sentence_weight > 0.0
            && self.options.sentence_candidates > 0)
            .then_some(self.options.sentence_candidates);
        let wanted = request.limit.max(by_sentence.unwrap_or(0));
        let mut passages: Vec<Passage> = Vec::new();
        // Tables of contents, in fused order: after every passage of content.
        let mut tables: Vec<Passage> = Vec::new();
        let mut documents: HashMap<String, Document> = HashMap::new();
        for (id, s) in ranked {
            let Some(chunk) = visible.get(&id) else {
                continue;
            };
            // De-duplicate overlapping chunks of one document: keep the better-ranked one. A
            // table of contents, ranked last, never hides a passage of content that shares its
            // overlap.
            let table = contents::is_table_of_contents(&chunk.text);
            if passages.iter().any(|p| overlaps(&p.chunk, chunk))
                || (table && tables.iter().any(|p| overlaps(&p.chunk, chunk)))
            {
                continue;
            }
            if !documents.contains_key(&chunk.document_id)
                && let Some(d) = self.meta.document(&chunk.document_id).await?
            {
                documents.insert(d.id.clone(), d);
            }
            let Some(doc) = documents.get(&chunk.document_id) else {
                continue;
            };
            // The filters ran inside the vector search; the metadata store (the source of
            // truth) is checked as well, so an interrupted payload update of a move or an
            // access change never shows a passage to someone it no longer concerns.
            if !filter.collection_ids.is_empty()
                && !filter.collection_ids.contains(&doc.collection_id)
            {
                continue;
            }
            if !request.access.is_empty() && !doc.access.iter().any(|t| request.access.contains(t))
            {
                continue;
            }
            let passage = Passage {
                chunk: chunk.clone(),
                document_title: doc.title.clone(),
                source_uri: doc.source_uri.clone(),
                scores: s,
                context: chunk.text.clone(),
                section_lead: false,
                locator: locator(
                    doc.metadata
                        .get("page_noun")
                        .and_then(|n| n.as_str())
                        .unwrap_or("page"),
                    chunk.page_start,
                    chunk.page_end,
                    chunk.section.as_deref(),
                ),
            };
            if table {
                tables.push(passage);
                continue;
            }
            passages.push(passage);
            if passages.len() == wanted {
                break;
            }
        }
        if let Some(n) = by_sentence {
            let n = n.min(passages.len());
            self.rank_by_sentence(&query_vector, &mut passages[..n])
                .await?;
        }
        passages.extend(tables);
        passages.truncate(request.limit);
        let names_apart = self.names_apart(query, &filter, &passages).await?;
        if request.expand_neighbours {
            for p in &mut passages {
                p.context = self.with_neighbours(&p.chunk).await?;
            }
        }
        Ok(SearchResults {
            relevant: !passages.is_empty()
                && best_dense >= self.options.min_dense_score
                && !refuses_unmatched(self.options.refuse_unmatched, &unmatched_terms)
                && !refuses_apart(
                    self.options.refuse_unmatched,
                    self.options.names_together,
                    &names_apart,
                ),
            best_dense,
            unmatched_terms,
            names_apart,
            query_terms,
            passages,
            mode,
            fusion: Fusion {
                dense_weight: wd,
                bm25_weight: wb,
            },
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Adds the sentence ranking to the fused scores of `passages` and orders them again: each
    /// passage is ranked by its sentence (see [`sentence_units`]) nearest to the query, and
    /// that rank counts in the fusion with `retrieval.sentence_weight`. The sentences of the
    /// chunks not cached yet are embedded in one call.
    async fn rank_by_sentence(
        &self,
        query: &[f32],
        passages: &mut [Passage],
    ) -> Result<(), RetrievalError> {
        let mut vectors: Vec<Option<Arc<Vec<Vec<f32>>>>> = passages
            .iter()
            .map(|p| self.sentences.get(&p.chunk.id))
            .collect();
        // The passages to embed, with how many units each, and all their units in order.
        let mut missing: Vec<(usize, usize)> = Vec::new();
        let mut units: Vec<String> = Vec::new();
        for (i, p) in passages.iter().enumerate() {
            if vectors[i].is_none() {
                let own =
                    sentence_units(&p.document_title, p.chunk.section.as_deref(), &p.chunk.text);
                missing.push((i, own.len()));
                units.extend(own);
            }
        }
        let mut embedded = self.embedder.embed(units).await?.into_iter();
        for (i, count) in missing {
            let own = Arc::new(embedded.by_ref().take(count).collect::<Vec<_>>());
            self.sentences
                .insert(passages[i].chunk.id.clone(), Arc::clone(&own));
            vectors[i] = Some(own);
        }
        let mut order: Vec<(usize, f32)> = Vec::new();
        for (i, (p, v)) in passages.iter_mut().zip(&vectors).enumerate() {
            p.scores.sentence = v
                .iter()
                .flat_map(|v| v.iter())
                .map(|v| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())
                .reduce(f32::max);
            order.extend(p.scores.sentence.map(|s| (i, s)));
        }
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (rank, (i, _)) in order.into_iter().enumerate() {
            passages[i].scores.fused += self.options.rrf_share(self.options.sentence_weight, rank);
        }
        // Stable: passages the sentence ranking leaves level keep their fused order.
        passages.sort_by(|a, b| b.scores.fused.total_cmp(&a.scores.fused));
        Ok(())
    }

    /// The words of `query` whose BM25 term no point under `filter` holds, in query order. Each
    /// distinct term is one single-term sparse search for one point, run side by side: a term
    /// absent from every chunk the caller may read returns nothing.
    async fn unmatched_terms(
        &self,
        query: &str,
        filter: &VectorFilter,
    ) -> Result<Vec<String>, RetrievalError> {
        let mut words: Vec<(u32, String)> = Vec::new();
        for word in query_words(query) {
            for term in self.bm25.query(word).0 {
                if !words.iter().any(|(t, _)| *t == term) {
                    words.push((term, word.to_string()));
                }
            }
        }
        let found = futures::future::try_join_all(words.iter().map(|(term, _)| {
            self.vectors
                .search(VectorQuery::Bm25(vec![*term], vec![1.0]), filter, 1)
        }))
        .await?;
        let mut unmatched: Vec<String> = Vec::new();
        for ((_, word), hits) in words.into_iter().zip(found) {
            if hits.is_empty() && !unmatched.contains(&word) {
                unmatched.push(word);
            }
        }
        Ok(unmatched)
    }

    /// [`SearchResults::names_apart`]: whether one document of the first passages holds every
    /// BM25 term of the query's names, by one single-term sparse search per document and term
    /// under the search's own filter narrowed to that document.
    async fn names_apart(
        &self,
        query: &str,
        filter: &VectorFilter,
        passages: &[Passage],
    ) -> Result<Vec<String>, RetrievalError> {
        // Names the encoder keeps no term of (stop words such as "I") are left out.
        let mut names: Vec<String> = Vec::new();
        let mut terms: Vec<u32> = Vec::new();
        for name in query_names(query) {
            let name_terms = self.bm25.query(&name).0;
            if name_terms.is_empty() {
                continue;
            }
            for t in name_terms {
                if !terms.contains(&t) {
                    terms.push(t);
                }
            }
            names.push(name);
        }
        if names.is_empty() {
            return Ok(names);
        }
        let mut documents: Vec<&str> = Vec::new();
        for p in passages.iter().take(NAMES_TOGETHER_PASSAGES) {
            if !documents.contains(&p.chunk.document_id.as_str()) {
                documents.push(&p.chunk.document_id);
            }
        }
        let filters: Vec<VectorFilter> = documents
            .iter()
            .map(|d| VectorFilter {
                document_ids: vec![d.to_string()],
                ..filter.clone()
            })
            .collect();
        let held = futures::future::try_join_all(filters.iter().flat_map(|f| {
            terms.iter().map(move |t| {
                self.vectors
                    .search(VectorQuery::Bm25(vec![*t], vec![1.0]), f, 1)
            })
        }))
        .await?;
        let together = held
            .chunks(terms.len())
            .any(|document| document.iter().all(|hits| !hits.is_empty()));
        Ok(if together { Vec::new() } else { names })
    }

    /// `passages` with, before each one that is a later chunk of its section, the chunk that
    /// opens that section ([`Retriever::section_lead`]), unless it is given already: a passage
    /// from the middle of a section often lacks the section's first sentences, which say what
    /// the section is about and are what a question about it asks for.
    pub async fn with_section_leads(
        &self,
        passages: Vec<Passage>,
        reach: usize,
    ) -> Result<Vec<Passage>, RetrievalError> {
        if reach == 0 {
            return Ok(passages);
        }
        let mut given: HashSet<String> = passages.iter().map(|p| p.chunk.id.clone()).collect();
        let mut out = Vec::with_capacity(passages.len());
        for passage in passages {
            if let Some(lead) = self.section_lead(&passage, reach).await?
                && given.insert(lead.chunk.id.clone())
            {
                out.push(lead);
            }
            out.push(passage);
        }
        Ok(out)
    }

    /// The chunk that opens the section `passage` is in, when the passage is a later chunk of
    /// it and the section opens at most `reach` chunks before it: the first of the run of
    /// chunks just before the passage under the same heading path. None for a passage that
    /// opens its section or has no heading path, for a section that opens farther back, and
    /// for an opening chunk a curator left out of retrieval.
    pub async fn section_lead(
        &self,
        passage: &Passage,
        reach: usize,
    ) -> Result<Option<Passage>, RetrievalError> {
        let chunk = &passage.chunk;
        let Some(section) = chunk.section.as_deref() else {
            return Ok(None);
        };
        if reach == 0 || chunk.ordinal == 0 {
            return Ok(None);
        }
        let reach = reach as i64;
        // One chunk past the reach, to tell a section that opens farther back.
        let before = self
            .meta
            .chunk_range(
                &chunk.document_id,
                chunk.version,
                chunk.ordinal - reach - 1,
                chunk.ordinal - 1,
            )
            .await?;
        let mut lead = None;
        for c in before.iter().rev() {
            let next = lead.map_or(chunk.ordinal, |l: &ChunkRecord| l.ordinal);
            if c.ordinal != next - 1 || c.section.as_deref() != Some(section) {
                break;
            }
            lead = Some(c);
        }
        let Some(lead) = lead.filter(|l| chunk.ordinal - l.ordinal <= reach && !l.disabled) else {
            return Ok(None);
        };
        let noun = self
            .meta
            .document(&chunk.document_id)
            .await?
            .and_then(|d| {
                d.metadata
                    .get("page_noun")
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "page".to_string());
        Ok(Some(Passage {
            chunk: lead.clone(),
            document_title: passage.document_title.clone(),
            source_uri: passage.source_uri.clone(),
            scores: Scores::default(),
            context: lead.text.clone(),
            locator: locator(
                &noun,
                lead.page_start,
                lead.page_end,
                lead.section.as_deref(),
            ),
            section_lead: true,
        }))
    }

    /// The chunk's text widened to the previous and next chunks of the same version, as one
    /// span of the document text (so their overlap is not repeated).
    async fn with_neighbours(&self, chunk: &ChunkRecord) -> Result<String, RetrievalError> {
        let near = self
            .meta
            .chunk_range(
                &chunk.document_id,
                chunk.version,
                chunk.ordinal - 1,
                chunk.ordinal + 1,
            )
            .await?;
        // A neighbour a curator left out of retrieval is not shown either.
        let near: Vec<ChunkRecord> = {
            let before = near
                .iter()
                .find(|c| c.ordinal == chunk.ordinal - 1 && !c.disabled);
            let after = near
                .iter()
                .find(|c| c.ordinal == chunk.ordinal + 1 && !c.disabled);
            before
                .into_iter()
                .chain(std::iter::once(chunk))
                .chain(after)
                .cloned()
                .collect()
        };
        let (Some(first), Some(last)) = (near.first(), near.last()) else {
            return Ok(chunk.text.clone());
        };
        let pages = self
            .meta
            .page_range(
                &chunk.document_id,
                chunk.version,
                first.page_start,
                last.page_end,
            )
            .await?;
        let Some(base) = pages.first().map(|p| p.char_start) else {
            return Ok(chunk.text.clone());
        };
        let text: Vec<char> = pages
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
            .chars()
            .collect();
        let s = (first.char_start - base).max(0) as usize;
        let e = ((last.char_end - base).max(0) as usize).min(text.len());
        Ok(text
            .get(s..e)
            .map_or_else(|| chunk.text.clone(), |t| t.iter().collect()))
    }
}

/// Whether two chunks of the same document share more than half of the shorter one.
fn overlaps(a: &ChunkRecord, b: &ChunkRecord) -> bool {
    if a.document_id != b.document_id {
        return false;
    }
    let shared = (a.char_end.min(b.char_end) - a.char_start.max(b.char_start)).max(0);
    let shorter = (a.char_end - a.char_start)
        .min(b.char_end - b.char_start)
        .max(1);
    shared * 2 > shorter
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(doc: &str, s: i64, e: i64) -> ChunkRecord {
        ChunkRecord {
            id: format!("{doc}-{s}"),
            document_id: doc.into(),
            version: 1,
            ordinal: 0,
            text: String::new(),
            page_start: 1,
            page_end: 1,
            char_start: s,
            char_end: e,
            token_count: 0,
            section: None,
            disabled: false,
        }
    }

    #[test]
    fn sentence_units_join_short_sentences_and_carry_the_heading_path() {
        let text = "What is R?\nR is a system for statistical computation and graphics. It \
                    consists of a language plus a run-time environment with graphics, a \
                    debugger and access to certain system functions. See below.";
        let units = sentence_units("R FAQ", Some("R Basics › What is R?"), text);
        assert_eq!(
            units,
            [
                "R Basics › What is R?: What is R? R is a system for statistical computation \
                 and graphics.",
                "R Basics › What is R?: It consists of a language plus a run-time environment \
                 with graphics, a debugger and access to certain system functions. See below.",
            ]
        );
        // Without a heading path, the title; a short passage is one unit.
        assert_eq!(sentence_units("R FAQ", None, "Short."), ["R FAQ: Short."]);
        assert!(sentence_units("R FAQ", None, " \n ").is_empty());
    }

    #[test]
    fn overlap_needs_the_same_document_and_half_the_shorter_span() {
        assert!(overlaps(&chunk("a", 0, 100), &chunk("a", 40, 140)));
        assert!(!overlaps(&chunk("a", 0, 100), &chunk("a", 80, 180)));
        assert!(!overlaps(&chunk("a", 0, 100), &chunk("b", 0, 100)));
        assert!(overlaps(&chunk("a", 0, 100), &chunk("a", 10, 20)));
    }

    #[test]
    fn names_are_capitals_digits_and_inner_hyphens_past_the_first_word() {
        // "I" is one too: the BM25 encoder drops it as a stop word before names are looked up.
        assert_eq!(
            query_names("How do I get the latest SIMH sources from GitHub?"),
            ["I", "SIMH", "GitHub"]
        );
        assert_eq!(
            query_names("Give me an overview of how a simulator is put together."),
            Vec::<String>::new()
        );
        assert_eq!(
            query_names("KA10 or scikit-learn, and KA10 again"),
            ["KA10", "scikit-learn"]
        );
        assert_eq!(query_names("DataFrames in R"), ["DataFrames", "R"]);
        assert!(refuses_apart(
            RefuseUnmatched::Names,
            true,
            &["SIMH".into()]
        ));
        assert!(!refuses_apart(
            RefuseUnmatched::Names,
            false,
            &["SIMH".into()]
        ));
        assert!(!refuses_apart(RefuseUnmatched::Off, true, &["SIMH".into()]));
        assert!(!refuses_apart(RefuseUnmatched::Words, true, &[]));
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
            assert_eq!(m.to_string().parse::<SearchMode>().unwrap(), m);
        }
        assert!(
            "fuzzy"
                .parse::<SearchMode>()
                .unwrap_err()
                .to_string()
                .contains("fuzzy")
        );
    }

    #[test]
    fn collection_settings_name_a_mode() {
        use serde_json::json;
        assert_eq!(collection_mode(&json!({})).unwrap(), None);
        assert_eq!(
            collection_mode(&json!({"mode": "bm25"})).unwrap(),
            Some(SearchMode::Bm25)
        );
        assert!(collection_mode(&json!({"mode": 3})).is_err());
        assert!(collection_mode(&json!({"mode": "fuzzy"})).is_err());
    }

    #[test]
    fn date_bounds_parse_days_and_instants() {
        assert_eq!(
            parse_date_bound("2024-03-05", false).unwrap(),
            1_709_596_800
        );
        assert_eq!(parse_date_bound("2024-03-05", true).unwrap(), 1_709_683_199);
        assert_eq!(
            parse_date_bound("2024-03-05T10:00:00+01:00", false).unwrap(),
            1_709_629_200
        );
        let err = parse_date_bound("05/03/2024", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'05/03/2024'") && err.contains("YYYY-MM-DD"),
            "{err}"
        );
    }
}
