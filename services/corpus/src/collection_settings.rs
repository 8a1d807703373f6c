//! A collection's own settings (retrieval mode, chunk sizes, passages, system prompt, model)
//! and its name: checked against what the server runs with, then changed and recorded.

use enclave_retrieval::SearchMode;
use enclave_settings::Settings;
use enclave_storage::Collection;

use crate::Corpus;
use crate::actor::{Action, Actor};
use crate::changes::check_collection_name;
use crate::error::{CorpusError, Result};

/// The longest system prompt of a collection, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 4000;

/// What collection settings are checked against: the server's own settings.
#[derive(Debug, Clone)]
pub struct SettingsBounds {
    /// The largest chunk the embedding model reads whole, in tokens.
    pub max_chunk_tokens: u64,
    /// The configured chunk size and overlap (what a collection without its own uses).
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
    /// The models a collection may name (`generation.models`).
    pub models: Vec<String>,
}

impl SettingsBounds {
    pub fn of(settings: &Settings) -> Self {
        let mut models: Vec<String> = settings.generation.models.keys().cloned().collect();
        models.sort();
        Self {
            // Two of the embedding model's input tokens are its own markers ([CLS], [SEP]).
            max_chunk_tokens: settings.embedding.max_input_tokens.saturating_sub(2) as u64,
            chunk_tokens: settings.chunking.max_tokens,
            chunk_overlap: settings.chunking.overlap_tokens,
            models,
        }
    }
}

impl Default for SettingsBounds {
    fn default() -> Self {
        Self::of(&Settings::default())
    }
}

/// Changes to a collection. A field left out (`None`) stays as it is; `Some(None)` goes back
/// to the configured default.
#[derive(Debug, Clone, Default)]
pub struct CollectionChange {
    pub name: Option<String>,
    /// `hybrid`, `dense` or `bm25`.
    pub mode: Option<Option<String>>,
    pub chunk_tokens: Option<Option<u64>>,
    pub chunk_overlap: Option<Option<u64>>,
    /// Passages given to the model per question, 1 to 50.
    pub passages: Option<Option<u64>>,
    /// Of those, the model reads the passages whose sentence nearest the question is at most
    /// this far below the best passage's, 0 to 2 (2: all; `generation.passage_margin`).
    pub passage_margin: Option<Option<f64>>,
    /// Whether the passages of one section are given together, in the document's order
    /// (`generation.reading_order`): suits manuals whose sections run over several chunks.
    pub reading_order: Option<Option<bool>>,
    pub system_prompt: Option<Option<String>>,
    /// A name of `generation.models`.
    pub model: Option<Option<String>>,
    /// Hybrid fusion weights (0 to 10 each, not both 0), given together: the dense and the
    /// BM25 ranking's. `enclave calibrate` chooses them from the collection itself.
    pub dense_weight: Option<Option<f64>>,
    pub bm25_weight: Option<Option<f64>>,
}

/// The most a fusion weight may be.
pub const MAX_FUSION_WEIGHT: f64 = 10.0;

/// The fusion weights a change sets: `None` leaves them, `Some(None)` goes back to the
/// configured ones.
fn fusion_change(change: &CollectionChange) -> Result<Option<Option<(f64, f64)>>> {
    let together = || {
        CorpusError::Invalid(
            "dense_weight and bm25_weight go together: give both, or clear both".into(),
        )
    };
    match (change.dense_weight, change.bm25_weight) {
        (None, None) => Ok(None),
        (Some(None), Some(None)) => Ok(Some(None)),
        (Some(Some(d)), Some(Some(b))) => {
            for (key, w) in [("dense_weight", d), ("bm25_weight", b)] {
                if !(w.is_finite() && (0.0..=MAX_FUSION_WEIGHT).contains(&w)) {
                    return Err(CorpusError::Invalid(format!(
                        "{key} {w}: from 0 to {MAX_FUSION_WEIGHT}"
                    )));
                }
            }
            if d + b <= 0.0 {
                return Err(CorpusError::Invalid(
                    "dense_weight and bm25_weight are both 0: one ranking must count".into(),
                ));
            }
            Ok(Some(Some((d, b))))
        }
        _ => Err(together()),
    }
}

