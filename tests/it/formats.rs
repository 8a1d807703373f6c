//! Memos of every supported kind, an email with a PDF attachment, on SQLite and PostgreSQL.

use base64::Engine;

use crate::common::{
    PgDatabase, TestEnv, assert_consistent, corpus_file, document_ending, document_text,
};

/// Writes the memo set into `dir`; returns the attachment's bytes.
fn write_memos(dir: &std::path::Path) -> Vec<u8> {
    std::fs::write(
        dir.join("retention.txt"),
        "Records retention policy.\n\nClient files are kept for seven years after the matter \
         closes. Afterwards they are shredded by an approved contractor.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("handbook.md"),
        "# Staff handbook\n\nWelcome to the firm.\n\n## Travel\n\nBook travel through the \
         portal. Economy class for flights under six hours.\n\n## Expenses\n\nSubmit receipts \
         within thirty days.\n\n```\n# not a heading\n```\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("notice.html"),
        "<html><head><title>Office notice</title><style>p{color:red}</style>\
         <script>alert('x')</script></head><body><h1>Office closure</h1>\
         <p>The office is closed on <b>Friday</b> for maintenance.</p>\
         <ul><li>Work from home</li><li>VPN is available</li></ul></body></html>",
    )
    .unwrap();
    let pdf = std::fs::read(corpus_file("simh__hpiop.pdf")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pdf);
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let eml = format!(
        "From: Alice Archer <alice@example.org>\r\n\
         To: Bob Baker <bob@example.org>\r\n\
         Cc: Carol <carol@example.org>\r\n\
         Subject: HP I/O processor notes\r\n\
         Date: Tue, 3 Mar 2026 10:15:00 +0100\r\n\
         Message-ID: <memo-1@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\
         \r\n\
         --XYZ\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Bob, the notes on the I/O processor are attached. The interrupt\r\n\
         priority question is answered on page two.\r\n\
         --XYZ\r\n\
         Content-Type: application/pdf; name=\"hpiop.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"hpiop.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\r\n\
         --XYZ--\r\n",
        wrapped.join("\r\n")
    );
    std::fs::write(dir.join("notes.eml"), eml).unwrap();
    std::fs::write(dir.join("diagram.vsdx"), b"PK\x03\x04 not supported").unwrap();
    pdf
}

