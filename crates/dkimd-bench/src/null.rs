//! The null milter: it negotiates what dkimd negotiates (no replies before
//! end of message, the body streamed) and answers every message at once
//! with a fixed header, doing no DKIM work. Driven by the load tool like
//! any other milter, it measures the floor: what the tool and the milter
//! protocol cost by themselves.

use milter::server::{serve, ListenAddr, Listener, ServerConfig, Stats};
use milter::{EomResult, Handler, Macros, Modification, Negotiated, Response};
use std::net::IpAddr;
use std::time::Duration;

/// The header a signing run gets: a DKIM-Signature whose `a=` the load tool
/// reads, with nothing behind it.
const SIGNATURE: &[u8] = b"v=1; a=null; d=null.invalid; s=null; bh=; b=";
/// The header a verifying run gets.
const RESULTS: &[u8] = b"null.invalid; dkim=pass (null milter: nothing checked)";

/// One connection of the null milter.
#[derive(Default)]
struct Null {
    /// The connection is from a trusted client (`{daemon_name}=ORIGINATING`).
    trusted: bool,
    /// This message is to be signed (trusted, or an authenticated sender).
    sign: bool,
    /// Header values keep their leading space.
    leading_space: bool,
}

impl Null {
    fn value(&self, v: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(v.len() + 1);
        if self.leading_space {
            out.push(b' ');
        }
        out.extend_from_slice(v);
        out
    }
}

impl Handler for Null {
    fn negotiated(&mut self, n: &Negotiated) {
        self.leading_space = n.leading_space();
    }

    fn connect(&mut self, _hostname: &str, _addr: Option<IpAddr>, macros: &Macros) -> Response {
        self.trusted = macros.get("daemon_name") == Some("ORIGINATING");
        Response::Continue
    }

    fn mail(&mut self, _args: &[String], macros: &Macros) -> Response {
        self.sign = self.trusted || macros.get("auth_authen").is_some_and(|a| !a.is_empty());
        Response::Continue
    }

    fn eom(&mut self, _macros: &Macros) -> impl std::future::Future<Output = EomResult> + Send {
        let (name, value) = if self.sign {
            ("DKIM-Signature", SIGNATURE)
        } else {
            ("Authentication-Results", RESULTS)
        };
        std::future::ready(EomResult {
            modifications: vec![Modification::InsertHeader {
                index: 0,
                name: name.into(),
                value: self.value(value),
            }],
            response: Response::Continue,
        })
    }
}

/// Serves the null milter at `addr` until the process is stopped, on the
/// runtime the caller made (the same multi-threaded runtime as dkimd's).
pub async fn serve_null(addr: &ListenAddr) -> std::io::Result<()> {
    let listener = Listener::bind(addr).await?;
    serve(
        listener,
        ServerConfig::default(),
        Null::default,
        |_| {},
        std::future::pending::<()>(),
        Duration::from_secs(1),
        Stats::default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_the_kind_of_client() {
        let mut n = Null {
            trusted: true,
            ..Null::default()
        };
        n.mail(&[], &Macros::default());
        assert!(n.sign);
        n.trusted = false;
        n.mail(&[], &Macros::default());
        assert!(!n.sign);
    }
}
