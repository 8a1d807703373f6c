//! Formats benchmark: a program (not a timed test) that measures, on files made in the same run
//! from the real corpus, what the non-PDF paths and the scan/damage paths cost and read, and
//! prints Markdown tables.
//!
//! 1. **Office and sheets**: pages (slides, sheets)/s and MB/s of Enclave's parsers, in this
//!    process, on files LibreOffice makes from the corpus: the Debian FAQ's text edition as
//!    .docx and .odt, a corpus PDF as .odp and .pptx (Impress's PDF import, a slide per page),
//!    this machine's dpkg database (a real table) as .xlsx, .ods, .xls and .csv, and two real
//!    Outlook messages (.msg; a page is a message body, attachments are not parsed here).
//! 2. **OCR**: pages of the Debian FAQ rendered by `pdftoppm` at several resolutions and read by
//!    Tesseract through Enclave's image path: seconds per page on this machine and the
//!    character error rate against the page's text layer (letters and digits, lower case).
//! 3. **Damaged PDFs**: truncated, bit-flipped and garbage-appended copies of corpus PDFs, read
//!    by Enclave's PDF path (the `extract-pdf` child, then the recovery and OCR step) beside
//!    poppler's `pdftotext`: how many each reads, how many failed with a named reason, time.
//! 4. **Mixed folder end to end** (`enclave ingest --json` on a fresh data directory): the
//!    office files, sheets and Outlook messages above (their attachments: TIFF scans read by
//!    OCR, embedded messages), two corpus PDFs and the FAQ's text edition, five damaged
//!    PDFs and a scanned PDF of five FAQ pages.
//! 5. With `--scanned-faq`: the whole Debian FAQ as an image-only PDF (every page rendered
//!    and put back by `img2pdf`), ingested and evaluated with `eval/debian-faq.jsonl` beside
//!    the original (recall@5 and nDCG@10, hybrid); slow (every page goes through OCR).
//!
//! Needs `soffice` (libreoffice-writer-nogui, -impress-nogui, -calc-nogui), `pdftoppm`,
//! `pdftotext` (poppler-utils), `tesseract` and `img2pdf`; `scripts/test` installs them.
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! cargo bench --bench formats                       # about 8 min on 2 cores
//! cargo bench --bench formats -- --scanned-faq      # adds the scanned FAQ evaluation
//! cargo bench --bench formats -- --only scanned-faq  # that evaluation alone
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use enclave_ingest::parse::msg;
use enclave_ingest::parse::ocr::{self, OcrOptions, character_error_rate as cer};
use enclave_ingest::parse::office::{self, OfficeFormat};
use enclave_ingest::parse::pdf::{self, PdfIsolation};
use enclave_ingest::parse::sheet::{self, WorkbookFormat};
use enclave_ingest::parse::{ParseError, ParsedDocument};

const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");
const FAQ_PDF: &str = "debian-faq__FAQ__debian-faq.en.pdf";
const FAQ_TXT: &str = "debian-faq__debian-faq.en.txt";

