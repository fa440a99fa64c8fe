//! The milter side: option negotiation and a per-connection [`Handler`].

use crate::codec::{
    append_frame, read_frame_bounded, write_frame, Command, FrameError, MacroList, Reply, Stage,
    DEFAULT_MAX_FRAME,
};
use crate::{actions, proto};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A handler's answer at one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Go on.
    Continue,
    /// Accept the message; no further stages for it.
    Accept,
    /// Reject (5xx).
    Reject,
    /// Refuse for now (4xx).
    Tempfail,
    /// Accept and drop.
    Discard,
    /// Body only: no more body chunks are needed.
    Skip,
    /// A full SMTP reply, e.g. `550 5.7.1 DKIM signature did not verify`.
    ReplyCode(String),
}

impl Response {
    fn to_reply(&self, skip_ok: bool) -> Reply {
        match self {
            Response::Continue => Reply::Continue,
            Response::Accept => Reply::Accept,
            Response::Reject => Reply::Reject,
            Response::Tempfail => Reply::Tempfail,
            Response::Discard => Reply::Discard,
            Response::Skip if skip_ok => Reply::Skip,
            Response::Skip => Reply::Continue,
            Response::ReplyCode(s) => Reply::ReplyCode(s.clone()),
        }
    }
}

/// A change to the message, sent at end of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// Insert a header field at `index` (0 = top).
    InsertHeader {
        /// Position.
        index: u32,
        /// Name.
        name: String,
        /// Value as Postfix should write it (with its leading space when
        /// HDR_LEADSPC is negotiated; LF line breaks in folds).
        value: Vec<u8>,
    },
    /// Append a header field.
    AddHeader {
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Change the `index`-th (from 1) field called `name`; an empty value deletes it.
    ChangeHeader {
        /// Index among fields of this name.
        index: u32,
        /// Name.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
}

/// What the handler decides at end of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EomResult {
    /// Applied in order before the response.
    pub modifications: Vec<Modification>,
    /// The final answer.
    pub response: Response,
}

/// What option negotiation agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// Protocol version.
    pub version: u32,
    /// Actions agreed.
    pub actions: u32,
    /// Protocol flags agreed.
    pub protocol: u32,
}

impl Negotiated {
    /// True when header values keep their leading space.
    pub fn leading_space(&self) -> bool {
        self.protocol & proto::HDR_LEADSPC != 0
    }
}

/// The macros Postfix sent, newest stage first. Names may be given with or
/// without braces: `auth_authen` finds `{auth_authen}`. Each stage keeps
/// its pairs as one string; what is held at once is bounded by
/// [`ServerConfig::max_macro_bytes`] and [`ServerConfig::max_macros`].
#[derive(Debug, Default, Clone)]
pub struct Macros {
    stages: [Option<MacroList>; 10],
    bytes: usize,
    count: usize,
}

impl Macros {
    /// The value of a macro, if the MTA sent it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let bare = name.trim_start_matches('{').trim_end_matches('}');
        Stage::NEWEST_FIRST.iter().find_map(|st| {
            self.stages
                .get(st.index())
                .and_then(Option::as_ref)
                .and_then(|list| {
                    list.iter()
                        .find(|(k, _)| {
                            *k == bare
                                || k.strip_prefix('{')
                                    .and_then(|k| k.strip_suffix('}'))
                                    .is_some_and(|k| k == bare)
                        })
                        .map(|(_, v)| v)
                })
        })
    }

    /// Bytes held over all stages.
    pub fn byte_len(&self) -> usize {
        self.bytes
    }

    /// Pairs held over all stages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no macros are held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Replaces the macros of `stage`.
    fn set(&mut self, stage: Stage, pairs: MacroList) {
        let (bytes, count) = (pairs.byte_len(), pairs.len());
        if let Some(slot) = self.stages.get_mut(stage.index()) {
            if let Some(old) = slot.replace(pairs) {
                self.bytes -= old.byte_len();
                self.count -= old.len();
            }
            self.bytes += bytes;
            self.count += count;
        }
    }

    fn clear_message(&mut self) {
        for st in Stage::NEWEST_FIRST {
            if st.in_message() {
                if let Some(old) = self.stages.get_mut(st.index()).and_then(Option::take) {
                    self.bytes -= old.byte_len();
                    self.count -= old.len();
                }
            }
        }
    }
}