async fn memos_scenario(env: &TestEnv) {
    let docs = env.docs();
    write_memos(&docs);
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["files"], 5, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["ingested"], 4, "{summary}");
    let failures = summary["failures"].as_array().unwrap();
    assert!(
        failures[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("diagram.vsdx")
    );
    assert!(
        failures[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unsupported type: .vsdx"),
        "{summary}"
    );

    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    let by_name = |suffix: &str| document_ending(&all, suffix);

    let txt = by_name("retention.txt");
    assert_eq!((txt.status.as_str(), txt.page_count), ("ready", 1));
    assert_eq!(txt.mime_type.as_deref(), Some("text/plain"));

    let md = by_name("handbook.md");
    assert_eq!(md.title, "Staff handbook");
    let chunks = meta.active_chunks(&md.id).await.unwrap();
    let sections: Vec<_> = chunks.iter().filter_map(|c| c.section.clone()).collect();
    assert!(!sections.is_empty(), "{chunks:#?}");
    assert!(chunks.iter().any(|c| c.text.contains("thirty days")));

    let html = by_name("notice.html");
    assert_eq!(html.title, "Office notice");
    let text = document_text(&meta.active_pages(&html.id).await.unwrap());
    assert!(text.contains("closed on Friday"), "{text}");
    assert!(text.contains("Work from home"), "{text}");
    assert!(!text.contains("alert"), "script leaked: {text}");
    assert!(!text.contains("color:red"), "style leaked: {text}");

    let eml = by_name("notes.eml");
    assert_eq!(eml.title, "HP I/O processor notes");
    assert_eq!(eml.mime_type.as_deref(), Some("message/rfc822"));
    let m = &eml.metadata;
    assert!(
        m["from"].as_str().unwrap().contains("alice@example.org"),
        "{m}"
    );
    assert!(m["to"].as_str().unwrap().contains("bob@example.org"), "{m}");
    assert!(
        m["cc"].as_str().unwrap().contains("carol@example.org"),
        "{m}"
    );
    assert!(m["date"].as_str().unwrap().starts_with("2026-03-03"), "{m}");
    assert_eq!(m["subject"], "HP I/O processor notes");
    let body = document_text(&meta.active_pages(&eml.id).await.unwrap());
    assert!(body.contains("interrupt"), "{body}");
    assert!(
        !body.contains("JVBER"),
        "attachment bytes leaked into the body"
    );

    // The attachment is a child document with its own pages and chunks.
    let children = meta.children(&eml.id).await.unwrap();
    assert_eq!(children.len(), 1, "{children:#?}");
    let child = &children[0];
    assert_eq!(child.status, "ready", "{child:#?}");
    assert_eq!(child.mime_type.as_deref(), Some("application/pdf"));
    assert_eq!(child.page_count, 2);
    assert!(
        child.source_uri.contains("#attachment/1/hpiop.pdf"),
        "{}",
        child.source_uri
    );
    assert!(child.chunk_count > 0);

    let stats = meta.collection_stats(&[]).await.unwrap();
    assert_eq!((stats[0].ready, stats[0].failed), (5, 1), "{stats:?}");
    meta.close().await;
    assert_consistent(env).await;

    // The status command lists the failure with its reason.
    let status = env.run(&["status"]);
    assert!(status.contains("diagram.vsdx"), "{status}");
    assert!(status.contains("unsupported type"), "{status}");
}

#[tokio::test]
async fn memos_and_email_attachments_on_sqlite() {
    let env = TestEnv::embedded();
    memos_scenario(&env).await;
}

#[tokio::test]
async fn memos_and_email_attachments_on_postgres() {
    let db = PgDatabase::create().await;
    let env = TestEnv::postgres(&db);
    memos_scenario(&env).await;
    db.drop_now().await;
}

/// Runs LibreOffice headless: `args`, then the input file, writing into `dir`.
fn soffice(dir: &std::path::Path, args: &[&str], input: &str) {
    let out = std::process::Command::new("soffice")
        .arg(format!(
            "-env:UserInstallation=file://{}",
            dir.join(".lo-profile").display()
        ))
        .arg("--headless")
        .args(args)
        .arg("--outdir")
        .arg(dir)
        .arg(dir.join(input))
        .output()
        .expect("LibreOffice (soffice) runs: scripts/test installs libreoffice-writer-nogui and libreoffice-impress-nogui");
    assert!(out.status.success(), "{out:?}");
}

/// Office files made by LibreOffice from real content: a handbook with headings, a table and
/// Debian FAQ text as .docx, .odt and .rtf; the slides LibreOffice Impress makes of a corpus PDF
/// (one per page) as .odp and .pptx; and a truncated copy of the .docx.
fn write_office_files(dir: &std::path::Path) {
    let work = dir.join("..").join("office-sources");
    std::fs::create_dir_all(&work).unwrap();
    // Paragraphs of the Debian FAQ's own text, long enough for several chunks per section.
    let faq = std::fs::read_to_string(corpus_file("debian-faq__debian-faq.en.txt")).unwrap();
    let paragraphs: Vec<String> = faq
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| p.len() > 200 && !p.contains('<') && !p.contains('&'))
        .take(8)
        .collect();
    assert_eq!(paragraphs.len(), 8);
    std::fs::write(
        work.join("handbook.html"),
        format!(
            "<html><head><title>Release handbook</title></head><body>\
             <h1>Release handbook</h1><p>{}</p>\
             <h2>Stable releases</h2><p>{}</p><p>{}</p><p>{}</p>\
             <table><tr><th>Version</th><th>Codename</th></tr>\
             <tr><td>11</td><td>bullseye</td></tr><tr><td>12</td><td>bookworm</td></tr></table>\
             <h2>Security</h2><p>Security updates come from security.debian.org.</p>\
             <p>{}</p><p>{}</p><p>{}</p><p>{}</p></body></html>",
            paragraphs[0],
            paragraphs[1],
            paragraphs[2],
            paragraphs[3],
            paragraphs[4],
            paragraphs[5],
            paragraphs[6],
            paragraphs[7]
        ),
    )
    .unwrap();
    std::fs::copy(corpus_file("simh__hpiop.pdf"), work.join("hpiop.pdf")).unwrap();
    let writer = ["--infilter=HTML (StarWriter)", "--convert-to"];
    soffice(
        &work,
        &[writer[0], writer[1], "docx:MS Word 2007 XML"],
        "handbook.html",
    );
    soffice(&work, &[writer[0], writer[1], "odt"], "handbook.html");
    soffice(&work, &[writer[0], writer[1], "rtf"], "handbook.html");
    soffice(
        &work,
        &["--infilter=impress_pdf_import", "--convert-to", "odp"],
        "hpiop.pdf",
    );
    soffice(&work, &["--convert-to", "pptx"], "hpiop.odp");
    for name in [
        "handbook.docx",
        "handbook.odt",
        "handbook.rtf",
        "hpiop.odp",
        "hpiop.pptx",
    ] {
        std::fs::copy(work.join(name), dir.join(name)).unwrap();
    }
    let docx = std::fs::read(work.join("handbook.docx")).unwrap();
    std::fs::write(dir.join("truncated.docx"), &docx[..docx.len() / 2]).unwrap();
}