#[derive(Debug, Parser)]
#[command(about = "Enclave's formats, OCR and damaged-PDF benchmark")]
struct Args {
    /// Corpus folder (default: $ENCLAVE_CORPUS_DIR, else ~/.cache/enclave/corpus).
    #[arg(long, env = "ENCLAVE_BENCH_CORPUS")]
    corpus: Option<PathBuf>,
    /// FAQ pages read by OCR at each resolution.
    #[arg(long, env = "ENCLAVE_BENCH_OCR_PAGES", default_value_t = 4)]
    ocr_pages: usize,
    /// Resolutions (dpi) pages are rendered at for OCR.
    #[arg(long, env = "ENCLAVE_BENCH_DPIS", value_delimiter = ',', default_values_t = [150, 200, 300])]
    dpis: Vec<u32>,
    /// Corpus PDFs damaged five ways each.
    #[arg(long, env = "ENCLAVE_BENCH_DAMAGED", default_value_t = 12)]
    damaged: usize,
    /// Also scan the whole FAQ and evaluate retrieval on it beside the original.
    #[arg(long, env = "ENCLAVE_BENCH_SCANNED_FAQ")]
    scanned_faq: bool,
    /// Only these tables (office, ocr, damaged, mixed, scanned-faq); default: all but
    /// scanned-faq, which `--scanned-faq` adds.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    // `cargo bench` passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

fn corpus_dir(args: &Args) -> PathBuf {
    args.corpus.clone().unwrap_or_else(|| {
        std::env::var_os("ENCLAVE_CORPUS_DIR").map_or_else(
            || {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/enclave/corpus")
            },
            PathBuf::from,
        )
    })
}

fn tool(program: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (scripts/test installs it)"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn soffice(dir: &Path, args: &[&str], input: &str) -> anyhow::Result<()> {
    let profile = format!("-env:UserInstallation=file://{}", dir.join(".lo").display());
    let dir_s = dir.to_string_lossy();
    let input = dir.join(input);
    let input_s = input.to_string_lossy();
    let mut all = vec![profile.as_str(), "--headless"];
    all.extend(args);
    all.extend(["--outdir", &dir_s, &input_s]);
    tool("soffice", &all).map(|_| ())
}

/// The dpkg database as rows: package, version, section, installed size, maintainer,
/// description.
fn packages() -> anyhow::Result<Vec<Vec<String>>> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status")?;
    let mut rows: Vec<Vec<String>> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
            };
            Some(vec![
                field("Package")?,
                field("Version")?,
                field("Section").unwrap_or_default(),
                field("Installed-Size").unwrap_or_default(),
                field("Maintainer")?,
                field("Description")?,
            ])
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Makes the office and sheet files in `dir`; returns (file name, format label).
fn make_office_files(corpus: &Path, dir: &Path) -> anyhow::Result<Vec<(String, &'static str)>> {
    std::fs::copy(corpus.join(FAQ_TXT), dir.join("faq.txt"))?;
    soffice(dir, &["--convert-to", "docx:MS Word 2007 XML"], "faq.txt")?;
    soffice(dir, &["--convert-to", "odt"], "faq.txt")?;
    std::fs::copy(corpus.join("simh__simh_doc.pdf"), dir.join("slides.pdf"))?;
    soffice(
        dir,
        &["--infilter=impress_pdf_import", "--convert-to", "odp"],
        "slides.pdf",
    )?;
    soffice(dir, &["--convert-to", "pptx"], "slides.odp")?;
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let mut csv = "Package,Version,Section,Installed-Size,Maintainer,Description".to_string();
    for r in packages()? {
        csv.push('\n');
        csv.push_str(&r.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","));
    }
    std::fs::write(dir.join("packages.csv"), csv)?;
    soffice(
        dir,
        &["--convert-to", "xlsx:Calc MS Excel 2007 XML"],
        "packages.csv",
    )?;
    soffice(dir, &["--convert-to", "ods"], "packages.csv")?;
    soffice(dir, &["--convert-to", "xls:MS Excel 97"], "packages.csv")?;
    std::fs::remove_file(dir.join("slides.pdf"))?;
    std::fs::remove_file(dir.join("faq.txt"))?;
    // Real Outlook messages (scripts/test fetches them): one with two TIFF scans attached,
    // one that forwards three messages embedded in it.
    let outlook = PathBuf::from(
        std::env::var_os("ENCLAVE_OUTLOOK_DIR")
            .context("ENCLAVE_OUTLOOK_DIR is not set: source scripts/env.sh")?,
    );
    std::fs::copy(outlook.join("unicode.msg"), dir.join("scans-mail.msg"))?;
    std::fs::copy(outlook.join("test_email_1.msg"), dir.join("forwarded.msg"))?;
    Ok(vec![
        ("scans-mail.msg".into(), "Outlook message"),
        ("forwarded.msg".into(), "Outlook message"),
        ("faq.docx".into(), "Word"),
        ("faq.odt".into(), "OpenDocument text"),
        ("slides.pptx".into(), "PowerPoint"),
        ("slides.odp".into(), "OpenDocument presentation"),
        ("packages.xlsx".into(), "Excel"),
        ("packages.ods".into(), "OpenDocument spreadsheet"),
        ("packages.xls".into(), "Excel 97-2003"),
        ("packages.csv".into(), "CSV"),
    ])
}

