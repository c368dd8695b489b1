//! A small blocking D-Bus client: just enough of the wire protocol to call methods with
//! string arguments on the system bus and read any reply, so the agent can ask systemd
//! for unit state without spawning `systemctl` on every collection.
//!
//! Why not zbus: with `blocking-api` it brings 66 more crates into the agent (an async
//! executor, its threads, process and signal helpers, a TOML parser for its macros) for
//! what is here a few hundred lines of read-only marshalling. The parts of the
//! specification used: SASL `EXTERNAL` authentication, `Hello`, method calls, and the
//! full type system on the reading side (a property map may hold any type).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Where the system bus listens when `$DBUS_SYSTEM_BUS_ADDRESS` does not say.
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// Messages larger than this are refused (the specification allows 128 MiB; the
/// replies the agent asks for are a few KiB).
const MAX_MESSAGE: usize = 16 << 20;
/// Variants inside variants, arrays inside arrays: deeper than this is refused.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("D-Bus address {0:?}: no unix:path= or unix:abstract= transport")]
    Address(String),
    #[error("D-Bus I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("D-Bus authentication refused: {0}")]
    Auth(String),
    #[error("malformed D-Bus message: {0}")]
    Malformed(&'static str),
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

/// One decoded D-Bus value. Strings, object paths and signatures are all [`Value::Str`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    Int16(i16),
    Uint16(u16),
    Int32(i32),
    Uint32(u32),
    Int64(i64),
    Uint64(u64),
    Double(f64),
    Str(String),
    Fd(u32),
    Array(Vec<Value>),
    Struct(Vec<Value>),
    Entry(Box<Value>, Box<Value>),
    Variant(Box<Value>),
}

impl Value {
    /// The value inside any number of variants.
    pub fn unwrapped(&self) -> &Value {
        match self {
            Value::Variant(inner) => inner.unwrapped(),
            other => other,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self.unwrapped() {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Any unsigned or non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self.unwrapped() {
            Value::Byte(v) => Some(v.into()),
            Value::Uint16(v) => Some(v.into()),
            Value::Uint32(v) => Some(v.into()),
            Value::Uint64(v) => Some(v),
            Value::Int16(v) => u64::try_from(v).ok(),
            Value::Int32(v) => u64::try_from(v).ok(),
            Value::Int64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// An `a{sv}` property map as (name, value) pairs.
    pub fn properties(&self) -> Vec<(&str, &Value)> {
        let Value::Array(entries) = self.unwrapped() else { return Vec::new() };
        entries
            .iter()
            .filter_map(|entry| match entry {
                Value::Entry(key, value) => Some((key.as_str()?, value.unwrapped())),
                _ => None,
            })
            .collect()
    }
}

/// A method call on the bus.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    /// String arguments (signature `s…`).
    pub args: &'a [&'a str],
}

/// An authenticated connection to a message bus.
pub struct Connection {
    reader: BufReader<UnixStream>,
    serial: u32,
    /// Signals that arrived while waiting for replies, or found by `take_signals`.
    signals: Signals,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("serial", &self.serial).finish()
    }
}

impl Connection {
    /// The system bus, at `$DBUS_SYSTEM_BUS_ADDRESS` or the standard socket.
    pub fn system(timeout: Duration) -> Result<Self, DbusError> {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| DEFAULT_SYSTEM_BUS.to_owned());
        Self::open(&address, timeout)
    }

