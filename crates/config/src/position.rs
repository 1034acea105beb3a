//! Byte offsets (what the TOML parser's spans are) to the 1-based line and column users see.

/// Line starts of one text, so many offsets can be converted without rescanning it.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// 1-based line and column; the column counts characters, not bytes, because that is what
    /// editors show. Offsets past the end or inside a character are clamped rather than trusted.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line.max(1), column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn first_line_and_column_are_one() {
        let index = LineIndex::new("abc\ndef\n");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(2), (1, 3));
    }

    #[test]
    fn newline_belongs_to_its_line() {
        let index = LineIndex::new("abc\ndef\n");
        assert_eq!(index.position(3), (1, 4));
        assert_eq!(index.position(4), (2, 1));
        assert_eq!(index.position(6), (2, 3));
        assert_eq!(index.position(8), (3, 1));
    }

    #[test]
    fn columns_count_characters() {
        let index = LineIndex::new("é = \"ü\"\nx");
        // 'é' is two bytes, so byte 3 is the '=' in the second column... of characters: 3rd.
        assert_eq!(index.position(3), (1, 3));
        assert_eq!(index.position(10), (2, 1));
    }

    #[test]
    fn bad_offsets_are_clamped() {
        let index = LineIndex::new("é\n");
        assert_eq!(index.position(1), (1, 1));
        assert_eq!(index.position(100), (2, 1));
        assert_eq!(LineIndex::new("").position(5), (1, 1));
    }
}
