//! Query expansion: the local model writes a short passage that would answer the question
//! (a hypothetical answer), and retrieval ranks with the question and that passage together,
//! so a question worded away from the documents still meets their vocabulary. Relevance and
//! the words no passage holds are still judged on the question alone.

use enclave_generation::{ChatMessage, GenerationRequest, Generator};

use crate::AnswerError;

/// Longest expansion, in characters.
const MAX_EXPANSION_CHARS: usize = 320;

/// The chat that asks for a hypothetical answer.
pub fn expansion_messages(question: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::system(
            "You write two sentences that a manual or an FAQ answering the question would \
             contain, using the words such a document would use (names of commands, \
             options, programs, terms). Write only the two sentences.",
        ),
        ChatMessage::user(question.trim().to_string()),
    ]
}

/// The shape of an expansion: one paragraph of plain text (GBNF, llama.cpp).
pub fn expansion_grammar() -> String {
    format!("root ::= [^\\n\\[\\]<>]{{10,{MAX_EXPANSION_CHARS}}}\n")
}

/// The shape of an expansion in llguidance's Lark form (mistral.rs).
pub fn expansion_lark() -> String {
    format!("start: TEXT\nTEXT: /[^\\n\\[\\]<>]{{10,{MAX_EXPANSION_CHARS}}}/\n")
}

/// The model's hypothetical answer to `question` (greedy, at most about 64 tokens).
pub async fn expand(generator: &dyn Generator, question: &str) -> Result<String, AnswerError> {
    crate::complete(
        generator,
        GenerationRequest {
            messages: expansion_messages(question),
            max_tokens: 64,
            temperature: 0.0,
            grammar: Some(expansion_grammar()),
            lark: Some(expansion_lark()),
            seed: 0,
        },
    )
    .await
}