    /// Connects to the first usable transport of a D-Bus address, authenticates as this
    /// process's user and says `Hello` (so the bus routes replies to us).
    pub fn open(address: &str, timeout: Duration) -> Result<Self, DbusError> {
        let stream = connect(address)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut connection = Connection { reader: BufReader::new(stream), serial: 0, signals: Signals::default() };
        connection.authenticate()?;
        connection.call(Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
            args: &[],
        })?;
        Ok(connection)
    }

    fn authenticate(&mut self) -> Result<(), DbusError> {
        let uid = rustix::process::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        let stream = self.reader.get_mut();
        stream.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut line = String::new();
        self.reader.by_ref().take(512).read_line(&mut line)?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth(line.trim_end().to_owned()));
        }
        self.reader.get_mut().write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    /// Sends a method call and waits for its reply, skipping signals and anything else
    /// that arrives meanwhile. Returns the reply's body values.
    pub fn call(&mut self, call: Call<'_>) -> Result<Vec<Value>, DbusError> {
        self.call_all(&[call])?.pop().unwrap_or(Err(DbusError::Malformed("no reply")))
    }

    /// Sends several calls in one write and collects their replies, in the order of
    /// `calls`. One round trip instead of one per call: on a host where waking up costs
    /// more than the work, that is most of the cost. The outer error is the connection
    /// failing; the inner ones are error replies.
    #[allow(clippy::type_complexity)]
    pub fn call_all(&mut self, calls: &[Call<'_>]) -> Result<Vec<Result<Vec<Value>, DbusError>>, DbusError> {
        // Serials are nonzero and consecutive within a batch.
        let count = u32::try_from(calls.len()).map_err(|_| DbusError::Malformed("too many calls"))?;
        if self.serial > u32::MAX - count {
            self.serial = 0;
        }
        let first = self.serial + 1;
        let mut bytes = Vec::new();
        for call in calls {
            self.serial += 1;
            bytes.extend_from_slice(&encode_call(self.serial, call));
        }
        self.reader.get_mut().write_all(&bytes)?;
        let mut replies: Vec<Option<Result<Vec<Value>, DbusError>>> = calls.iter().map(|_| None).collect();
        let mut missing = calls.len();
        while missing > 0 {
            let message = self.read_message()?;
            if message.kind == SIGNAL {
                self.keep_signal(message);
                continue;
            }
            let Some(index) = message.reply_serial.and_then(|s| usize::try_from(s.wrapping_sub(first)).ok()) else {
                continue;
            };
            let Some(slot) = replies.get_mut(index).filter(|slot| slot.is_none()) else { continue };
            *slot = Some(match message.kind {
                METHOD_RETURN => Ok(message.body),
                ERROR => Err(DbusError::Remote {
                    name: message.error_name.unwrap_or_default(),
                    message: message.body.first().and_then(Value::as_str).unwrap_or_default().to_owned(),
                }),
                _ => Err(DbusError::Malformed("reply of an unexpected type")),
            });
            missing -= 1;
        }
        Ok(replies.into_iter().map(|r| r.unwrap_or(Err(DbusError::Malformed("no reply")))).collect())
    }

    /// Asks the bus to route matching signals here (`type='signal',…` match rule).
    pub fn add_match(&mut self, rule: &str) -> Result<(), DbusError> {
        self.call(Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "AddMatch",
            args: &[rule],
        })
        .map(drop)
    }

    /// Every signal received so far, without waiting: reads whatever messages are
    /// already on the socket (a message seen to begin is read to its end, which the
    /// timeout bounds).
    pub fn take_signals(&mut self) -> Result<Signals, DbusError> {
        while self.message_waiting()? {
            let message = self.read_message()?;
            if message.kind == SIGNAL {
                self.keep_signal(message);
            }
        }
        Ok(std::mem::take(&mut self.signals))
    }

    fn message_waiting(&mut self) -> Result<bool, DbusError> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        let mut byte = [0u8; 1];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(self.reader.get_ref(), &mut byte, flags) {
            Ok((0, _)) => Err(DbusError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(e) => Err(DbusError::Io(e.into())),
        }
    }

    fn keep_signal(&mut self, message: Message) {
        if self.signals.signals.len() >= MAX_KEPT_SIGNALS {
            self.signals.overflowed = true;
            return;
        }
        self.signals.signals.push(Signal {
            path: message.path.unwrap_or_default(),
            interface: message.interface.unwrap_or_default(),
            member: message.member.unwrap_or_default(),
        });
    }

    fn read_message(&mut self) -> Result<Message, DbusError> {
        let mut fixed = [0u8; 16];
        self.reader.read_exact(&mut fixed)?;
        let little = match fixed[0] {
            b'l' => true,
            b'B' => false,
            _ => return Err(DbusError::Malformed("endianness marker")),
        };
        let word = |at: usize| {
            let bytes = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
            if little { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) }
        };
        let body_len = word(4) as usize;
        let fields_len = word(12) as usize;
        let header_end = (16 + fields_len).next_multiple_of(8);
        let total = header_end.checked_add(body_len).filter(|t| *t <= MAX_MESSAGE);
        let total = total.ok_or(DbusError::Malformed("message too large"))?;
        let mut bytes = vec![0u8; total];
        bytes[..16].copy_from_slice(&fixed);
        self.reader.read_exact(&mut bytes[16..])?;
        decode_message(&bytes, little)
    }
}

