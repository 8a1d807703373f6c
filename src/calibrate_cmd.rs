//! `enclave calibrate`: a collection's hybrid fusion weights, calibrated from the collection
//! itself (questions the local model writes from a sample of its passages).

use std::process::ExitCode;
use std::time::Duration;

use enclave_settings::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The collection to calibrate.
    #[arg(long = "collection", value_name = "NAME")]
    collection: String,
    /// Passages to write a question from, spread over the collection's documents (each takes
    /// the model a few seconds on a CPU).
    #[arg(long, default_value_t = 40, value_name = "N")]
    samples: usize,
    /// Measure and print, but leave the collection's settings as they are.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let asker = crate::app::asker(settings).await?;
    let retriever = asker.retriever();
    let corpus = crate::app::corpus_of(settings, retriever.meta().clone(), retriever.vectors());
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} questions written (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = |done: usize, of: usize| {
        bar.set_length(of as u64);
        bar.set_position(done as u64);
    };
    let report = corpus
        .calibrate_fusion(
            &enclave_corpus::Actor::command_line(),
            &args.collection,
            &asker,
            args.samples,
            !args.dry_run,
            &progress,
        )
        .await;
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &report.calibration;
    println!(
        "collection '{}': {} questions written from its passages ({} passages skipped), {:.0} s",
        report.collection,
        c.queries,
        report.skipped,
        report.took_ms / 1000.0
    );
    println!();
    println!(
        "| dense share | dense weight | bm25 weight | recall@5 | MRR | nDCG@10 | questions ranked higher · lower than configured |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &c.rows {
        let f = enclave_retrieval::Fusion::with_dense_share(r.dense_share);
        let mut label = format!("{:.2}", r.dense_share);
        if (r.dense_share - c.configured.dense_share()).abs() < 1e-4 {
            label.push_str(" (configured)");
        }
        if (r.dense_share - c.chosen.dense_share()).abs() < 1e-4 {
            label.push_str(" (chosen)");
        }
        println!(
            "| {label} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} | {} · {} |",
            f.dense_weight, f.bm25_weight, r.recall_at_5, r.mrr, r.ndcg_at_10, r.better, r.worse
        );
    }
    println!();
    if c.chosen == c.configured {
        println!(
            "No share beats the configured weights by {} nDCG@10 on significantly more \
             questions than it loses (sign test, z >= {}): the collection {} them.",
            enclave_retrieval::calibrate::MIN_GAIN,
            enclave_retrieval::calibrate::MIN_SIGN_Z,
            if report.applied {
                "now follows"
            } else {
                "would follow"
            }
        );
    } else {
        println!(
            "Chosen: dense_weight {:.2}, bm25_weight {:.2} (nDCG@10 {:.3}, configured {:.3}){}.",
            c.chosen.dense_weight,
            c.chosen.bm25_weight,
            c.chosen_ndcg,
            c.configured_ndcg,
            if report.applied {
                "; kept in the collection's settings"
            } else {
                "; not kept (--dry-run)"
            }
        );
    }
    println!();
    println!("Some of the questions:");
    for (q, title) in report.questions.iter().take(5) {
        println!("- {q} ({title})");
    }
    Ok(ExitCode::SUCCESS)
}
