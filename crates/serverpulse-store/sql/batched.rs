//! Statements over many rows at once, in a few fixed shapes.
//!
//! Ingest writes and reads the rows of a whole batch in one statement each, with the
//! rows as a `VALUES` list of bound parameters. A statement text per row count would be
//! prepared anew nearly every time (the parse costs more than the work), so rows go in
//! chunks of at most [`MAX_ROWS`], each rounded up to a power of two with rows of NULLs
//! that the statement skips or that match nothing: seven shapes per statement, each
//! prepared once per connection and cached. The text of each shape is built once per
//! process ([`Shapes`]): building it per batch was 7 % of the hub's work under load.

use std::sync::OnceLock;

/// Most rows one statement takes; more go in several. Not more: SQLite (3.51) runs an
/// `UPDATE … FROM` a `VALUES` list of 256 rows at several times the cost per row of one
/// of 64 (measured: docs/benchmarks.md, seventh session).
pub(crate) const MAX_ROWS: usize = 64;

/// One statement's share of the rows: `rows[start..start + len]`, in a statement shaped
/// for `shape` rows (the rest padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) shape: usize,
}

impl Chunk {
    /// The row of `rows` at `index` in this chunk, `None` for padding.
    pub(crate) fn row<'r, T>(&self, rows: &'r [T], index: usize) -> Option<&'r T> {
        (index < self.len).then(|| &rows[self.start + index])
    }
}

/// How many shapes a statement has: 1, 2, 4, … [`MAX_ROWS`] rows.
const SHAPES: usize = MAX_ROWS.trailing_zeros() as usize + 1;

/// The texts of one statement in each of its shapes, each built on first use and kept:
/// a `static` per statement.
#[derive(Debug)]
pub(crate) struct Shapes([OnceLock<String>; SHAPES]);

impl Shapes {
    pub(crate) const fn new() -> Self {
        Self([const { OnceLock::new() }; SHAPES])
    }

    /// The statement's text for `shape` rows (a power of two, at most [`MAX_ROWS`]),
    /// built by `build` the first time.
    pub(crate) fn text(&'static self, shape: usize, build: impl FnOnce(usize) -> String) -> &'static str {
        debug_assert!(shape.is_power_of_two() && shape <= MAX_ROWS);
        self.0[shape.trailing_zeros() as usize].get_or_init(|| build(shape))
    }
}

/// The chunks `count` rows go in.
pub(crate) fn chunks(count: usize) -> Vec<Chunk> {
    (0..count)
        .step_by(MAX_ROWS)
        .map(|start| {
            let len = (count - start).min(MAX_ROWS);
            Chunk { start, len, shape: len.next_power_of_two() }
        })
        .collect()
}

/// `WITH name(columns) AS (VALUES …)` for `rows` rows of bound parameters (the first
/// `rows × columns` of the statement, in order; see [`crate::dialect::placeholder`]), each cast to its column's type so that both databases know it (SQLite
/// reads `BIGINT`, `DOUBLE PRECISION` and `TEXT` as its integer, real and text).
pub(crate) fn values_cte(name: &str, columns: &[(&str, &str)], rows: usize) -> String {
    let names: Vec<&str> = columns.iter().map(|(column, _)| *column).collect();
    let mut out = format!("WITH {name}({}) AS (VALUES ", names.join(", "));
    let mut n = 0;
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for (i, (_, ty)) in columns.iter().enumerate() {
            n += 1;
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("CAST({} AS {ty})", crate::dialect::placeholder(n)));
        }
        out.push(')');
    }
    out.push_str(") ");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_in_few_shapes() {
        for count in [0, 1, 2, 3, 63, 64, 65, 200, 513] {
            let chunks = chunks(count);
            assert_eq!(chunks.iter().map(|c| c.len).sum::<usize>(), count);
            let mut next = 0;
            for chunk in chunks {
                assert_eq!(chunk.start, next);
                assert!(chunk.shape.is_power_of_two() && chunk.shape >= chunk.len && chunk.shape <= MAX_ROWS);
                next += chunk.len;
            }
        }
    }

    #[test]
    fn a_shape_is_built_once_and_kept() {
        static TEXTS: Shapes = Shapes::new();
        let mut built = 0;
        for shape in [1, 2, 1, 64, 2] {
            let text = TEXTS.text(shape, |rows| {
                built += 1;
                format!("{rows} rows")
            });
            assert_eq!(text, format!("{shape} rows"));
        }
        assert_eq!(built, 3);
    }

    #[test]
    fn values_are_in_order_and_typed() {
        let p = crate::dialect::placeholder;
        assert_eq!(
            values_cte("v", &[("a", "BIGINT"), ("b", "TEXT")], 2),
            format!(
                "WITH v(a, b) AS (VALUES (CAST({} AS BIGINT), CAST({} AS TEXT)), (CAST({} AS BIGINT), CAST({} AS TEXT))) ",
                p(1),
                p(2),
                p(3),
                p(4)
            )
        );
    }
}
