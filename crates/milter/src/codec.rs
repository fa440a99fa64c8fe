//! Frames and the commands and replies in them.
//!
//! A frame is a 4-byte big-endian length (counting the command byte and the
//! data), the command byte, and the data. Every read below goes through a
//! bounded [`Reader`]: a short or malformed frame is a [`FrameError`].

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default largest frame accepted (Postfix sends body chunks of at most
/// 64 KiB; header values are bounded by its header_size_limit).
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Malformed peer input or a broken connection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The connection failed or closed in the middle of a frame.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame with length 0.
    #[error("empty frame")]
    Empty,
    /// A frame larger than allowed.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The announced size.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A frame larger than its command may be.
    #[error("{command} frame of {size} bytes exceeds the limit of {limit} for that command")]
    CommandTooLarge {
        /// The command letter.
        command: char,
        /// The announced size.
        size: usize,
        /// The limit for that command.
        limit: usize,
    },
    /// A per-connection bound was reached.
    #[error("{what} over the limit of {limit} per connection")]
    OverLimit {
        /// What was counted, e.g. "macro bytes held".
        what: &'static str,
        /// The limit in force.
        limit: usize,
    },
    /// The MTA sent nothing within the time allowed for this phase.
    #[error("the MTA sent nothing in time ({phase}, {secs} s)")]
    TimedOut {
        /// "option negotiation", "between messages" or "inside a message".
        phase: &'static str,
        /// The limit in seconds.
        secs: u64,
    },
    /// The server closed this connection at its connection limit, to serve
    /// a new one.
    #[error("closed at the connection limit to serve a new connection: it had been {phase} for {secs:.1} s")]
    Evicted {
        /// "waiting for option negotiation" or "idle between messages".
        phase: &'static str,
        /// How long it had been so.
        secs: f64,
    },
    /// A frame whose data does not match its command's layout.
    #[error("malformed {command} frame: {reason}")]
    Malformed {
        /// The command letter.
        command: char,
        /// What is wrong.
        reason: &'static str,
    },
    /// A command letter this implementation does not know.
    #[error("unknown command {0:?}")]
    Unknown(char),
}

/// A bounded cursor over frame data.
pub struct Reader<'a> {
    data: &'a [u8],
    command: char,
}

impl<'a> Reader<'a> {
    /// A reader over `data` of frame `command` (for error messages).
    pub fn new(command: char, data: &'a [u8]) -> Self {
        Reader { data, command }
    }

    fn err(&self, reason: &'static str) -> FrameError {
        FrameError::Malformed {
            command: self.command,
            reason,
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let (head, rest) = self
            .data
            .split_at_checked(n)
            .ok_or_else(|| self.err("too short"))?;
        self.data = rest;
        Ok(head)
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| self.err("too short"))?;
        Ok(u32::from_be_bytes(arr))
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        let arr: [u8; 2] = b.try_into().map_err(|_| self.err("too short"))?;
        Ok(u16::from_be_bytes(arr))
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    /// A NUL-terminated string (bytes without the NUL).
    pub fn cstr(&mut self) -> Result<&'a [u8], FrameError> {
        let end = self
            .data
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.err("string without NUL"))?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }

    /// All remaining bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Fails when bytes are left over.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing data"))
        }
    }
}

/// Appends a NUL-terminated string.
fn cstr(d: &mut Vec<u8>, s: &[u8]) {
    d.extend_from_slice(s);
    d.push(0);
}