fn connect(address: &str) -> Result<UnixStream, DbusError> {
    let mut last = None;
    for transport in address.split(';') {
        let Some(params) = transport.strip_prefix("unix:") else { continue };
        for param in params.split(',') {
            let attempt = if let Some(path) = param.strip_prefix("path=") {
                UnixStream::connect(unescape(path))
            } else if let Some(name) = param.strip_prefix("abstract=") {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(unescape(name).as_bytes())
                    .and_then(|addr| UnixStream::connect_addr(&addr))
            } else {
                continue;
            };
            match attempt {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.map_or_else(|| DbusError::Address(address.to_owned()), DbusError::Io))
}

/// Undoes the `%xx` escaping of address values.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

/// Signals kept between [`Connection::take_signals`] calls; past this they are dropped
/// and [`Signals::overflowed`] says so (the caller then re-reads everything).
const MAX_KEPT_SIGNALS: usize = 1024;

/// A signal received on the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub path: String,
    pub interface: String,
    pub member: String,
}

/// The signals that arrived since the last look.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Signals {
    pub signals: Vec<Signal>,
    /// Some were dropped: assume anything may have changed.
    pub overflowed: bool,
}

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SIGNATURE: u8 = 8;

#[derive(Debug)]
struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    path: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    body: Vec<Value>,
}

