//! The milter side: option negotiation and a per-connection [`Handler`].

use crate::codec::{
    append_frame, read_frame_into, write_frame, Command, FrameError, Reply, DEFAULT_MAX_FRAME,
};
use crate::{actions, proto};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
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
/// without braces: `auth_authen` finds `{auth_authen}`.
#[derive(Debug, Default, Clone)]
pub struct Macros {
    stages: HashMap<u8, Vec<(String, String)>>,
}

/// Stage letters from the newest to the oldest.
const STAGE_ORDER: [u8; 9] = [b'E', b'B', b'N', b'L', b'T', b'R', b'M', b'H', b'C'];
/// Stages that belong to one message.
const MESSAGE_STAGES: [u8; 7] = [b'M', b'R', b'T', b'L', b'N', b'B', b'E'];

impl Macros {
    /// The value of a macro, if the MTA sent it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let bare = name.trim_start_matches('{').trim_end_matches('}');
        let braced = format!("{{{bare}}}");
        STAGE_ORDER.iter().find_map(|st| {
            self.stages.get(st).and_then(|pairs| {
                pairs
                    .iter()
                    .find(|(k, _)| k == bare || *k == braced)
                    .map(|(_, v)| v.as_str())
            })
        })
    }

    fn set(&mut self, stage: u8, pairs: Vec<(String, String)>) {
        self.stages.insert(stage, pairs);
    }

    fn clear_message(&mut self) {
        for s in MESSAGE_STAGES {
            self.stages.remove(&s);
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
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Longest wait for the MTA's next frame.
    pub read_timeout: Duration,
    /// Actions wanted (intersected with what the MTA offers).
    pub actions: u32,
    /// Protocol flags wanted (intersected with what the MTA offers).
    pub protocol: u32,
    /// Macros requested per stage (SMFIM_* number, space-separated names).
    pub macros: Vec<(u32, String)>,
    /// Connections served at once. At the limit no more are accepted: new
    /// ones wait in the listen queue until one ends (Postfix gives up after
    /// its milter_connect_timeout and applies milter_default_action).
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
pub async fn session<S, H>(
    stream: S,
    mut handler: H,
    cfg: &ServerConfig,
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
    loop {
        if spare.is_none() {
            spare = handler.spare_buffer();
        }
        let frame = match tokio::time::timeout(
            cfg.read_timeout,
            read_frame_into(&mut stream, cfg.max_frame, &mut spare),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the MTA sent nothing in time",
                )))
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
                None
            }
            Command::Abort => {
                handler.abort();
                macros.clear_message();
                None
            }
            Command::Quit => return Ok(messages),
            Command::QuitNewConnection => {
                handler.abort();
                macros = Macros::default();
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

/// The default connection limit (Postfix's default process limit is 100,
/// and each smtpd process holds at most one milter connection).
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;

/// Counts live connections.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections being served now.
    pub active: Arc<AtomicUsize>,
    /// Times the server reached `max_connections` and stopped accepting.
    pub limit_reached: Arc<AtomicUsize>,
}

/// Accepts connections until `shutdown` completes, serving each with a
/// handler from `factory`; then waits up to `grace` for the connections in
/// flight. `on_error` is told about each connection that ended with an error
/// (malformed frames, I/O); other connections are not affected.
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
    let mut tasks = tokio::task::JoinSet::new();
    let mut at_limit = false;
    tokio::pin!(shutdown);
    loop {
        if tasks.len() >= limit {
            if !at_limit {
                stats.limit_reached.fetch_add(1, Ordering::SeqCst);
            }
            at_limit = true;
        } else {
            at_limit = false;
        }
        let spawn_one =
            |tasks: &mut tokio::task::JoinSet<()>, handler: H, stream: Box<dyn Stream>| {
                let cfg = cfg.clone();
                let on_error = on_error.clone();
                let active = stats.active.clone();
                active.fetch_add(1, Ordering::SeqCst);
                tasks.spawn(async move {
                    if let Err(e) = session(stream, handler, &cfg).await {
                        on_error(e);
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            };
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = accept(&listener), if tasks.len() < limit => {
                match accepted {
                    Ok(stream) => spawn_one(&mut tasks, factory(), stream),
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

    #[test]
    fn macros_newest_stage_wins_and_message_stages_clear() {
        let mut m = Macros::default();
        m.set(
            b'C',
            vec![
                ("j".into(), "mx".into()),
                ("{daemon_name}".into(), "smtpd".into()),
            ],
        );
        m.set(
            b'M',
            vec![
                ("{auth_authen}".into(), "joe".into()),
                ("i".into(), "Q1".into()),
            ],
        );
        m.set(b'E', vec![("i".into(), "Q2".into())]);
        assert_eq!(m.get("auth_authen"), Some("joe"));
        assert_eq!(m.get("{daemon_name}"), Some("smtpd"));
        assert_eq!(m.get("i"), Some("Q2"));
        m.clear_message();
        assert_eq!(m.get("auth_authen"), None);
        assert_eq!(m.get("j"), Some("mx"));
    }
}
