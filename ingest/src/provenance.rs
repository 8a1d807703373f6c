//! When and by whom a document was written, as the filters of a search see it: the date and
//! the authors (or senders) stored with every chunk's point, read from the parsed metadata.

use serde_json::{Map, Value};

/// A document's date (Unix seconds) and authors (lower case), for filtering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub date: Option<i64>,
    pub authors: Vec<String>,
}

impl Provenance {
    /// Reads an email's `date` and `from`, or a PDF's `created` and `author`.
    pub fn of(metadata: &Map<String, Value>) -> Self {
        let text = |key: &str| metadata.get(key).and_then(Value::as_str);
        let date = text("date")
            .or_else(|| text("created"))
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.timestamp());
        let mut authors = Vec::new();
        if let Some(from) = text("from") {
            senders(from, &mut authors);
        }
        if let Some(author) = text("author") {
            push(&mut authors, author);
            if author.contains(';') {
                for a in author.split(';') {
                    push(&mut authors, a);
                }
            }
        }
        Self { date, authors }
    }

    /// Fills what this document lacks from `parent` (an attachment takes its email's date and
    /// sender when it has none of its own).
    pub fn or(mut self, parent: &Provenance) -> Self {
        if self.date.is_none() {
            self.date = parent.date;
        }
        if self.authors.is_empty() {
            self.authors = parent.authors.clone();
        }
        self
    }
}

fn push(authors: &mut Vec<String>, value: &str) {
    let v = value.trim().to_lowercase();
    if !v.is_empty() && !authors.contains(&v) {
        authors.push(v);
    }
}

/// `Name <addr>, addr2, ...` (as the email parser writes `from`): each entry as written, its
/// address and its display name.
fn senders(from: &str, authors: &mut Vec<String>) {
    let entries: Vec<String> = if from.contains('<') {
        from.split_inclusive('>')
            .map(|e| e.trim().trim_start_matches(',').trim().to_string())
            .flat_map(|e| {
                // Bare addresses may sit between bracketed entries: "a@x, B <b@y>".
                match e.rfind(", ") {
                    Some(i) if !e[..i].contains('<') && e[..i].contains('@') => {
                        vec![e[..i].to_string(), e[i + 2..].to_string()]
                    }
                    _ => vec![e],
                }
            })
            .collect()
    } else {
        from.split(',').map(str::to_string).collect()
    };
    for entry in entries {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        push(authors, entry);
        if let (Some(open), Some(close)) = (entry.rfind('<'), entry.rfind('>'))
            && open < close
        {
            push(authors, &entry[open + 1..close]);
            push(authors, entry[..open].trim().trim_matches('"'));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn email_senders_and_date() {
        let p = Provenance::of(&meta(&[
            ("from", "Alice Martin <Alice@Example.org>, bob@example.org"),
            ("date", "2024-03-05T10:00:00+01:00"),
        ]));
        assert_eq!(p.date, Some(1_709_629_200));
        assert_eq!(
            p.authors,
            [
                "alice martin <alice@example.org>",
                "alice@example.org",
                "alice martin",
                "bob@example.org"
            ]
        );
    }

    #[test]
    fn bare_address_before_a_named_one() {
        let p = Provenance::of(&meta(&[("from", "a@x.org, \"Bee\" <b@y.org>")]));
        assert_eq!(
            p.authors,
            ["a@x.org", "\"bee\" <b@y.org>", "b@y.org", "bee"]
        );
    }

    #[test]
    fn pdf_author_and_creation_date() {
        let p = Provenance::of(&meta(&[
            ("author", "Jane Doe; John Roe"),
            ("created", "2020-01-02T03:04:05+00:00"),
        ]));
        assert_eq!(p.date, Some(1_577_934_245));
        assert_eq!(p.authors, ["jane doe; john roe", "jane doe", "john roe"]);
    }

    #[test]
    fn missing_or_bad_values_give_nothing_and_parents_fill_in() {
        let p = Provenance::of(&meta(&[("date", "last Tuesday"), ("from", " ")]));
        assert_eq!(p, Provenance::default());
        let parent = Provenance {
            date: Some(5),
            authors: vec!["a@x.org".into()],
        };
        assert_eq!(p.or(&parent), parent);
    }
}
