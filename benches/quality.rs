//! Answer-quality benchmark: the committed evaluation sets side by side, with each lever of
//! retrieval and answering on and off, printed as Markdown tables.
//!
//! The documents of every set (the Debian FAQ, the R FAQ, the two SIMH guides) are ingested
//! together into one collection of a fresh embedded store by the `enclave` binary built with
//! this bench, so each set's questions meet the other sets' documents as distractors. This
//! is done once per ingest-time configuration:
//!
//! - `headings on` (the default): chunks are cut at the document's headings (a PDF's outline,
//!   else its numbered section headings) and carry their heading path in the embedded and
//!   indexed text;
//! - `headings off` (`chunking.headings = false`): only the title is added, cuts by size only.
//!
//! With headings on, retrieval runs again without the sentence ranking
//! (`retrieval.sentence_weight = 0`: only the dense and BM25 rankings are fused). The
//! collection's fusion weights are then calibrated from the collection
//! itself (`enclave calibrate`: the local model writes questions from 40 of its passages) and
//! retrieval runs again under the chosen weights (`fusion calibrated`), and once more with
//! `generation.expand_query` (the model writes a passage to search with; its time is the
//! cost added before the answer's first token). The paraphrased set
//! rewords answerable questions of the other three the way a reader might ask them.
//!
//! Each set then runs through `enclave eval --json`: recall@5 and nDCG@10 per ranking (dense,
//! BM25, hybrid), and the refusals retrieval's relevance threshold gives. With `--answers N`
//! (default 10), the first N answerable questions and every unanswerable one are also asked to
//! the default model (Qwen2.5-Coder-0.5B Q4_K_M on the CPU, one slot with every core), three
//! times: under the defaults (only retrieval's threshold refuses; the model reads the passages
//! within `generation.passage_margin` of the best), with `generation.model_refusal = true` (the
//! model may refuse too), and with every passage given (no margin). The answer table shows the
//! refusals on unanswerable and answerable questions, whether a cited passage holds the answer,
//! how many markers their passage backs (citation precision by shared word pairs), whether
//! every citation resolves to a given passage, and the time to first token.
//!
//! Each eval's main figures go to stderr as soon as it finishes, and an eval that fails is
//! reported and skipped, so that one failure costs only its own rows: the tables (stdout) come
//! at the end, followed by the list of evals that failed (the bench then exits with an error).
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! scripts/fetch-models embed llm
//! cargo bench --bench quality                     # about 60 min on 2 cores
//! cargo bench --bench quality -- --answers 0      # retrieval, calibration, expansion: about 15 min
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;

/// The Enclave binary built with this bench.
const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");

/// The sets: name, file, and whether retrieval's settings were tuned on it.
const SETS: [(&str, &str, bool); 4] = [
    ("debian-faq", "eval/debian-faq.jsonl", true),
    ("r-faq", "eval/r-faq.jsonl", false),
    ("simh", "eval/simh.jsonl", false),
    ("paraphrased", "eval/paraphrased.jsonl", false),
];

