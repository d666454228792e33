//! How `delegations` prints as pages arrive: a text table that widens as rows
//! come, and a JSON array streamed item by item.

use serde::Serialize;

use crate::cli::{Output, OutputError};

/// A left-aligned text table, printed as its rows arrive: the header with
/// the first rows, each column as wide as its widest cell so far. Rows that
/// arrive later widen a column for themselves and the rows after them.
pub(super) struct Table {
    header: Vec<String>,
    widths: Vec<usize>,
    /// The header has been printed.
    started: bool,
}

impl Table {
    pub(super) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            widths: header.iter().map(|h| h.len()).collect(),
            started: false,
        }
    }

    fn line(&self, cells: &[String]) -> String {
        let s: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.join("  ").trim_end().to_string()
    }

    /// Print `rows`, and the header first if it has not been.
    pub(super) fn rows<W: std::io::Write>(
        &mut self,
        out: &mut Output<W>,
        rows: &[Vec<String>],
    ) -> Result<(), OutputError> {
        for r in rows {
            for (w, c) in self.widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        if !self.started {
            self.started = true;
            out.line(self.line(&self.header))?;
        }
        for r in rows {
            out.line(self.line(r))?;
        }
        Ok(())
    }
}

/// A JSON array printed as its items arrive, exactly as
/// `serde_json::to_string_pretty` prints the whole array.
pub(super) struct JsonArray {
    /// The last line of the item before, held back until it is known whether
    /// a comma follows it.
    pending: Option<String>,
}

impl JsonArray {
    pub(super) fn new() -> Self {
        Self { pending: None }
    }

    pub(super) fn item<W: std::io::Write, T: Serialize>(
        &mut self,
        out: &mut Output<W>,
        item: &T,
    ) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(item)?;
        match self.pending.take() {
            None => out.line("[")?,
            Some(last) => out.line(format_args!("{last},"))?,
        }
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_none() {
                self.pending = Some(format!("  {line}"));
            } else {
                out.line(format_args!("  {line}"))?;
            }
        }
        Ok(())
    }

    pub(super) fn finish<W: std::io::Write>(self, out: &mut Output<W>) -> Result<(), OutputError> {
        match self.pending {
            None => out.line("[]"),
            Some(last) => {
                out.line(last)?;
                out.line("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::admin::{DelegationJson, Names};
    use crate::proto::Delegation;

    fn delegation(i: usize) -> Delegation {
        Delegation {
            owner: "991825827".into(),
            supplier: format!("{i:09}"),
            rights: vec!["instances-read".into(); i % 3],
            scopes: vec![],
            delegated_by: "x".repeat(i),
            updated_at: "2026-01-05T09:00:00Z".into(),
            created_at: "2026-01-05T09:00:00Z".into(),
            store_revision: 0,
        }
    }

    fn printed(f: impl FnOnce(&mut Output<Vec<u8>>)) -> String {
        let mut out = Output::new(Vec::new());
        f(&mut out);
        String::from_utf8(out.into_inner()).unwrap()
    }

    #[test]
    fn a_streamed_json_array_is_the_pretty_printed_array() {
        for n in [0, 1, 2, 5] {
            let all: Vec<Delegation> = (0..n).map(delegation).collect();
            let whole: Vec<DelegationJson> = all
                .iter()
                .map(|d| DelegationJson::of(d, &Names(None)))
                .collect();
            let want = format!("{}\n", serde_json::to_string_pretty(&whole).unwrap());
            let got = printed(|out| {
                let mut json = JsonArray::new();
                for d in &all {
                    json.item(out, &DelegationJson::of(d, &Names(None)))
                        .unwrap();
                }
                json.finish(out).unwrap();
            });
            assert_eq!(got, want, "{n}");
        }
    }

    #[test]
    fn a_table_in_one_page_is_aligned_and_later_pages_widen_it() {
        let row = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        let got = printed(|out| {
            let mut t = Table::new(&["A", "BB"]);
            t.rows(out, &[row("xyz", "1"), row("x", "")]).unwrap();
            t.rows(out, &[]).unwrap();
            t.rows(out, &[row("wxyzw", "2")]).unwrap();
        });
        assert_eq!(got, "A    BB\nxyz  1\nx\nwxyzw  2\n");
        // No rows: the header alone.
        let got = printed(|out| Table::new(&["A", "BB"]).rows(out, &[]).unwrap());
        assert_eq!(got, "A  BB\n");
    }
}
