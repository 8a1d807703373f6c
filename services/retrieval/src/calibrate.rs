//! Hybrid fusion weights calibrated from a collection itself. Questions written from the
//! collection's own passages (by the local model; see `enclave_answer::pseudo_questions`) are
//! searched at each share of the dense ranking in the fusion, and the share that ranks the
//! passage each question came from highest (nDCG@10) is kept, when it beats the configured
//! weights by a clear margin. No question set is needed, and nothing about the held-out sets
//! is used.

use serde::{Deserialize, Serialize};

use crate::{Fusion, RetrievalError, Retriever, SearchMode, SearchRequest};
use enclave_storage::ChunkRecord;

/// The dense shares tried: 0 (BM25 only) to 1 (dense only) in tenths.
pub const SHARES: [f32; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// How much better (mean nDCG@10) a share must do than the configured weights to replace
/// them: about one question in fifty moving from rank 2 to rank 1 does not count.
pub const MIN_GAIN: f64 = 0.02;

/// And how sure: of the questions the two rank differently, the share must rank more of them
/// higher than lower by this many standard deviations (a sign test; 2 is about p < 0.05).
/// Questions written from passages share their words, so without it a flat curve tips to
/// BM25 alone on a few questions, which real questions worded away from the documents pay
/// for.
pub const MIN_SIGN_Z: f64 = 2.0;

/// A question written from a passage, and that passage.
#[derive(Debug, Clone)]
pub struct PseudoQuery {
    pub question: String,
    pub chunk: ChunkRecord,
}

/// One share's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShareRow {
    pub dense_share: f32,
    pub recall_at_5: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
    /// Questions this share ranks higher than the configured weights do, and lower.
    pub better: usize,
    pub worse: usize,
}

/// What a calibration found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub queries: usize,
    /// Every share tried, the configured one included.
    pub rows: Vec<ShareRow>,
    /// The configured weights (`retrieval.dense_weight`, `retrieval.bm25_weight`).
    pub configured: Fusion,
    pub configured_ndcg: f64,
    /// The best share's weights, or the configured ones when none beats them by
    /// [`MIN_GAIN`].
    pub chosen: Fusion,
    pub chosen_ndcg: f64,
}

/// Whether a passage (a chunk) answers a pseudo-question: it comes from the same document
/// and shares a page with the passage the question was written from, as a hit of an
/// evaluation set is counted (its gold is pages, not chunks).
fn is_source(query: &ChunkRecord, passage: &ChunkRecord) -> bool {
    passage.document_id == query.document_id
        && passage.page_start <= query.page_end
        && query.page_start <= passage.page_end
}

/// Searches every query at every share (hybrid, top 10, within `collections`, no access
/// restriction: the caller administers them) and picks the weights.
pub async fn calibrate_fusion(
    retriever: &Retriever,
    queries: &[PseudoQuery],
    collections: &[String],
) -> Result<Calibration, RetrievalError> {
    if queries.is_empty() {
        return Err(RetrievalError::Invalid(
            "no question to calibrate with: the collection has no passage long enough".into(),
        ));
    }
    let options = retriever.options();
    let configured = Fusion {
        dense_weight: options.dense_weight,
        bm25_weight: options.bm25_weight,
    };
    let mut shares: Vec<f32> = SHARES.to_vec();
    if !shares
        .iter()
        .any(|s| (s - configured.dense_share()).abs() < 1e-4)
    {
        shares.push(configured.dense_share());
        shares.sort_by(f32::total_cmp);
    }
    let mut ranked: Vec<(f32, Vec<Option<usize>>)> = Vec::with_capacity(shares.len());
    for share in shares {
        let fusion = if (share - configured.dense_share()).abs() < 1e-4 {
            configured
        } else {
            Fusion::with_dense_share(share)
        };
        let mut ranks = Vec::with_capacity(queries.len());
        for q in queries {
            let results = retriever
                .search(&SearchRequest {
                    query: q.question.clone(),
                    collections: collections.to_vec(),
                    mode: Some(SearchMode::Hybrid),
                    limit: 10,
                    fusion: Some(fusion),
                    ..Default::default()
                })
                .await?;
            ranks.push(
                results
                    .passages
                    .iter()
                    .position(|p| is_source(&q.chunk, &p.chunk))
                    .map(|i| i + 1),
            );
        }
        ranked.push((share, ranks));
    }
    let base = ranked
        .iter()
        .find(|(s, _)| (s - configured.dense_share()).abs() < 1e-4)
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    let rows = ranked
        .iter()
        .map(|(share, ranks)| row(*share, ranks, &base))
        .collect();
    Ok(choose(rows, configured, queries.len()))
}

