//! AMF0 and AMF3 codecs, and the RTMP command and data messages built on them.
//!
//! Defined by: "AMF0 File Format Specification" (Adobe, 2007) for every AMF0
//! type, "AMF3 Specification" (Adobe, January 2013) for the AMF3 types that
//! RTMP command messages carry, and Adobe RTMP Specification 1.0 section 7.1
//! for command (types 20 and 17) and data (types 18 and 15) messages.
//!
//! The codec is sans-IO: decoders read a byte slice that the chunk layer has
//! already reassembled into one whole message, encoders append to a caller's
//! `Vec<u8>`. Because a message body is always complete, running out of bytes
//! is an error here ([`AmfError::Truncated`]), not a request for more input.
//!
//! Hostile input is bounded by [`AmfLimits`]: nesting depth (so recursion
//! cannot exhaust the stack), entries per container (checked before any
//! allocation sized from the wire), and the bytes that resolving references
//! may copy (so a few bytes of references cannot expand into gigabytes).
//!
//! References are resolved without keeping decoded copies: the reference
//! tables hold byte ranges of the input, and a reference to a complex value
//! decodes that value again from where it first appeared. A reference to a
//! value that is still being decoded (a cycle) cannot be represented as a tree
//! and is rejected with [`AmfError::BadReference`].

use std::fmt;

/// AMF0 type markers, from "AMF0 File Format Specification" section 2.1.
mod amf0 {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS_OBJECT: u8 = 0x11;
}

/// AMF3 type markers, from "AMF3 Specification" section 3.1.
mod amf3 {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOCUMENT: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const ARRAY: u8 = 0x09;
    pub const OBJECT: u8 = 0x0A;
    pub const XML: u8 = 0x0B;
    pub const BYTE_ARRAY: u8 = 0x0C;
    pub const VECTOR_INT: u8 = 0x0D;
    pub const DICTIONARY: u8 = 0x11;
}

/// The largest value a U29 can carry ("AMF3 Specification" section 1.3.1).
const U29_MAX: u32 = 0x1FFF_FFFF;
/// The largest length or index a U29 carries next to its one flag bit.
const U28_MAX: usize = 0x0FFF_FFFF;
/// The most sealed members an AMF3 traits header can declare next to its four flag bits.
const U25_MAX: usize = 0x01FF_FFFF;
/// The range of the AMF3 integer type, a 29-bit two's complement number.
const I29_MIN: i32 = -0x1000_0000;
const I29_MAX: i32 = 0x0FFF_FFFF;
/// The format selector that starts an AMF3 command or data message body (types 17 and 15)
/// and says AMF0 values follow.
const MESSAGE_FORMAT_AMF0: u8 = 0x00;

/// Limits on decoding, passed to every decoder.
///
/// Apart from references, every decoded value consumes at least one input byte, so the
/// output of one decode is at most about 80 bytes (one `(String, Amf0Value)` entry) per
/// input byte plus the string contents; these limits bound what the input alone does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmfLimits {
    /// Deepest nesting of containers (AMF0 objects, ECMA arrays, strict arrays and typed
    /// objects; AMF3 arrays and objects); a top-level container is at depth 1.
    ///
    /// The decoder recurses once per level, so this bounds its stack use instead of letting
    /// the input choose: under 1 KiB per level in release builds and about 7 KiB in debug
    /// builds (measured), so the default needs under 16 KiB of stack in release builds.
    pub depth_max: usize,
    /// Most entries one container may hold; also the most values in one message body.
    ///
    /// Counts from the wire are checked against it before anything is allocated, so one
    /// container's vector holds at most `elements_max` entries of 80 bytes (80 KiB with
    /// the default).
    pub elements_max: usize,
    /// Most input bytes that resolving references may copy or decode again in one call.
    ///
    /// Without it a few hundred bytes of references to references could expand
    /// exponentially. Each re-decoded byte yields at most one value, so references add at
    /// most `ref_bytes_max` × 80 bytes of output (5 MiB with the default).
    pub ref_bytes_max: usize,
}

impl AmfLimits {
    /// Default for [`AmfLimits::depth_max`]; real clients nest two or three levels.
    pub const DEPTH_MAX_DEFAULT: usize = 16;
    /// Default for [`AmfLimits::elements_max`]; a `connect` object has about ten entries.
    pub const ELEMENTS_MAX_DEFAULT: usize = 1024;
    /// Default for [`AmfLimits::ref_bytes_max`]: 64 KiB.
    pub const REF_BYTES_MAX_DEFAULT: usize = 64 * 1024;
}

impl Default for AmfLimits {
    fn default() -> Self {
        Self {
            depth_max: Self::DEPTH_MAX_DEFAULT,
            elements_max: Self::ELEMENTS_MAX_DEFAULT,
            ref_bytes_max: Self::REF_BYTES_MAX_DEFAULT,
        }
    }
}

/// One AMF0 value ("AMF0 File Format Specification" section 2).
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    /// An IEEE 754 double (marker 0x00).
    Number(f64),
    /// A boolean (marker 0x01); any non-zero byte decodes as true.
    Boolean(bool),
    /// A UTF-8 string of at most 65535 bytes (marker 0x02).
    String(String),
    /// An anonymous object: properties in wire order (marker 0x03).
    Object(Vec<(String, Amf0Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06).
    Undefined,
    /// An associative array (marker 0x08); its wire count is advisory and ignored.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array (marker 0x0A).
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the Unix epoch in UTC, and a time zone the spec reserves (marker 0x0B).
    Date { millis: f64, tz_min: i16 },
    /// A UTF-8 string with a 32-bit length (marker 0x0C).
    LongString(String),
    /// An XML document as UTF-8 text (marker 0x0F).
    XmlDocument(String),
    /// An object with a registered class name (marker 0x10).
    TypedObject {
        class: String,
        props: Vec<(String, Amf0Value)>,
    },
    /// The unsupported marker (0x0D), which stands for a value the sender could not serialize.
    Unsupported,
    /// One AMF3 value behind the avmplus-object marker (0x11).
    Amf3(Amf3Value),
}

impl Amf0Value {
    /// Returns the text of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) | Self::LongString(text) => Some(text),
            _ => None,
        }
    }

    /// Returns the value of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// Returns the value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(flag) => Some(*flag),
            _ => None,
        }
    }

    /// Looks up a property of an `Object`, `EcmaArray` or `TypedObject`; the first of
    /// duplicate keys wins.
    ///
    /// AMF3 objects are not searched; call [`Amf0Value::into_amf0`] first to see them.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Self::Object(props) | Self::EcmaArray(props) | Self::TypedObject { props, .. } => props
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// Replaces every AMF3 value inside with its AMF0 equivalent (see [`Amf3Value::to_amf0`]).
    ///
    /// Clients that speak AMF3 (object encoding 3) send command objects as AMF3, so a
    /// session that wants `connect`'s `app` whichever encoding was used calls this first.
    pub fn into_amf0(self) -> Amf0Value {
        fn props(props: Vec<(String, Amf0Value)>) -> Vec<(String, Amf0Value)> {
            props
                .into_iter()
                .map(|(key, value)| (key, value.into_amf0()))
                .collect()
        }
        match self {
            Self::Amf3(value) => value.to_amf0(),
            Self::Object(entries) => Self::Object(props(entries)),
            Self::EcmaArray(entries) => Self::EcmaArray(props(entries)),
            Self::TypedObject {
                class,
                props: entries,
            } => Self::TypedObject {
                class,
                props: props(entries),
            },
            Self::StrictArray(items) => {
                Self::StrictArray(items.into_iter().map(Self::into_amf0).collect())
            }
            other => other,
        }
    }
}

/// One AMF3 value ("AMF3 Specification" section 3).
#[derive(Clone, Debug, PartialEq)]
pub enum Amf3Value {
    /// Undefined (marker 0x00).
    Undefined,
    /// Null (marker 0x01).
    Null,
    /// False (marker 0x02).
    False,
    /// True (marker 0x03).
    True,
    /// A 29-bit signed integer (marker 0x04); encoding a value outside that range writes a double.
    Integer(i32),
    /// An IEEE 754 double (marker 0x05).
    Double(f64),
    /// A UTF-8 string (marker 0x06).
    String(String),
    /// A legacy XML document as UTF-8 text (marker 0x07).
    XmlDocument(String),
    /// Milliseconds since the Unix epoch in UTC (marker 0x08).
    Date(f64),
    /// An array with an associative part and a dense part (marker 0x09).
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// An object: its class name (empty for anonymous objects) and its sealed members
    /// followed by its dynamic members (marker 0x0A). Externalizable objects are not decoded.
    Object {
        class: String,
        props: Vec<(String, Amf3Value)>,
    },
    /// An E4X XML value as UTF-8 text (marker 0x0B).
    Xml(String),
    /// Raw bytes (marker 0x0C).
    ByteArray(Vec<u8>),
}

