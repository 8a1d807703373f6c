//! `enclave eval`: retrieval quality on a question set, dense, BM25 and hybrid side by side:
//! a file, or a collection's own evaluation set (whose run is then kept with its settings).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use enclave_retrieval::eval::{
    ModeReport, ThresholdRow, UNMATCHED_RULES, evaluate_expanded, parse_set, rule_label,
};
use enclave_settings::{RefuseUnmatched, Settings};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Question set (JSON Lines: id, question, document, pages, answer | unanswerable).
    /// Without it, the evaluation set of the one collection named with --collection (its
    /// cases, added by curators or made from readers' feedback); the run is kept and shown on
    /// the collection's page.
    #[arg(long = "set", value_name = "FILE")]
    set: Option<PathBuf>,
    /// Collection to search (repeatable; default: all).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    /// Also ask the model: the first N answerable questions and every unanswerable one
    /// (answer-level refusals, citations, whether the cited passage holds the answer).
    #[arg(long, value_name = "N")]
    answers: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Lower-cased words, for "does this passage contain the answer" checks.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn contains_words(haystack: &str, needle: &str) -> bool {
    let (h, n) = (words(haystack), words(needle));
    !n.is_empty() && h.windows(n.len()).any(|w| w == n.as_slice())
}

#[derive(Debug, Default, serde::Serialize)]
struct AnswerReport {
    /// The model that answered.
    model: String,
    answerable: usize,
    with_citation: usize,
    cited_passage_holds_answer: usize,
    /// The same, with the markers as the model wrote them (before attribution moved and
    /// added any).
    cited_as_written_holds_answer: usize,
    /// Answers citing a passage on a page where the answer is (the expected document and
    /// pages, as a retrieval hit is counted).
    cited_gold_page: usize,
    /// Answers given a passage that contains the answer text: what citing could reach.
    given_passage_holds_answer: usize,
    /// Answers given a passage on an expected page.
    given_gold_page: usize,
    citations: usize,
    removed_citations: usize,
    /// Markers moved to the source their sentence was copied from.
    repointed_citations: usize,
    /// Markers added after sentences copied from a source and left uncited.
    added_citations: usize,
    /// The final markers of answers to answerable questions whose claim is long enough to
    /// judge, and those whose cited passage holds at least half of the claim's word pairs:
    /// citation precision, so that a change that adds markers is seen to add right ones.
    judged_citations: usize,
    supported_citations: usize,
    /// Answers the model began repeating itself in (stopped, cut before the repeat).
    repetition_cuts: usize,
    /// Answers in which the model wrote the prompt's source tags back (removed).
    echoed_source_tags: usize,
    unanswerable: usize,
    refused: usize,
    /// Of `refused`: refusals the model gave after reading the passages.
    refused_by_model: usize,
    false_refusals: usize,
    /// Of `false_refusals`: the model's.
    false_refusals_by_model: usize,
    /// Answers to answerable questions, not refused, that open by saying the documents lack
    /// the answer (a refusal in all but name: the model may not refuse by default).
    said_not_found: usize,
    ttft_ms: Vec<f64>,
    tokens_per_s: Vec<f64>,
    /// Each question's answer, for reading the misses one by one (in the JSON output).
    questions: Vec<AnswerRecord>,
}

/// One question's answer, as `--json` lists it.
#[derive(Debug, serde::Serialize)]
struct AnswerRecord {
    id: String,
    question: String,
    unanswerable: bool,
    refused: bool,
    text: String,
    /// Source numbers cited, in order of first citation.
    cited: Vec<usize>,
    /// Given passages (numbered from 1) that contain the answer text.
    given_holding_answer: Vec<usize>,
    /// Given passages on an expected page.
    given_on_expected_page: Vec<usize>,
    repointed: Vec<enclave_answer::Repointed>,
    /// Sources whose markers were added.
    added: Vec<usize>,
    /// Whether the model began repeating itself and was stopped.
    repetition_cut: bool,
    /// The model's text as it wrote it.
    generated: String,
    /// The given passages' text, in the order the model saw them (numbered from 1).
    passages: Vec<String>,
    /// The given passages' retrieval scores, in the same order.
    scores: Vec<enclave_retrieval::Scores>,
}

