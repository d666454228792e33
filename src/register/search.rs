//! Name search for a search box: every word of the query must occur in the
//! name, case-insensitively ([`fold_into`]); the best `limit` hits come back
//! ranked. A scan of the folded name arena with `memchr`'s SIMD substring
//! search for the query's longest word, so its cost is one pass over the
//! names (tens of MB for the whole register) plus a little per hit; no index
//! is built or kept.
//!
//! Ranking, best first: names that begin with the query; names in which
//! every query word begins a word; names that merely contain the words.
//! Within each, existing organizations before deleted ones, then shorter
//! names, then lower org numbers.

use std::collections::BinaryHeap;

use memchr::memmem::Finder;

use super::store::{Organization, Register, fold_into};
use crate::ids::OrgNumber;

/// The most hits one search returns, whatever `limit` asks for.
pub const MAX_HITS: usize = 1000;

/// A longer query is cut here (at a character boundary); words past
/// [`MAX_WORDS`] are ignored.
const MAX_QUERY_BYTES: usize = 256;
const MAX_WORDS: usize = 8;

/// An anchor in at least one name in this many is common enough (`as`,
/// `e`) that, once the list is full, walking the names by rank is cheaper
/// than finding its every hit.
const DENSE: usize = 8;

/// How good a hit is: smaller is better (the field order is the ranking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// 0: the name begins with the query; 1: every query word begins a word
    /// of the name; 2: the name contains the words.
    tier: u8,
    deleted: bool,
    len: usize,
    /// The entry, which is also org-number order.
    index: usize,
}

impl Register {
    /// Organizations whose name contains every word of `query`, ignoring
    /// case, best first (see the module docs), at most `limit` (and at most
    /// [`MAX_HITS`]). A query that is an org number finds that organization.
    /// An empty query finds nothing.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Organization<'_>> {
        let limit = limit.min(MAX_HITS);
        if limit == 0 {
            return Vec::new();
        }
        let query = cut(query, MAX_QUERY_BYTES);
        if let Ok(n) = OrgNumber::parse(query.trim()) {
            return self.get(&n).into_iter().collect();
        }
        let mut folded = String::with_capacity(query.len());
        fold_into(&mut folded, query);
        let words: Vec<&str> = folded.split_whitespace().take(MAX_WORDS).collect();
        let Some((anchor_at, anchor)) = words
            .iter()
            .enumerate()
            .max_by_key(|(i, w)| (w.len(), std::cmp::Reverse(*i)))
        else {
            return Vec::new();
        };
        let phrase = words.join(" ");
        let others: Vec<Finder<'_>> = words
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != anchor_at)
            .map(|(_, w)| Finder::new(w.as_bytes()))
            .collect();
        let finder = Finder::new(anchor.as_bytes());
        let hay = self.folded.as_bytes();
        let mut best: BinaryHeap<Rank> = BinaryHeap::with_capacity(limit + 1);
        // Where to search on from: the end of the name last judged, or just
        // after a hit that ran across two names (one may start inside it).
        let mut pos = 0;
        let mut entry = 0;
        // Names that held the anchor so far: how dense its hits are.
        let mut judged = 0usize;
        while let Some(found) = hay.get(pos..).and_then(|rest| finder.find(rest)) {
            let at = pos + found;
            entry = self.entry_at(entry, at);
            let Some((start, end)) = self.span(entry) else {
                break;
            };
            if at + anchor.len() > end {
                // Runs on into the next name: not a hit.
                pos = at + 1;
                continue;
            }
            pos = end;
            judged += 1;
            let deleted = self.is_deleted(entry);
            let at_best = Rank {
                tier: 0,
                deleted,
                len: end - start,
                index: entry,
            };
            if best.len() == limit && best.peek().is_some_and(|worst| at_best >= *worst) {
                // Could not make the list even at its best tier.
                continue;
            }
            let Some(name) = self.folded.get(start..end) else {
                continue;
            };
            if !others.iter().all(|f| f.find(name.as_bytes()).is_some()) {
                continue;
            }
            let rank = Rank {
                tier: tier(name, &phrase, &words),
                ..at_best
            };
            if best.len() < limit {
                best.push(rank);
            } else if best.peek().is_some_and(|worst| rank < *worst) {
                best.pop();
                best.push(rank);
            }
            if best.len() == limit
                && best.peek().is_some_and(|worst| worst.tier <= 1)
                && judged * DENSE > entry
            {
                // Only names that begin with the query or its words can
                // still make the list, and the anchor is in so many names
                // that walking the names beats finding every hit.
                self.walk_by_rank(entry + 1, &phrase, &words, &mut best);
                break;
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .filter_map(|r| self.at(r.index))
            .collect()
    }
}