#[tokio::test]
async fn office_documents_made_by_libreoffice() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    write_office_files(&docs);
    let summary = env.ingest(&[&docs]);
    assert_eq!(
        (&summary["ingested"], &summary["failed"]),
        (&serde_json::json!(5), &serde_json::json!(1)),
        "{summary}"
    );
    let failure = &summary["failures"][0];
    assert!(
        failure["source"]
            .as_str()
            .unwrap()
            .ends_with("truncated.docx")
            && failure["reason"]
                .as_str()
                .unwrap()
                .starts_with("malformed Word document"),
        "{summary}"
    );

    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    let by_name = |suffix: &str| document_ending(&all, suffix);
    // Word and OpenDocument text: one page, the headings as sections, the table in Markdown.
    for (name, mime) in [
        (
            "handbook.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("handbook.odt", "application/vnd.oasis.opendocument.text"),
    ] {
        let d = by_name(name);
        assert_eq!((d.status.as_str(), d.page_count), ("ready", 1), "{d:#?}");
        assert_eq!(d.title, "Release handbook");
        assert_eq!(d.mime_type.as_deref(), Some(mime));
        let text = document_text(&meta.active_pages(&d.id).await.unwrap());
        for part in [
            "## Stable releases",
            "| Version | Codename |",
            "| 12 | bookworm |",
        ] {
            assert!(text.contains(part), "{name}: no {part:?} in {text}");
        }
        let chunks = meta.active_chunks(&d.id).await.unwrap();
        assert!(
            chunks.iter().any(|c| c.text.contains("security.debian.org")
                && c.section.as_deref().is_some_and(|s| s.contains("Security"))),
            "{name}: {chunks:#?}"
        );
    }
    // RTF: the text, one page.
    let d = by_name("handbook.rtf");
    assert_eq!((d.status.as_str(), d.page_count), ("ready", 1), "{d:#?}");
    assert_eq!(d.mime_type.as_deref(), Some("application/rtf"));
    let text = document_text(&meta.active_pages(&d.id).await.unwrap());
    for part in ["Stable releases", "bookworm", "security.debian.org"] {
        assert!(text.contains(part), "rtf: no {part:?} in {text}");
    }
    // Presentations: a slide is a page, in order.
    for name in ["hpiop.pptx", "hpiop.odp"] {
        let d = by_name(name);
        assert_eq!((d.status.as_str(), d.page_count), ("ready", 2), "{d:#?}");
        let pages = meta.active_pages(&d.id).await.unwrap();
        assert!(
            pages[0].text.contains("IOP Implementations"),
            "{name}: {pages:#?}"
        );
        assert!(pages[1].text.contains("TRSLT"), "{name}: {pages:#?}");
        // The chunk that says so covers the second slide: a citation names it.
        let chunks = meta.active_chunks(&d.id).await.unwrap();
        assert!(
            chunks
                .iter()
                .any(|c| c.page_end == 2 && c.text.contains("TRSLT instruction is not used")),
            "{name}: {chunks:#?}"
        );
    }
    meta.close().await;
    assert_consistent(&env).await;

    // A search finds the presentations.
    let out = env.run(&[
        "search",
        "Is the TRSLT instruction used in the 21MX IOP code?",
        "-k",
        "10",
        "--json",
    ]);
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found: Vec<&str> = results["passages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["source_uri"].as_str().unwrap())
        .collect();
    for name in ["hpiop.pptx", "hpiop.odp"] {
        assert!(found.iter().any(|u| u.ends_with(name)), "{name}: {out}");
    }
}

/// PDF headings: the Debian FAQ's outline (bookmarks) and the SIMH guide's numbered section
/// headings (it has no outline) cut the chunks and give each its heading path; with
/// `chunking.headings` off, neither happens.
#[tokio::test]
async fn pdf_headings_cut_chunks_and_name_their_sections() {
    const FAQ: &str = "debian-faq__FAQ__debian-faq.en.pdf";
    const SIMH: &str = "simh__simh_doc.pdf";
    let env = TestEnv::embedded();
    let docs = env.docs();
    for f in [FAQ, SIMH] {
        std::fs::copy(corpus_file(f), docs.join(f)).unwrap();
    }
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], serde_json::json!(2), "{summary}");
    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    let chunks_of = |name: &str| {
        let id = all
            .iter()
            .find(|d| d.source_uri.ends_with(name))
            .unwrap()
            .id
            .clone();
        let meta = meta.clone();
        async move { meta.active_chunks(&id).await.unwrap() }
    };

    // The outline: a question of the FAQ starts its own chunk, under its chapter.
    let faq = chunks_of(FAQ).await;
    let latest = "Getting and installing Debian GNU/Linux › What is the latest version of Debian?";
    let first = faq
        .iter()
        .find(|c| c.section.as_deref() == Some(latest))
        .unwrap_or_else(|| {
            let sections: Vec<_> = faq.iter().filter_map(|c| c.section.as_deref()).collect();
            panic!("no chunk under {latest:?}: {sections:#?}")
        });
    assert!(
        first
            .text
            .starts_with("What is the latest version of Debian?"),
        "a chunk starts at its heading: {:?}",
        first.text
    );
    // No chunk of the chapter runs across a heading: the next question starts a chunk (the
    // table of contents, before the chapter, lists both).
    let next = faq
        .iter()
        .find(|c| {
            c.section
                .as_deref()
                .is_some_and(|s| s.ends_with("Are there package upgrades in `stable'?"))
        })
        .expect("a chunk under the next question");
    assert!(
        next.text.starts_with("Are there package upgrades in"),
        "{next:?}"
    );
    assert!(
        !faq.iter().any(|c| c.char_start < next.char_start
            && c.char_end > next.char_start
            && c.char_start >= first.char_start),
        "a chunk spans two sections"
    );

    // Numbered headings, found in the text of a PDF without an outline.
    let simh = chunks_of(SIMH).await;
    let sections: Vec<&str> = simh.iter().filter_map(|c| c.section.as_deref()).collect();
    assert!(
        sections
            .iter()
            .any(|s| s.starts_with("1 Compiling And Running A Simulator › 1.")),
        "{sections:#?}"
    );
    assert!(
        simh.iter().any(|c| c
            .section
            .as_deref()
            .is_some_and(|s| s.starts_with("2 ") || s.starts_with("3 "))),
        "{sections:#?}"
    );

    // Off: no cut at headings, so fewer and longer chunks across the FAQ's questions.
    let off = TestEnv::embedded();
    std::fs::copy(corpus_file(FAQ), off.docs().join(FAQ)).unwrap();
    let out = off
        .command()
        .args(["ingest", off.docs().to_str().unwrap()])
        .env("ENCLAVE_CHUNKING__HEADINGS", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta_off = off.meta().await;
    let doc = &meta_off.documents(None).await.unwrap()[0];
    let chunks_off = meta_off.active_chunks(&doc.id).await.unwrap();
    assert!(
        chunks_off.len() < faq.len(),
        "{} chunks without headings, {} with",
        chunks_off.len(),
        faq.len()
    );
}