async fn evaluate_answers(
    asker: &enclave_answer::Asker,
    items: &[enclave_retrieval::eval::EvalItem],
    n: usize,
    collections: &[String],
) -> anyhow::Result<AnswerReport> {
    let mut r = AnswerReport::default();
    let chosen = items
        .iter()
        .filter(|i| !i.unanswerable)
        .take(n)
        .chain(items.iter().filter(|i| i.unanswerable));
    for item in chosen {
        let answer = asker
            .answer(&enclave_answer::AskRequest {
                question: item.question.clone(),
                collections: collections.to_vec(),
                ..Default::default()
            })
            .await?;
        r.model.clone_from(&answer.model);
        r.citations += answer.citations.len();
        r.removed_citations += answer.removed_citations.len();
        r.repointed_citations += answer.repointed_citations.len();
        r.added_citations += answer.added_citations.len();
        r.repetition_cuts += usize::from(answer.repetition_cut);
        r.echoed_source_tags +=
            usize::from(enclave_answer::strip_source_tags(&answer.generated) != answer.generated);
        if let Some(t) = answer.timings.time_to_first_token_ms {
            r.ttft_ms.push(t);
        }
        if let Some(t) = answer.timings.tokens_per_s {
            r.tokens_per_s.push(t);
        }
        let by_model = usize::from(answer.refusal == Some(enclave_answer::Refusal::Model));
        let expected = item.answer.as_deref().unwrap_or_default();
        let numbered = |hit: &dyn Fn(&enclave_retrieval::Passage) -> bool| -> Vec<usize> {
            let passages = answer.passages.iter().enumerate();
            passages
                .filter(|(_, p)| hit(p))
                .map(|(i, _)| i + 1)
                .collect()
        };
        let holding = numbered(&|p| contains_words(&p.chunk.text, expected));
        let on_page = numbered(&|p| item.is_hit(p));
        // The sources the model's own markers named, before attribution moved or added any.
        let (_, as_written, _) =
            enclave_answer::check_citations(&answer.generated, answer.passages.len());
        let as_written_holds = as_written.iter().any(|k| holding.contains(k));
        if !item.unanswerable {
            r.given_gold_page += usize::from(!on_page.is_empty());
            r.given_passage_holds_answer += usize::from(!holding.is_empty());
        }
        r.questions.push(AnswerRecord {
            id: item.id.clone(),
            question: item.question.clone(),
            unanswerable: item.unanswerable,
            refused: answer.refused,
            text: answer.text.clone(),
            cited: answer.citations.iter().map(|c| c.number).collect(),
            given_holding_answer: holding,
            given_on_expected_page: on_page,
            repointed: answer.repointed_citations.clone(),
            added: answer.added_citations.clone(),
            repetition_cut: answer.repetition_cut,
            generated: answer.generated.clone(),
            passages: answer
                .passages
                .iter()
                .map(|p| p.chunk.text.clone())
                .collect(),
            scores: answer.passages.iter().map(|p| p.scores.clone()).collect(),
        });
        if item.unanswerable {
            r.unanswerable += 1;
            r.refused += usize::from(answer.refused);
            r.refused_by_model += by_model;
            continue;
        }
        r.answerable += 1;
        r.false_refusals += usize::from(answer.refused);
        r.false_refusals_by_model += by_model;
        r.said_not_found +=
            usize::from(!answer.refused && enclave_answer::says_not_found(&answer.text));
        r.with_citation += usize::from(!answer.citations.is_empty());
        if answer
            .citations
            .iter()
            .any(|c| item.is_on_gold_page(&c.document_id, &c.source_uri, c.page_start, c.page_end))
        {
            r.cited_gold_page += 1;
        }
        if answer
            .citations
            .iter()
            .any(|c| contains_words(&c.quote, expected))
        {
            r.cited_passage_holds_answer += 1;
        }
        r.cited_as_written_holds_answer += usize::from(as_written_holds);
        let sources: Vec<&str> = answer.passages.iter().map(|p| p.context.as_str()).collect();
        let backed = enclave_answer::marker_support(&answer.text, &sources);
        r.judged_citations += backed.judged;
        r.supported_citations += backed.supported;
    }
    Ok(r)
}

/// Every question's query expansion, written by the default model, and how long each took.
async fn expand_all(
    asker: &enclave_answer::Asker,
    items: &[enclave_retrieval::eval::EvalItem],
) -> anyhow::Result<(Vec<String>, Vec<f64>)> {
    let generator = asker.generator();
    let (mut expansions, mut took) = (Vec::new(), Vec::new());
    for item in items {
        let started = std::time::Instant::now();
        expansions
            .push(enclave_answer::expansion::expand(generator.as_ref(), &item.question).await?);
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((expansions, took))
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "n/a".into()
    } else {
        format!("{:.2} ({n}/{d})", n as f64 / d as f64)
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize - 1]
}