impl Amf3Value {
    /// Looks up a member of an `Object` or a key of an `Array`'s associative part.
    pub fn get(&self, key: &str) -> Option<&Amf3Value> {
        match self {
            Self::Object { props, .. } | Self::Array { assoc: props, .. } => props
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// Converts to the nearest AMF0 value.
    ///
    /// Integers and doubles become `Number`; an array becomes a `StrictArray` when it has
    /// no associative part and otherwise an `EcmaArray` whose dense entries are keyed by
    /// their index; an object becomes `Object`, or `TypedObject` when it has a class;
    /// both XML types become `XmlDocument`; a byte array, which AMF0 cannot express,
    /// becomes `Unsupported`.
    pub fn to_amf0(&self) -> Amf0Value {
        fn props(props: &[(String, Amf3Value)]) -> Vec<(String, Amf0Value)> {
            props
                .iter()
                .map(|(key, value)| (key.clone(), value.to_amf0()))
                .collect()
        }
        match self {
            Self::Undefined => Amf0Value::Undefined,
            Self::Null => Amf0Value::Null,
            Self::False => Amf0Value::Boolean(false),
            Self::True => Amf0Value::Boolean(true),
            Self::Integer(number) => Amf0Value::Number(f64::from(*number)),
            Self::Double(number) => Amf0Value::Number(*number),
            Self::String(text) => Amf0Value::String(text.clone()),
            Self::XmlDocument(text) | Self::Xml(text) => Amf0Value::XmlDocument(text.clone()),
            Self::Date(millis) => Amf0Value::Date {
                millis: *millis,
                tz_min: 0,
            },
            Self::Array { assoc, dense } if assoc.is_empty() => {
                Amf0Value::StrictArray(dense.iter().map(Self::to_amf0).collect())
            }
            Self::Array { assoc, dense } => {
                let mut entries = props(assoc);
                entries.extend(
                    dense
                        .iter()
                        .enumerate()
                        .map(|(i, value)| (i.to_string(), value.to_amf0())),
                );
                Amf0Value::EcmaArray(entries)
            }
            Self::Object {
                class,
                props: members,
            } if class.is_empty() => Amf0Value::Object(props(members)),
            Self::Object {
                class,
                props: members,
            } => Amf0Value::TypedObject {
                class: class.clone(),
                props: props(members),
            },
            Self::ByteArray(_) => Amf0Value::Unsupported,
        }
    }
}

/// Why an AMF body did not decode; every offset counts from the start of the decoded slice.
///
/// Every variant is the peer's fault (malformed or hostile input). This is a codec error:
/// the session decides whether it costs the stream or the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmfError {
    /// The input ends inside a value; `pos` is where the missing `what` starts.
    Truncated { pos: usize, what: &'static str },
    /// A type marker that neither specification defines (AMF0 0x04 movieclip and 0x0E
    /// recordset are reserved and land here too).
    UnknownMarker { pos: usize, marker: u8 },
    /// A container at `pos` would nest deeper than [`AmfLimits::depth_max`].
    DepthExceeded { pos: usize, depth_max: usize },
    /// A count or an entry at `pos` goes past [`AmfLimits::elements_max`].
    TooManyElements { pos: usize, elements_max: usize },
    /// A string's bytes are not UTF-8; `pos` is the first bad byte.
    InvalidUtf8 { pos: usize },
    /// A reference at `pos` names no entry, or one still being decoded (a cycle).
    BadReference { pos: usize },
    /// An AMF3 type this decoder does not read: vectors, dictionaries and externalizable objects.
    Amf3Unsupported { pos: usize, marker: u8 },
    /// An AMF0 object-end marker (0x09) at `pos` where a value was expected.
    UnexpectedObjectEnd { pos: usize },
    /// Resolving the reference at `pos` would copy more than [`AmfLimits::ref_bytes_max`] bytes.
    RefBudgetExceeded { pos: usize, ref_bytes_max: usize },
}

impl AmfError {
    /// Returns the byte offset the error names.
    pub fn pos(&self) -> usize {
        match self {
            Self::Truncated { pos, .. }
            | Self::UnknownMarker { pos, .. }
            | Self::DepthExceeded { pos, .. }
            | Self::TooManyElements { pos, .. }
            | Self::InvalidUtf8 { pos }
            | Self::BadReference { pos }
            | Self::Amf3Unsupported { pos, .. }
            | Self::UnexpectedObjectEnd { pos }
            | Self::RefBudgetExceeded { pos, .. } => *pos,
        }
    }
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { pos, what } => {
                write!(f, "AMF input ends at byte {pos}, expected {what}")
            }
            Self::UnknownMarker { pos, marker } => {
                write!(f, "unknown AMF type marker 0x{marker:02x} at byte {pos}")
            }
            Self::DepthExceeded { pos, depth_max } => {
                write!(
                    f,
                    "AMF container at byte {pos} nests deeper than {depth_max} levels"
                )
            }
            Self::TooManyElements { pos, elements_max } => {
                write!(
                    f,
                    "AMF container at byte {pos} has more than {elements_max} elements"
                )
            }
            Self::InvalidUtf8 { pos } => write!(f, "AMF string has invalid UTF-8 at byte {pos}"),
            Self::BadReference { pos } => {
                write!(
                    f,
                    "AMF reference at byte {pos} names no complete earlier value"
                )
            }
            Self::Amf3Unsupported { pos, marker } => {
                write!(f, "AMF3 type 0x{marker:02x} at byte {pos} is not supported")
            }
            Self::UnexpectedObjectEnd { pos } => {
                write!(
                    f,
                    "AMF0 object-end marker at byte {pos} where a value was expected"
                )
            }
            Self::RefBudgetExceeded { pos, ref_bytes_max } => {
                write!(f, "AMF reference at byte {pos} would copy more than {ref_bytes_max} bytes in total")
            }
        }
    }
}

impl std::error::Error for AmfError {}

/// A byte range of the input, so that reference tables copy nothing until a reference is used.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    len: usize,
}

/// One entry of a complex-value reference table: where the value's marker is and, once the
/// value is decoded, where it ends. An entry without an end is still being decoded.
#[derive(Clone, Copy, Debug)]
struct Slot {
    start: usize,
    end: Option<usize>,
}

/// The traits of an AMF3 object: class name, sealed member names and the dynamic flag
/// ("AMF3 Specification" section 3.12).
#[derive(Clone, Debug)]
struct Traits {
    class: Span,
    sealed: Vec<Span>,
    dynamic: bool,
}

/// The three AMF3 reference tables ("AMF3 Specification" sections 2.1, 3.8 and 3.12).
///
/// Each entry costs at least one input byte, so the tables never outgrow the input.
/// `replaying` counts nested re-decodes of referenced values, which must not add entries
/// a second time.
#[derive(Debug, Default)]
struct Amf3Tables {
    strings: Vec<Span>,
    objects: Vec<Slot>,
    traits: Vec<Traits>,
    replaying: usize,
}

/// The decoding state of one call: a cursor over the input plus the reference tables.
struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: AmfLimits,
    /// AMF0 complex values (objects, typed objects, ECMA and strict arrays) in the order
    /// they began ("AMF0 File Format Specification" section 2.9).
    amf0_objects: Vec<Slot>,
    /// Nested re-decodes of referenced AMF0 values, which must not add table entries.
    amf0_replaying: usize,
    /// The tables of the AMF3 value being decoded. Each avmplus-object marker starts fresh
    /// tables: every switched value is treated as a separate AMF3 serialization.
    amf3: Amf3Tables,
    /// Bytes copied or decoded again for references so far, against `limits.ref_bytes_max`.
    ref_bytes: usize,
}

/// Widens a wire count; `u32` always fits the `usize` of the platforms glommio runs on.
fn to_usize(count: u32) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}

