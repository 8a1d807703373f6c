//! A corpus of any size with the distribution of real text: real chunks of the Debian PDFs
//! (extracted by the product's isolated PDF path, chunked by the default `Chunker`, embedded by
//! the default model with the title prefix the pipeline uses), grown with copies whose dense
//! vectors move by Gaussian noise. Written to the stores as ingest writes them. Used by the
//! search and access-list benches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use enclave_embed::{Embedder, OnnxEmbedder};
use enclave_ingest::Chunker;
use enclave_ingest::parse::pdf::{PdfIsolation, extract_isolated};
use enclave_settings::Settings;
use enclave_storage::{
    Bm25Encoder, ChunkPoint, ChunkRecord, MetaStore, NewVersion, PageRecord, PointPayload,
    VectorStore, chunk_point_id,
};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Documents of the synthetic corpus have this many chunks.
pub const CHUNKS_PER_DOCUMENT: usize = 100;

/// The real chunks, embedded, that the synthetic corpus copies.
pub struct Base {
    /// (embedding input, chunk text)
    pub chunks: Vec<(String, String)>,
    pub dense: Vec<Vec<f32>>,
    pub sparse: Vec<(Vec<u32>, Vec<f32>)>,
}

impl Base {
    /// Extracts, chunks and embeds `base` real chunks of the PDFs in `corpus`.
    pub async fn build(
        corpus: &Path,
        base: usize,
        settings: &Settings,
        embedder: &OnnxEmbedder,
        enclave: &str,
    ) -> anyhow::Result<Self> {
        eprintln!("extracting and chunking real PDFs");
        let chunks = real_chunks(corpus, base, settings, embedder, enclave).await?;
        eprintln!("embedding {} real chunks", chunks.len());
        let started = Instant::now();
        let mut dense = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(256) {
            dense.extend(
                embedder
                    .embed(batch.iter().map(|(input, _)| input.clone()).collect())
                    .await?,
            );
            eprint!("\r  {}", dense.len());
        }
        eprintln!(
            "\r  {} chunks in {:.0} s",
            dense.len(),
            started.elapsed().as_secs_f64()
        );
        let bm25 = Bm25Encoder::new()?;
        let sparse = chunks
            .iter()
            .map(|(input, _)| bm25.document(input))
            .collect();
        Ok(Self {
            chunks,
            dense,
            sparse,
        })
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Writes chunks `from..to` of the synthetic corpus: documents of [`CHUNKS_PER_DOCUMENT`].
    /// `access(document number)` gives each document its access tokens (empty: none).
    #[allow(clippy::too_many_arguments)]
    pub async fn write_chunks(
        &self,
        meta: &MetaStore,
        vectors: &dyn VectorStore,
        collection_id: &str,
        all_dense: &mut Vec<Vec<f32>>,
        ids: &mut Vec<String>,
        noise: f32,
        to: usize,
        access: &dyn Fn(usize) -> Vec<String>,
    ) -> anyhow::Result<()> {
        let (base, base_dense, base_sparse) = (&self.chunks, &self.dense, &self.sparse);
        let normal = Normal::new(0.0f32, noise.max(1e-9))?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(all_dense.len() as u64);
        while all_dense.len() < to {
            let first = all_dense.len();
            let doc_no = first / CHUNKS_PER_DOCUMENT;
            let n = CHUNKS_PER_DOCUMENT.min(to - first);
            let new = NewVersion {
                collection_id: collection_id.to_string(),
                source_uri: format!("bench://document/{doc_no}"),
                external_id: None,
                parent_id: None,
                title: format!("document {doc_no}"),
                mime_type: Some("application/pdf".into()),
                sha256: format!("{doc_no:064x}"),
                byte_size: 0,
                metadata: serde_json::json!({}),
                tags: Vec::new(),
                access: access(doc_no),
            };
            let (doc_id, version) = meta.begin_version(&new).await?;
            let mut records = Vec::with_capacity(n);
            let mut points = Vec::with_capacity(n);
            let mut offset = 0i64;
            for ordinal in 0..n {
                let i = first + ordinal;
                let b = i % base.len();
                let dense = if i < base.len() {
                    base_dense[b].clone()
                } else {
                    let mut v: Vec<f32> = base_dense[b]
                        .iter()
                        .map(|x| x + normal.sample(&mut rng))
                        .collect();
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                    v
                };
                let text = &base[b].1;
                let id = chunk_point_id(&doc_id, version, ordinal as i64);
                let len = text.chars().count() as i64;
                records.push(ChunkRecord {
                    id: id.clone(),
                    document_id: doc_id.clone(),
                    version,
                    ordinal: ordinal as i64,
                    text: text.clone(),
                    page_start: 1,
                    page_end: 1,
                    char_start: offset,
                    char_end: offset + len,
                    token_count: 0,
                    section: None,
                    disabled: false,
                });
                offset += len + 2;
                points.push(ChunkPoint {
                    id,
                    dense: dense.clone(),
                    sparse: base_sparse[b].clone(),
                    payload: PointPayload {
                        collection_id: collection_id.to_string(),
                        document_id: doc_id.clone(),
                        version,
                        ordinal: ordinal as i64,
                        access: new.access.clone(),
                        tags: Vec::new(),
                        mime_type: "application/pdf".into(),
                        date: None,
                        authors: Vec::new(),
                        disabled: false,
                    },
                });
                all_dense.push(dense);
                ids.push(chunk_point_id(&doc_id, version, ordinal as i64));
            }
            let page = PageRecord {
                page_number: 1,
                char_start: 0,
                text: String::new(),
            };
            meta.store_chunks(&doc_id, version, &[page], &records)
                .await?;
            vectors.upsert(points).await?;
            meta.activate_version(&doc_id, version, &new.title, &new.metadata, 1, n as i64)
                .await?;
            if doc_no.is_multiple_of(50) {
                eprint!("\r  {} chunks written", all_dense.len());
            }
        }
        vectors.flush().await?;
        eprintln!("\r  {} chunks written", all_dense.len());
        Ok(())
    }
}

/// Real chunks: (embedding input, chunk text).
async fn real_chunks(
    corpus: &Path,
    base: usize,
    settings: &Settings,
    embedder: &OnnxEmbedder,
    enclave: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(corpus)
        .with_context(|| format!("reading the corpus folder {}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")))
        .collect();
    pdfs.sort();
    if pdfs.is_empty() {
        bail!(
            "no PDF in {} (scripts/test fetches the corpus)",
            corpus.display()
        );
    }
    let chunker = Chunker::new(
        embedder.tokenizer(),
        settings.chunking.max_tokens,
        settings.chunking.overlap_tokens,
    )?;
    let iso = PdfIsolation {
        program: PathBuf::from(enclave),
        args: vec!["extract-pdf".into()],
        timeout: Duration::from_secs(settings.ingest.pdf_timeout_secs),
        memory_mb: 0,
    };
    // Spread over the corpus: every 7th PDF, round after round, until there are enough chunks.
    let order: Vec<&PathBuf> = (0..7)
        .flat_map(|start| pdfs.iter().skip(start).step_by(7))
        .collect();
    let mut out = Vec::new();
    for pdf in order {
        if out.len() >= base {
            break;
        }
        let Ok(bytes) = std::fs::read(pdf) else {
            continue;
        };
        let Ok(doc) = extract_isolated(&bytes, &iso).await else {
            continue;
        };
        let name = pdf.file_name().unwrap_or_default().to_string_lossy();
        let title = doc
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| name.to_string());
        // At most 300 chunks of one PDF, so that a few large manuals do not make the sample.
        for c in chunker.chunk(&doc).into_iter().take(300) {
            let input = match &c.section {
                Some(s) if s != &title => format!("{title}\n{s}\n{}", c.text),
                _ => format!("{title}\n{}", c.text),
            };
            out.push((input, c.text));
        }
        eprint!("\r  {} real chunks", out.len().min(base));
    }
    eprintln!();
    out.truncate(base);
    Ok(out)
}
