//! Streaming UTF-8: token pieces are bytes, and one character may be split across tokens.

/// Turns a stream of byte pieces into whole-character text, holding back an incomplete
/// character until its remaining bytes arrive. Invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes`; returns the text that is complete now (possibly empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(text) => {
                    out.push_str(text);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[start..valid])
                            .expect("valid_up_to is valid"),
                    );
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next piece.
                        None => {
                            start = valid;
                            break;
                        }
                        Some(invalid) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid + invalid;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Ends the stream: whatever is held back, lossily.
    pub(crate) fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Stream;

    #[test]
    fn splits_multibyte_characters_across_pieces() {
        let text = "né 🦀!";
        let bytes = text.as_bytes();
        // Feed one byte at a time: every emitted piece is whole characters.
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        let mut pieces = 0;
        for b in bytes {
            let piece = stream.push(std::slice::from_ref(b));
            if !piece.is_empty() {
                pieces += 1;
            }
            out.push_str(&piece);
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
        assert_eq!(pieces, text.chars().count());
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(stream.push(b"\xf0\x9f"), "");
        assert_eq!(stream.finish(), "\u{fffd}");
        assert_eq!(stream.push(b"ok"), "ok");
    }
}