/// Reads a U29 as the AMF3 integer type, a 29-bit two's complement number.
fn i29(raw: u32) -> i32 {
    let raw = raw & U29_MAX;
    // Both casts are lossless: `raw` has at most 29 significant bits.
    if raw & 0x1000_0000 == 0 {
        raw as i32
    } else {
        raw as i32 - 0x2000_0000
    }
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], pos: usize, limits: &AmfLimits) -> Self {
        Self {
            buf,
            pos,
            limits: *limits,
            amf0_objects: Vec::new(),
            amf0_replaying: 0,
            amf3: Amf3Tables::default(),
            ref_bytes: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], AmfError> {
        let start = self.pos;
        let bytes = start
            .checked_add(len)
            .and_then(|end| self.buf.get(start..end))
            .ok_or(AmfError::Truncated { pos: start, what })?;
        self.pos = start + bytes.len();
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], AmfError> {
        let start = self.pos;
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| AmfError::Truncated { pos: start, what })
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, AmfError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AmfError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, AmfError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn f64(&mut self, what: &'static str) -> Result<f64, AmfError> {
        Ok(f64::from_be_bytes(self.array(what)?))
    }

    /// Reads a variable-length U29 ("AMF3 Specification" section 1.3.1): up to three
    /// bytes of seven bits with a continuation flag, then a last byte of eight bits.
    fn u29(&mut self, what: &'static str) -> Result<u32, AmfError> {
        let mut value = 0u32;
        for _ in 0..3 {
            let byte = self.u8(what)?;
            if byte & 0x80 == 0 {
                return Ok(value << 7 | u32::from(byte));
            }
            value = value << 7 | u32::from(byte & 0x7F);
        }
        Ok(value << 8 | u32::from(self.u8(what)?))
    }

    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, AmfError> {
        let start = self.pos;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| AmfError::InvalidUtf8 {
                pos: start + error.valid_up_to(),
            })
    }

    /// Copies the text of a span that an earlier read proved lies inside the input.
    fn text(&self, span: Span) -> Result<String, AmfError> {
        let bytes = self
            .buf
            .get(span.start..)
            .and_then(|rest| rest.get(..span.len))
            .ok_or(AmfError::Truncated {
                pos: span.start,
                what: "string bytes",
            })?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| AmfError::InvalidUtf8 {
                pos: span.start + error.valid_up_to(),
            })
    }

    /// Checks that a container whose marker is at `at` may open inside `depth` others, and
    /// returns the depth of its children.
    fn enter(&self, depth: usize, at: usize) -> Result<usize, AmfError> {
        if depth >= self.limits.depth_max {
            return Err(AmfError::DepthExceeded {
                pos: at,
                depth_max: self.limits.depth_max,
            });
        }
        Ok(depth + 1)
    }

    fn too_many(&self, pos: usize) -> AmfError {
        AmfError::TooManyElements {
            pos,
            elements_max: self.limits.elements_max,
        }
    }

    /// Counts `bytes` against the reference budget for the reference at `at`.
    fn charge(&mut self, bytes: usize, at: usize) -> Result<(), AmfError> {
        let total = self.ref_bytes.saturating_add(bytes);
        if total > self.limits.ref_bytes_max {
            return Err(AmfError::RefBudgetExceeded {
                pos: at,
                ref_bytes_max: self.limits.ref_bytes_max,
            });
        }
        self.ref_bytes = total;
        Ok(())
    }

    /// Finds the complete table entry a reference at `at` names, and charges its length.
    fn resolve(&mut self, slot: Option<Slot>, at: usize) -> Result<usize, AmfError> {
        let slot = slot.ok_or(AmfError::BadReference { pos: at })?;
        let end = slot.end.ok_or(AmfError::BadReference { pos: at })?;
        self.charge(end.saturating_sub(slot.start), at)?;
        Ok(slot.start)
    }

    /// Decodes AMF0 values until the end of the input.
    fn amf0_values(&mut self) -> Result<Vec<Amf0Value>, AmfError> {
        let mut values = Vec::new();
        while self.remaining() > 0 {
            if values.len() >= self.limits.elements_max {
                return Err(self.too_many(self.pos));
            }
            values.push(self.amf0_value(0)?);
        }
        Ok(values)
    }

    /// Decodes one AMF0 value that sits inside `depth` containers.
    fn amf0_value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        let at = self.pos;
        let marker = self.u8("AMF0 type marker")?;
        let value = match marker {
            amf0::NUMBER => Amf0Value::Number(self.f64("AMF0 number")?),
            amf0::BOOLEAN => Amf0Value::Boolean(self.u8("AMF0 boolean")? != 0),
            amf0::STRING => {
                let len = self.u16("AMF0 string length")?;
                Amf0Value::String(self.utf8(usize::from(len), "AMF0 string bytes")?)
            }
            amf0::OBJECT => {
                let inner = self.enter(depth, at)?;
                let slot = self.amf0_open(at);
                let props = self.amf0_props(inner, 0)?;
                self.amf0_close(slot);
                Amf0Value::Object(props)
            }
            amf0::NULL => Amf0Value::Null,
            amf0::UNDEFINED => Amf0Value::Undefined,
            amf0::REFERENCE => {
                let index = self.u16("AMF0 reference index")?;
                let slot = self.amf0_objects.get(usize::from(index)).copied();
                let start = self.resolve(slot, at)?;
                let resume = std::mem::replace(&mut self.pos, start);
                self.amf0_replaying += 1;
                let value = self.amf0_value(depth);
                self.amf0_replaying -= 1;
                self.pos = resume;
                value?
            }
            amf0::ECMA_ARRAY => {
                let inner = self.enter(depth, at)?;
                let slot = self.amf0_open(at);
                // The count is advisory: some encoders write 0, so the end marker decides.
                let count = self.u32("AMF0 ECMA array count")?;
                let props = self.amf0_props(inner, to_usize(count))?;
                self.amf0_close(slot);
                Amf0Value::EcmaArray(props)
            }
            amf0::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd { pos: at }),
            amf0::STRICT_ARRAY => {
                let inner = self.enter(depth, at)?;
                let count_at = self.pos;
                let count = to_usize(self.u32("AMF0 strict array count")?);
                if count > self.limits.elements_max {
                    return Err(self.too_many(count_at));
                }
                let slot = self.amf0_open(at);
                // Every item needs at least one byte, so a short input cannot ask for more.
                let mut items = Vec::with_capacity(count.min(self.remaining()));
                for _ in 0..count {
                    items.push(self.amf0_value(inner)?);
                }
                self.amf0_close(slot);
                Amf0Value::StrictArray(items)
            }
            amf0::DATE => {
                let millis = self.f64("AMF0 date")?;
                let tz_min = i16::from_be_bytes(self.array("AMF0 date time zone")?);
                Amf0Value::Date { millis, tz_min }
            }
            amf0::LONG_STRING => {
                let len = self.u32("AMF0 long string length")?;
                Amf0Value::LongString(self.utf8(to_usize(len), "AMF0 long string bytes")?)
            }
            amf0::UNSUPPORTED => Amf0Value::Unsupported,
            amf0::XML_DOCUMENT => {
                let len = self.u32("AMF0 XML document length")?;
                Amf0Value::XmlDocument(self.utf8(to_usize(len), "AMF0 XML document bytes")?)
            }
            amf0::TYPED_OBJECT => {
                let inner = self.enter(depth, at)?;
                let slot = self.amf0_open(at);
                let len = self.u16("AMF0 class name length")?;
                let class = self.utf8(usize::from(len), "AMF0 class name")?;
                let props = self.amf0_props(inner, 0)?;
                self.amf0_close(slot);
                Amf0Value::TypedObject { class, props }
            }
            amf0::AVMPLUS_OBJECT => {
                let outer = std::mem::take(&mut self.amf3);
                let value = self.amf3_value(depth);
                self.amf3 = outer;
                Amf0Value::Amf3(value?)
            }
            _ => return Err(AmfError::UnknownMarker { pos: at, marker }),
        };
        Ok(value)
    }

    /// Reads object properties up to and including the end marker: an empty name followed
    /// by 0x09 ("AMF0 File Format Specification" section 2.5).
    fn amf0_props(
        &mut self,
        depth: usize,
        count_hint: usize,
    ) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        // A property needs at least three bytes: the name length and a marker.
        let capacity = count_hint
            .min(self.limits.elements_max)
            .min(self.remaining() / 3);
        let mut props = Vec::with_capacity(capacity);
        loop {
            let key_at = self.pos;
            let len = usize::from(self.u16("AMF0 property name length")?);
            if len == 0 && self.peek() == Some(amf0::OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            if props.len() >= self.limits.elements_max {
                return Err(self.too_many(key_at));
            }
            let key = self.utf8(len, "AMF0 property name")?;
            let value = self.amf0_value(depth)?;
            props.push((key, value));
        }
    }

    fn amf0_open(&mut self, at: usize) -> Option<usize> {
        open(&mut self.amf0_objects, self.amf0_replaying, at)
    }

    fn amf0_close(&mut self, slot: Option<usize>) {
        close(&mut self.amf0_objects, slot, self.pos);
    }

    /// Decodes one AMF3 value that sits inside `depth` containers.
    fn amf3_value(&mut self, depth: usize) -> Result<Amf3Value, AmfError> {
        let at = self.pos;
        let marker = self.u8("AMF3 type marker")?;
        let value = match marker {
            amf3::UNDEFINED => Amf3Value::Undefined,
            amf3::NULL => Amf3Value::Null,
            amf3::FALSE => Amf3Value::False,
            amf3::TRUE => Amf3Value::True,
            amf3::INTEGER => Amf3Value::Integer(i29(self.u29("AMF3 integer")?)),
            amf3::DOUBLE => Amf3Value::Double(self.f64("AMF3 double")?),
            amf3::STRING => {
                let span = self.amf3_string("AMF3 string")?;
                Amf3Value::String(self.text(span)?)
            }
            amf3::XML_DOCUMENT | amf3::XML => {
                let header_at = self.pos;
                let header = self.u29("AMF3 XML header")?;
                if header & 1 == 0 {
                    return self.amf3_reference(header >> 1, header_at, depth);
                }
                let text = self.utf8(to_usize(header >> 1), "AMF3 XML bytes")?;
                self.amf3_done(at);
                if marker == amf3::XML {
                    Amf3Value::Xml(text)
                } else {
                    Amf3Value::XmlDocument(text)
                }
            }
            amf3::DATE => {
                let header_at = self.pos;
                let header = self.u29("AMF3 date header")?;
                if header & 1 == 0 {
                    return self.amf3_reference(header >> 1, header_at, depth);
                }
                let millis = self.f64("AMF3 date")?;
                self.amf3_done(at);
                Amf3Value::Date(millis)
            }
            amf3::ARRAY => return self.amf3_array(at, depth),
            amf3::OBJECT => return self.amf3_object(at, depth),
            amf3::BYTE_ARRAY => {
                let header_at = self.pos;
                let header = self.u29("AMF3 byte array header")?;
                if header & 1 == 0 {
                    return self.amf3_reference(header >> 1, header_at, depth);
                }
                let bytes = self
                    .take(to_usize(header >> 1), "AMF3 byte array bytes")?
                    .to_vec();
                self.amf3_done(at);
                Amf3Value::ByteArray(bytes)
            }
            amf3::VECTOR_INT..=amf3::DICTIONARY => {
                return Err(AmfError::Amf3Unsupported { pos: at, marker })
            }
            _ => return Err(AmfError::UnknownMarker { pos: at, marker }),
        };
        Ok(value)
    }

    /// Reads a U29S string header and its bytes, or resolves a string reference
    /// ("AMF3 Specification" section 3.8). The empty string is never added to the table.
    fn amf3_string(&mut self, what: &'static str) -> Result<Span, AmfError> {
        let at = self.pos;
        let header = self.u29(what)?;
        let value = to_usize(header >> 1);
        if header & 1 == 0 {
            let span = self
                .amf3
                .strings
                .get(value)
                .copied()
                .ok_or(AmfError::BadReference { pos: at })?;
            self.charge(span.len, at)?;
            return Ok(span);
        }
        let start = self.pos;
        self.take(value, what)?;
        let span = Span { start, len: value };
        if value > 0 && self.amf3.replaying == 0 {
            self.amf3.strings.push(span);
        }
        Ok(span)
    }

    /// Decodes again the complex value that the object reference `index`, read at `at`, names.
    fn amf3_reference(
        &mut self,
        index: u32,
        at: usize,
        depth: usize,
    ) -> Result<Amf3Value, AmfError> {
        let slot = self.amf3.objects.get(to_usize(index)).copied();
        let start = self.resolve(slot, at)?;
        let resume = std::mem::replace(&mut self.pos, start);
        self.amf3.replaying += 1;
        let value = self.amf3_value(depth);
        self.amf3.replaying -= 1;
        self.pos = resume;
        value
    }

    /// Decodes an array after its marker at `at` ("AMF3 Specification" section 3.11).
    fn amf3_array(&mut self, at: usize, depth: usize) -> Result<Amf3Value, AmfError> {
        let header_at = self.pos;
        let header = self.u29("AMF3 array header")?;
        if header & 1 == 0 {
            return self.amf3_reference(header >> 1, header_at, depth);
        }
        let inner = self.enter(depth, at)?;
        let dense_len = to_usize(header >> 1);
        if dense_len > self.limits.elements_max {
            return Err(self.too_many(header_at));
        }
        let slot = self.amf3_open(at);
        let mut assoc = Vec::new();
        loop {
            let key_at = self.pos;
            let key = self.amf3_string("AMF3 array key")?;
            if key.len == 0 {
                break;
            }
            if assoc.len() + dense_len >= self.limits.elements_max {
                return Err(self.too_many(key_at));
            }
            let key = self.text(key)?;
            let value = self.amf3_value(inner)?;
            assoc.push((key, value));
        }
        let mut dense = Vec::with_capacity(dense_len.min(self.remaining()));
        for _ in 0..dense_len {
            dense.push(self.amf3_value(inner)?);
        }
        self.amf3_close(slot);
        Ok(Amf3Value::Array { assoc, dense })
    }

    /// Decodes an object after its marker at `at` ("AMF3 Specification" section 3.12).
    ///
    /// The U29O header's low bits say: bit 0 clear, an object reference; bit 1 clear, a
    /// traits reference; bit 2 set, externalizable; bit 3 set, dynamic; the rest count the
    /// sealed members.
    fn amf3_object(&mut self, at: usize, depth: usize) -> Result<Amf3Value, AmfError> {
        let header_at = self.pos;
        let header = self.u29("AMF3 object header")?;
        if header & 1 == 0 {
            return self.amf3_reference(header >> 1, header_at, depth);
        }
        let inner = self.enter(depth, at)?;
        let slot = self.amf3_open(at);
        let traits = if header & 0b10 == 0 {
            let traits = self.amf3.traits.get(to_usize(header >> 2)).cloned();
            let traits = traits.ok_or(AmfError::BadReference { pos: header_at })?;
            let copied = traits
                .sealed
                .iter()
                .fold(traits.class.len, |sum, key| sum.saturating_add(key.len));
            self.charge(copied, header_at)?;
            traits
        } else if header & 0b100 != 0 {
            return Err(AmfError::Amf3Unsupported {
                pos: at,
                marker: amf3::OBJECT,
            });
        } else {
            let sealed_len = to_usize(header >> 4);
            if sealed_len > self.limits.elements_max {
                return Err(self.too_many(header_at));
            }
            let class = self.amf3_string("AMF3 class name")?;
            let mut sealed = Vec::with_capacity(sealed_len.min(self.remaining()));
            for _ in 0..sealed_len {
                sealed.push(self.amf3_string("AMF3 sealed member name")?);
            }
            let traits = Traits {
                class,
                sealed,
                dynamic: header & 0b1000 != 0,
            };
            if self.amf3.replaying == 0 {
                self.amf3.traits.push(traits.clone());
            }
            traits
        };
        let mut props = Vec::with_capacity(traits.sealed.len().min(self.remaining()));
        for key in &traits.sealed {
            let key = self.text(*key)?;
            let value = self.amf3_value(inner)?;
            props.push((key, value));
        }
        if traits.dynamic {
            loop {
                let key_at = self.pos;
                let key = self.amf3_string("AMF3 dynamic member name")?;
                if key.len == 0 {
                    break;
                }
                if props.len() >= self.limits.elements_max {
                    return Err(self.too_many(key_at));
                }
                let key = self.text(key)?;
                let value = self.amf3_value(inner)?;
                props.push((key, value));
            }
        }
        self.amf3_close(slot);
        Ok(Amf3Value::Object {
            class: self.text(traits.class)?,
            props,
        })
    }

    fn amf3_open(&mut self, at: usize) -> Option<usize> {
        open(&mut self.amf3.objects, self.amf3.replaying, at)
    }

    fn amf3_close(&mut self, slot: Option<usize>) {
        close(&mut self.amf3.objects, slot, self.pos);
    }

    /// Adds a complex value without children, decoded from `at` to here, to the table.
    fn amf3_done(&mut self, at: usize) {
        let slot = self.amf3_open(at);
        self.amf3_close(slot);
    }
}