/// Appends big-endian u32s.
fn put_u32s(d: &mut Vec<u8>, values: &[u32]) {
    for v in values {
        d.extend_from_slice(&v.to_be_bytes());
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The protocol stage a `D` (macro) frame belongs to, named by the
/// command letter of that stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// `C`: connect.
    Connect,
    /// `H`: HELO/EHLO.
    Helo,
    /// `M`: MAIL FROM.
    Mail,
    /// `R`: RCPT TO.
    Rcpt,
    /// `T`: DATA.
    Data,
    /// `L`: a header field.
    Header,
    /// `N`: end of headers.
    EndOfHeaders,
    /// `B`: a body chunk.
    Body,
    /// `E`: end of message.
    EndOfMessage,
    /// `U`: an unknown SMTP command (Postfix sends its macros even when
    /// the command itself is negotiated away).
    Unknown,
}

impl Stage {
    /// Every stage, from the newest in a message to the oldest.
    pub const NEWEST_FIRST: [Stage; 10] = [
        Stage::EndOfMessage,
        Stage::Body,
        Stage::EndOfHeaders,
        Stage::Header,
        Stage::Data,
        Stage::Rcpt,
        Stage::Mail,
        Stage::Helo,
        Stage::Unknown,
        Stage::Connect,
    ];

    /// The stage named by a command letter; `None` for any other byte.
    pub fn from_letter(b: u8) -> Option<Stage> {
        Some(match b {
            b'C' => Stage::Connect,
            b'H' => Stage::Helo,
            b'M' => Stage::Mail,
            b'R' => Stage::Rcpt,
            b'T' => Stage::Data,
            b'L' => Stage::Header,
            b'N' => Stage::EndOfHeaders,
            b'B' => Stage::Body,
            b'E' => Stage::EndOfMessage,
            b'U' => Stage::Unknown,
            _ => return None,
        })
    }

    /// The command letter.
    pub fn letter(self) -> u8 {
        match self {
            Stage::Connect => b'C',
            Stage::Helo => b'H',
            Stage::Mail => b'M',
            Stage::Rcpt => b'R',
            Stage::Data => b'T',
            Stage::Header => b'L',
            Stage::EndOfHeaders => b'N',
            Stage::Body => b'B',
            Stage::EndOfMessage => b'E',
            Stage::Unknown => b'U',
        }
    }

    /// True for the stages of one message (MAIL FROM to end of message),
    /// whose macros are forgotten when the message ends.
    pub fn in_message(self) -> bool {
        !matches!(self, Stage::Connect | Stage::Helo | Stage::Unknown)
    }

    /// An index from 0 to 9, for tables with one slot per stage.
    pub fn index(self) -> usize {
        match self {
            Stage::Connect => 0,
            Stage::Helo => 1,
            Stage::Mail => 2,
            Stage::Rcpt => 3,
            Stage::Data => 4,
            Stage::Header => 5,
            Stage::EndOfHeaders => 6,
            Stage::Body => 7,
            Stage::EndOfMessage => 8,
            Stage::Unknown => 9,
        }
    }
}

/// The name/value pairs of one `D` frame, kept as one string of
/// NUL-terminated names and values (no allocation per pair: a frame of many
/// tiny pairs costs what it weighs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacroList {
    /// `name\0value\0name\0value\0…` (invalid UTF-8 replaced).
    text: String,
    /// Number of pairs.
    count: usize,
}

impl MacroList {
    /// Checks frame data: an even number of NUL-terminated strings.
    pub fn parse(data: &[u8]) -> Result<MacroList, FrameError> {
        let malformed = |reason| FrameError::Malformed {
            command: 'D',
            reason,
        };
        if data.last().is_some_and(|b| *b != 0) {
            return Err(malformed("string without NUL"));
        }
        let strings = data.iter().filter(|b| **b == 0).count();
        if strings % 2 != 0 {
            return Err(malformed("a macro name without a value"));
        }
        Ok(MacroList {
            text: String::from_utf8_lossy(data).into_owned(),
            count: strings / 2,
        })
    }

    /// A list from pairs (names and values must not contain NUL).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> MacroList {
        let mut text = String::new();
        let mut count = 0;
        for (k, v) in pairs {
            text.push_str(k.as_ref());
            text.push('\0');
            text.push_str(v.as_ref());
            text.push('\0');
            count += 1;
        }
        MacroList { text, count }
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = self.text.split_terminator('\0');
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes held (names, values and their NULs).
    pub fn byte_len(&self) -> usize {
        self.text.len()
    }

