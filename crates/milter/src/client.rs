//! The MTA side of the protocol, for tests and the load tool.

use crate::codec::{
    read_frame, write_frame, Command, FrameError, MacroList, Reply, Stage, DEFAULT_MAX_FRAME,
};
use crate::proto;
use crate::server::{ListenAddr, Negotiated, Stream};

/// A connection to a milter.
pub struct Client {
    stream: Box<dyn Stream>,
    /// What option negotiation agreed on.
    pub negotiated: Negotiated,
    /// Macros the milter asked for (stage, names).
    pub requested_macros: Vec<(u32, String)>,
}

/// One message as an MTA hands it over.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Macros per stage letter (`C`, `M`, `N`, `E`, …), sent before that stage.
    pub macros: Vec<(u8, Vec<(String, String)>)>,
    /// MAIL FROM arguments.
    pub mail_from: Vec<String>,
    /// RCPT TO, one entry per recipient.
    pub rcpt_to: Vec<String>,
    /// Header fields: name, value (value as Postfix sends it).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body chunks.
    pub body: Vec<Vec<u8>>,
}

/// What the milter did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Modifications at end of message, in order.
    pub modifications: Vec<Reply>,
    /// The final reply (at end of message or earlier).
    pub reply: Reply,
    /// The milter answered SKIP to a body chunk.
    pub skipped: bool,
}