/// One connection's logic. Every method but [`Handler::eom`] has a default
/// that continues.
pub trait Handler: Send + 'static {
    /// Option negotiation is done.
    fn negotiated(&mut self, _n: &Negotiated) {}
    /// A client connected.
    fn connect(&mut self, _hostname: &str, _addr: Option<IpAddr>, _macros: &Macros) -> Response {
        Response::Continue
    }
    /// MAIL FROM (a new message begins).
    fn mail(&mut self, _args: &[String], _macros: &Macros) -> Response {
        Response::Continue
    }
    /// RCPT TO.
    fn rcpt(&mut self, _args: &[String], _macros: &Macros) -> Response {
        Response::Continue
    }
    /// One header field.
    fn header(&mut self, _name: &str, _value: &[u8]) -> Response {
        Response::Continue
    }
    /// End of headers.
    fn eoh(&mut self, _macros: &Macros) -> Response {
        Response::Continue
    }
    /// A body chunk; [`Response::Skip`] when no more body is needed.
    fn body(&mut self, _chunk: &[u8]) -> Response {
        Response::Continue
    }
    /// A body chunk as the server received it, to keep or hand over without
    /// a copy; the server waits for the answer before it reads on. The
    /// default passes the bytes to [`Handler::body`].
    fn body_owned(&mut self, chunk: Vec<u8>) -> impl Future<Output = Response> + Send {
        std::future::ready(self.body(&chunk))
    }
    /// A buffer from an earlier [`Handler::body_owned`] chunk that the
    /// handler is done with, for the server to read a later frame into
    /// (large bodies then do not allocate and free memory for every chunk).
    fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// End of message: the modifications and the final answer.
    fn eom(&mut self, macros: &Macros) -> impl Future<Output = EomResult> + Send;
    /// The message was aborted; forget it.
    fn abort(&mut self) {}
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame accepted (headers and body chunks; the other
    /// commands are held to [`SMALL_FRAME`], macros to `max_macro_bytes`).
    pub max_frame: usize,
    /// Inside a message (MAIL FROM to end of message): the longest wait for
    /// the MTA's next frame.
    pub read_timeout: Duration,
    /// From connecting to option negotiation, in all.
    pub negotiate_timeout: Duration,
    /// Between messages: the longest a negotiated connection may stay
    /// without starting a message (Postfix keeps its milter connection for
    /// the whole SMTP session, whose idle limit is its `smtpd_timeout`).
    pub idle_timeout: Duration,
    /// Macro bytes (names, values, NULs) held at once per connection.
    pub max_macro_bytes: usize,
    /// Macro name/value pairs held at once per connection.
    pub max_macros: usize,
    /// Actions wanted (intersected with what the MTA offers).
    pub actions: u32,
    /// Protocol flags wanted (intersected with what the MTA offers).
    pub protocol: u32,
    /// Macros requested per stage (SMFIM_* number, space-separated names).
    pub macros: Vec<(u32, String)>,
    /// Connections served at once. At the limit a new connection is still
    /// served: the connection that has waited longest for option
    /// negotiation is closed for it, or else the one idle longest between
    /// messages. When every connection is inside a message, new ones wait
    /// in the listen queue until one ends (Postfix gives up after its
    /// milter_connect_timeout and applies milter_default_action).
    pub max_connections: usize,
}

impl ServerConfig {
    /// With `true`, body chunks are answered (no `NR_BODY`) and SKIP is
    /// offered, so a handler can stop the MTA sending a body it does not
    /// need, at one round trip per chunk; with `false`, the MTA streams the
    /// body without waiting for replies and SKIP is not offered.
    #[must_use]
    pub fn with_body_replies(mut self, replies: bool) -> Self {
        if replies {
            self.protocol = (self.protocol & !proto::NR_BODY) | proto::SKIP;
        } else {
            self.protocol = (self.protocol | proto::NR_BODY) & !proto::SKIP;
        }
        self
    }
}

impl Default for ServerConfig {
    /// What dkimd needs: add and change headers; no replies before end of
    /// message and no HELO, RCPT, DATA or unknown commands at all; header
    /// values with their leading space; the macros for trust and logs.
    /// [`ServerConfig::with_body_replies`] trades the streamed body for
    /// replies to each chunk and SKIP.
    fn default() -> Self {
        ServerConfig {
            max_frame: DEFAULT_MAX_FRAME,
            read_timeout: Duration::from_secs(300),
            negotiate_timeout: Duration::from_secs(DEFAULT_NEGOTIATE_TIMEOUT),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT),
            max_macro_bytes: DEFAULT_MAX_MACRO_BYTES,
            max_macros: DEFAULT_MAX_MACROS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            actions: actions::ADDHDRS | actions::CHGHDRS | actions::SETSYMLIST,
            protocol: proto::NOHELO
                | proto::NORCPT
                | proto::NOUNKNOWN
                | proto::NODATA
                | proto::NR_CONN
                | proto::NR_MAIL
                | proto::NR_HDR
                | proto::NR_EOH
                | proto::NR_BODY
                | proto::HDR_LEADSPC,
            macros: vec![
                (0, "j {daemon_name} {client_addr} _".into()),
                (2, "{auth_authen} {mail_addr} i".into()),
                (5, "i {auth_authen}".into()),
            ],
        }
    }
}

/// Runs one connection until the MTA quits or the connection fails.
/// Returns the number of messages that reached end of message.
pub async fn session<S, H>(stream: S, handler: H, cfg: &ServerConfig) -> Result<usize, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    session_in(stream, handler, cfg, &Slot::new(Instant::now())).await
}

