//! Tables of contents: a passage that lists a document's sections with their pages names the
//! words of every question about those sections and answers none of them, so retrieval ranks
//! it after every passage of content.

/// Fewest dots of a leader between an entry's title and its page: PDF parsing writes every
/// leader as " ... " ("Title ... 12"); other formats keep theirs ("Title ....... 12",
/// "Title . . . . 12").
const LEADER_DOTS: usize = 3;
/// Fewest entries a passage must hold to be a table of contents.
const MIN_ENTRIES: usize = 3;
/// Longest first line of a title that goes on on the next line: a line of a page.
const MAX_WRAPPED_CHARS: usize = 100;
/// Longest page number: arabic digits or a front matter's lower-case roman numeral.
const MAX_PAGE_CHARS: usize = 6;

/// Whether `line` is an entry of a table of contents: a title with a letter in it, a leader of
/// dots, and a page number that ends the line (or its last cell, where the entries were read
/// as a table: "| 1.2.1 | Compiling with Ethernet Support ... 5 |").
fn is_entry(line: &str) -> bool {
    let line = line.trim_end_matches(|c: char| c == '|' || c.is_whitespace());
    let arabic = line.trim_end_matches(|c: char| c.is_ascii_digit());
    let head = if arabic.len() < line.len() {
        arabic
    } else {
        line.trim_end_matches(['i', 'v', 'x', 'l', 'c'])
    };
    let page = line.len() - head.len();
    if page == 0
        || page > MAX_PAGE_CHARS
        || !head.ends_with(|c: char| c == '.' || c.is_whitespace())
    {
        return false;
    }
    let mut rest = head.trim_end();
    let mut dots = 0;
    while let Some(before) = rest.strip_suffix('.') {
        dots += 1;
        rest = before.trim_end();
    }
    dots >= LEADER_DOTS && rest.chars().any(char::is_alphabetic)
}

/// Whether `text` is (mostly) a table of contents: it holds at least [`MIN_ENTRIES`] entries,
/// and its entries hold at least half of its letters (a title page or the end of a preface may
/// share the passage). A line of at most [`MAX_WRAPPED_CHARS`] right before an entry, and not
/// ending a sentence, is the first line of a title too long for one line.
pub fn is_table_of_contents(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let entry: Vec<bool> = lines.iter().map(|l| is_entry(l)).collect();
    let wrapped = |line: &str| {
        let line = line.trim_end();
        line.chars().count() <= MAX_WRAPPED_CHARS && !line.ends_with(['.', ':', ';'])
    };
    let (mut in_entries, mut letters) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let count = line.chars().filter(|c| c.is_alphabetic()).count();
        letters += count;
        if entry[i] || (entry.get(i + 1).copied().unwrap_or(false) && wrapped(line)) {
            in_entries += count;
        }
    }
    entry.iter().filter(|e| **e).count() >= MIN_ENTRIES && in_entries * 2 >= letters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_a_title_a_leader_and_a_page() {
        for entry in [
            "1.1  Compiling Under UNIX/Linux/Mac OS-X ... 4",
            "| 1.2.1 | Compiling with Ethernet Support ... 5 |",
            "1.3    Compiling Under OpenVMS.................................. 6",
            "   3.10 Displaying Parameters and Status...................... 12",
            "How can R be installed? . . . . . . . . . . . . . . . . . . . 4",
            "Preface ........................ iv",
        ] {
            assert!(is_entry(entry), "{entry}");
        }
        for other in [
            // A sentence, a version, a leader without a title, a title without a page.
            "The simulator stops at address 12.",
            "Version 3.8.1",
            "....................... 12",
            "Compiling Under OpenVMS..............................",
            // Two dots are no leader.
            "See section 2.. 3",
        ] {
            assert!(!is_entry(other), "{other}");
        }
    }

    #[test]
    fn a_list_of_sections_and_pages_is_a_table_of_contents() {
        let simh = "without prior written authorization from Robert M Supnik.\n\
                    Introduction ........................................ 3\n\
                    1 Compiling And Running A Simulator.................. 3\n\
                    1.1 Compiling Under UNIX/Linux/Mac OS-X ............. 4\n\
                    1.2 Compiling Under Windows.......................... 5\n";
        assert!(is_table_of_contents(simh));
        // Texinfo puts the section numbers on lines of their own.
        let texinfo = "Table of Contents\n1\n\nIntroduction . . . . . . . . . . . . 1\n1.1\n1.2\n\
                       Legalese . . . . . . . . . . . . . . . 1\n\
                       Obtaining this document . . . . . . . . 1\n";
        assert!(is_table_of_contents(texinfo));
        // Titles too long for one line.
        let wrapped = "3.1.10 I have a working Desktop/cluster with Debian installed. How do I \
                       know which\ndistribution I am running? ... 10\n\
                       3.1.11 I am currently tracking stable. Can I change to testing or unstable? \
                       If so, how?\nWhat can I do? ... 10\n\
                       3.2 But what about Knoppix, Linux Mint Debian Edition, Ubuntu, and \
                       others? ... 11\n";
        assert!(is_table_of_contents(wrapped));
    }

    #[test]
    fn content_with_a_few_references_is_not() {
        // Two entries are not a table.
        let two = "Introduction ... 3\nCommands ... 6\n";
        assert!(!is_table_of_contents(two));
        // A section whose text outweighs the few entries that close it.
        let section = "The RESET command (abbreviation RE) resets a device or the entire \
                       simulator to a predefined condition. If the switch -p is specified, the \
                       device is reset to its power-up state. Resetting clears all pending \
                       interrupts and stops all outstanding transfers.\n\
                       3.4 Connecting and Disconnecting Devices ......... 7\n\
                       3.5 Examining and Changing State ......... 8\n\
                       3.6 Evaluating Instructions ......... 10\n";
        assert!(!is_table_of_contents(section));
    }
}
