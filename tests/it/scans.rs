//! Scans and damaged PDFs: pages of a real PDF rendered to images (pdftoppm) and put back into
//! image-only PDFs (img2pdf), read by OCR and compared with the original text layer; damaged
//! copies of real PDFs (truncated, bit-flipped, garbage appended), read beside poppler's own
//! `pdftotext`.

use std::path::Path;
use std::process::Command;

use enclave_ingest::parse::ocr::character_error_rate as cer;

use crate::common::{TestEnv, assert_consistent, corpus_file, document_ending};

const FAQ: &str = "debian-faq__FAQ__debian-faq.en.pdf";

fn tool(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/test installs it): {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    out.stdout
}

/// The text layer of one page, as poppler reads it.
fn text_layer(pdf: &Path, page: usize) -> String {
    let p = page.to_string();
    String::from_utf8(tool(
        "pdftotext",
        &["-f", &p, "-l", &p, &pdf.to_string_lossy(), "-"],
    ))
    .unwrap()
}

/// Pages 20-22 of the Debian FAQ (body text) rendered at 200 dpi: as PNG files in `work`.
fn render_pages(work: &Path) -> Vec<std::path::PathBuf> {
    let faq = corpus_file(FAQ);
    let root = work.join("faq");
    tool(
        "pdftoppm",
        &[
            "-f",
            "20",
            "-l",
            "22",
            "-r",
            "200",
            "-gray",
            "-png",
            &faq.to_string_lossy(),
            &root.to_string_lossy(),
        ],
    );
    let mut pngs: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 3, "{pngs:?}");
    pngs
}

/// An image-only PDF of three FAQ pages, one of those pages as a PNG, and a PDF whose first two
/// pages have a text layer and whose third is a scan: OCR reads the scans, the text layer of
/// the other pages stays as it was, and the pages read by OCR are recorded.
#[tokio::test]
async fn scanned_pages_and_images_are_read_by_ocr() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    let work = docs.join("..").join("scan-sources");
    std::fs::create_dir_all(&work).unwrap();
    let pngs = render_pages(&work);
    let scanned = docs.join("scanned-faq.pdf");
    let mut args: Vec<String> = pngs.iter().map(|p| p.display().to_string()).collect();
    args.extend(["-o".into(), scanned.display().to_string()]);
    tool(
        "img2pdf",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    std::fs::copy(&pngs[1], docs.join("faq-page-21.png")).unwrap();
    let mixed = docs.join("mixed.pdf");
    let faq = corpus_file(FAQ);
    tool(
        "qpdf",
        &[
            "--empty",
            "--pages",
            &faq.to_string_lossy(),
            "20-21",
            &scanned.to_string_lossy(),
            "3",
            "--",
            &mixed.to_string_lossy(),
        ],
    );

    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], serde_json::json!(3), "{summary}");
    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    let doc = |name: &str| document_ending(&all, name);

    // The scanned PDF: every page read by OCR, close to the original text layer.
    let d = doc("scanned-faq.pdf");
    assert_eq!((d.status.as_str(), d.page_count), ("ready", 3), "{d:#?}");
    assert_eq!(d.metadata["ocr_pages"], serde_json::json!([1, 2, 3]));
    let pages = meta.active_pages(&d.id).await.unwrap();
    let mut rates = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let rate = cer(&text_layer(&faq, 20 + i), &page.text);
        rates.push(rate);
        assert!(rate < 0.10, "page {}: CER {rate:.3}\n{}", i + 1, page.text);
    }
    eprintln!("OCR character error rate per page (200 dpi scans): {rates:.3?}");

    // The image: one page, read by OCR.
    let d = doc("faq-page-21.png");
    assert_eq!((d.status.as_str(), d.page_count), ("ready", 1), "{d:#?}");
    assert_eq!(d.mime_type.as_deref(), Some("image/png"));
    assert_eq!(d.metadata["ocr_pages"], serde_json::json!([1]));

    // The mixed PDF: the text layer of pages 1-2 as the extractor reads it, page 3 by OCR.
    let d = doc("mixed.pdf");
    assert_eq!((d.status.as_str(), d.page_count), ("ready", 3), "{d:#?}");
    assert_eq!(d.metadata["ocr_pages"], serde_json::json!([3]));
    let mixed_pages = meta.active_pages(&d.id).await.unwrap();
    let original =
        enclave_ingest::parse::pdf::extract_in_process(&std::fs::read(&faq).unwrap()).unwrap();
    assert_eq!(mixed_pages[0].text, original.pages[19]);
    assert_eq!(mixed_pages[1].text, original.pages[20]);
    assert!(cer(&text_layer(&faq, 22), &mixed_pages[2].text) < 0.10);
    meta.close().await;
    assert_consistent(&env).await;

    // Words that only the scans hold are found.
    let line = text_layer(&faq, 22)
        .lines()
        .map(str::trim)
        .find(|l| l.split_whitespace().count() >= 8)
        .unwrap()
        .to_string();
    let out = env.run(&["search", &line, "-k", "10", "--json"]);
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found: Vec<&str> = results["passages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["source_uri"].as_str().unwrap())
        .collect();
    assert!(
        found.iter().any(|u| u.ends_with("scanned-faq.pdf")),
        "{line}: {found:?}"
    );
    assert!(found.iter().any(|u| u.ends_with("mixed.pdf")), "{found:?}");
}