/// The most data a frame of this command may carry: headers and body
/// chunks up to `max_frame`, macros up to what a connection may hold, the
/// rest (options, connect, HELO, MAIL and RCPT arguments) [`SMALL_FRAME`].
fn frame_limit(cfg: &ServerConfig, command: u8) -> usize {
    match command {
        b'L' | b'B' | b'E' => cfg.max_frame,
        b'D' => cfg.max_macro_bytes.saturating_add(2),
        _ => SMALL_FRAME,
    }
}

/// Like [`session`], reporting its phase in `slot` (for the connection
/// limit), and ending when the slot is taken from it.
pub async fn session_in<S, H>(
    stream: S,
    mut handler: H,
    cfg: &ServerConfig,
    slot: &Slot,
) -> Result<usize, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    // Frames are read through a small buffer: the MTA's many small frames
    // (macros, one per header, end of headers) then cost one read between
    // them instead of three each (length, command, data). Body frames larger
    // than the buffer bypass it and are read straight into their own vector.
    let mut stream = tokio::io::BufReader::with_capacity(READ_BUFFER, stream);
    let mut negotiated = Negotiated::default();
    let mut macros = Macros::default();
    let mut messages = 0usize;
    let mut spare: Option<Vec<u8>> = None;
    let mut phase = Phase::Negotiating;
    let started = tokio::time::Instant::now();
    let mut idle_since = started;
    loop {
        if spare.is_none() {
            spare = handler.spare_buffer();
        }
        let (from, limit) = match phase {
            Phase::Negotiating => (started, cfg.negotiate_timeout),
            Phase::Idle => (idle_since, cfg.idle_timeout),
            Phase::Busy | Phase::Evicted => (tokio::time::Instant::now(), cfg.read_timeout),
        };
        // A limit too large to add ("never") waits a year instead of
        // overflowing.
        let deadline = from
            .checked_add(limit)
            .unwrap_or_else(|| from + Duration::from_secs(365 * 86_400));
        let read = read_frame_bounded(
            &mut stream,
            cfg.max_frame,
            |c| frame_limit(cfg, c),
            &mut spare,
        );
        let frame = match tokio::time::timeout_at(deadline, read).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(FrameError::TimedOut {
                    phase: phase.waiting_for(),
                    secs: limit.as_secs(),
                })
            }
        };
        let Some((cmd, data)) = frame else {
            return Ok(messages);
        };
        if cmd == b'B' {
            // A spare that did not fit a body chunk is let go, so that the
            // handler can offer one that does.
            spare = None;
        }
        let command = Command::parse_owned(cmd, data)?;
        let next = match &command {
            Command::OptNeg { .. } => Some(Phase::Idle),
            Command::Mail(_)
            | Command::Rcpt(_)
            | Command::Data
            | Command::Header { .. }
            | Command::EndOfHeaders
            | Command::Body(_)
            | Command::EndOfMessage(_) => Some(Phase::Busy),
            _ => None,
        };
        if let Some(next) = next {
            if next != phase {
                if !slot.enter(phase, next) {
                    // Closed at the connection limit (the accept loop has
                    // logged it): end without a word of our own.
                    return Ok(messages);
                }
                phase = next;
                if next == Phase::Idle {
                    idle_since = tokio::time::Instant::now();
                }
            }
        }
        if phase == Phase::Idle {
            // Idle means "nothing at all": any frame (macros for HELO or an
            // unknown command, connect) starts the idle time again.
            idle_since = tokio::time::Instant::now();
            slot.touch();
        }
        let p = negotiated.protocol;
        let reply_unless = |flag: u32| p & flag == 0;
        let reply: Option<Reply> = match command {
            Command::OptNeg {
                version,
                actions: offered_actions,
                protocol: offered_protocol,
            } => {
                if version < 2 {
                    return Err(FrameError::Malformed {
                        command: 'O',
                        reason: "milter protocol version below 2",
                    });
                }
                negotiated = Negotiated {
                    version: version.min(6),
                    actions: cfg.actions & offered_actions,
                    protocol: cfg.protocol & offered_protocol,
                };
                handler.negotiated(&negotiated);
                let macro_req = if negotiated.actions & actions::SETSYMLIST != 0 {
                    cfg.macros.clone()
                } else {
                    Vec::new()
                };
                Some(Reply::OptNeg {
                    version: negotiated.version,
                    actions: negotiated.actions,
                    protocol: negotiated.protocol,
                    macros: macro_req,
                })
            }
            Command::Macros { stage, pairs } => {
                macros.set(stage, pairs);
                if macros.byte_len() > cfg.max_macro_bytes {
                    return Err(FrameError::OverLimit {
                        what: "macro bytes held",
                        limit: cfg.max_macro_bytes,
                    });
                }
                if macros.len() > cfg.max_macros {
                    return Err(FrameError::OverLimit {
                        what: "macros held",
                        limit: cfg.max_macros,
                    });
                }
                None
            }
            Command::Connect {
                hostname, address, ..
            } => {
                let addr = address.parse::<IpAddr>().ok();
                let r = handler.connect(&hostname, addr, &macros);
                reply_unless(proto::NR_CONN).then(|| r.to_reply(false))
            }
            Command::Helo(_) => reply_unless(proto::NR_HELO).then_some(Reply::Continue),
            Command::Mail(args) => {
                let r = handler.mail(&args, &macros);
                reply_unless(proto::NR_MAIL).then(|| r.to_reply(false))
            }
            Command::Rcpt(args) => {
                let r = handler.rcpt(&args, &macros);
                reply_unless(proto::NR_RCPT).then(|| r.to_reply(false))
            }
            Command::Data => reply_unless(proto::NR_DATA).then_some(Reply::Continue),
            Command::Unknown(_) => reply_unless(proto::NR_UNKN).then_some(Reply::Continue),
            Command::Header { name, value } => {
                let r = handler.header(&name, &value);
                reply_unless(proto::NR_HDR).then(|| r.to_reply(false))
            }
            Command::EndOfHeaders => {
                let r = handler.eoh(&macros);
                reply_unless(proto::NR_EOH).then(|| r.to_reply(false))
            }
            Command::Body(chunk) => {
                let r = handler.body_owned(chunk).await;
                reply_unless(proto::NR_BODY).then(|| r.to_reply(p & proto::SKIP != 0))
            }
            Command::EndOfMessage(last) => {
                if !last.is_empty() {
                    handler.body_owned(last).await;
                }
                let result = handler.eom(&macros).await;
                // The modifications and the final answer go out in one
                // write: one system call and one wake-up of the MTA.
                let mut out = Vec::new();
                for m in result.modifications {
                    let (allowed, reply) = match m {
                        Modification::InsertHeader { index, name, value } => {
                            (actions::ADDHDRS, Reply::InsertHeader { index, name, value })
                        }
                        Modification::AddHeader { name, value } => {
                            (actions::ADDHDRS, Reply::AddHeader { name, value })
                        }
                        Modification::ChangeHeader { index, name, value } => {
                            (actions::CHGHDRS, Reply::ChangeHeader { index, name, value })
                        }
                    };
                    if negotiated.actions & allowed != 0 {
                        let (c, d) = reply.encode();
                        append_frame(&mut out, c, &d)?;
                    }
                }
                let (c, d) = result.response.to_reply(false).encode();
                append_frame(&mut out, c, &d)?;
                stream.write_all(&out).await?;
                macros.clear_message();
                messages += 1;
                let Some(idle) = slot.become_idle(phase) else {
                    return Ok(messages);
                };
                phase = idle;
                idle_since = tokio::time::Instant::now();
                None
            }
            Command::Abort => {
                handler.abort();
                macros.clear_message();
                if phase == Phase::Busy {
                    let Some(idle) = slot.become_idle(phase) else {
                        return Ok(messages);
                    };
                    phase = idle;
                    idle_since = tokio::time::Instant::now();
                }
                None
            }
            Command::Quit => return Ok(messages),
            Command::QuitNewConnection => {
                handler.abort();
                macros = Macros::default();
                if phase == Phase::Busy {
                    let Some(idle) = slot.become_idle(phase) else {
                        return Ok(messages);
                    };
                    phase = idle;
                    idle_since = tokio::time::Instant::now();
                }
                None
            }
        };
        if let Some(r) = reply {
            let (c, d) = r.encode();
            write_frame(&mut stream, c, &d).await?;
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A Unix socket at this path, with this mode.
    Unix(PathBuf, u32),
    /// TCP.
    Tcp(SocketAddr),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    /// `unix:/path` or `inet:IP:PORT` (Postfix's notation; `local:` works too).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            if p.is_empty() {
                return Err("unix: needs a path".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(p), 0o660));
        }
        if let Some(a) = s.strip_prefix("inet:") {
            return a
                .parse::<SocketAddr>()
                .map(ListenAddr::Tcp)
                .map_err(|e| format!("inet:{a}: {e}"));
        }
        Err(format!("{s:?}: expected unix:/path or inet:IP:PORT"))
    }
}