fn parse_office(path: &Path) -> Result<ParsedDocument, ParseError> {
    let bytes = std::fs::read(path).map_err(|e| ParseError::Crashed(e.to_string()))?;
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "docx" => office::parse(&bytes, OfficeFormat::Docx),
        "odt" => office::parse(&bytes, OfficeFormat::Odt),
        "pptx" => office::parse(&bytes, OfficeFormat::Pptx),
        "odp" => office::parse(&bytes, OfficeFormat::Odp),
        "xlsx" => sheet::parse_workbook(&bytes, WorkbookFormat::Xlsx),
        "ods" => sheet::parse_workbook(&bytes, WorkbookFormat::Ods),
        "xls" => sheet::parse_workbook(&bytes, WorkbookFormat::Xls),
        "msg" => msg::parse(&bytes),
        _ => sheet::parse_csv(&bytes),
    }
}

fn office_table(dir: &Path, files: &[(String, &str)]) -> anyhow::Result<()> {
    println!("## Office documents and spreadsheets (parsed in this process, best of 3)\n");
    println!("| format | file | size (KiB) | pages | characters | ms | pages/s | MB/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, label) in files {
        let path = dir.join(name);
        let size = std::fs::metadata(&path)?.len();
        let mut best = Duration::MAX;
        let mut doc = None;
        for _ in 0..3 {
            let t = Instant::now();
            let d = parse_office(&path).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            best = best.min(t.elapsed());
            doc = Some(d);
        }
        let doc = doc.unwrap_or_default();
        let secs = best.as_secs_f64().max(1e-9);
        println!(
            "| {label} | {name} | {} | {} | {} | {:.1} | {:.0} | {:.1} |",
            size / 1024,
            doc.pages.len(),
            doc.text().chars().count(),
            secs * 1e3,
            doc.pages.len() as f64 / secs,
            size as f64 / secs / 1e6
        );
    }
    println!();
    Ok(())
}

