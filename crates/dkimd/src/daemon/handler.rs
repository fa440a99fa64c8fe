//! One milter connection: headers are collected, the message is signed,
//! verified or passed on at end of header, and answered at end of message.

use super::bodyhash::{Body, BodySink, Threads};
use super::headers::claims;
use super::metrics::Metrics;
use super::snapshot::{Plan, Snapshot, Who};
use dkim::{DkimResult, HeaderField, VerificationResult};
use dkimd_core::clock::SharedClock;
use dkimd_core::dns::KeyTable;
use dkimd_core::model::settings::Action;
use hickory_resolver::TokioResolver;
use milter::{EomResult, Handler, Macros, Modification, Negotiated, Response};
use std::net::IpAddr;
use std::sync::Arc;

/// The queue id of the message, for the log ("-" before DATA).
fn queue_id(macros: &Macros) -> &str {
    macros.get("i").unwrap_or("-")
}

enum Mode {
    None,
    Sign(Body<dkim::Signing>, String),
    Verify(Body<dkim::Verification>),
    /// An untrusted message over the header limits: not verified, but
    /// marked dkim=permerror with this reason.
    OverLimit(&'static str),
}

/// Which header limit a message went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OverLimit {
    Count,
    Bytes,
}

impl OverLimit {
    fn reason(self) -> &'static str {
        match self {
            OverLimit::Count => "too many header fields",
            OverLimit::Bytes => "header fields too large",
        }
    }
}

/// One connection.
pub struct DkimHandler {
    snap: Arc<Snapshot>,
    metrics: Arc<Metrics>,
    resolver: TokioResolver,
    negotiated: Negotiated,
    client: Option<IpAddr>,
    headers: Vec<HeaderField>,
    header_bytes: usize,
    bad_header: bool,
    over_limit: Option<OverLimit>,
    /// Authentication-Results fields seen in this message (kept or not).
    results_seen: u32,
    /// Their indices (from 1, among Authentication-Results fields) that
    /// claim our authserv-id: removed at end of message.
    forged: Vec<u32>,
    /// More forged fields than `max_headers`: the message is refused.
    forged_overflow: bool,
    mode: Mode,
    why_trusted: Option<&'static str>,
    threads: Threads,
    clock: SharedClock,
}

impl DkimHandler {
    /// A handler for one connection, working with `snap` for its life.
    pub fn new(
        snap: Arc<Snapshot>,
        resolver: TokioResolver,
        metrics: Arc<Metrics>,
        threads: Threads,
        clock: SharedClock,
    ) -> Self {
        DkimHandler {
            snap,
            metrics,
            resolver,
            negotiated: Negotiated::default(),
            client: None,
            headers: Vec::new(),
            header_bytes: 0,
            bad_header: false,
            over_limit: None,
            results_seen: 0,
            forged: Vec::new(),
            forged_overflow: false,
            mode: Mode::None,
            why_trusted: None,
            threads,
            clock,
        }
    }

    fn reset(&mut self) {
        self.headers.clear();
        self.header_bytes = 0;
        self.bad_header = false;
        self.over_limit = None;
        self.results_seen = 0;
        self.forged = Vec::new();
        self.forged_overflow = false;
        self.mode = Mode::None;
        self.why_trusted = None;
    }

    fn header_value(&self, value: &str) -> Vec<u8> {
        // Postfix writes "Name:" + value with HDR_LEADSPC, "Name: " + value
        // without; folds are LF + TAB in either case.
        let v = value.replace("\r\n", "\n");
        if self.negotiated.leading_space() {
            format!(" {v}").into_bytes()
        } else {
            v.into_bytes()
        }
    }

    /// A message dkimd failed on: counted, logged, answered with on_error.
    fn failed(&self, macros: &Macros, what: &str, e: &anyhow::Error) -> EomResult {
        self.metrics.error();
        tracing::error!(queue_id = queue_id(macros), "{what} failed: {e}");
        EomResult {
            modifications: vec![],
            response: self.snap.on_error.clone(),
        }
    }