/// A bound listener.
pub enum Listener {
    /// Unix socket.
    Unix(tokio::net::UnixListener, PathBuf),
    /// TCP.
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Binds: a stale Unix socket file is removed first (a live one, that
    /// answers, is an error), and the socket gets its mode.
    pub async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(tokio::net::TcpListener::bind(a).await?)),
            ListenAddr::Unix(path, mode) => {
                if path.exists() {
                    if tokio::net::UnixStream::connect(path).await.is_ok() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AddrInUse,
                            format!("{} is in use by another process", path.display()),
                        ));
                    }
                    std::fs::remove_file(path)?;
                }
                let l = tokio::net::UnixListener::bind(path)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The address clients use, in Postfix's notation.
    pub fn postfix_addr(&self) -> String {
        match self {
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("inet:{a}"))
                .unwrap_or_else(|_| "inet:?".into()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bytes read ahead per connection (see [`session`]).
const READ_BUFFER: usize = 16 * 1024;

/// The largest frame of a command other than a header, a body chunk or
/// macros: options, connect, HELO, MAIL and RCPT with their arguments.
pub const SMALL_FRAME: usize = 64 * 1024;

/// Default seconds from connecting to option negotiation.
pub const DEFAULT_NEGOTIATE_TIMEOUT: u64 = 10;

/// Default seconds a connection may stay idle between messages, with no
/// frame at all: 10 hours. An SMTP client can keep a Postfix session open
/// without the milter seeing anything (NOOP) for up to
/// `smtpd_junk_command_limit` × `smtpd_timeout` (100 × 300 s by default);
/// a shorter limit would let it outlast the milter connection, and Postfix
/// then applies `milter_default_action` to that session's next message.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 36_000;

/// Default macro bytes held per connection (Postfix sends a few hundred).
pub const DEFAULT_MAX_MACRO_BYTES: usize = 32 * 1024;

/// Default macro pairs held per connection.
pub const DEFAULT_MAX_MACROS: usize = 256;

/// A connection younger than this that has not negotiated yet is closed at
/// the limit only when no idle one can be.
const FRESH_MS: u64 = 1000;

/// Where a connection is, as the connection limit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected; option negotiation not done yet.
    Negotiating,
    /// Negotiated; no message in progress.
    Idle,
    /// Inside a message.
    Busy,
    /// Closed by the server to make room.
    Evicted,
}

impl Phase {
    fn code(self) -> u8 {
        match self {
            Phase::Negotiating => 0,
            Phase::Idle => 1,
            Phase::Busy => 2,
            Phase::Evicted => 3,
        }
    }

    fn from_code(c: u8) -> Phase {
        match c {
            0 => Phase::Negotiating,
            1 => Phase::Idle,
            2 => Phase::Busy,
            _ => Phase::Evicted,
        }
    }

    fn waiting_for(self) -> &'static str {
        match self {
            Phase::Negotiating => "option negotiation",
            Phase::Idle => "between messages",
            Phase::Busy | Phase::Evicted => "inside a message",
        }
    }
}