fn ocr_table(corpus: &Path, dir: &Path, pages: usize, dpis: &[u32]) -> anyhow::Result<()> {
    let faq = corpus.join(FAQ_PDF);
    let faq_s = faq.to_string_lossy().to_string();
    // Body pages of the FAQ (its first pages are the contents).
    let first = 20usize;
    println!(
        "## OCR (Tesseract {} through Enclave's image path, one thread per page; FAQ pages {first}-{})\n",
        String::from_utf8_lossy(&tool("tesseract", &["--version"])?)
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("tesseract "),
        first + pages - 1
    );
    println!("| dpi | pages | render s/page | OCR s/page | pages/s | CER mean | CER worst |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let options = OcrOptions::default();
    for &dpi in dpis {
        let (mut render, mut read, mut rates) = (Duration::ZERO, Duration::ZERO, Vec::new());
        for n in first..first + pages {
            let p = n.to_string();
            let root = dir.join(format!("ocr-{dpi}-{n}"));
            let t = Instant::now();
            tool(
                "pdftoppm",
                &[
                    "-f",
                    &p,
                    "-l",
                    &p,
                    "-r",
                    &dpi.to_string(),
                    "-gray",
                    "-png",
                    "-singlefile",
                    &faq_s,
                    &root.to_string_lossy(),
                ],
            )?;
            render += t.elapsed();
            let png = std::fs::read(root.with_extension("png"))?;
            let t = Instant::now();
            let doc = ocr::parse_image(&png, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
            read += t.elapsed();
            let truth =
                String::from_utf8_lossy(&tool("pdftotext", &["-f", &p, "-l", &p, &faq_s, "-"])?)
                    .to_string();
            rates.push(cer(&truth, &doc.text()));
        }
        let n = pages as f64;
        let mean = rates.iter().sum::<f64>() / n;
        let worst = rates.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {dpi} | {pages} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |",
            render.as_secs_f64() / n,
            read.as_secs_f64() / n,
            n / (render + read).as_secs_f64(),
            mean,
            worst
        );
    }
    println!();
    Ok(())
}

/// Damaged copies of `count` corpus PDFs (five kinds each), written into `dir`.
fn make_damaged(corpus: &Path, dir: &Path, count: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(corpus)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 3 << 20))
        .collect();
    pdfs.sort();
    let step = (pdfs.len() / count.max(1)).max(1);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    for (i, pdf) in pdfs.iter().step_by(step).take(count).enumerate() {
        let bytes = std::fs::read(pdf)?;
        let n = bytes.len();
        let mut copies: Vec<(&str, Vec<u8>)> = vec![
            ("truncated-half", bytes[..n / 2].to_vec()),
            ("truncated-tail", bytes[..n - n / 20].to_vec()),
        ];
        let mut garbage = bytes.clone();
        garbage.extend((0..8192).map(|_| next() as u8));
        copies.push(("garbage-appended", garbage));
        let mut xref = bytes.clone();
        for _ in 0..24 {
            let at = n - 1 - (next() as usize % 4096.min(n));
            xref[at] ^= 1 << (next() % 8);
        }
        copies.push(("xref-flipped", xref));
        let mut body = bytes.clone();
        for _ in 0..64 {
            let at = n / 4 + next() as usize % (n / 2).max(1);
            body[at] ^= 1 << (next() % 8);
        }
        copies.push(("body-flipped", body));
        for (kind, b) in copies {
            let path = dir.join(format!("{i:02}-{kind}.pdf"));
            std::fs::write(&path, b)?;
            out.push(path);
        }
    }
    Ok(out)
}

async fn damaged_table(files: &[PathBuf]) -> anyhow::Result<()> {
    let iso = PdfIsolation {
        program: PathBuf::from(ENCLAVE),
        args: vec!["extract-pdf".into()],
        timeout: Duration::from_secs(120),
        memory_mb: 4096,
    };
    let options = OcrOptions::default();
    let (mut enclave_read, mut poppler_read, mut named, mut recovered) = (0, 0, 0, 0);
    let (mut enclave_time, mut poppler_time) = (Duration::ZERO, Duration::ZERO);
    let mut by_kind: std::collections::BTreeMap<String, (usize, usize, usize)> = Default::default();
    for f in files {
        let kind = f
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.split_once('-'))
            .map_or("?", |(_, k)| k)
            .to_string();
        let bytes = std::fs::read(f)?;
        let t = Instant::now();
        let extracted = pdf::extract_isolated(&bytes, &iso).await;
        let b = bytes.clone();
        let o = options.clone();
        let result =
            tokio::task::spawn_blocking(move || ocr::complete_pdf(&b, extracted, &o, &|_, _| {}))
                .await?;
        enclave_time += t.elapsed();
        let t = Instant::now();
        let poppler = Command::new("timeout")
            .args(["120", "pdftotext", "-q"])
            .arg(f)
            .arg("-")
            .output()
            .is_ok_and(|o| {
                o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty()
            });
        poppler_time += t.elapsed();
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        match result {
            Ok(doc) => {
                enclave_read += 1;
                entry.1 += 1;
                if doc.metadata.contains_key("recovered_by") {
                    recovered += 1;
                }
            }
            Err(e) => {
                if !e.to_string().is_empty() {
                    named += 1;
                }
            }
        }
        if poppler {
            poppler_read += 1;
            entry.2 += 1;
        }
    }
    println!(
        "## Damaged PDFs ({} copies of {} corpus PDFs)\n",
        files.len(),
        files.len() / 5
    );
    println!("| damage | copies | Enclave reads | pdftotext reads |");
    println!("|---|---:|---:|---:|");
    for (kind, (n, e, p)) in &by_kind {
        println!("| {kind} | {n} | {e} | {p} |");
    }
    println!(
        "| **all** | {} | {enclave_read} ({recovered} by the recovery step) | {poppler_read} |",
        files.len()
    );
    println!(
        "\nFailures with a named reason: {named} of {}. Time: Enclave {:.1} s, pdftotext {:.1} s.\n",
        files.len() - enclave_read,
        enclave_time.as_secs_f64(),
        poppler_time.as_secs_f64()
    );
    Ok(())
}