    /// The hasher back from its body, counted when it was hashed on a
    /// thread.
    async fn finish_body<T: BodySink>(&self, body: Body<T>) -> anyhow::Result<Box<T>> {
        let threaded = body.threaded();
        let sink = body.finish().await?;
        if threaded {
            self.metrics.body_threaded();
        }
        Ok(sink)
    }

    fn verify_outcome(&self, results: &[VerificationResult]) -> (Action, &'static str, String) {
        if results.iter().any(|r| r.result == DkimResult::Pass) {
            return (Action::Accept, "pass", String::new());
        }
        let s = &self.snap.settings;
        let has = |x: DkimResult| results.iter().find(|r| r.result == x);
        if let Some(r) = has(DkimResult::Fail) {
            return (s.policy_fail, "fail", r.reason.clone().unwrap_or_default());
        }
        if let Some(r) = has(DkimResult::PermError).or_else(|| has(DkimResult::Policy)) {
            return (
                s.policy_permerror,
                "permerror",
                r.reason.clone().unwrap_or_default(),
            );
        }
        if let Some(r) = has(DkimResult::TempError) {
            return (
                s.policy_temperror,
                "temperror",
                r.reason.clone().unwrap_or_default(),
            );
        }
        (s.policy_none, "none", "no valid signature".into())
    }
}

impl Handler for DkimHandler {
    fn negotiated(&mut self, n: &Negotiated) {
        self.negotiated = *n;
    }

    fn connect(&mut self, _hostname: &str, addr: Option<IpAddr>, _macros: &Macros) -> Response {
        self.client = addr;
        Response::Continue
    }

    fn mail(&mut self, _args: &[String], _macros: &Macros) -> Response {
        self.reset();
        Response::Continue
    }

    fn header(&mut self, name: &str, value: &[u8]) -> Response {
        // Forged results are found by index, kept or not, so that they can
        // be removed whatever happens to the message.
        if name.eq_ignore_ascii_case("Authentication-Results") {
            self.results_seen = self.results_seen.saturating_add(1);
            if claims(value, &self.snap.authserv_id) {
                if self.forged.len() < self.snap.max_headers {
                    self.forged.push(self.results_seen);
                } else {
                    self.forged_overflow = true;
                }
            }
        }
        self.header_bytes = self
            .header_bytes
            .saturating_add(name.len() + value.len() + 3);
        if self.over_limit.is_none() {
            if self.headers.len() >= self.snap.max_headers {
                self.over_limit = Some(OverLimit::Count);
            } else if self.header_bytes > self.snap.max_header_bytes {
                self.over_limit = Some(OverLimit::Bytes);
            }
        }
        if self.over_limit.is_some() {
            // Keep no header more, and let go of those kept.
            self.headers = Vec::new();
            return Response::Continue;
        }
        let mut v = Vec::with_capacity(value.len() + 1);
        if !self.negotiated.leading_space() {
            v.push(b' ');
        }
        v.extend_from_slice(value);
        match HeaderField::from_name_value(name, &v) {
            Ok(f) => self.headers.push(f),
            Err(_) => self.bad_header = true,
        }
        Response::Continue
    }

