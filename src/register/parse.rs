//! Reading a register download: gzip'd bytes → JSON array → one entry at a
//! time into a [`Builder`]. Nothing holds the decompressed text: serde_json
//! reads from the decoder and each element is dropped once its few fields
//! are copied out.
//!
//! Only the fields tilgang shows are read; every other field, and any value
//! of an unexpected type, is skipped without failing the element. An element
//! without a valid org number or a name is counted as skipped. What is fatal
//! is bytes that are not gzip, corrupt gzip, and text that is not JSON or not
//! an array: those name the offset.
//!
//! Several arrays one after another are read as one (the register publishes
//! main units and sub-units as two files; `cat enheter.json.gz
//! underenheter.json.gz` is a valid gzip stream of two members).

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::FormatError;
use super::store::Builder;

/// What one element of the array said, as far as tilgang reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Entry {
    /// `organisasjonsnummer`.
    pub number: Option<String>,
    /// `navn`.
    pub name: Option<String>,
    /// `organisasjonsform.kode`.
    pub form: Option<String>,
    /// `slettedato` is present (and not null).
    pub deleted: bool,
    /// `konkurs`.
    pub bankrupt: bool,
    /// `underAvvikling`.
    pub winding_up: bool,
    /// `overordnetEnhet`.
    pub parent: Option<String>,
}

/// Read a whole download into `builder`. `stop` makes it give up early (the
/// watcher is being dropped).
pub(super) fn read_into(
    builder: &mut Builder,
    input: impl Read,
    stop: Option<&AtomicBool>,
) -> Result<(), FormatError> {
    let compressed = Cell::new(0u64);
    let failed: Cell<Option<std::io::ErrorKind>> = Cell::new(None);
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: input,
            count: &compressed,
            failed: &failed,
            stop,
        },
    );
    let head = raw.fill_buf().map_err(FormatError::Read)?;
    if head.is_empty() {
        return Err(FormatError::Empty);
    }
    if head.len() < 2 || head[..2] != [0x1f, 0x8b] {
        return Err(FormatError::NotGzip);
    }
    let text = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(raw));
    let mut json = serde_json::Deserializer::from_reader(text);
    let classify = |e: serde_json::Error| {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return FormatError::Stopped;
        }
        if builder_full(&e) {
            return FormatError::TooLarge;
        }
        if e.is_io() {
            if let Some(kind) = failed.get() {
                return FormatError::Read(std::io::Error::new(kind, e.to_string()));
            }
            return FormatError::Gzip {
                offset: compressed.get(),
                message: e.to_string(),
            };
        }
        FormatError::Json {
            message: e.to_string(),
        }
    };
    loop {
        de::Deserializer::deserialize_seq(
            &mut json,
            Entries {
                builder: &mut *builder,
            },
        )
        .map_err(classify)?;
        // Whitespace to the end, or another array. `end` looks at the next
        // byte without taking it, so the next array starts whole.
        if json.end().is_ok() {
            return Ok(());
        }
    }
}

/// The message of the custom error [`Entries`] raises when the builder is full.
const FULL: &str = "the register is too large";

fn builder_full(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with(FULL)
}

/// The source's bytes: counts them, remembers a read error (so it is not
/// blamed on the gzip), and checks `stop`.
struct Counting<'a, R> {
    inner: R,
    count: &'a Cell<u64>,
    failed: &'a Cell<Option<std::io::ErrorKind>>,
    stop: Option<&'a AtomicBool>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(std::io::Error::other("stopped"));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.count.set(self.count.get() + n as u64);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.failed.set(Some(e.kind()));
                }
                Err(e)
            }
        }
    }
}

/// The top-level array: each element goes to the builder as it is read.
struct Entries<'b> {
    builder: &'b mut Builder,
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of organizations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<Entry>()? {
            if !self.builder.add(entry) {
                return Err(de::Error::custom(FULL));
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EntryVisitor)
    }
}

/// The fields tilgang reads.
enum Field {
    Number,
    Name,
    Form,
    Deleted,
    Bankrupt,
    WindingUp,
    Parent,
    /// `kode`, inside `organisasjonsform`.
    Code,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "organisasjonsnummer" => Field::Number,
                    "navn" => Field::Name,
                    "organisasjonsform" => Field::Form,
                    "slettedato" => Field::Deleted,
                    "konkurs" => Field::Bankrupt,
                    "underAvvikling" => Field::WindingUp,
                    "overordnetEnhet" => Field::Parent,
                    "kode" => Field::Code,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// An element of the array.
struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an organization")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut e = Entry::default();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Number => e.number = map.next_value::<Value>()?.text(),
                Field::Name => e.name = map.next_value::<Value>()?.text(),
                Field::Form => e.form = map.next_value::<Value>()?.code(),
                Field::Deleted => e.deleted = map.next_value::<Value>()? != Value::Null,
                Field::Bankrupt => e.bankrupt = map.next_value::<Value>()? == Value::Bool(true),
                Field::WindingUp => {
                    e.winding_up = map.next_value::<Value>()? == Value::Bool(true);
                }
                Field::Parent => e.parent = map.next_value::<Value>()?.text(),
                Field::Code | Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(e)
    }

    // Not an object: an entry with nothing in it, counted as skipped.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entry, E> {
        Ok(Entry::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entry, E> {
        Ok(Entry::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entry, E> {
        Ok(Entry::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entry, E> {
        Ok(Entry::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Entry, E> {
        Ok(Entry::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
        Ok(Entry::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Entry::default())
    }
}

/// A field's value, read leniently: whatever its type, it is taken whole
/// (so the element still parses), and only what tilgang uses is kept.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Null,
    Bool(bool),
    Text(String),
    /// An object; its `kode`, if that is a string.
    Object {
        code: Option<String>,
    },
    /// A number or an array.
    Other,
}

impl Value {
    fn text(self) -> Option<String> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    fn code(self) -> Option<String> {
        match self {
            Self::Object { code } => code,
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Text(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Text(s))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut code = None;
        while let Some(field) = map.next_key::<Field>()? {
            if let Field::Code = field {
                code = map.next_value::<Value>()?.text();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object { code })
    }
}