/// `enclave ingest --json DIR` on a fresh data directory: (summary, seconds).
fn ingest(data: &Path, dir: &Path, collection: &str) -> anyhow::Result<(serde_json::Value, f64)> {
    let t = Instant::now();
    let out = Command::new(ENCLAVE)
        .args(["ingest", "--json", "--collection", collection])
        .arg(dir)
        .env("ENCLAVE_DATA_DIR", data)
        .output()?;
    if !out.status.success() {
        bail!("enclave ingest: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((
        serde_json::from_slice(&out.stdout)?,
        t.elapsed().as_secs_f64(),
    ))
}

fn scanned_pdf(
    corpus: &Path,
    dir: &Path,
    first: usize,
    last: usize,
    out: &Path,
) -> anyhow::Result<()> {
    let pages = dir.join("scan");
    std::fs::create_dir_all(&pages)?;
    tool(
        "pdftoppm",
        &[
            "-f",
            &first.to_string(),
            "-l",
            &last.to_string(),
            "-r",
            "200",
            "-gray",
            "-png",
            &corpus.join(FAQ_PDF).to_string_lossy(),
            &pages.join("p").to_string_lossy(),
        ],
    )?;
    let mut pngs: Vec<String> = std::fs::read_dir(&pages)?
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .collect();
    pngs.sort();
    let mut args: Vec<&str> = pngs.iter().map(String::as_str).collect();
    let out_s = out.to_string_lossy();
    args.extend(["-o", &out_s]);
    tool("img2pdf", &args)?;
    std::fs::remove_dir_all(&pages)?;
    Ok(())
}

fn mixed_table(
    corpus: &Path,
    work: &Path,
    office_dir: &Path,
    damaged: &[PathBuf],
) -> anyhow::Result<()> {
    let dir = work.join("mixed");
    std::fs::create_dir_all(&dir)?;
    for e in std::fs::read_dir(office_dir)? {
        let p = e?.path();
        if p.is_file() && p.extension().is_some_and(|x| x != "png") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap_or_default()))?;
        }
    }
    for f in ["simh__hpiop.pdf", "simh__pdp11interrupts.pdf", FAQ_TXT] {
        std::fs::copy(corpus.join(f), dir.join(f))?;
    }
    for f in damaged.iter().take(5) {
        std::fs::copy(f, dir.join(f.file_name().unwrap_or_default()))?;
    }
    scanned_pdf(corpus, work, 20, 24, &dir.join("scanned-faq-20-24.pdf"))?;
    let data = tempfile::tempdir()?;
    let (summary, secs) = ingest(data.path(), &dir, "mixed")?;
    let pages = summary["pages"].as_i64().unwrap_or(0);
    println!("## Mixed folder, end to end (`enclave ingest`, fresh embedded data directory)\n");
    println!("| files | ingested | failed | pages | chunks | s | pages/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {pages} | {} | {secs:.1} | {:.2} |\n",
        summary["files"],
        summary["ingested"],
        summary["failed"],
        summary["chunks"],
        pages as f64 / secs
    );
    Ok(())
}