/// Little-endian writer with alignment relative to the start of the message.
#[derive(Default)]
struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn pad(&mut self, align: usize) {
        self.buf.resize(self.buf.len().next_multiple_of(align), 0);
    }

    fn u32(&mut self, value: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(len_u32(s.len()));
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn signature(&mut self, s: &str) {
        self.buf.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// One `(yv)` header field holding a string-like value of type `sig`.
    fn field(&mut self, code: u8, sig: &str, value: &str) {
        self.pad(8);
        self.buf.push(code);
        self.signature(sig);
        if sig == "g" { self.signature(value) } else { self.string(value) }
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn encode_call(serial: u32, call: &Call<'_>) -> Vec<u8> {
    let mut body = Encoder::default();
    for arg in call.args {
        body.string(arg);
    }
    let mut message = Encoder::default();
    message.buf.extend_from_slice(&[b'l', METHOD_CALL, 0, 1]);
    message.u32(len_u32(body.buf.len()));
    message.u32(serial);
    message.u32(0); // header field array length, patched below
    let fields_start = message.buf.len();
    message.field(FIELD_PATH, "o", call.path);
    message.field(FIELD_INTERFACE, "s", call.interface);
    message.field(FIELD_MEMBER, "s", call.member);
    message.field(FIELD_DESTINATION, "s", call.destination);
    if !call.args.is_empty() {
        message.field(FIELD_SIGNATURE, "g", &"s".repeat(call.args.len()));
    }
    let fields_len = len_u32(message.buf.len() - fields_start).to_le_bytes();
    message.buf[12..16].copy_from_slice(&fields_len);
    message.pad(8);
    message.buf.extend_from_slice(&body.buf);
    message.buf
}

fn decode_message(bytes: &[u8], little: bool) -> Result<Message, DbusError> {
    let mut decoder = Decoder { buf: bytes, pos: 12, little, depth: 0 };
    let fields = decoder.value("a(yv)")?;
    let mut message = Message {
        kind: bytes[1],
        reply_serial: None,
        error_name: None,
        path: None,
        interface: None,
        member: None,
        body: Vec::new(),
    };
    let mut signature = String::new();
    if let Value::Array(fields) = fields {
        for field in fields {
            let Value::Struct(parts) = field else { continue };
            let (Some(Value::Byte(code)), Some(value)) = (parts.first(), parts.get(1)) else { continue };
            match *code {
                FIELD_REPLY_SERIAL => message.reply_serial = value.as_u64().and_then(|v| u32::try_from(v).ok()),
                FIELD_ERROR_NAME => message.error_name = value.as_str().map(str::to_owned),
                FIELD_PATH => message.path = value.as_str().map(str::to_owned),
                FIELD_INTERFACE => message.interface = value.as_str().map(str::to_owned),
                FIELD_MEMBER => message.member = value.as_str().map(str::to_owned),
                FIELD_SIGNATURE => signature = value.as_str().unwrap_or_default().to_owned(),
                _ => {}
            }
        }
    }
    decoder.align(8)?;
    let mut rest = signature.as_str();
    while !rest.is_empty() {
        let (single, tail) = split_type(rest)?;
        message.body.push(decoder.value(single)?);
        rest = tail;
    }
    Ok(message)
}

/// Splits the first complete type off a signature: `a{sv}s` → (`a{sv}`, `s`).
fn split_type(sig: &str) -> Result<(&str, &str), DbusError> {
    let bytes = sig.as_bytes();
    let end = match bytes.first() {
        None => return Err(DbusError::Malformed("empty signature")),
        Some(b'a') => 1 + split_type(&sig[1..])?.0.len(),
        Some(open @ (b'(' | b'{')) => {
            let close = if *open == b'(' { b')' } else { b'}' };
            let mut at = 1;
            while bytes.get(at) != Some(&close) {
                if at >= bytes.len() {
                    return Err(DbusError::Malformed("unclosed container in signature"));
                }
                at += split_type(&sig[at..])?.0.len();
            }
            at + 1
        }
        Some(_) => 1,
    };
    Ok(sig.split_at(end))
}

fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'h' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    little: bool,
    depth: usize,
}

impl<'a> Decoder<'a> {
    fn align(&mut self, n: usize) -> Result<(), DbusError> {
        let aligned = self.pos.next_multiple_of(n);
        if aligned > self.buf.len() {
            return Err(DbusError::Malformed("truncated padding"));
        }
        self.pos = aligned;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DbusError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        let end = end.ok_or(DbusError::Malformed("truncated value"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DbusError> {
        self.align(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        if self.little == cfg!(target_endian = "big") {
            out.reverse();
        }
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, DbusError> {
        Ok(u32::from_ne_bytes(self.fixed()?))
    }

    fn text(&mut self, len: usize) -> Result<String, DbusError> {
        let bytes = self.take(len)?;
        if self.take(1)? != [0] {
            return Err(DbusError::Malformed("string without its terminating nul"));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| DbusError::Malformed("string is not UTF-8"))
    }

    /// Decodes one value of the single complete type `sig`.
    fn value(&mut self, sig: &str) -> Result<Value, DbusError> {
        let code = *sig.as_bytes().first().ok_or(DbusError::Malformed("empty signature"))?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DbusError::Malformed("nested too deeply"));
        }
        let value = match code {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => Value::Bool(self.u32()? != 0),
            b'n' => Value::Int16(i16::from_ne_bytes(self.fixed()?)),
            b'q' => Value::Uint16(u16::from_ne_bytes(self.fixed()?)),
            b'i' => Value::Int32(i32::from_ne_bytes(self.fixed()?)),
            b'u' => Value::Uint32(self.u32()?),
            b'h' => Value::Fd(self.u32()?),
            b'x' => Value::Int64(i64::from_ne_bytes(self.fixed()?)),
            b't' => Value::Uint64(u64::from_ne_bytes(self.fixed()?)),
            b'd' => Value::Double(f64::from_ne_bytes(self.fixed()?)),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                Value::Str(self.text(len)?)
            }
            b'g' => {
                let len = usize::from(self.take(1)?[0]);
                Value::Str(self.text(len)?)
            }
            b'v' => {
                let len = usize::from(self.take(1)?[0]);
                let inner = self.text(len)?;
                let (single, rest) = split_type(&inner)?;
                if !rest.is_empty() {
                    return Err(DbusError::Malformed("variant signature holds more than one type"));
                }
                Value::Variant(Box::new(self.value(single)?))
            }
            b'a' => {
                let len = self.u32()? as usize;
                let element = &sig[1..];
                self.align(alignment(*element.as_bytes().first().unwrap_or(&b'y')))?;
                let end = self.pos.checked_add(len).filter(|end| *end <= self.buf.len());
                let end = end.ok_or(DbusError::Malformed("array longer than its message"))?;
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.value(element)?);
                }
                if self.pos != end {
                    return Err(DbusError::Malformed("array length does not match its elements"));
                }
                Value::Array(items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let mut rest = &sig[1..sig.len() - 1];
                let mut members = Vec::new();
                while !rest.is_empty() {
                    let (single, tail) = split_type(rest)?;
                    members.push(self.value(single)?);
                    rest = tail;
                }
                if code == b'{' {
                    let mut pair = members.into_iter();
                    match (pair.next(), pair.next(), pair.next()) {
                        (Some(key), Some(value), None) => Value::Entry(Box::new(key), Box::new(value)),
                        _ => return Err(DbusError::Malformed("dict entry without exactly two members")),
                    }
                } else {
                    Value::Struct(members)
                }
            }
            _ => return Err(DbusError::Malformed("unknown type code")),
        };
        self.depth -= 1;
        Ok(value)
    }
}

/// The object path systemd gives a unit: every byte outside `[A-Za-z0-9]` (and a
/// leading digit) becomes `_xx`.
pub fn unit_path(unit: &str) -> String {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    if unit.is_empty() {
        path.push('_');
    }
    for (i, byte) in unit.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (byte.is_ascii_digit() && i > 0) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("_{byte:02x}"));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_escaped_like_systemd() {
        assert_eq!(unit_path("nginx.service"), "/org/freedesktop/systemd1/unit/nginx_2eservice");
        assert_eq!(
            unit_path("systemd-journald.service"),
            "/org/freedesktop/systemd1/unit/systemd_2djournald_2eservice"
        );
        assert_eq!(unit_path("1a"), "/org/freedesktop/systemd1/unit/_31a");
    }

    #[test]
    fn signatures_split_into_complete_types() {
        assert_eq!(split_type("a{sv}s").unwrap(), ("a{sv}", "s"));
        assert_eq!(split_type("a(sbbsi)").unwrap(), ("a(sbbsi)", ""));
        assert_eq!(split_type("(a(yv)u)t").unwrap(), ("(a(yv)u)", "t"));
        assert!(split_type("(ss").is_err());
        assert!(split_type("a").is_err());
    }

    /// A call encoded by us decodes back (header fields and string arguments), and a
    /// truncated copy is refused instead of read past its end.
    #[test]
    fn encoded_calls_decode_and_truncation_is_refused() {
        let call = Call { destination: "d.e", path: "/p", interface: "i.f", member: "M", args: &["one", "two"] };
        let bytes = encode_call(7, &call);
        assert_eq!(bytes.len() % 4, 0);
        let message = decode_message(&bytes, true).unwrap();
        assert_eq!(message.kind, METHOD_CALL);
        assert_eq!(message.body, vec![Value::Str("one".into()), Value::Str("two".into())]);
        for cut in [20, bytes.len() - 1] {
            assert!(decode_message(&bytes[..cut], true).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn big_endian_values_and_nesting_limits() {
        // A big-endian "a{sv}" body: {"n": <uint32 5>}.
        let mut body = vec![0, 0, 0, 16, 0, 0, 0, 0];
        body.extend_from_slice(&[0, 0, 0, 1, b'n', 0, 1, b'u', 0, 0, 0, 0, 0, 0, 0, 5]);
        let mut decoder = Decoder { buf: &body, pos: 0, little: false, depth: 0 };
        let map = decoder.value("a{sv}").unwrap();
        assert_eq!(map.properties(), vec![("n", &Value::Uint32(5))]);

        // Variants holding variants: fine when shallow, refused past the limit.
        let nested = |levels: usize| {
            let mut bytes = [1, b'v', 0].repeat(levels);
            bytes.extend_from_slice(&[1, b'y', 0, 42]);
            bytes
        };
        let shallow = nested(10);
        let mut decoder = Decoder { buf: &shallow, pos: 0, little: true, depth: 0 };
        assert_eq!(decoder.value("v").unwrap().unwrapped(), &Value::Byte(42));
        let deep = nested(MAX_DEPTH + 5);
        let mut decoder = Decoder { buf: &deep, pos: 0, little: true, depth: 0 };
        assert!(matches!(decoder.value("v"), Err(DbusError::Malformed("nested too deeply"))));
    }
}