    fn eoh(&mut self, macros: &Macros) -> Response {
        let snap = self.snap.clone();
        self.why_trusted = snap.trusted(&Who {
            addr: self.client,
            auth_authen: macros.get("auth_authen"),
            daemon_name: macros.get("daemon_name"),
        });
        if let Some(over) = self.over_limit {
            let what = match over {
                OverLimit::Count => format!(
                    "more than {} header fields (milter.max_headers)",
                    snap.max_headers
                ),
                OverLimit::Bytes => format!(
                    "more than {} bytes of header fields (milter.max_header_bytes)",
                    snap.max_header_bytes
                ),
            };
            let outcome = match self.why_trusted {
                Some(why) => {
                    self.metrics.over_limit(true);
                    format!("trusted client ({why}): passed on unsigned")
                }
                None if snap.settings.verify => {
                    self.metrics.over_limit(false);
                    self.mode = Mode::OverLimit(over.reason());
                    "untrusted client: dkim=permerror, policy-permerror applies".to_string()
                }
                None => {
                    self.metrics.over_limit(false);
                    "untrusted client, verification off: passed on".to_string()
                }
            };
            tracing::warn!(queue_id = queue_id(macros), "{what}; {outcome}");
            return Response::Continue;
        }
        let now = self.clock.now();
        match snap.plan(self.why_trusted, &self.headers) {
            Plan::Sign { domain, signer } => match signer.at(now).start(&self.headers) {
                Ok(s) => {
                    self.mode = Mode::Sign(Body::new(Box::new(s), self.threads.clone()), domain);
                }
                Err(e) => tracing::info!(
                    target: crate::logging::MESSAGE_TARGET,
                    queue_id = queue_id(macros),
                    mode = "none",
                    domain = domain.as_str(),
                    "not signed: {e}"
                ),
            },
            Plan::Verify => {
                let v = dkim::Verifier::new(
                    dkim::VerifierConfig::default().with_max_signatures(snap.max_signatures),
                )
                .start(&self.headers, now);
                self.mode = Mode::Verify(Body::new(Box::new(v), self.threads.clone()));
            }
            Plan::Pass => {}
        }
        Response::Continue
    }

    fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        match &mut self.mode {
            Mode::Sign(b, _) => b.spare(),
            Mode::Verify(b) => b.spare(),
            Mode::None | Mode::OverLimit(_) => None,
        }
    }

    async fn body_owned(&mut self, chunk: Vec<u8>) -> Response {
        let wants_more = match &mut self.mode {
            Mode::Sign(b, _) => b.feed(chunk).await,
            Mode::Verify(b) => b.feed(chunk).await,
            Mode::None | Mode::OverLimit(_) => false,
        };
        if wants_more {
            Response::Continue
        } else {
            Response::Skip
        }
    }

    async fn eom(&mut self, macros: &Macros) -> EomResult {
        let mode = std::mem::replace(&mut self.mode, Mode::None);
        if self.forged_overflow {
            self.reset();
            return self.refuse_forged_overflow(macros);
        }
        let removals = self.forged_removals(macros);
        let mut result = match mode {
            Mode::None => {
                tracing::info!(target: crate::logging::MESSAGE_TARGET, queue_id = queue_id(macros), mode = "none", action = "continue");
                EomResult {
                    modifications: vec![],
                    response: Response::Continue,
                }
            }
            Mode::OverLimit(reason) => {
                let results = vec![VerificationResult::permerror(reason)];
                self.verdict(macros, &results, true)
            }
            Mode::Sign(body, domain) => self.finish_signing(macros, body, &domain).await,
            Mode::Verify(body) => self.finish_verifying(macros, body).await,
        };
        // Forged results go first, so that their indices are those of the
        // message as it came; our own field is inserted after.
        if !removals.is_empty() {
            result.modifications.splice(0..0, removals);
        }
        self.reset();
        result
    }

    fn abort(&mut self) {
        self.reset();
    }
}

impl DkimHandler {
    /// More forged Authentication-Results fields than can be removed: the
    /// message is refused.
    fn refuse_forged_overflow(&self, macros: &Macros) -> EomResult {
        self.metrics.error();
        tracing::warn!(
            queue_id = queue_id(macros),
            "more than {} Authentication-Results fields claim {}; refused",
            self.snap.max_headers,
            self.snap.authserv_id
        );
        EomResult {
            modifications: vec![],
            response: Response::ReplyCode(format!(
                "550 5.7.1 too many Authentication-Results fields claiming {}",
                self.snap.authserv_id
            )),
        }
    }