/// Installed packages from this machine's own dpkg database (real data with a header row):
/// (package, version, section, installed size, maintainer, short description), sorted.
fn installed_packages(n: usize) -> Vec<[String; 6]> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let mut rows: Vec<[String; 6]> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
            };
            Some([
                field("Package")?,
                field("Version")?,
                field("Section").unwrap_or_else(|| "misc".into()),
                field("Installed-Size").unwrap_or_else(|| "0".into()),
                field("Maintainer")?,
                field("Description")?,
            ])
        })
        .collect();
    rows.sort();
    rows.dedup_by(|a, b| a[0] == b[0]);
    assert!(rows.len() >= n, "only {} packages installed", rows.len());
    rows.truncate(n);
    rows
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A workbook of installed packages (two sheets and a hidden third), as LibreOffice Calc
/// writes it in .xlsx, .ods and .xls (from a flat OpenDocument spreadsheet), the same rows as
/// .csv, and a truncated copy of the .xlsx. Returns the rows.
fn write_workbooks(dir: &std::path::Path) -> Vec<[String; 6]> {
    let work = dir.join("..").join("sheet-sources");
    std::fs::create_dir_all(&work).unwrap();
    let rows = installed_packages(150);
    let header = [
        "Package",
        "Version",
        "Section",
        "Installed-Size",
        "Maintainer",
        "Description",
    ];
    let cell = |v: &str| {
        if v.parse::<i64>().is_ok() {
            format!(
                r#"<table:table-cell office:value-type="float" office:value="{v}"><text:p>{v}</text:p></table:table-cell>"#
            )
        } else {
            format!(
                r#"<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>"#,
                xml_escape(v)
            )
        }
    };
    let row = |cells: &[String]| {
        format!(
            "<table:table-row>{}</table:table-row>",
            cells.iter().map(|c| cell(c)).collect::<String>()
        )
    };
    let mut packages = row(&header.map(String::from));
    for r in &rows {
        packages.push_str(&row(r));
    }
    let mut sections: Vec<(String, usize)> = Vec::new();
    for r in &rows {
        match sections.iter_mut().find(|(s, _)| *s == r[2]) {
            Some((_, n)) => *n += 1,
            None => sections.push((r[2].clone(), 1)),
        }
    }
    let mut counts = row(&["Section".into(), "Packages".into()]);
    for (s, n) in &sections {
        counts.push_str(&row(&[s.clone(), n.to_string()]));
    }
    let notes = row(&["Audit notes: reviewed by the platform team".into()]);
    std::fs::write(
        work.join("inventory.fods"),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0" office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
<office:meta><dc:title>Installed packages</dc:title><meta:initial-creator>Package Audit</meta:initial-creator></office:meta>
<office:automatic-styles><style:style style:name="hidden" style:family="table"><style:table-properties table:display="false"/></style:style></office:automatic-styles>
<office:body><office:spreadsheet>
<table:table table:name="Packages">{packages}</table:table>
<table:table table:name="Sections">{counts}</table:table>
<table:table table:name="Notes" table:style-name="hidden">{notes}</table:table>
</office:spreadsheet></office:body></office:document>"#
        ),
    )
    .unwrap();
    for format in ["xlsx:Calc MS Excel 2007 XML", "ods", "xls:MS Excel 97"] {
        soffice(&work, &["--convert-to", format], "inventory.fods");
    }
    for ext in ["xlsx", "ods", "xls"] {
        let name = format!("inventory.{ext}");
        std::fs::copy(work.join(&name), dir.join(&name)).unwrap();
    }
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let mut csv = header.map(quote).join(",");
    for r in &rows {
        csv.push('\n');
        csv.push_str(&r.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","));
    }
    std::fs::write(dir.join("inventory.csv"), csv).unwrap();
    let xlsx = std::fs::read(work.join("inventory.xlsx")).unwrap();
    std::fs::write(dir.join("truncated.xlsx"), &xlsx[..xlsx.len() / 2]).unwrap();
    rows
}

