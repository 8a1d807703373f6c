//! Citation attribution: a marker `[k]` that follows words copied from another given source
//! is pointed at that source.
//!
//! Small models often copy a sentence from one source and put the number of another after it
//! (in the held-out sets, the passage holding the answer was source 1 while the answer cited
//! source 2). Each marker's claim, the words between it and the previous marker or the start
//! of its sentence, is compared with every source by shared word pairs; when another source
//! holds clearly more of the claim than the cited one, the marker names that source.

/// Share of a claim's word pairs another source must hold for a marker to move to it.
const MIN_SUPPORT: f64 = 0.5;
/// By how much that source must beat the cited one.
const MIN_GAIN: f64 = 0.3;
/// Claims shorter than this many word pairs are left as cited: too little to judge.
const MIN_PAIRS: usize = 3;

/// Lower-cased words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Adjacent word pairs.
fn pairs(text: &str) -> std::collections::HashSet<(String, String)> {
    let w = words(text);
    w.windows(2).map(|p| (p[0].clone(), p[1].clone())).collect()
}

/// Share of `claim`'s pairs that `source` holds.
fn support(
    claim: &std::collections::HashSet<(String, String)>,
    source: &std::collections::HashSet<(String, String)>,
) -> f64 {
    if claim.is_empty() {
        return 0.0;
    }
    claim.intersection(source).count() as f64 / claim.len() as f64
}

/// Where each sentence of `span` starts: after a line break, or after `.`, `!` or `?` followed
/// by white space (so "libfoo.so.1" or "12.1" end nothing). Starts of empty sentences are left
/// out.
fn sentence_starts(span: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let mut chars = span.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = c == '\n'
            || (matches!(c, '.' | '!' | '?')
                && chars.peek().is_some_and(|&(_, next)| next.is_whitespace()));
        if ends {
            starts.push(i + c.len_utf8());
        }
    }
    starts.retain(|&s| !span[s..].trim().is_empty());
    starts
}

/// The word pairs of the claim a marker at the end of `span` makes: its last sentence (the
/// marker may follow the sentence's full stop), then the sentences before it, one at a time,
/// until the claim has [`MIN_PAIRS`] pairs or `span` is used up.
fn claim_before(span: &str) -> std::collections::HashSet<(String, String)> {
    let mut claim = std::collections::HashSet::new();
    for &start in sentence_starts(span).iter().rev() {
        claim = pairs(&span[start..]);
        if claim.len() >= MIN_PAIRS {
            break;
        }
    }
    claim
}

/// A marker moved to the source its claim came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Repointed {
    /// The number the model wrote.
    pub from: usize,
    /// The source that holds the claim.
    pub to: usize,
}

