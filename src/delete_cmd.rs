//! `enclave delete`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
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
                enclave_ingest::delete_document(&meta, vectors.as_ref(), &d.id)
                    .await
                    .with_context(|| format!("deleting {}", d.source_uri))?;
                // An uploaded original goes with its last document, as with the API.
                uploads.release(&meta, &d.sha256).await;
                let collection = meta.collection(&d.collection_id).await?.map(|c| c.name);
                meta.record_audit(
                    &enclave_corpus::Actor::command_line().audit_name(),
                    "delete",
                    collection.as_deref(),
                    Some(&d.id),
                    &serde_json::json!({"title": d.title, "source_uri": d.source_uri}),
                )
                .await?;
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