    /// The frame data after the stage letter.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// A command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `O`: option negotiation.
    OptNeg {
        /// Protocol version (6).
        version: u32,
        /// Actions the MTA allows.
        actions: u32,
        /// Protocol steps the MTA can skip.
        protocol: u32,
    },
    /// `D`: macros for the stage named by `stage`.
    Macros {
        /// The stage the macros belong to.
        stage: Stage,
        /// Name/value pairs, stored as they came.
        pairs: MacroList,
    },
    /// `C`: a client connected.
    Connect {
        /// The client's host name.
        hostname: String,
        /// `4`, `6`, `L` (Unix) or `U` (unknown).
        family: u8,
        /// Port (0 when not IP).
        port: u16,
        /// The client address as text.
        address: String,
    },
    /// `H`: HELO/EHLO.
    Helo(String),
    /// `M`: MAIL FROM and its ESMTP arguments.
    Mail(Vec<String>),
    /// `R`: RCPT TO and its arguments.
    Rcpt(Vec<String>),
    /// `T`: DATA.
    Data,
    /// `L`: one header field: name and value (value bytes as sent).
    Header {
        /// Field name.
        name: String,
        /// Field value (with its leading space when HDR_LEADSPC was negotiated).
        value: Vec<u8>,
    },
    /// `N`: end of headers.
    EndOfHeaders,
    /// `B`: a body chunk.
    Body(Vec<u8>),
    /// `E`: end of message, with a last body chunk (Sendmail may send one;
    /// Postfix sends none).
    EndOfMessage(Vec<u8>),
    /// `A`: abort the current message.
    Abort,
    /// `Q`: close the connection.
    Quit,
    /// `K`: end this connection's session but keep the connection for a new one.
    QuitNewConnection,
    /// `U`: an unknown SMTP command.
    Unknown(String),
}

fn strings(r: &mut Reader<'_>) -> Result<Vec<String>, FrameError> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(text(r.cstr()?));
    }
    Ok(out)
}

impl Command {
    /// Parses one frame's command byte and data.
    pub fn parse(command: u8, data: &[u8]) -> Result<Command, FrameError> {
        let c = char::from(command);
        let mut r = Reader::new(c, data);
        let cmd = match command {
            b'O' => {
                let version = r.u32()?;
                let actions = r.u32()?;
                let protocol = r.u32()?;
                // Later fields may follow; they are ignored.
                r.rest();
                Command::OptNeg {
                    version,
                    actions,
                    protocol,
                }
            }
            b'D' => {
                let stage = Stage::from_letter(r.u8()?).ok_or(FrameError::Malformed {
                    command: c,
                    reason: "macros for a stage that is not a protocol stage letter",
                })?;
                let pairs = MacroList::parse(r.rest())?;
                Command::Macros { stage, pairs }
            }
            b'C' => {
                let hostname = text(r.cstr()?);
                let family = r.u8()?;
                let (port, address) = match family {
                    b'4' | b'6' | b'L' => {
                        let port = r.u16()?;
                        (port, text(r.cstr()?))
                    }
                    _ => (0, String::new()),
                };
                r.finish()?;
                Command::Connect {
                    hostname,
                    family,
                    port,
                    address,
                }
            }
            b'H' => {
                let h = text(r.cstr()?);
                Command::Helo(h)
            }
            b'M' => Command::Mail(strings(&mut r)?),
            b'R' => Command::Rcpt(strings(&mut r)?),
            b'T' => Command::Data,
            b'L' => {
                let name = text(r.cstr()?);
                let value = r.cstr()?.to_vec();
                r.finish()?;
                if name.is_empty() {
                    return Err(FrameError::Malformed {
                        command: c,
                        reason: "header without a name",
                    });
                }
                Command::Header { name, value }
            }
            b'N' => Command::EndOfHeaders,
            b'B' => Command::Body(r.rest().to_vec()),
            b'E' => Command::EndOfMessage(r.rest().to_vec()),
            b'A' => Command::Abort,
            b'Q' => Command::Quit,
            b'K' => Command::QuitNewConnection,
            b'U' => Command::Unknown(text(r.cstr().unwrap_or_default())),
            other => return Err(FrameError::Unknown(char::from(other))),
        };
        Ok(cmd)
    }

