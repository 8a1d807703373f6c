//! Ingest benchmark: a program (not a timed test) that measures, in one run on the same sample
//! of real PDFs, the three costs of `enclave ingest` and prints them as Markdown tables.
//!
//! 1. **Parse**: pages/s of Enclave's PDF path, `parse::pdf::extract_isolated` with the real
//!    `enclave extract-pdf` child (the product path, process start and JSON framing included),
//!    beside `pdftotext -layout FILE -` (poppler) and pdf-extract in this process
//!    (`extract_in_process`, which shows what the child process costs). One file at a time,
//!    the three extractors interleaved per file; pages counted by `pdfinfo`.
//! 2. **Embedding**: chunks/s and tokens/s of `OnnxEmbedder` over real chunks of the extracted
//!    text (the default `Chunker`: 200 tokens, 32 overlap; inputs prefixed with the title as the
//!    pipeline does), for several `embedding.batch_size` values.
//! 3. **End to end**: the real CLI, `enclave ingest --json DIR`, as a child process on a fresh
//!    data directory (embedded SQLite + qdrant-edge), then a second time on the same data
//!    directory (every file unchanged). CPU time and peak RSS are `getrusage(RUSAGE_CHILDREN)`
//!    of a small helper process whose only child is `enclave ingest`: they include the
//!    `extract-pdf` grandchildren, and the peak is that of the largest single process (see
//!    [`run_measured`] for why a helper).
//!
//! Run (release profile; models from `scripts/fetch-models`, corpus in ~/.cache/enclave/corpus):
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! cargo bench --bench ingest                              # defaults: about 5 min on 2 cores
//! cargo bench --bench ingest -- --files 8 --e2e-files 3   # a quick run
//! ENCLAVE_BENCH_FILES=80 ENCLAVE_BENCH_CHUNKS=1024 cargo bench --bench ingest
//! cargo bench --bench ingest -- --help
//! ```
//!
//! Every flag has an environment variable (`ENCLAVE_BENCH_*`, see `--help`):
//!
//! - `ENCLAVE_BENCH_CORPUS` (`--corpus`): folder of PDFs. Default `$ENCLAVE_CORPUS_DIR`, else
//!   `~/.cache/enclave/corpus`.
//! - `ENCLAVE_BENCH_FILES` (`--files`, 40) and `ENCLAVE_BENCH_OFFSET` (`--offset`, 4): the parse
//!   sample is every Nth PDF in file-name order, N = ceil(PDFs / files), starting at the
//!   `offset`-th (0-based). On the Debian corpus the defaults give 40 PDFs and 1,569 pages,
//!   without the two 2,415-page R reference manuals that would be most of the pages of any
//!   sample holding one.
//! - `ENCLAVE_BENCH_E2E_FILES` (`--e2e-files`, 10): the end-to-end sample is the last file of
//!   every group of ceil(sample / e2e-files) files of the parse sample (300 pages by default).
//! - `ENCLAVE_BENCH_CHUNKS` (`--chunks`, 512): chunks embedded per batch size, spread evenly
//!   over all the chunks of the parse sample.
//! - `ENCLAVE_BENCH_BATCH_SIZES` (`--batch-sizes`, `8,32,64`).
//! - `ENCLAVE_BENCH_EMBED_THREADS` (`--embed-threads`, `0`): ONNX Runtime intra-op threads to
//!   compare, e.g. `0,1` (0: all cores, the default); each runs every batch size.
//! - `ENCLAVE_BENCH_PDFTOTEXT_RAW` (`--pdftotext-raw`): run `pdftotext -raw` instead of `-layout`.
//! - `ENCLAVE_BENCH_NO_IN_PROCESS` (`--no-in-process`), `ENCLAVE_BENCH_NO_EMBED`
//!   (`--no-embed`), `ENCLAVE_BENCH_NO_E2E` (`--no-e2e`): skip a measurement.
//! - `ENCLAVE_BENCH_PER_FILE` (`--per-file`): also print a row per file of the parse sample.
//!
//! Everything else is Enclave's built-in defaults (the embedded mode), on both sides: models
//! from `$ENCLAVE_MODELS_DIR` or `~/.cache/enclave/models`, ONNX Runtime from `ORT_DYLIB_PATH` or
//! the models folder. The `enclave ingest` child runs in an empty folder (no `enclave.toml`) with
//! `ENCLAVE_DATA_DIR` set to a fresh temporary folder; of the other `ENCLAVE_*` variables it only
//! gets `ENCLAVE_MODELS_DIR` and nested settings, which the report lists: for example
//! `ENCLAVE_EMBEDDING__BATCH_SIZE=8` or `ENCLAVE_INGEST__PARALLEL_DOCUMENTS=1` change the
//! end-to-end run (only). Timings are wall-clock on a machine that may be shared: the load
//! average before and after is printed with the results.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use enclave_embed::{Embedder, OnnxEmbedder, OnnxEmbedderConfig};
use enclave_ingest::Chunker;
use enclave_ingest::parse::pdf::{PdfIsolation, extract_in_process, extract_isolated};
use enclave_ingest::parse::{ParseError, ParsedDocument};
use enclave_settings::Settings;

/// The Enclave binary built with this bench; `enclave extract-pdf` is its PDF child.
const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");