/// Adds a table entry for a value starting at `at`, unless the value is being re-decoded
/// for a reference and so already has one.
fn open(table: &mut Vec<Slot>, replaying: usize, at: usize) -> Option<usize> {
    if replaying > 0 {
        return None;
    }
    table.push(Slot {
        start: at,
        end: None,
    });
    Some(table.len() - 1)
}

/// Marks a table entry complete, ending at `end`.
fn close(table: &mut [Slot], slot: Option<usize>, end: usize) {
    if let Some(entry) = slot.and_then(|index| table.get_mut(index)) {
        entry.end = Some(end);
    }
}

/// Decodes every AMF0 value in `buf`, sharing one reference table among them.
pub fn decode_amf0(buf: &[u8], limits: &AmfLimits) -> Result<Vec<Amf0Value>, AmfError> {
    Decoder::new(buf, 0, limits).amf0_values()
}

/// Decodes the AMF0 value at `pos` and returns it with the offset just past it.
pub fn decode_amf0_one(
    buf: &[u8],
    pos: usize,
    limits: &AmfLimits,
) -> Result<(Amf0Value, usize), AmfError> {
    let mut decoder = Decoder::new(buf, pos, limits);
    let value = decoder.amf0_value(0)?;
    Ok((value, decoder.pos))
}

/// Decodes the AMF3 value at `pos`, with fresh reference tables, and returns it with the
/// offset just past it.
pub fn decode_amf3_one(
    buf: &[u8],
    pos: usize,
    limits: &AmfLimits,
) -> Result<(Amf3Value, usize), AmfError> {
    let mut decoder = Decoder::new(buf, pos, limits);
    let value = decoder.amf3_value(0)?;
    Ok((value, decoder.pos))
}

/// Returns the longest prefix of `text` of at most `len_max` bytes that ends on a
/// character boundary.
fn clip(text: &str, len_max: usize) -> &str {
    if text.len() <= len_max {
        return text;
    }
    let end = (0..=len_max)
        .rev()
        .find(|&end| text.is_char_boundary(end))
        .unwrap_or(0);
    text.get(..end).unwrap_or_default()
}

