//! `enclave migrate`: copies a deployment's stores (typically the embedded SQLite file and
//! qdrant-edge directory) to PostgreSQL and a Qdrant server, without re-embedding anything,
//! then verifies the copy. Safe to run again: rows and points keep their ids and are
//! overwritten, so a second run finishes an interrupted one and changes nothing after a
//! complete one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use enclave_settings::{Settings, VectorBackend};
use enclave_storage::{ChunkPoint, MetaStore, VectorStore};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to copy the metadata into (postgres://...); its schema is
    /// created or brought up to date first.
    #[arg(long, value_name = "URL")]
    to_database: String,
    /// The Qdrant server to copy the vectors into (its gRPC URL, http://host:6334). The
    /// collection, shards and replication come from the [vectors] settings.
    #[arg(long, value_name = "URL")]
    to_vectors: String,
    /// Also copy the uploaded originals into this directory (the shared uploads directory of
    /// the scale-out deployment, its server.uploads_dir).
    #[arg(long, value_name = "DIR")]
    to_uploads: Option<PathBuf>,
    /// Points compared vector by vector after the copy.
    #[arg(long, default_value_t = 200)]
    sample: usize,
}

/// Points per read and write while copying vectors.
const PAGE: usize = 256;

pub async fn run(settings: &Settings, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if !(args.to_database.starts_with("postgres://")
        || args.to_database.starts_with("postgresql://"))
    {
        bail!(
            "--to-database must be a PostgreSQL URL (postgres://user@host/db), not '{}'",
            args.to_database
        );
    }
    let mut target_settings = settings.clone();
    target_settings.database.url = Some(args.to_database.clone());
    target_settings.vectors.backend = VectorBackend::Qdrant;
    target_settings.vectors.url = Some(args.to_vectors.clone());
    target_settings.vectors.path = None;
    target_settings
        .validate()
        .context("the migration's target settings")?;
    if target_settings.database_url() == settings.database_url() {
        bail!("the target database is the source database");
    }

    // The embedded vector store admits one process: opening it also makes sure no server or
    // command is using the source while it is copied.
    let source_meta = crate::app::meta_store(settings).await?;
    let source_vectors = crate::app::vector_store(settings)?;
    let target_meta = crate::app::meta_store(&target_settings).await?;
    let target_vectors = crate::app::vector_store(&target_settings)?;
    target_vectors
        .check()
        .await
        .context("the target Qdrant server")?;
    eprintln!(
        "copying {} + {}\n     to {} + {}",
        settings.database_url(),
        source_vectors.describe(),
        args.to_database,
        target_vectors.describe()
    );

    let started = std::time::Instant::now();
    let rows = source_meta
        .copy_into(&target_meta, &|_table, _done| {})
        .await
        .context("copying the metadata")?;
    let points =
        enclave_storage::copy_points(source_vectors.as_ref(), target_vectors.as_ref(), PAGE)
            .await
            .context("copying the vectors")?;
    let files = match &args.to_uploads {
        Some(dir) => copy_uploads(&settings.uploads_dir(), dir)?,
        None => 0,
    };
    println!(
        "copied {} rows in {} tables, {points} vector points{} in {:.1} s",
        rows.iter().map(|(_, n)| n).sum::<usize>(),
        rows.len(),
        if args.to_uploads.is_some() {
            format!(", {files} uploaded originals")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );

    let problems = verify(
        &source_meta,
        &target_meta,
        source_vectors.as_ref(),
        target_vectors.as_ref(),
        args.sample,
    )
    .await?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("verification: {p}");
        }
        bail!(
            "the copy differs from the source in {} way(s); run the migration again",
            problems.len()
        );
    }
    println!(
        "verified: every table's rows, the vector points and {} sampled vectors match",
        args.sample
    );
    println!(
        "next: run the servers and workers with ENCLAVE_DATABASE__URL={} \
         ENCLAVE_VECTORS__BACKEND=qdrant ENCLAVE_VECTORS__URL={}{}",
        args.to_database,
        args.to_vectors,
        match &args.to_uploads {
            Some(dir) => format!(" ENCLAVE_SERVER__UPLOADS_DIR={}", dir.display()),
            None => format!(
                " and a server.uploads_dir every process sees, holding the files of {}",
                settings.uploads_dir().display()
            ),
        }
    );
    source_meta.close().await;
    target_meta.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Copies the content-addressed originals, leaving files already there with the same size.
fn copy_uploads(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut copied = 0;
    if !from.is_dir() {
        return Ok(0);
    }
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let entry = entry.path();
        let rel = entry.strip_prefix(from)?;
        if rel.starts_with("tmp") {
            continue;
        }
        let dest = to.join(rel);
        let same = std::fs::metadata(&dest)
            .ok()
            .zip(std::fs::metadata(entry).ok())
            .is_some_and(|(a, b)| a.len() == b.len());
        if same {
            continue;
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::copy(entry, &dest)
            .with_context(|| format!("copying {} to {}", entry.display(), dest.display()))?;
        copied += 1;
    }
    Ok(copied)
}

/// Differences between the source and the copy: row counts per table, the set of point ids,
/// and `sample` points spread over the ids compared vector by vector and payload by payload.
async fn verify(
    source_meta: &MetaStore,
    target_meta: &MetaStore,
    source: &dyn VectorStore,
    target: &dyn VectorStore,
    sample: usize,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let (from, to) = (
        source_meta.table_counts().await?,
        target_meta.table_counts().await?,
    );
    for ((table, a), (_, b)) in from.iter().zip(&to) {
        if a != b {
            problems.push(format!(
                "{table}: {a} rows in the source, {b} in the target"
            ));
        }
    }
    let ids = source.point_ids().await?;
    let target_ids = target.point_ids().await?;
    if ids != target_ids {
        problems.push(format!(
            "vector points: {} in the source, {} in the target",
            ids.len(),
            target_ids.len()
        ));
    }
    let step = (ids.len() / sample.max(1)).max(1);
    let picked: Vec<String> = ids.iter().step_by(step).take(sample).cloned().collect();
    let index = |points: Vec<ChunkPoint>| -> std::collections::HashMap<String, ChunkPoint> {
        points.into_iter().map(|p| (p.id.clone(), p)).collect()
    };
    let a = index(source.get_points(&picked).await?);
    let b = index(target.get_points(&picked).await?);
    for id in &picked {
        match (a.get(id), b.get(id)) {
            (Some(x), Some(y)) => {
                let close = x.dense.len() == y.dense.len()
                    && x.dense
                        .iter()
                        .zip(&y.dense)
                        .all(|(u, v)| (u - v).abs() < 1e-5);
                if !close {
                    problems.push(format!("point {id}: dense vectors differ"));
                }
                if sorted_pairs(&x.sparse) != sorted_pairs(&y.sparse) {
                    problems.push(format!("point {id}: BM25 vectors differ"));
                }
                if x.payload != y.payload {
                    problems.push(format!("point {id}: payloads differ"));
                }
            }
            (Some(_), None) => problems.push(format!("point {id}: missing in the target")),
            _ => {}
        }
    }
    Ok(problems)
}

/// A sparse vector's (index, value) pairs in index order (stores may keep another order).
fn sorted_pairs(sparse: &(Vec<u32>, Vec<f32>)) -> Vec<(u32, u32)> {
    let mut pairs: Vec<(u32, u32)> = sparse
        .0
        .iter()
        .zip(&sparse.1)
        .map(|(i, v)| (*i, v.to_bits()))
        .collect();
    pairs.sort_unstable();
    pairs
}