impl Register {
    /// The rest of a search whose list is full and whose worst hit is in
    /// tier 0 or 1: from entry `from` on, a name can only make the list by
    /// beginning with the query, or (when the worst is tier 1) by having
    /// every word begin a word and ranking better, which most names fail
    /// on their length alone. A walk over the names, not over every hit of
    /// a common word (`as`).
    fn walk_by_rank(&self, from: usize, phrase: &str, words: &[&str], best: &mut BinaryHeap<Rank>) {
        for i in from..self.len() {
            let (Some((start, end)), Some(worst)) = (self.span(i), best.peek()) else {
                break;
            };
            let at_best = Rank {
                tier: 0,
                deleted: self.is_deleted(i),
                len: end - start,
                index: i,
            };
            if at_best >= *worst {
                continue;
            }
            let Some(name) = self.folded.get(start..end) else {
                continue;
            };
            let rank = if name.starts_with(phrase) {
                at_best
            } else {
                let word_start = Rank { tier: 1, ..at_best };
                if word_start < *worst && words.iter().all(|w| begins_a_word(name, w)) {
                    word_start
                } else {
                    continue;
                }
            };
            best.pop();
            best.push(rank);
        }
    }

    /// The entry whose name holds byte `at` of the arenas, looking from
    /// entry `from` on (which starts at or before `at`): galloping, since
    /// the next hit is most often a few names on.
    fn entry_at(&self, from: usize, at: usize) -> usize {
        let starts_after = |i: usize| self.starts.get(i).is_none_or(|&s| s as usize > at);
        let mut step = 1;
        let mut low = from;
        while !starts_after(low + step) {
            low += step;
            step *= 2;
        }
        // Entry `low` starts at or before `at`; entry `low + step` after it.
        let high = (low + step).min(self.starts.len());
        low + self
            .starts
            .get(low..high)
            .map_or(1, |s| s.partition_point(|&s| s as usize <= at))
            .saturating_sub(1)
    }
}

/// How well a folded name that contains every word matches (see [`Rank`]).
fn tier(name: &str, phrase: &str, words: &[&str]) -> u8 {
    if name.starts_with(phrase) {
        0
    } else if words.iter().all(|w| begins_a_word(name, w)) {
        1
    } else {
        2
    }
}

