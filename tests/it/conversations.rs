//! Conversations over the REST API: a three-turn thread whose follow-ups are rewritten into
//! standalone questions (and retrieved with them), kept for its owner only, exported with every
//! citation, judged by its owner, withheld when a source is withdrawn, and deleted; and the
//! same rewrite for a history the caller keeps itself.

use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::common::{TestEnv, corpus_file};
use crate::http::{Server, api_key, file_part};

const QUESTION: &str = "What does the IOP instruction set do on the HP 2100?";
const FOLLOW_UPS: [&str; 2] = ["Which registers does it use?", "And how is it enabled?"];

async fn ask(s: &Server, key: &str, body: Value) -> (StatusCode, Value) {
    let r = s.post(key, "/api/v1/ask").json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// A follow-up's answer was retrieved with its rewrite: a search for the rewrite finds the
/// same passages, of which the model was given those within `generation.passage_margin`
/// (0.05, the default) of the best one's sentence score.
async fn retrieved_with_rewrite(s: &Server, key: &str, answer: &Value) {
    let rewrite = answer["rewrite"]["question"].as_str().unwrap();
    assert!(!rewrite.trim().is_empty(), "{answer}");
    // The passages found; a section's opening given with one of them was not searched for.
    let passages: Vec<String> = answer["passages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["section_lead"] != true)
        .map(|p| p["chunk_id"].as_str().unwrap().to_string())
        .collect();
    // As many as the server gives the model at most (`Server::start`).
    let r: Value = s
        .post(key, "/api/v1/search")
        .json(&json!({"query": rewrite, "limit": 3, "collections": ["ops"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sentence = |p: &Value| p["scores"]["sentence"].as_f64().unwrap();
    let found = r["passages"].as_array().unwrap();
    let best = found.iter().map(sentence).fold(f64::MIN, f64::max);
    let near: Vec<String> = found
        .iter()
        .filter(|p| sentence(p) >= best - 0.05 - 1e-6)
        .map(|p| p["chunk_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(near, passages, "searched as {rewrite:?}");
}

#[tokio::test]
async fn a_conversation_over_the_api() {
    let env = TestEnv::embedded();
    let admin = api_key(&env, "admin");
    for user in ["alice", "bob"] {
        env.run(&["users", "add", user, "--role", "reader"]);
    }
    let alice = env
        .run(&["keys", "create", "k-alice", "--user", "alice"])
        .trim()
        .to_string();
    let bob = env
        .run(&["keys", "create", "k-bob", "--user", "bob"])
        .trim()
        .to_string();
    let s = Server::start(&env, &[]);
    assert_eq!(s.ready().await.0, StatusCode::OK);
    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, doc) = s
        .upload(
            &admin,
            Form::new().text("collection", "ops").part(
                "file",
                file_part(
                    "hpiop.pdf",
                    std::fs::read(corpus_file("simh__hpiop.pdf")).unwrap(),
                ),
            ),
        )
        .await;
    let doc_id = doc["id"].as_str().unwrap().to_string();
    assert_eq!(s.settled(&admin, &doc_id).await["status"], "ready");

    // Three turns in a new conversation; each follow-up is rewritten and retrieved with it.
    let (status, first) = ask(
        &s,
        &alice,
        json!({"question": QUESTION, "collections": ["ops"], "conversation_id": "new"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(
        first["rewrite"].is_null(),
        "a first question stands alone: {first}"
    );
    let conversation = first["conversation_id"].as_str().unwrap().to_string();
    assert!(first["turn_id"].is_string(), "{first}");
    let mut answers = vec![first];
    for q in FOLLOW_UPS {
        let (status, a) = ask(
            &s,
            &alice,
            json!({"question": q, "collections": ["ops"], "conversation_id": conversation}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{a}");
        assert_eq!(a["conversation_id"], conversation.as_str());
        assert!(a["timings"]["rewrite_ms"].as_f64().unwrap() > 0.0, "{a}");
        retrieved_with_rewrite(&s, &alice, &a).await;
        answers.push(a);
    }

    // The thread is its owner's: listed, readable and searchable by alice only.
    let list = s.get_json(&alice, "/api/v1/conversations").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], conversation.as_str());
    assert_eq!(list[0]["turns"], 3);
    assert_eq!(list[0]["title"], QUESTION, "titled by its first question");
    let thread = s
        .get_json(&alice, &format!("/api/v1/conversations/{conversation}"))
        .await;
    let turns = thread["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{thread}");
    for (i, t) in turns.iter().enumerate() {
        assert_eq!(t["position"], i as i64 + 1);
        assert_eq!(t["id"], answers[i]["turn_id"]);
        assert_eq!(t["answer"]["text"], answers[i]["text"]);
        assert_eq!(t["withheld"], false);
        assert_eq!(
            t["standalone_question"].is_null(),
            i == 0,
            "only follow-ups are rewritten: {t}"
        );
    }
    let r = s.get(&bob, "/api/v1/conversations").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    for path in [
        format!("/api/v1/conversations/{conversation}"),
        format!("/api/v1/conversations/{conversation}/export"),
    ] {
        let r = s.get(&bob, &path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let (status, body) = ask(
        &s,
        &bob,
        json!({"question": FOLLOW_UPS[0], "conversation_id": conversation}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let r = s
        .post(
            &bob,
            &format!(
                "/api/v1/answers/{}/feedback",
                answers[1]["turn_id"].as_str().unwrap()
            ),
        )
        .json(&json!({"helpful": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Renamed, then found by its title, its questions and its answers' words.
    let r = s
        .client
        .patch(s.url(&format!("/api/v1/conversations/{conversation}")))
        .bearer_auth(&alice)
        .json(&json!({"title": "HP 2100 input/output"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (q, found) in [("input/output", 1), ("REGISTERS", 1), ("souffle", 0)] {
        let list: Value = s
            .get(&alice, &format!("/api/v1/conversations?q={}", urlencode(q)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), found, "{q}: {list}");
    }

    // The export holds every question and every citation, linked to its passage.
    let r = s
        .get(
            &alice,
            &format!("/api/v1/conversations/{conversation}/export"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let markdown = r.text().await.unwrap();
    assert!(
        markdown.starts_with("# HP 2100 input/output\n"),
        "{markdown}"
    );
    let mut cited = 0;
    for (i, a) in answers.iter().enumerate() {
        let question = if i == 0 { QUESTION } else { FOLLOW_UPS[i - 1] };
        assert!(markdown.contains(question), "{question} in {markdown}");
        for c in a["citations"].as_array().unwrap() {
            let link = format!("{}{}#cited", s.url, c["url"].as_str().unwrap());
            assert!(markdown.contains(&link), "{link} in {markdown}");
            cited += 1;
        }
        if a["rewrite"]["question"].is_string() {
            assert!(markdown.contains("*Searched as:*"), "{markdown}");
        }
    }
    assert!(cited > 0, "the answers cite their sources");

    // The PDF export: the same questions, and one link to each cited passage.
    let r = s
        .get(
            &alice,
            &format!("/api/v1/conversations/{conversation}/export?format=pdf"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let links = String::from_utf8_lossy(&pdf).matches("#cited)").count();
    assert_eq!(links, cited, "one link annotation per citation");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("thread.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let text = std::process::Command::new("pdftotext")
        .args([file.to_str().unwrap(), "-"])
        .output()
        .unwrap();
    assert!(text.status.success(), "pdftotext reads the export");
    let text = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for q in [
        QUESTION,
        FOLLOW_UPS[0],
        FOLLOW_UPS[1],
        "HP 2100 input/output",
    ] {
        assert!(text.contains(q), "{q} in the PDF: {text}");
    }
    let r = s
        .get(
            &alice,
            &format!("/api/v1/conversations/{conversation}/export?format=docx"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Feedback: a thumbs down with a comment and the right source, seen by administrators
    // with what the answer was made of.
    let turn = answers[1]["turn_id"].as_str().unwrap();
    let r = s
        .post(&alice, &format!("/api/v1/answers/{turn}/feedback"))
        .json(&json!({"helpful": false, "comment": "names no register", "right_document": doc_id, "right_page": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let given: Value = r.json().await.unwrap();
    assert_eq!(given["question"], FOLLOW_UPS[0]);
    assert_eq!(
        given["retrieved"].as_array().unwrap().len(),
        answers[1]["passages"].as_array().unwrap().len()
    );
    // With the settings the answer was made under, as the answer itself reported them.
    assert_eq!(given["settings"]["mode"], "hybrid", "{given}");
    assert_eq!(given["settings"]["model_refusal"], false, "{given}");
    assert!(
        given["settings"]["passages"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{given}"
    );
    assert_eq!(given["settings"], answers[1]["settings"], "{given}");
    let r = s
        .post(&alice, &format!("/api/v1/answers/{turn}/feedback"))
        .json(&json!({"helpful": false, "right_page": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.get(&alice, "/api/v1/feedback").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let poor = s.get_json(&admin, "/api/v1/feedback?unhelpful=true").await;
    assert_eq!(poor.as_array().unwrap().len(), 1, "{poor}");
    assert_eq!(poor[0]["comment"], "names no register");
    assert_eq!(poor[0]["right_document_id"], doc_id.as_str());
    assert_eq!(poor[0]["right_page"], 2);
    // Curators: an editor of ops sees the verdict on an answer from ops; an editor of another
    // collection sees none and cannot make it an evaluation case.
    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "hr"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut curators = Vec::new();
    for (user, collection) in [("carol", "ops"), ("dave", "hr")] {
        env.run(&["users", "add", user, "--role", "none"]);
        env.run(&[
            "grants",
            "add",
            "--user",
            user,
            "--collection",
            collection,
            "--role",
            "editor",
        ]);
        let name = format!("k-{user}");
        let key = env.run(&["keys", "create", &name, "--user", user, "--role", "editor"]);
        curators.push(key.trim().to_string());
    }
    let (carol, dave) = (&curators[0], &curators[1]);
    let seen = s.get_json(carol, "/api/v1/feedback?unhelpful=true").await;
    assert_eq!(seen.as_array().map(Vec::len), Some(1), "{seen}");
    assert_eq!(seen[0]["id"], poor[0]["id"]);
    let unseen = s.get_json(dave, "/api/v1/feedback").await;
    assert_eq!(unseen, json!([]), "{unseen}");
    let r = s
        .post(
            dave,
            &format!(
                "/api/v1/feedback/{}/eval-case",
                poor[0]["id"].as_str().unwrap()
            ),
        )
        .json(&json!({"collection": "hr", "unanswerable": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let thread = s
        .get_json(&alice, &format!("/api/v1/conversations/{conversation}"))
        .await;
    assert_eq!(thread["turns"][1]["feedback"]["helpful"], false);

    // The source is withdrawn from alice: her saved answers made from it are withheld, in the
    // thread, the export and a follow-up's history.
    let r = s
        .client
        .patch(s.url(&format!("/api/v1/documents/{doc_id}")))
        .bearer_auth(&admin)
        .json(&json!({"readers": {"users": ["bob"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let thread = s
        .get_json(&alice, &format!("/api/v1/conversations/{conversation}"))
        .await;
    for t in thread["turns"].as_array().unwrap() {
        assert_eq!(t["withheld"], true, "{t}");
        assert!(t["answer"].is_null(), "{t}");
    }
    let markdown = s
        .get(
            &alice,
            &format!("/api/v1/conversations/{conversation}/export"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for a in &answers {
        for c in a["citations"].as_array().unwrap() {
            assert!(!markdown.contains(c["url"].as_str().unwrap()), "{markdown}");
        }
    }

    // A history kept by the caller is rewritten the same way; it cannot come with a thread.
    let (status, stateless) = ask(
        &s,
        &bob,
        json!({"question": FOLLOW_UPS[0], "collections": ["ops"],
            "history": [{"question": QUESTION, "answer": answers[0]["text"]}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stateless}");
    assert!(stateless["conversation_id"].is_null(), "{stateless}");
    retrieved_with_rewrite(&s, &bob, &stateless).await;
    let (status, body) = ask(
        &s,
        &bob,
        json!({"question": FOLLOW_UPS[0], "conversation_id": "new",
            "history": [{"question": QUESTION, "answer": ""}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Deleted: gone for its owner; the verdict stays with the curators.
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/conversations/{conversation}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .get(&alice, &format!("/api/v1/conversations/{conversation}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let all = s.get_json(&admin, "/api/v1/feedback").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    // The verdict becomes a case of the collection's own evaluation set (the reader's pick is
    // the expected source); a curator adds an unanswerable one; a run scores both.
    let r = s
        .post(
            &admin,
            &format!(
                "/api/v1/feedback/{}/eval-case",
                given["id"].as_str().unwrap()
            ),
        )
        .json(&json!({"collection": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let case: Value = r.json().await.unwrap();
    assert_eq!(case["document_id"], doc_id.as_str());
    assert_eq!(case["pages"], json!([2]));
    assert_eq!(case["feedback_id"], given["id"]);
    let r = s
        .post(&admin, "/api/v1/collections/ops/eval/cases")
        .json(&json!({"question": "What is the recipe for a chocolate souffle?", "unanswerable": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .post(&admin, "/api/v1/collections/ops/eval/cases")
        .json(&json!({"question": "Where?", "document": doc_id, "pages": [9999]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "pages past the end"
    );
    let r = s
        .get(&alice, "/api/v1/collections/ops/eval/cases")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "readers do not curate");
    let r = s
        .post(&admin, "/api/v1/collections/ops/eval/runs")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["cases"], 2, "{run}");
    assert_eq!(run["modes"].as_array().unwrap().len(), 3, "{run}");
    assert!(
        run["settings"]["retrieval"]["min_dense_score"].is_number(),
        "{run}"
    );
    drop(s);
    // The command line runs the same set and keeps its run beside the first.
    let out = env.run(&["eval", "--collection", "ops"]);
    assert!(
        out.contains("collection 'ops': 1 answerable, 1 unanswerable questions"),
        "{out}"
    );
    let s = Server::start(&env, &[]);
    let runs = s
        .get_json(&admin, "/api/v1/collections/ops/eval/runs")
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[0]["actor"], "command line");
    // Retrieval only: no answers kept (the browser test keeps a run with answers).
    assert!(runs[0]["answers"].is_null(), "{runs}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
