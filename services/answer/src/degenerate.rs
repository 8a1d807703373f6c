//! Two ways a small model's answer goes wrong that the citation grammar cannot rule out: it
//! echoes the prompt's `<source …>` tags, and it falls into a loop, writing the same sentence
//! (or the same few words) again and again until the token limit. The first is removed from the
//! finished text; the second is caught while the answer streams, so the generation stops at
//! the first repeat instead of spending the rest of the token budget on it.
//!
//! A repetition penalty would prevent loops too, but it also works against what the prompt
//! asks for: copying the sources word for word (their words recur in the answer by design).

/// Shortest sentence (in characters, markers and spaces aside) whose repeat counts as a loop:
/// short ones ("See the manual.") may recur in a good answer.
const MIN_REPEATED_SENTENCE: usize = 24;

/// How many characters a stretch of text written again and again in a row (three times at
/// least) must fill to count as a loop: ".3.3.3" may be a version number, ".3" sixteen times
/// is not.
const MIN_LOOP_CHARS: usize = 32;

/// How far back the three-in-a-row check looks, in characters.
const PERIOD_WINDOW: usize = 600;

/// The text without the prompt's source tags (`<source id="2" title="…" page 4>`,
/// `</source>`) that the model wrote back; words the tag separated stay apart. A tag cut off
/// by the token limit at the very end is removed too.
pub fn strip_source_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        match source_tag_len(from) {
            Some(len) => {
                rest = from[len..].trim_start();
                if rest.is_empty() || rest.starts_with(['.', ',', ';', ':', '!', '?']) {
                    // "sentence </source>." or a tag ending the answer: no space before it.
                    out.truncate(out.trim_end().len());
                } else if out.ends_with(|c: char| !c.is_whitespace())
                    && rest.starts_with(|c: char| c.is_alphanumeric() || c == '(')
                {
                    out.push(' '); // "the manual</source>says": the words stay apart
                }
            }
            None => {
                out.push('<');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The length of the source tag at the start of `text` (which starts with `<`), if it is one.
fn source_tag_len(text: &str) -> Option<usize> {
    let after = text[1..].trim_start();
    let after = after.strip_prefix('/').unwrap_or(after).trim_start();
    let name = after.get(..6)?;
    if !name.eq_ignore_ascii_case("source") {
        return None;
    }
    let tail = &after[6..];
    if !(tail.is_empty() || tail.starts_with(|c: char| c == '>' || c.is_whitespace())) {
        return None; // "<sources" or "<sourcefile>": not the prompt's tag
    }
    let start = text.len() - after.len() + 6;
    match text[start..].find('>') {
        Some(close) if !text[start..start + close].contains('<') => Some(start + close + 1),
        // Cut off by the token limit: the rest of the answer is the tag's beginning.
        None if text.len() - start <= 200 && !text[start..].contains('\n') => Some(text.len()),
        _ => None,
    }
}

/// Where `text` (an answer being written) started repeating itself, when it has: the byte
/// offset to cut it at, so that what comes before keeps one copy of what was repeated. A
/// `finished` text's last sentence counts as finished even without anything after its stop.
///
/// Two kinds of loop: a finished sentence of [`MIN_REPEATED_SENTENCE`] characters or more that
/// the answer already holds (markers, case and spacing aside: "X [1]. X [2]." is a loop), and a
/// stretch of text written again and again at the end, three times at least and
/// [`MIN_LOOP_CHARS`] characters in all (a loop inside one long sentence).
pub(crate) fn repetition_start(text: &str, finished: bool) -> Option<usize> {
    repeated_sentence(text, finished).or_else(|| repeated_tail(text))
}

fn repeated_sentence(text: &str, finished: bool) -> Option<usize> {
    let mut seen = std::collections::HashSet::new();
    sentences(text, finished).into_iter().find_map(|(s, e)| {
        let key = sentence_key(&text[s..e]);
        (key.len() >= MIN_REPEATED_SENTENCE && !seen.insert(key)).then_some(s)
    })
}

/// The sentences of `text` as byte ranges, each with the markers and spaces that follow its
/// full stop. A sentence ends at `.`, `!` or `?` that ends a word and is followed by white
/// space, a marker or the end of the text, or at a line break. Unless the text is `finished`,
/// its last sentence counts only once something follows it ("… ver." or "… [1" may go on).
fn sentences(text: &str, finished: bool) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        let ends = b == b'\n'
            || (matches!(b, b'.' | b'!' | b'?')
                && i > 0
                && !bytes[i - 1].is_ascii_whitespace()
                && bytes
                    .get(i + 1)
                    .is_none_or(|n| n.is_ascii_whitespace() || *n == b'['));
        if !ends {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while let Some(len) = marker_or_space_len(&text[end..]) {
            end += len;
        }
        if end == bytes.len() && !finished {
            break;
        }
        out.push((start, end));
        (start, i) = (end, end);
    }
    if finished && start < bytes.len() {
        out.push((start, bytes.len()));
    }
    out
}

/// The length of the white space character or whole marker (`[12]`) `text` starts with.
fn marker_or_space_len(text: &str) -> Option<usize> {
    let c = text.chars().next()?;
    if c.is_whitespace() {
        return Some(c.len_utf8());
    }
    let close = text.find(']')?;
    (c == '[' && close > 1 && text[1..close].bytes().all(|b| b.is_ascii_digit()))
        .then_some(close + 1)
}

/// A sentence as compared for repeats: markers dropped, words lowercased and joined by one
/// space (punctuation dropped).
fn sentence_key(sentence: &str) -> String {
    let mut without_markers = String::with_capacity(sentence.len());
    let mut rest = sentence;
    while let Some(open) = rest.find('[') {
        without_markers.push_str(&rest[..open]);
        rest = rest[open..]
            .find(']')
            .map_or("", |close| &rest[open + close + 1..]);
    }
    without_markers.push_str(rest);
    crate::attribution::words(&without_markers).join(" ")
}

fn repeated_tail(text: &str) -> Option<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let window = &chars[chars.len().saturating_sub(PERIOD_WINDOW)..];
    let n = window.len();
    (2..=n / 3).find_map(|p| {
        let copies = MIN_LOOP_CHARS.div_ceil(p).max(3);
        let mut start = n.checked_sub(copies * p)?;
        let periodic = (start..n - p).all(|i| window[i].1 == window[i + p].1);
        if !periodic || !window[n - p..].iter().any(|(_, c)| c.is_alphanumeric()) {
            return None;
        }
        // Back to where the loop began, so that one copy is kept.
        while start > 0 && window[start - 1].1 == window[start - 1 + p].1 {
            start -= 1;
        }
        Some(window[start + p].0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_source_tags_are_removed() {
        for (text, want) in [
            (
                "Use apt-get upgrade [1]. </source>",
                "Use apt-get upgrade [1].",
            ),
            (
                "Use apt-get upgrade </source> [1].",
                "Use apt-get upgrade [1].",
            ),
            (
                "It is free [1].\n</source>\n<source id=\"2\" title=\"FAQ\" page 4>\nIt runs [2].",
                "It is free [1].\nIt runs [2].",
            ),
            ("The manual</source>says so [3].", "The manual says so [3]."),
            ("R is free [1]. < /SOURCE >", "R is free [1]."),
            (
                "R is free [1]. <source id=\"3\" title=\"R",
                "R is free [1].",
            ),
            ("Assign with x <- 1 [2].", "Assign with x <- 1 [2]."),
            (
                "Edit <sourcefile> and a<b [1].",
                "Edit <sourcefile> and a<b [1].",
            ),
            (
                "Put it in <sources.list> [2].",
                "Put it in <sources.list> [2].",
            ),
        ] {
            assert_eq!(strip_source_tags(text), want, "{text}");
        }
    }

    #[test]
    fn a_repeated_sentence_is_cut_at_its_second_copy() {
        let once = "R is a language and environment for statistical computing [1]. ";
        let text = format!("{once}It is free [2]. {once}It");
        let cut = repetition_start(&text, false).expect("the sentence repeats");
        assert_eq!(&text[..cut], &format!("{once}It is free [2]. "));
        // Another marker, case or spacing: still the same sentence.
        let text = format!("{once}r IS  a language and environment for statistical computing [3].");
        assert_eq!(repetition_start(&text, true), Some(once.len()));
        // Unfinished, the last sentence may still go on ("… computing [3]. in R").
        assert_eq!(repetition_start(&text, false), None);
        // The repeat is cut once finished, not while it is being written.
        let text = format!("{once}R is a language and environment for statistical");
        assert_eq!(repetition_start(&text, false), None);
    }

    #[test]
    fn a_good_answer_is_not_cut() {
        for text in [
            "R is a language and environment for statistical computing [1]. It is free software \
             [2]. See the manual [1]. See the manual [2].",
            "Set the console with SET CONSOLE TELNET=23 [1]. Then SET CONSOLE TELNET=BUFFERED \
             [1]. Then SET CONSOLE TELNET=UNBUFFERED [2].",
            "Version 2.3 is the current one [1]. Version 2.4 is in testing [2]. ",
            "The columns are 1 2 3 4 5 6 7 8 9 10 11 12 [1].",
            "Versions 1.1.1, 2.2.2 and 3.3.3.3 are supported [2].",
            "Fill it with 0000 0000 0000 0000 [1].",
            "",
        ] {
            assert_eq!(repetition_start(text, false), None, "{text}");
            assert_eq!(repetition_start(text, true), None, "{text}");
        }
    }

    #[test]
    fn a_loop_inside_a_sentence_is_cut_after_its_first_copy() {
        let text = "The simulator supports the PDP-11, the VAX, the VAX, the VAX, the VAX, ";
        let cut = repetition_start(text, false).expect("a loop");
        assert_eq!(&text[..cut], "The simulator supports the PDP-11, the VAX");
        let text = "The current version of R is [2].2.2.3.2.3.3.3.3.3.3.3.3.3.3.3.3.3.3.3.3.3";
        let cut = repetition_start(text, false).expect("a loop");
        assert_eq!(&text[..cut], "The current version of R is [2].2.2.3.2.3");
        // Two copies are not yet a loop, nor three short ones.
        for text in [
            "It supports the VAX 780, the VAX 780, ",
            "Use 1.1.1.1 or 2.2.2 [1]",
        ] {
            assert_eq!(repetition_start(text, false), None, "{text}");
        }
    }
}