pub async fn run(settings: &Settings, args: EvalArgs) -> anyhow::Result<ExitCode> {
    // One process opens the embedded vector store once: the asker's retriever serves both.
    // The model is needed for answers, and for query expansion (generation.expand_query).
    let asker = if args.answers.is_some() || settings.generation.expand_query {
        Some(crate::app::asker(settings).await?)
    } else {
        None
    };
    let retriever = match &asker {
        Some(a) => a.retriever().clone(),
        None => crate::app::retriever(settings).await?,
    };
    let corpus = crate::app::corpus_of(settings, retriever.meta().clone(), retriever.vectors());
    let actor = enclave_corpus::Actor::command_line();
    let (label, items, own) = match &args.set {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let items = parse_set(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (path.display().to_string(), items, None)
        }
        None => {
            let [name] = args.collections.as_slice() else {
                anyhow::bail!(
                    "give a question set with --set FILE, or name one collection with \
                     --collection NAME to run its own evaluation set"
                );
            };
            let items = corpus.eval_items(&actor, name).await?;
            (format!("collection '{name}'"), items, Some(name.clone()))
        }
    };
    let (expansions, expand_ms) = match (&asker, settings.generation.expand_query) {
        (Some(a), true) => expand_all(a, &items).await?,
        _ => (Vec::new(), Vec::new()),
    };
    let reports = evaluate_expanded(&retriever, &items, &args.collections, &expansions).await?;
    let answers = match (&asker, args.answers) {
        (Some(a), Some(n)) => Some(evaluate_answers(a, &items, n, &args.collections).await?),
        _ => None,
    };
    if let Some(name) = &own {
        // A collection's cases name pages, not answer text: its answers are judged by the
        // pages they cite.
        let kept = answers.as_ref().map(|a| {
            serde_json::json!({
                "model": a.model,
                "answerable": a.answerable,
                "with_citation": a.with_citation,
                "cited_gold_page": a.cited_gold_page,
                "false_refusals": a.false_refusals,
                "unanswerable": a.unanswerable,
                "refused": a.refused,
                "ttft_p50_ms": percentile(&a.ttft_ms, 50.0),
            })
        });
        corpus
            .record_eval(&actor, &retriever, name, &reports, kept)
            .await?;
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
                    "unmatched_rule": UNMATCHED_RULES
                        .iter()
                        .map(|&(k, together)| {
                            let row =
                                r.at_rule(settings.retrieval.min_dense_score, k, together);
                            serde_json::json!({
                                "refuse_unmatched": k.as_str(),
                                "names_together": together,
                                "refused": row.refused,
                                "false_refusals": row.false_refusals,
                            })
                        })
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "retrieval": rows,
                "answers": answers,
                "expand_query": settings.generation.expand_query,
                "expand_ms_p50": percentile(&expand_ms, 50.0),
                "expand_ms_p95": percentile(&expand_ms, 95.0),
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (answerable, unanswerable) = (reports[0].1.answerable, reports[0].1.unanswerable);
    println!("{label}: {answerable} answerable, {unanswerable} unanswerable questions");
    if own.is_some() {
        println!("(this run is kept: the collection's page shows it beside the earlier ones)");
    }
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
        "Retrieval refuses when the best dense similarity is below retrieval.min_dense_score = {}{}.",
        settings.retrieval.min_dense_score,
        if settings.generation.model_refusal {
            "; an answer may also be refused by the model (--answers N measures it)"
        } else {
            ""
        }
    );
    if settings.generation.expand_query {
        println!(
            "Query expansion on (generation.expand_query): each question was searched with a \
             passage the model wrote first, in {:.1} s p50, {:.1} s p95.",
            percentile(&expand_ms, 50.0) / 1000.0,
            percentile(&expand_ms, 95.0) / 1000.0
        );
    }
    print_threshold_sweep(&reports[0].1, settings.retrieval.min_dense_score);
    print_unmatched(&reports[0].1, &settings.retrieval);
    if let Some(a) = answers {
        println!();
        println!(
            "Answers ({}, hybrid retrieval):",
            settings.generation_model().display()
        );
        println!();
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| answers with at least one citation | {} |",
            pct(a.with_citation, a.answerable)
        );
        println!(
            "| citations that resolve to a given passage | {} |",
            pct(a.citations, a.citations + a.removed_citations)
        );
        println!(
            "| answers whose cited passage contains the answer text | {} |",
            pct(a.cited_passage_holds_answer, a.answerable)
        );
        println!(
            "| the same, with the markers as the model wrote them | {} |",
            pct(a.cited_as_written_holds_answer, a.answerable)
        );
        println!(
            "| answers citing a passage on an expected page | {} |",
            pct(a.cited_gold_page, a.answerable)
        );
        println!(
            "| answers given a passage that contains the answer text | {} |",
            pct(a.given_passage_holds_answer, a.answerable)
        );
        println!(
            "| answers given a passage on an expected page | {} |",
            pct(a.given_gold_page, a.answerable)
        );
        println!(
            "| citation markers whose cited passage holds half of their sentence's word pairs | {} |",
            pct(a.supported_citations, a.judged_citations)
        );
        println!(
            "| citation markers moved to the source their sentence was copied from | {} |",
            a.repointed_citations
        );
        println!(
            "| citation markers added after uncited sentences copied from a source | {} |",
            a.added_citations
        );
        println!(
            "| answers stopped as the model began repeating itself | {} |",
            a.repetition_cuts
        );
        println!(
            "| answers with source tags written back by the model (removed) | {} |",
            a.echoed_source_tags
        );
        println!(
            "| refusals on unanswerable questions | {} (by the model: {}) |",
            pct(a.refused, a.unanswerable),
            a.refused_by_model
        );
        println!(
            "| wrong refusals on answerable questions | {} (by the model: {}) |",
            pct(a.false_refusals, a.answerable),
            a.false_refusals_by_model
        );
        println!(
            "| answers to answerable questions saying the documents lack the answer | {} |",
            pct(a.said_not_found, a.answerable)
        );
        println!(
            "| time to first token p50 / p95 | {:.1} s / {:.1} s |",
            percentile(&a.ttft_ms, 50.0) / 1000.0,
            percentile(&a.ttft_ms, 95.0) / 1000.0
        );
        println!(
            "| decode tokens/s p50 | {:.1} |",
            percentile(&a.tokens_per_s, 50.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The refusals each relevance threshold would give on this set (the nearest chunk's
/// similarity is the same in every mode: the dense channel always runs).
fn print_threshold_sweep(report: &ModeReport, configured: f32) {
    let (rows, best) = report.threshold_sweep();
    println!();
    println!(
        "Relevance threshold calibration: refusals at each retrieval.min_dense_score \
         ({} unanswerable, {} answerable questions).",
        report.unanswerable, report.answerable
    );
    println!();
    println!("| threshold | unanswerable refused | answerable refused | right |");
    println!("|---|---|---|---|");
    let mut shown: Vec<ThresholdRow> = rows
        .iter()
        .copied()
        .filter(|r| ((r.threshold * 1000.0).round() as i32) % 50 == 0)
        .collect();
    for extra in [best, report.at_threshold(configured)] {
        if !shown
            .iter()
            .any(|r| (r.threshold - extra.threshold).abs() < 1e-4)
        {
            shown.push(extra);
        }
    }
    shown.sort_by(|a, b| a.threshold.total_cmp(&b.threshold));
    for r in shown {
        let mut label = format!("{:.3}", r.threshold);
        if (r.threshold - configured).abs() < 1e-4 {
            label.push_str(" (configured)");
        }
        if (r.threshold - best.threshold).abs() < 1e-4 {
            label.push_str(" (best)");
        }
        print_refusal_row(&label, &r, report);
    }
}

/// One row of a refusal table: what `r` refuses of `report`'s questions, and how many it gets
/// right (refused when unanswerable, answered otherwise).
fn print_refusal_row(label: &str, r: &ThresholdRow, report: &ModeReport) {
    println!(
        "| {label} | {}/{} | {}/{} | {}/{} |",
        r.refused,
        report.unanswerable,
        r.false_refusals,
        report.answerable,
        r.refused + report.answerable - r.false_refusals,
        report.unanswerable + report.answerable
    );
}

/// The refusals each `retrieval.refuse_unmatched` would give beside the configured
/// threshold, and the questions whose words the collections never mention.
fn print_unmatched(report: &ModeReport, retrieval: &enclave_settings::RetrievalSettings) {
    println!();
    println!(
        "Words no passage holds: refusals at each retrieval.refuse_unmatched, with \
         retrieval.min_dense_score = {}.",
        retrieval.min_dense_score
    );
    println!();
    println!("| refuse_unmatched | unanswerable refused | answerable refused | right |");
    println!("|---|---|---|---|");
    for (k, together) in UNMATCHED_RULES {
        let r = report.at_rule(retrieval.min_dense_score, k, together);
        let mut label = rule_label(k, together);
        if k == retrieval.refuse_unmatched
            && (together == retrieval.names_together || k == RefuseUnmatched::Off)
        {
            label.push_str(" (configured)");
        }
        print_refusal_row(&label, &r, report);
    }
    let listed = report.with_unmatched();
    if !listed.is_empty() {
        println!();
        println!(
            "| question | unanswerable | words no passage holds | names no document found holds together |"
        );
        println!("|---|---|---|---|");
        for (id, unanswerable, words, apart) in listed {
            println!(
                "| {id} | {} | {} | {} |",
                if unanswerable { "yes" } else { "no" },
                words.join(", "),
                apart.join(", ")
            );
        }
    }
}
