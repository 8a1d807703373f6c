//! Retrieval evaluation: a set of questions with the document and pages that answer them
//! (or marked unanswerable), scored per search mode.
//!
//! A retrieved passage is a hit when it comes from the expected document (its source ends
//! with the expected file name) and its page range meets one of the expected pages. With one
//! relevant section per question, nDCG@10 is `1 / log2(1 + rank of the first hit)`.

use serde::{Deserialize, Serialize};

use crate::{
    Passage, RefuseUnmatched, RetrievalError, Retriever, SearchMode, SearchRequest, SearchResults,
    refuses_apart, refuses_unmatched,
};

/// The modes an evaluation compares.
pub const MODES: [SearchMode; 3] = [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid];

/// The refusal rules an evaluation compares: each `retrieval.refuse_unmatched`, `names` and
/// `words` with `retrieval.names_together` off and on.
pub const UNMATCHED_RULES: [(RefuseUnmatched, bool); 5] = [
    (RefuseUnmatched::Off, false),
    (RefuseUnmatched::Names, false),
    (RefuseUnmatched::Names, true),
    (RefuseUnmatched::Words, false),
    (RefuseUnmatched::Words, true),
];

/// How tables name a rule of [`UNMATCHED_RULES`].
pub fn rule_label(policy: RefuseUnmatched, names_together: bool) -> String {
    if names_together {
        format!("{} + names together", policy.as_str())
    } else {
        policy.as_str().to_string()
    }
}

/// Searches every item of a set in every mode (top 10, within `collections`, every document
/// of them) and scores the results.
pub async fn evaluate(
    retriever: &Retriever,
    items: &[EvalItem],
    collections: &[String],
) -> Result<Vec<(SearchMode, ModeReport)>, RetrievalError> {
    evaluate_expanded(retriever, items, collections, &[]).await
}

/// [`evaluate`], each question searched with its query expansion (`expansions[i]` stands
/// beside `items[i]`; see [`SearchRequest::expansion`]); an empty slice: none.
pub async fn evaluate_expanded(
    retriever: &Retriever,
    items: &[EvalItem],
    collections: &[String],
    expansions: &[String],
) -> Result<Vec<(SearchMode, ModeReport)>, RetrievalError> {
    let mut reports: Vec<(SearchMode, ModeReport)> =
        MODES.iter().map(|m| (*m, ModeReport::default())).collect();
    for (i, item) in items.iter().enumerate() {
        for (mode, report) in &mut reports {
            let request = SearchRequest {
                query: item.question.clone(),
                collections: collections.to_vec(),
                mode: Some(*mode),
                limit: 10,
                expansion: expansions.get(i).cloned(),
                ..Default::default()
            };
            report.add(item, &retriever.search(&request).await?);
        }
    }
    Ok(reports)
}

/// One mode's figures, as kept with an evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeSummary {
    pub mode: SearchMode,
    pub answerable: usize,
    pub unanswerable: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
    /// Unanswerable questions refused, of all unanswerable ones.
    pub refusal_accuracy: f64,
    /// Answerable questions retrieval wrongly found nothing relevant for.
    pub false_refusals: usize,
    pub latency_p50_ms: f64,
}

/// One line of an evaluation set (JSON Lines).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EvalItem {
    pub id: String,
    pub question: String,
    /// File name of the document that answers, matched against the end of its source URI.
    #[serde(default)]
    pub document: Option<String>,
    /// Or the id of the document that answers (a collection's own eval cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// 1-based pages where the answer is.
    #[serde(default)]
    pub pages: Vec<i64>,
    /// The first words of the answer, for answer checks.
    #[serde(default)]
    pub answer: Option<String>,
    /// True when the corpus does not answer the question.
    #[serde(default)]
    pub unanswerable: bool,
}

impl EvalItem {
    /// Whether a passage answers this item.
    pub fn is_hit(&self, p: &Passage) -> bool {
        self.is_on_gold_page(
            &p.chunk.document_id,
            &p.source_uri,
            p.chunk.page_start,
            p.chunk.page_end,
        )
    }

    /// Whether a passage of this document (id and source URI) over these pages is where the
    /// answer is: the expected document, on one of the expected pages.
    pub fn is_on_gold_page(
        &self,
        document_id: &str,
        source_uri: &str,
        page_start: i64,
        page_end: i64,
    ) -> bool {
        let document = match (&self.document_id, &self.document) {
            (Some(id), _) => document_id == id,
            (None, Some(file)) => source_uri.ends_with(file.as_str()),
            (None, None) => false,
        };
        document && self.pages.iter().any(|&n| page_start <= n && n <= page_end)
    }

    /// Rank (1-based) of the first hit among the results.
    pub fn first_hit(&self, results: &SearchResults) -> Option<usize> {
        results
            .passages
            .iter()
            .position(|p| self.is_hit(p))
            .map(|i| i + 1)
    }
}

