//! Follow-up questions: a question asked after earlier turns of a conversation ("and for
//! version 2?") is rewritten into a standalone question before retrieval, by the local model,
//! unless it already stands alone (a cheap check, no model call).

use enclave_generation::{ChatMessage, GenerationRequest, Generator};

use crate::AnswerError;

/// One earlier turn of a conversation: what was asked and what was answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Turn {
    pub question: String,
    pub answer: String,
    /// What the question was searched as, when it was itself a rewritten follow-up.
    pub searched: Option<String>,
}

/// Turns of the history the rewrite sees (the most recent ones).
pub const REWRITE_TURNS: usize = 3;

/// Characters of each earlier answer the rewrite sees.
const ANSWER_CHARS: usize = 400;

/// Longest rewrite after its first word, in characters.
const MAX_REWRITE_CHARS: usize = 160;

/// The words a rewrite may start with: it is a question, not an answer.
const QUESTION_OPENERS: &[&str] = &[
    "What", "How", "Why", "When", "Where", "Which", "Who", "Whom", "Whose", "Is", "Are", "Was",
    "Were", "Do", "Does", "Did", "Can", "Could", "Should", "Would", "Will", "May", "Might", "Has",
    "Have", "Had", "Must", "Shall",
];

/// Words that point back into the conversation.
const REFERRING: &[&str] = &[
    "it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those", "he", "him",
    "his", "she", "her", "hers", "same", "such", "above", "former", "latter", "previous", "else",
    "too", "either", "neither", "instead", "one", "ones",
];

/// Words of four letters or more that say nothing of a question's subject.
const FUNCTION_WORDS: &[&str] = &[
    "what",
    "which",
    "where",
    "when",
    "whose",
    "about",
    "with",
    "from",
    "into",
    "onto",
    "there",
    "here",
    "does",
    "have",
    "been",
    "were",
    "would",
    "could",
    "should",
    "shall",
    "will",
    "also",
    "more",
    "most",
    "some",
    "other",
    "than",
    "then",
    "your",
    "mine",
    "many",
    "much",
    "very",
    "just",
    "like",
    "only",
    "over",
    "after",
    "before",
    "being",
    "each",
    "because",
    "while",
    "make",
    "made",
    "want",
    "need",
    "know",
    "tell",
    "explain",
    "describe",
    "give",
    "show",
    "please",
    "anything",
    "something",
    "thing",
    "things",
    "case",
    "cases",
    "kind",
    "kinds",
    "ways",
    "possible",
];

/// Openings of a question that continues the previous one.
const OPENERS: &[&str] = &[
    "and",
    "but",
    "or",
    "so",
    "also",
    "then",
    "what about",
    "how about",
    "why not",
];

/// Whether `question` can be searched as it is: there is no history, or it names no earlier
/// subject (no pronoun pointing back, no "and ..."/"what about ..." opening) and has at least
/// four words.
pub fn stands_alone(question: &str, history: &[Turn]) -> bool {
    if history.is_empty() {
        return true;
    }
    let lower = question.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() < 4 {
        return false;
    }
    let opening = words.join(" ");
    if OPENERS
        .iter()
        .any(|o| opening == *o || opening.starts_with(&format!("{o} ")))
    {
        return false;
    }
    !words
        .iter()
        .any(|w| REFERRING.contains(&w.trim_end_matches("'s")))
}