/// With OCR off, a scan has no text and an image is refused by name.
#[tokio::test]
async fn without_ocr_a_scan_has_no_text() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    let work = docs.join("..").join("scan-sources");
    std::fs::create_dir_all(&work).unwrap();
    let pngs = render_pages(&work);
    tool(
        "img2pdf",
        &[
            &pngs[0].to_string_lossy(),
            "-o",
            &docs.join("scan.pdf").to_string_lossy(),
        ],
    );
    std::fs::copy(&pngs[0], docs.join("scan.png")).unwrap();
    let out = env
        .command()
        .env("ENCLAVE_OCR__ENABLED", "false")
        .args(["ingest", "--json", &docs.to_string_lossy()])
        .output()
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(summary["failed"], serde_json::json!(2), "{summary}");
    let reasons: Vec<&str> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("no extractable text")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("OCR is off")),
        "{reasons:?}"
    );
}

/// Damaged copies of real PDFs: every copy either is read (its text recovered, the document
/// saying so) or fails with a named reason; Enclave reads at least as many as poppler does.
#[tokio::test]
async fn damaged_pdfs_are_recovered_at_least_as_often_as_poppler_does() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    let sources = [
        FAQ,
        "simh__simh_doc.pdf",
        "simh__hpiop.pdf",
        "debian-history__docs__project-history.en.pdf",
        "simh__pdp11interrupts.pdf",
    ];
    let mut names = Vec::new();
    // A fixed pseudo-random sequence, so that a failure can be reproduced.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (i, source) in sources.iter().enumerate() {
        let bytes = std::fs::read(corpus_file(source)).unwrap();
        let n = bytes.len();
        let mut damaged: Vec<(&str, Vec<u8>)> = vec![
            ("truncated-half", bytes[..n / 2].to_vec()),
            ("truncated-tail", bytes[..n - n / 20].to_vec()),
        ];
        let mut garbage = bytes.clone();
        garbage.extend((0..8192).map(|_| next() as u8));
        damaged.push(("garbage-appended", garbage));
        let mut xref = bytes.clone();
        for _ in 0..24 {
            let at = n - 1 - (next() as usize % 4096.min(n));
            xref[at] ^= 1 << (next() % 8);
        }
        damaged.push(("xref-flipped", xref));
        let mut middle = bytes.clone();
        for _ in 0..64 {
            let at = n / 4 + next() as usize % (n / 2);
            middle[at] ^= 1 << (next() % 8);
        }
        damaged.push(("body-flipped", middle));
        for (kind, b) in damaged {
            let name = format!("{i}-{kind}.pdf");
            std::fs::write(docs.join(&name), b).unwrap();
            names.push(name);
        }
    }
    let poppler_reads = |name: &str| {
        Command::new("timeout")
            .args([
                "60",
                "pdftotext",
                "-q",
                &docs.join(name).to_string_lossy(),
                "-",
            ])
            .output()
            .is_ok_and(|o| {
                o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty()
            })
    };
    let poppler: Vec<&String> = names.iter().filter(|n| poppler_reads(n)).collect();

    let summary = env.ingest(&[&docs]);
    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    assert_eq!(all.len(), names.len());
    let mut recovered = 0;
    for d in &all {
        match d.status.as_str() {
            "ready" => {
                if d.metadata.get("recovered_by").is_some() {
                    recovered += 1;
                    assert!(
                        d.metadata["recovered_from"]
                            .as_str()
                            .is_some_and(|r| !r.is_empty()),
                        "{d:#?}"
                    );
                }
            }
            _ => {
                let reason = d.error.clone().unwrap_or_default();
                assert!(
                    ["malformed PDF", "no extractable text", "PDF extraction"]
                        .iter()
                        .any(|p| reason.starts_with(p)),
                    "{}: {reason}",
                    d.source_uri
                );
            }
        }
    }
    let read = all.iter().filter(|d| d.status == "ready").count();
    eprintln!(
        "damaged PDFs: {} copies, poppler's pdftotext reads {}, Enclave reads {read} \
         ({recovered} of them recovered by the fallback)",
        names.len(),
        poppler.len()
    );
    assert!(
        read >= poppler.len(),
        "Enclave read {read}, poppler {}: {summary}",
        poppler.len()
    );
    assert!(recovered > 0, "{summary}");
    meta.close().await;
    assert_consistent(&env).await;
}

