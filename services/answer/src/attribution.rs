//! Citation attribution: a marker `[k]` that follows words copied from another given source
//! is pointed at that source.
//!
//! Small models often copy a sentence from one source and put the number of another after it
//! (in the held-out sets, the passage holding the answer was source 1 while the answer cited
//! source 2). Each marker's claim, the words between it and the previous marker or the start
//! of its sentence, is compared with every source by shared word pairs; when another source
//! holds clearly more of the claim than the cited one, the marker names that source.
//!
//! They also copy a sentence and cite nothing after it (the grammar only bounds the run of
//! text between markers), so the answer's one marker names another sentence's source. A
//! sentence without a marker that one source holds almost word for word gets that source's
//! marker.

/// Share of a claim's word pairs another source must hold for a marker to move to it.
const MIN_SUPPORT: f64 = 0.5;
/// By how much that source must beat the cited one.
const MIN_GAIN: f64 = 0.3;
/// Claims shorter than this many word pairs are left as cited: too little to judge.
const MIN_PAIRS: usize = 3;
/// Share of an uncited sentence's word pairs one source must hold for the sentence to be taken
/// as copied from it, and cited.
const COPIED: f64 = 0.8;
/// Sentences shorter than this many word pairs are not cited by [`COPIED`]: a few common
/// pairs ("debian gnu", "gnu linux") are in many sources.
const MIN_COPIED_PAIRS: usize = 4;

/// Lower-cased words.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// English stop words (NLTK's list): a pair of two of them ("is used", "in the") is in
/// almost every source, so it says nothing of where a claim came from.
static STOP_WORDS: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| {
        stop_words::get(stop_words::LANGUAGE::English)
            .iter()
            .copied()
            .collect()
    });

/// Words that turn a copied sentence around ("there are no Unix-like binaries for R"); "t" is
/// what is left of "n't".
const NEGATIONS: &[&str] = &["no", "not", "never", "nor", "none", "cannot", "t"];

/// A text's word pairs.
type Pairs = std::collections::HashSet<(String, String)>;

/// Adjacent word pairs, except those of two stop words.
fn pairs(text: &str) -> Pairs {
    let w = words(text);
    w.windows(2)
        .filter(|p| !(STOP_WORDS.contains(p[0].as_str()) && STOP_WORDS.contains(p[1].as_str())))
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// Share of `claim`'s pairs that `source` holds.
fn support(claim: &Pairs, source: &Pairs) -> f64 {
    if claim.is_empty() {
        return 0.0;
    }
    claim.intersection(source).count() as f64 / claim.len() as f64
}

/// The source (1-based) holding the largest share of `claim`'s pairs, the first of equals,
/// and that share; `(0, 0.0)` when none holds any.
fn best_source(claim: &Pairs, source_pairs: &[Pairs]) -> (usize, f64) {
    source_pairs
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, support(claim, s)))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a })
}

/// Where each sentence of `span` starts: after a line break, or after `.`, `!` or `?` that
/// ends a word and is followed by white space (so "libfoo.so.1", "12.1" and the command in
/// "type ! (spawn)" end nothing). Starts of empty sentences are left out.
fn sentence_starts(span: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let mut chars = span.char_indices().peekable();
    let mut previous = None;
    while let Some((i, c)) = chars.next() {
        let ends = c == '\n'
            || (matches!(c, '.' | '!' | '?')
                && previous.is_some_and(|p: char| !p.is_whitespace())
                && chars.peek().is_some_and(|&(_, next)| next.is_whitespace()));
        if ends {
            starts.push(i + c.len_utf8());
        }
        previous = Some(c);
    }
    starts.retain(|&s| !span[s..].trim().is_empty());
    starts
}

/// The word pairs of the claim a marker at the end of `span` makes: its last sentence (the
/// marker may follow the sentence's full stop), then the sentences before it, one at a time,
/// until the claim has [`MIN_PAIRS`] pairs or `span` is used up.
fn claim_before(span: &str) -> Pairs {
    let mut claim = Pairs::new();
    for &start in sentence_starts(span).iter().rev() {
        claim = pairs(&span[start..]);
        if claim.len() >= MIN_PAIRS {
            break;
        }
    }
    claim
}