/// Ingest benchmark: PDF extraction, embedding and end-to-end ingest on a sample of the corpus.
#[derive(Debug, Parser)]
#[command(name = "ingest-bench")]
struct Args {
    /// Folder of PDFs (default: $ENCLAVE_CORPUS_DIR, else ~/.cache/enclave/corpus).
    #[arg(long, env = "ENCLAVE_BENCH_CORPUS", value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// PDFs in the parse sample: every Nth PDF, N = ceil(PDFs / files).
    #[arg(long, env = "ENCLAVE_BENCH_FILES", default_value_t = 40)]
    files: usize,
    /// Index (0-based, file-name order) of the first PDF of the sample.
    #[arg(long, env = "ENCLAVE_BENCH_OFFSET", default_value_t = 4)]
    offset: usize,
    /// PDFs of the parse sample that the end-to-end ingest takes (evenly spread).
    #[arg(long, env = "ENCLAVE_BENCH_E2E_FILES", default_value_t = 10)]
    e2e_files: usize,
    /// Chunks embedded per batch size.
    #[arg(long, env = "ENCLAVE_BENCH_CHUNKS", default_value_t = 512)]
    chunks: usize,
    /// Embedding batch sizes to compare (`embedding.batch_size`).
    #[arg(
        long,
        env = "ENCLAVE_BENCH_BATCH_SIZES",
        value_delimiter = ',',
        default_values_t = [8, 32, 64]
    )]
    batch_sizes: Vec<usize>,
    /// ONNX Runtime intra-op threads to compare (`embedding.threads`; 0 = all cores, the
    /// default). Every batch size runs with every value.
    #[arg(
        long,
        env = "ENCLAVE_BENCH_EMBED_THREADS",
        value_delimiter = ',',
        default_values_t = [0]
    )]
    embed_threads: Vec<usize>,
    /// Run `pdftotext -raw` instead of `pdftotext -layout`.
    #[arg(long, env = "ENCLAVE_BENCH_PDFTOTEXT_RAW")]
    pdftotext_raw: bool,
    /// Skip pdf-extract in this process.
    #[arg(long, env = "ENCLAVE_BENCH_NO_IN_PROCESS")]
    no_in_process: bool,
    /// Skip the embedding measurement.
    #[arg(long, env = "ENCLAVE_BENCH_NO_EMBED")]
    no_embed: bool,
    /// Skip the end-to-end ingest.
    #[arg(long, env = "ENCLAVE_BENCH_NO_E2E")]
    no_e2e: bool,
    /// Also print one row per file of the parse sample.
    #[arg(long, env = "ENCLAVE_BENCH_PER_FILE")]
    per_file: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == MEASURE_ARG) {
        std::process::exit(measure_main(&argv[2..]));
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = Settings::default();
    if let Some(dir) = std::env::var_os("ENCLAVE_MODELS_DIR") {
        settings.models_dir = PathBuf::from(dir);
    }
    let corpus = args.corpus.clone().unwrap_or_else(default_corpus);
    let all = list_pdfs(&corpus)?;
    let (sample, stride) = every_nth(&all, args.files, args.offset);
    if sample.is_empty() {
        bail!(
            "no PDF selected from {} ({} PDFs, offset {})",
            corpus.display(),
            all.len(),
            args.offset
        );
    }
    let have_pdfinfo = tool_works("pdfinfo");
    let pdftotext_version = tool_version("pdftotext");
    let load_before = load_average();

    // Page counts first (this also brings the files into the page cache).
    let mut files = Vec::with_capacity(sample.len());
    for path in &sample {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let pages = if have_pdfinfo {
            pdfinfo_pages(path)
        } else {
            None
        };
        files.push(SampleFile {
            path: path.clone(),
            name: file_name(path),
            bytes,
            pdfinfo_pages: pages,
        });
    }

    eprintln!(
        "parse: {} PDFs, three extractors each, one file at a time",
        files.len()
    );
    let parse = parse_phase(&files, &args, &settings, pdftotext_version.is_some()).await;

    let embed = if args.no_embed {
        None
    } else {
        eprintln!("embedding: chunking, then {:?}", args.batch_sizes);
        Some(embed_phase(&files, &parse, &args, &settings).await?)
    };

    let e2e_sample = spread(&files, args.e2e_files);
    let e2e = if args.no_e2e || e2e_sample.is_empty() {
        None
    } else {
        eprintln!("end to end: {} PDFs, two passes", e2e_sample.len());
        Some(e2e_phase(&e2e_sample)?)
    };
    let load_after = load_average();

    // Report.
    let mut out = String::new();
    let _ = writeln!(out, "# Enclave ingest benchmark\n");
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(
        out,
        "- load average (1 min) before / after: {} / {}",
        load_before.as_deref().unwrap_or("?"),
        load_after.as_deref().unwrap_or("?")
    );
    let total_pages: usize = files.iter().map(|f| f.pages(&parse)).sum();
    let total_bytes: usize = files.iter().map(|f| f.bytes.len()).sum();
    let _ = writeln!(out, "- corpus: {} ({} PDFs)", corpus.display(), all.len());
    let _ = writeln!(
        out,
        "- parse sample: {} PDFs (every {}th from #{}), {} pages ({}), {:.1} MiB",
        files.len(),
        stride,
        args.offset,
        total_pages,
        if have_pdfinfo {
            "pdfinfo"
        } else {
            "the extractor's page count"
        },
        total_bytes as f64 / 1048576.0
    );
    if let Some(e) = &embed {
        let _ = writeln!(
            out,
            "- embedding sample: {} of the {} chunks of the {} extracted documents ({} / overlap {} tokens), model {}",
            e.inputs,
            e.total_chunks,
            e.documents,
            settings.chunking.max_tokens,
            settings.chunking.overlap_tokens,
            settings.embedding_model_dir().display()
        );
    }
    if e2e.is_some() {
        let pages: usize = e2e_sample.iter().map(|f| f.pages(&parse)).sum();
        let _ = writeln!(
            out,
            "- end-to-end sample: {} PDFs of the parse sample, {} pages",
            e2e_sample.len(),
            pages
        );
    }
    let _ = writeln!(out, "- enclave: {ENCLAVE}");
    let _ = writeln!(
        out,
        "- pdftotext: {}",
        pdftotext_version.as_deref().unwrap_or("not found")
    );
    out.push('\n');
    report_parse(&mut out, &files, &parse, &args);
    if let Some(e) = &embed {
        report_embed(&mut out, e, &settings);
    }
    if let Some(e) = &e2e {
        report_e2e(&mut out, e, &e2e_sample, &parse, embed.as_ref(), &settings);
    }
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sample

struct SampleFile {
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
    pdfinfo_pages: Option<usize>,
}

impl SampleFile {
    /// Pages by pdfinfo, else by whichever extractor read the file.
    fn pages(&self, parse: &ParseResults) -> usize {
        self.pdfinfo_pages
            .or_else(|| {
                let r = parse.by_file.get(&self.name)?;
                r.enclave
                    .pages
                    .or(r.in_process.as_ref().and_then(|m| m.pages))
            })
            .unwrap_or(0)
    }
}

fn default_corpus() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENCLAVE_CORPUS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| OsString::from(".")))
                .join(".cache")
        });
    cache.join("enclave/corpus")
}

