//! A delaying DNS proxy for the cold-cache benchmark: every UDP query is
//! passed on to a real DNS server at once, and its answer is handed back
//! no sooner than a fixed delay after the query came (the latency of a
//! distant sender's name server). Queries for names with a given label are
//! never answered (a silent name server).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The largest query or answer passed on (EDNS's usual 4096 bytes).
const MAX_MESSAGE: usize = 4096;
/// How long the upstream server has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries in flight at once; more are dropped (a flood cannot make the
/// proxy hold unbounded tasks and sockets).
const MAX_IN_FLIGHT: usize = 4096;

/// What the proxy does.
#[derive(Debug, Clone)]
pub struct DelayOptions {
    /// Where it listens (UDP).
    pub listen: SocketAddr,
    /// The real DNS server.
    pub upstream: SocketAddr,
    /// How long after a query its answer goes back.
    pub delay: Duration,
    /// Queries for a name with this label (any case) are dropped.
    pub silent_label: Option<String>,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct DelayStats {
    /// Queries answered.
    pub answered: AtomicU64,
    /// Queries dropped for the silent label.
    pub silent: AtomicU64,
    /// Queries that were not DNS queries, got no answer upstream, or came
    /// while `MAX_IN_FLIGHT` others were waiting.
    pub failed: AtomicU64,
}

/// The labels of the question name of a DNS query, or `None` when the
/// bytes are not a query with one well-formed question (bounds checked:
/// the name must end inside the message, with no compression, as a
/// question's name has).
pub(crate) fn question_labels(msg: &[u8]) -> Option<Vec<&[u8]>> {
    // Header: 12 bytes; QDCOUNT must be 1 and QR (a response) clear.
    let header = msg.get(..12)?;
    if header.get(2)? & 0x80 != 0 || header.get(4..6)? != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12usize;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            return Some(labels);
        }
        if len > 63 {
            return None;
        }
        labels.push(msg.get(at + 1..at + 1 + len)?);
        at += 1 + len;
    }
}

fn is_silent(msg: &[u8], label: Option<&str>) -> bool {
    let Some(label) = label else { return false };
    question_labels(msg)
        .is_some_and(|ls| ls.iter().any(|l| l.eq_ignore_ascii_case(label.as_bytes())))
}

/// Runs the proxy until the process is stopped.
pub async fn serve_delay(o: DelayOptions, stats: Arc<DelayStats>) -> std::io::Result<()> {
    let sock = Arc::new(UdpSocket::bind(o.listen).await?);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            // A client's ICMP error surfacing here is no reason to stop.
            Err(_) => continue,
        };
        let query = buf.get(..n).unwrap_or_default().to_vec();
        let came = tokio::time::Instant::now();
        if question_labels(&query).is_none() {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if is_silent(&query, o.silent_label.as_deref()) {
            stats.silent.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (sock, stats, upstream, delay) = (sock.clone(), stats.clone(), o.upstream, o.delay);
        tokio::spawn(async move {
            let _permit = permit;
            match ask(upstream, &query).await {
                Ok(answer) => {
                    tokio::time::sleep_until(came + delay).await;
                    let _ = sock.send_to(&answer, from).await;
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// One query to the upstream server, on a socket of its own.
async fn ask(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(upstream).await?;
    s.send(query).await?;
    let mut answer = vec![0u8; MAX_MESSAGE];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, s.recv(&mut answer))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    answer.truncate(n);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 16, 0, 1]);
        q
    }

    #[test]
    fn reads_the_question_name() {
        let q = query("s._domainkey.d1.Silent.b");
        let labels = question_labels(&q).expect("a query");
        assert_eq!(labels.len(), 5);
        assert!(is_silent(&q, Some("silent")));
        assert!(!is_silent(&q, Some("loud")));
        assert!(!is_silent(&q, None));
    }

    #[test]
    fn refuses_what_is_not_a_query() {
        let q = query("a.b");
        // Cut inside the name, a response, two questions, a pointer.
        assert!(question_labels(q.get(..14).expect("short")).is_none());
        let mut r = q.clone();
        if let Some(b) = r.get_mut(2) {
            *b |= 0x80;
        }
        assert!(question_labels(&r).is_none());
        let mut two = q.clone();
        if let Some(b) = two.get_mut(5) {
            *b = 2;
        }
        assert!(question_labels(&two).is_none());
        let mut ptr = q;
        if let Some(b) = ptr.get_mut(12) {
            *b = 0xC0;
        }
        assert!(question_labels(&ptr).is_none());
        assert!(question_labels(&[]).is_none());
    }
}
