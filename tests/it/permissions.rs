//! Permissions in the core, through the real server: random users, groups, grants and document
//! access lists over real documents, then thousands of random requests through every route
//! that shows anything of a document, checked against an independent model of the rules; a
//! DMS flow; the question audit; the hardening of sign-in, forms and the trusted mode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::common::{PgDatabase, TestEnv, corpus_dir};
use crate::http::{Server, api_key, created_password, file_part, sign_in};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Reader,
    Editor,
}

/// Everything the rules depend on, as the test set it up: the oracle.
#[derive(Default)]
struct World {
    collections: Vec<String>,
    users: Vec<Person>,
    groups: Vec<String>,
    /// user -> groups
    member_of: BTreeMap<usize, BTreeSet<usize>>,
    /// (user, collection) -> role, direct grants
    user_grants: BTreeMap<(usize, usize), Role>,
    /// (group, collection) -> role
    group_grants: BTreeMap<(usize, usize), Role>,
    docs: Vec<Doc>,
}

struct Person {
    name: String,
    password: String,
    /// A key acting for the user.
    key: String,
    /// Reader on every collection.
    reads_everything: bool,
}

#[derive(Debug, Clone)]
struct Doc {
    id: String,
    title: String,
    file: String,
    collection: usize,
    /// `None`: public; else the users and groups named.
    acl: Option<(BTreeSet<usize>, BTreeSet<usize>)>,
}

impl World {
    fn role(&self, user: usize, collection: usize) -> Option<Role> {
        let mut best = self.users[user].reads_everything.then_some(Role::Reader);
        if let Some(r) = self.user_grants.get(&(user, collection)) {
            best = best.max(Some(*r));
        }
        for g in self.member_of.get(&user).into_iter().flatten() {
            if let Some(r) = self.group_grants.get(&(*g, collection)) {
                best = best.max(Some(*r));
            }
        }
        best
    }

    fn can_read(&self, user: usize, doc: &Doc) -> bool {
        if self.role(user, doc.collection).is_none() {
            return false;
        }
        match &doc.acl {
            None => true,
            Some((users, groups)) => {
                users.contains(&user)
                    || self
                        .member_of
                        .get(&user)
                        .is_some_and(|mine| mine.iter().any(|g| groups.contains(g)))
            }
        }
    }

    fn readable_ids(&self, user: usize) -> BTreeSet<String> {
        self.docs
            .iter()
            .filter(|d| self.can_read(user, d))
            .map(|d| d.id.clone())
            .collect()
    }

    /// The titles and file names of the documents `user` may not read.
    fn secrets(&self, user: usize) -> Vec<String> {
        self.docs
            .iter()
            .filter(|d| !self.can_read(user, d))
            .flat_map(|d| [d.title.clone(), d.file.clone()])
            .collect()
    }
}

/// Small real documents of the corpus: the simulator manuals, smallest first.
fn small_documents(n: usize) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("simh__") && name.ends_with(".pdf")
        })
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    files.sort();
    assert!(
        files.len() >= n,
        "the corpus holds {} simh PDFs",
        files.len()
    );
    files.into_iter().take(n).map(|(_, p)| p).collect()
}

