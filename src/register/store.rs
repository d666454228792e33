//! The compact, immutable form of the register: a few parallel arrays in
//! org-number order and two name arenas, so a million organizations cost
//! about what their names cost (see [`Register::memory_bytes`]).
//!
//! No I/O: [`Builder`] is fed entries by `parse`, and [`Register`] answers
//! look-ups and searches (`search`).

use crate::ids::OrgNumber;

use super::parse::Entry;

/// Longer names are not organization names; such entries are skipped.
pub const MAX_NAME_BYTES: usize = 1024;

/// Form codes are short (`AS`, `ENK`, `KOMM`); a longer one is not kept.
const MAX_FORM_BYTES: usize = 16;

/// No parent (`overordnetEnhet`): above every 9-digit number.
const NO_PARENT: u32 = u32::MAX;

const DELETED: u8 = 1;
const BANKRUPT: u8 = 2;
const WINDING_UP: u8 = 4;

/// One organization as the register lists it, borrowed from a [`Register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Organization<'a> {
    pub number: OrgNumber,
    /// `navn`, as the register spells it (often in capitals).
    pub name: &'a str,
    /// `organisasjonsform.kode`: `AS`, `ENK`, `BEDR` (a sub-unit), ...
    pub form: Option<&'a str>,
    /// `slettedato` is set: the organization no longer exists.
    pub deleted: bool,
    /// `konkurs`: in bankruptcy.
    pub bankrupt: bool,
    /// `underAvvikling`: being wound up.
    pub winding_up: bool,
    /// `overordnetEnhet`: the main unit a sub-unit belongs to.
    pub parent: Option<OrgNumber>,
}

/// Per entry, besides its number, name and parent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    /// Index into `forms` plus one; zero for none.
    form: u8,
    /// `DELETED`, `BANKRUPT`, `WINDING_UP`.
    flags: u8,
}

/// The names of organizations by org number, loaded once and never changed
/// (a new download is a new `Register`).
#[derive(Debug, Default)]
pub struct Register {
    /// Org numbers as integers (nine digits fit a `u32`), ascending and
    /// unique: `get` is a binary search.
    pub(super) numbers: Vec<u32>,
    /// Where entry `i`'s name starts in `names` and `folded`; one more than
    /// there are entries, so entry `i` ends where `i + 1` starts.
    pub(super) starts: Vec<u32>,
    /// Every name, in the order of `numbers`, with nothing between them.
    pub(super) names: String,
    /// The same names folded for search by [`fold`], which keeps every
    /// character's length in bytes: the offsets in `starts` hold for both.
    pub(super) folded: String,
    pub(super) meta: Vec<Meta>,
    /// `overordnetEnhet` as an integer, [`NO_PARENT`] for none.
    pub(super) parents: Vec<u32>,
    /// The form codes seen, each once (at most 255).
    pub(super) forms: Vec<Box<str>>,
    /// Entries not loaded: no valid org number, no name, or a number seen
    /// before.
    pub(super) skipped: usize,
}

impl Register {
    /// The organization with this number, if the register lists it.
    pub fn get(&self, n: &OrgNumber) -> Option<Organization<'_>> {
        let key = pack(n);
        let i = self.numbers.binary_search(&key).ok()?;
        self.at(i)
    }

    /// How many organizations were loaded.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// How many entries of the download were not loaded (no valid org
    /// number, no name, or a number listed before).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The heap memory this register holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.numbers.capacity() * 4
            + self.starts.capacity() * 4
            + self.names.capacity()
            + self.folded.capacity()
            + self.meta.capacity() * std::mem::size_of::<Meta>()
            + self.parents.capacity() * 4
            + self.forms.iter().map(|f| f.len()).sum::<usize>()
            + self.forms.capacity() * std::mem::size_of::<Box<str>>()
    }

    /// Entry `i`; `None` only if the arrays disagree, which `Builder` never
    /// lets happen.
    pub(super) fn at(&self, i: usize) -> Option<Organization<'_>> {
        let (start, end) = self.span(i)?;
        let meta = self.meta.get(i)?;
        let form = match meta.form {
            0 => None,
            f => self.forms.get(usize::from(f) - 1).map(|f| &**f),
        };
        Some(Organization {
            number: unpack(*self.numbers.get(i)?)?,
            name: self.names.get(start..end)?,
            form,
            deleted: meta.flags & DELETED != 0,
            bankrupt: meta.flags & BANKRUPT != 0,
            winding_up: meta.flags & WINDING_UP != 0,
            parent: match *self.parents.get(i)? {
                NO_PARENT => None,
                p => unpack(p),
            },
        })
    }

    /// Where entry `i`'s name is in the arenas.
    pub(super) fn span(&self, i: usize) -> Option<(usize, usize)> {
        let start = *self.starts.get(i)? as usize;
        let end = *self.starts.get(i + 1)? as usize;
        Some((start, end))
    }

    pub(super) fn is_deleted(&self, i: usize) -> bool {
        self.meta.get(i).is_some_and(|m| m.flags & DELETED != 0)
    }
}

