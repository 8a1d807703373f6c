//! How the command line shows locations in documents.

/// Where a passage is: "p. 3", "pp. 3-4", or what its document calls the place ("slide 3",
/// "sheet Budget, rows 2–40", "section Security").
pub fn place(locator: &str, start: i64, end: i64) -> String {
    if locator.is_empty() || locator.starts_with("page") {
        pages(start, end)
    } else {
        locator.to_string()
    }
}

/// "p. 3" or "pp. 3-4".
pub fn pages(start: i64, end: i64) -> String {
    if start == end {
        format!("p. {start}")
    } else {
        format!("pp. {start}-{end}")
    }
}
