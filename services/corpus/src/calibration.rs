//! Calibrating a collection's hybrid fusion weights from the collection itself: the local
//! model writes a question for each of a sample of its passages, those questions are searched
//! at each share of the dense ranking, and the weights that find the passages best are kept in
//! the collection's settings (`dense_weight`, `bm25_weight`), where every search of that
//! collection reads them.

use enclave_answer::Asker;
use enclave_answer::pseudo_questions::question_for;
use enclave_retrieval::calibrate::{Calibration, PseudoQuery, calibrate_fusion};
use enclave_storage::{ChunkRecord, now};

use crate::Corpus;
use crate::actor::{Action, Actor};
use crate::error::{CorpusError, Result};

/// Passages shorter than this (characters) say too little to write a question from.
const MIN_PASSAGE_CHARS: usize = 200;

/// The most passages a calibration may sample.
pub const MAX_CALIBRATION_SAMPLES: usize = 500;

/// A calibration of one collection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FusionCalibration {
    pub collection: String,
    pub calibration: Calibration,
    /// The questions the model wrote, with the title of the document each came from.
    pub questions: Vec<(String, String)>,
    /// Passages sampled whose question the model could not write.
    pub skipped: usize,
    /// Whether the chosen weights were written to the collection's settings.
    pub applied: bool,
    pub took_ms: f64,
}

/// `n` indexes spread evenly over `0..len`.
fn spread(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|i| i * len / n + len / (2 * n)).collect()
}

impl Corpus {
    /// Writes a question for `samples` passages of `name` spread over its documents,
    /// calibrates the fusion weights with them and, when `apply`, keeps the chosen weights in
    /// the collection's settings (`admin` of the collection). `progress` hears of every
    /// question written (done, of how many).
    pub async fn calibrate_fusion(
        &self,
        actor: &Actor,
        name: &str,
        asker: &Asker,
        samples: usize,
        apply: bool,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<FusionCalibration> {
        let started = std::time::Instant::now();
        if !(1..=MAX_CALIBRATION_SAMPLES).contains(&samples) {
            return Err(CorpusError::Invalid(format!(
                "samples {samples}: from 1 to {MAX_CALIBRATION_SAMPLES}"
            )));
        }
        let c = self.collection(actor, name, Action::Administer).await?;
        let documents: Vec<_> = self
            .meta
            .documents(Some(&c.id))
            .await?
            .into_iter()
            .filter(|d| d.status == "ready" && !d.disabled)
            .collect();
        // Documents spread over the collection, then passages spread over each document.
        let picked = spread(documents.len(), samples);
        let per_document = samples.div_ceil(picked.len().max(1));
        let mut sample: Vec<(String, ChunkRecord)> = Vec::new();
        for &i in &picked {
            let d = &documents[i];
            let chunks: Vec<ChunkRecord> = self
                .meta
                .active_chunks(&d.id)
                .await?
                .into_iter()
                .filter(|c| !c.disabled && c.text.chars().count() >= MIN_PASSAGE_CHARS)
                .collect();
            for k in spread(chunks.len(), per_document) {
                sample.push((d.title.clone(), chunks[k].clone()));
            }
        }
        sample.truncate(samples);
        let generator = asker.generator();
        let (mut queries, mut questions, mut skipped) = (Vec::new(), Vec::new(), 0);
        for (done, (title, chunk)) in sample.iter().enumerate() {
            match question_for(
                generator.as_ref(),
                title,
                chunk.section.as_deref(),
                &chunk.text,
            )
            .await?
            {
                Some(q) => {
                    questions.push((q.clone(), title.clone()));
                    queries.push(PseudoQuery {
                        question: q,
                        chunk: chunk.clone(),
                    });
                }
                None => skipped += 1,
            }
            progress(done + 1, sample.len());
        }
        let calibration =
            calibrate_fusion(asker.retriever(), &queries, std::slice::from_ref(&c.name)).await?;
        if apply {
            let mut settings = match c.settings.clone() {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            let chosen = calibration.chosen;
            if chosen == calibration.configured {
                // The configured weights do as well: the collection follows them.
                settings.remove("dense_weight");
                settings.remove("bm25_weight");
            } else {
                settings.insert("dense_weight".into(), round(chosen.dense_weight).into());
                settings.insert("bm25_weight".into(), round(chosen.bm25_weight).into());
            }
            settings.insert(
                "fusion_calibration".into(),
                serde_json::json!({
                    "at": now(),
                    "queries": calibration.queries,
                    "model": generator.info().model,
                    "configured_ndcg_at_10": calibration.configured_ndcg,
                    "chosen_ndcg_at_10": calibration.chosen_ndcg,
                    "dense_share": chosen.dense_share(),
                }),
            );
            let settings = serde_json::Value::Object(settings);
            self.meta.set_collection_settings(&c.id, &settings).await?;
            self.audit(actor, "calibrate_fusion", Some(&c.name), None, settings)
                .await?;
        }
        Ok(FusionCalibration {
            collection: c.name,
            calibration,
            questions,
            skipped,
            applied: apply,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

/// A weight as settings keep it (two decimals).
fn round(w: f32) -> f64 {
    (f64::from(w) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn samples_spread_over_the_whole_range() {
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        assert_eq!(spread(10, 2), vec![2, 7]);
        assert_eq!(spread(100, 4), vec![12, 37, 62, 87]);
        assert!(spread(0, 4).is_empty());
    }
}