/// The word pairs of the claim a marker makes when the words before it in its sentence are
/// too few ("According to the source [1], you attach a file with ATTACH"): the rest of its
/// sentence, up to the next marker. Empty when the marker ends its sentence.
fn claim_after(rest: &str, n: usize) -> Pairs {
    let (_, at) = leading_markers(rest, n);
    let rest = &rest[at..];
    let segment = &rest[..rest.find('[').unwrap_or(rest.len())];
    let opening = segment.trim_start_matches([' ', '\t']);
    if opening.is_empty() || opening.starts_with(['.', '!', '?', '\n']) {
        return Pairs::new();
    }
    let end = sentence_starts(segment)
        .into_iter()
        .find(|&s| s > 0)
        .unwrap_or(segment.len());
    pairs(&segment[..end])
}

/// A marker moved to the source its claim came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Repointed {
    /// The number the model wrote.
    pub from: usize,
    /// The source that holds the claim.
    pub to: usize,
}

/// What [`attribute`] made of an answer's markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    /// The text with its markers moved and added.
    pub text: String,
    /// Markers moved to the source their claim came from.
    pub repointed: Vec<Repointed>,
    /// Sources cited after sentences copied from them that the model left without a marker,
    /// one entry per marker added.
    pub added: Vec<usize>,
}

/// Rewrites the markers `[k]` (1-based into `sources`) of `text` whose claim another source
/// holds clearly better, and cites the uncited sentences copied from a source. Other bracketed
/// text is left as it is (the citation check removes it).
pub fn attribute(text: &str, sources: &[&str]) -> Attributed {
    let source_pairs: Vec<_> = sources.iter().map(|s| pairs(s)).collect();
    let (text, repointed) = repoint(text, &source_pairs);
    let (text, added) = cite_copied(&text, &source_pairs);
    Attributed {
        text,
        repointed,
        added,
    }
}

/// A valid marker of an answer: where it is written, the source it names, and its claim.
struct Claimed {
    at: std::ops::Range<usize>,
    source: usize,
    claim: Pairs,
}

/// Each valid marker (`1..=n`) of `text`, in order. The claim is the marker's sentence, and
/// the ones before it (back to the previous marker) while it is too short to judge; or, when
/// a marker opens its claim, the words after it. Adjacent markers ("[1][2]") share their
/// claim; a marker cut off by the token limit ends the text.
fn marker_claims(text: &str, n: usize) -> Vec<Claimed> {
    let mut claims = Vec::new();
    // What was written since the previous valid marker, without the markers right before
    // this one, which are not words of the claim.
    let mut claim_text = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        claim_text.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find(']') else {
            break;
        };
        let marker = &after[..=close];
        let start = text.len() - after.len();
        rest = &after[close + 1..];
        match marker[1..marker.len() - 1].trim().parse::<usize>() {
            Ok(k) if (1..=n).contains(&k) => {
                let mut claim = claim_before(&claim_text);
                if claim.len() < MIN_PAIRS {
                    claim = claim_after(rest, n);
                }
                claims.push(Claimed {
                    at: start..start + marker.len(),
                    source: k,
                    claim,
                });
                if !rest.trim_start().starts_with('[') {
                    claim_text.clear();
                }
            }
            Ok(_) => {}
            Err(_) => claim_text.push_str(marker),
        }
    }
    claims
}

/// The markers of `text` moved to the source that holds their claim clearly better; other
/// text, other brackets and a marker cut off by the token limit are kept as they are.
fn repoint(text: &str, source_pairs: &[Pairs]) -> (String, Vec<Repointed>) {
    let mut out = String::with_capacity(text.len());
    let mut moved = Vec::new();
    let mut copied = 0;
    for Claimed { at, source, claim } in marker_claims(text, source_pairs.len()) {
        out.push_str(&text[copied..at.start]);
        copied = at.end;
        let mut number = source;
        if claim.len() >= MIN_PAIRS {
            let cited = support(&claim, &source_pairs[source - 1]);
            let (best, best_support) = best_source(&claim, source_pairs);
            if best != source && best_support >= MIN_SUPPORT && best_support - cited >= MIN_GAIN {
                number = best;
                moved.push(Repointed {
                    from: source,
                    to: best,
                });
            }
        }
        // A marker moved onto the one right before it is not repeated.
        let written = format!("[{number}]");
        if !(number != source && out.ends_with(&written)) {
            out.push_str(&written);
        }
    }
    out.push_str(&text[copied..]);
    (out, moved)
}

/// How well an answer's markers are backed by the sources they name: a measure of citation
/// precision, by the same word pairs as [`attribute`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MarkerSupport {
    /// Valid markers whose claim is long enough to judge ([`MIN_PAIRS`] word pairs).
    pub judged: usize,
    /// Of those, markers whose source holds at least half of their claim's word pairs
    /// ([`MIN_SUPPORT`]): the sentence was taken from the passage it cites.
    pub supported: usize,
}