/// Workbooks made by LibreOffice Calc and a CSV file: a sheet is a page, every block of rows
/// repeats the header row, and a citation names the sheet and the rows.
#[tokio::test]
async fn spreadsheets_made_by_libreoffice() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    let rows = write_workbooks(&docs);
    let summary = env.ingest(&[&docs]);
    assert_eq!(
        (&summary["ingested"], &summary["failed"]),
        (&serde_json::json!(4), &serde_json::json!(1)),
        "{summary}"
    );
    let failure = &summary["failures"][0];
    assert!(
        failure["source"]
            .as_str()
            .unwrap()
            .ends_with("truncated.xlsx")
            && failure["reason"]
                .as_str()
                .unwrap()
                .starts_with("malformed Excel workbook"),
        "{summary}"
    );

    // The 40th package: sheet row 41 (the header is row 1).
    let target = &rows[39];
    let meta = env.meta().await;
    let all = meta.documents(None).await.unwrap();
    for (ext, sheets) in [("xlsx", 3), ("ods", 3), ("xls", 3), ("csv", 1)] {
        let d = all
            .iter()
            .find(|d| d.source_uri.ends_with(&format!("inventory.{ext}")))
            .unwrap_or_else(|| panic!("no inventory.{ext}: {all:#?}"));
        assert_eq!(
            (d.status.as_str(), d.page_count),
            ("ready", sheets),
            "{d:#?}"
        );
        if ext != "csv" {
            assert_eq!(
                d.metadata["sheets"],
                serde_json::json!(["Packages", "Sections", "Notes"]),
                "{ext}"
            );
            // The hidden sheet is read, and named as hidden.
            assert_eq!(
                d.metadata["hidden_sheets"],
                serde_json::json!(["Notes"]),
                "{ext}"
            );
        }
        // The package properties of .xlsx and .ods, the summary information of .xls.
        if ext != "csv" {
            assert_eq!(d.title, "Installed packages", "{ext}");
            assert_eq!(d.metadata["author"], "Package Audit", "{ext}");
        }
        let pages = meta.active_pages(&d.id).await.unwrap();
        let header = "| Package | Version | Section | Installed-Size | Maintainer | Description |";
        // The header row heads every block of rows, and every row is there.
        let blocks = pages[0].text.matches("## Row").count();
        assert!(blocks > 5, "{ext}: {} blocks", blocks);
        assert_eq!(pages[0].text.matches(header).count(), blocks, "{ext}");
        for r in &rows {
            assert!(
                pages[0].text.contains(&format!("| {} | {} |", r[0], r[1])),
                "{ext}: {r:?}"
            );
        }
        if ext != "csv" {
            assert!(pages[0].text.starts_with("# Packages"), "{ext}");
            assert!(pages[1].text.starts_with("# Sections"), "{ext}");
            assert!(
                pages[2].text.contains("reviewed by the platform team"),
                "{ext}"
            );
        }
        // The chunk holding the 40th package names the rows around row 41.
        let chunks = meta.active_chunks(&d.id).await.unwrap();
        let chunk = chunks
            .iter()
            .find(|c| {
                c.text
                    .contains(&format!("| {} | {} |", target[0], target[1]))
            })
            .unwrap_or_else(|| panic!("{ext}: no chunk holds {target:?}"));
        assert!(chunk.text.contains(header), "{ext}: {}", chunk.text);
        let section = chunk.section.clone().unwrap_or_default();
        let range = section.rsplit("Rows ").next().unwrap();
        let (a, b) = range.split_once('–').unwrap_or((range, range));
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        assert!(a <= 41 && 41 <= b, "{ext}: {section}");
    }
    meta.close().await;
    assert_consistent(&env).await;

    // A search finds the row; its passage names the sheet and the rows.
    let out = env.run(&[
        "search",
        &format!("{} {}", target[0], target[5]),
        "-k",
        "10",
        "--json",
    ]);
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    for ext in ["xlsx", "ods", "xls", "csv"] {
        let p = results["passages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["source_uri"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("inventory.{ext}"))
                    && p["chunk"]["text"].as_str().unwrap().contains(&target[0])
            })
            .unwrap_or_else(|| panic!("{ext}: {out}"));
        let locator = p["locator"].as_str().unwrap();
        let expected = if ext == "csv" {
            "rows "
        } else {
            "sheet Packages, rows "
        };
        assert!(locator.starts_with(expected), "{ext}: {locator}");
    }
}

