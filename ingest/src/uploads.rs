//! Uploaded originals, kept content-addressed (`<dir>/<sha[0..2]>/<sha>.<ext>`) so that
//! re-indexing and the "original file" link work, and identical uploads are stored once.

use std::path::{Path, PathBuf};

use enclave_storage::MetaStore;

/// Source URIs of uploaded documents start with this.
pub const UPLOAD_SCHEME: &str = "upload://";

/// The directory of uploaded originals.
#[derive(Debug, Clone)]
pub struct UploadStore {
    dir: PathBuf,
}

impl UploadStore {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Self { dir })
    }

    /// A fresh temporary path for an upload being received.
    pub fn temp_path(&self) -> PathBuf {
        self.dir
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn shard(&self, sha: &str) -> PathBuf {
        self.dir.join(sha.get(..2).unwrap_or("00"))
    }

    /// Moves a received upload to its content address; returns the final path.
    pub async fn keep(&self, temp: &Path, sha: &str, ext: &str) -> std::io::Result<PathBuf> {
        let dir = self.shard(sha);
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("{sha}.{ext}"));
        if tokio::fs::try_exists(&path).await? {
            tokio::fs::remove_file(temp).await?;
        } else {
            tokio::fs::rename(temp, &path).await?;
        }
        Ok(path)
    }

    /// The stored original with this content hash.
    pub fn find(&self, sha: &str) -> Option<PathBuf> {
        let entries = std::fs::read_dir(self.shard(sha)).ok()?;
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_stem()
                .is_some_and(|s| s.to_string_lossy().eq_ignore_ascii_case(sha))
        })
    }

    /// Deletes the original with this hash unless an uploaded document still needs it.
    pub async fn release(&self, meta: &MetaStore, sha: &str) {
        if sha.is_empty() {
            return;
        }
        match meta.content_in_use(sha, UPLOAD_SCHEME).await {
            Ok(false) => {
                if let Some(path) = self.find(sha)
                    && let Err(e) = tokio::fs::remove_file(&path).await
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an unused upload");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "cannot check whether an upload is in use"),
        }
    }
}
