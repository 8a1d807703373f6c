//! Retrieval over a real PDF: known answers on known pages, filters inside the search,
//! relevance threshold, modes, and the eval set's own scoring.

use std::sync::Arc;

use enclave_retrieval::eval::{ModeReport, parse_set};
use enclave_retrieval::{RetrievalOptions, Retriever, SearchMode, SearchRequest};

use crate::common::{TestEnv, corpus_file, embedder};

const FAQ: &str = "debian-faq__FAQ__debian-faq.en.pdf";

async fn retriever(env: &TestEnv) -> Retriever {
    let embedder = embedder().await;
    Retriever::new(
        env.meta().await,
        Arc::new(env.vectors()),
        embedder,
        RetrievalOptions::default(),
    )
    .unwrap()
}

fn request(query: &str, mode: SearchMode) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        mode,
        limit: 5,
        ..Default::default()
    }
}

#[tokio::test]
async fn known_answers_come_from_their_pages() {
    let env = TestEnv::embedded();
    let faq = env.docs().join(FAQ);
    std::fs::copy(corpus_file(FAQ), &faq).unwrap();
    let memo = env.docs().join("memo.txt");
    std::fs::write(
        &memo,
        "Internal memo: the Debian mirror in the basement is retired.\n",
    )
    .unwrap();
    env.run(&[
        "ingest",
        "--collection",
        "faq",
        "--access",
        "staff",
        faq.to_str().unwrap(),
    ]);
    env.run(&[
        "ingest",
        "--collection",
        "memos",
        "--access",
        "hr",
        memo.to_str().unwrap(),
    ]);
    let r = retriever(&env).await;

    // The answer section of FAQ 9.1 starts on page 49 of the PDF.
    for mode in [SearchMode::Hybrid, SearchMode::Dense, SearchMode::Bm25] {
        let res = r
            .search(&request("How can I keep my Debian system current?", mode))
            .await
            .unwrap();
        assert!(res.relevant, "{mode}");
        assert!(
            res.passages.iter().any(|p| p.source_uri.ends_with(FAQ)
                && p.chunk.page_start <= 49
                && 49 <= p.chunk.page_end),
            "{mode}: page 49 not in the top 5: {:#?}",
            res.passages
                .iter()
                .map(|p| (p.chunk.page_start, p.scores.clone()))
                .collect::<Vec<_>>()
        );
        // Ordered by fused score, no overlapping duplicates, scores reported per channel.
        assert!(
            res.passages
                .windows(2)
                .all(|w| w[0].scores.fused >= w[1].scores.fused)
        );
        for p in &res.passages {
            match mode {
                SearchMode::Dense => assert!(p.scores.dense.is_some()),
                SearchMode::Bm25 => assert!(p.scores.bm25.is_some()),
                SearchMode::Hybrid => assert!(p.scores.dense.is_some() || p.scores.bm25.is_some()),
            }
        }
    }

    // Filters run inside the search: collection and access tags.
    let mut only_memos = request("Debian mirror", SearchMode::Hybrid);
    only_memos.collections = vec!["memos".into()];
    let res = r.search(&only_memos).await.unwrap();
    assert!(!res.passages.is_empty());
    assert!(
        res.passages
            .iter()
            .all(|p| p.source_uri.ends_with("memo.txt"))
    );
    let mut no_access = request("Debian mirror", SearchMode::Hybrid);
    no_access.access = vec!["finance".into()];
    assert!(r.search(&no_access).await.unwrap().passages.is_empty());
    let mut staff = request("Debian mirror", SearchMode::Hybrid);
    staff.access = vec!["staff".into()];
    let res = r.search(&staff).await.unwrap();
    assert!(res.passages.iter().all(|p| p.source_uri.ends_with(FAQ)));

    // Off-corpus: nothing relevant, the nearest passages still shown.
    let res = r
        .search(&request(
            "How long should I bake sourdough bread?",
            SearchMode::Hybrid,
        ))
        .await
        .unwrap();
    assert!(
        !res.relevant,
        "{:#?}",
        res.passages.first().map(|p| &p.scores)
    );

    // Neighbour expansion widens the passage around the chunk.
    let mut wide = request("What is this FAQ?", SearchMode::Hybrid);
    wide.expand_neighbours = true;
    let res = r.search(&wide).await.unwrap();
    let p = &res.passages[0];
    assert!(p.context.len() > p.chunk.text.len() && p.context.contains(p.chunk.text.as_str()));

    // Bad requests are named.
    let mut unknown = request("x", SearchMode::Hybrid);
    unknown.collections = vec!["nope".into()];
    assert!(
        r.search(&unknown)
            .await
            .unwrap_err()
            .to_string()
            .contains("'nope'")
    );
    assert!(r.search(&request("  ", SearchMode::Hybrid)).await.is_err());

    // The committed Debian FAQ set: hybrid finds most answers in the top 5.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eval/debian-faq.jsonl"
    ))
    .unwrap();
    let items = parse_set(&text).unwrap();
    assert!(items.len() > 100);
    let mut report = ModeReport::default();
    for item in &items {
        let mut q = request(&item.question, SearchMode::Hybrid);
        q.limit = 10;
        q.collections = vec!["faq".into()];
        report.add(item, &r.search(&q).await.unwrap());
    }
    assert!(
        report.recall_at_5() > 0.8,
        "recall@5 = {}",
        report.recall_at_5()
    );
    assert!(
        report.refusal_accuracy() >= 0.8,
        "refusals {}",
        report.refusal_accuracy()
    );
}