/// A table in a PDF's text layer (a handbook LibreOffice Writer prints to PDF, with a table of
/// this machine's installed packages between two sections of prose): its rows become a
/// Markdown table with the header first, and one chunk holds every row, apart from the prose.
#[tokio::test]
async fn pdf_tables_keep_their_rows_together() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    let work = docs.join("..").join("pdf-table-sources");
    std::fs::create_dir_all(&work).unwrap();
    let rows = installed_packages(12);
    let faq = std::fs::read_to_string(corpus_file("debian-faq__debian-faq.en.txt")).unwrap();
    let prose: Vec<String> = faq
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| p.len() > 300 && !p.contains('<') && !p.contains('&'))
        .take(4)
        .collect();
    let table: String = rows
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                xml_escape(&r[0]),
                xml_escape(&r[2]),
                xml_escape(&r[3])
            )
        })
        .collect();
    std::fs::write(
        work.join("packages.html"),
        format!(
            "<html><head><title>Package inventory</title></head><body>\
             <h1>Package inventory</h1><p>{}</p><p>{}</p>\
             <table width=\"100%\"><tr><th>Package</th><th>Section</th><th>Size (KiB)</th></tr>{table}</table>\
             <p>{}</p><p>{}</p></body></html>",
            prose[0], prose[1], prose[2], prose[3]
        ),
    )
    .unwrap();
    soffice(
        &work,
        &[
            "--infilter=HTML (StarWriter)",
            "--convert-to",
            "pdf:writer_pdf_Export",
        ],
        "packages.html",
    );
    std::fs::copy(work.join("packages.pdf"), docs.join("packages.pdf")).unwrap();
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], 1, "{summary}");

    let meta = env.meta().await;
    let doc = meta.documents(None).await.unwrap().remove(0);
    let text = document_text(&meta.active_pages(&doc.id).await.unwrap());
    assert!(
        text.contains("| Package | Section | Size (KiB) |\n| --- | --- | --- |\n"),
        "no table header in\n{text}"
    );
    for r in &rows {
        let row = format!("| {} | {} | {} |", r[0], r[2], r[3]);
        assert!(text.contains(&row), "no row {row} in\n{text}");
    }
    // One chunk holds the whole table (header and every row), and no prose.
    let chunks = meta.active_chunks(&doc.id).await.unwrap();
    let holding: Vec<_> = chunks
        .iter()
        .filter(|c| {
            rows.iter()
                .any(|r| c.text.contains(&format!("| {} |", r[0])))
        })
        .collect();
    assert_eq!(holding.len(), 1, "{holding:#?}");
    let table_chunk = &holding[0].text;
    assert!(
        table_chunk.trim_start().starts_with("| Package |"),
        "{table_chunk}"
    );
    assert!(
        table_chunk.lines().all(|l| l.trim().starts_with('|')),
        "{table_chunk}"
    );
    assert_eq!(table_chunk.lines().count(), rows.len() + 2, "{table_chunk}");
    // The prose is still read as prose: no line of it became a table.
    let first_words: String = prose[0]
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        chunks.iter().any(|c| !c.text.contains('|')
            && c.text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&first_words)),
        "{first_words}"
    );
    meta.close().await;
}