/// Parses a JSON Lines evaluation set; errors name the line.
pub fn parse_set(text: &str) -> Result<Vec<EvalItem>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let item: EvalItem =
                serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
            if !item.unanswerable
                && ((item.document.is_none() && item.document_id.is_none())
                    || item.pages.is_empty())
            {
                return Err(format!(
                    "line {}: an answerable item needs \"document\" and \"pages\"",
                    i + 1
                ));
            }
            Ok(item)
        })
        .collect()
}

/// Accumulated metrics of one search mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModeReport {
    pub answerable: usize,
    pub hits_at_1: usize,
    pub hits_at_5: usize,
    pub hits_at_10: usize,
    pub reciprocal_ranks: f64,
    pub ndcg_at_10: f64,
    pub unanswerable: usize,
    /// Unanswerable questions for which retrieval reported nothing relevant.
    pub refused: usize,
    /// Answerable questions for which retrieval wrongly reported nothing relevant.
    pub false_refusals: usize,
    pub latencies_ms: Vec<f64>,
    /// Per question: whether it is unanswerable, and the similarity of the nearest chunk (what
    /// the relevance threshold is compared with).
    pub nearest: Vec<(bool, f32)>,
    /// Per question, in the same order: the words of it that no passage in scope holds.
    pub unmatched: Vec<Vec<String>>,
    /// Per question, in the same order: its names no one document found holds together.
    pub names_apart: Vec<Vec<String>>,
    /// Per question, in the same order: its id.
    pub ids: Vec<String>,
}

/// Refusals at one relevance threshold (see [`ModeReport::at_threshold`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdRow {
    pub threshold: f32,
    /// Unanswerable questions refused.
    pub refused: usize,
    /// Answerable questions refused.
    pub false_refusals: usize,
}

impl ModeReport {
    /// Adds one question's results.
    pub fn add(&mut self, item: &EvalItem, results: &SearchResults) {
        self.latencies_ms.push(results.took_ms);
        self.nearest.push((item.unanswerable, results.best_dense));
        self.unmatched.push(results.unmatched_terms.clone());
        self.names_apart.push(results.names_apart.clone());
        self.ids.push(item.id.clone());
        if item.unanswerable {
            self.unanswerable += 1;
            if !results.relevant {
                self.refused += 1;
            }
            return;
        }
        self.answerable += 1;
        if !results.relevant {
            self.false_refusals += 1;
        }
        if let Some(rank) = item.first_hit(results) {
            self.hits_at_1 += usize::from(rank <= 1);
            self.hits_at_5 += usize::from(rank <= 5);
            self.hits_at_10 += usize::from(rank <= 10);
            self.reciprocal_ranks += 1.0 / rank as f64;
            if rank <= 10 {
                self.ndcg_at_10 += 1.0 / (1.0 + rank as f64).log2();
            }
        }
    }

    fn ratio(n: usize, d: usize) -> f64 {
        if d == 0 { 0.0 } else { n as f64 / d as f64 }
    }

    pub fn recall_at_1(&self) -> f64 {
        Self::ratio(self.hits_at_1, self.answerable)
    }
    pub fn recall_at_5(&self) -> f64 {
        Self::ratio(self.hits_at_5, self.answerable)
    }
    pub fn recall_at_10(&self) -> f64 {
        Self::ratio(self.hits_at_10, self.answerable)
    }
    pub fn mrr(&self) -> f64 {
        if self.answerable == 0 {
            0.0
        } else {
            self.reciprocal_ranks / self.answerable as f64
        }
    }
    pub fn ndcg(&self) -> f64 {
        if self.answerable == 0 {
            0.0
        } else {
            self.ndcg_at_10 / self.answerable as f64
        }
    }
    /// Share of unanswerable questions that retrieval refused.
    pub fn refusal_accuracy(&self) -> f64 {
        Self::ratio(self.refused, self.unanswerable)
    }

    /// What refusal would have been with `threshold` as `retrieval.min_dense_score`.
    pub fn at_threshold(&self, threshold: f32) -> ThresholdRow {
        self.at_rule(threshold, RefuseUnmatched::Off, false)
    }

    /// What refusal would have been with `threshold` as `retrieval.min_dense_score`, `policy`
    /// as `retrieval.refuse_unmatched` and `names_together` as `retrieval.names_together`.
    pub fn at_rule(
        &self,
        threshold: f32,
        policy: RefuseUnmatched,
        names_together: bool,
    ) -> ThresholdRow {
        let refused = |i: usize| {
            self.nearest[i].1 < threshold
                || self
                    .unmatched
                    .get(i)
                    .is_some_and(|u| refuses_unmatched(policy, u))
                || self
                    .names_apart
                    .get(i)
                    .is_some_and(|n| refuses_apart(policy, names_together, n))
        };
        let count = |want: bool| {
            (0..self.nearest.len())
                .filter(|&i| self.nearest[i].0 == want && refused(i))
                .count()
        };
        ThresholdRow {
            threshold,
            refused: count(true),
            false_refusals: count(false),
        }
    }