#[derive(Debug, Parser)]
#[command(name = "quality-bench")]
struct Args {
    /// Answerable questions of each set asked to the model (every unanswerable one is asked
    /// too); 0: retrieval only.
    #[arg(long, env = "ENCLAVE_BENCH_ANSWERS", default_value_t = 10)]
    answers: usize,
    /// Folder of the corpus (default: $ENCLAVE_CORPUS_DIR, else ~/.cache/enclave/corpus).
    #[arg(long, env = "ENCLAVE_BENCH_CORPUS", value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Deserialize)]
struct Report {
    retrieval: Vec<ModeRow>,
    answers: Option<Answers>,
    /// Time to write each question's query expansion (0 when it is off).
    #[serde(default)]
    expand_ms_p50: f64,
}

#[derive(Debug, Deserialize)]
struct ModeRow {
    mode: String,
    answerable: usize,
    recall_at_5: f64,
    ndcg_at_10: f64,
    unanswerable: usize,
    refusal_accuracy: f64,
    false_refusals: usize,
    /// Median time of one search (the query's embedding and the sentence ranking included).
    latency_p50_ms: f64,
    /// Refusals at each `retrieval.refuse_unmatched`, with the threshold.
    #[serde(default)]
    unmatched_rule: Vec<UnmatchedRow>,
}

#[derive(Debug, Deserialize)]
struct UnmatchedRow {
    refuse_unmatched: String,
    #[serde(default)]
    names_together: bool,
    refused: usize,
    false_refusals: usize,
}

#[derive(Debug, Deserialize)]
struct Answers {
    answerable: usize,
    cited_passage_holds_answer: usize,
    #[serde(default)]
    cited_as_written_holds_answer: usize,
    #[serde(default)]
    cited_gold_page: usize,
    #[serde(default)]
    given_passage_holds_answer: usize,
    citations: usize,
    removed_citations: usize,
    unanswerable: usize,
    refused: usize,
    refused_by_model: usize,
    false_refusals: usize,
    false_refusals_by_model: usize,
    #[serde(default)]
    said_not_found: usize,
    #[serde(default)]
    judged_citations: usize,
    #[serde(default)]
    supported_citations: usize,
    ttft_ms: Vec<f64>,
}

struct Run {
    config: String,
    ingest_s: f64,
    chunks: usize,
    /// Retrieval, and answers under the default settings.
    reports: Vec<(&'static str, bool, Report)>,
    /// Answers with one answer setting changed: (setting, set, answers).
    variants: Vec<(&'static str, &'static str, Answers)>,
}

/// The answer settings run beside the defaults: label, environment variable, value.
const ANSWER_VARIANTS: [(&str, &str, &str); 4] = [
    (
        "model refusal on",
        "ENCLAVE_GENERATION__MODEL_REFUSAL",
        "true",
    ),
    (
        "every passage given (no margin)",
        "ENCLAVE_GENERATION__PASSAGE_MARGIN",
        "2.0",
    ),
    (
        "no section openings",
        "ENCLAVE_GENERATION__SECTION_LEAD_REACH",
        "0",
    ),
    (
        "one section's passages in reading order",
        "ENCLAVE_GENERATION__READING_ORDER",
        "true",
    ),
];

/// What `enclave calibrate --json` prints (the part the tables show).
#[derive(Debug, Deserialize)]
struct Calibrated {
    calibration: CalibrationFigures,
    took_ms: f64,
}

#[derive(Debug, Deserialize)]
struct CalibrationFigures {
    queries: usize,
    configured_ndcg: f64,
    chosen_ndcg: f64,
    chosen: Weights,
}

#[derive(Debug, Deserialize)]
struct Weights {
    dense_weight: f64,
    bm25_weight: f64,
}

/// Runs `enclave eval --json` on one set; `answers`: also ask the model; `setting`: an
/// environment variable and its value.
fn eval_set(
    mut eval: Command,
    path: &Path,
    setting: Option<(&str, &str)>,
    answers: Option<usize>,
) -> anyhow::Result<Report> {
    eval.args(["eval", "--json", "--collection", "eval", "--set"])
        .arg(path);
    if let Some((var, value)) = setting {
        eval.env(var, value);
    }
    eval_report(eval, answers)
}

/// Runs a prepared `enclave eval --json` command.
fn eval_report(mut eval: Command, answers: Option<usize>) -> anyhow::Result<Report> {
    if let Some(n) = answers {
        eval.args(["--answers", &n.to_string()]);
    }
    json_output(eval, "eval")
}

/// Runs an `enclave ... --json` command and reads what it prints.
fn json_output<T: serde::de::DeserializeOwned>(mut cmd: Command, what: &str) -> anyhow::Result<T> {
    let out = cmd
        .output()
        .with_context(|| format!("running enclave {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One line of an eval's main figures, for the progress on stderr.
fn progress_line(report: &Report) -> String {
    let mut line =
        report
            .retrieval
            .iter()
            .find(|r| r.mode == "hybrid")
            .map_or("hybrid -".into(), |h| {
                format!(
                    "hybrid R@5 {:.3} nDCG@10 {:.3}, refused {:.2} of {}",
                    h.recall_at_5, h.ndcg_at_10, h.refusal_accuracy, h.unanswerable
                )
            });
    if let Some(a) = &report.answers {
        line.push_str(&format!("; {}", answers_line(a)));
    }
    line
}

fn answers_line(a: &Answers) -> String {
    format!(
        "answers: cited passage holds the answer {}/{}, unanswerable refused {}/{}, \
         answerable wrongly refused {}/{}, first token p50 {:.1} s",
        a.cited_passage_holds_answer,
        a.answerable,
        a.refused,
        a.unanswerable,
        a.false_refusals,
        a.answerable,
        percentile(&a.ttft_ms, 50.0) / 1000.0
    )
}

/// Evals that failed: what ran, and why. The bench goes on without their rows.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    /// The report, with its figures on stderr; on failure, `None`, and the failure kept.
    fn keep(&mut self, what: &str, result: anyhow::Result<Report>) -> Option<Report> {
        match result {
            Ok(report) => {
                eprintln!("{what}: {}", progress_line(&report));
                Some(report)
            }
            Err(e) => {
                eprintln!("{what}: FAILED: {e:#}");
                self.0.push(format!("{what}: {e:#}"));
                None
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = args.corpus.clone().unwrap_or_else(common::corpus_dir);
    let mut documents = BTreeSet::new();
    for (_, file, _) in SETS {
        let text = std::fs::read_to_string(root.join(file))?;
        for item in enclave_retrieval::eval::parse_set(&text).map_err(anyhow::Error::msg)? {
            documents.extend(item.document);
        }
    }
    let files: Vec<PathBuf> = documents.iter().map(|d| corpus.join(d)).collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        bail!(
            "{} is missing: build the corpus first (scripts/test does, or \
             ../shared/corpus/fetch-debian-pdfs DIR)",
            missing.display()
        );
    }
    eprintln!("documents: {documents:?}");

    let mut runs = Vec::new();
    let mut calibrated = None;
    let mut failures = Failures::default();
    for (config, headings) in [("headings on", true), ("headings off", false)] {
        let dir = tempfile::tempdir()?;
        let enclave = |extra: &[&str]| {
            let mut c = Command::new(ENCLAVE);
            c.args(extra)
                .env("ENCLAVE_DATA_DIR", dir.path())
                .env("ENCLAVE_CHUNKING__HEADINGS", headings.to_string())
                .env_remove("ENCLAVE_CONFIG");
            c
        };
        let started = Instant::now();
        let mut ingest = enclave(&["ingest", "--collection", "eval"]);
        ingest.args(&files);
        let out = ingest.output().context("running enclave ingest")?;
        if !out.status.success() {
            bail!("ingest failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let ingest_s = started.elapsed().as_secs_f64();
        let status = enclave(&["status", "--json"]).output()?;
        let chunks = serde_json::from_slice::<serde_json::Value>(&status.stdout)
            .ok()
            .and_then(|v| total_chunks(&v))
            .unwrap_or(0);
        let mut reports = Vec::new();
        let mut variants = Vec::new();
        for (name, file, tuned) in SETS {
            let path = root.join(file);
            let answers = (headings && args.answers > 0).then_some(args.answers);
            // Answers under the defaults, then with each answer setting changed.
            let what = format!("{config}: {name}");
            let result = eval_set(enclave(&[]), &path, None, answers);
            if let Some(report) = failures.keep(&what, result) {
                reports.push((name, tuned, report));
            }
            if answers.is_some() {
                for (label, var, value) in ANSWER_VARIANTS {
                    let what = format!("{config}: {name}, {label}");
                    let result = eval_set(enclave(&[]), &path, Some((var, value)), answers);
                    if let Some(report) = failures.keep(&what, result) {
                        variants.extend(report.answers.map(|a| (label, name, a)));
                    }
                }
            }
        }
        runs.push(Run {
            config: config.to_string(),
            ingest_s,
            chunks,
            reports,
            variants,
        });
        if !headings {
            continue;
        }
        // Retrieval only, every set, with one setting changed by its environment variable.
        let retrieval_run = |label: &str, var: &str, value: &str, failures: &mut Failures| {
            let mut reports = Vec::new();
            for (name, file, tuned) in SETS {
                let mut eval = enclave(&["eval", "--json", "--collection", "eval", "--set"]);
                eval.arg(root.join(file)).env(var, value);
                let result = eval_report(eval, None);
                if let Some(report) = failures.keep(&format!("{label}: {name}"), result) {
                    reports.push((name, tuned, report));
                }
            }
            Run {
                config: label.to_string(),
                ingest_s,
                chunks,
                reports,
                variants: Vec::new(),
            }
        };
        runs.push(retrieval_run(
            &format!("{config}, sentence ranking off"),
            "ENCLAVE_RETRIEVAL__SENTENCE_WEIGHT",
            "0",
            &mut failures,
        ));
        // The fusion weights calibrated from the collection itself, then retrieval again.
        eprintln!("{config}: calibrating the fusion weights");
        let calibrate = enclave(&["calibrate", "--collection", "eval", "--json"]);
        let c: Calibrated = match json_output(calibrate, "calibrate") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{config}: calibration FAILED: {e:#}");
                failures.0.push(format!("{config}: calibration: {e:#}"));
                continue;
            }
        };
        let mut reports = Vec::new();
        for (name, file, tuned) in SETS {
            let what = format!("{config}, fusion calibrated: {name}");
            let result = eval_set(enclave(&[]), &root.join(file), None, None);
            if let Some(report) = failures.keep(&what, result) {
                reports.push((name, tuned, report));
            }
        }
        runs.push(Run {
            config: format!(
                "{config}, fusion calibrated ({:.2} · {:.2})",
                c.calibration.chosen.dense_weight, c.calibration.chosen.bm25_weight
            ),
            ingest_s,
            chunks,
            reports,
            variants: Vec::new(),
        });
        calibrated = Some(c);
        // Query expansion by the model (calibrated weights kept), retrieval only.
        runs.push(retrieval_run(
            &format!("{config}, fusion calibrated, query expansion"),
            "ENCLAVE_GENERATION__EXPAND_QUERY",
            "true",
            &mut failures,
        ));
    }
    print_retrieval(&runs);
    if let Some(c) = calibrated {
        println!(
            "Fusion calibration: {} questions written by the model from the collection's \
             passages in {:.0} s; nDCG@10 on them {:.3} at the configured weights, {:.3} at the \
             chosen ones.",
            c.calibration.queries,
            c.took_ms / 1000.0,
            c.calibration.configured_ndcg,
            c.calibration.chosen_ndcg
        );
        println!();
    }
    print_unmatched(&runs);
    print_answers(&runs);
    if failures.0.is_empty() {
        return Ok(());
    }
    println!("### Evals that failed (their rows are missing above)");
    println!();
    for failure in &failures.0 {
        println!("- {failure}");
    }
    bail!("{} evals failed", failures.0.len())
}

/// The sum of `chunks` over the collections `enclave status --json` lists.
fn total_chunks(status: &serde_json::Value) -> Option<usize> {
    let collections = status.get("collections")?.as_array()?;
    Some(
        collections
            .iter()
            .filter_map(|c| c.get("chunks"))
            .filter_map(serde_json::Value::as_u64)
            .sum::<u64>() as usize,
    )
}

fn print_retrieval(runs: &[Run]) {
    println!("### Retrieval (top 10 of the one collection holding every set's documents)");
    println!();
    println!(
        "| set | tuned on | configuration | dense R@5 · nDCG@10 | BM25 R@5 · nDCG@10 | hybrid R@5 · nDCG@10 | unanswerable refused by retrieval | answerable wrongly refused | hybrid search (p50) | expansion before search (p50) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, _, tuned) in SETS {
        for run in runs {
            let Some((_, _, report)) = run.reports.iter().find(|(n, _, _)| *n == name) else {
                continue;
            };
            let cell = |mode: &str| {
                report
                    .retrieval
                    .iter()
                    .find(|r| r.mode == mode)
                    .map_or("-".into(), |r| {
                        format!("{:.3} · {:.3}", r.recall_at_5, r.ndcg_at_10)
                    })
            };
            let hybrid = report.retrieval.iter().find(|r| r.mode == "hybrid");
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if tuned { "yes" } else { "no (held out)" },
                run.config,
                cell("dense"),
                cell("bm25"),
                cell("hybrid"),
                hybrid.map_or("-".into(), |h| format!(
                    "{:.2} of {}",
                    h.refusal_accuracy, h.unanswerable
                )),
                hybrid.map_or("-".into(), |h| format!(
                    "{} of {}",
                    h.false_refusals, h.answerable
                )),
                hybrid.map_or("-".into(), |h| format!("{:.0} ms", h.latency_p50_ms)),
                if report.expand_ms_p50 > 0.0 {
                    format!("{:.1} s", report.expand_ms_p50 / 1000.0)
                } else {
                    "-".into()
                },
            );
        }
    }
    println!();
    // The runs of an ingest-time configuration; the others searched the same collection.
    for run in runs.iter().filter(|r| !r.config.contains(',')) {
        println!(
            "Ingest, {}: {:.0} s for {} chunks.",
            run.config, run.ingest_s, run.chunks
        );
    }
    println!();
}

/// The refusal lever `retrieval.refuse_unmatched`: refusals by retrieval at each value,
/// hybrid, first configuration.
fn print_unmatched(runs: &[Run]) {
    let Some(run) = runs.first() else {
        return;
    };
    println!(
        "### Refusal when words of the question occur in no passage ({})",
        run.config
    );
    println!();
    println!(
        "| set | tuned on | refuse_unmatched | unanswerable refused | answerable wrongly refused |"
    );
    println!("|---|---|---|---|---|");
    for (name, _, tuned) in SETS {
        let Some(hybrid) = run
            .reports
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, _, r)| r.retrieval.iter().find(|m| m.mode == "hybrid"))
        else {
            continue;
        };
        for row in &hybrid.unmatched_rule {
            println!(
                "| {name} | {} | {} | {} of {} | {} of {} |",
                if tuned { "yes" } else { "no (held out)" },
                if row.names_together {
                    format!("{} + names together", row.refuse_unmatched)
                } else {
                    row.refuse_unmatched.clone()
                },
                row.refused,
                hybrid.unanswerable,
                row.false_refusals,
                hybrid.answerable
            );
        }
    }
    println!();
}

fn print_answers(runs: &[Run]) {
    let rows: Vec<(&str, bool, &str, &Answers)> = runs
        .iter()
        .flat_map(|run| {
            run.reports.iter().flat_map(|(n, t, r)| {
                let variants = run
                    .variants
                    .iter()
                    .filter(move |(_, m, _)| m == n)
                    .map(move |(label, _, a)| (*n, *t, *label, a));
                r.answers
                    .as_ref()
                    .map(|a| (*n, *t, "defaults", a))
                    .into_iter()
                    .chain(variants)
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    println!("### Answers (default model, headings on, hybrid retrieval)");
    println!();
    println!(
        "| set | tuned on | answer settings | unanswerable refused (of which by the model) | answerable wrongly refused (by the model) | answerable answered \"not in the documents\" | cited passage holds the answer text: attributed · markers as the model wrote them (a given one does) | cites a passage on an expected page | markers whose passage holds half of their sentence's word pairs | citations resolving to a given passage | first token p50 · p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let frac = |n: usize, d: usize| {
        if d == 0 {
            "n/a".to_string()
        } else {
            format!("{:.2} ({n}/{d})", n as f64 / d as f64)
        }
    };
    for (name, tuned, label, a) in rows {
        println!(
            "| {name} | {} | {label} | {} ({}) | {} ({}) | {} | {} · {} ({}) | {} | {} | {} | {:.1} s · {:.1} s |",
            if tuned { "yes" } else { "no (held out)" },
            frac(a.refused, a.unanswerable),
            a.refused_by_model,
            frac(a.false_refusals, a.answerable),
            a.false_refusals_by_model,
            frac(a.said_not_found, a.answerable),
            frac(a.cited_passage_holds_answer, a.answerable),
            frac(a.cited_as_written_holds_answer, a.answerable),
            frac(a.given_passage_holds_answer, a.answerable),
            frac(a.cited_gold_page, a.answerable),
            frac(a.supported_citations, a.judged_citations),
            frac(a.citations, a.citations + a.removed_citations),
            percentile(&a.ttft_ms, 50.0) / 1000.0,
            percentile(&a.ttft_ms, 95.0) / 1000.0,
        );
    }
    println!();
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize - 1]
}