    /// Like [`Command::parse`], taking the frame's buffer: a body chunk keeps
    /// it instead of copying it.
    pub fn parse_owned(command: u8, data: Vec<u8>) -> Result<Command, FrameError> {
        if command == b'B' {
            return Ok(Command::Body(data));
        }
        Self::parse(command, &data)
    }

    /// The frame for this command (used by the client).
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut d = Vec::new();
        let c = match self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                put_u32s(&mut d, &[*version, *actions, *protocol]);
                b'O'
            }
            Command::Macros { stage, pairs } => {
                d.push(stage.letter());
                d.extend_from_slice(pairs.as_bytes());
                b'D'
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                cstr(&mut d, hostname.as_bytes());
                d.push(*family);
                if matches!(family, b'4' | b'6' | b'L') {
                    d.extend_from_slice(&port.to_be_bytes());
                    cstr(&mut d, address.as_bytes());
                }
                b'C'
            }
            Command::Helo(h) => {
                cstr(&mut d, h.as_bytes());
                b'H'
            }
            Command::Mail(args) | Command::Rcpt(args) => {
                for a in args {
                    cstr(&mut d, a.as_bytes());
                }
                if matches!(self, Command::Mail(_)) {
                    b'M'
                } else {
                    b'R'
                }
            }
            Command::Data => b'T',
            Command::Header { name, value } => {
                cstr(&mut d, name.as_bytes());
                cstr(&mut d, value);
                b'L'
            }
            Command::EndOfHeaders => b'N',
            Command::Body(b) => {
                d.extend_from_slice(b);
                b'B'
            }
            Command::EndOfMessage(last) => {
                d.extend_from_slice(last);
                b'E'
            }
            Command::Abort => b'A',
            Command::Quit => b'Q',
            Command::QuitNewConnection => b'K',
            Command::Unknown(s) => {
                cstr(&mut d, s.as_bytes());
                b'U'
            }
        };
        (c, d)
    }
}

/// A reply from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `O`: the milter's side of option negotiation, with macro requests.
    OptNeg {
        /// Version.
        version: u32,
        /// Actions the milter will use.
        actions: u32,
        /// Protocol steps.
        protocol: u32,
        /// (stage, space-separated macro names).
        macros: Vec<(u32, String)>,
    },
    /// `c`
    Continue,
    /// `a`
    Accept,
    /// `r`
    Reject,
    /// `t`
    Tempfail,
    /// `d`
    Discard,
    /// `s`
    Skip,
    /// `y`: an SMTP reply, e.g. `550 5.7.1 text`.
    ReplyCode(String),
    /// `h`: add a header at the end.
    AddHeader {
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
    /// `i`: insert a header at an index (0 = top).
    InsertHeader {
        /// Index.
        index: u32,
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
    /// `m`: change (or, with an empty value, delete) the index-th (1-based)
    /// field of this name.
    ChangeHeader {
        /// Index among fields of this name, from 1.
        index: u32,
        /// Name.
        name: String,
        /// New value; empty deletes.
        value: Vec<u8>,
    },
    /// `p`: progress (keeps the MTA waiting).
    Progress,
}

impl Reply {
    /// The frame for this reply.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut d = Vec::new();
        let c = match self {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                put_u32s(&mut d, &[*version, *actions, *protocol]);
                for (stage, names) in macros {
                    d.extend_from_slice(&stage.to_be_bytes());
                    cstr(&mut d, names.as_bytes());
                }
                b'O'
            }
            Reply::Continue => b'c',
            Reply::Accept => b'a',
            Reply::Reject => b'r',
            Reply::Tempfail => b't',
            Reply::Discard => b'd',
            Reply::Skip => b's',
            Reply::Progress => b'p',
            Reply::ReplyCode(s) => {
                cstr(&mut d, s.as_bytes());
                b'y'
            }
            Reply::AddHeader { name, value } => {
                cstr(&mut d, name.as_bytes());
                cstr(&mut d, value);
                b'h'
            }
            Reply::InsertHeader { index, name, value } => {
                d.extend_from_slice(&index.to_be_bytes());
                cstr(&mut d, name.as_bytes());
                cstr(&mut d, value);
                b'i'
            }
            Reply::ChangeHeader { index, name, value } => {
                d.extend_from_slice(&index.to_be_bytes());
                cstr(&mut d, name.as_bytes());
                cstr(&mut d, value);
                b'm'
            }
        };
        (c, d)
    }

    /// Parses a reply frame (used by the client).
    pub fn parse(command: u8, data: &[u8]) -> Result<Reply, FrameError> {
        let c = char::from(command);
        let mut r = Reader::new(c, data);
        let reply = match command {
            b'O' => {
                let version = r.u32()?;
                let actions = r.u32()?;
                let protocol = r.u32()?;
                let mut macros = Vec::new();
                while !r.is_empty() {
                    let stage = r.u32()?;
                    macros.push((stage, text(r.cstr()?)));
                }
                Reply::OptNeg {
                    version,
                    actions,
                    protocol,
                    macros,
                }
            }
            b'c' => Reply::Continue,
            b'a' => Reply::Accept,
            b'r' => Reply::Reject,
            b't' => Reply::Tempfail,
            b'd' => Reply::Discard,
            b's' => Reply::Skip,
            b'p' => Reply::Progress,
            b'y' => Reply::ReplyCode(text(r.cstr()?)),
            b'h' => Reply::AddHeader {
                name: text(r.cstr()?),
                value: r.cstr()?.to_vec(),
            },
            b'i' => Reply::InsertHeader {
                index: r.u32()?,
                name: text(r.cstr()?),
                value: r.cstr()?.to_vec(),
            },
            b'm' => Reply::ChangeHeader {
                index: r.u32()?,
                name: text(r.cstr()?),
                value: r.cstr()?.to_vec(),
            },
            other => return Err(FrameError::Unknown(char::from(other))),
        };
        Ok(reply)
    }
}