/// Builds a [`Register`] one entry at a time, in the order of the download.
#[derive(Debug, Default)]
pub(super) struct Builder {
    reg: Register,
}

impl Builder {
    /// Add an entry, or count it as skipped. `false` when the register is
    /// full (names past 4 GiB): the load fails.
    pub(super) fn add(&mut self, e: Entry) -> bool {
        let Some(number) = e.number.as_deref().and_then(|n| OrgNumber::parse(n).ok()) else {
            self.reg.skipped += 1;
            return true;
        };
        let name = e.name.as_deref().map(str::trim).unwrap_or("");
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            self.reg.skipped += 1;
            return true;
        }
        let r = &mut self.reg;
        let Ok(start) = u32::try_from(r.names.len()) else {
            return false;
        };
        if u32::try_from(r.names.len() + name.len()).is_err() {
            return false;
        }
        r.numbers.push(pack(&number));
        r.starts.push(start);
        r.names.push_str(name);
        fold_into(&mut r.folded, name);
        let form = e
            .form
            .as_deref()
            .map_or(0, |code| intern(&mut r.forms, code));
        let flags = (if e.deleted { DELETED } else { 0 })
            | (if e.bankrupt { BANKRUPT } else { 0 })
            | (if e.winding_up { WINDING_UP } else { 0 });
        r.meta.push(Meta { form, flags });
        r.parents.push(
            e.parent
                .as_deref()
                .and_then(|p| OrgNumber::parse(p).ok())
                .map_or(NO_PARENT, |p| pack(&p)),
        );
        true
    }

    /// The register in org-number order. A number listed twice keeps its
    /// first entry; the others count as skipped.
    pub(super) fn finish(self) -> Register {
        let mut r = self.reg;
        // `add` checked that the arena's length fits.
        r.starts
            .push(u32::try_from(r.names.len()).unwrap_or(u32::MAX));
        if !r.numbers.windows(2).all(|w| w[0] < w[1]) {
            r = sorted(r);
        }
        r.numbers.shrink_to_fit();
        r.starts.shrink_to_fit();
        r.names.shrink_to_fit();
        r.folded.shrink_to_fit();
        r.meta.shrink_to_fit();
        r.parents.shrink_to_fit();
        r
    }
}

/// `r` rebuilt in org-number order, without repeated numbers. The real
/// download is in order already; this is for files put together by hand.
fn sorted(r: Register) -> Register {
    let mut order: Vec<u32> = (0..u32::try_from(r.numbers.len()).unwrap_or(u32::MAX)).collect();
    // Stable: of a repeated number, the first entry comes first.
    order.sort_by_key(|&i| r.numbers[i as usize]);
    let mut out = Register {
        numbers: Vec::with_capacity(order.len()),
        starts: Vec::with_capacity(order.len() + 1),
        names: String::with_capacity(r.names.len()),
        folded: String::with_capacity(r.folded.len()),
        meta: Vec::with_capacity(order.len()),
        parents: Vec::with_capacity(order.len()),
        forms: r.forms.clone(),
        skipped: r.skipped,
    };
    for i in order {
        let i = i as usize;
        let number = r.numbers[i];
        if out.numbers.last() == Some(&number) {
            out.skipped += 1;
            continue;
        }
        let Some((start, end)) = r.span(i) else {
            continue;
        };
        out.numbers.push(number);
        // Never more bytes than `r.names`, whose length fits.
        out.starts
            .push(u32::try_from(out.names.len()).unwrap_or(u32::MAX));
        out.names.push_str(&r.names[start..end]);
        out.folded.push_str(&r.folded[start..end]);
        out.meta.push(r.meta[i]);
        out.parents.push(r.parents[i]);
    }
    out.starts
        .push(u32::try_from(out.names.len()).unwrap_or(u32::MAX));
    out
}

