//! Questions written from a collection's own passages by the local model: what a reader could
//! ask that the passage answers. They calibrate a collection's fusion weights (see
//! `enclave_retrieval::calibrate`) without anyone writing a question set first.

use enclave_generation::{ChatMessage, GenerationRequest, Generator};

use crate::AnswerError;
use crate::followup::{rewrite_grammar, rewrite_lark};

/// Characters of a passage the model reads.
const PASSAGE_CHARS: usize = 1200;

/// The chat that asks for a question a passage answers.
pub fn question_messages(title: &str, section: Option<&str>, passage: &str) -> Vec<ChatMessage> {
    let flat = passage.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut = match flat.char_indices().nth(PASSAGE_CHARS) {
        Some((i, _)) => &flat[..i],
        None => flat.as_str(),
    };
    let mut user = format!("Document: {}\n", title.trim());
    if let Some(s) = section.map(str::trim).filter(|s| !s.is_empty()) {
        user.push_str(&format!("Section: {s}\n"));
    }
    user.push_str(&format!("Passage:\n{cut}\n\nQuestion:"));
    vec![
        ChatMessage::system(
            "You write one question that a reader of these documents could ask and that the \
             passage answers. Ask it the way a reader would, in your own words; do not copy a \
             sentence of the passage and do not mention the passage. Write only the question.",
        ),
        ChatMessage::user(user),
    ]
}

/// A question the passage answers (greedy, one line ending in "?"), or `None` when the model
/// wrote fewer than three words.
pub async fn question_for(
    generator: &dyn Generator,
    title: &str,
    section: Option<&str>,
    passage: &str,
) -> Result<Option<String>, AnswerError> {
    let text = crate::complete(
        generator,
        GenerationRequest {
            messages: question_messages(title, section, passage),
            max_tokens: 48,
            temperature: 0.0,
            grammar: Some(rewrite_grammar()),
            lark: Some(rewrite_lark()),
            seed: 0,
        },
    )
    .await?;
    let question = text;
    Ok((question.split(' ').count() >= 3).then_some(question))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_names_the_document_and_cuts_long_passages() {
        let long = "word ".repeat(1000);
        let m = question_messages("Debian FAQ", Some("Upgrading › apt"), &long);
        let user = &m[1].content;
        assert!(user.starts_with("Document: Debian FAQ\nSection: Upgrading › apt\n"));
        assert!(user.ends_with("\n\nQuestion:"));
        assert!(user.chars().count() < PASSAGE_CHARS + 100, "{}", user.len());
        let m = question_messages("T", None, "short text");
        assert!(!m[1].content.contains("Section:"));
    }
}
