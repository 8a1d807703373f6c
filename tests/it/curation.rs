//! Curation over the REST API on PostgreSQL: edits that survive a re-index, a chunk or a
//! document taken out of retrieval (and back), moves between collections, per-collection
//! settings (chunk size used by the next ingest), rename, bulk actions by ids and by filter,
//! the audit trail, and the admin pages (forms without a browser: confirmation, cross-site
//! refusal).

use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::common::{PgDatabase, TestEnv, assert_consistent};
use crate::http::{Server, api_key, expect_error, file_part};

const CONTRACT: &str = "Supplier contract review.\n\nThe termination clause of the supplier \
    contract allows either party to end the agreement with ninety days notice. Early \
    termination by the buyer costs a penalty of forty thousand euros, payable within thirty \
    days. The supplier may terminate at once if invoices stay unpaid for sixty days.\n\n\
    Renewal happens automatically every January unless one party objects in writing before \
    the first of November. Prices are indexed to the consumer price index each renewal.\n";

const HOLIDAYS: &str = "Office holiday schedule.\n\nThe office closes between Christmas and \
    New Year. Staff who need access during the closure ask the facilities desk for a badge. \
    The canteen reopens on the second working day of January.\n";

fn text_form(collection: &str, name: &str, text: &str) -> Form {
    Form::new()
        .text("collection", collection.to_string())
        .part("file", file_part(name, text.as_bytes().to_vec()))
}