/// Writes a UTF-8 string with a 16-bit length, clipped to what the length can express.
fn put_utf8_u16(text: &str, out: &mut Vec<u8>) {
    let text = clip(text, usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Writes a UTF-8 string with a 32-bit length, clipped to what the length can express.
fn put_utf8_u32(text: &str, out: &mut Vec<u8>) {
    let text = clip(text, to_usize(u32::MAX));
    out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Writes an AMF0 string: the String type below 65536 bytes, the Long String type above.
fn put_amf0_string(text: &str, out: &mut Vec<u8>) {
    if text.len() <= usize::from(u16::MAX) {
        out.push(amf0::STRING);
        put_utf8_u16(text, out);
    } else {
        out.push(amf0::LONG_STRING);
        put_utf8_u32(text, out);
    }
}

/// Writes object properties and the end marker; names longer than 65535 bytes, which
/// the wire cannot carry and the decoder never produces, are clipped.
fn put_amf0_props(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (key, value) in props {
        put_utf8_u16(key, out);
        encode_amf0(value, out);
    }
    out.extend_from_slice(&[0x00, 0x00, amf0::OBJECT_END]);
}

/// Appends one AMF0 value ("AMF0 File Format Specification" section 2).
///
/// Strings become the String type below 65536 bytes and the Long String type otherwise,
/// whichever variant holds them. Lengths past what a field can express are clipped.
pub fn encode_amf0(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(number) => {
            out.push(amf0::NUMBER);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Amf0Value::Boolean(flag) => out.extend_from_slice(&[amf0::BOOLEAN, u8::from(*flag)]),
        Amf0Value::String(text) | Amf0Value::LongString(text) => put_amf0_string(text, out),
        Amf0Value::Object(props) => {
            out.push(amf0::OBJECT);
            put_amf0_props(props, out);
        }
        Amf0Value::Null => out.push(amf0::NULL),
        Amf0Value::Undefined => out.push(amf0::UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(amf0::ECMA_ARRAY);
            out.extend_from_slice(&u32::try_from(props.len()).unwrap_or(u32::MAX).to_be_bytes());
            put_amf0_props(props, out);
        }
        Amf0Value::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.push(amf0::STRICT_ARRAY);
            out.extend_from_slice(&count.to_be_bytes());
            for item in items.iter().take(to_usize(count)) {
                encode_amf0(item, out);
            }
        }
        Amf0Value::Date { millis, tz_min } => {
            out.push(amf0::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&tz_min.to_be_bytes());
        }
        Amf0Value::XmlDocument(text) => {
            out.push(amf0::XML_DOCUMENT);
            put_utf8_u32(text, out);
        }
        Amf0Value::TypedObject { class, props } => {
            out.push(amf0::TYPED_OBJECT);
            put_utf8_u16(class, out);
            put_amf0_props(props, out);
        }
        Amf0Value::Unsupported => out.push(amf0::UNSUPPORTED),
        Amf0Value::Amf3(value) => {
            out.push(amf0::AVMPLUS_OBJECT);
            encode_amf3(value, out);
        }
    }
}

/// Writes a U29 ("AMF3 Specification" section 1.3.1); `value` must fit in 29 bits.
fn put_u29(value: u32, out: &mut Vec<u8>) {
    debug_assert!(value <= U29_MAX, "U29 out of range: {value}");
    let value = value & U29_MAX;
    // Each cast keeps the low eight bits on purpose.
    if value < 0x80 {
        out.push(value as u8);
    } else if value < 0x4000 {
        out.extend_from_slice(&[(value >> 7) as u8 | 0x80, (value & 0x7F) as u8]);
    } else if value < 0x20_0000 {
        out.extend_from_slice(&[
            (value >> 14) as u8 | 0x80,
            (value >> 7) as u8 | 0x80,
            (value & 0x7F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            (value >> 22) as u8 | 0x80,
            (value >> 15) as u8 | 0x80,
            (value >> 8) as u8 | 0x80,
            value as u8,
        ]);
    }
}

/// Writes a U29 whose low bit is the "inline" flag and whose other bits carry `len`.
fn put_u29_inline(len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len.min(U28_MAX)).unwrap_or(0);
    put_u29(len << 1 | 1, out);
}

/// Writes an AMF3 string inline, clipped to 2^28 - 1 bytes, never as a reference.
fn put_amf3_string(text: &str, out: &mut Vec<u8>) {
    let text = clip(text, U28_MAX);
    put_u29_inline(text.len(), out);
    out.extend_from_slice(text.as_bytes());
}

/// Appends one AMF3 value ("AMF3 Specification" section 3), writing every string, object
/// and traits inline rather than as references.
///
/// An out-of-range `Integer` is written as a double. An anonymous object whose member
/// names are all non-empty is written as dynamic; any other object lists its members as
/// sealed. Associative array entries with an empty key, which the format cannot carry,
/// are skipped.
pub fn encode_amf3(value: &Amf3Value, out: &mut Vec<u8>) {
    match value {
        Amf3Value::Undefined => out.push(amf3::UNDEFINED),
        Amf3Value::Null => out.push(amf3::NULL),
        Amf3Value::False => out.push(amf3::FALSE),
        Amf3Value::True => out.push(amf3::TRUE),
        Amf3Value::Integer(number) if (I29_MIN..=I29_MAX).contains(number) => {
            out.push(amf3::INTEGER);
            // Two's complement truncated to 29 bits is the wire form.
            put_u29(*number as u32 & U29_MAX, out);
        }
        Amf3Value::Integer(number) => {
            out.push(amf3::DOUBLE);
            out.extend_from_slice(&f64::from(*number).to_be_bytes());
        }
        Amf3Value::Double(number) => {
            out.push(amf3::DOUBLE);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Amf3Value::String(text) => {
            out.push(amf3::STRING);
            put_amf3_string(text, out);
        }
        Amf3Value::XmlDocument(text) => {
            out.push(amf3::XML_DOCUMENT);
            put_amf3_string(text, out);
        }
        Amf3Value::Xml(text) => {
            out.push(amf3::XML);
            put_amf3_string(text, out);
        }
        Amf3Value::Date(millis) => {
            out.push(amf3::DATE);
            put_u29_inline(0, out);
            out.extend_from_slice(&millis.to_be_bytes());
        }
        Amf3Value::Array { assoc, dense } => {
            let dense_len = dense.len().min(U28_MAX);
            out.push(amf3::ARRAY);
            put_u29_inline(dense_len, out);
            for (key, value) in assoc.iter().filter(|(key, _)| !key.is_empty()) {
                put_amf3_string(key, out);
                encode_amf3(value, out);
            }
            put_amf3_string("", out);
            for value in dense.iter().take(dense_len) {
                encode_amf3(value, out);
            }
        }
        Amf3Value::Object { class, props } => {
            out.push(amf3::OBJECT);
            if class.is_empty() && props.iter().all(|(key, _)| !key.is_empty()) {
                // Inline object, inline traits, not externalizable, dynamic, no sealed members.
                put_u29(0b1011, out);
                put_amf3_string("", out);
                for (key, value) in props {
                    put_amf3_string(key, out);
                    encode_amf3(value, out);
                }
                put_amf3_string("", out);
            } else {
                let sealed_len = props.len().min(U25_MAX);
                // Inline object, inline traits, not externalizable, sealed only.
                put_u29(u32::try_from(sealed_len).unwrap_or(0) << 4 | 0b0011, out);
                put_amf3_string(class, out);
                for (key, _) in props.iter().take(sealed_len) {
                    put_amf3_string(key, out);
                }
                for (_, value) in props.iter().take(sealed_len) {
                    encode_amf3(value, out);
                }
            }
        }
        Amf3Value::ByteArray(bytes) => {
            let len = bytes.len().min(U28_MAX);
            out.push(amf3::BYTE_ARRAY);
            put_u29_inline(len, out);
            out.extend_from_slice(bytes.get(..len).unwrap_or_default());
        }
    }
}

/// An RTMP command message (type 20 AMF0, or type 17 AMF3 whose body is a 0x00 format byte
/// then AMF0 values), per Adobe RTMP Specification 1.0 section 7.1.1.
///
/// Values a client sent as AMF3 (behind the 0x11 marker) stay [`Amf0Value::Amf3`];
/// [`Amf0Value::into_amf0`] converts them.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The procedure name, such as `connect`, `createStream` or `publish`.
    pub name: String,
    /// The number the reply (`_result` or `_error`) echoes; 0 when no reply is wanted.
    pub transaction_id: f64,
    /// The command object, `Null` for most commands other than `connect`.
    pub object: Amf0Value,
    /// The values after the command object, such as `publish`'s stream key and type.
    pub args: Vec<Amf0Value>,
}

/// Why a command or data message did not parse; each variant is the peer's fault.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandError {
    /// The body is not valid AMF.
    Amf(AmfError),
    /// The body is empty or its first value is not a string.
    MissingName,
    /// The second value is absent or is not a number.
    MissingTransactionId,
    /// The third value, the command object (`null` when unused), is absent.
    MissingCommandObject,
}

impl From<AmfError> for CommandError {
    fn from(error: AmfError) -> Self {
        Self::Amf(error)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Amf(error) => write!(f, "bad AMF in message body: {error}"),
            Self::MissingName => f.write_str("message body does not start with a name string"),
            Self::MissingTransactionId => f.write_str("command has no transaction id number"),
            Self::MissingCommandObject => f.write_str("command has no command object"),
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Amf(error) => Some(error),
            _ => None,
        }
    }
}

/// Returns where the AMF0 values of a message body start: after the format selector of an
/// AMF3 message (types 17 and 15) when it is 0x00, else at once, tolerating senders that
/// leave the selector out.
fn body_start(payload: &[u8], amf3: bool) -> usize {
    usize::from(amf3 && payload.first() == Some(&MESSAGE_FORMAT_AMF0))
}

/// Decodes the values of a command or data message body.
fn body_values(payload: &[u8], amf3: bool, limits: &AmfLimits) -> Result<Vec<Amf0Value>, AmfError> {
    Decoder::new(payload, body_start(payload, amf3), limits).amf0_values()
}

/// Parses a command message body; `amf3` is true for message type 17.
///
/// Offsets in errors count from the start of `payload`, format selector included.
pub fn parse_command(
    payload: &[u8],
    amf3: bool,
    limits: &AmfLimits,
) -> Result<Command, CommandError> {
    let mut values = body_values(payload, amf3, limits)?.into_iter();
    let name = match values.next().map(Amf0Value::into_amf0) {
        Some(Amf0Value::String(name) | Amf0Value::LongString(name)) => name,
        _ => return Err(CommandError::MissingName),
    };
    let transaction_id = values
        .next()
        .and_then(|value| value.into_amf0().as_f64())
        .ok_or(CommandError::MissingTransactionId)?;
    let object = values.next().ok_or(CommandError::MissingCommandObject)?;
    Ok(Command {
        name,
        transaction_id,
        object,
        args: values.collect(),
    })
}

/// Appends a command message body in AMF0, for message type 20.
pub fn encode_command(cmd: &Command, out: &mut Vec<u8>) {
    put_amf0_string(&cmd.name, out);
    encode_amf0(&Amf0Value::Number(cmd.transaction_id), out);
    encode_amf0(&cmd.object, out);
    for arg in &cmd.args {
        encode_amf0(arg, out);
    }
}

/// Parses a data message body (type 18 AMF0, or type 15 AMF3 when `amf3` is true), such
/// as `["@setDataFrame", "onMetaData", {..}]` or `["onMetaData", {..}]`.
///
/// The first value must be a string, the handler name.
pub fn parse_data(
    payload: &[u8],
    amf3: bool,
    limits: &AmfLimits,
) -> Result<Vec<Amf0Value>, CommandError> {
    let values = body_values(payload, amf3, limits)?;
    match values.first() {
        Some(
            Amf0Value::String(_) | Amf0Value::LongString(_) | Amf0Value::Amf3(Amf3Value::String(_)),
        ) => Ok(values),
        _ => Err(CommandError::MissingName),
    }
}