/// The [`MarkerSupport`] of the markers `[k]` of `text` (1-based into `sources`).
pub fn marker_support(text: &str, sources: &[&str]) -> MarkerSupport {
    let source_pairs: Vec<_> = sources.iter().map(|s| pairs(s)).collect();
    let mut out = MarkerSupport::default();
    for Claimed { source, claim, .. } in marker_claims(text, sources.len()) {
        if claim.len() >= MIN_PAIRS {
            out.judged += 1;
            out.supported += usize::from(support(&claim, &source_pairs[source - 1]) >= MIN_SUPPORT);
        }
    }
    out
}

/// The valid markers (`1..=n`) at the start of `text`, before any other word, and where the
/// text after them starts.
fn leading_markers(text: &str, n: usize) -> (Vec<usize>, usize) {
    let mut found = Vec::new();
    let mut at = 0;
    loop {
        let marker = text[at..]
            .trim_start()
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .and_then(|(k, after)| {
                let k = k.trim().parse::<usize>().ok()?;
                (1..=n).contains(&k).then_some((k, after))
            });
        let Some((k, after)) = marker else {
            return (found, at);
        };
        found.push(k);
        at = text.len() - after.len();
    }
}

/// What one sentence of the answer is, for [`cite_copied`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sentence {
    /// It has markers (or markers right after it); the first names this source.
    Cited(usize),
    /// No marker, and it was copied from this source.
    Copied(usize),
    /// No marker, and too short to say where it is from ("2. Packages").
    Short,
    /// No marker, and no source holds it word for word (the model's own words), or a stray
    /// bracket.
    Own,
}

