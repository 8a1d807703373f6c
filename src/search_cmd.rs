//! `enclave search`.

use std::process::ExitCode;

use enclave_corpus::{Query, Question};
use enclave_retrieval::{Retriever, SearchMode};
use enclave_settings::Settings;

use crate::display::place;
use crate::scope_args::ScopeArgs;

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// What to look for, in plain language.
    #[arg(required = true, value_name = "QUERY")]
    query: Vec<String>,
    /// Collections to search (repeatable; default: all).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    /// Ranking: hybrid (dense + BM25 fused), dense or bm25 (default: the collection's
    /// setting, else hybrid).
    #[arg(long)]
    mode: Option<SearchMode>,
    /// Number of passages.
    #[arg(long, short = 'k', default_value_t = 5)]
    limit: usize,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Search as this user would: only what they may read (default: every document, as the
    /// command line reads everything).
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    /// Widen each passage with its neighbouring chunks.
    #[arg(long)]
    expand: bool,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}...", flat.chars().take(max).collect::<String>())
    }
}

pub async fn run(settings: &Settings, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let retriever: Retriever = crate::app::retriever(settings).await?;
    let corpus = crate::app::corpus_of(settings, retriever.meta().clone(), retriever.vectors());
    let actor = crate::app::actor(&corpus, args.as_user.as_deref()).await?;
    let query = Query {
        question: Question {
            text: args.query.join(" "),
            collections: args.collections,
            mode: args.mode.map(|m| m.to_string()),
            scope: args.scope.scope()?,
            ..Default::default()
        },
        limit: args.limit,
        expand_neighbours: args.expand,
    };
    let results = corpus
        .search(&actor, &retriever, &query, "cli.search")
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(ExitCode::SUCCESS);
    }
    if results.passages.is_empty() {
        println!("No passages found.");
        return Ok(ExitCode::SUCCESS);
    }
    if !results.relevant {
        println!("Nothing relevant found; the nearest passages:");
    }
    for (i, p) in results.passages.iter().enumerate() {
        let s = &p.scores;
        let mut scores = format!("{} {:.4}", results.mode, s.fused);
        if let Some(d) = s.dense {
            scores.push_str(&format!(", dense {d:.3}"));
        }
        if let Some(b) = s.bm25 {
            scores.push_str(&format!(", bm25 {b:.2}"));
        }
        println!(
            "[{}] {}, {} ({scores})",
            i + 1,
            p.document_title,
            place(&p.locator, p.chunk.page_start, p.chunk.page_end)
        );
        if let Some(section) = &p.chunk.section {
            println!("    section: {section}");
        }
        println!("    {}", snippet(&p.context, 300));
        println!(
            "    {} (chars {}..{})",
            p.source_uri, p.chunk.char_start, p.chunk.char_end
        );
    }
    println!("({:.0} ms)", results.took_ms);
    Ok(ExitCode::SUCCESS)
}