impl Client {
    /// Connects.
    pub async fn connect(addr: &ListenAddr) -> std::io::Result<Client> {
        let stream: Box<dyn Stream> = match addr {
            ListenAddr::Unix(p, _) => Box::new(tokio::net::UnixStream::connect(p).await?),
            ListenAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                // Frames are small and come in bursts: without this, Nagle's
                // algorithm and delayed ACKs add ~40 ms to a message.
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        Ok(Client {
            stream,
            negotiated: Negotiated::default(),
            requested_macros: Vec::new(),
        })
    }

    /// Sends raw bytes (for tests of malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    /// Reads one reply.
    pub async fn read_reply(&mut self) -> Result<Reply, FrameError> {
        let (c, d) = read_frame(&mut self.stream, DEFAULT_MAX_FRAME)
            .await?
            .ok_or_else(|| {
                FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "milter closed",
                ))
            })?;
        Reply::parse(c, &d)
    }

    /// Option negotiation, offering what Postfix 3.7 offers by default.
    pub async fn negotiate(&mut self) -> Result<Negotiated, FrameError> {
        self.negotiate_with(6, 0x1ff, 0x1f_ffff).await
    }

    /// Option negotiation with the given offer.
    pub async fn negotiate_with(
        &mut self,
        version: u32,
        actions: u32,
        protocol: u32,
    ) -> Result<Negotiated, FrameError> {
        self.send(&Command::OptNeg {
            version,
            actions,
            protocol,
        })
        .await?;
        match self.read_reply().await? {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                macros,
            } => {
                self.negotiated = Negotiated {
                    version,
                    actions,
                    protocol,
                };
                self.requested_macros = macros;
                Ok(self.negotiated)
            }
            other => Err(FrameError::Malformed {
                command: 'O',
                reason: if matches!(other, Reply::Continue) {
                    "continue instead of options"
                } else {
                    "unexpected reply"
                },
            }),
        }
    }

    /// Sends one command without reading anything.
    pub async fn send(&mut self, cmd: &Command) -> Result<(), FrameError> {
        let (c, d) = cmd.encode();
        write_frame(&mut self.stream, c, &d).await?;
        Ok(())
    }

    fn skipped_stage(&self, cmd: &Command) -> bool {
        let p = self.negotiated.protocol;
        let flag = match cmd {
            Command::Connect { .. } => proto::NOCONNECT,
            Command::Helo(_) => proto::NOHELO,
            Command::Mail(_) => proto::NOMAIL,
            Command::Rcpt(_) => proto::NORCPT,
            Command::Data => proto::NODATA,
            Command::Header { .. } => proto::NOHDRS,
            Command::EndOfHeaders => proto::NOEOH,
            Command::Body(_) => proto::NOBODY,
            Command::Unknown(_) => proto::NOUNKNOWN,
            _ => 0,
        };
        p & flag != 0
    }

    fn expects_reply(&self, cmd: &Command) -> bool {
        let p = self.negotiated.protocol;
        let flag = match cmd {
            Command::Connect { .. } => proto::NR_CONN,
            Command::Helo(_) => proto::NR_HELO,
            Command::Mail(_) => proto::NR_MAIL,
            Command::Rcpt(_) => proto::NR_RCPT,
            Command::Data => proto::NR_DATA,
            Command::Header { .. } => proto::NR_HDR,
            Command::EndOfHeaders => proto::NR_EOH,
            Command::Body(_) => proto::NR_BODY,
            Command::Unknown(_) => proto::NR_UNKN,
            _ => return false,
        };
        p & flag == 0
    }

    /// Sends a stage's command (unless negotiated away) and reads its reply
    /// when one is due.
    pub async fn stage(&mut self, cmd: &Command) -> Result<Option<Reply>, FrameError> {
        if self.skipped_stage(cmd) {
            return Ok(None);
        }
        self.send(cmd).await?;
        if self.expects_reply(cmd) {
            Ok(Some(self.read_reply().await?))
        } else {
            Ok(None)
        }
    }

    /// Sends one body chunk (unless negotiated away) straight from the
    /// caller's buffer, and reads its reply when one is due.
    pub async fn body_stage(&mut self, chunk: &[u8]) -> Result<Option<Reply>, FrameError> {
        let p = self.negotiated.protocol;
        if p & proto::NOBODY != 0 {
            return Ok(None);
        }
        write_frame(&mut self.stream, b'B', chunk).await?;
        if p & proto::NR_BODY == 0 {
            Ok(Some(self.read_reply().await?))
        } else {
            Ok(None)
        }
    }

    async fn macros(&mut self, msg: &Message, stage: u8) -> Result<(), FrameError> {
        for (s, pairs) in &msg.macros {
            if *s == stage {
                let stage = Stage::from_letter(stage).ok_or(FrameError::Malformed {
                    command: 'D',
                    reason: "macros for a stage that is not a protocol stage letter",
                })?;
                self.send(&Command::Macros {
                    stage,
                    pairs: MacroList::from_pairs(pairs.iter().map(|(k, v)| (k, v))),
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Sends the connect stage with its macros.
    pub async fn connect_stage(
        &mut self,
        msg: &Message,
        hostname: &str,
        addr: &str,
    ) -> Result<Option<Reply>, FrameError> {
        self.macros(msg, b'C').await?;
        let family = if addr.contains(':') { b'6' } else { b'4' };
        self.stage(&Command::Connect {
            hostname: hostname.into(),
            family,
            port: 25,
            address: addr.into(),
        })
        .await
    }

    /// Sends one message (after the connect stage) and returns what the
    /// milter did.
    pub async fn message(&mut self, msg: &Message) -> Result<Outcome, FrameError> {
        let done = |r: Option<Reply>| match r {
            Some(Reply::Continue) | None => None,
            Some(other) => Some(other),
        };
        self.macros(msg, b'M').await?;
        if let Some(r) = done(self.stage(&Command::Mail(msg.mail_from.clone())).await?) {
            return Ok(Outcome {
                modifications: vec![],
                reply: r,
                skipped: false,
            });
        }
        for rcpt in &msg.rcpt_to {
            self.macros(msg, b'R').await?;
            if let Some(r) = done(self.stage(&Command::Rcpt(vec![rcpt.clone()])).await?) {
                return Ok(Outcome {
                    modifications: vec![],
                    reply: r,
                    skipped: false,
                });
            }
        }
        self.macros(msg, b'T').await?;
        self.stage(&Command::Data).await?;
        for (name, value) in &msg.headers {
            self.macros(msg, b'L').await?;
            if let Some(r) = done(
                self.stage(&Command::Header {
                    name: name.clone(),
                    value: value.clone(),
                })
                .await?,
            ) {
                return Ok(Outcome {
                    modifications: vec![],
                    reply: r,
                    skipped: false,
                });
            }
        }
        self.macros(msg, b'N').await?;
        if let Some(r) = done(self.stage(&Command::EndOfHeaders).await?) {
            return Ok(Outcome {
                modifications: vec![],
                reply: r,
                skipped: false,
            });
        }
        let mut skipped = false;
        for chunk in &msg.body {
            self.macros(msg, b'B').await?;
            match self.body_stage(chunk).await? {
                Some(Reply::Skip) => {
                    skipped = true;
                    break;
                }
                Some(Reply::Continue) | None => {}
                Some(other) => {
                    return Ok(Outcome {
                        modifications: vec![],
                        reply: other,
                        skipped,
                    })
                }
            }
        }
        self.macros(msg, b'E').await?;
        self.send(&Command::EndOfMessage(Vec::new())).await?;
        let mut modifications = Vec::new();
        loop {
            let r = self.read_reply().await?;
            match r {
                Reply::InsertHeader { .. }
                | Reply::AddHeader { .. }
                | Reply::ChangeHeader { .. } => modifications.push(r),
                Reply::Progress => {}
                other => {
                    return Ok(Outcome {
                        modifications,
                        reply: other,
                        skipped,
                    })
                }
            }
        }
    }

    /// Aborts the current message.
    pub async fn abort(&mut self) -> Result<(), FrameError> {
        self.send(&Command::Abort).await
    }

    /// Ends the connection.
    pub async fn quit(mut self) -> Result<(), FrameError> {
        self.send(&Command::Quit).await
    }
}