/// A share's figures from the rank of each question's passage (`None`: not in the top 10),
/// compared question by question with the configured weights' ranks.
fn row(share: f32, ranks: &[Option<usize>], base: &[Option<usize>]) -> ShareRow {
    let n = ranks.len().max(1) as f64;
    let score = |r: &Option<usize>| r.map_or(0.0, |r| 1.0 / (1.0 + r as f64).log2());
    let (mut better, mut worse) = (0, 0);
    for (r, b) in ranks.iter().zip(base) {
        let (r, b) = (score(r), score(b));
        better += usize::from(r > b);
        worse += usize::from(r < b);
    }
    ShareRow {
        dense_share: share,
        recall_at_5: ranks.iter().filter(|r| r.is_some_and(|r| r <= 5)).count() as f64 / n,
        mrr: ranks
            .iter()
            .map(|r| r.map_or(0.0, |r| 1.0 / r as f64))
            .sum::<f64>()
            / n,
        ndcg_at_10: ranks.iter().map(score).sum::<f64>() / n,
        better,
        worse,
    }
}

/// Whether a share ranks significantly more questions higher than lower (sign test).
fn significant(r: &ShareRow) -> bool {
    let changed = (r.better + r.worse) as f64;
    changed > 0.0 && (r.better as f64 - r.worse as f64) / changed.sqrt() >= MIN_SIGN_Z
}

/// The configured weights unless a share beats them by [`MIN_GAIN`] and significantly
/// ([`MIN_SIGN_Z`]); among equal bests, the share nearest the configured one.
fn choose(rows: Vec<ShareRow>, configured: Fusion, queries: usize) -> Calibration {
    let at = |share: f32| {
        rows.iter()
            .find(|r| (r.dense_share - share).abs() < 1e-4)
            .map_or(0.0, |r| r.ndcg_at_10)
    };
    let configured_ndcg = at(configured.dense_share());
    let best = rows.iter().copied().filter(significant).min_by(|a, b| {
        b.ndcg_at_10.total_cmp(&a.ndcg_at_10).then(
            (a.dense_share - configured.dense_share())
                .abs()
                .total_cmp(&(b.dense_share - configured.dense_share()).abs()),
        )
    });
    let (chosen, chosen_ndcg) = match best {
        Some(best) if best.ndcg_at_10 - configured_ndcg >= MIN_GAIN => {
            (Fusion::with_dense_share(best.dense_share), best.ndcg_at_10)
        }
        _ => (configured, configured_ndcg),
    };
    Calibration {
        queries,
        rows,
        configured,
        configured_ndcg,
        chosen,
        chosen_ndcg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(share: f32, ndcg: f64, better: usize, worse: usize) -> ShareRow {
        ShareRow {
            dense_share: share,
            recall_at_5: 0.0,
            mrr: 0.0,
            ndcg_at_10: ndcg,
            better,
            worse,
        }
    }

    #[test]
    fn a_share_replaces_the_configured_weights_only_by_a_clear_and_sure_margin() {
        let configured = Fusion::with_dense_share(0.5);
        let c = choose(
            vec![
                at(0.3, 0.81, 9, 0),
                at(0.5, 0.80, 0, 0),
                at(0.7, 0.80, 0, 0),
            ],
            configured,
            40,
        );
        assert_eq!(c.chosen, configured, "0.01 better is noise");
        assert_eq!(c.configured_ndcg, 0.80);
        let c = choose(
            vec![at(0.0, 0.85, 5, 4), at(0.5, 0.80, 0, 0)],
            configured,
            40,
        );
        assert_eq!(
            c.chosen, configured,
            "5 questions up and 4 down is not sure"
        );
        let c = choose(
            vec![
                at(0.3, 0.85, 9, 1),
                at(0.5, 0.80, 0, 0),
                at(0.8, 0.85, 8, 0),
            ],
            configured,
            40,
        );
        assert_eq!(
            c.chosen,
            Fusion::with_dense_share(0.3),
            "ties: nearest to 0.5"
        );
        assert_eq!(c.chosen_ndcg, 0.85);
    }

    #[test]
    fn rows_compare_each_question_with_the_configured_ranks() {
        let base = [Some(1), Some(3), None, Some(2)];
        let r = row(0.2, &[Some(1), Some(1), Some(4), None], &base);
        assert_eq!((r.better, r.worse), (2, 1));
        assert_eq!(r.recall_at_5, 0.75);
        assert!((r.mrr - (1.0 + 1.0 + 0.25) / 4.0).abs() < 1e-9);
    }

    #[test]
    fn shares_map_to_weights_and_back() {
        let f = Fusion::with_dense_share(0.5);
        assert_eq!((f.dense_weight, f.bm25_weight), (1.0, 1.0));
        let f = Fusion::with_dense_share(0.3);
        assert!((f.dense_share() - 0.3).abs() < 1e-6);
        assert_eq!(Fusion::with_dense_share(1.7).bm25_weight, 0.0);
    }
}