fn eval_recall(data: &Path) -> anyhow::Result<(f64, f64)> {
    let out = Command::new(ENCLAVE)
        .args([
            "eval",
            "--json",
            "--set",
            concat!(env!("CARGO_MANIFEST_DIR"), "/eval/debian-faq.jsonl"),
        ])
        .env("ENCLAVE_DATA_DIR", data)
        .output()?;
    if !out.status.success() {
        bail!("enclave eval: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let hybrid = report["retrieval"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["mode"] == "hybrid"))
        .context("no hybrid row")?;
    Ok((
        hybrid["recall_at_5"].as_f64().unwrap_or(0.0),
        hybrid["ndcg_at_10"].as_f64().unwrap_or(0.0),
    ))
}

fn scanned_faq_table(corpus: &Path, work: &Path) -> anyhow::Result<()> {
    let pages: usize = String::from_utf8_lossy(&tool(
        "pdfinfo",
        &[&corpus.join(FAQ_PDF).to_string_lossy()],
    )?)
    .lines()
    .find_map(|l| {
        l.strip_prefix("Pages:")
            .map(|n| n.trim().parse().unwrap_or(0))
    })
    .unwrap_or(0);
    let text_dir = work.join("faq-text");
    let scan_dir = work.join("faq-scan");
    std::fs::create_dir_all(&text_dir)?;
    std::fs::create_dir_all(&scan_dir)?;
    std::fs::copy(corpus.join(FAQ_PDF), text_dir.join(FAQ_PDF))?;
    scanned_pdf(corpus, work, 1, pages, &scan_dir.join(FAQ_PDF))?;
    println!(
        "## The Debian FAQ scanned ({pages} pages at 200 dpi, image only) against the original\n"
    );
    println!("| FAQ | ingest s | pages | recall@5 | nDCG@10 |");
    println!("|---|---:|---:|---:|---:|");
    for (label, dir) in [("text layer", &text_dir), ("scanned, OCR", &scan_dir)] {
        let data = tempfile::tempdir()?;
        let (summary, secs) = ingest(data.path(), dir, "faq")?;
        let (r5, ndcg) = eval_recall(data.path())?;
        println!(
            "| {label} | {secs:.0} | {} | {r5:.3} | {ndcg:.3} |",
            summary["pages"]
        );
    }
    println!();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus = corpus_dir(&args);
    let work = tempfile::tempdir()?;
    let office_dir = work.path().join("office");
    std::fs::create_dir_all(&office_dir)?;
    println!(
        "# Formats benchmark ({} cores, load average {})\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let runs = |table: &str| {
        if args.only.is_empty() {
            table != "scanned-faq" || args.scanned_faq
        } else {
            args.only.iter().any(|t| t == table)
        }
    };
    if runs("office") || runs("mixed") {
        let files = make_office_files(&corpus, &office_dir)?;
        if runs("office") {
            office_table(&office_dir, &files)?;
        }
    }
    if runs("ocr") {
        let ocr_dir = work.path().join("ocr");
        std::fs::create_dir_all(&ocr_dir)?;
        ocr_table(&corpus, &ocr_dir, args.ocr_pages, &args.dpis)?;
    }
    if runs("damaged") || runs("mixed") {
        let damaged_dir = work.path().join("damaged");
        std::fs::create_dir_all(&damaged_dir)?;
        let damaged = make_damaged(&corpus, &damaged_dir, args.damaged)?;
        if runs("damaged") {
            damaged_table(&damaged).await?;
        }
        if runs("mixed") {
            mixed_table(&corpus, work.path(), &office_dir, &damaged)?;
        }
    }
    if runs("scanned-faq") {
        scanned_faq_table(&corpus, work.path())?;
    }
    Ok(())
}