/// Adds a marker after each sentence without one that a source holds almost word for word
/// ([`COPIED`]). A run of such sentences from one source (short ones between them aside) gets
/// one marker, after its last sentence, and none when the marker that follows the run names
/// that source already.
fn cite_copied(text: &str, source_pairs: &[Pairs]) -> (String, Vec<usize>) {
    let n = source_pairs.len();
    let mut starts = sentence_starts(text);
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let bounds: Vec<(usize, usize)> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&text.len()]))
        .map(|(&a, &b)| (a, b))
        .collect();
    // Markers at the start of a sentence close the one before it ("… make. [1] Then …").
    let leads: Vec<(Vec<usize>, usize)> = bounds
        .iter()
        .map(|&(a, b)| leading_markers(&text[a..b], n))
        .collect();
    let kinds: Vec<Sentence> = bounds
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            let body = &text[a + leads[i].1..b];
            let inside = body
                .match_indices('[')
                .find_map(|(j, _)| leading_markers(&body[j..], n).0.first().copied());
            let closing = leads.get(i + 1).and_then(|l| l.0.first().copied());
            if let Some(k) = inside.or(closing) {
                return Sentence::Cited(k);
            }
            // Other brackets (a marker cut off by the token limit: "… [1") are the citation
            // check's to remove; nothing is written after them.
            if body.contains('[') {
                return Sentence::Own;
            }
            let claim = pairs(body);
            if claim.len() < MIN_COPIED_PAIRS {
                return Sentence::Short;
            }
            let (best, held) = best_source(&claim, source_pairs);
            // A negation the source does not hold makes the sentence the model's own claim.
            let negated = || {
                claim.iter().any(|(a, b)| {
                    (NEGATIONS.contains(&a.as_str()) || NEGATIONS.contains(&b.as_str()))
                        && !source_pairs[best - 1].contains(&(a.clone(), b.clone()))
                })
            };
            if held >= COPIED && !negated() {
                Sentence::Copied(best)
            } else {
                Sentence::Own
            }
        })
        .collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut added = Vec::new();
    for (i, &(a, b)) in bounds.iter().enumerate() {
        let sentence = &text[a..b];
        let Sentence::Copied(k) = kinds[i] else {
            out.push_str(sentence);
            continue;
        };
        let next = kinds[i + 1..].iter().find(|s| **s != Sentence::Short);
        if matches!(next, Some(&Sentence::Copied(j) | &Sentence::Cited(j)) if j == k) {
            out.push_str(sentence);
            continue;
        }
        // "… the sentence [k]." (before its closing punctuation), white space kept after it.
        let trimmed = sentence.trim_end();
        let (words, end) = match trimmed.char_indices().last() {
            Some((j, '.' | '!' | '?' | ':' | ';')) => trimmed.split_at(j),
            _ => (trimmed, ""),
        };
        out.push_str(words.trim_end());
        out.push_str(&format!(" [{k}]"));
        out.push_str(end);
        out.push_str(&sentence[trimmed.len()..]);
        added.push(k);
    }
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The markers `attribute` moves.
    fn moved(text: &str, sources: &[&str]) -> Vec<Repointed> {
        attribute(text, sources).repointed
    }

    const CRAN: &str = "The bin/windows directory of a CRAN site contains binaries for a base \
                        distribution and add-on packages from CRAN to run on 64-bit Windows.";
    const OTHER: &str = "R can be installed from source on Unix-like systems with configure \
                         and make.";

    #[test]
    fn a_copied_sentence_cites_the_source_it_was_copied_from() {
        let text = "The bin/windows directory of a CRAN site contains binaries for a base \
                    distribution [2]. You can build it with configure and make [2].";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!(
            out.text,
            "The bin/windows directory of a CRAN site contains binaries for a base \
             distribution [1]. You can build it with configure and make [2]."
        );
        assert_eq!(out.repointed, vec![Repointed { from: 2, to: 1 }]);
        assert!(out.added.is_empty());
    }

    #[test]
    fn marker_support_counts_markers_their_source_backs() {
        let text = "The bin/windows directory of a CRAN site contains binaries [1]. It is \
                    installed from source with configure and make [1]. Yes [2].";
        // The first claim is CRAN's, the second OTHER's though it cites CRAN; "Yes" is too
        // short to judge.
        assert_eq!(
            marker_support(text, &[CRAN, OTHER]),
            MarkerSupport {
                judged: 2,
                supported: 1
            }
        );
        assert_eq!(
            marker_support("No markers.", &[CRAN]),
            MarkerSupport::default()
        );
    }

    #[test]
    fn right_short_shared_and_unknown_markers_stay() {
        // Already right.
        let right = "R can be installed from source with configure and make [2].";
        let out = attribute(right, &[CRAN, OTHER]);
        assert_eq!(
            (out.text.as_str(), out.repointed, out.added),
            (right, vec![], vec![])
        );
        // Too short to judge.
        let short = "Windows binaries [2].";
        assert_eq!(moved(short, &[CRAN, OTHER]), vec![]);
        // Two markers on one claim both hold it: the second one moves only if it is wrong.
        let both = "The bin/windows directory of a CRAN site contains binaries [1][2].";
        let out = attribute(both, &[CRAN, OTHER]);
        assert_eq!(
            out.text,
            "The bin/windows directory of a CRAN site contains binaries [1]."
        );
        assert_eq!(out.repointed, vec![Repointed { from: 2, to: 1 }]);
        // Markers out of range, other brackets and a marker cut off by the token limit are the
        // citation check's business: nothing is moved or added.
        for odd in [
            "The bin/windows directory of a CRAN site contains binaries [7] [x].",
            "The bin/windows directory of a CRAN site contains binaries [1",
        ] {
            let out = attribute(odd, &[CRAN, OTHER]);
            assert_eq!(
                (out.text.as_str(), out.repointed, out.added),
                (odd, vec![], vec![])
            );
        }
    }

    #[test]
    fn a_marker_after_the_full_stop_judges_the_sentence_before_it() {
        // The common "sentence. [k]" form: the claim is the sentence, not the empty text
        // after its full stop.
        let text = "R can be installed from source on Unix-like systems with configure and \
                    make. [1]";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!(out.repointed, vec![Repointed { from: 1, to: 2 }]);
        assert!(out.text.ends_with("make. [2]"), "{}", out.text);
    }

    #[test]
    fn a_short_last_sentence_is_judged_with_the_ones_before_it() {
        // A list copied from a source, closed by a few words and another source's marker.
        let text = "The directory holds:\n1. binaries for a base distribution and add-on \
                    packages from CRAN\n2. Packages[2]";
        assert_eq!(
            moved(text, &[CRAN, OTHER]),
            vec![Repointed { from: 2, to: 1 }]
        );
        // Dots inside words and numbers end no sentence: "so.1" does not cut the claim.
        let text = "Binaries for a base distribution and add-on packages from CRAN run on \
                    libR.so.1 systems[2]";
        assert_eq!(
            moved(text, &[CRAN, OTHER]),
            vec![Repointed { from: 2, to: 1 }]
        );
        // The previous marker bounds the claim: the sentence it closed is not reread.
        let text = "Binaries for a base distribution and add-on packages from CRAN [1]. \
                    Run make[2]";
        assert_eq!(moved(text, &[CRAN, OTHER]), vec![]);
    }

    #[test]
    fn a_marker_before_its_claim_judges_the_words_after_it() {
        // "According to the source [2], …": the words before the marker are too few; the
        // claim is the rest of the sentence.
        let text = "According to the source [2], the bin/windows directory of a CRAN site \
                    contains binaries for a base distribution. Then run it.";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!(out.repointed, vec![Repointed { from: 2, to: 1 }]);
        assert!(
            out.text.starts_with("According to the source [1], "),
            "{}",
            out.text
        );
        // A marker that ends its sentence does not take the next sentence as its claim.
        let text = "See CRAN [2]. The bin/windows directory of a CRAN site contains binaries \
                    for a base distribution [1].";
        assert_eq!(moved(text, &[CRAN, OTHER]), vec![]);
        // Nor does a marker that opens a line of its own.
        let text = "Binaries [2]\nThe bin/windows directory of a CRAN site contains binaries.";
        assert_eq!(moved(text, &[CRAN, OTHER]), vec![]);
    }

    #[test]
    fn pairs_of_stop_words_say_nothing() {
        // Source 1 shares only "it is not in the" with the claim: no reason to move the
        // marker away from the source that holds "the stable release".
        let sources = [
            "It is not in the main tree.",
            "The stable release is frozen.",
        ];
        let text = "It is not in the stable release [2]";
        assert_eq!(moved(text, &sources), vec![]);
        assert_eq!(pairs("it is not in the"), Default::default());
        assert_eq!(pairs("the term R is used").len(), 4);
    }

    #[test]
    fn a_claim_in_neither_source_keeps_its_marker() {
        let text = "Ask your system administrator for the installation media first [2].";
        assert_eq!(moved(text, &[CRAN, OTHER]), vec![]);
    }

    #[test]
    fn an_uncited_copied_sentence_gets_its_source() {
        // The model copied from source 1 and cited only the sentence it copied from source 2.
        let text = "Binaries for a base distribution and add-on packages from CRAN run on \
                    64-bit Windows. R can be installed from source with configure and make [2].";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!(
            out.text,
            "Binaries for a base distribution and add-on packages from CRAN run on 64-bit \
             Windows [1]. R can be installed from source with configure and make [2]."
        );
        assert_eq!(out.added, vec![1]);
        assert_eq!(out.repointed, vec![]);
        // A marker after the full stop cites the sentence before it; a run from one source
        // gets one marker, after its last sentence, and none when its own marker follows.
        let text = "R can be installed from source with configure and make. [2] The bin/windows \
                    directory of a CRAN site contains binaries.\nFor a base distribution and \
                    add-on packages from CRAN.\nOn Windows [1]";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!((out.text.as_str(), out.added), (text, vec![]));
        let text = "The bin/windows directory of a CRAN site contains binaries.\nFor a base \
                    distribution and add-on packages from CRAN\n";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!(
            out.text,
            "The bin/windows directory of a CRAN site contains binaries.\nFor a base \
             distribution and add-on packages from CRAN [1]\n"
        );
        assert_eq!(out.added, vec![1]);
    }

    #[test]
    fn the_models_own_and_short_sentences_get_no_marker() {
        // Its own words (a few pairs shared with a source are not a copy), and a sentence too
        // short to say.
        let text = "You should ask the CRAN site maintainers about binaries for Windows. \
                    Use configure. R can be installed from source with configure and make [2].";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!((out.text.as_str(), out.added), (text, vec![]));
        // A copied sentence turned around by a negation the source lacks is the model's claim.
        let text = "There are no binaries for a base distribution and add-on packages from CRAN. \
                    R can be installed from source with configure and make [2].";
        let out = attribute(text, &[CRAN, OTHER]);
        assert_eq!((out.text.as_str(), out.added), (text, vec![]));
        let copied = text.replace(" no ", " ");
        assert_eq!(attribute(&copied, &[CRAN, OTHER]).added, vec![1]);
    }

    #[test]
    fn punctuation_standing_alone_is_a_command_not_a_full_stop() {
        // "!" is the simulator's spawn command: the marker goes after the sentence, not into it.
        let spawn = "The simulator can run a host command with the ! (spawn) command followed \
                     by the command line to execute.";
        let text = "You can run a host command with the ! (spawn) command followed by the command \
                    line to execute.";
        let out = attribute(text, &[OTHER, spawn]);
        assert_eq!(
            out.text,
            "You can run a host command with the ! (spawn) command followed by the command \
             line to execute [2]."
        );
        assert_eq!(out.added, vec![2]);
    }
}