/// Whether `word` occurs in `name` at the start of a word (after the start
/// or a character that is not a letter or digit).
fn begins_a_word(name: &str, word: &str) -> bool {
    let mut after_letter = false;
    for (i, c) in name.char_indices() {
        if !after_letter
            && name
                .as_bytes()
                .get(i..)
                .is_some_and(|rest| rest.starts_with(word.as_bytes()))
        {
            return true;
        }
        after_letter = c.is_alphanumeric();
    }
    false
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::super::parse::Entry;
    use super::super::store::Builder;
    use super::*;

    fn register(entries: &[(&str, &str, bool)]) -> Register {
        let mut b = Builder::default();
        for (number, name, deleted) in entries {
            assert!(b.add(Entry {
                number: Some((*number).into()),
                name: Some((*name).into()),
                deleted: *deleted,
                ..Entry::default()
            }));
        }
        b.finish()
    }

    fn names(hits: &[Organization<'_>]) -> Vec<String> {
        hits.iter().map(|o| o.name.to_string()).collect()
    }

    fn sample() -> Register {
        register(&[
            ("923609016", "EQUINOR ASA", false),
            ("974760673", "REGISTERENHETEN I BRØNNØYSUND", false),
            ("810418672", "BRØNNØYSUND KOMMUNE", false),
            ("889640782", "GAMLE BRØNNØYSUND BAKERI AS", true),
            ("991825827", "BRØNNØYSUNDS AVIS AS", false),
            ("983887457", "NORSK BAKERI AS", false),
        ])
    }

    #[test]
    fn ranks_prefix_then_word_start_then_substring() {
        let r = sample();
        assert_eq!(
            names(&r.search("brønnøysund", 10)),
            [
                // Begins with the query: shorter first.
                "BRØNNØYSUND KOMMUNE",
                "BRØNNØYSUNDS AVIS AS",
                // A word begins with it: existing before deleted.
                "REGISTERENHETEN I BRØNNØYSUND",
                "GAMLE BRØNNØYSUND BAKERI AS",
            ]
        );
        // Case-insensitive, also for Ø.
        assert_eq!(r.search("Brønnøysund", 10), r.search("BRØNNØYSUND", 10));
        // Substrings match, ranked last.
        assert_eq!(
            names(&r.search("nøysund", 2)),
            ["BRØNNØYSUND KOMMUNE", "BRØNNØYSUNDS AVIS AS"]
        );
    }

    #[test]
    fn every_word_must_match_in_any_order() {
        let r = sample();
        assert_eq!(
            names(&r.search("bakeri brønn", 10)),
            ["GAMLE BRØNNØYSUND BAKERI AS"]
        );
        assert_eq!(names(&r.search("as bakeri", 10)).len(), 2);
        assert!(r.search("equinor kommune", 10).is_empty());
    }

    #[test]
    fn a_word_does_not_match_across_two_names() {
        // "ASA" + "REG..." would read "asareg" if the arena were searched whole.
        let r = sample();
        assert!(r.search("asareg", 10).is_empty());
        assert!(r.search("kommunebr", 10).is_empty());
        // A hit across two names does not hide one that starts inside it:
        // the arena reads "xaaab", and "aa" is found first at 1.
        let r = register(&[("923609016", "XA", false), ("974760673", "AAB", false)]);
        assert_eq!(names(&r.search("aa", 10)), ["AAB"]);
    }

    #[test]
    fn a_full_list_of_beginnings_still_takes_shorter_ones_later() {
        let numbers = crate::register::tests::org_numbers(30_000_000, 6);
        let r = register(&[
            (&numbers[0], "ALFA BETA GAMMA", false),
            (&numbers[1], "ALFA BETA", false),
            (&numbers[2], "BETA ALFA", false),
            (&numbers[3], "ALFA GAMMA", true),
            (&numbers[4], "ALFA", false),
            (&numbers[5], "XALFA", false),
        ]);
        assert_eq!(names(&r.search("alfa", 2)), ["ALFA", "ALFA BETA"]);
        assert_eq!(
            names(&r.search("alfa", 4)),
            ["ALFA", "ALFA BETA", "ALFA BETA GAMMA", "ALFA GAMMA"]
        );
        // Full of word beginnings (tier 1): a later, shorter one still comes in,
        // and so does a later beginning of the name.
        let r = register(&[
            (&numbers[0], "X Y ALFA", false),
            (&numbers[1], "LONGER NAME ALFA", false),
            (&numbers[2], "Q ALFA", false),
            (&numbers[3], "SOME XALFA", false),
            (&numbers[4], "ALFA THE LAST", false),
        ]);
        assert_eq!(names(&r.search("alfa", 2)), ["ALFA THE LAST", "Q ALFA"]);
    }

    #[test]
    fn entry_at_finds_the_name_holding_a_byte() {
        let numbers = crate::register::tests::org_numbers(20_000_000, 100);
        let entries: Vec<(String, String)> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), "N".repeat(1 + i % 7)))
            .collect();
        let refs: Vec<(&str, &str, bool)> = entries
            .iter()
            .map(|(n, name)| (n.as_str(), name.as_str(), false))
            .collect();
        let r = register(&refs);
        for at in 0..r.names.len() {
            let want = r.starts.partition_point(|&s| s as usize <= at) - 1;
            for from in [0, want / 2, want] {
                assert_eq!(r.entry_at(from, at), want, "at {at} from {from}");
            }
        }
    }

    #[test]
    fn limits_and_odd_queries() {
        let r = sample();
        assert!(r.search("", 10).is_empty());
        assert!(r.search("   ", 10).is_empty());
        assert!(r.search("as", 0).is_empty());
        assert_eq!(r.search("as", 2).len(), 2);
        assert_eq!(names(&r.search("923609016", 10)), ["EQUINOR ASA"]);
        assert_eq!(names(&r.search(" 0192:923609016 ", 10)), ["EQUINOR ASA"]);
        // A long query is cut, not refused.
        let long = format!("equinor {}", "ø".repeat(400));
        assert!(r.search(&long, 10).is_empty());
        assert_eq!(cut("aø", 2), "a");
    }

    #[test]
    fn the_limit_keeps_the_best() {
        let numbers = crate::register::tests::org_numbers(100_000, 300);
        let entries: Vec<(String, String)> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), format!("FIRMA {} AS", "X".repeat(300 - i))))
            .collect();
        let refs: Vec<(&str, &str, bool)> = entries
            .iter()
            .map(|(n, name)| (n.as_str(), name.as_str(), false))
            .collect();
        let r = register(&refs);
        let hits = r.search("firma", 3);
        let lens: Vec<usize> = hits.iter().map(|o| o.name.len()).collect();
        assert_eq!(lens, [10, 11, 12]);
    }
}