/// The PDFs directly in `dir`, in file-name order.
fn list_pdfs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the corpus folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")))
        .collect();
    pdfs.sort_by_key(|p| p.file_name().map(OsString::from));
    Ok(pdfs)
}

/// Every Nth item from `offset`, N = ceil(len / count), at most `count` items; returns N too.
fn every_nth<T: Clone>(items: &[T], count: usize, offset: usize) -> (Vec<T>, usize) {
    let count = count.max(1);
    let stride = items.len().div_ceil(count).max(1);
    let picked = items
        .iter()
        .skip(offset)
        .step_by(stride)
        .take(count)
        .cloned()
        .collect();
    (picked, stride)
}

/// `count` items spread over `items`: the last of every group of ceil(len / count).
fn spread<T>(items: &[T], count: usize) -> Vec<&T> {
    if count == 0 || items.is_empty() {
        return Vec::new();
    }
    let group = items.len().div_ceil(count).max(1);
    items.iter().skip(group - 1).step_by(group).collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Parse

/// One extractor on one file.
#[derive(Debug, Clone, Default)]
struct Measure {
    wall: Duration,
    /// User + system CPU of this process and of the children it reaped during the call.
    cpu: Duration,
    /// Pages the extractor returned (None when it failed).
    pages: Option<usize>,
    chars: usize,
    /// Pages the extractor could not read inside an otherwise extracted PDF.
    failed_pages: usize,
    error: Option<String>,
}

impl Measure {
    fn ok(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Debug, Default)]
struct FileResults {
    enclave: Measure,
    /// None when skipped (the child crashed or timed out, which could take this process down).
    in_process: Option<Measure>,
    pdftotext: Option<Measure>,
}

struct ParseResults {
    by_file: BTreeMap<String, FileResults>,
    /// The documents the product path extracted, for the embedding phase.
    documents: Vec<(String, ParsedDocument)>,
}

async fn parse_phase(
    files: &[SampleFile],
    args: &Args,
    settings: &Settings,
    have_pdftotext: bool,
) -> ParseResults {
    let iso = PdfIsolation {
        program: PathBuf::from(ENCLAVE),
        args: vec!["extract-pdf".into()],
        timeout: Duration::from_secs(settings.ingest.pdf_timeout_secs),
        memory_mb: 0,
    };
    let mut by_file = BTreeMap::new();
    let mut documents = Vec::new();
    for (i, f) in files.iter().enumerate() {
        eprint!("  [{}/{}] {} ...", i + 1, files.len(), f.name);
        let cpu = CpuClock::start();
        let started = Instant::now();
        let result = extract_isolated(&f.bytes, &iso).await;
        let enclave = measure_parse(started.elapsed(), cpu.elapsed(), &result);
        eprint!(" enclave {:.2}s", enclave.wall.as_secs_f64());

        // A crash or time-out of the child could be an abort or an endless loop here.
        let risky = matches!(result, Err(ParseError::Crashed(_) | ParseError::Timeout(_)));
        let in_process = if args.no_in_process || risky {
            None
        } else {
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let cpu = CpuClock::start();
            let started = Instant::now();
            let r = extract_in_process(&f.bytes);
            let m = measure_parse(started.elapsed(), cpu.elapsed(), &r);
            std::panic::set_hook(hook);
            eprint!(", in-process {:.2}s", m.wall.as_secs_f64());
            Some(m)
        };

        let pdftotext = have_pdftotext.then(|| {
            let m = run_pdftotext(&f.path, args.pdftotext_raw);
            eprint!(", pdftotext {:.2}s", m.wall.as_secs_f64());
            m
        });
        eprintln!();
        if let Ok(doc) = result {
            documents.push((f.name.clone(), doc));
        }
        by_file.insert(
            f.name.clone(),
            FileResults {
                enclave,
                in_process,
                pdftotext,
            },
        );
    }
    ParseResults { by_file, documents }
}

fn measure_parse(
    wall: Duration,
    cpu: Duration,
    result: &Result<ParsedDocument, ParseError>,
) -> Measure {
    match result {
        Ok(doc) => Measure {
            wall,
            cpu,
            pages: Some(doc.pages.len()),
            chars: doc.pages.iter().map(|p| non_space(p)).sum(),
            failed_pages: doc
                .metadata
                .get("failed_pages")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len),
            error: None,
        },
        Err(e) => Measure {
            wall,
            cpu,
            error: Some(e.to_string()),
            ..Measure::default()
        },
    }
}

