//! How the command line shows locations in documents.

/// "p. 3" or "pp. 3-4".
pub fn pages(start: i64, end: i64) -> String {
    if start == end {
        format!("p. {start}")
    } else {
        format!("pp. {start}-{end}")
    }
}
