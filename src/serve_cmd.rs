//! `enclave serve`: the HTTP server (API, OpenAI-compatible API, web UI) with an in-process
//! ingest worker.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use enclave_corpus::Role;
use enclave_server::{Backends, SearchParts};
use enclave_settings::Settings;
use futures::FutureExt;

use crate::app;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: server.bind, 127.0.0.1:8080). Port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
}

pub async fn run(settings: &Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let bind = args.bind.unwrap_or_else(|| settings.server.bind.clone());
    let listener = TcpListener::bind(&bind).with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let meta = app::meta_store(settings).await?;
    let vectors = app::vector_store(settings)?;

    if settings.auth.enabled && meta.user_count().await? == 0 {
        // The first start: an administrator with a random password, shown once and kept in a
        // file only the service's user can read.
        let password = enclave_corpus::credentials::new_password();
        enclave_corpus::credentials::add_user(&meta, "admin", &password, Some(Role::Admin))
            .await
            .map_err(|e| anyhow::anyhow!("creating the first administrator: {e}"))?;
        let path = settings.data_dir.join("initial-admin-password");
        std::fs::create_dir_all(&settings.data_dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode_0600()
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(f, "{password}")?;
        eprintln!(
            "created the administrator 'admin' with password {password} (also in {}); \
             change it with 'enclave users password admin'",
            path.display()
        );
    }

    let search = {
        let settings = settings.clone();
        let meta = meta.clone();
        let vectors = vectors.clone();
        async move {
            let embedder = app::embedder(&settings)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let ingestor =
                app::ingestor_with(&settings, meta.clone(), vectors.clone(), embedder.clone())
                    .map_err(|e| format!("{e:#}"))?;
            let retriever = enclave_retrieval::Retriever::new(
                meta,
                vectors,
                embedder,
                enclave_retrieval::RetrievalOptions::from(&settings.retrieval),
            )
            .map_err(|e| e.to_string())?;
            Ok(SearchParts {
                ingestor,
                retriever,
            })
        }
        .boxed()
    };
    let generator = {
        let settings = settings.clone();
        async move {
            app::generator(&settings)
                .await
                .map_err(|e| format!("{e:#}"))
        }
        .boxed()
    };
    println!("Enclave is listening on http://{addr}");
    if !settings.auth.enabled {
        eprintln!("warning: authentication is off: every request acts as an administrator");
    }
    let _ = std::io::stdout().flush();
    enclave_server::run(
        settings.clone(),
        Backends {
            meta,
            vectors,
            search,
            generator,
            answer_options: app::answer_options(settings),
            models: app::model_catalog(settings),
        },
        listener,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