fn run_pdftotext(path: &Path, raw: bool) -> Measure {
    let cpu = CpuClock::start();
    let started = Instant::now();
    let output = Command::new("pdftotext")
        .arg(if raw { "-raw" } else { "-layout" })
        .arg(path)
        .arg("-")
        .stdin(Stdio::null())
        .output();
    let wall = started.elapsed();
    let cpu = cpu.elapsed();
    match output {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            Measure {
                wall,
                cpu,
                // pdftotext ends every page with a form feed.
                pages: Some(text.matches('\u{c}').count()),
                chars: non_space(&text),
                failed_pages: 0,
                error: None,
            }
        }
        Ok(o) => Measure {
            wall,
            cpu,
            error: Some(format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            ..Measure::default()
        },
        Err(e) => Measure {
            wall,
            cpu,
            error: Some(e.to_string()),
            ..Measure::default()
        },
    }
}

/// Totals of one extractor over the sample.
#[derive(Default)]
struct Totals {
    files: usize,
    ok: usize,
    pages_ok: usize,
    chars: usize,
    failed_pages: usize,
    wall: Duration,
    cpu: Duration,
}

impl Totals {
    fn add(&mut self, m: &Measure, pages: usize) {
        self.files += 1;
        self.wall += m.wall;
        self.cpu += m.cpu;
        if m.ok() {
            self.ok += 1;
            self.pages_ok += pages;
            self.chars += m.chars;
            self.failed_pages += m.failed_pages;
        }
    }

    /// Pages of the files it extracted per second of all its time (failures included).
    fn pages_per_s(&self) -> f64 {
        per_s(self.pages_ok as f64, self.wall)
    }
}

fn per_s(n: f64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n / s } else { 0.0 }
}