/// Reads one frame: (command byte, data). `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    read_frame_into(r, max, &mut None).await
}

/// Reads one frame like [`read_frame`], into `spare` when its capacity
/// fits the frame's data (at least half used), so that a caller can recycle
/// the buffers of large frames; `spare` is left alone otherwise.
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    spare: &mut Option<Vec<u8>>,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    read_frame_bounded(r, max, |_| max, spare).await
}

/// Reads one frame like [`read_frame_into`], with a limit per command:
/// a frame is refused when it is over `max`, or, once its command byte is
/// read, over `max_for(command)`; nothing is allocated for a refused frame.
pub async fn read_frame_bounded<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    max_for: impl Fn(u8) -> usize,
    spare: &mut Option<Vec<u8>>,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if size == 0 {
        return Err(FrameError::Empty);
    }
    if size > max {
        return Err(FrameError::TooLarge { size, limit: max });
    }
    let mut cmd = [0u8; 1];
    r.read_exact(&mut cmd).await?;
    let limit = max_for(cmd[0]).min(max);
    if size > limit {
        return Err(FrameError::CommandTooLarge {
            command: char::from(cmd[0]),
            size,
            limit,
        });
    }
    // The data is read straight into its own buffer (no copy), and into its
    // spare capacity (not zeroed first); `take` keeps the reads inside
    // this frame.
    let need = size - 1;
    let fits = spare
        .as_ref()
        .is_some_and(|b| b.capacity() >= need && need >= b.capacity() / 2);
    let mut data = match spare.take() {
        Some(mut b) if fits => {
            b.clear();
            b
        }
        other => {
            *spare = other;
            Vec::with_capacity(need)
        }
    };
    let mut frame = (&mut *r).take(u64::try_from(need).unwrap_or(u64::MAX));
    while data.len() < need {
        if frame.read_buf(&mut data).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some((cmd[0], data)))
}

