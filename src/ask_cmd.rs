//! `enclave ask`: a grounded, cited answer, streamed.

use std::io::Write;
use std::process::ExitCode;

use enclave_answer::AskEvent;
use enclave_corpus::{Keep, Question};
use enclave_retrieval::SearchMode;
use enclave_settings::Settings;

use crate::display::place;
use crate::scope_args::ScopeArgs;

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question, in plain language.
    #[arg(required = true, value_name = "QUESTION")]
    question: Vec<String>,
    /// Collections to search (repeatable; default: all).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    /// Retrieval ranking: hybrid, dense or bm25 (default: the collection's setting, else
    /// hybrid).
    #[arg(long)]
    mode: Option<SearchMode>,
    /// Ask as this user would: answers only from what they may read (default: every
    /// document, as the command line reads everything).
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Print the finished answer as JSON instead of streaming it.
    #[arg(long)]
    json: bool,
    /// Keep the answer in a conversation: `new`, or the id of one (of the user given with
    /// --as, else of the command line's); the question is then a follow-up to its turns.
    #[arg(long, value_name = "ID|new")]
    conversation: Option<String>,
}

pub async fn run(settings: &Settings, args: AskArgs) -> anyhow::Result<ExitCode> {
    let asker = crate::app::asker(settings).await?;
    let retriever = asker.retriever();
    let corpus = crate::app::corpus_of(settings, retriever.meta().clone(), retriever.vectors());
    let actor = crate::app::actor(&corpus, args.as_user.as_deref()).await?;
    let question = Question {
        text: args.question.join(" "),
        collections: args.collections,
        mode: args.mode.map(|m| m.to_string()),
        scope: args.scope.scope()?,
        history: Vec::new(),
        keep: Keep::named(args.conversation.as_deref()),
    };
    let mut events = corpus.ask(&actor, &asker, &question, "cli.ask").await?;
    if args.json {
        while let Some(event) = events.next().await {
            match event {
                AskEvent::Done(answer) => {
                    let mut json = serde_json::to_value(&answer)?;
                    if let Some(turn) = events.kept() {
                        json["conversation_id"] = turn.conversation_id.clone().into();
                        json["turn_id"] = turn.id.clone().into();
                    }
                    println!("{}", serde_json::to_string_pretty(&json)?);
                    return Ok(ExitCode::SUCCESS);
                }
                AskEvent::Failed(e) => anyhow::bail!("generation failed: {e}"),
                AskEvent::Sources(_) | AskEvent::Token(_) => {}
            }
        }
        anyhow::bail!("the answer stream ended early");
    }
    let mut out = std::io::stdout();
    while let Some(event) = events.next().await {
        match event {
            AskEvent::Sources(_) => {}
            AskEvent::Token(piece) => {
                write!(out, "{piece}")?;
                out.flush()?;
            }
            AskEvent::Failed(e) => anyhow::bail!("generation failed: {e}"),
            AskEvent::Done(answer) => {
                if let Some(r) = &answer.rewrite {
                    println!("(asked as: {})", r.question);
                }
                if let Some(turn) = events.kept() {
                    println!("(kept in conversation {})", turn.conversation_id);
                }
                if answer.refused {
                    println!("{}", answer.text);
                    if !answer.passages.is_empty() {
                        println!("\nNearest passages (below the relevance threshold):");
                        for (i, p) in answer.passages.iter().enumerate() {
                            println!(
                                "  [{}] {}, {}",
                                i + 1,
                                p.document_title,
                                place(&p.locator, p.chunk.page_start, p.chunk.page_end)
                            );
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                println!("\n");
                if answer.citations.is_empty() {
                    println!("(The answer cites no source.)");
                } else {
                    println!("Sources:");
                    for c in &answer.citations {
                        println!(
                            "  [{}] {}, {} ({}, chars {}..{})",
                            c.number,
                            c.title,
                            place(&c.locator, c.page_start, c.page_end),
                            c.source_uri,
                            c.char_start,
                            c.char_end
                        );
                    }
                }
                if !answer.removed_citations.is_empty() {
                    println!(
                        "Removed citations naming no given source: {}",
                        answer.removed_citations.join(" ")
                    );
                }
                let t = &answer.timings;
                println!(
                    "({}; retrieval {:.0} ms, first token {:.1} s, {} tokens at {:.1} tokens/s)",
                    answer.model,
                    t.retrieval_ms,
                    t.time_to_first_token_ms.unwrap_or_default() / 1000.0,
                    t.generated_tokens,
                    t.tokens_per_s.unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
