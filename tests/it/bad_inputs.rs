//! Every bad input fails alone, with a clear reason, while the rest of the batch is ingested
//! and the process lives on.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::{TestEnv, assert_consistent, assert_success, corpus_file, models_dir};

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Hard-links (or copies) `from` to `to`: a way to give an unprivileged user files that live
/// under a private home directory.
fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

#[tokio::test]
async fn bad_inputs_fail_alone_with_clear_reasons() {
    let mut env = TestEnv::embedded();
    // Everything the unprivileged run needs must be reachable by it.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let docs = env.docs();
    std::fs::set_permissions(&docs, std::fs::Permissions::from_mode(0o777)).unwrap();

    // Good documents that must come through.
    std::fs::write(
        docs.join("good.txt"),
        "Board minutes: the budget was approved.\n",
    )
    .unwrap();
    std::fs::copy(corpus_file("simh__hpiop.pdf"), docs.join("good.pdf")).unwrap();

    // Bad ones.
    let real = std::fs::read(corpus_file("simh__decsys.pdf")).unwrap();
    std::fs::write(docs.join("truncated.pdf"), &real[..real.len() / 3]).unwrap();
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(docs.join("random.pdf"), noise).unwrap();
    let status = Command::new("qpdf")
        .args(["--encrypt", "user-secret", "owner-secret", "256", "--"])
        .arg(corpus_file("simh__hpiop.pdf"))
        .arg(docs.join("encrypted.pdf"))
        .status()
        .expect("qpdf is needed to make an encrypted PDF (scripts/test installs it)");
    assert!(status.success());
    std::fs::write(docs.join("empty.txt"), b"").unwrap();
    std::fs::write(
        docs.join("nobody.eml"),
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: (no body)\r\n\r\n",
    )
    .unwrap();
    let line = "lorem ipsum dolor sit amet ".repeat(50 * 1024 * 1024 / 27 + 1);
    std::fs::write(docs.join("huge-single-line.txt"), line.as_bytes()).unwrap();
    drop(line);
    std::fs::create_dir(docs.join("loop")).unwrap();
    std::os::unix::fs::symlink(docs.join("loop"), docs.join("loop/again")).unwrap();
    let locked = docs.join("locked.txt");
    std::fs::write(&locked, "secret").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // A PDF that takes far longer than the 1 s extraction limit set below.
    link_or_copy(
        &corpus_file("r-doc-pdf__usr__share__R__doc__manual__refman.pdf"),
        &docs.join("slow.pdf"),
    );

    // Without the recovery step, which would hand the slow PDF to pdftotext (a 2,415-page
    // manual that it reads), so that the time limit itself is what is tested.
    env.extra_env = vec![
        ("ENCLAVE_INGEST__PDF_TIMEOUT_SECS".into(), "1".into()),
        ("ENCLAVE_OCR__RECOVER_PDFS".into(), "false".into()),
    ];
    let args = ["ingest", "--json", docs.to_str().unwrap()];
    let out = if is_root() {
        // Root reads any file: run as nobody so that the locked file is really unreadable.
        let bin = env.dir.path().join("enclave");
        link_or_copy(Path::new(env!("CARGO_BIN_EXE_enclave")), &bin);
        let models = env.dir.path().join("models");
        for sub in ["all-minilm-l6-v2", "onnxruntime"] {
            std::fs::create_dir_all(models.join(sub)).unwrap();
            for f in std::fs::read_dir(models_dir().join(sub)).unwrap() {
                let f = f.unwrap();
                link_or_copy(&f.path(), &models.join(sub).join(f.file_name()));
            }
        }
        let data = env.data_dir();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut cmd = env.command();
        let program = cmd.get_program().to_owned();
        assert!(program.to_str().unwrap().ends_with("enclave"));
        let mut sandboxed = Command::new("setpriv");
        sandboxed
            .env_clear()
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .env("ENCLAVE_MODELS_DIR", &models)
            .current_dir(env.dir.path());
        cmd = sandboxed;
        cmd.output().unwrap()
    } else {
        env.command().args(args).output().unwrap()
    };
    assert_success(&out, &args);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let reasons: std::collections::BTreeMap<String, String> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let source = f["source"].as_str().unwrap();
            let name = source.rsplit('/').next().unwrap().to_string();
            (name, f["reason"].as_str().unwrap().to_string())
        })
        .collect();
    let expect = |name: &str, needle: &str| {
        let reason = reasons
            .get(name)
            .unwrap_or_else(|| panic!("{name} did not fail: {summary:#}"));
        assert!(
            reason.to_lowercase().contains(&needle.to_lowercase()),
            "{name}: reason {reason:?} should mention {needle:?}"
        );
    };
    expect("truncated.pdf", "PDF");
    expect("random.pdf", "malformed PDF");
    expect("encrypted.pdf", "encrypted PDF");
    expect("empty.txt", "empty file");
    expect("nobody.eml", "no body");
    expect("huge-single-line.txt", "text too long");
    expect("again", "symbolic link loop");
    expect("locked.txt", "permission denied");
    expect("slow.pdf", "did not finish within 1 s");
    assert_eq!(reasons.len(), 9, "unexpected failures: {reasons:#?}");
    assert_eq!(summary["ingested"], 2, "{summary:#}");

    // The failures are recorded with their reasons and shown by `enclave status`.
    let status = env.run(&["status"]);
    for name in ["truncated.pdf", "encrypted.pdf", "locked.txt", "slow.pdf"] {
        assert!(
            status.contains(name),
            "{name} missing from status:\n{status}"
        );
    }
    assert_consistent(&env).await;

    // A second run: the failed documents are unchanged, not retried, unless asked.
    env.extra_env.clear();
    let again = env.ingest(&[&docs.join("encrypted.pdf"), &docs.join("good.txt")]);
    assert_eq!(again["unchanged"], 2, "{again:#}");
}