    /// The questions (id, unanswerable, words no passage in scope holds, names no one
    /// document found holds together) with either.
    pub fn with_unmatched(&self) -> Vec<(&str, bool, &[String], &[String])> {
        (0..self.ids.len())
            .filter(|&i| !self.unmatched[i].is_empty() || !self.names_apart[i].is_empty())
            .map(|i| {
                (
                    self.ids[i].as_str(),
                    self.nearest[i].0,
                    self.unmatched[i].as_slice(),
                    self.names_apart[i].as_slice(),
                )
            })
            .collect()
    }

    /// The thresholds from 0.05 to 0.60 in steps of 0.025 with their refusals, and the one
    /// that gets the most questions right (refused when unanswerable, answered otherwise;
    /// ties go to the lower threshold).
    pub fn threshold_sweep(&self) -> (Vec<ThresholdRow>, ThresholdRow) {
        let rows: Vec<ThresholdRow> = (2..=24)
            .map(|i| self.at_threshold(i as f32 * 0.025))
            .collect();
        let right = |r: &ThresholdRow| r.refused + (self.answerable - r.false_refusals);
        let best = rows
            .iter()
            .copied()
            .reduce(|a, b| if right(&b) > right(&a) { b } else { a })
            .unwrap_or_else(|| self.at_threshold(0.0));
        (rows, best)
    }

    /// The figures of this report for `mode`.
    pub fn summary(&self, mode: SearchMode) -> ModeSummary {
        ModeSummary {
            mode,
            answerable: self.answerable,
            unanswerable: self.unanswerable,
            recall_at_1: self.recall_at_1(),
            recall_at_5: self.recall_at_5(),
            recall_at_10: self.recall_at_10(),
            mrr: self.mrr(),
            ndcg_at_10: self.ndcg(),
            refusal_accuracy: self.refusal_accuracy(),
            false_refusals: self.false_refusals,
            latency_p50_ms: self.latency_percentile(50.0),
        }
    }

    /// Latency percentile (0..=100) in milliseconds, nearest rank.
    pub fn latency_percentile(&self, pct: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((pct / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scores, SearchMode};
    use enclave_storage::ChunkRecord;

    fn passage(source: &str, p0: i64, p1: i64) -> Passage {
        Passage {
            section_lead: false,
            locator: String::new(),
            chunk: ChunkRecord {
                id: String::new(),
                document_id: String::new(),
                version: 1,
                ordinal: 0,
                text: String::new(),
                page_start: p0,
                page_end: p1,
                char_start: 0,
                char_end: 0,
                token_count: 0,
                section: None,
                disabled: false,
            },
            document_title: String::new(),
            source_uri: source.into(),
            scores: Scores::default(),
            context: String::new(),
        }
    }

    fn results(passages: Vec<Passage>, relevant: bool) -> SearchResults {
        SearchResults {
            passages,
            relevant,
            best_dense: if relevant { 0.5 } else { 0.2 },
            unmatched_terms: Vec::new(),
            names_apart: Vec::new(),
            query_terms: 1,
            mode: SearchMode::Hybrid,
            fusion: crate::Fusion::with_dense_share(0.5),
            took_ms: 10.0,
        }
    }

    #[test]
    fn metrics_follow_the_first_hit() {
        let items = parse_set(
            "{\"id\":\"a\",\"question\":\"q\",\"document\":\"faq.pdf\",\"pages\":[9]}\n\n\
             {\"id\":\"b\",\"question\":\"q\",\"unanswerable\":true}\n",
        )
        .unwrap();
        let mut r = ModeReport::default();
        // hit at rank 2: the first passage is the right document on the wrong page
        r.add(
            &items[0],
            &results(
                vec![
                    passage("file:///x/faq.pdf", 3, 3),
                    passage("file:///x/faq.pdf", 8, 9),
                ],
                true,
            ),
        );
        r.add(
            &items[1],
            &results(vec![passage("file:///y.pdf", 1, 1)], false),
        );
        assert_eq!(
            (r.hits_at_1, r.hits_at_5, r.answerable, r.unanswerable),
            (0, 1, 1, 1)
        );
        assert!((r.mrr() - 0.5).abs() < 1e-9);
        assert!((r.ndcg() - 1.0 / 3f64.log2()).abs() < 1e-9);
        assert_eq!(r.refusal_accuracy(), 1.0);
        assert_eq!(r.latency_percentile(50.0), 10.0);
        // Threshold 0.3 refuses the unanswerable one (0.2) and answers the other (0.5); 0.6
        // refuses both.
        assert_eq!(
            r.at_threshold(0.3),
            ThresholdRow {
                threshold: 0.3,
                refused: 1,
                false_refusals: 0
            }
        );
        assert_eq!(r.at_threshold(0.6).false_refusals, 1);
        let (rows, best) = r.threshold_sweep();
        assert_eq!(rows.len(), 23);
        assert!(best.threshold > 0.2 && best.threshold <= 0.5, "{best:?}");
        assert_eq!((best.refused, best.false_refusals), (1, 0));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_set("{\"id\":\"a\",\"question\":\"q\"}").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = parse_set("\n{oops").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
