//! `enclave delete`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use enclave_corpus::{Actor, Corpus};
use enclave_settings::Settings;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Documents to delete: document ids, file paths or source URIs (with their attachments).
    #[arg(required = true, value_name = "DOCUMENT")]
    targets: Vec<String>,
    /// Collection in which paths and URIs are looked up.
    #[arg(long, default_value = "default")]
    collection: String,
}

pub async fn run(settings: &Settings, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let meta = crate::app::meta_store(settings).await?;
    let vectors = crate::app::vector_store(settings)?;
    enclave_ingest::recover(&meta, vectors.as_ref(), crate::app::writer_lease(settings)).await?;
    let uploads = enclave_ingest::uploads::UploadStore::new(settings.uploads_dir())?;
    let corpus = Corpus::new(meta.clone(), vectors.clone()).with_uploads(uploads);
    let collection = meta.collection_by_name(&args.collection).await?;
    let mut missing = 0;
    for target in &args.targets {
        let by_id = meta.document(target).await?;
        let doc = match (by_id, &collection) {
            (Some(d), _) => Some(d),
            (None, Some(c)) => {
                let uri = if target.starts_with("file://") {
                    target.clone()
                } else {
                    enclave_ingest::source::file_uri(Path::new(target))
                };
                meta.document_by_source(&c.id, &uri).await?
            }
            (None, None) => None,
        };
        match doc {
            Some(d) => {
                // The same use case as the API's: both stores, the uploaded original when
                // no other document uses it, the audit entry.
                corpus
                    .remove_document(&Actor::command_line(), &d)
                    .await
                    .with_context(|| format!("deleting {}", d.source_uri))?;
                println!("deleted {} ({})", d.source_uri, d.id);
            }
            None => {
                eprintln!("not found: {target}");
                missing += 1;
            }
        }
    }
    vectors.flush().await?;
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