/// Rewrites the markers `[k]` (1-based into `sources`) of `text` whose claim another source
/// holds clearly better; returns the text and the markers moved. Other bracketed text is left
/// as it is (the citation check removes it).
pub fn attribute(text: &str, sources: &[&str]) -> (String, Vec<Repointed>) {
    let source_pairs: Vec<_> = sources.iter().map(|s| pairs(s)).collect();
    let mut out = String::with_capacity(text.len());
    let mut moved = Vec::new();
    // The text of the current claim: what was written since the previous marker, without the
    // markers right before this one ("[1][2]"), which are not words of the claim.
    let mut claim_text = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        claim_text.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find(']') else {
            break;
        };
        let marker = &after[..=close];
        rest = &after[close + 1..];
        let Ok(k) = marker[1..marker.len() - 1].trim().parse::<usize>() else {
            out.push_str(marker);
            claim_text.push_str(marker);
            continue;
        };
        if !(1..=sources.len()).contains(&k) {
            out.push_str(marker);
            continue;
        }
        // The claim: this marker's sentence, and the ones before it (back to the previous
        // marker) while it is too short to judge.
        let claim = claim_before(&claim_text);
        let mut number = k;
        if claim.len() >= MIN_PAIRS {
            let cited = support(&claim, &source_pairs[k - 1]);
            let (best, best_support) = source_pairs
                .iter()
                .enumerate()
                .map(|(i, s)| (i + 1, support(&claim, s)))
                .fold((k, cited), |a, b| if b.1 > a.1 { b } else { a });
            if best != k && best_support >= MIN_SUPPORT && best_support - cited >= MIN_GAIN {
                number = best;
                moved.push(Repointed { from: k, to: best });
            }
        }
        // A marker moved onto the one right before it is not repeated.
        let written = format!("[{number}]");
        if !(number != k && out.ends_with(&written)) {
            out.push_str(&written);
        }
        // Adjacent markers ("[1][2]") share their claim.
        if !rest.trim_start().starts_with('[') {
            claim_text.clear();
        }
    }
    out.push_str(rest);
    (out, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRAN: &str = "The bin/windows directory of a CRAN site contains binaries for a base \
                        distribution and add-on packages from CRAN to run on 64-bit Windows.";
    const OTHER: &str = "R can be installed from source on Unix-like systems with configure \
                         and make.";

    #[test]
    fn a_copied_sentence_cites_the_source_it_was_copied_from() {
        let text = "The bin/windows directory of a CRAN site contains binaries for a base \
                    distribution [2]. You can build it with configure and make [2].";
        let (out, moved) = attribute(text, &[CRAN, OTHER]);
        assert_eq!(
            out,
            "The bin/windows directory of a CRAN site contains binaries for a base \
             distribution [1]. You can build it with configure and make [2]."
        );
        assert_eq!(moved, vec![Repointed { from: 2, to: 1 }]);
    }

    #[test]
    fn right_short_shared_and_unknown_markers_stay() {
        // Already right.
        let right = "R can be installed from source with configure and make [2].";
        assert_eq!(
            attribute(right, &[CRAN, OTHER]),
            (right.to_string(), vec![])
        );
        // Too short to judge.
        let short = "Windows binaries [2].";
        assert_eq!(attribute(short, &[CRAN, OTHER]).1, vec![]);
        // Two markers on one claim both hold it: the second one moves only if it is wrong.
        let both = "The bin/windows directory of a CRAN site contains binaries [1][2].";
        let (out, moved) = attribute(both, &[CRAN, OTHER]);
        assert_eq!(
            out,
            "The bin/windows directory of a CRAN site contains binaries [1]."
        );
        assert_eq!(moved, vec![Repointed { from: 2, to: 1 }]);
        // Markers out of range and other brackets are the citation check's business.
        let odd = "The bin/windows directory of a CRAN site contains binaries [7] [x].";
        assert_eq!(attribute(odd, &[CRAN, OTHER]), (odd.to_string(), vec![]));
    }

    #[test]
    fn a_marker_after_the_full_stop_judges_the_sentence_before_it() {
        // The common "sentence. [k]" form: the claim is the sentence, not the empty text
        // after its full stop.
        let text = "R can be installed from source on Unix-like systems with configure and \
                    make. [1]";
        let (out, moved) = attribute(text, &[CRAN, OTHER]);
        assert_eq!(moved, vec![Repointed { from: 1, to: 2 }]);
        assert!(out.ends_with("make. [2]"), "{out}");
    }

    #[test]
    fn a_short_last_sentence_is_judged_with_the_ones_before_it() {
        // A list copied from a source, closed by a few words and another source's marker.
        let text = "The directory holds:\n1. binaries for a base distribution and add-on \
                    packages from CRAN\n2. Packages[2]";
        let (_, moved) = attribute(text, &[CRAN, OTHER]);
        assert_eq!(moved, vec![Repointed { from: 2, to: 1 }]);
        // Dots inside words and numbers end no sentence: "so.1" does not cut the claim.
        let text = "Binaries for a base distribution and add-on packages from CRAN run on \
                    libR.so.1 systems[2]";
        assert_eq!(
            attribute(text, &[CRAN, OTHER]).1,
            vec![Repointed { from: 2, to: 1 }]
        );
        // The previous marker bounds the claim: the sentence it closed is not reread.
        let text = "Binaries for a base distribution and add-on packages from CRAN [1]. \
                    Run make[2]";
        assert_eq!(attribute(text, &[CRAN, OTHER]).1, vec![]);
    }

    #[test]
    fn a_claim_in_neither_source_keeps_its_marker() {
        let text = "Ask your system administrator for the installation media first [2].";
        assert_eq!(attribute(text, &[CRAN, OTHER]).1, vec![]);
    }
}