/// A retrieval mode by name (`None` or empty: the default).
pub fn parse_mode(mode: Option<&str>) -> Result<Option<SearchMode>> {
    match mode.map(str::trim) {
        None | Some("") => Ok(None),
        Some(m) => m
            .parse()
            .map(Some)
            .map_err(|e: enclave_retrieval::RetrievalError| CorpusError::Invalid(e.to_string())),
    }
}

impl Corpus {
    /// Renames a collection and changes its settings (`admin` of the collection), after
    /// checking every value; records each part and returns the collection.
    pub async fn change_collection(
        &self,
        actor: &Actor,
        name: &str,
        change: &CollectionChange,
    ) -> Result<Collection> {
        let c = self.collection(actor, name, Action::Administer).await?;
        let bounds = &self.bounds;
        let mut settings = match c.settings.clone() {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let mut set = |key: &str, value: Option<serde_json::Value>| match value {
            Some(v) => settings.insert(key.into(), v),
            None => settings.remove(key),
        };
        if let Some(fusion) = fusion_change(change)? {
            set("dense_weight", fusion.map(|(d, _)| d.into()));
            set("bm25_weight", fusion.map(|(_, b)| b.into()));
        }
        if let Some(mode) = &change.mode {
            set(
                "mode",
                parse_mode(mode.as_deref())?.map(|m| m.to_string().into()),
            );
        }
        let max_input = bounds.max_chunk_tokens;
        if let Some(n) = change.chunk_tokens {
            if let Some(n) = n.filter(|n| !(16..=max_input).contains(n)) {
                return Err(CorpusError::Invalid(format!(
                    "chunk_tokens {n}: from 16 to {max_input} (what the embedding model reads)"
                )));
            }
            set("chunk_tokens", n.map(Into::into));
        }
        if let Some(n) = change.chunk_overlap {
            set("chunk_overlap", n.map(Into::into));
        }
        if let Some(n) = change.passages {
            if let Some(n) = n.filter(|n| !(1..=50).contains(n)) {
                return Err(CorpusError::Invalid(format!("passages {n}: from 1 to 50")));
            }
            set("passages", n.map(Into::into));
        }
        if let Some(m) = change.passage_margin {
            if let Some(m) = m.filter(|m| !(0.0..=2.0).contains(m)) {
                return Err(CorpusError::Invalid(format!(
                    "passage_margin {m}: from 0 to 2 (2: every passage)"
                )));
            }
            set("passage_margin", m.map(Into::into));
        }
        if let Some(on) = change.reading_order {
            set("reading_order", on.map(Into::into));
        }
        if let Some(model) = &change.model {
            let model = model.as_deref().map(str::trim).filter(|m| !m.is_empty());
            if let Some(m) = model
                && !bounds.models.iter().any(|known| known == m)
            {
                return Err(CorpusError::Invalid(format!(
                    "unknown model '{m}': the server offers {} (generation.models)",
                    if bounds.models.is_empty() {
                        "no other model".to_string()
                    } else {
                        bounds.models.join(", ")
                    }
                )));
            }
            set("model", model.map(Into::into));
        }
        if let Some(p) = &change.system_prompt {
            let p = p.as_deref().map(str::trim).filter(|p| !p.is_empty());
            if let Some(p) = p.filter(|p| p.chars().count() > MAX_SYSTEM_PROMPT_CHARS) {
                return Err(CorpusError::Invalid(format!(
                    "the system prompt has {} characters, at most 4,000",
                    p.chars().count()
                )));
            }
            set("system_prompt", p.map(Into::into));
        }
        let settings = serde_json::Value::Object(settings);
        enclave_ingest::chunk_sizes(&settings, bounds.chunk_tokens, bounds.chunk_overlap)
            .map_err(|e| CorpusError::Invalid(e.to_string()))?;
        let mut name = c.name.clone();
        if let Some(new_name) = change
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| *n != c.name)
        {
            check_collection_name(new_name)?;
            self.meta.rename_collection(&c.id, new_name).await?;
            self.audit(
                actor,
                "rename_collection",
                Some(new_name),
                None,
                serde_json::json!({"from": c.name, "to": new_name}),
            )
            .await?;
            name = new_name.to_string();
        }
        if settings != c.settings {
            self.meta.set_collection_settings(&c.id, &settings).await?;
            self.audit(actor, "update_collection", Some(&name), None, settings)
                .await?;
        }
        self.collection(actor, &name, Action::Administer).await
    }
}