async fn search(s: &Server, key: &str, body: Value) -> Value {
    let r = s
        .post(key, "/api/v1/search")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Chunk ids of a search's passages.
fn chunk_ids(found: &Value) -> Vec<String> {
    found["passages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["chunk_id"].as_str().unwrap().to_string())
        .collect()
}

fn documents_of(found: &Value) -> Vec<String> {
    found["passages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["document_id"].as_str().unwrap().to_string())
        .collect()
}

async fn patch(s: &Server, key: &str, path: &str, body: Value) -> reqwest::Response {
    s.client
        .patch(s.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(s: &Server, key: &str, path: &str) -> (StatusCode, Value) {
    let r = s.get(key, path).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn curation_over_the_api_on_postgres() {
    let db = PgDatabase::create().await;
    let env = TestEnv::postgres(&db);
    let admin = api_key(&env, "admin");
    let editor = api_key(&env, "editor");
    let reader = api_key(&env, "reader");
    // A second model collections may choose: the small model under another name.
    let other = env.docs().join("other-smollm.gguf");
    std::os::unix::fs::symlink(crate::http::small_model(), &other).unwrap();
    let other = other.display().to_string();
    let s = Server::start(
        &env,
        &[("ENCLAVE_GENERATION__MODELS__OTHER", other.as_str())],
    );
    assert_eq!(s.ready().await.0, StatusCode::OK);
    for name in ["legal", "archive"] {
        let r = s
            .post(&admin, "/api/v1/collections")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let (_, a) = s
        .upload(&editor, text_form("legal", "contract.txt", CONTRACT))
        .await;
    let (_, b) = s
        .upload(&editor, text_form("legal", "holidays.txt", HOLIDAYS))
        .await;
    let a_id = a["id"].as_str().unwrap().to_string();
    let b_id = b["id"].as_str().unwrap().to_string();
    for id in [&a_id, &b_id] {
        assert_eq!(s.settled(&editor, id).await["status"], "ready");
    }
    let question = json!({"query": "penalty for early termination of the supplier contract",
        "collections": ["legal"], "limit": 10});
    let found = search(&s, &reader, question.clone()).await;
    assert_eq!(
        found["passages"][0]["document_id"],
        a_id.as_str(),
        "{found}"
    );
    let top = found["passages"][0]["chunk_id"]
        .as_str()
        .unwrap()
        .to_string();

    // One chunk out of retrieval, then back in.
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}/chunks/{top}"),
        json!({"disabled": true}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], true);
    let found = search(&s, &reader, question.clone()).await;
    assert!(!chunk_ids(&found).contains(&top), "{found}");
    // Readers no longer see the chunk at all; curators see it flagged.
    let (_, chunks) = get(&s, &reader, &format!("/api/v1/documents/{a_id}/chunks")).await;
    assert!(
        chunks["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != top.as_str()),
        "{chunks}"
    );
    let (_, chunks) = get(&s, &editor, &format!("/api/v1/documents/{a_id}/chunks")).await;
    let flags: Vec<_> = chunks["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["disabled"] == true)
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(flags, vec![top.clone()]);
    // A chunk of another document is not this document's.
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{b_id}/chunks/{top}"),
        json!({"disabled": false}),
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found", "has no chunk").await;
    let r = patch(
        &s,
        &reader,
        &format!("/api/v1/documents/{a_id}/chunks/{top}"),
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}/chunks/{top}"),
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(chunk_ids(&search(&s, &reader, question.clone()).await).contains(&top));

    // Title, tags and metadata: searchable by the new tag, kept through a re-index.
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}"),
        json!({"title": "Supplier contract memo", "tags": ["contracts", " contracts ", "2024"],
            "metadata": {"matter": "M-17"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["title"], "Supplier contract memo");
    assert_eq!(d["tags"], json!(["contracts", "2024"]));
    let tagged = |tag: &str| json!({"query": "termination penalty", "collections": ["legal"], "tags": [tag]});
    assert_eq!(
        documents_of(&search(&s, &reader, tagged("contracts")).await)[0],
        a_id
    );
    assert!(documents_of(&search(&s, &reader, tagged("nothing-has-this")).await).is_empty());
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}"),
        json!({"metadata": [1, 2]}),
    )
    .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "JSON object",
    )
    .await;
    let r = s
        .post(&editor, &format!("/api/v1/documents/{a_id}/reindex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let d = s.settled(&editor, &a_id).await;
    assert_eq!(d["status"], "ready");
    assert_eq!(d["version"], 2, "{d}");
    assert_eq!(
        d["title"], "Supplier contract memo",
        "a re-index keeps the curator's title"
    );
    assert_eq!(d["metadata"]["matter"], "M-17");
    assert_eq!(
        documents_of(&search(&s, &reader, tagged("contracts")).await)[0],
        a_id
    );

    // The whole document out of retrieval, listed as disabled, then back.
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}"),
        json!({"disabled": true}),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], true);
    assert!(!documents_of(&search(&s, &reader, question.clone()).await).contains(&a_id));
    let (_, listed) = get(&s, &editor, "/api/v1/documents?disabled=true").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["documents"][0]["id"], a_id.as_str());
    // Readers do not see it at all: not listed, not found.
    let (_, listed) = get(&s, &reader, "/api/v1/documents?disabled=true").await;
    assert_eq!(listed["total"], 0, "{listed}");
    let r = s
        .get(&reader, &format!("/api/v1/documents/{a_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}"),
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(
        documents_of(&search(&s, &reader, question.clone()).await)[0],
        a_id
    );

    // Listing: search words, sorting.
    let (_, listed) = get(&s, &reader, "/api/v1/documents?q=HOLIDAY").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["documents"][0]["id"], b_id.as_str());
    let (_, listed) = get(&s, &reader, "/api/v1/documents?sort=title&order=asc").await;
    let titles: Vec<_> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = titles.clone();
    sorted.sort_by_key(|t| t.to_lowercase());
    assert_eq!(titles, sorted);
    let r = s
        .get(&reader, "/api/v1/documents?sort=colour")
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "unknown sort",
    )
    .await;

    // Move to another collection: searched there, not here.
    let r = patch(
        &s,
        &editor,
        &format!("/api/v1/documents/{a_id}"),
        json!({"collection": "archive"}),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["collection"], "archive");
    assert!(!documents_of(&search(&s, &reader, question.clone()).await).contains(&a_id));
    let in_archive = json!({"query": "penalty for early termination of the supplier contract",
        "collections": ["archive"]});
    assert_eq!(
        documents_of(&search(&s, &reader, in_archive.clone()).await)[0],
        a_id
    );

    // Collection settings: checked, shown, and the chunk size used by the next ingest.
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/legal",
        json!({"chunk_tokens": 5}),
    )
    .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "chunk_tokens",
    )
    .await;
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/legal",
        json!({"chunk_tokens": 32, "chunk_overlap": 40}),
    )
    .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "overlap").await;
    let r = patch(
        &s,
        &editor,
        "/api/v1/collections/legal",
        json!({"passages": 2}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/legal",
        json!({"name": "legal-2", "chunk_tokens": 32, "chunk_overlap": 4, "passages": 2,
            "system_prompt": "Answer in one sentence, citing [n]."}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    assert_eq!(
        (
            c["name"].clone(),
            c["chunk_tokens"].clone(),
            c["passages"].clone()
        ),
        (json!("legal-2"), json!(32), json!(2)),
        "{c}"
    );
    assert_eq!(
        get(&s, &reader, "/api/v1/collections/legal").await.0,
        StatusCode::NOT_FOUND
    );
    // Only the listed settings change; `null` goes back to the default.
    let c: Value = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"passages": null}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (c["passages"].clone(), c["chunk_tokens"].clone()),
        (Value::Null, json!(32))
    );
    // A passage margin from 0 to 2, shown; out of range, refused by name.
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"passage_margin": 2.5}),
    )
    .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "passage_margin 2.5",
    )
    .await;
    let c: Value = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"passage_margin": 0.1}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(c["passage_margin"], json!(0.1), "{c}");
    // Reading order: stored and shown; anything but true, false or null is refused.
    let c: Value = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"reading_order": true}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(c["reading_order"], json!(true), "{c}");
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"reading_order": "sometimes"}),
    )
    .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "\"sometimes\", expected a boolean",
    )
    .await;
    // Fusion weights go together, and are shown.
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"dense_weight": 1.4}),
    )
    .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "bm25_weight",
    )
    .await;
    let c: Value = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"dense_weight": 1.4, "bm25_weight": 0.6}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (
            c["dense_weight"].clone(),
            c["bm25_weight"].clone(),
            c["chunk_tokens"].clone()
        ),
        (json!(1.4), json!(0.6), json!(32)),
        "{c}"
    );
    let (_, c3) = s
        .upload(&editor, text_form("legal-2", "contract-copy.txt", CONTRACT))
        .await;
    let c3_id = c3["id"].as_str().unwrap().to_string();
    assert_eq!(s.settled(&editor, &c3_id).await["status"], "ready");
    // A search of the collection ranks with its own weights; then they are cleared.
    let found = search(
        &s,
        &admin,
        json!({"query": "penalty for early termination", "collections": ["legal-2"]}),
    )
    .await;
    assert!(
        found["passages"].as_array().is_some_and(|p| !p.is_empty()),
        "{found}"
    );
    let c: Value = patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"dense_weight": null, "bm25_weight": null}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (c["dense_weight"].clone(), c["bm25_weight"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, small) = get(&s, &reader, &format!("/api/v1/documents/{c3_id}/chunks")).await;
    let (_, large) = get(&s, &reader, &format!("/api/v1/documents/{a_id}/chunks")).await;
    let small = small["chunks"].as_array().unwrap();
    let large = large["chunks"].as_array().unwrap();
    assert!(
        small.len() > large.len() && small.len() >= 4,
        "32-token chunks: {} vs {} with the default size",
        small.len(),
        large.len()
    );
    assert!(small.iter().all(|c| c["token_count"].as_i64().unwrap()
        <= 32 + enclave_ingest::chunk::join_allowance(32) as i64));

    // A collection's model: only one the server offers; questions to it get that model.
    let r = patch(
        &s,
        &admin,
        "/api/v1/collections/archive",
        json!({"model": "gpt-9"}),
    )
    .await;
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "unknown model",
    )
    .await;
    let c: Value = patch(
        &s,
        &admin,
        "/api/v1/collections/archive",
        json!({"model": "other"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(c["model"], "other", "{c}");
    let ask = |collection: &str| {
        s.post(&reader, "/api/v1/ask").json(&json!({
            "question": "What does early termination of the supplier contract cost?",
            "collections": [collection]}))
    };
    let answer: Value = ask("archive").send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["model"], "other-smollm.gguf", "{answer}");
    assert!(!answer["refused"].as_bool().unwrap(), "{answer}");
    // Another collection: the default model, and its own number of passages.
    patch(
        &s,
        &admin,
        "/api/v1/collections/legal-2",
        json!({"passages": 1}),
    )
    .await;
    let answer: Value = ask("legal-2").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["model"], "SmolLM2-135M-Instruct.Q4_1.gguf",
        "{answer}"
    );
    assert_eq!(answer["passages"].as_array().unwrap().len(), 1, "{answer}");

    // Bulk: a filter must narrow; move by ids; delete by filter (vectors gone).
    let r = s
        .post(&editor, "/api/v1/documents/bulk")
        .json(&json!({"action": "delete", "filter": {}}))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "no criterion",
    )
    .await;
    let r = s
        .post(&editor, "/api/v1/documents/bulk")
        .json(&json!({"action": "shred", "ids": [b_id]}))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "unknown action",
    )
    .await;
    let out: Value = s
        .post(&editor, "/api/v1/documents/bulk")
        .json(&json!({"action": "move", "ids": [b_id.clone(), c3_id.clone()], "collection": "archive"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (out["matched"].clone(), out["succeeded"].clone()),
        (json!(2), json!(2)),
        "{out}"
    );
    let (_, listed) = get(&s, &reader, "/api/v1/documents?collection=archive").await;
    assert_eq!(listed["total"], 3);
    let out: Value = s
        .post(&editor, "/api/v1/documents/bulk")
        .json(&json!({"action": "delete", "filter": {"collection": "archive", "tag": "contracts"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (out["matched"].clone(), out["succeeded"].clone()),
        (json!(1), json!(1)),
        "{out}"
    );
    assert_eq!(
        get(&s, &reader, &format!("/api/v1/documents/{a_id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let left = documents_of(&search(&s, &reader, in_archive).await);
    assert!(!left.contains(&a_id), "{left:?}");
    assert!(left.contains(&c3_id), "{left:?}");

    // Everything above is in the audit log, by who did it.
    let (_, log) = get(&s, &admin, "/api/v1/audit?limit=200").await;
    let actions: Vec<_> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "disable_chunk",
        "enable_chunk",
        "edit",
        "disable",
        "enable",
        "move",
        "rename_collection",
        "update_collection",
        "delete",
    ] {
        assert!(actions.iter().any(|x| x == a), "no '{a}' in {actions:?}");
    }
    drop(s);
    assert_consistent(&env).await;
    db.drop_now().await;
}

#[tokio::test]
async fn admin_forms_confirm_deletes_and_refuse_other_sites() {
    let env = TestEnv::embedded();
    let s = Server::start(&env, &[("ENCLAVE_AUTH", "off")]);
    assert_eq!(s.ready().await.0, StatusCode::OK);
    let key = api_key(&env, "admin");
    s.post(&key, "/api/v1/collections")
        .json(&json!({"name": "notes"}))
        .send()
        .await
        .unwrap();
    let (_, a) = s
        .upload(&key, text_form("notes", "holidays.txt", HOLIDAYS))
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(s.settled(&key, &id).await["status"], "ready");
    let no_redirects = crate::http::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Authentication is off here: only the same-origin check stands between another site
    // and the forms.
    let r = no_redirects
        .post(s.url(&format!("/admin/documents/{id}/delete")))
        .header("Origin", "https://elsewhere.example")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = no_redirects
        .post(s.url(&format!("/admin/documents/{id}/delete")))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Without the confirmation: a page that asks, and nothing deleted.
    let r = no_redirects
        .post(s.url(&format!("/admin/documents/{id}/delete")))
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("cannot be undone"));
    assert_eq!(
        get(&s, &key, &format!("/api/v1/documents/{id}")).await.0,
        StatusCode::OK
    );
    // The table finds it; the detail page shows its chunks; a bad metadata edit is refused.
    let html = no_redirects
        .get(s.url("/admin/documents?q=holiday"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("/admin/documents/{id}")), "{html}");
    let html = no_redirects
        .get(s.url(&format!("/admin/documents/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Disable chunk") && html.contains("Office holiday schedule"));
    let r = no_redirects
        .post(s.url(&format!("/admin/documents/{id}/edit")))
        .form(&[
            ("title", "Holidays"),
            ("tags", "hr"),
            ("metadata", "{not json"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("not valid JSON"));
    // Bulk delete from the table asks first, then deletes.
    let form = [
        ("action", "delete"),
        ("scope", "matching"),
        ("q", "holiday"),
    ];
    let r = no_redirects
        .post(s.url("/admin/documents/bulk"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Delete 1 document"));
    let r = no_redirects
        .post(s.url("/admin/documents/bulk"))
        .form(&[
            ("action", "delete"),
            ("scope", "matching"),
            ("q", "holiday"),
            ("confirm", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("notice="), "{location}");
    assert_eq!(
        get(&s, &key, &format!("/api/v1/documents/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    // A collection is deleted only when its name is typed again.
    let r = no_redirects
        .post(s.url("/admin/collections/notes/delete"))
        .form(&[("confirm_name", "note")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        get(&s, &key, "/api/v1/collections/notes").await.0,
        StatusCode::OK
    );
    let r = no_redirects
        .post(s.url("/admin/collections/notes/delete"))
        .form(&[("confirm_name", "notes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        get(&s, &key, "/api/v1/collections/notes").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admin_pages_in_a_browser() {
    use std::path::PathBuf;
    use std::process::Stdio;

    use crate::common::corpus_file;
    use crate::http::{run_tool, tool};

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    tool(
        root.join("tests/browser/node_modules/playwright-core"),
        "cd tests/browser && npm ci",
    );
    tool(
        PathBuf::from("/usr/bin/chromium"),
        "apt-get install chromium",
    );
    let env = TestEnv::embedded();
    env.run(&["users", "add", "carol", "--role", "admin"]);
    let password = "staple battery horse";
    let mut set = env.command();
    set.args(["users", "password", "carol", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{password}\n").as_bytes(),
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let s = Server::start(&env, &[]);
    assert_eq!(s.ready().await.0, StatusCode::OK);
    let text = env.docs().join("holidays.txt");
    std::fs::write(&text, HOLIDAYS).unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = std::process::Command::new("node");
    browser
        .arg(root.join("tests/browser/admin.mjs"))
        .env("ENCLAVE_URL", &s.url)
        .env("ENCLAVE_USER", "carol")
        .env("ENCLAVE_PASSWORD", password)
        .env("ENCLAVE_PDF", corpus_file("simh__hpiop.pdf"))
        .env("ENCLAVE_TEXT", &text)
        .env("ENCLAVE_QUERY", "IOP instruction set microcode assists")
        .env("SCREENSHOT_DIR", &shots);
    run_tool(browser, "the admin pages in Chromium");
    // What the browser did is in the stores: one document left, nothing of the deleted one.
    drop(s);
    assert_consistent(&env).await;
    let meta = env.meta().await;
    assert_eq!(meta.documents(None).await.unwrap().len(), 1);
}
