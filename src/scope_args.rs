//! The document filters shared by `enclave search` and `enclave ask`.

use enclave_retrieval::{Scope, parse_date_bound};

/// Which documents the passages may come from.
#[derive(Debug, Default, clap::Args)]
pub struct ScopeArgs {
    /// Only documents of this MIME type (repeatable), e.g. application/pdf.
    #[arg(long = "type", value_name = "MIME")]
    mime_types: Vec<String>,
    /// Only documents with this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only documents dated on or after this day (YYYY-MM-DD) or instant (RFC 3339): an
    /// email's Date, a PDF's creation date.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Only documents dated on or before this day (YYYY-MM-DD, the whole day) or instant.
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// Only documents by this author or sender (repeatable): an email address, a display name
    /// or a PDF's author, whole, in any case.
    #[arg(long = "author", value_name = "NAME")]
    authors: Vec<String>,
}

impl ScopeArgs {
    /// The filters, or an error naming a date that does not parse.
    pub fn scope(self) -> anyhow::Result<Scope> {
        Ok(Scope {
            mime_types: self.mime_types,
            tags: self.tags,
            date_from: self
                .since
                .map(|d| parse_date_bound(&d, false))
                .transpose()?,
            date_to: self.until.map(|d| parse_date_bound(&d, true)).transpose()?,
            authors: self.authors,
        })
    }
}