fn report_parse(out: &mut String, files: &[SampleFile], parse: &ParseResults, args: &Args) {
    let pdftotext_name = if args.pdftotext_raw {
        "`pdftotext -raw`"
    } else {
        "`pdftotext -layout`"
    };
    let mut enclave = Totals::default();
    let mut in_process = Totals::default();
    let mut pdftotext = Totals::default();
    let mut skipped_in_process = 0;
    // Files every tool that ran extracted, for a like-for-like comparison.
    let mut common = (0usize, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for f in files {
        let r = &parse.by_file[&f.name];
        let pages = f.pages(parse);
        enclave.add(&r.enclave, pages);
        match &r.in_process {
            Some(m) => in_process.add(m, pages),
            None if !args.no_in_process => skipped_in_process += 1,
            None => {}
        }
        if let Some(m) = &r.pdftotext {
            pdftotext.add(m, pages);
        }
        let both = r.enclave.ok() && r.pdftotext.as_ref().is_some_and(Measure::ok);
        if both {
            common.0 += pages;
            common.1 += r.enclave.wall;
            common.2 += r.pdftotext.as_ref().map_or(Duration::ZERO, |m| m.wall);
            if let Some(m) = &r.in_process {
                common.3 += m.wall;
            }
        }
    }

    let _ = writeln!(out, "## 1. PDF text extraction\n");
    let _ = writeln!(
        out,
        "Sequential, one file at a time, the extractors interleaved per file. pages/s = pdfinfo \
         pages of the files the extractor read / its time over all files (failures included).\n"
    );
    let _ = writeln!(
        out,
        "| extractor | files ok | failed | pages ok | pages with errors | non-space chars | time s | CPU s | pages/s | vs pdftotext |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = pdftotext.pages_per_s();
    let mut row = |name: &str, t: &Totals, failed_note: String| {
        let ratio = if pdftotext.files > 0 && base > 0.0 {
            format!("{:.3}", t.pages_per_s() / base)
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {ratio} |",
            t.ok,
            failed_note,
            t.pages_ok,
            t.failed_pages,
            t.chars,
            t.wall.as_secs_f64(),
            t.cpu.as_secs_f64(),
            t.pages_per_s(),
        );
    };
    row(
        "enclave: `extract_isolated` (extract-pdf child)",
        &enclave,
        (enclave.files - enclave.ok).to_string(),
    );
    if in_process.files > 0 || skipped_in_process > 0 {
        let failed = in_process.files - in_process.ok;
        let note = if skipped_in_process > 0 {
            format!("{failed} (+{skipped_in_process} skipped)")
        } else {
            failed.to_string()
        };
        row(
            "pdf-extract in process (`extract_in_process`)",
            &in_process,
            note,
        );
    }
    if pdftotext.files > 0 {
        row(
            pdftotext_name,
            &pdftotext,
            (pdftotext.files - pdftotext.ok).to_string(),
        );
    }
    out.push('\n');

    if pdftotext.files > 0 && common.0 > 0 {
        let e = per_s(common.0 as f64, common.1);
        let p = per_s(common.0 as f64, common.2);
        let _ = writeln!(
            out,
            "On the files both enclave and pdftotext extracted ({} pages): enclave {:.1} pages/s, \
             pdftotext {:.1} pages/s, ratio enclave/pdftotext **{:.3}** (pdftotext is {:.1}x faster).\n",
            common.0,
            e,
            p,
            e / p,
            p / e
        );
    }
    if in_process.files > 0 {
        // Like for like: the files where both the child and the in-process run happened.
        let (mut iso, mut inp, mut n) = (Duration::ZERO, Duration::ZERO, 0u32);
        for r in parse.by_file.values() {
            if let Some(m) = &r.in_process {
                iso += r.enclave.wall;
                inp += m.wall;
                n += 1;
            }
        }
        let overhead = iso.saturating_sub(inp);
        let _ = writeln!(
            out,
            "Child-process overhead (isolated - in-process, same {n} files): {:.2} s, {:.0} ms per \
             file, {:.1}% of the isolated time.\n",
            overhead.as_secs_f64(),
            overhead.as_secs_f64() * 1000.0 / f64::from(n.max(1)),
            100.0 * overhead.as_secs_f64() / iso.as_secs_f64().max(1e-9)
        );
    }

    // Failures, per extractor.
    let mut failures = Vec::new();
    for f in files {
        let r = &parse.by_file[&f.name];
        let pages = f.pages(parse);
        if let Some(e) = &r.enclave.error {
            failures.push((f.name.clone(), pages, "enclave", e.clone()));
        }
        if let Some(e) = r.in_process.as_ref().and_then(|m| m.error.clone()) {
            failures.push((f.name.clone(), pages, "in process", e));
        }
        if let Some(e) = r.pdftotext.as_ref().and_then(|m| m.error.clone()) {
            failures.push((f.name.clone(), pages, "pdftotext", e));
        }
        if r.enclave.failed_pages > 0 {
            failures.push((
                f.name.clone(),
                pages,
                "enclave",
                format!("{} page(s) unreadable, left empty", r.enclave.failed_pages),
            ));
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "Failures:\n");
        let _ = writeln!(out, "| file | pages | extractor | error |");
        let _ = writeln!(out, "|---|---:|---|---|");
        for (name, pages, tool, error) in &failures {
            let _ = writeln!(out, "| {name} | {pages} | {tool} | {} |", cell(error, 160));
        }
        out.push('\n');
    }

    // Per-file rows: the slowest five for enclave, or all of them.
    let mut rows: Vec<&SampleFile> = files.iter().collect();
    rows.sort_by(|a, b| {
        let ta = parse.by_file[&a.name].enclave.wall;
        let tb = parse.by_file[&b.name].enclave.wall;
        tb.cmp(&ta)
    });
    if !args.per_file {
        rows.truncate(5);
        let _ = writeln!(out, "Slowest files for enclave:\n");
    } else {
        let _ = writeln!(out, "Per file (slowest for enclave first):\n");
    }
    let _ = writeln!(
        out,
        "| file | pages | KiB | enclave s | enclave pages/s | in-process s | pdftotext s | enclave/pdftotext time | enclave/pdftotext non-space chars |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in rows {
        let r = &parse.by_file[&f.name];
        let pages = f.pages(parse);
        let secs = |m: &Measure| {
            if m.ok() {
                format!("{:.2}", m.wall.as_secs_f64())
            } else {
                format!("{:.2} (failed)", m.wall.as_secs_f64())
            }
        };
        let inp = r.in_process.as_ref().map_or("-".to_string(), secs);
        let ptt = r.pdftotext.as_ref().map_or("-".to_string(), secs);
        let (time_ratio, chars_ratio) = match &r.pdftotext {
            Some(p) if p.ok() && r.enclave.ok() && p.chars > 0 => (
                format!(
                    "{:.0}x",
                    r.enclave.wall.as_secs_f64() / p.wall.as_secs_f64().max(1e-6)
                ),
                format!("{:.2}", r.enclave.chars as f64 / p.chars as f64),
            ),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {pages} | {} | {} | {:.1} | {inp} | {ptt} | {time_ratio} | {chars_ratio} |",
            f.name,
            f.bytes.len() / 1024,
            secs(&r.enclave),
            per_s(pages as f64, r.enclave.wall),
        );
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// 2. Embedding

struct EmbedResults {
    documents: usize,
    total_chunks: usize,
    chunk_time: Duration,
    mean_chunk_tokens: f64,
    inputs: usize,
    /// Model tokens of the embedded inputs: title + text, [CLS] and [SEP], truncated at the
    /// model's limit.
    input_tokens: usize,
    truncated: usize,
    rows: Vec<EmbedRow>,
}

struct EmbedRow {
    batch_size: usize,
    /// ONNX Runtime intra-op threads; None: all cores.
    threads: Option<usize>,
    load: Duration,
    wall: Duration,
    cpu: Duration,
}

async fn embed_phase(
    files: &[SampleFile],
    parse: &ParseResults,
    args: &Args,
    settings: &Settings,
) -> anyhow::Result<EmbedResults> {
    let model_dir = settings.embedding_model_dir();
    let tokenizer = Arc::new(OnnxEmbedder::tokenizer_from(&model_dir)?);
    let chunker = Chunker::new(
        Arc::clone(&tokenizer),
        settings.chunking.max_tokens,
        settings.chunking.overlap_tokens,
    )?;

    // Chunk every extracted document, as the pipeline does (title prefix included).
    let started = Instant::now();
    let mut all = Vec::new();
    let mut token_sum = 0usize;
    for (name, doc) in &parse.documents {
        let title = doc
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| name.clone());
        for c in chunker.chunk(doc) {
            token_sum += c.token_count;
            let input = match &c.section {
                Some(s) if s != &title => format!("{title}\n{s}\n{}", c.text),
                _ => format!("{title}\n{}", c.text),
            };
            all.push(input);
        }
    }
    let chunk_time = started.elapsed();
    let total_chunks = all.len();
    if total_chunks == 0 {
        bail!(
            "no chunks: no PDF of the sample ({} files) was extracted",
            files.len()
        );
    }
    let n = args.chunks.clamp(1, total_chunks);
    let inputs: Vec<String> = (0..n).map(|i| all[i * total_chunks / n].clone()).collect();
    let max_input = settings.embedding.max_input_tokens;
    let mut input_tokens = 0;
    let mut truncated = 0;
    for t in &inputs {
        let n = tokenizer
            .encode_fast(t.as_str(), false)
            .map_or(0, |e| e.get_ids().len())
            + 2;
        if n > max_input {
            truncated += 1;
        }
        input_tokens += n.min(max_input);
    }

    let mut rows = Vec::new();
    for &threads in &args.embed_threads {
        for &batch_size in &args.batch_sizes {
            let batch_size = batch_size.max(1);
            let threads = (threads > 0).then_some(threads);
            eprintln!("  batch size {batch_size}, threads {threads:?}");
            let config = OnnxEmbedderConfig {
                model_dir: model_dir.clone(),
                onnxruntime: settings.onnxruntime_path(),
                max_input_tokens: max_input,
                batch_size,
                threads: threads.or(settings.embedding.threads),
            };
            let started = Instant::now();
            let embedder = OnnxEmbedder::start(config).await?;
            let load = started.elapsed();
            // Warm-up: one batch, so that the first inference's allocations are not timed.
            embedder
                .embed(inputs.iter().take(batch_size).cloned().collect())
                .await?;
            let cpu = CpuClock::start();
            let started = Instant::now();
            let mut vectors = 0;
            // Calls of 4 batches, as the pipeline makes them.
            for call in inputs.chunks(batch_size * 4) {
                vectors += embedder.embed(call.to_vec()).await?.len();
            }
            let wall = started.elapsed();
            let cpu = cpu.elapsed();
            anyhow::ensure!(
                vectors == inputs.len(),
                "{vectors} vectors for {} texts",
                inputs.len()
            );
            rows.push(EmbedRow {
                batch_size,
                threads,
                load,
                wall,
                cpu,
            });
        }
    }
    Ok(EmbedResults {
        documents: parse.documents.len(),
        total_chunks,
        chunk_time,
        mean_chunk_tokens: token_sum as f64 / total_chunks as f64,
        inputs: inputs.len(),
        input_tokens,
        truncated,
        rows,
    })
}

fn report_embed(out: &mut String, e: &EmbedResults, settings: &Settings) {
    let _ = writeln!(out, "## 2. Embedding\n");
    let _ = writeln!(
        out,
        "Chunking: {} chunks from {} documents in {:.2} s ({:.0} chunks/s), {:.1} tokens per \
         chunk on average (word pieces, as the chunker counts them).\n",
        e.total_chunks,
        e.documents,
        e.chunk_time.as_secs_f64(),
        per_s(e.total_chunks as f64, e.chunk_time),
        e.mean_chunk_tokens
    );
    let _ = writeln!(
        out,
        "Embedded: {} chunks spread over all of them, as the pipeline sends them (title + text, \
         calls of 4 batches): {:.1} model tokens per input with [CLS]/[SEP] ({} truncated at {}). \
         One warm-up batch before timing. tokens/s counts those model tokens; CPU s is the \
         process's user + system time while embedding.\n",
        e.inputs,
        e.input_tokens as f64 / e.inputs as f64,
        e.truncated,
        settings.embedding.max_input_tokens,
    );
    let _ = writeln!(
        out,
        "| batch size | ORT threads | chunks | time s | CPU s | chunks/s | tokens/s | ms per chunk | model load s |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &e.rows {
        let default = if r.batch_size == settings.embedding.batch_size {
            " (default)"
        } else {
            ""
        };
        let threads = r
            .threads
            .map_or_else(|| "all cores".to_string(), |t| t.to_string());
        let _ = writeln!(
            out,
            "| {}{default} | {threads} | {} | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} | {:.2} |",
            r.batch_size,
            e.inputs,
            r.wall.as_secs_f64(),
            r.cpu.as_secs_f64(),
            per_s(e.inputs as f64, r.wall),
            per_s(e.input_tokens as f64, r.wall),
            r.wall.as_secs_f64() * 1000.0 / e.inputs as f64,
            r.load.as_secs_f64()
        );
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// 3. End to end

struct E2eResults {
    /// Nested settings variables passed to the child.
    passed_env: Vec<String>,
    passes: Vec<E2ePass>,
}

struct E2ePass {
    name: &'static str,
    summary: serde_json::Value,
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

fn e2e_phase(sample: &[&SampleFile]) -> anyhow::Result<E2eResults> {
    let tmp = tempfile::Builder::new()
        .prefix("enclave-bench-")
        .tempdir()?;
    let docs = tmp.path().join("docs");
    let data = tmp.path().join("data");
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&docs)?;
    std::fs::create_dir_all(&cwd)?;
    for f in sample {
        let target = std::path::absolute(&f.path)?;
        std::os::unix::fs::symlink(&target, docs.join(&f.name))?;
    }
    // Only settings variables reach the child: ENCLAVE_BENCH_*, ENCLAVE_CORPUS_DIR or
    // ENCLAVE_LOG would be unknown settings keys to it.
    let passed_env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("ENCLAVE_") && (k == "ENCLAVE_MODELS_DIR" || k.contains("__")))
        .collect();
    let mut passes = Vec::new();
    for name in ["first (fresh data dir)", "second (unchanged)"] {
        eprintln!("  {name}");
        let mut cmd = Command::new(ENCLAVE);
        cmd.arg("ingest").arg("--json").arg(&docs).current_dir(&cwd);
        for (k, _) in std::env::vars_os() {
            let keep = k
                .to_str()
                .is_some_and(|k| passed_env.iter().any(|p| p == k));
            if k.to_string_lossy().starts_with("ENCLAVE_") && !keep {
                cmd.env_remove(&k);
            }
        }
        cmd.env("ENCLAVE_DATA_DIR", &data);
        let run = run_measured(&cmd)?;
        if !run.success {
            bail!(
                "enclave ingest failed ({}):\n{}",
                run.status,
                String::from_utf8_lossy(&run.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&run.stdout);
        let json = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .context("no JSON summary from enclave ingest")?;
        let summary: serde_json::Value =
            serde_json::from_str(json).context("reading the JSON summary of enclave ingest")?;
        passes.push(E2ePass {
            name,
            summary,
            wall: run.wall,
            cpu: run.cpu,
            max_rss_kib: run.max_rss_kib,
        });
    }
    Ok(E2eResults { passed_env, passes })
}

struct Measured {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

/// First argument of this program when it runs as the measuring helper of [`run_measured`].
const MEASURE_ARG: &str = "__measure-child";
/// Precedes the helper's report, the last line of its stdout.
const MEASURE_MARKER: &str = "--enclave-bench-rusage--";

/// Runs `cmd` to its end and measures it with `getrusage(RUSAGE_CHILDREN)`, in a helper
/// process (this program re-executed) whose only child is `cmd`. RUSAGE_CHILDREN covers the
/// children a process has waited for and, through them, their own reaped children, so it
/// includes the extract-pdf grandchildren of `enclave ingest`; its `ru_maxrss` is the peak RSS
/// of the largest single process of that tree (KiB). The helper is needed twice over: in this
/// process RUSAGE_CHILDREN would also carry the earlier pdftotext and extract-pdf children, and
/// Linux starts a spawned child's `ru_maxrss` at its parent's own peak RSS (the parent's memory
/// is accounted when the child execs), which for this process is the size of the models and
/// documents it loaded, over a gigabyte. The helper is a fresh, small process.
fn run_measured(cmd: &Command) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let mut helper = Command::new(exe);
    helper
        .arg(MEASURE_ARG)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        helper.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => helper.env(k, v),
            None => helper.env_remove(k),
        };
    }
    let started = Instant::now();
    let output = helper
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (child_stdout, report) = stdout
        .rsplit_once(MEASURE_MARKER)
        .with_context(|| format!("no report from the measuring helper ({})", output.status))?;
    let fields: Vec<&str> = report.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<i64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("bad helper report {report:?}"))
    };
    let (max_rss_kib, cpu_us, code) = (field(0)?, field(1)?, field(2)?);
    Ok(Measured {
        success: code == 0,
        status: if code >= 128 {
            format!("signal {}", code - 128)
        } else {
            format!("exit status {code}")
        },
        stdout: child_stdout.as_bytes().to_vec(),
        stderr: output.stderr,
        wall,
        cpu: Duration::from_micros(u64::try_from(cpu_us).unwrap_or(0)),
        max_rss_kib,
    })
}

/// The helper: runs `argv` with this process's stdio, then prints the marker, the peak RSS
/// (KiB) and CPU time (µs) of its reaped children, and the child's exit code (128 + signal).
fn measure_main(argv: &[OsString]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("{MEASURE_ARG}: no command");
        return 2;
    };
    let code = match Command::new(program).args(args).status() {
        Ok(status) => status
            .code()
            .or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                status.signal().map(|s| 128 + s)
            })
            .unwrap_or(255),
        Err(e) => {
            eprintln!(
                "{MEASURE_ARG}: cannot start {}: {e}",
                program.to_string_lossy()
            );
            127
        }
    };
    // SAFETY: rusage is plain old data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    println!(
        "\n{MEASURE_MARKER} {} {} {code}",
        usage.ru_maxrss,
        cpu.as_micros()
    );
    0
}

