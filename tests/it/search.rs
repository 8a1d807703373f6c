//! Retrieval over a real PDF: known answers on known pages, filters inside the search,
//! relevance threshold, modes, and the eval set's own scoring.

use enclave_retrieval::contents::is_table_of_contents;
use enclave_retrieval::eval::{ModeReport, parse_set};
use enclave_retrieval::{
    RefuseUnmatched, RetrievalOptions, Retriever, Scope, SearchMode, SearchRequest,
    parse_date_bound,
};

use crate::common::{TestEnv, corpus_file, embedder};

const FAQ: &str = "debian-faq__FAQ__debian-faq.en.pdf";

async fn retriever(env: &TestEnv) -> Retriever {
    let embedder = embedder().await;
    Retriever::new(
        env.meta().await,
        env.vectors(),
        embedder,
        RetrievalOptions::default(),
    )
    .unwrap()
}

fn request(query: &str, mode: SearchMode) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        mode: Some(mode),
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
    let farm = env.docs().join("farm.txt");
    std::fs::write(
        &farm,
        "Kestrel is the build farm of the payroll team: it compiles the payroll software \
         every night and keeps the last seven builds.\n",
    )
    .unwrap();
    env.run(&["groups", "create", "staff"]);
    env.run(&["groups", "create", "hr"]);
    env.run(&[
        "ingest",
        "--collection",
        "faq",
        "--allow-group",
        "staff",
        faq.to_str().unwrap(),
    ]);
    env.run(&[
        "ingest",
        "--collection",
        "memos",
        "--allow-group",
        "hr",
        memo.to_str().unwrap(),
    ]);
    env.run(&[
        "ingest",
        "--collection",
        "farm",
        "--allow-group",
        "hr",
        farm.to_str().unwrap(),
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
            // Only hybrid search adds the sentence ranking.
            assert_eq!(p.scores.sentence.is_some(), mode == SearchMode::Hybrid);
        }
    }
    // Tables of contents rank after every passage of content, though BM25 alone ranks the
    // FAQ's, which lists "aptitude" among short titles, above some of them.
    let mut wide = request("aptitude", SearchMode::Bm25);
    wide.limit = 200;
    let res = r.search(&wide).await.unwrap();
    let first_table = res
        .passages
        .iter()
        .position(|p| is_table_of_contents(&p.chunk.text))
        .expect("the table of contents lists aptitude");
    let (content, tables) = res.passages.split_at(first_table);
    assert!(tables.iter().all(|p| is_table_of_contents(&p.chunk.text)));
    let lowest = content
        .iter()
        .filter_map(|p| p.scores.bm25)
        .fold(f32::MAX, f32::min);
    assert!(
        tables.iter().any(|p| p.scores.bm25.unwrap() > lowest),
        "{lowest} {:?}",
        tables.iter().map(|p| p.scores.bm25).collect::<Vec<_>>()
    );

    // The sentence ranking, made to outweigh the other two, alone orders the passages, drawn
    // from the same best fused candidates.
    let q = request(
        "How can I keep my Debian system current?",
        SearchMode::Hybrid,
    );
    let nearest = |res: &enclave_retrieval::SearchResults| -> Vec<f32> {
        res.passages
            .iter()
            .map(|p| p.scores.sentence.unwrap())
            .collect()
    };
    let fused = nearest(&r.search(&q).await.unwrap());
    let by_sentence = Retriever::new(
        r.meta().clone(),
        r.vectors(),
        embedder().await,
        RetrievalOptions {
            sentence_weight: 1000.0,
            ..RetrievalOptions::default()
        },
    )
    .unwrap();
    let sorted = nearest(&by_sentence.search(&q).await.unwrap());
    assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "{sorted:?}");
    assert!(
        sorted[0] >= fused.iter().copied().fold(f32::MIN, f32::max),
        "{sorted:?} {fused:?}"
    );

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
    // A collection's mode setting applies when the request names none.
    let meta = env.meta().await;
    let memos = meta.collection_by_name("memos").await.unwrap().unwrap();
    meta.set_collection_settings(&memos.id, &serde_json::json!({"mode": "bm25"}))
        .await
        .unwrap();
    let mut default_mode = only_memos.clone();
    default_mode.mode = None;
    assert_eq!(
        r.search(&default_mode).await.unwrap().mode,
        SearchMode::Bm25
    );
    default_mode.collections = vec!["memos".into(), "faq".into()];
    assert_eq!(
        r.search(&default_mode).await.unwrap().mode,
        SearchMode::Hybrid,
        "collections that disagree: hybrid"
    );
    let mut no_access = request("Debian mirror", SearchMode::Hybrid);
    no_access.access = vec!["finance".into()];
    assert!(r.search(&no_access).await.unwrap().passages.is_empty());
    let mut staff = request("Debian mirror", SearchMode::Hybrid);
    let staff_group = meta.group_by_name("staff").await.unwrap().unwrap();
    staff.access = vec![format!("group:{}", staff_group.id)];
    let res = r.search(&staff).await.unwrap();
    assert!(res.passages.iter().all(|p| p.source_uri.ends_with(FAQ)));

    // Words no passage holds are named, within what the caller may read: "basement" is only
    // in the memo, which staff may not read; "Zypper" is nowhere.
    let zypper = "Is the Debian mirror in the basement retired for Zypper?";
    let mut q = request(zypper, SearchMode::Hybrid);
    let everyone = r.search(&q).await.unwrap();
    assert_eq!(everyone.unmatched_terms, vec!["Zypper"]);
    assert!(everyone.query_terms >= 4, "{}", everyone.query_terms);
    q.access = staff.access.clone();
    let res = r.search(&q).await.unwrap();
    assert!(
        res.unmatched_terms.starts_with(&["basement".to_string()])
            && res.unmatched_terms.ends_with(&["Zypper".to_string()]),
        "{:?}",
        res.unmatched_terms
    );
    let hr_group = meta.group_by_name("hr").await.unwrap().unwrap();
    q.access = vec![format!("group:{}", hr_group.id)];
    let res = r.search(&q).await.unwrap();
    assert_eq!(res.unmatched_terms, vec!["Zypper"]);
    // With retrieval.refuse_unmatched = "names" (the default) such a question finds nothing
    // relevant, however close its nearest passage; with "off" it does, and so does the same
    // question without the unknown word.
    assert!(!everyone.relevant, "{:?}", everyone.unmatched_terms);
    assert!(!everyone.passages.is_empty());
    let lenient = Retriever::new(
        r.meta().clone(),
        r.vectors(),
        embedder().await,
        RetrievalOptions {
            refuse_unmatched: RefuseUnmatched::Off,
            ..RetrievalOptions::default()
        },
    )
    .unwrap();
    let lenient_names = Retriever::new(
        r.meta().clone(),
        r.vectors(),
        embedder().await,
        RetrievalOptions {
            names_together: false,
            ..RetrievalOptions::default()
        },
    )
    .unwrap();
    let res = lenient
        .search(&request(zypper, SearchMode::Hybrid))
        .await
        .unwrap();
    assert!(res.relevant, "best dense {}", res.best_dense);
    let res = r
        .search(&request(
            "Is the Debian mirror in the basement retired?",
            SearchMode::Hybrid,
        ))
        .await
        .unwrap();
    assert!(res.relevant && res.unmatched_terms.is_empty());

    // Names no one document found holds together: every word of the question is somewhere,
    // but "Kestrel" only in the farm note and "Debian" only elsewhere.
    let apart = "Does Kestrel mirror the Debian archive?";
    let res = r.search(&request(apart, SearchMode::Hybrid)).await.unwrap();
    assert!(res.unmatched_terms.is_empty(), "{:?}", res.unmatched_terms);
    assert_eq!(res.names_apart, ["Kestrel", "Debian"]);
    assert!(!res.relevant, "names apart refuse by default");
    let res = lenient_names
        .search(&request(apart, SearchMode::Hybrid))
        .await
        .unwrap();
    assert!(res.relevant, "best dense {}", res.best_dense);
    // One document holding every name, or a question naming one that a found document holds,
    // is answered.
    for together in [
        "Does Kestrel compile the payroll software every night?",
        "Is the Debian mirror in the basement retired?",
    ] {
        let res = r
            .search(&request(together, SearchMode::Hybrid))
            .await
            .unwrap();
        assert!(
            res.names_apart.is_empty(),
            "{together}: {:?}",
            res.names_apart
        );
        assert!(res.relevant, "{together}: best dense {}", res.best_dense);
    }

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

