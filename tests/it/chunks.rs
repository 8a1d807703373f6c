//! Chunk invariants on real PDFs: token bound, exact offsets, right page ranges, full coverage,
//! no chunk that is a bare heading.

use std::process::Command;

use crate::common::{TestEnv, corpus_file, document_text, models_dir};

fn pdfinfo_pages(path: &std::path::Path) -> i64 {
    let out = Command::new("pdfinfo")
        .arg(path)
        .output()
        .expect("pdfinfo (poppler-utils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:").map(|n| n.trim().parse().unwrap()))
        .unwrap()
}

async fn check_invariants(env: &TestEnv, max_tokens: usize, pdfs: &[&str]) {
    let tokenizer =
        enclave_embed::OnnxEmbedder::tokenizer_from(&models_dir().join("all-minilm-l6-v2"))
            .unwrap();
    let meta = env.meta().await;
    for name in pdfs {
        let path = corpus_file(name);
        let doc = meta
            .documents(None)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.source_uri.ends_with(name))
            .unwrap();
        assert_eq!(doc.status, "ready", "{doc:#?}");
        assert_eq!(doc.page_count, pdfinfo_pages(&path), "{name}: page count");
        let pages = meta.active_pages(&doc.id).await.unwrap();
        let text: Vec<char> = document_text(&pages).chars().collect();
        let chunks = meta.active_chunks(&doc.id).await.unwrap();
        assert!(chunks.len() > 1, "{name}: {} chunks", chunks.len());
        let mut covered = vec![false; text.len()];
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.ordinal, i as i64, "{name}: ordinals are consecutive");
            // Offsets give back the chunk's text exactly.
            let (s, e) = (c.char_start as usize, c.char_end as usize);
            let span: String = text[s..e].iter().collect();
            assert_eq!(
                span, c.text,
                "{name} chunk {i}: offsets do not give back the text"
            );
            // Token bound, recounted with the model's own tokenizer.
            let tokens = tokenizer
                .encode(c.text.as_str(), false)
                .unwrap()
                .get_ids()
                .len();
            assert_eq!(
                tokens as i64, c.token_count,
                "{name} chunk {i}: token count"
            );
            // A chunk may go over the budget by the bare headings or the fragment it took.
            let allowance = enclave_ingest::chunk::join_allowance(max_tokens);
            let bound = max_tokens + allowance;
            assert!(
                tokens <= bound,
                "{name} chunk {i}: {tokens} > {bound} tokens"
            );
            // No chunk but the last is its section's title alone (a section number after it
            // at most): a bare title goes with the text after it.
            let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            let title = c
                .section
                .as_deref()
                .and_then(|s| s.rsplit(enclave_ingest::chunk::PATH_SEPARATOR).next());
            let bare = title.is_some_and(|title| {
                words(&c.text)
                    .strip_prefix(&words(title))
                    .is_some_and(|rest| !rest.chars().any(char::is_alphabetic))
            });
            assert!(
                !bare || i + 1 == chunks.len(),
                "{name} chunk {i} is a bare heading: {:?}",
                c.text
            );
            // A fragment stays alone only where it could join neither neighbour: the next
            // chunk opens a section or the two would pass the bound (the same for the one
            // before it, unless the fragment opens a section itself).
            let opens = |c: &enclave_storage::ChunkRecord| {
                c.section
                    .as_deref()
                    .and_then(|s| s.rsplit(enclave_ingest::chunk::PATH_SEPARATOR).next())
                    .is_some_and(|title| words(&c.text).starts_with(&words(title)))
            };
            let fits = |a: &enclave_storage::ChunkRecord, b: &enclave_storage::ChunkRecord| {
                let span: String = text[a.char_start as usize..b.char_end as usize]
                    .iter()
                    .collect();
                tokenizer
                    .encode(span.as_str(), false)
                    .unwrap()
                    .get_ids()
                    .len()
                    <= bound
            };
            if tokens < allowance {
                let next = chunks.get(i + 1).filter(|n| !opens(n) && fits(c, n));
                let previous = (i > 0 && !opens(c))
                    .then(|| &chunks[i - 1])
                    .filter(|p| fits(p, c));
                assert!(
                    next.is_none() && previous.is_none(),
                    "{name} chunk {i} is a fragment that fits beside a neighbour: {:?}",
                    c.text
                );
            }
            // Page range: the pages holding the first and the last character.
            let page_of = |offset: i64| {
                pages
                    .iter()
                    .rev()
                    .find(|p| p.char_start <= offset)
                    .unwrap()
                    .page_number
            };
            assert_eq!(
                c.page_start,
                page_of(c.char_start),
                "{name} chunk {i}: page_start"
            );
            assert_eq!(
                c.page_end,
                page_of(c.char_end - 1),
                "{name} chunk {i}: page_end"
            );
            assert!(c.page_start <= c.page_end);
            covered[s..e].iter_mut().for_each(|x| *x = true);
        }
        // Nothing but whitespace is left out of every chunk.
        let missed: String = text
            .iter()
            .zip(&covered)
            .filter(|(ch, cov)| !**cov && !ch.is_whitespace())
            .map(|(ch, _)| *ch)
            .take(80)
            .collect();
        assert!(
            missed.is_empty(),
            "{name}: text outside every chunk: {missed:?}"
        );
        // The page texts match the PDF's page count and are not empty.
        assert!(
            pages.iter().filter(|p| !p.text.trim().is_empty()).count() as i64 > doc.page_count / 2
        );
    }
    meta.close().await;
}

#[tokio::test]
async fn chunks_of_real_pdfs_keep_their_invariants() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    let pdfs = [
        "debian-history__docs__project-history.en.pdf",
        "simh__decsys.pdf",
        // Section titles at the ends of paragraphs' chunks, and sections that open with a
        // subsection.
        "simh__simh_doc.pdf",
    ];
    for p in pdfs {
        std::os::unix::fs::symlink(corpus_file(p), docs.join(p)).unwrap();
    }
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], 3, "{summary}");
    check_invariants(&env, 200, &pdfs).await;
}

#[tokio::test]
async fn chunk_size_and_overlap_are_configurable() {
    let mut env = TestEnv::embedded();
    env.extra_env = vec![
        ("ENCLAVE_CHUNKING__MAX_TOKENS".into(), "64".into()),
        ("ENCLAVE_CHUNKING__OVERLAP_TOKENS".into(), "16".into()),
    ];
    let pdf = "simh__pdp11interrupts.pdf";
    let summary = env.ingest(&[&corpus_file(pdf)]);
    assert_eq!(summary["ingested"], 1, "{summary}");
    check_invariants(&env, 64, &[pdf]).await;
    // With overlap, consecutive chunks share text.
    let meta = env.meta().await;
    let doc = &meta.documents(None).await.unwrap()[0];
    let chunks = meta.active_chunks(&doc.id).await.unwrap();
    assert!(
        chunks.windows(2).any(|w| w[1].char_start < w[0].char_end),
        "no overlapping neighbours"
    );
    // Invalid settings are refused with the setting's name.
    let mut bad = TestEnv::embedded();
    bad.extra_env = vec![("ENCLAVE_CHUNKING__MAX_TOKENS".into(), "300".into())];
    let out = bad.command().args(["status"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chunking.max_tokens"));
}
