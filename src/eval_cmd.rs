//! `enclave eval`: retrieval quality on a question set, dense, BM25 and hybrid side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use enclave_retrieval::eval::{ModeReport, parse_set};
use enclave_retrieval::{SearchMode, SearchRequest};
use enclave_settings::Settings;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Question set (JSON Lines: id, question, document, pages, answer | unanswerable).
    #[arg(long = "set", value_name = "FILE")]
    set: PathBuf,
    /// Collection to search (default: all).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

const MODES: [SearchMode; 3] = [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid];

pub async fn run(settings: &Settings, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.set)
        .with_context(|| format!("reading {}", args.set.display()))?;
    let items = parse_set(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.set.display()))?;
    let retriever = crate::app::retriever(settings).await?;
    let mut reports: Vec<(SearchMode, ModeReport)> =
        MODES.iter().map(|m| (*m, ModeReport::default())).collect();
    for item in &items {
        for (mode, report) in &mut reports {
            let request = SearchRequest {
                query: item.question.clone(),
                collections: args.collections.clone(),
                mode: *mode,
                limit: 10,
                ..Default::default()
            };
            let results = retriever.search(&request).await?;
            report.add(item, &results);
        }
    }
    if args.json {
        let rows: Vec<_> = reports
            .iter()
            .map(|(m, r)| {
                serde_json::json!({
                    "mode": m.to_string(),
                    "answerable": r.answerable,
                    "recall_at_1": r.recall_at_1(),
                    "recall_at_5": r.recall_at_5(),
                    "recall_at_10": r.recall_at_10(),
                    "mrr": r.mrr(),
                    "ndcg_at_10": r.ndcg(),
                    "unanswerable": r.unanswerable,
                    "refusal_accuracy": r.refusal_accuracy(),
                    "false_refusals": r.false_refusals,
                    "latency_p50_ms": r.latency_percentile(50.0),
                    "latency_p95_ms": r.latency_percentile(95.0),
                    "latency_p99_ms": r.latency_percentile(99.0),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (answerable, unanswerable) = (reports[0].1.answerable, reports[0].1.unanswerable);
    println!(
        "{}: {answerable} answerable, {unanswerable} unanswerable questions",
        args.set.display()
    );
    println!();
    println!(
        "| mode | recall@1 | recall@5 | recall@10 | MRR | nDCG@10 | refusal accuracy | false refusals | p50 ms | p95 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (m, r) in &reports {
        println!(
            "| {m} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} ({}/{}) | {} | {:.0} | {:.0} | {:.0} |",
            r.recall_at_1(),
            r.recall_at_5(),
            r.recall_at_10(),
            r.mrr(),
            r.ndcg(),
            r.refusal_accuracy(),
            r.refused,
            r.unanswerable,
            r.false_refusals,
            r.latency_percentile(50.0),
            r.latency_percentile(95.0),
            r.latency_percentile(99.0),
        );
    }
    println!();
    println!(
        "Refusal is decided by retrieval (best dense similarity below retrieval.min_dense_score = {}); \
         answer and citation checks need the answer engine.",
        settings.retrieval.min_dense_score
    );
    Ok(ExitCode::SUCCESS)
}