fn email(from: &str, date: &str, subject: &str, body: &str, attachment: Option<&str>) -> String {
    let mut eml = format!(
        "From: {from}\r\nTo: Finance <finance@example.org>\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMIME-Version: 1.0\r\n"
    );
    match attachment {
        None => eml.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        )),
        Some(text) => eml.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--B\r\n\
             Content-Type: text/plain; name=\"figures.txt\"\r\n\
             Content-Disposition: attachment; filename=\"figures.txt\"\r\n\r\n\
             {text}\r\n--B--\r\n"
        )),
    }
    eml
}

#[tokio::test]
async fn date_and_sender_filters_run_inside_the_search() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    std::fs::write(
        docs.join("january.eml"),
        email(
            "Alice Archer <Alice@Example.org>",
            "Wed, 10 Jan 2024 09:00:00 +0000",
            "Budget review for the first quarter",
            "The quarterly budget review meets on Friday; travel spending is over plan.",
            Some("Quarterly budget review figures: travel 120 percent of plan."),
        ),
    )
    .unwrap();
    std::fs::write(
        docs.join("june.eml"),
        email(
            "\"Stone, Bob\" <bob@example.org>",
            "Thu, 20 Jun 2024 16:30:00 -0400",
            "Budget review for the second quarter",
            "The quarterly budget review is moved to Monday; hiring is under plan.",
            None,
        ),
    )
    .unwrap();
    std::fs::write(
        docs.join("memo.txt"),
        "Undated memo: the quarterly budget review template lives on the shared drive.\n",
    )
    .unwrap();
    env.run(&["ingest", docs.to_str().unwrap()]);
    let r = retriever(&env).await;
    let search = |scope: Scope| {
        let r = r.clone();
        async move {
            let mut q = request("quarterly budget review", SearchMode::Hybrid);
            q.scope = scope;
            let mut names: Vec<String> = r
                .search(&q)
                .await
                .unwrap()
                .passages
                .iter()
                .map(|p| p.source_uri.rsplit('/').next().unwrap().to_string())
                .collect();
            names.sort();
            names.dedup();
            names
        }
    };
    assert_eq!(
        search(Scope::default()).await,
        ["figures.txt", "january.eml", "june.eml", "memo.txt"]
    );
    // By sender: the address or the display name, in any case; the attachment goes with its
    // email.
    let by = |a: &str| Scope {
        authors: vec![a.into()],
        ..Default::default()
    };
    assert_eq!(
        search(by("alice@example.org")).await,
        ["figures.txt", "january.eml"]
    );
    assert_eq!(
        search(by("ALICE ARCHER")).await,
        ["figures.txt", "january.eml"]
    );
    assert_eq!(search(by("Stone, Bob")).await, ["june.eml"]);
    assert!(search(by("mallory@example.org")).await.is_empty());
    // By date: the whole day of each bound; undated documents are left out.
    let between = |from: Option<&str>, to: Option<&str>| Scope {
        date_from: from.map(|d| parse_date_bound(d, false).unwrap()),
        date_to: to.map(|d| parse_date_bound(d, true).unwrap()),
        ..Default::default()
    };
    assert_eq!(
        search(between(Some("2024-03-01"), None)).await,
        ["june.eml"]
    );
    assert_eq!(
        search(between(None, Some("2024-01-10"))).await,
        ["figures.txt", "january.eml"]
    );
    assert_eq!(
        search(between(Some("2024-06-20"), Some("2024-06-20"))).await,
        ["june.eml"]
    );
    assert!(
        search(between(Some("2024-02-01"), Some("2024-05-31")))
            .await
            .is_empty()
    );
    // Both filters at once, and an empty range is an error that says so.
    let mut both = between(Some("2024-01-01"), Some("2024-12-31"));
    both.authors = vec!["bob@example.org".into()];
    assert_eq!(search(both).await, ["june.eml"]);
    let mut q = request("quarterly budget review", SearchMode::Hybrid);
    q.scope = between(Some("2024-06-01"), Some("2024-01-01"));
    let err = r.search(&q).await.unwrap_err().to_string();
    assert!(err.contains("date range is empty"), "{err}");
}