/// Builds a random world on a running server: collections, people, groups, grants, keys and
/// real documents with random access lists.
async fn build_world(env: &TestEnv, s: &Server, admin: &str, rng: &mut StdRng) -> World {
    let mut w = World {
        collections: vec!["c0".into(), "c1".into(), "c2".into()],
        groups: vec!["g0".into(), "g1".into(), "g2".into()],
        ..Default::default()
    };
    for c in &w.collections {
        let r = s
            .post(admin, "/api/v1/collections")
            .json(&json!({"name": c}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    for g in &w.groups {
        env.run(&["groups", "create", g]);
    }
    for i in 0..7 {
        let name = format!("u{i}");
        let reads_everything = i == 0 || rng.random_bool(0.2);
        let role = if reads_everything { "reader" } else { "none" };
        let out = env.run(&["users", "add", &name, "--role", role]);
        let password = created_password(&out);
        let key = env
            .run(&[
                "keys",
                "create",
                &format!("k-{name}"),
                "--role",
                "admin",
                "--user",
                &name,
            ])
            .trim()
            .to_string();
        for g in 0..w.groups.len() {
            if rng.random_bool(0.35) {
                env.run(&["groups", "add", &w.groups[g], "--user", &name]);
                w.member_of.entry(i).or_default().insert(g);
            }
        }
        for c in 0..w.collections.len() {
            if rng.random_bool(0.3) {
                let role = if rng.random_bool(0.3) {
                    Role::Editor
                } else {
                    Role::Reader
                };
                let text = if role == Role::Editor {
                    "editor"
                } else {
                    "reader"
                };
                env.run(&[
                    "grants",
                    "add",
                    "--user",
                    &name,
                    "--collection",
                    &w.collections[c],
                    "--role",
                    text,
                ]);
                w.user_grants.insert((i, c), role);
            }
        }
        w.users.push(Person {
            name,
            password,
            key,
            reads_everything,
        });
    }
    for g in 0..w.groups.len() {
        for c in 0..w.collections.len() {
            if rng.random_bool(0.3) {
                env.run(&[
                    "grants",
                    "add",
                    "--group",
                    &w.groups[g],
                    "--collection",
                    &w.collections[c],
                    "--role",
                    "reader",
                ]);
                w.group_grants.insert((g, c), Role::Reader);
            }
        }
    }
    let files = small_documents(12);
    for (n, path) in files.iter().enumerate() {
        let collection = rng.random_range(0..w.collections.len());
        let acl = if rng.random_bool(0.35) {
            None
        } else {
            let users: BTreeSet<usize> = (0..w.users.len())
                .filter(|_| rng.random_bool(0.25))
                .collect();
            let groups: BTreeSet<usize> = (0..w.groups.len())
                .filter(|_| rng.random_bool(0.3))
                .collect();
            if users.is_empty() && groups.is_empty() {
                Some(([rng.random_range(0..w.users.len())].into(), BTreeSet::new()))
            } else {
                Some((users, groups))
            }
        };
        let title = format!(
            "Confidential-{n:02}-{:06x}",
            rng.random::<u32>() & 0xFF_FFFF
        );
        let file = format!("file-{n:02}-{:06x}.pdf", rng.random::<u32>() & 0xFF_FFFF);
        let mut form = Form::new()
            .text("collection", w.collections[collection].clone())
            .text("title", title.clone())
            .part("file", file_part(&file, std::fs::read(path).unwrap()));
        if let Some((users, groups)) = &acl {
            let names: Vec<&str> = users.iter().map(|u| w.users[*u].name.as_str()).collect();
            let gnames: Vec<&str> = groups.iter().map(|g| w.groups[*g].as_str()).collect();
            form = form
                .text("allowed_users", names.join(","))
                .text("allowed_groups", gnames.join(","));
        }
        let (status, body) = s.upload(admin, form).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        w.docs.push(Doc {
            id: body["id"].as_str().unwrap().to_string(),
            title,
            file,
            collection,
            acl,
        });
    }
    for d in &w.docs {
        let got = s.settled(admin, &d.id).await;
        assert_eq!(got["status"], "ready", "{got}");
    }
    w
}

/// Asserts that a response body names nothing the user may not read.
fn assert_no_secret(w: &World, user: usize, what: &str, body: &str) {
    for secret in w.secrets(user) {
        assert!(
            !body.contains(&secret),
            "{} saw '{secret}' through {what}",
            w.users[user].name
        );
    }
}

/// Phrases of the documents' own text (a few from each document).
async fn content_queries(s: &Server, admin: &str, w: &World) -> Vec<String> {
    let mut queries = Vec::new();
    for d in &w.docs {
        let chunks: Value = s
            .get(admin, &format!("/api/v1/documents/{}/chunks", d.id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for c in chunks["chunks"].as_array().unwrap().iter().take(3) {
            let words: Vec<&str> = c["text"].as_str().unwrap().split_whitespace().collect();
            if words.len() > 8 {
                queries.push(words[2..8].join(" "));
            }
        }
    }
    queries
}

/// Runs random requests of every kind and checks each answer against the world; returns how
/// many requests were checked, and how many had an unreadable document to leak.
async fn random_requests(
    s: &Server,
    admin: &str,
    w: &World,
    rng: &mut StdRng,
    cases: usize,
) -> (usize, usize) {
    let plain = crate::http::client_builder().build().unwrap();
    let mut cookies = BTreeMap::new();
    // Queries made of the documents' own words and titles, so that unreadable ones match.
    let mut queries = content_queries(s, admin, w).await;
    queries.extend(w.docs.iter().map(|d| d.title.clone()));
    let mut opportunities = 0;
    for case in 0..cases {
        let u = rng.random_range(0..w.users.len());
        let person = &w.users[u];
        let readable = w.readable_ids(u);
        let doc = w.docs.choose(rng).unwrap();
        let kind = rng.random_range(0..100);
        let label;
        let body: String;
        if kind < 45 {
            // Search, with or without collections.
            let q = queries.choose(rng).unwrap();
            let mut collections: Vec<String> = w
                .collections
                .iter()
                .filter(|_| rng.random_bool(0.3))
                .cloned()
                .collect();
            collections.retain(|c| {
                let ci = w.collections.iter().position(|x| x == c).unwrap();
                w.role(u, ci).is_some()
            });
            let r = s
                .post(&person.key, "/api/v1/search")
                .json(&json!({"query": q, "collections": collections, "limit": 10,
                    "expand_neighbours": rng.random_bool(0.3)}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let mut v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            // The words no readable passage holds, and the names no readable document found
            // holds together, are the query's own (a title of a document the user may not
            // read is one of them): they are checked here and left out of the leak check
            // below, which looks for what the response adds.
            for field in ["unmatched_terms", "names_apart"] {
                let words = v.as_object_mut().unwrap().remove(field).unwrap();
                for t in words.as_array().unwrap() {
                    let t = t.as_str().unwrap();
                    assert!(q.contains(t), "{field} {t:?} is not in {q:?}");
                }
            }
            body = v.to_string();
            for p in v["passages"].as_array().unwrap() {
                let id = p["document_id"].as_str().unwrap();
                assert!(
                    readable.contains(id),
                    "{} got a passage of {id} for {q:?}",
                    person.name
                );
            }
            // Did the corpus hold an unreadable match for this query?
            let all: Value = s
                .post(admin, "/api/v1/search")
                .json(&json!({"query": q, "collections": collections, "limit": 10}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if all["passages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| !readable.contains(p["document_id"].as_str().unwrap()))
            {
                opportunities += 1;
            }
            label = "search";
        } else if kind < 60 {
            // Listings with counts, per collection or not.
            let c = rng.random_range(0..=w.collections.len());
            let path = if c == w.collections.len() {
                "/api/v1/documents?limit=500".to_string()
            } else {
                format!(
                    "/api/v1/documents?limit=500&collection={}",
                    w.collections[c]
                )
            };
            let r = s.get(&person.key, &path).send().await.unwrap();
            let status = r.status();
            body = r.text().await.unwrap();
            if c < w.collections.len() && w.role(u, c).is_none() {
                assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            } else {
                assert_eq!(status, StatusCode::OK, "{body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                let expected: BTreeSet<String> = w
                    .docs
                    .iter()
                    .filter(|d| (c == w.collections.len() || d.collection == c) && w.can_read(u, d))
                    .map(|d| d.id.clone())
                    .collect();
                let got: BTreeSet<String> = v["documents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["id"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(got, expected, "{} listing {path}", person.name);
                assert_eq!(
                    v["total"],
                    expected.len(),
                    "{} count of {path}",
                    person.name
                );
            }
            label = "listing";
        } else if kind < 65 {
            // Collections with counts, and the OpenAI models.
            let r = s
                .get(&person.key, "/api/v1/collections")
                .send()
                .await
                .unwrap();
            body = r.text().await.unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            for c in v["collections"].as_array().unwrap() {
                let ci = w.collections.iter().position(|x| x == &c["name"]).unwrap();
                assert!(w.role(u, ci).is_some());
                let n = w
                    .docs
                    .iter()
                    .filter(|d| d.collection == ci && w.can_read(u, d))
                    .count();
                assert_eq!(c["ready"], n, "{} counts of {}", person.name, c["name"]);
            }
            let models: Value = s
                .get(&person.key, "/v1/models")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for m in models["data"].as_array().unwrap() {
                if let Some(name) = m["id"].as_str().unwrap().strip_prefix("enclave/") {
                    let ci = w.collections.iter().position(|x| x == name).unwrap();
                    assert!(w.role(u, ci).is_some(), "{} sees model {name}", person.name);
                }
            }
            label = "collections";
        } else if kind < 85 {
            // Every document route: 404 unless readable, never 403.
            let suffix = ["", "/pages", "/chunks", "/file"].choose(rng).unwrap();
            let r = s
                .get(
                    &person.key,
                    &format!("/api/v1/documents/{}{suffix}", doc.id),
                )
                .send()
                .await
                .unwrap();
            let status = r.status();
            body = r.text().await.unwrap_or_default();
            if w.can_read(u, doc) {
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "{} reading {}{suffix}",
                    person.name,
                    doc.id
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{} reading {}{suffix}: {body}",
                    person.name,
                    doc.id
                );
                opportunities += 1;
            }
            label = "document route";
        } else {
            // The UI: the passage view, the file, the search view, and the curators' pages.
            if let std::collections::btree_map::Entry::Vacant(e) = cookies.entry(u) {
                e.insert(sign_in(s, &person.name, &person.password).await);
            }
            let cookie = &cookies[&u];
            let curator = (0..w.collections.len()).any(|c| w.role(u, c) >= Some(Role::Editor));
            let c = rng.random_range(0..w.collections.len());
            let drawn = queries.choose(rng).unwrap().clone();
            let q = || drawn.clone();
            let (path, query, expected) = match rng.random_range(0..8) {
                0 => (format!("/documents/{}/passage", doc.id), vec![], None),
                1 => (format!("/documents/{}/file", doc.id), vec![], None),
                2 => (
                    "/".to_string(),
                    vec![("view", "search".to_string()), ("q", q())],
                    Some(StatusCode::OK),
                ),
                3 => ("/admin/documents".to_string(), vec![], None),
                4 => ("/admin/jobs".to_string(), vec![], None),
                5 => ("/admin/retrieval".to_string(), vec![("q", q())], None),
                6 => (format!("/admin/documents/{}", doc.id), vec![], None),
                _ => (
                    format!("/admin/collections/{}", w.collections[c]),
                    vec![],
                    None,
                ),
            };
            // Each page's rule (ARCHITECTURE.md's route table), from the oracle.
            let expected = expected.unwrap_or_else(|| {
                let editor_of = |ci: usize| w.role(u, ci) >= Some(Role::Editor);
                if path.starts_with("/documents/") {
                    if w.can_read(u, doc) {
                        StatusCode::OK
                    } else {
                        StatusCode::NOT_FOUND
                    }
                } else if !curator {
                    StatusCode::FORBIDDEN
                } else if path.starts_with("/admin/documents/") {
                    if !w.can_read(u, doc) {
                        StatusCode::NOT_FOUND
                    } else if editor_of(doc.collection) {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    }
                } else if path.starts_with("/admin/collections/") {
                    match w.role(u, c) {
                        None => StatusCode::NOT_FOUND,
                        Some(Role::Reader) => StatusCode::FORBIDDEN,
                        Some(Role::Editor) => StatusCode::OK,
                    }
                } else {
                    StatusCode::OK
                }
            });
            let r = plain
                .get(s.url(&path))
                .query(&query)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let mut text = r.text().await.unwrap_or_default();
            // The search page shows the query as typed: that is the user's own text.
            if let Some((_, q)) = query.iter().find(|(k, _)| *k == "q") {
                let shown = q
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&#x27;");
                text = text.replace(&shown, "").replace(q.as_str(), "");
            }
            assert_eq!(status, expected, "{} UI {path}: {text}", person.name);
            body = text;
            label = "UI page";
        }
        if !label.is_empty() {
            assert_no_secret(w, u, &format!("{label} (case {case})"), &body);
        }
    }
    (cases, opportunities)
}

/// Questions through the model: the answer's passages and citations, and the prompt built from
/// them, hold only readable documents.
async fn random_answers(s: &Server, admin: &str, w: &World, rng: &mut StdRng, cases: usize) {
    let queries = content_queries(s, admin, w).await;
    for _ in 0..cases {
        let u = rng.random_range(0..w.users.len());
        let person = &w.users[u];
        let readable = w.readable_ids(u);
        let question = format!("What is said about {}?", queries.choose(rng).unwrap());
        let (passages, text) = if rng.random_bool(0.5) {
            let r = s
                .post(&person.key, "/api/v1/ask")
                .json(&json!({"question": question}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let body = r.text().await.unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            (v["passages"].clone(), body)
        } else {
            let r = s
                .post(&person.key, "/v1/chat/completions")
                .json(&json!({"model": "enclave", "messages": [{"role": "user", "content": question}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let body = r.text().await.unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            let cited: Vec<Value> = v["enclave"]["citations"].as_array().unwrap().clone();
            (Value::Array(cited), body)
        };
        for p in passages.as_array().unwrap() {
            let id = p["document_id"].as_str().unwrap();
            assert!(
                readable.contains(id),
                "{} was answered from {id}",
                person.name
            );
        }
        assert_no_secret(w, u, "an answer", &text.replace(&question, ""));
    }
}

async fn property(env: TestEnv, seed: u64) {
    let admin = api_key(&env, "admin");
    let s = Server::start(&env, &[]);
    s.ready().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let w = build_world(&env, &s, &admin, &mut rng).await;
    let (cases, opportunities) = random_requests(&s, &admin, &w, &mut rng, 1500).await;
    // The test could only fail if there was something to leak.
    assert!(
        opportunities > cases / 5,
        "only {opportunities} of {cases} requests concerned an unreadable document"
    );
    random_answers(&s, &admin, &w, &mut rng, 6).await;

    // Changes take effect at once: shuffle access lists and memberships, check again.
    let mut w = w;
    let mut order: Vec<usize> = (0..w.docs.len()).collect();
    order.shuffle(&mut rng);
    for &i in order.iter().take(4) {
        let users: BTreeSet<usize> = [rng.random_range(0..w.users.len())].into();
        let names: Vec<String> = users.iter().map(|u| w.users[*u].name.clone()).collect();
        let r = s
            .client
            .patch(s.url(&format!("/api/v1/documents/{}", w.docs[i].id)))
            .bearer_auth(&admin)
            .json(&json!({"readers": {"users": names, "groups": []}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        w.docs[i].acl = Some((users, BTreeSet::new()));
    }
    let u = rng.random_range(1..w.users.len());
    let g = rng.random_range(0..w.groups.len());
    if w.member_of.get(&u).is_some_and(|m| m.contains(&g)) {
        env.run(&["groups", "remove", &w.groups[g], "--user", &w.users[u].name]);
        w.member_of.get_mut(&u).unwrap().remove(&g);
    } else {
        env.run(&["groups", "add", &w.groups[g], "--user", &w.users[u].name]);
        w.member_of.entry(u).or_default().insert(g);
    }
    random_requests(&s, &admin, &w, &mut rng, 500).await;
}

#[tokio::test]
async fn no_document_leaks_to_those_who_may_not_read_it_on_sqlite() {
    property(TestEnv::embedded(), 7).await;
}

#[tokio::test]
async fn no_document_leaks_to_those_who_may_not_read_it_on_postgres() {
    let db = PgDatabase::create().await;
    property(TestEnv::postgres(&db), 11).await;
}

/// A document management system keeps its own permissions: it upserts with an access list, and
/// changes to the list or to a group show at once.
#[tokio::test]
async fn a_dms_passes_its_permissions_and_changes_show_at_once() {
    let env = TestEnv::embedded();
    let dms = api_key(&env, "admin");
    for (name, role) in [("alice", "reader"), ("bob", "reader"), ("carol", "reader")] {
        env.run(&["users", "add", name, "--role", role]);
    }
    env.run(&["groups", "create", "legal"]);
    env.run(&["groups", "add", "legal", "--user", "bob"]);
    let key = |user: &str| {
        env.run(&["keys", "create", &format!("k-{user}"), "--user", user])
            .trim()
            .to_string()
    };
    let (alice, bob, carol) = (key("alice"), key("bob"), key("carol"));
    let s = Server::start(&env, &[]);
    s.ready().await;
    s.post(&dms, "/api/v1/collections")
        .json(&json!({"name": "matters"}))
        .send()
        .await
        .unwrap();
    let file = small_documents(1).remove(0);
    let r = s
        .client
        .put(s.url("/api/v1/documents/matter-7"))
        .bearer_auth(&dms)
        .multipart(
            Form::new()
                .text("collection", "matters")
                .text("title", "Matter seven engagement letter")
                .text("allowed_users", "alice")
                .part(
                    "file",
                    file_part("matter7.pdf", std::fs::read(&file).unwrap()),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(s.settled(&dms, "matter-7").await["status"], "ready");
    let detail: Value = s
        .get(&dms, "/api/v1/documents/matter-7")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["readers"]["users"], json!(["alice"]), "{detail}");
    let query = "Matter seven engagement letter";
    let finds = |key: String| {
        let s = &s;
        async move {
            let v: Value = s
                .post(&key, "/api/v1/search")
                .json(&json!({"query": query, "limit": 10}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let listed = s
                .get(&key, "/api/v1/documents/matter-7")
                .send()
                .await
                .unwrap()
                .status();
            let hits = v["passages"].as_array().unwrap().len();
            assert_eq!(hits > 0, listed == StatusCode::OK, "search and reads agree");
            hits > 0
        }
    };
    assert!(finds(alice.clone()).await, "alice is on the list");
    assert!(!finds(bob.clone()).await, "bob is not");
    assert!(!finds(carol.clone()).await, "carol is not");
    // The DMS moves the document to the legal group.
    let r = s
        .client
        .patch(s.url("/api/v1/documents/matter-7"))
        .bearer_auth(&dms)
        .json(&json!({"readers": {"groups": ["legal"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!finds(alice.clone()).await, "alice is off the list at once");
    assert!(finds(bob.clone()).await, "bob reads it through legal");
    assert!(!finds(carol.clone()).await);
    env.run(&["groups", "add", "legal", "--user", "carol"]);
    assert!(finds(carol.clone()).await, "carol joined legal");
    env.run(&["groups", "remove", "legal", "--user", "bob"]);
    assert!(!finds(bob.clone()).await, "bob left legal");
    // A re-upload without access fields keeps the list; unknown names are refused.
    let r = s
        .client
        .put(s.url("/api/v1/documents/matter-7"))
        .bearer_auth(&dms)
        .multipart(
            Form::new()
                .text("collection", "matters")
                .text("allowed_users", "mallory")
                .part(
                    "file",
                    file_part("matter7.pdf", std::fs::read(&file).unwrap()),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("user 'mallory'"));
    // A reader cannot tell the document exists: 404, as for one that does not.
    let r = s
        .get(&alice, "/api/v1/documents/matter-7/file")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .get(&alice, "/api/v1/documents/no-such-thing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Disabling a user stops their key at once.
    env.run(&["users", "disable", "carol"]);
    let r = s.get(&carol, "/api/v1/collections").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Every search and answer is recorded, with the endpoint, the retrieved and cited chunks;
/// old entries go after the retention; the audit exports JSON Lines.
#[tokio::test]
async fn questions_are_audited_per_endpoint_and_expire() {
    let env = TestEnv::embedded();
    let admin = api_key(&env, "admin");
    let reader = api_key(&env, "reader");
    // An entry from long ago, before the server starts: the retention removes it.
    env.run(&["status"]);
    {
        let meta = env.meta().await;
        meta.record_question(&enclave_storage::QuestionEntry {
            id: "old-entry".into(),
            at: "2020-01-01T00:00:00.000Z".into(),
            actor: "user 'ghost'".into(),
            actor_id: None,
            endpoint: "api.search".into(),
            collections: vec![],
            question: Some("an old question".into()),
            question_sha256: None,
            retrieved: vec![],
            cited: vec![],
            refused: None,
            took_ms: 1,
        })
        .await
        .unwrap();
        meta.close().await;
    }
    let s = Server::start(&env, &[("ENCLAVE_AUDIT__QUESTION_RETENTION_DAYS", "30")]);
    s.ready().await;
    s.post(&admin, "/api/v1/collections")
        .json(&json!({"name": "docs"}))
        .send()
        .await
        .unwrap();
    let file = small_documents(1).remove(0);
    let (_, up) = s
        .upload(
            &admin,
            Form::new().text("collection", "docs").part(
                "file",
                file_part("manual.pdf", std::fs::read(&file).unwrap()),
            ),
        )
        .await;
    s.settled(&admin, up["id"].as_str().unwrap()).await;
    let chunks: Value = s
        .get(
            &admin,
            &format!("/api/v1/documents/{}/chunks", up["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let words: Vec<&str> = chunks["chunks"][0]["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    let question = format!(
        "What is said about {}?",
        words[..6.min(words.len())].join(" ")
    );
    let r = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": question}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .post(&reader, "/api/v1/ask")
        .json(&json!({"question": question}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.unwrap();
    let r = s
        .post(&reader, "/v1/chat/completions")
        .json(
            &json!({"model": "enclave/docs", "messages": [{"role": "user", "content": question}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Readers may not read the audit.
    let r = s
        .get(&reader, "/api/v1/audit/questions")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = s
        .get(&admin, "/api/v1/audit/questions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = v["questions"].as_array().unwrap();
    let endpoints: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        ["api.ask", "api.search", "openai.chat"].into(),
        "{v}"
    );
    assert!(
        entries.iter().all(|e| e["id"] != "old-entry"),
        "the old entry expired"
    );
    for e in entries {
        assert_eq!(e["actor"], "API key 'reader-key'");
        assert_eq!(e["question"], question);
        assert!(!e["retrieved"].as_array().unwrap().is_empty(), "{e}");
    }
    let ask = entries.iter().find(|e| e["endpoint"] == "api.ask").unwrap();
    let cited: Vec<Value> = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = c["number"].as_u64().unwrap() as usize;
            answer["passages"][n - 1]["chunk_id"].clone()
        })
        .collect();
    assert_eq!(ask["refused"], answer["refused"]);
    assert_eq!(ask["cited"].as_array().unwrap().len(), {
        let mut c = cited.clone();
        c.dedup();
        c.len()
    });
    // Filters and the export.
    let only: Value = s
        .get(
            &admin,
            "/api/v1/audit/questions?endpoint=api.ask&key=reader-key",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(only["questions"].as_array().unwrap().len(), 1);
    let lines = s
        .get(&admin, "/api/v1/audit/questions?format=jsonl")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(lines.lines().count(), 3);
    for l in lines.lines() {
        let _: Value = serde_json::from_str(l).unwrap();
    }
}

/// Sign-in throttling, redirects, cross-site forms, the trusted mode's bind and Host checks.
#[tokio::test]
async fn sign_in_forms_and_the_trusted_mode_are_hardened() {
    let env = TestEnv::embedded();
    let out = env.run(&["users", "add", "dora", "--role", "reader"]);
    let password = created_password(&out);
    let ada = created_password(&env.run(&["users", "add", "ada", "--role", "admin"]));
    let s = Server::start(&env, &[]);
    s.ready().await;
    // The administrators' pages: people, a change through them, the question audit; readers
    // are refused.
    let admin_cookie = sign_in(&s, "ada", &ada).await;
    let reader_cookie = sign_in(&s, "dora", &password).await;
    let plain = crate::http::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = |path: &str, cookie: &str| {
        plain
            .get(s.url(path))
            .header("cookie", cookie.to_string())
            .send()
    };
    let r = page("/admin/people", &admin_cookie).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("dora"));
    let r = plain
        .post(s.url("/admin/people"))
        .header("cookie", admin_cookie.clone())
        .form(&[("action", "create_group"), ("name", "ops")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = plain
        .post(s.url("/admin/people"))
        .header("cookie", admin_cookie.clone())
        .form(&[
            ("action", "grant"),
            ("kind", "group"),
            ("name", "ops"),
            ("role", "editor"),
            ("collection", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let listed = page("/admin/people", &admin_cookie)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("ops") && listed.contains("editor"),
        "{listed}"
    );
    assert!(env.run(&["grants", "list"]).contains("ops"));
    assert_eq!(
        page("/admin/questions", &admin_cookie)
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        page("/admin/people", &reader_cookie)
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let client = crate::http::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |name: &str, pw: &str, next: &str| {
        client
            .post(s.url("/login"))
            .form(&[("username", name), ("password", pw), ("next", next)])
            .send()
    };
    // No open redirect.
    for next in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
        "/%2F%2Fevil",
    ] {
        let r = login("dora", &password, next).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/", "next = {next}");
    }
    let r = login("dora", &password, "/documents/x/passage?start=1")
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/documents/x/passage?start=1");
    // Unknown names and wrong passwords look the same.
    let r = login("nobody", "whatever-password", "/").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Growing delays after five failures (here from one address: the unknown name counts).
    for _ in 0..4 {
        let r = login("dora", "wrong password!", "/").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login("dora", &password, "/").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the right password waits too"
    );
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
    // Cross-site posts are refused, sign-in and retry included.
    let r = client
        .post(s.url("/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("username", "dora"), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .post(s.url("/admin/jobs/x/retry"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    drop(s);

    // Authentication off: loopback only, and only loopback Host names.
    let trusted = TestEnv::embedded();
    let out = trusted
        .command()
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env("ENCLAVE_AUTH", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to listen on 0.0.0.0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start(&trusted, &[("ENCLAVE_AUTH", "off")]);
    s.ready().await;
    let r = s
        .client
        .get(s.url("/api/v1/collections"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .get(s.url("/api/v1/collections"))
        .header("host", "rebind.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .client
        .get(s.url("/"))
        .header("host", "localhost:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