/// Text without its citation markers, cut to `max` characters.
fn plain(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        match rest[open..].find(']') {
            Some(close)
                if rest[open + 1..open + close]
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
            {
                rest = &rest[open + close + 1..];
            }
            _ => {
                out.push('[');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// The chat that asks the model for a standalone question.
pub fn rewrite_messages(question: &str, history: &[Turn]) -> Vec<ChatMessage> {
    let mut conversation = String::from("Conversation:\n");
    let recent = &history[history.len().saturating_sub(REWRITE_TURNS)..];
    for t in recent {
        conversation.push_str(&format!(
            "Question: {}\nAnswer: {}\n",
            plain(&t.question, ANSWER_CHARS),
            plain(&t.answer, ANSWER_CHARS)
        ));
    }
    conversation.push_str(&format!(
        "\nFollow-up question: {}\nStandalone question:",
        plain(question, ANSWER_CHARS)
    ));
    vec![
        ChatMessage::system(
            "You rewrite the follow-up question of a conversation into one standalone \
             question that can be understood without the conversation. Replace words like \
             it, they, this or that with what they refer to, and keep everything else the \
             follow-up asks. Write only the question.",
        ),
        ChatMessage::user(conversation),
    ]
}

/// The shape of a rewrite: one line that starts like a question and ends with a question
/// mark (GBNF, llama.cpp).
pub fn rewrite_grammar() -> String {
    let openers: Vec<String> = QUESTION_OPENERS
        .iter()
        .map(|w| format!("\"{w} \""))
        .collect();
    format!(
        "root ::= opener [^\\n?\\[\\]<>]{{4,{MAX_REWRITE_CHARS}}} \"?\"\nopener ::= {}\n",
        openers.join(" | ")
    )
}

/// The shape of a rewrite in llguidance's Lark form (mistral.rs).
pub fn rewrite_lark() -> String {
    let openers: Vec<String> = QUESTION_OPENERS
        .iter()
        .map(|w| format!("\"{w} \""))
        .collect();
    format!(
        "start: OPENER REST\nOPENER: {}\nREST: /[^\\n?\\[\\]<>]{{4,{MAX_REWRITE_CHARS}}}\\?/\n",
        openers.join(" | ")
    )
}

/// How a follow-up was made standalone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewriteKind {
    /// The model wrote it.
    Model,
    /// The model's rewrite lost the follow-up's own words: the previous question and the
    /// follow-up are searched together instead.
    Context,
}

/// A follow-up made standalone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rewrite {
    /// What was searched and answered.
    pub question: String,
    pub kind: RewriteKind,
    pub took_ms: f64,
}

/// Content words of a text (lowercase, four letters or more).
fn content_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4 && !REFERRING.contains(w) && !FUNCTION_WORDS.contains(w))
        .map(str::to_string)
        .collect()
}

/// Whether a model's rewrite can stand for the follow-up: it keeps the follow-up's own content
/// words and adds at least one from the conversation (it resolved what the follow-up points
/// back to, instead of echoing it or drifting off).
fn usable(rewrite: &str, question: &str, history: &[Turn]) -> bool {
    let r = rewrite.trim();
    if r.chars().count() < 8 || r.eq_ignore_ascii_case(question.trim()) {
        return false;
    }
    let have = content_words(r);
    let own = content_words(question);
    if !own.iter().all(|w| have.contains(w)) {
        return false;
    }
    let recent = &history[history.len().saturating_sub(REWRITE_TURNS)..];
    let context: Vec<String> = recent
        .iter()
        .flat_map(|t| content_words(&format!("{} {}", t.question, t.answer)))
        .collect();
    have.iter().any(|w| !own.contains(w) && context.contains(w))
}

/// Longest context search, in words: a chain of follow-ups each searched with the one before
/// keeps only its most recent words.
const MAX_CONTEXT_WORDS: usize = 40;

