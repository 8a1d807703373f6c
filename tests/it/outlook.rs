//! Outlook messages (.msg) as Outlook, ProtonMail and an Exchange server wrote them:
//! headers as metadata, attachments and forwarded messages (attached as files or as Outlook
//! items) as child documents, damaged messages failing alone.

use std::path::PathBuf;

use enclave_ingest::parse::{ParseError, msg};

use crate::common::{TestEnv, assert_consistent, document_ending, document_text};

/// A real Outlook message from the samples `scripts/test` fetches (fetch_outlook_samples).
pub fn sample(name: &str) -> PathBuf {
    let dir = std::env::var_os("ENCLAVE_OUTLOOK_DIR")
        .map(PathBuf::from)
        .expect("ENCLAVE_OUTLOOK_DIR is not set: run scripts/test (source scripts/env.sh)");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test (fetch_outlook_samples)",
        p.display()
    );
    p
}

#[tokio::test]
async fn outlook_messages_their_attachments_and_embedded_messages() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    for name in [
        "unicode.msg",
        "test_email.msg",
        "attachment.msg",
        "test_email_1.msg",
        "bad_outlook.msg",
    ] {
        std::fs::copy(sample(name), docs.join(name)).unwrap();
    }
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["files"], 5, "{summary}");
    let failures = summary["failures"].as_array().unwrap();
    let bad = failures
        .iter()
        .find(|f| f["source"].as_str().unwrap().ends_with("bad_outlook.msg"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed Outlook message: not an OLE compound file"),
        "{summary}"
    );

    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    let by_name = |suffix: &str| document_ending(&all, suffix);

    // Headers become metadata and the filters' author and date; the body is the text.
    let d = by_name("/unicode.msg");
    assert_eq!(d.status, "ready", "{d:#?}");
    assert_eq!(d.title, "Test for TIF files");
    assert_eq!(d.mime_type.as_deref(), Some("application/vnd.ms-outlook"));
    let m = &d.metadata;
    assert_eq!(m["from"], "Brian Zhou <brizhou@gmail.com>", "{m}");
    assert!(
        m["to"].as_str().unwrap().contains("brianzhou@me.com"),
        "{m}"
    );
    assert!(m["date"].as_str().unwrap().starts_with("2013-11-18"), "{m}");
    let body = document_text(&meta.active_pages(&d.id).await.unwrap());
    assert!(body.contains("MS Outlook MSG Extractor"), "{body}");
    // Its two TIFF screenshots are child documents, read by OCR.
    let children = meta.children(&d.id).await.unwrap();
    let mut names: Vec<_> = children.iter().map(|c| c.source_uri.clone()).collect();
    names.sort();
    assert_eq!(children.len(), 2, "{names:?}");
    assert!(names[0].ends_with("/import OleFileIO.tif"), "{names:?}");
    for c in &children {
        assert_eq!(c.mime_type.as_deref(), Some("image/tiff"), "{c:#?}");
        assert_eq!(c.status, "ready", "{c:#?}");
        assert_eq!(c.metadata["ocr_pages"], serde_json::json!([1]), "{c:#?}");
    }

    // A message with an Outlook message file attached and an item attached: the attached
    // message is a child message with its own headers and its own attachments, and so is the
    // item, rebuilt as a message file of its own.
    let d = by_name("/test_email.msg");
    assert_eq!(
        (d.status.as_str(), d.title.as_str()),
        ("ready", "Test Email")
    );
    assert!(d.metadata.get("skipped_attachments").is_none(), "{d:#?}");
    let children = meta.children(&d.id).await.unwrap();
    let attached = children
        .iter()
        .find(|c| c.source_uri.ends_with("/Test Email.msg"))
        .unwrap_or_else(|| panic!("{children:#?}"));
    assert_eq!(attached.status, "ready", "{attached:#?}");
    assert_eq!(attached.title, "Test Email");
    assert_eq!(
        attached.mime_type.as_deref(),
        Some("application/vnd.ms-outlook")
    );
    // Recipients by their type: To and Cc shown, the three Bcc recipients not.
    assert!(
        attached.metadata["to"] == "Sriram Govindan <marirs@gmail.com>"
            && attached.metadata["cc"] == "Sriram Govindan <marirs@aol.in>, marirs@outlook.in"
            && attached.metadata["date"]
                .as_str()
                .unwrap()
                .starts_with("2021-01-05"),
        "{attached:#?}"
    );
    let grandchildren = meta.children(&attached.id).await.unwrap();
    assert!(
        grandchildren
            .iter()
            .any(|g| g.source_uri.ends_with("/milky-way-2695569_960_720.jpg")),
        "{grandchildren:#?}"
    );
    let item = children
        .iter()
        .find(|c| c.title == "1 Days Left—35% off cloud space, upgrade now!")
        .unwrap_or_else(|| panic!("{children:#?}"));
    assert_eq!(item.status, "ready", "{item:#?}");
    assert_eq!(
        item.mime_type.as_deref(),
        Some("application/vnd.ms-outlook")
    );
    assert!(item.source_uri.ends_with(".msg"), "{item:#?}");
    let text = document_text(&meta.active_pages(&item.id).await.unwrap());
    assert!(!text.trim().is_empty(), "{item:#?}");

    // Three items forwarded in one message: each is a child message with its own sender,
    // date and body, and the images inside an item belong to that item, not to the outer
    // message (small logos are skipped, screenshots read).
    let d = by_name("/test_email_1.msg");
    assert_eq!(
        (d.status.as_str(), d.title.as_str()),
        ("ready", "Testing Email")
    );
    let children = meta.children(&d.id).await.unwrap();
    let mut titles: Vec<_> = children.iter().map(|c| c.title.as_str()).collect();
    titles.sort_unstable();
    assert_eq!(
        titles,
        [
            "App test",
            "Fw: Encrypt your Internet with ProtonVPN",
            "Welcome to your new Outlook.com account"
        ],
        "{children:#?}"
    );
    for c in &children {
        assert_eq!(c.status, "ready", "{c:#?}");
        assert_eq!(c.mime_type.as_deref(), Some("application/vnd.ms-outlook"));
        assert_eq!(
            c.metadata["to"], "application-testing@outlook.com",
            "{c:#?}"
        );
        assert!(
            c.metadata["date"]
                .as_str()
                .unwrap()
                .starts_with("2021-03-14"),
            "{c:#?}"
        );
    }
    let welcome = children
        .iter()
        .find(|c| c.title.starts_with("Welcome"))
        .unwrap();
    assert_eq!(
        welcome.metadata["from"], "Outlook Team <no-reply@microsoft.com>",
        "{welcome:#?}"
    );
    let text = document_text(&meta.active_pages(&welcome.id).await.unwrap());
    assert!(
        text.contains("Welcome to your new Outlook.com account"),
        "{text}"
    );
    let images: Vec<_> = meta
        .children(&welcome.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.source_uri)
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(images[0].ends_with("/devices.png"), "{images:?}");
    assert!(
        welcome.metadata["skipped_attachments"]
            .to_string()
            .contains("microsoft-logo.png"),
        "{welcome:#?}"
    );
    let proton = children
        .iter()
        .find(|c| c.title.starts_with("Fw: Encrypt"))
        .unwrap();
    assert_eq!(
        proton.metadata["from"], "Account Testing <account-testing7777@protonmail.com>",
        "{proton:#?}"
    );
    let mut images: Vec<_> = meta
        .children(&proton.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.source_uri.rsplit('/').next().unwrap().to_string())
        .collect();
    images.sort();
    assert_eq!(images, ["header-3.png", "steps-pv.png"], "{proton:#?}");

    // A Word 97 attachment (not read) and a small inline image are named as skipped; the
    // large screenshot is read.
    let d = by_name("/attachment.msg");
    assert_eq!(d.status, "ready", "{d:#?}");
    let skipped = d.metadata["skipped_attachments"].to_string();
    assert!(skipped.contains("loan_proposal.doc"), "{skipped}");
    assert!(skipped.contains("image002.jpg"), "{skipped}");
    let children = meta.children(&d.id).await.unwrap();
    assert_eq!(children.len(), 1, "{children:#?}");
    assert!(children[0].source_uri.ends_with("/image001.png"));
    meta.close().await;
    assert_consistent(&env).await;

    // What the messages say is found, and the search names the message.
    let out = env.run(&[
        "search",
        "Outlook MSG Extractor TIF files",
        "-k",
        "3",
        "--json",
    ]);
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        results["passages"][0]["source_uri"]
            .as_str()
            .unwrap()
            .ends_with("unicode.msg"),
        "{results}"
    );
}

/// Damaged copies of real messages (bytes flipped, cut short) fail alone with a named reason
/// or are read: the parser never takes the process down.
#[test]
fn damaged_outlook_messages_fail_by_name() {
    let original = std::fs::read(sample("test_email_1.msg")).unwrap();
    let (mut read, mut failed) = (0, 0);
    let mut seed = 0x2545_f491_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..60 {
        let mut bytes = original.clone();
        if i % 3 == 0 {
            bytes.truncate(bytes.len() * (i + 1) / 61);
        } else {
            for _ in 0..(1 + i % 20) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        match msg::parse(&bytes) {
            Ok(_) => read += 1,
            Err(ParseError::Malformed { kind, reason }) => {
                assert_eq!(kind, "Outlook message");
                assert!(!reason.is_empty());
                failed += 1;
            }
            Err(ParseError::Empty | ParseError::EmptyEmail) => failed += 1,
            Err(e) => panic!("copy {i}: unexpected error {e:?}"),
        }
    }
    eprintln!("damaged Outlook messages: {read} read, {failed} failed by name");
    assert_eq!(read + failed, 60);
    assert!(failed > 0, "no truncated copy failed");
}