fn report_e2e(
    out: &mut String,
    e: &E2eResults,
    sample: &[&SampleFile],
    parse: &ParseResults,
    embed: Option<&EmbedResults>,
    settings: &Settings,
) {
    let _ = writeln!(out, "## 3. End to end: `enclave ingest --json`\n");
    let _ = writeln!(
        out,
        "A child process on a fresh data directory (embedded SQLite + qdrant-edge), then again on \
         the same one. pipeline s / pages/s are the summary's `elapsed_s` / `pages_per_s` (after \
         the model is loaded); process s is the child's whole life. CPU s and peak RSS are \
         `getrusage(RUSAGE_CHILDREN)` in a helper process whose only child is `enclave ingest`: \
         they include the extract-pdf grandchildren (the peak is that of the largest single \
         process, not a sum).\n"
    );
    let _ = writeln!(
        out,
        "| pass | files | ingested | unchanged | failed | pages | chunks | pipeline s | pages/s | chunks/s | process s | CPU s | peak RSS MiB |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in &e.passes {
        let s = &p.summary;
        let int = |k: &str| s[k].as_i64().map_or("?".to_string(), |v| v.to_string());
        let float = |k: &str, digits: usize| {
            s[k].as_f64()
                .map_or("?".to_string(), |v| format!("{v:.digits$}"))
        };
        let chunks_per_s = match (s["chunks"].as_f64(), s["elapsed_s"].as_f64()) {
            (Some(c), Some(t)) if t > 0.0 => format!("{:.1}", c / t),
            _ => "?".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {chunks_per_s} | {:.1} | {:.1} | {:.0} |",
            p.name,
            int("files"),
            int("ingested"),
            int("unchanged"),
            int("failed"),
            int("pages"),
            int("chunks"),
            float("elapsed_s", 2),
            float("pages_per_s", 1),
            p.wall.as_secs_f64(),
            p.cpu.as_secs_f64(),
            p.max_rss_kib as f64 / 1024.0
        );
    }
    out.push('\n');
    let sequential: Duration = sample
        .iter()
        .map(|f| parse.by_file[&f.name].enclave.wall)
        .sum();
    let _ = writeln!(
        out,
        "For comparison, phase 1 extracted these files one at a time in {:.2} s.",
        sequential.as_secs_f64()
    );
    let default_row = embed.and_then(|m| {
        m.rows
            .iter()
            .find(|r| r.batch_size == settings.embedding.batch_size && r.threads.is_none())
            .map(|r| per_s(m.inputs as f64, r.wall))
    });
    let first_chunks = e.passes.first().and_then(|p| p.summary["chunks"].as_f64());
    if let (Some(rate), Some(chunks)) = (default_row, first_chunks)
        && rate > 0.0
    {
        let _ = writeln!(
            out,
            "At phase 2's rate for the default batch size ({rate:.1} chunks/s), embedding the \
             first pass's {chunks:.0} chunks alone would take {:.1} s.",
            chunks / rate
        );
    }
    if !e.passed_env.is_empty() {
        let _ = writeln!(
            out,
            "Settings variables passed to the child: {}.",
            e.passed_env.join(", ")
        );
    }
    for p in &e.passes {
        if let Some(failures) = p.summary["failures"].as_array().filter(|f| !f.is_empty()) {
            let _ = writeln!(out, "\nFailures ({}):\n", p.name);
            for f in failures {
                let source = f["source"].as_str().unwrap_or("?");
                let _ = writeln!(
                    out,
                    "- {}: {}",
                    source.rsplit('/').next().unwrap_or(source),
                    cell(f["reason"].as_str().unwrap_or("?"), 200)
                );
            }
        }
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// Machine, tools, helpers

/// CPU time (user + system) of this process and of its reaped children since `start`.
struct CpuClock(Duration);

impl CpuClock {
    fn start() -> Self {
        Self(cpu_now())
    }

    fn elapsed(&self) -> Duration {
        cpu_now().saturating_sub(self.0)
    }
}

fn cpu_now() -> Duration {
    let mut total = Duration::ZERO;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: rusage is plain old data that getrusage fills.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local.
        if unsafe { libc::getrusage(who, &mut usage) } == 0 {
            total += timeval(usage.ru_utime) + timeval(usage.ru_stime);
        }
    }
    total
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_string();
    let logical = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB RAM", kib / 1048576.0))
        })
        .unwrap_or_default();
    format!(
        "{cpus} CPUs available (nproc; {logical} in /proc/cpuinfo), {model}, {mem}, Linux {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    )
}

fn load_average() -> Option<String> {
    let l = std::fs::read_to_string("/proc/loadavg").ok()?;
    l.split_whitespace().next().map(str::to_string)
}

fn tool_works(name: &str) -> bool {
    Command::new(name)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// First line of `tool -v` (poppler prints it on stderr).
fn tool_version(name: &str) -> Option<String> {
    let o = Command::new(name).arg("-v").output().ok()?;
    let text = [o.stderr, o.stdout].concat();
    let text = String::from_utf8_lossy(&text);
    Some(text.lines().next().unwrap_or(name).trim().to_string())
}

fn pdfinfo_pages(path: &Path) -> Option<usize> {
    let o = Command::new("pdfinfo").arg(path).output().ok()?;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Characters that are not white space: layouts pad with spaces, text is the rest.
fn non_space(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

/// One line of text for a Markdown table cell, at most `max` chars.
fn cell(text: &str, max: usize) -> String {
    let line = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}...")
    } else {
        line
    }
}