/// The previous turn's search and the follow-up together, at most [`MAX_CONTEXT_WORDS`] words
/// (the oldest dropped first; the follow-up's own words are always kept).
fn context_question(previous: &str, question: &str) -> String {
    let own: Vec<&str> = question.split_whitespace().collect();
    let room = MAX_CONTEXT_WORDS.saturating_sub(own.len());
    let before: Vec<&str> = previous.split_whitespace().collect();
    let kept = &before[before.len().saturating_sub(room)..];
    kept.iter()
        .chain(&own)
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes `question` standalone with the model (greedy, a few dozen tokens), or, when the
/// model's rewrite is unusable, with the previous question (as it was searched) as context.
pub async fn rewrite(
    generator: &dyn Generator,
    question: &str,
    history: &[Turn],
) -> Result<Rewrite, AnswerError> {
    let started = std::time::Instant::now();
    let text = crate::complete(
        generator,
        GenerationRequest {
            messages: rewrite_messages(question, history),
            max_tokens: 64,
            temperature: 0.0,
            grammar: Some(rewrite_grammar()),
            lark: Some(rewrite_lark()),
            seed: 0,
        },
    )
    .await?;
    let (question, kind) = if usable(&text, question, history) {
        (text, RewriteKind::Model)
    } else {
        tracing::debug!(follow_up = question, rewrite = %text, "the model's rewrite is not used");
        let previous = history
            .last()
            .map_or("", |t| t.searched.as_deref().unwrap_or(&t.question));
        (context_question(previous, question), RewriteKind::Context)
    };
    Ok(Rewrite {
        question,
        kind,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(q: &str) -> Vec<Turn> {
        vec![Turn {
            question: q.into(),
            answer: "Debian is a free operating system [1].".into(),
            searched: None,
        }]
    }

    #[test]
    fn context_searches_do_not_grow_without_end() {
        assert_eq!(
            context_question(" What is Debian? ", "and its  license?"),
            "What is Debian? and its license?"
        );
        let mut searched = "What is the notice period for a contract?".to_string();
        for i in 0..50 {
            searched = context_question(&searched, &format!("and case {i}?"));
        }
        assert_eq!(searched.split_whitespace().count(), MAX_CONTEXT_WORDS);
        assert!(searched.ends_with("and case 49?"), "{searched}");
    }

    #[test]
    fn follow_ups_that_point_back_are_rewritten() {
        let h = turn("What is Debian?");
        assert!(
            stands_alone("anything", &[]),
            "no history: nothing to rewrite"
        );
        for q in [
            "And for version 2?",
            "What about the exceptions?",
            "How do I install it?",
            "Who maintains them?",
            "Why?",
            "Is that free software?",
            "How do I report one?",
            "Where is Debian's bug tracker, and who runs this?",
        ] {
            assert!(!stands_alone(q, &h), "{q}");
        }
        for q in [
            "How do I report a bug in a Debian package?",
            "Which architectures does Debian support?",
        ] {
            assert!(stands_alone(q, &h), "{q}");
        }
    }

    #[test]
    fn the_rewrite_prompt_holds_recent_turns_without_markers() {
        let mut h = Vec::new();
        for i in 0..5 {
            h.push(Turn {
                question: format!("question {i}?"),
                answer: format!("answer {i} [1][2] with [x] text"),
                searched: None,
            });
        }
        let m = rewrite_messages("and the next one?", &h);
        let user = &m[1].content;
        assert!(
            !user.contains("question 1?") && user.contains("question 2?"),
            "{user}"
        );
        assert!(user.contains("answer 4 with [x] text"), "{user}");
        assert!(user.ends_with("Follow-up question: and the next one?\nStandalone question:"));
        assert_eq!(plain(&"a".repeat(500), 10), format!("{}…", "a".repeat(10)));
    }

    #[test]
    fn an_unusable_rewrite_is_refused() {
        let h = turn("What is Debian?");
        assert!(usable(
            "How do I install Debian on a laptop?",
            "How do I install it on a laptop?",
            &h
        ));
        // Lost the follow-up's own words, only echoed it, or added nothing from the
        // conversation.
        assert!(!usable(
            "What is Debian?",
            "How do I install it on a laptop?",
            &h
        ));
        assert!(!usable("And for version 2?", "And for version 2?", &h));
        assert!(!usable(
            "How do I install it on a laptop computer?",
            "How do I install it on a laptop?",
            &h
        ));
        let g = rewrite_grammar();
        assert!(
            g.starts_with("root ::= opener ") && g.contains("\"Which \""),
            "{g}"
        );
        let l = rewrite_lark();
        assert!(
            l.starts_with("start: OPENER REST\n") && l.contains("\"How \""),
            "{l}"
        );
    }
}