/// A spreadsheet, a CSV file and a scanned page uploaded through the REST API: each is read,
/// the workbook's citation names its sheet and rows, the scan records its OCR page.
#[tokio::test]
async fn spreadsheets_scans_and_mail_uploaded_through_the_api() {
    use crate::http::{Server, api_key, file_part};
    use reqwest::StatusCode;
    use reqwest::multipart::Form;

    let env = TestEnv::embedded();
    let admin = api_key(&env, "admin");
    let server = Server::start(&env, &[]);
    let s = &server;
    let work = env.docs().join("..").join("upload-sources");
    std::fs::create_dir_all(&work).unwrap();
    let pngs = render_pages(&work);
    let mut csv = String::from("Release,Codename,Date\n");
    for (v, name, date) in [
        ("10", "buster", "2019-07-06"),
        ("11", "bullseye", "2021-08-14"),
        ("12", "bookworm", "2023-06-10"),
        ("13", "trixie", "2025-08-09"),
    ] {
        csv.push_str(&format!("{v},{name},{date}\n"));
    }
    std::fs::write(work.join("releases.csv"), &csv).unwrap();
    let out = Command::new("soffice")
        .arg(format!(
            "-env:UserInstallation=file://{}",
            work.join(".lo").display()
        ))
        .args(["--headless", "--convert-to", "ods", "--outdir"])
        .arg(&work)
        .arg(work.join("releases.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&serde_json::json!({"name": "formats"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{r:?}");
    let mut ids = Vec::new();
    for (name, bytes) in [
        ("releases.csv", csv.into_bytes()),
        (
            "releases.ods",
            std::fs::read(work.join("releases.ods")).unwrap(),
        ),
        ("faq-page-20.png", std::fs::read(&pngs[0]).unwrap()),
        (
            "protonmail.msg",
            std::fs::read(crate::outlook::sample("test_email_4.msg")).unwrap(),
        ),
    ] {
        let (status, body) = s
            .upload(
                &admin,
                Form::new()
                    .text("collection", "formats")
                    .part("file", file_part(name, bytes)),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        ids.push((name, body["id"].as_str().unwrap().to_string()));
    }
    for (name, id) in &ids {
        let d = s.settled(&admin, id).await;
        assert_eq!(d["status"], "ready", "{name}: {d}");
        if name.ends_with(".png") {
            assert_eq!(d["mime_type"], "image/png");
            assert_eq!(d["metadata"]["ocr_pages"], serde_json::json!([1]), "{d}");
        } else if name.ends_with(".msg") {
            assert_eq!(d["mime_type"], "application/vnd.ms-outlook", "{d}");
            assert_eq!(d["title"], "test", "{d}");
            assert!(
                d["metadata"]["from"]
                    .as_str()
                    .unwrap()
                    .contains("account-testing7777@protonmail.com"),
                "{d}"
            );
        } else {
            assert_eq!(d["metadata"]["page_noun"], "sheet", "{d}");
        }
    }
    let results: serde_json::Value = s
        .post(&admin, "/api/v1/search")
        .json(&serde_json::json!({"query": "Which release is codenamed bookworm?", "limit": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let passages = results["passages"].as_array().unwrap();
    let ods = passages
        .iter()
        .find(|p| p["source_uri"].as_str().unwrap().ends_with("releases.ods"))
        .unwrap_or_else(|| panic!("{results}"));
    assert_eq!(ods["locator"], "sheet releases, rows 2–5", "{ods}");
}