/// The form's index plus one, adding it if new; 0 (none) past 255 forms or
/// for a code too long to be one.
fn intern(forms: &mut Vec<Box<str>>, code: &str) -> u8 {
    if code.is_empty() || code.len() > MAX_FORM_BYTES {
        return 0;
    }
    if let Some(i) = forms.iter().position(|f| &**f == code) {
        return u8::try_from(i + 1).unwrap_or(0);
    }
    match u8::try_from(forms.len() + 1) {
        Ok(n) => {
            forms.push(code.into());
            n
        }
        Err(_) => 0,
    }
}

/// An org number as an integer: nine digits fit a `u32`.
fn pack(n: &OrgNumber) -> u32 {
    n.as_str()
        .bytes()
        .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
}

/// The org number [`pack`] made. Parsed again, so only a number that
/// passed `OrgNumber::parse` once comes back.
fn unpack(mut v: u32) -> Option<OrgNumber> {
    let mut digits = [b'0'; 9];
    for d in digits.iter_mut().rev() {
        *d = b'0' + u8::try_from(v % 10).ok()?;
        v /= 10;
    }
    OrgNumber::parse(std::str::from_utf8(&digits).ok()?).ok()
}

/// Append `s` folded for case-insensitive search: each character lowercased
/// where its lowercase is one character of the same length in bytes (all of
/// Latin, Greek and Cyrillic, with Æ, Ø and Å), left as it is otherwise, so
/// a folded string has the byte offsets of the original.
pub(super) fn fold_into(out: &mut String, s: &str) {
    for c in s.chars() {
        out.push(fold_char(c));
    }
}

fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) if l.len_utf8() == c.len_utf8() => l,
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: &str, name: &str) -> Entry {
        Entry {
            number: Some(number.into()),
            name: Some(name.into()),
            ..Entry::default()
        }
    }

    #[test]
    fn org_numbers_pack_and_unpack() {
        for n in ["923609016", "974760673", "000000000", "810418672"] {
            let org = OrgNumber::parse(n).unwrap();
            assert_eq!(unpack(pack(&org)), Some(org));
        }
        // `NO_PARENT` is no org number.
        assert_eq!(unpack(NO_PARENT), None);
    }

    #[test]
    fn folding_keeps_byte_offsets() {
        for s in [
            "EQUINOR ASA",
            "BRØNNØYSUND ÆRLIG ÅS",
            "İSTANBUL ẞ Σ",
            "Kelvin K",
        ] {
            let mut f = String::new();
            fold_into(&mut f, s);
            assert_eq!(f.len(), s.len(), "{s}");
            assert!(s.char_indices().all(|(i, _)| f.is_char_boundary(i)));
        }
        let mut f = String::new();
        fold_into(&mut f, "BRØNNØYSUND ÆRLIG ÅS");
        assert_eq!(f, "brønnøysund ærlig ås");
    }

    #[test]
    fn out_of_order_and_repeated_numbers_are_sorted_first_kept() {
        let mut b = Builder::default();
        assert!(b.add(entry("974760673", "REGISTERENHETEN I BRØNNØYSUND")));
        assert!(b.add(entry("923609016", "EQUINOR ASA")));
        assert!(b.add(entry("974760673", "A LATER COPY")));
        assert!(b.add(entry("123", "NOT A NUMBER")));
        assert!(b.add(entry("810418672", "  ")));
        let r = b.finish();
        assert_eq!(r.len(), 2);
        assert_eq!(r.skipped(), 3);
        let n = |s| OrgNumber::parse(s).unwrap();
        assert_eq!(r.get(&n("923609016")).unwrap().name, "EQUINOR ASA");
        assert_eq!(
            r.get(&n("974760673")).unwrap().name,
            "REGISTERENHETEN I BRØNNØYSUND"
        );
        assert_eq!(r.get(&n("810418672")), None);
        assert_eq!(r.starts.len(), 3);
        assert_eq!(
            &r.folded[r.starts[0] as usize..r.starts[1] as usize],
            "equinor asa"
        );
    }

    #[test]
    fn forms_are_interned_and_bounded() {
        let mut forms = Vec::new();
        assert_eq!(intern(&mut forms, "AS"), 1);
        assert_eq!(intern(&mut forms, "ENK"), 2);
        assert_eq!(intern(&mut forms, "AS"), 1);
        assert_eq!(intern(&mut forms, ""), 0);
        assert_eq!(intern(&mut forms, &"X".repeat(17)), 0);
        for i in 0..300 {
            intern(&mut forms, &format!("F{i}"));
        }
        assert_eq!(forms.len(), 255);
        assert_eq!(intern(&mut forms, "NEW"), 0);
        assert_eq!(intern(&mut forms, "AS"), 1);
    }
}