/// One connection's phase and since when, shared between its session and
/// the accept loop, which may take the slot from a connection that waits
/// for negotiation or sits between messages.
#[derive(Debug)]
pub struct Slot {
    phase: std::sync::atomic::AtomicU8,
    /// Milliseconds after `epoch` when the phase began.
    since_ms: AtomicU64,
    epoch: Instant,
}

impl Slot {
    /// A slot for a connection that has just connected.
    pub fn new(epoch: Instant) -> Slot {
        Slot {
            phase: std::sync::atomic::AtomicU8::new(Phase::Negotiating.code()),
            since_ms: AtomicU64::new(Self::ms(epoch)),
            epoch,
        }
    }

    fn ms(epoch: Instant) -> u64 {
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Moves from `from` to `to`; false when the slot was taken meanwhile.
    fn enter(&self, from: Phase, to: Phase) -> bool {
        let ok = self
            .phase
            .compare_exchange(from.code(), to.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok {
            self.since_ms.store(Self::ms(self.epoch), Ordering::Release);
        }
        ok
    }

    /// Moves to Idle; `None` when the slot was taken meanwhile.
    fn become_idle(&self, from: Phase) -> Option<Phase> {
        self.enter(from, Phase::Idle).then_some(Phase::Idle)
    }

    /// Starts the current phase's time again (a frame while idle).
    fn touch(&self) {
        self.since_ms.store(Self::ms(self.epoch), Ordering::Release);
    }

    /// Phase and milliseconds in it, for choosing a connection to close.
    fn state(&self) -> (Phase, u64) {
        let phase = Phase::from_code(self.phase.load(Ordering::Acquire));
        let since = self.since_ms.load(Ordering::Acquire);
        (phase, Self::ms(self.epoch).saturating_sub(since))
    }

    /// Takes the slot when it is still in `phase`, which must be
    /// Negotiating or Idle (a connection inside a message is never taken).
    fn take(&self, phase: Phase) -> bool {
        if !matches!(phase, Phase::Negotiating | Phase::Idle) {
            return false;
        }
        self.phase
            .compare_exchange(
                phase.code(),
                Phase::Evicted.code(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// The default connection limit (Postfix's default process limit is 100,
/// and each smtpd process holds at most one milter connection).
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;

/// Counts live connections.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections being served now.
    pub active: Arc<AtomicUsize>,
    /// Times the server reached `max_connections` with every connection
    /// inside a message, and stopped accepting until one ended.
    pub limit_reached: Arc<AtomicUsize>,
    /// Connections closed at the limit to serve a new one.
    pub evicted: Arc<AtomicUsize>,
}

/// The connection to close at the limit: the one that has waited longest
/// for option negotiation, or else the one idle longest between messages.
fn victim(
    slots: &HashMap<tokio::task::Id, (Arc<Slot>, tokio::task::AbortHandle)>,
) -> Option<tokio::task::Id> {
    let mut best: Option<(u8, u64, tokio::task::Id)> = None;
    for (id, (slot, _)) in slots {
        let (phase, ms) = slot.state();
        // A connection that has not negotiated after a second is the first
        // choice; then the one idle longest; a connection that has only
        // just connected (its options may be on the way) comes last.
        let class = match phase {
            Phase::Negotiating if ms >= FRESH_MS => 2,
            Phase::Idle => 1,
            Phase::Negotiating => 0,
            Phase::Busy | Phase::Evicted => continue,
        };
        if best.is_none_or(|(c, m, _)| (class, ms) > (c, m)) {
            best = Some((class, ms, *id));
        }
    }
    best.map(|(_, _, id)| id)
}

/// Accepts connections until `shutdown` completes, serving each with a
/// handler from `factory`; then waits up to `grace` for the connections in
/// flight. `on_error` is told about each connection that ended with an error
/// (malformed frames, I/O, time limits) or was closed at the connection
/// limit; other connections are not affected.
pub async fn serve<H, F, E>(
    listener: Listener,
    cfg: ServerConfig,
    factory: F,
    on_error: E,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    stats: Stats,
) -> std::io::Result<()>
where
    H: Handler,
    F: Fn() -> H,
    E: Fn(FrameError) + Clone + Send + 'static,
{
    let cfg = Arc::new(cfg);
    let limit = cfg.max_connections.max(1);
    let epoch = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut slots: HashMap<tokio::task::Id, (Arc<Slot>, tokio::task::AbortHandle)> = HashMap::new();
    let mut waiting = false;
    // A connection accepted when there seemed to be room, that turned out
    // to have none (every connection went inside a message meanwhile): it
    // is served as soon as there is, and nothing more is accepted until.
    let mut held: Option<Box<dyn Stream>> = None;
    let live = |slots: &Slots| {
        slots
            .values()
            .filter(|(s, _)| s.state().0 != Phase::Evicted)
            .count()
    };
    tokio::pin!(shutdown);
    loop {
        if let Some(stream) = held.take() {
            if live(&slots) < limit || evict_one(&slots, &stats, &on_error) {
                let (id, entry) =
                    spawn_session(&mut tasks, stream, &factory, &cfg, &on_error, &stats, epoch);
                slots.insert(id, entry);
            } else {
                held = Some(stream);
            }
        }
        // Evicted connections still being torn down do not count.
        let full = live(&slots) >= limit;
        let can_accept = held.is_none() && (!full || victim(&slots).is_some());
        if !can_accept {
            if !waiting {
                stats.limit_reached.fetch_add(1, Ordering::SeqCst);
            }
            waiting = true;
        } else {
            waiting = false;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                slots.remove(&id);
            }
            // Every connection is inside a message: look again shortly, as
            // one may have finished it and become idle.
            _ = tokio::time::sleep(Duration::from_millis(50)), if !can_accept => {}
            accepted = accept(&listener), if can_accept => {
                match accepted {
                    Ok(stream) => held = Some(stream),
                    Err(e) => {
                        // Out of file descriptors and the like: pause, go on.
                        on_error(FrameError::Io(e));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    drop(listener);
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                tasks.abort_all();
                break;
            }
            next = tasks.join_next() => {
                if next.is_none() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The connections being served, by task.
type Slots = HashMap<tokio::task::Id, (Arc<Slot>, tokio::task::AbortHandle)>;

/// Closes the connection [`victim`] names; false when there is none.
fn evict_one<E: Fn(FrameError)>(slots: &Slots, stats: &Stats, on_error: &E) -> bool {
    while let Some(id) = victim(slots) {
        let Some((slot, handle)) = slots.get(&id) else {
            return false;
        };
        let (phase, ms) = slot.state();
        // The connection may have moved on since it was chosen: one inside
        // a message is never taken (victim() then passes over it).
        if !matches!(phase, Phase::Negotiating | Phase::Idle) {
            continue;
        }
        if slot.take(phase) {
            handle.abort();
            stats.evicted.fetch_add(1, Ordering::SeqCst);
            on_error(FrameError::Evicted {
                phase: if phase == Phase::Negotiating {
                    "waiting for option negotiation"
                } else {
                    "idle between messages"
                },
                secs: ms as f64 / 1000.0,
            });
            return true;
        }
    }
    false
}

/// Starts serving one connection.
fn spawn_session<H, F, E>(
    tasks: &mut tokio::task::JoinSet<()>,
    stream: Box<dyn Stream>,
    factory: &F,
    cfg: &Arc<ServerConfig>,
    on_error: &E,
    stats: &Stats,
    epoch: Instant,
) -> (tokio::task::Id, (Arc<Slot>, tokio::task::AbortHandle))
where
    H: Handler,
    F: Fn() -> H,
    E: Fn(FrameError) + Clone + Send + 'static,
{
    let slot = Arc::new(Slot::new(epoch));
    let handler = factory();
    let cfg = cfg.clone();
    let on_error = on_error.clone();
    stats.active.fetch_add(1, Ordering::SeqCst);
    // The count goes down however the task ends, aborted included.
    let guard = ActiveGuard(stats.active.clone());
    let task_slot = slot.clone();
    let handle = tasks.spawn(async move {
        let _guard = guard;
        if let Err(e) = session_in(stream, handler, &cfg, &task_slot).await {
            on_error(e);
        }
    });
    (handle.id(), (slot, handle))
}

/// Counts a connection down when its task ends or is aborted.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connected stream of either kind.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(l: &Listener) -> std::io::Result<Box<dyn Stream>> {
    match l {
        Listener::Unix(u, _) => Ok(Box::new(u.accept().await?.0)),
        Listener::Tcp(t) => {
            let (s, _) = t.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into(), 0o660)
        );
        assert_eq!(
            "inet:127.0.0.1:8891".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:8891".parse().unwrap())
        );
        assert!("tcp:1".parse::<ListenAddr>().is_err());
        assert!("unix:".parse::<ListenAddr>().is_err());
    }

    struct Quiet;
    impl Handler for Quiet {
        async fn eom(&mut self, _m: &Macros) -> EomResult {
            EomResult {
                modifications: vec![],
                response: Response::Continue,
            }
        }
    }

    /// Feeds `frames` to a session and returns how it ended.
    async fn run(cfg: &ServerConfig, frames: &[Command]) -> Result<usize, FrameError> {
        let (mta, milter_side) = tokio::io::duplex(1 << 20);
        let (mut r, mut w) = tokio::io::split(mta);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut sink).await;
        });
        let mut bytes = Vec::new();
        for f in frames {
            let (c, d) = f.encode();
            append_frame(&mut bytes, c, &d).unwrap();
        }
        let cfg2 = cfg.clone();
        let server = tokio::spawn(async move { session(milter_side, Quiet, &cfg2).await });
        w.write_all(&bytes).await.unwrap();
        let result = server.await.unwrap();
        drop(w);
        let _ = drain.await;
        result
    }

    fn optneg() -> Command {
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        }
    }

    #[tokio::test]
    async fn macro_bounds_per_connection() {
        let cfg = ServerConfig::default();
        let pairs = |n: usize| MacroList::from_pairs(std::iter::repeat_n(("a", "b"), n));
        // Within the bounds, and the same stage again replaces (no growth).
        let mut ok = vec![optneg()];
        for _ in 0..50 {
            ok.push(Command::Macros {
                stage: Stage::Mail,
                pairs: pairs(200),
            });
        }
        ok.push(Command::Quit);
        assert_eq!(run(&cfg, &ok).await.unwrap(), 0);
        // Pairs over max_macros across stages.
        let over = [
            optneg(),
            Command::Macros {
                stage: Stage::Mail,
                pairs: pairs(200),
            },
            Command::Macros {
                stage: Stage::Rcpt,
                pairs: pairs(100),
            },
        ];
        assert!(matches!(
            run(&cfg, &over).await,
            Err(FrameError::OverLimit {
                what: "macros held",
                limit: 256
            })
        ));
        // A frame over max_macro_bytes is refused by its size.
        let big = [
            optneg(),
            Command::Macros {
                stage: Stage::Connect,
                pairs: MacroList::from_pairs([("x", "v".repeat(40_000))]),
            },
        ];
        assert!(matches!(
            run(&cfg, &big).await,
            Err(FrameError::CommandTooLarge { command: 'D', .. })
        ));
    }

    #[test]
    fn macro_stage_must_be_a_stage_letter() {
        assert!(matches!(
            Command::parse(b'D', b"Za\0b\0"),
            Err(FrameError::Malformed { command: 'D', .. })
        ));
        assert!(matches!(
            Command::parse(b'D', b"Ca\0b"),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            Command::parse(b'D', b"Ca\0"),
            Err(FrameError::Malformed { .. })
        ));
        for st in Stage::NEWEST_FIRST {
            assert_eq!(Stage::from_letter(st.letter()), Some(st));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn any_frame_while_idle_starts_the_idle_time_again() {
        let cfg = ServerConfig {
            idle_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let (mta, milter_side) = tokio::io::duplex(1 << 16);
        let (mut r, mut w) = tokio::io::split(mta);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut sink).await;
        });
        let cfg2 = cfg.clone();
        let server = tokio::spawn(async move { session(milter_side, Quiet, &cfg2).await });
        let (c, d) = optneg().encode();
        write_frame(&mut w, c, &d).await.unwrap();
        // Macros for unknown commands (stage U), as Postfix sends them,
        // every 3 s for 12 s: the connection stays.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (c, d) = Command::Macros {
                stage: Stage::Unknown,
                pairs: MacroList::from_pairs([("j", "mx")]),
            }
            .encode();
            write_frame(&mut w, c, &d).await.unwrap();
        }
        assert!(!server.is_finished());
        // Then nothing: closed after idle_timeout.
        let quiet = tokio::time::Instant::now();
        assert!(matches!(
            server.await.unwrap(),
            Err(FrameError::TimedOut {
                phase: "between messages",
                secs: 5
            })
        ));
        assert!(quiet.elapsed() <= Duration::from_secs(6));
        drop(w);
        let _ = drain.await;
    }

    #[tokio::test(start_paused = true)]
    async fn negotiation_and_idle_time_limits() {
        let cfg = ServerConfig {
            negotiate_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            ..ServerConfig::default()
        };
        // Macro frames do not extend the time to negotiate.
        let (mta, milter_side) = tokio::io::duplex(1 << 16);
        let (_r, mut w) = tokio::io::split(mta);
        let cfg2 = cfg.clone();
        let server = tokio::spawn(async move { session(milter_side, Quiet, &cfg2).await });
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            let (c, d) = Command::Macros {
                stage: Stage::Connect,
                pairs: MacroList::from_pairs([("j", "mx")]),
            }
            .encode();
            if write_frame(&mut w, c, &d).await.is_err() {
                break; // closed by the server
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        assert!(matches!(
            server.await.unwrap(),
            Err(FrameError::TimedOut {
                phase: "option negotiation",
                secs: 10
            })
        ));
        assert!(started.elapsed() < Duration::from_secs(16));
    }

    #[test]
    fn victims_unnegotiated_first_then_longest_idle() {
        let epoch = Instant::now() - Duration::from_secs(100);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            let mut slots: Slots = HashMap::new();
            let mut add = |slots: &mut Slots, phase: Phase, age_ms: u64| {
                let slot = Arc::new(Slot::new(epoch));
                slot.phase.store(phase.code(), Ordering::SeqCst);
                slot.since_ms
                    .store(Slot::ms(epoch) - age_ms, Ordering::SeqCst);
                let h = tasks.spawn(std::future::pending::<()>());
                let id = h.id();
                slots.insert(id, (slot, h));
                id
            };
            let _busy = add(&mut slots, Phase::Busy, 90_000);
            let idle_old = add(&mut slots, Phase::Idle, 50_000);
            let _idle_new = add(&mut slots, Phase::Idle, 1_000);
            assert_eq!(victim(&slots), Some(idle_old));
            // Just connected (its options may be on the way): idle first.
            let fresh = add(&mut slots, Phase::Negotiating, 500);
            assert_eq!(victim(&slots), Some(idle_old), "a fresh connection waits");
            let neg = add(&mut slots, Phase::Negotiating, 1500);
            assert_eq!(
                victim(&slots),
                Some(neg),
                "unnegotiated after 1 s before idle"
            );
            let stats = Stats::default();
            assert!(evict_one(&slots, &stats, &|_| {}));
            assert_eq!(slots[&neg].0.state().0, Phase::Evicted);
            assert!(evict_one(&slots, &stats, &|_| {}));
            assert_eq!(slots[&idle_old].0.state().0, Phase::Evicted);
            assert!(evict_one(&slots, &stats, &|_| {}));
            assert!(evict_one(&slots, &stats, &|_| {}));
            assert_eq!(slots[&fresh].0.state().0, Phase::Evicted, "last of all");
            assert_eq!(stats.evicted.load(Ordering::SeqCst), 4);
            // A busy slot is never taken, whatever phase it is asked for.
            assert!(!evict_one(&slots, &stats, &|_| {}));
            assert!(!slots[&_busy].0.take(Phase::Idle));
            assert!(!slots[&_busy].0.take(Phase::Busy));
            assert_eq!(slots[&_busy].0.state().0, Phase::Busy);
            tasks.abort_all();
        });
    }

    #[test]
    fn macros_newest_stage_wins_and_message_stages_clear() {
        let mut m = Macros::default();
        m.set(
            Stage::Connect,
            MacroList::from_pairs([("j", "mx"), ("{daemon_name}", "smtpd")]),
        );
        m.set(
            Stage::Mail,
            MacroList::from_pairs([("{auth_authen}", "joe"), ("i", "Q1")]),
        );
        m.set(Stage::EndOfMessage, MacroList::from_pairs([("i", "Q2")]));
        assert_eq!(m.get("auth_authen"), Some("joe"));
        assert_eq!(m.get("{daemon_name}"), Some("smtpd"));
        assert_eq!(m.get("daemon_name"), Some("smtpd"));
        assert_eq!(m.get("i"), Some("Q2"));
        assert_eq!(m.len(), 5);
        // A stage sent again replaces its pairs; the totals follow.
        m.set(Stage::Mail, MacroList::from_pairs([("i", "Q3")]));
        assert_eq!((m.len(), m.get("auth_authen")), (4, None));
        m.clear_message();
        assert_eq!(m.get("i"), None);
        assert_eq!(m.get("j"), Some("mx"));
        assert_eq!(
            (m.len(), m.byte_len()),
            (2, "j\0mx\0{daemon_name}\0smtpd\0".len())
        );
    }
}