    /// The signatures of a signed message, inserted above its header.
    async fn finish_signing(
        &self,
        macros: &Macros,
        body: Body<dkim::Signing>,
        domain: &str,
    ) -> EomResult {
        let sigs = match self
            .finish_body(body)
            .await
            .and_then(|s| s.finish().map_err(anyhow::Error::from))
        {
            Ok(sigs) => sigs,
            Err(e) => return self.failed(macros, "signing", &e),
        };
        self.metrics.signed(sigs.len());
        let selectors: Vec<&str> = sigs.iter().map(|s| s.selector.as_str()).collect();
        tracing::info!(
            target: crate::logging::MESSAGE_TARGET,
            queue_id = queue_id(macros),
            mode = "sign",
            trust = self.why_trusted.unwrap_or("-"),
            d = domain,
            s = selectors.join(",").as_str(),
            action = "continue"
        );
        let modifications = sigs
            .iter()
            .rev()
            .map(|s| Modification::InsertHeader {
                index: 0,
                name: dkim::SignedHeader::NAME.into(),
                value: self.header_value(&s.value),
            })
            .collect();
        EomResult {
            modifications,
            response: Response::Continue,
        }
    }

    /// The keys of a verified message looked up (within the lookup
    /// timeout), and the verdict.
    async fn finish_verifying(&self, macros: &Macros, body: Body<dkim::Verification>) -> EomResult {
        let v = match self.finish_body(body).await {
            Ok(v) => v,
            Err(e) => return self.failed(macros, "verification", &e),
        };
        let names = v.key_names();
        let started = std::time::Instant::now();
        let table = tokio::time::timeout(
            self.snap.lookup_timeout,
            KeyTable::resolve(&self.resolver, names.clone()),
        )
        .await
        .unwrap_or_else(|_| KeyTable::temporary(&names, "key lookups timed out"));
        if !names.is_empty() {
            self.metrics.lookup(started.elapsed());
        }
        let results = v.finish(&table);
        self.verdict(macros, &results, false)
    }

    /// Deletions of the Authentication-Results fields that claim our
    /// authserv-id, last first so that the indices stay right.
    fn forged_removals(&self, macros: &Macros) -> Vec<Modification> {
        if !self.forged.is_empty() {
            self.metrics.forged_removed(self.forged.len());
            tracing::info!(
                target: crate::logging::MESSAGE_TARGET,
                queue_id = queue_id(macros),
                "removed {} Authentication-Results field(s) claiming {}",
                self.forged.len(),
                self.snap.authserv_id
            );
        }
        self.forged
            .iter()
            .rev()
            .map(|i| Modification::ChangeHeader {
                index: *i,
                name: "Authentication-Results".into(),
                value: Vec::new(),
            })
            .collect()
    }

    /// Our Authentication-Results field and the policy's answer for these
    /// results. `over_limit`: the message was too large to verify; as
    /// adding header fields would otherwise turn a fail (or an unsigned
    /// message) into a milder class, it gets the strictest of the
    /// policies for fail, permerror and none.
    fn verdict(
        &self,
        macros: &Macros,
        results: &[VerificationResult],
        over_limit: bool,
    ) -> EomResult {
        for r in results {
            self.metrics.verified(r.result);
        }
        let ar = dkim::authentication_results(&self.snap.authserv_id, results);
        let modifications = vec![Modification::InsertHeader {
            index: 0,
            name: "Authentication-Results".into(),
            value: self.header_value(&ar),
        }];
        let (mut action, class, reason) = self.verify_outcome(results);
        if over_limit {
            let p = &self.snap.settings;
            action = [p.policy_fail, p.policy_permerror, p.policy_none]
                .into_iter()
                .max_by_key(|a| a.strictness())
                .unwrap_or(action);
        }
        self.metrics.action(action);
        let summary: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{}{}",
                    r.result,
                    r.domain
                        .as_ref()
                        .map(|d| format!("({d})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let response = match action {
            Action::Accept => Response::Continue,
            Action::Reject => Response::ReplyCode(format!(
                "550 5.7.1 DKIM {class}: {}",
                reason.replace(['\r', '\n'], " ")
            )),
            Action::Tempfail => Response::ReplyCode(format!(
                "451 4.7.1 DKIM {class}: {}; try again later",
                reason.replace(['\r', '\n'], " ")
            )),
        };
        tracing::info!(
            target: crate::logging::MESSAGE_TARGET,
            queue_id = queue_id(macros),
            mode = "verify",
            results = summary.join(",").as_str(),
            class,
            action = action.as_str()
        );
        EomResult {
            modifications,
            response,
        }
    }
}