/// Frames with more data than this are written in two parts (length and
/// command, then the data) instead of being copied into one buffer first.
const WRITE_COPY_LIMIT: usize = 16 * 1024;

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    cmd: u8,
    data: &[u8],
) -> std::io::Result<()> {
    let len =
        u32::try_from(data.len() + 1).map_err(|_| std::io::Error::other("frame too large"))?;
    let [a, b, c, d] = len.to_be_bytes();
    let head = [a, b, c, d, cmd];
    if data.len() > WRITE_COPY_LIMIT {
        // A large frame (a body chunk): its data goes out from where it is.
        w.write_all(&head).await?;
        return w.write_all(data).await;
    }
    // A small frame goes out in one write.
    let mut out = Vec::with_capacity(data.len() + 5);
    append_frame(&mut out, cmd, data)?;
    w.write_all(&out).await
}

/// Appends one frame to `out`, so that several frames can go out in one
/// write.
pub fn append_frame(out: &mut Vec<u8>, cmd: u8, data: &[u8]) -> std::io::Result<()> {
    let len =
        u32::try_from(data.len() + 1).map_err(|_| std::io::Error::other("frame too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let cmds = vec![
            Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1fffff,
            },
            Command::Macros {
                stage: Stage::Connect,
                pairs: MacroList::from_pairs([("j", "mx"), ("{daemon_name}", "smtpd")]),
            },
            Command::Connect {
                hostname: "localhost".into(),
                family: b'4',
                port: 25,
                address: "127.0.0.1".into(),
            },
            Command::Connect {
                hostname: "x".into(),
                family: b'U',
                port: 0,
                address: String::new(),
            },
            Command::Helo("client.example".into()),
            Command::Mail(vec!["<a@b>".into(), "SIZE=10".into()]),
            Command::Rcpt(vec!["<c@d>".into()]),
            Command::Data,
            Command::Header {
                name: "Subject".into(),
                value: b" hi".to_vec(),
            },
            Command::EndOfHeaders,
            Command::Body(b"body\r\n".to_vec()),
            Command::EndOfMessage(Vec::new()),
            Command::Abort,
            Command::Quit,
            Command::QuitNewConnection,
        ];
        for c in cmds {
            let (b, d) = c.encode();
            assert_eq!(Command::parse(b, &d).unwrap(), c);
        }
    }

    #[test]
    fn replies_round_trip() {
        let replies = vec![
            Reply::OptNeg {
                version: 6,
                actions: 0x111,
                protocol: 0x100702,
                macros: vec![(0, "j {daemon_name}".into())],
            },
            Reply::Continue,
            Reply::Accept,
            Reply::Skip,
            Reply::ReplyCode("550 5.7.1 no".into()),
            Reply::InsertHeader {
                index: 0,
                name: "DKIM-Signature".into(),
                value: b" v=1".to_vec(),
            },
            Reply::ChangeHeader {
                index: 2,
                name: "Authentication-Results".into(),
                value: Vec::new(),
            },
            Reply::AddHeader {
                name: "X".into(),
                value: b"y".to_vec(),
            },
        ];
        for r in replies {
            let (b, d) = r.encode();
            assert_eq!(Reply::parse(b, &d).unwrap(), r);
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(Command::parse(b'O', &[0, 0, 0, 6]).is_err());
        assert!(Command::parse(b'L', b"Subject\0no nul").is_err());
        assert!(Command::parse(b'L', b"Subject\0v\0extra").is_err());
        assert!(Command::parse(b'L', b"\0v\0").is_err());
        assert!(Command::parse(b'C', b"host\0").is_err());
        assert!(Command::parse(b'C', b"host\x004\x00").is_err());
        assert!(Command::parse(b'D', b"C").is_ok());
        assert!(Command::parse(b'D', b"Cname-without-value\0").is_err());
        assert!(matches!(
            Command::parse(b'Z', b""),
            Err(FrameError::Unknown('Z'))
        ));
        assert!(Command::parse(b'M', b"<a@b>").is_err());
    }

    #[tokio::test]
    async fn frame_limits() {
        let mut data: &[u8] = &[0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut data, 100).await,
            Err(FrameError::Empty)
        ));
        let mut data: &[u8] = &[0, 0, 1, 0, b'B'];
        assert!(matches!(
            read_frame(&mut data, 100).await,
            Err(FrameError::TooLarge {
                size: 256,
                limit: 100
            })
        ));
        let mut data: &[u8] = &[0, 0, 0, 5, b'B', 1];
        assert!(matches!(
            read_frame(&mut data, 100).await,
            Err(FrameError::Io(_))
        ));
        let mut data: &[u8] = &[];
        assert!(read_frame(&mut data, 100).await.unwrap().is_none());
        let mut data: &[u8] = &[0, 0, 0, 2, b'B', 7];
        assert_eq!(
            read_frame(&mut data, 100).await.unwrap(),
            Some((b'B', vec![7]))
        );
    }

    /// A large frame arriving a few bytes at a time is read whole, and
    /// reading it never takes bytes of the frame after it.
    #[tokio::test]
    async fn frames_across_partial_reads_stay_apart() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        wire.extend_from_slice(&u32::try_from(big.len() + 1).unwrap().to_be_bytes());
        wire.push(b'B');
        wire.extend_from_slice(&big);
        wire.extend_from_slice(&[0, 0, 0, 3, b'B', b'x', b'y', 0, 0, 0, 1, b'Q']);
        for (pipe, buffered) in [(7, false), (4096, false), (7, true), (65536, true)] {
            let (mut tx, rx) = tokio::io::duplex(pipe);
            let bytes = wire.clone();
            let writer = tokio::spawn(async move { tx.write_all(&bytes).await });
            let frames = if buffered {
                let mut r = tokio::io::BufReader::with_capacity(16 * 1024, rx);
                read_three(&mut r).await
            } else {
                let mut r = rx;
                read_three(&mut r).await
            };
            assert_eq!(frames[0], Some((b'B', big.clone())), "pipe {pipe}");
            assert_eq!(frames[1], Some((b'B', b"xy".to_vec())), "pipe {pipe}");
            assert_eq!(frames[2], Some((b'Q', Vec::new())), "pipe {pipe}");
            writer.await.unwrap().unwrap();
        }
    }

    async fn read_three<R: AsyncRead + Unpin>(r: &mut R) -> Vec<Option<(u8, Vec<u8>)>> {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(read_frame(r, 1 << 20).await.unwrap());
        }
        out
    }

    /// A spare buffer is read into when the frame fills at least half of
    /// it; a frame too large or too small for it leaves it for later. The
    /// stale bytes in it never show.
    #[tokio::test]
    async fn spare_buffers_are_reused_only_when_they_fit() {
        let mut wire = Vec::new();
        for (cmd, len) in [
            (b'B', 40_000usize),
            (b'B', 3),
            (b'B', 70_000),
            (b'B', 65_000),
        ] {
            wire.extend_from_slice(&u32::try_from(len + 1).unwrap().to_be_bytes());
            wire.push(cmd);
            wire.extend((0..len).map(|i| (i % 7) as u8 + b'a'));
        }
        async fn next(r: &mut &[u8], spare: &mut Option<Vec<u8>>) -> Vec<u8> {
            read_frame_into(r, 1 << 20, spare).await.unwrap().unwrap().1
        }
        let mut r = wire.as_slice();
        let stale = vec![b'Z'; 65_535];
        let spare_ptr = stale.as_ptr();
        let mut spare = Some(stale);
        let d = next(&mut r, &mut spare).await;
        assert_eq!(d.len(), 40_000);
        assert_eq!(d.as_ptr(), spare_ptr, "a 40 KB frame fits a 64 KB spare");
        assert!(spare.is_none());
        assert!(d.iter().all(|&b| b != b'Z'));
        spare = Some(d);
        let d = next(&mut r, &mut spare).await;
        assert_eq!(d, b"abc");
        assert!(spare.is_some(), "a tiny frame leaves the spare alone");
        let d = next(&mut r, &mut spare).await;
        assert_eq!(d.len(), 70_000);
        assert_ne!(d.as_ptr(), spare_ptr, "too large for the spare");
        let d = next(&mut r, &mut spare).await;
        assert_eq!(d.as_ptr(), spare_ptr);
        assert_eq!(d.len(), 65_000);
        assert_eq!(&d[..7], b"abcdefg");
        assert_eq!(
            read_frame_into(&mut r, 1 << 20, &mut spare).await.unwrap(),
            None
        );
    }
}