/// Appends a data message body in AMF0, for message type 18.
pub fn encode_data(values: &[Amf0Value], out: &mut Vec<u8>) {
    for value in values {
        encode_amf0(value, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rtmp::test_util::hex;

    fn limits() -> AmfLimits {
        AmfLimits::default()
    }

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn amf0_bytes(value: &Amf0Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_amf0(value, &mut out);
        out
    }

    fn amf3_bytes(value: &Amf3Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_amf3(value, &mut out);
        out
    }

    /// Checks decode, encode and that every proper prefix fails to decode.
    fn check_amf0(wire: &str, value: Amf0Value) {
        let bytes = hex(wire);
        assert_eq!(
            decode_amf0_one(&bytes, 0, &limits()),
            Ok((value.clone(), bytes.len())),
            "{wire}"
        );
        assert_eq!(amf0_bytes(&value), bytes, "{wire}");
        for cut in 0..bytes.len() {
            assert!(
                decode_amf0_one(&bytes[..cut], 0, &limits()).is_err(),
                "{wire} cut at {cut}"
            );
        }
    }

    fn check_amf3(wire: &str, value: Amf3Value) {
        let bytes = hex(wire);
        assert_eq!(
            decode_amf3_one(&bytes, 0, &limits()),
            Ok((value.clone(), bytes.len())),
            "{wire}"
        );
        assert_eq!(amf3_bytes(&value), bytes, "{wire}");
        for cut in 0..bytes.len() {
            assert!(
                decode_amf3_one(&bytes[..cut], 0, &limits()).is_err(),
                "{wire} cut at {cut}"
            );
        }
    }

    #[test]
    fn amf0_scalars_round_trip() {
        check_amf0(
            "00 40 09 21 fb 54 44 2d 18",
            Amf0Value::Number(std::f64::consts::PI),
        );
        check_amf0("01 01", Amf0Value::Boolean(true));
        check_amf0("01 00", Amf0Value::Boolean(false));
        check_amf0("02 00 05 68 65 6c 6c 6f", Amf0Value::String(s("hello")));
        check_amf0("02 00 00", Amf0Value::String(s("")));
        check_amf0("02 00 02 c3 a9", Amf0Value::String(s("é")));
        check_amf0("05", Amf0Value::Null);
        check_amf0("06", Amf0Value::Undefined);
        check_amf0(
            "0b 42 6d 1a 94 a2 00 00 00 00 00",
            Amf0Value::Date {
                millis: 1e12,
                tz_min: 0,
            },
        );
        check_amf0(
            "0b 42 6d 1a 94 a2 00 00 00 ff c4",
            Amf0Value::Date {
                millis: 1e12,
                tz_min: -60,
            },
        );
        check_amf0("0d", Amf0Value::Unsupported);
        check_amf0(
            "0f 00 00 00 04 3c 61 2f 3e",
            Amf0Value::XmlDocument(s("<a/>")),
        );
        check_amf0("11 04 05", Amf0Value::Amf3(Amf3Value::Integer(5)));
    }

    #[test]
    fn amf0_containers_round_trip() {
        check_amf0(
            "03 00 01 61 00 3f f0 00 00 00 00 00 00 00 00 09",
            Amf0Value::Object(vec![(s("a"), Amf0Value::Number(1.0))]),
        );
        check_amf0("03 00 00 09", Amf0Value::Object(vec![]));
        // An empty name followed by a value other than the end marker is a property.
        check_amf0(
            "03 00 00 05 00 00 09",
            Amf0Value::Object(vec![(s(""), Amf0Value::Null)]),
        );
        check_amf0(
            "08 00 00 00 01 00 01 61 01 01 00 00 09",
            Amf0Value::EcmaArray(vec![(s("a"), Amf0Value::Boolean(true))]),
        );
        check_amf0(
            "0a 00 00 00 02 00 3f f0 00 00 00 00 00 00 05",
            Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), Amf0Value::Null]),
        );
        check_amf0("0a 00 00 00 00", Amf0Value::StrictArray(vec![]));
        check_amf0(
            "10 00 03 46 6f 6f 00 01 78 05 00 00 09",
            Amf0Value::TypedObject {
                class: s("Foo"),
                props: vec![(s("x"), Amf0Value::Null)],
            },
        );
        check_amf0(
            "03 00 01 6f 03 00 01 70 06 00 00 09 00 00 09",
            Amf0Value::Object(vec![(
                s("o"),
                Amf0Value::Object(vec![(s("p"), Amf0Value::Undefined)]),
            )]),
        );
        check_amf0(
            "03 00 01 61 11 09 01 01 00 00 09",
            Amf0Value::Object(vec![(
                s("a"),
                Amf0Value::Amf3(Amf3Value::Array {
                    assoc: vec![],
                    dense: vec![],
                }),
            )]),
        );
    }

    #[test]
    fn amf0_long_strings() {
        let text = "x".repeat(70_000);
        let bytes = amf0_bytes(&Amf0Value::String(text.clone()));
        assert_eq!(bytes[..5], hex("0c 00 01 11 70"));
        assert_eq!(
            decode_amf0(&bytes, &limits()),
            Ok(vec![Amf0Value::LongString(text.clone())])
        );
        assert_eq!(amf0_bytes(&Amf0Value::LongString(text)), bytes);
        // A short long string decodes as such but is written back as a plain string.
        let short = hex("0c 00 00 00 02 68 69");
        assert_eq!(
            decode_amf0(&short, &limits()),
            Ok(vec![Amf0Value::LongString(s("hi"))])
        );
        assert_eq!(
            amf0_bytes(&Amf0Value::LongString(s("hi"))),
            hex("02 00 02 68 69")
        );
        assert!(decode_amf0_one(&short[..6], 0, &limits()).is_err());
    }

    #[test]
    fn amf0_lenient_forms() {
        // Any non-zero byte is true.
        assert_eq!(
            decode_amf0(&hex("01 02"), &limits()),
            Ok(vec![Amf0Value::Boolean(true)])
        );
        // The ECMA array count is advisory: here it says 0 but two entries follow.
        let lying = hex("08 00 00 00 00 00 01 61 05 00 01 62 06 00 00 09");
        let expected = Amf0Value::EcmaArray(vec![
            (s("a"), Amf0Value::Null),
            (s("b"), Amf0Value::Undefined),
        ]);
        assert_eq!(decode_amf0(&lying, &limits()), Ok(vec![expected]));
        // A huge advisory count allocates nothing up front and still decodes.
        let huge = hex("08 ff ff ff ff 00 00 09");
        assert_eq!(
            decode_amf0(&huge, &limits()),
            Ok(vec![Amf0Value::EcmaArray(vec![])])
        );
    }

    #[test]
    fn amf0_references() {
        // Index 0 is the strict array, index 1 the object inside it.
        let obj = Amf0Value::Object(vec![(s("a"), Amf0Value::Null)]);
        let wire = hex("0a 00 00 00 02 03 00 01 61 05 00 00 09 07 00 01");
        assert_eq!(
            decode_amf0(&wire, &limits()),
            Ok(vec![Amf0Value::StrictArray(vec![obj.clone(), obj.clone()])])
        );
        // References work across the top-level values of one body.
        let wire = hex("03 00 01 61 05 00 00 09 07 00 00");
        assert_eq!(decode_amf0(&wire, &limits()), Ok(vec![obj.clone(), obj]));
        // A reference to the array that contains it is a cycle.
        let cycle = hex("0a 00 00 00 01 07 00 00");
        assert_eq!(
            decode_amf0(&cycle, &limits()),
            Err(AmfError::BadReference { pos: 5 })
        );
        assert_eq!(
            decode_amf0(&hex("07 00 03"), &limits()),
            Err(AmfError::BadReference { pos: 0 })
        );
    }

    /// The `connect` command ffmpeg sends to play, with the values its RTMP client uses.
    fn ffmpeg_connect() -> Command {
        Command {
            name: s("connect"),
            transaction_id: 1.0,
            object: Amf0Value::Object(vec![
                (s("app"), Amf0Value::String(s("live"))),
                (s("flashVer"), Amf0Value::String(s("LNX 9,0,124,2"))),
                (s("tcUrl"), Amf0Value::String(s("rtmp://h/live"))),
                (s("fpad"), Amf0Value::Boolean(false)),
                (s("capabilities"), Amf0Value::Number(15.0)),
                (s("audioCodecs"), Amf0Value::Number(4071.0)),
                (s("videoCodecs"), Amf0Value::Number(252.0)),
                (s("videoFunction"), Amf0Value::Number(1.0)),
            ]),
            args: vec![],
        }
    }

    const FFMPEG_CONNECT: &str = "
        02 00 07 63 6f 6e 6e 65 63 74
        00 3f f0 00 00 00 00 00 00
        03
        00 03 61 70 70 02 00 04 6c 69 76 65
        00 08 66 6c 61 73 68 56 65 72 02 00 0d 4c 4e 58 20 39 2c 30 2c 31 32 34 2c 32
        00 05 74 63 55 72 6c 02 00 0d 72 74 6d 70 3a 2f 2f 68 2f 6c 69 76 65
        00 04 66 70 61 64 01 00
        00 0c 63 61 70 61 62 69 6c 69 74 69 65 73 00 40 2e 00 00 00 00 00 00
        00 0b 61 75 64 69 6f 43 6f 64 65 63 73 00 40 af ce 00 00 00 00 00
        00 0b 76 69 64 65 6f 43 6f 64 65 63 73 00 40 6f 80 00 00 00 00 00
        00 0d 76 69 64 65 6f 46 75 6e 63 74 69 6f 6e 00 3f f0 00 00 00 00 00 00
        00 00 09";

    #[test]
    fn ffmpeg_connect_round_trip() {
        let bytes = hex(FFMPEG_CONNECT);
        let mut encoded = Vec::new();
        encode_command(&ffmpeg_connect(), &mut encoded);
        assert_eq!(encoded, bytes);
        let cmd = parse_command(&bytes, false, &limits()).expect("connect parses");
        assert_eq!(cmd, ffmpeg_connect());
        assert_eq!(
            cmd.object.get("app").and_then(Amf0Value::as_str),
            Some("live")
        );
        assert_eq!(
            cmd.object.get("fpad").and_then(Amf0Value::as_bool),
            Some(false)
        );
        assert_eq!(
            cmd.object.get("videoCodecs").and_then(Amf0Value::as_f64),
            Some(252.0)
        );
        assert_eq!(cmd.object.get("missing"), None);
    }

    #[test]
    fn every_split_of_a_command_fails() {
        let bytes = hex(FFMPEG_CONNECT);
        for cut in 0..bytes.len() {
            assert!(
                parse_command(&bytes[..cut], false, &limits()).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_command(&bytes[..10], false, &limits()),
            Err(CommandError::MissingTransactionId)
        );
        assert_eq!(
            parse_command(&bytes[..19], false, &limits()),
            Err(CommandError::MissingCommandObject)
        );
        assert_eq!(
            parse_command(&bytes[..20], false, &limits()),
            Err(CommandError::Amf(AmfError::Truncated {
                pos: 20,
                what: "AMF0 property name length"
            }))
        );
    }

    #[test]
    fn command_shape_errors() {
        assert_eq!(
            parse_command(&[], false, &limits()),
            Err(CommandError::MissingName)
        );
        assert_eq!(
            parse_command(&hex("05"), false, &limits()),
            Err(CommandError::MissingName)
        );
        assert_eq!(
            parse_command(&hex("02 00 01 61 05"), false, &limits()),
            Err(CommandError::MissingTransactionId)
        );
        let cmd = parse_command(
            &hex("02 00 01 61 00 00 00 00 00 00 00 00 00 05 02 00 01 6b"),
            false,
            &limits(),
        );
        let expected = Command {
            name: s("a"),
            transaction_id: 0.0,
            object: Amf0Value::Null,
            args: vec![Amf0Value::String(s("k"))],
        };
        assert_eq!(cmd, Ok(expected));
    }

    #[test]
    fn type_17_command() {
        // Format selector, "connect", 1.0, then an AMF3 anonymous object {app: "live"}
        // and an AMF3 integer argument.
        let wire = hex("00
             02 00 07 63 6f 6e 6e 65 63 74
             00 3f f0 00 00 00 00 00 00
             11 0a 0b 01 07 61 70 70 06 09 6c 69 76 65 01
             11 04 03");
        let cmd = parse_command(&wire, true, &limits()).expect("type 17 parses");
        let object = Amf3Value::Object {
            class: s(""),
            props: vec![(s("app"), Amf3Value::String(s("live")))],
        };
        assert_eq!(cmd.name, "connect");
        assert_eq!(cmd.transaction_id, 1.0);
        assert_eq!(cmd.object, Amf0Value::Amf3(object));
        assert_eq!(cmd.args, vec![Amf0Value::Amf3(Amf3Value::Integer(3))]);
        let object = cmd.object.into_amf0();
        assert_eq!(object.get("app").and_then(Amf0Value::as_str), Some("live"));
        // Without the format selector the body is read as AMF0 from the first byte.
        assert_eq!(
            parse_command(&wire[1..], true, &limits()).map(|cmd| cmd.name),
            Ok(s("connect"))
        );
        for cut in 0..wire.len() - 3 {
            assert!(
                parse_command(&wire[..cut], true, &limits()).is_err(),
                "cut at {cut}"
            );
        }
        // Offsets count from the start of the payload, selector included.
        assert_eq!(
            parse_command(&wire[..12], true, &limits()),
            Err(CommandError::Amf(AmfError::Truncated {
                pos: 12,
                what: "AMF0 number"
            }))
        );
    }

    /// The `@setDataFrame` data message OBS sends before media, trimmed to a few fields.
    const OBS_SET_DATA_FRAME: &str = "
        02 00 0d 40 73 65 74 44 61 74 61 46 72 61 6d 65
        02 00 0a 6f 6e 4d 65 74 61 44 61 74 61
        08 00 00 00 06
        00 05 77 69 64 74 68 00 40 94 00 00 00 00 00 00
        00 06 68 65 69 67 68 74 00 40 86 80 00 00 00 00 00
        00 09 66 72 61 6d 65 72 61 74 65 00 40 3e 00 00 00 00 00 00
        00 0c 76 69 64 65 6f 63 6f 64 65 63 69 64 00 40 1c 00 00 00 00 00 00
        00 06 73 74 65 72 65 6f 01 01
        00 07 65 6e 63 6f 64 65 72 02 00 11 6f 62 73 2d 6f 75 74 70 75 74 20 6d 6f 64 75 6c 65
        00 00 09";

    #[test]
    fn obs_set_data_frame() {
        let bytes = hex(OBS_SET_DATA_FRAME);
        let values = parse_data(&bytes, false, &limits()).expect("metadata parses");
        let metadata = Amf0Value::EcmaArray(vec![
            (s("width"), Amf0Value::Number(1280.0)),
            (s("height"), Amf0Value::Number(720.0)),
            (s("framerate"), Amf0Value::Number(30.0)),
            (s("videocodecid"), Amf0Value::Number(7.0)),
            (s("stereo"), Amf0Value::Boolean(true)),
            (s("encoder"), Amf0Value::String(s("obs-output module"))),
        ]);
        let expected = vec![
            Amf0Value::String(s("@setDataFrame")),
            Amf0Value::String(s("onMetaData")),
            metadata,
        ];
        assert_eq!(values, expected);
        assert_eq!(
            values[2].get("height").and_then(Amf0Value::as_f64),
            Some(720.0)
        );
        let mut encoded = Vec::new();
        encode_data(&expected, &mut encoded);
        assert_eq!(encoded, bytes);
        // Type 15 carries the same values behind a format selector.
        let mut type_15 = vec![0x00];
        type_15.extend_from_slice(&bytes);
        assert_eq!(parse_data(&type_15, true, &limits()), Ok(expected));
        for cut in 0..bytes.len() {
            let parsed = parse_data(&bytes[..cut], false, &limits());
            // Cuts between whole values leave a shorter but valid list.
            assert!(parsed.is_err() || cut == 16 || cut == 29, "cut at {cut}");
        }
        assert_eq!(
            parse_data(&hex("05"), false, &limits()),
            Err(CommandError::MissingName)
        );
    }

    #[test]
    fn amf3_scalars_round_trip() {
        check_amf3("00", Amf3Value::Undefined);
        check_amf3("01", Amf3Value::Null);
        check_amf3("02", Amf3Value::False);
        check_amf3("03", Amf3Value::True);
        check_amf3("04 05", Amf3Value::Integer(5));
        check_amf3("04 81 48", Amf3Value::Integer(200));
        check_amf3("04 ff ff 7f", Amf3Value::Integer(0x1F_FFFF));
        check_amf3("04 bf ff ff ff", Amf3Value::Integer(I29_MAX));
        check_amf3("04 c0 80 80 00", Amf3Value::Integer(I29_MIN));
        check_amf3("04 ff ff ff ff", Amf3Value::Integer(-1));
        check_amf3("05 3f f8 00 00 00 00 00 00", Amf3Value::Double(1.5));
        check_amf3("06 05 68 69", Amf3Value::String(s("hi")));
        check_amf3("06 01", Amf3Value::String(s("")));
        check_amf3("07 09 3c 61 2f 3e", Amf3Value::XmlDocument(s("<a/>")));
        check_amf3("08 01 42 6d 1a 94 a2 00 00 00", Amf3Value::Date(1e12));
        check_amf3("0b 09 3c 61 2f 3e", Amf3Value::Xml(s("<a/>")));
        check_amf3("0c 07 01 02 03", Amf3Value::ByteArray(vec![1, 2, 3]));
        // Integers outside 29 bits are written as doubles.
        assert_eq!(
            amf3_bytes(&Amf3Value::Integer(I29_MAX + 1)),
            hex("05 41 b0 00 00 00 00 00 00")
        );
    }

    #[test]
    fn amf3_containers_round_trip() {
        check_amf3(
            "09 05 01 04 01 04 02",
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![Amf3Value::Integer(1), Amf3Value::Integer(2)],
            },
        );
        check_amf3(
            "09 03 03 61 03 01 01",
            Amf3Value::Array {
                assoc: vec![(s("a"), Amf3Value::True)],
                dense: vec![Amf3Value::Null],
            },
        );
        check_amf3(
            "0a 0b 01 03 61 04 01 01",
            Amf3Value::Object {
                class: s(""),
                props: vec![(s("a"), Amf3Value::Integer(1))],
            },
        );
        check_amf3(
            "0a 13 07 46 6f 6f 03 78 04 01",
            Amf3Value::Object {
                class: s("Foo"),
                props: vec![(s("x"), Amf3Value::Integer(1))],
            },
        );
        // A member with an empty name cannot be dynamic, so it is written as sealed.
        check_amf3(
            "0a 13 01 01 01",
            Amf3Value::Object {
                class: s(""),
                props: vec![(s(""), Amf3Value::Null)],
            },
        );
    }

    #[test]
    fn amf3_references() {
        // A string reference.
        let hi = Amf3Value::String(s("hi"));
        let wire = hex("09 05 01 06 05 68 69 06 00");
        let expected = Amf3Value::Array {
            assoc: vec![],
            dense: vec![hi.clone(), hi],
        };
        assert_eq!(
            decode_amf3_one(&wire, 0, &limits()),
            Ok((expected, wire.len()))
        );
        // A traits reference, then an object reference (index 0 is the array itself).
        let foo = |x| Amf3Value::Object {
            class: s("Foo"),
            props: vec![(s("x"), Amf3Value::Integer(x))],
        };
        let wire = hex("09 07 01 0a 13 07 46 6f 6f 03 78 04 01 0a 01 04 02 0a 02");
        let expected = Amf3Value::Array {
            assoc: vec![],
            dense: vec![foo(1), foo(2), foo(1)],
        };
        assert_eq!(
            decode_amf3_one(&wire, 0, &limits()),
            Ok((expected, wire.len()))
        );
        // A reference to a containing value is a cycle; unknown indexes are errors.
        let bad = [
            ("09 03 01 0a 00", 4),
            ("06 02", 1),
            ("0a 05 04 01", 1),
            ("0c 04", 1),
        ];
        for (wire, pos) in bad {
            assert_eq!(
                decode_amf3_one(&hex(wire), 0, &limits()),
                Err(AmfError::BadReference { pos }),
                "{wire}"
            );
        }
    }

    #[test]
    fn amf3_reference_budget() {
        // A 100-byte string referenced many times copies 100 bytes each time.
        let mut wire = vec![0x09];
        put_u29_inline(50, &mut wire);
        wire.push(0x01);
        wire.push(0x06);
        put_amf3_string(&"y".repeat(100), &mut wire);
        for _ in 1..50 {
            wire.extend_from_slice(&[0x06, 0x00]);
        }
        let tight = AmfLimits {
            ref_bytes_max: 1000,
            ..AmfLimits::default()
        };
        assert!(matches!(
            decode_amf3_one(&wire, 0, &tight),
            Err(AmfError::RefBudgetExceeded {
                ref_bytes_max: 1000,
                ..
            })
        ));
        assert!(decode_amf3_one(&wire, 0, &limits()).is_ok());

        // Arrays of two references to the previous array double in size each step; 40
        // steps would be 2^40 values without the budget.
        let mut wire = vec![0x09];
        put_u29_inline(41, &mut wire);
        wire.extend_from_slice(&hex("01 09 03 01 06 05 68 69"));
        for index in 1..=40u32 {
            wire.extend_from_slice(&hex("09 05 01"));
            for _ in 0..2 {
                wire.push(0x09);
                put_u29(index << 1, &mut wire);
            }
        }
        assert!(matches!(
            decode_amf3_one(&wire, 0, &limits()),
            Err(AmfError::RefBudgetExceeded { .. })
        ));
    }

    #[test]
    fn amf3_unsupported_types() {
        for marker in [0x0d, 0x0e, 0x0f, 0x10, 0x11] {
            let wire = [0x09, 0x03, 0x01, marker, 0x01];
            assert_eq!(
                decode_amf3_one(&wire, 0, &limits()),
                Err(AmfError::Amf3Unsupported { pos: 3, marker })
            );
        }
        // An externalizable object.
        let wire = hex("0a 07 07 46 6f 6f");
        assert_eq!(
            decode_amf3_one(&wire, 0, &limits()),
            Err(AmfError::Amf3Unsupported {
                pos: 0,
                marker: 0x0a
            })
        );
        assert_eq!(
            decode_amf3_one(&hex("12"), 0, &limits()),
            Err(AmfError::UnknownMarker {
                pos: 0,
                marker: 0x12
            })
        );
    }

    #[test]
    fn nesting_bombs_hit_the_depth_limit() {
        // 0x03 0x03 0x03 ...: each object has a 771-byte name, then another object.
        let bomb = vec![0x03; 100_000];
        assert_eq!(
            decode_amf0(&bomb, &limits()),
            Err(AmfError::DepthExceeded {
                pos: 16 * 774,
                depth_max: 16
            })
        );
        // {a: {a: {a: ...}}} with four bytes per level.
        let bomb = hex("03 00 01 61").repeat(100_000);
        assert_eq!(
            decode_amf0(&bomb, &limits()),
            Err(AmfError::DepthExceeded {
                pos: 64,
                depth_max: 16
            })
        );
        // [[[...]]] as strict arrays of one.
        let bomb = hex("0a 00 00 00 01").repeat(100_000);
        assert_eq!(
            decode_amf0(&bomb, &limits()),
            Err(AmfError::DepthExceeded {
                pos: 80,
                depth_max: 16
            })
        );
        // An AMF3 switch, then arrays whose four-byte keys lead to further arrays.
        let mut bomb = vec![0x11];
        bomb.extend(std::iter::repeat_n(0x09, 100_000));
        assert!(matches!(
            decode_amf0(&bomb, &limits()),
            Err(AmfError::DepthExceeded { depth_max: 16, .. })
        ));
        // AMF0 inside AMF3 cannot happen, but AMF3 inside AMF0 containers counts on.
        let mut bomb = hex("03 00 01 61").repeat(10);
        bomb.push(0x11);
        bomb.extend(hex("09 03 01").repeat(100));
        assert_eq!(
            decode_amf0(&bomb, &limits()),
            Err(AmfError::DepthExceeded {
                pos: 41 + 3 * 6,
                depth_max: 16
            })
        );
    }

    #[test]
    fn counts_are_checked_before_allocating() {
        // If the decoder trusted the count it would allocate 4 Gi entries or report truncation.
        let wire = hex("0a ff ff ff ff");
        assert_eq!(
            decode_amf0(&wire, &limits()),
            Err(AmfError::TooManyElements {
                pos: 1,
                elements_max: 1024
            })
        );
        let wire = hex("11 09 bf ff ff ff");
        assert_eq!(
            decode_amf0(&wire, &limits()),
            Err(AmfError::TooManyElements {
                pos: 2,
                elements_max: 1024
            })
        );
        let wire = hex("0a ff ff ff ff 09 ff ff ff ff");
        assert!(matches!(
            decode_amf3_one(&wire, 5, &limits()),
            Err(AmfError::TooManyElements { pos: 6, .. })
        ));
        // Entries read one by one are counted too.
        let small = AmfLimits {
            elements_max: 2,
            ..AmfLimits::default()
        };
        let wire = hex("03 00 01 61 05 00 01 62 05 00 01 63 05 00 00 09");
        assert_eq!(
            decode_amf0(&wire, &small),
            Err(AmfError::TooManyElements {
                pos: 9,
                elements_max: 2
            })
        );
        assert_eq!(
            decode_amf0(&hex("05 05 05"), &small),
            Err(AmfError::TooManyElements {
                pos: 2,
                elements_max: 2
            })
        );
        let wire = hex("0a 0b 01 03 61 01 03 62 01 03 63 01 01");
        assert_eq!(
            decode_amf3_one(&wire, 0, &small),
            Err(AmfError::TooManyElements {
                pos: 9,
                elements_max: 2
            })
        );
    }

    #[test]
    fn malformed_input_names_the_offset() {
        let wire = hex("0a 00 00 00 02 05 12");
        assert_eq!(
            decode_amf0(&wire, &limits()),
            Err(AmfError::UnknownMarker {
                pos: 6,
                marker: 0x12
            })
        );
        // Movieclip and recordset are reserved.
        assert_eq!(
            decode_amf0(&hex("05 04"), &limits()),
            Err(AmfError::UnknownMarker {
                pos: 1,
                marker: 0x04
            })
        );
        assert_eq!(
            decode_amf0(&hex("0e"), &limits()),
            Err(AmfError::UnknownMarker {
                pos: 0,
                marker: 0x0e
            })
        );
        assert_eq!(
            decode_amf0(&hex("05 09"), &limits()),
            Err(AmfError::UnexpectedObjectEnd { pos: 1 })
        );
        assert_eq!(
            decode_amf0(&hex("02 00 02 61 ff"), &limits()),
            Err(AmfError::InvalidUtf8 { pos: 4 })
        );
        assert_eq!(
            decode_amf3_one(&hex("06 05 c3 28"), 0, &limits()),
            Err(AmfError::InvalidUtf8 { pos: 2 })
        );
        assert_eq!(
            decode_amf0(&hex("0c 00 00 ff ff 61"), &limits()),
            Err(AmfError::Truncated {
                pos: 5,
                what: "AMF0 long string bytes"
            })
        );
        assert_eq!(
            decode_amf0_one(&[], 3, &limits()),
            Err(AmfError::Truncated {
                pos: 3,
                what: "AMF0 type marker"
            })
        );
        let message = AmfError::UnknownMarker {
            pos: 6,
            marker: 0x12,
        }
        .to_string();
        assert_eq!(message, "unknown AMF type marker 0x12 at byte 6");
        let message = CommandError::Amf(AmfError::Truncated {
            pos: 20,
            what: "AMF0 number",
        })
        .to_string();
        assert!(
            message.contains("byte 20") && message.contains("AMF0 number"),
            "{message}"
        );
    }

    /// Flips random bytes of valid bodies and checks that decoding never panics. The seed
    /// comes from `SHARDCAST_AMF_SEED` so that a failure can be replayed.
    #[test]
    fn mutated_bodies_never_panic() {
        let seed = std::env::var("SHARDCAST_AMF_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(0x5EED_u64);
        eprintln!("SHARDCAST_AMF_SEED={seed}");
        let mut state = seed | 1;
        let mut next = move || {
            // xorshift64, enough to scatter mutations.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let bodies = [
            hex(FFMPEG_CONNECT),
            hex(OBS_SET_DATA_FRAME),
            hex("09 07 01 0a 13 07 46 6f 6f 03 78 04 01 0a 01 04 02 0a 02"),
            hex("0a 00 00 00 02 03 00 01 61 05 00 00 09 07 00 01"),
        ];
        for round in 0..20_000 {
            let mut body = bodies[round % bodies.len()].clone();
            for _ in 0..=next() % 4 {
                let at = (next() % body.len() as u64) as usize;
                body[at] = next() as u8;
            }
            let _ = parse_command(&body, false, &limits());
            let _ = parse_data(&body, true, &limits());
            let _ = decode_amf3_one(&body, 0, &limits());
        }
    }
}
