//! `dkimd run`: the milter daemon Postfix calls for every message.
//!
//! Each connection takes the current [`Snapshot`] (settings, keys, rules) and
//! keeps it for its life; SIGHUP and store changes build a new one and swap
//! it in whole. SIGTERM stops accepting and lets messages in flight finish.

use crate::bodyhash::{Body, Threads};
use crate::config::{Config, MilterConfig};
use crate::dns::KeyTable;
use crate::settings::{matches_pattern, Action, Settings};
use crate::store::{SqliteStore, State, Store};
use anyhow::{anyhow, Context};
use dkim::{DkimResult, HeaderField, SignerConfig, VerificationResult};
use hickory_resolver::TokioResolver;
use milter::server::{ListenAddr, Listener, Stats};
use milter::{EomResult, Handler, Macros, Modification, Negotiated, Response};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What a connection works with; replaced whole on reload.
pub struct Snapshot {
    pub settings: Settings,
    /// A signer per signing domain (lower case), built once per snapshot.
    signers: HashMap<String, dkim::Signer>,
    /// `*.parent` extras: pattern and parent domain.
    wildcard_extras: Vec<(String, String)>,
    trusted: Vec<ipnet::IpNet>,
    signing_daemons: Vec<String>,
    pub authserv_id: String,
    on_error: Response,
    max_signatures: usize,
    lookup_timeout: Duration,
    info: bool,
    use_sender: bool,
    max_headers: usize,
    max_header_bytes: usize,
    /// Domains in the store (for `run --check-config`).
    stored_domains: usize,
}

fn error_response(s: &str) -> Response {
    match s {
        "accept" => Response::Continue,
        "reject" => Response::ReplyCode("550 5.7.1 DKIM processing failed".into()),
        _ => Response::ReplyCode("451 4.7.1 DKIM processing failed, try again later".into()),
    }
}

impl Snapshot {
    /// Builds a snapshot from the store's state and the configuration.
    pub fn build(st: &State, m: &MilterConfig) -> anyhow::Result<Snapshot> {
        let mut signers = HashMap::new();
        if st.settings.signing {
            for (domain, d) in crate::manage::all_decisions(st) {
                if !d.signs {
                    continue;
                }
                let dn: dkim::DomainName = domain.parse().map_err(|e| anyhow!("{e}"))?;
                let mut cfgs = Vec::new();
                for k in st.keys_for(&domain) {
                    let key = dkim::SigningKey::from_pem(k.pem.as_bytes())
                        .with_context(|| format!("stored key {} for {domain}", k.id))?;
                    let sel: dkim::Selector = k.selector.parse().map_err(|e| anyhow!("{e}"))?;
                    cfgs.push(SignerConfig::new(dn.clone(), sel, key));
                }
                if !cfgs.is_empty() {
                    signers.insert(domain, dkim::Signer::new(cfgs, 0));
                }
            }
        }
        let wildcard_extras = st
            .settings
            .extra_domains
            .iter()
            .filter_map(|p| {
                p.strip_prefix("*.")
                    .map(|parent| (p.clone(), parent.to_string()))
            })
            .collect();
        let trusted = m
            .trusted_networks
            .iter()
            .filter_map(|n| {
                n.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| n.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
        Ok(Snapshot {
            settings: st.settings.clone(),
            signers,
            wildcard_extras,
            trusted,
            signing_daemons: m.signing_daemons.clone(),
            authserv_id: m
                .authserv_id
                .clone()
                .unwrap_or_else(crate::verify::hostname),
            on_error: error_response(&m.on_error),
            max_signatures: m.max_signatures,
            lookup_timeout: Duration::from_secs(m.lookup_timeout.max(1)),
            info: m.log_level == "info",
            use_sender: m.author_header == "sender",
            max_headers: m.max_headers,
            max_header_bytes: m.max_header_bytes,
            stored_domains: st.domains.len(),
        })
    }

    /// The signing configurations for mail whose author domain is `domain`.
    pub fn signers_for(&self, domain: &str) -> Option<&dkim::Signer> {
        if let Some(s) = self.signers.get(domain) {
            return Some(s);
        }
        if self
            .settings
            .excluded_domains
            .iter()
            .any(|p| matches_pattern(p, domain))
        {
            return None;
        }
        self.wildcard_extras
            .iter()
            .find(|(p, _)| matches_pattern(p, domain))
            .and_then(|(_, parent)| self.signers.get(parent))
    }

    /// Is this client trusted to have its mail signed?
    fn trusted(&self, addr: Option<IpAddr>, macros: &Macros) -> Option<&'static str> {
        if macros.get("auth_authen").is_some_and(|a| !a.is_empty()) {
            return Some("authenticated");
        }
        if macros
            .get("daemon_name")
            .is_some_and(|d| self.signing_daemons.iter().any(|s| s == d))
        {
            return Some("signing service");
        }
        if addr.is_some_and(|a| self.trusted.iter().any(|n| n.contains(&a))) {
            return Some("trusted network");
        }
        None
    }
}

/// The author domain: the domain of the (single) From address, or of the
/// Sender address when `use_sender` and there is one.
pub fn author_domain_of(headers: &[HeaderField], use_sender: bool) -> Option<String> {
    if use_sender && headers.iter().any(|h| h.is("Sender")) {
        return address_domain(headers, "Sender");
    }
    address_domain(headers, "From")
}

/// The domain of the address in the single field called `name`.
fn address_domain(headers: &[HeaderField], name: &str) -> Option<String> {
    let mut froms = headers.iter().filter(|h| h.is(name));
    let from = froms.next()?;
    if froms.next().is_some() {
        return None;
    }
    let v = String::from_utf8_lossy(from.value()).into_owned();
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b).unwrap_or("").to_string(),
        _ => v.split('(').next().unwrap_or("").to_string(),
    };
    let domain = addr
        .trim()
        .rsplit_once('@')?
        .1
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    domain
        .parse::<dkim::DomainName>()
        .ok()
        .map(|d| d.to_lowercase())
}

/// True when an Authentication-Results value claims `authserv_id`. The
/// id may follow white space and comments (RFC 8601's CFWS): `(x) id;`.
fn claims(value: &[u8], authserv_id: &str) -> bool {
    let v = String::from_utf8_lossy(value);
    let mut rest = v.trim_start();
    // Skip leading comments, nested ones too (bounded by the value).
    while let Some(after) = rest.strip_prefix('(') {
        let mut depth = 1usize;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end.and_then(|e| after.get(e..)) {
            Some(r) => rest = r.trim_start(),
            None => return false,
        }
    }
    let first = rest
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .next()
        .unwrap_or("");
    first.eq_ignore_ascii_case(authserv_id)
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
}

impl DkimHandler {
    pub fn new(
        snap: Arc<Snapshot>,
        resolver: TokioResolver,
        metrics: Arc<Metrics>,
        threads: Threads,
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

    fn log(&self, macros: &Macros, what: &str) {
        if self.snap.info {
            errln!("dkimd: queue_id={} {what}", macros.get("i").unwrap_or("-"));
        }
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
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        errln!(
            "dkimd: queue_id={} error: {what} failed: {e}",
            macros.get("i").unwrap_or("-")
        );
        EomResult {
            modifications: vec![],
            response: self.snap.on_error.clone(),
        }
    }

    /// The hasher back from its body, counted when it was hashed on a
    /// thread.
    async fn finish_body<T: crate::bodyhash::BodySink>(
        &self,
        body: Body<T>,
    ) -> anyhow::Result<Box<T>> {
        let threaded = body.threaded();
        let sink = body.finish().await?;
        if threaded {
            self.metrics.bodies_threaded.fetch_add(1, Ordering::Relaxed);
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
        self.why_trusted = snap.trusted(self.client, macros);
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
                    self.metrics.count_over_limit(true);
                    format!("trusted client ({why}): passed on unsigned")
                }
                None if snap.settings.verify => {
                    self.metrics.count_over_limit(false);
                    self.mode = Mode::OverLimit(over.reason());
                    "untrusted client: dkim=permerror, policy-permerror applies".to_string()
                }
                None => {
                    self.metrics.count_over_limit(false);
                    "untrusted client, verification off: passed on".to_string()
                }
            };
            errln!(
                "dkimd: queue_id={} warning: {what}; {outcome}",
                macros.get("i").unwrap_or("-"),
            );
            return Response::Continue;
        }
        if let (Some(_), Some(domain)) = (
            self.why_trusted,
            author_domain_of(&self.headers, snap.use_sender),
        ) {
            if let Some(signer) = snap.signers_for(&domain) {
                match signer.at(crate::cli::now()).start(&self.headers) {
                    Ok(s) => {
                        self.mode =
                            Mode::Sign(Body::new(Box::new(s), self.threads.clone()), domain);
                        return Response::Continue;
                    }
                    Err(e) => self.log(
                        macros,
                        &format!("mode=none domain={domain} not signed: {e}"),
                    ),
                }
            }
        }
        if snap.settings.verify && self.why_trusted.is_none() {
            let v = dkim::Verifier::new(
                dkim::VerifierConfig::default().with_max_signatures(snap.max_signatures),
            )
            .start(&self.headers, crate::cli::now());
            self.mode = Mode::Verify(Body::new(Box::new(v), self.threads.clone()));
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
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            errln!(
                "dkimd: queue_id={} warning: more than {} Authentication-Results fields claim {}; refused",
                macros.get("i").unwrap_or("-"),
                self.snap.max_headers,
                self.snap.authserv_id
            );
            return EomResult {
                modifications: vec![],
                response: Response::ReplyCode(format!(
                    "550 5.7.1 too many Authentication-Results fields claiming {}",
                    self.snap.authserv_id
                )),
            };
        }
        let removals = self.forged_removals(macros);
        let mut result = match mode {
            Mode::None => {
                self.log(macros, "mode=none action=continue");
                EomResult {
                    modifications: vec![],
                    response: Response::Continue,
                }
            }
            Mode::OverLimit(reason) => {
                let results = vec![VerificationResult::permerror(reason)];
                self.verdict(macros, &results, true)
            }
            Mode::Sign(body, domain) => match self
                .finish_body(body)
                .await
                .and_then(|s| s.finish().map_err(anyhow::Error::from))
            {
                Ok(sigs) => {
                    self.metrics.signed.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .signatures_made
                        .fetch_add(u64::try_from(sigs.len()).unwrap_or(0), Ordering::Relaxed);
                    let selectors: Vec<&str> = sigs.iter().map(|s| s.selector.as_str()).collect();
                    self.log(
                        macros,
                        &format!(
                            "mode=sign trust={} d={domain} s={} action=continue",
                            self.why_trusted.unwrap_or("-"),
                            selectors.join(",")
                        ),
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
                Err(e) => self.failed(macros, "signing", &e),
            },
            Mode::Verify(body) => match self.finish_body(body).await {
                Err(e) => self.failed(macros, "verification", &e),
                Ok(v) => {
                    let names = v.key_names();
                    let started = std::time::Instant::now();
                    let table = tokio::time::timeout(
                        self.snap.lookup_timeout,
                        KeyTable::resolve(&self.resolver, names.clone()),
                    )
                    .await
                    .unwrap_or_else(|_| KeyTable::temporary(&names, "key lookups timed out"));
                    if !names.is_empty() {
                        self.metrics.lookups.fetch_add(1, Ordering::Relaxed);
                        self.metrics.lookup_micros.fetch_add(
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                    }
                    let results = v.finish(&table);
                    self.verdict(macros, &results, false)
                }
            },
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
    /// Deletions of the Authentication-Results fields that claim our
    /// authserv-id, last first so that the indices stay right.
    fn forged_removals(&self, macros: &Macros) -> Vec<Modification> {
        if !self.forged.is_empty() {
            self.metrics.forged_removed.fetch_add(
                u64::try_from(self.forged.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.log(
                macros,
                &format!(
                    "removed {} Authentication-Results field(s) claiming {}",
                    self.forged.len(),
                    self.snap.authserv_id
                ),
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
        self.log(
            macros,
            &format!(
                "mode=verify results={} class={class} action={}",
                summary.join(","),
                action.as_str()
            ),
        );
        EomResult {
            modifications,
            response,
        }
    }
}

/// Counters for the metrics endpoint.
#[derive(Default)]
pub struct Metrics {
    signed: AtomicU64,
    signatures_made: AtomicU64,
    verified: [AtomicU64; 7],
    actions: [AtomicU64; 3],
    errors: AtomicU64,
    /// Messages over the header limits: [trusted, untrusted].
    over_limit: [AtomicU64; 2],
    forged_removed: AtomicU64,
    evicted: Arc<AtomicUsize>,
    bodies_threaded: AtomicU64,
    lookups: AtomicU64,
    lookup_micros: AtomicU64,
    active: Arc<AtomicUsize>,
    limit_reached: Arc<AtomicUsize>,
}

const RESULTS: [DkimResult; 7] = [
    DkimResult::None,
    DkimResult::Pass,
    DkimResult::Fail,
    DkimResult::Neutral,
    DkimResult::Policy,
    DkimResult::TempError,
    DkimResult::PermError,
];

impl Metrics {
    fn verified(&self, r: DkimResult) {
        if let Some(i) = RESULTS.iter().position(|x| *x == r) {
            if let Some(c) = self.verified.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn count_over_limit(&self, trusted: bool) {
        let [t, u] = &self.over_limit;
        if trusted { t } else { u }.fetch_add(1, Ordering::Relaxed);
    }

    fn action(&self, a: Action) {
        let i = match a {
            Action::Accept => 0,
            Action::Reject => 1,
            Action::Tempfail => 2,
        };
        if let Some(c) = self.actions.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("# HELP dkimd_messages_signed_total Messages signed.\n# TYPE dkimd_messages_signed_total counter\n");
        s.push_str(&format!(
            "dkimd_messages_signed_total {}\n",
            g(&self.signed)
        ));
        s.push_str("# HELP dkimd_signatures_made_total DKIM-Signature fields added.\n# TYPE dkimd_signatures_made_total counter\n");
        s.push_str(&format!(
            "dkimd_signatures_made_total {}\n",
            g(&self.signatures_made)
        ));
        s.push_str("# HELP dkimd_signatures_verified_total Verification results, one per signature (none: unsigned message).\n# TYPE dkimd_signatures_verified_total counter\n");
        for (r, c) in RESULTS.iter().zip(self.verified.iter()) {
            s.push_str(&format!(
                "dkimd_signatures_verified_total{{result=\"{r}\"}} {}\n",
                g(c)
            ));
        }
        s.push_str("# HELP dkimd_policy_actions_total What verified messages got.\n# TYPE dkimd_policy_actions_total counter\n");
        for (a, c) in ["accept", "reject", "tempfail"]
            .iter()
            .zip(self.actions.iter())
        {
            s.push_str(&format!(
                "dkimd_policy_actions_total{{action=\"{a}\"}} {}\n",
                g(c)
            ));
        }
        s.push_str("# HELP dkimd_errors_total Messages dkimd failed on (answered with milter.on_error).\n# TYPE dkimd_errors_total counter\n");
        s.push_str(&format!("dkimd_errors_total {}\n", g(&self.errors)));
        s.push_str("# HELP dkimd_over_limit_total Messages over milter.max_headers or milter.max_header_bytes (trusted: passed on unsigned; untrusted: dkim=permerror).\n# TYPE dkimd_over_limit_total counter\n");
        for (who, c) in ["trusted", "untrusted"].iter().zip(self.over_limit.iter()) {
            s.push_str(&format!(
                "dkimd_over_limit_total{{client=\"{who}\"}} {}\n",
                g(c)
            ));
        }
        s.push_str("# HELP dkimd_forged_results_removed_total Authentication-Results fields removed because they claimed our authserv-id.\n# TYPE dkimd_forged_results_removed_total counter\n");
        s.push_str(&format!(
            "dkimd_forged_results_removed_total {}\n",
            g(&self.forged_removed)
        ));
        s.push_str("# HELP dkimd_connections_evicted_total Connections closed at milter.max_connections to serve a new one (waiting for negotiation or idle between messages).\n# TYPE dkimd_connections_evicted_total counter\n");
        s.push_str(&format!(
            "dkimd_connections_evicted_total {}\n",
            self.evicted.load(Ordering::Relaxed)
        ));
        s.push_str("# HELP dkimd_bodies_hashed_on_thread_total Large bodies hashed on a thread of their own (milter.body_thread).\n# TYPE dkimd_bodies_hashed_on_thread_total counter\n");
        s.push_str(&format!(
            "dkimd_bodies_hashed_on_thread_total {}\n",
            g(&self.bodies_threaded)
        ));
        s.push_str("# HELP dkimd_key_lookup_seconds Time to fetch the keys of one message.\n# TYPE dkimd_key_lookup_seconds summary\n");
        s.push_str(&format!(
            "dkimd_key_lookup_seconds_sum {:.6}\ndkimd_key_lookup_seconds_count {}\n",
            g(&self.lookup_micros) as f64 / 1e6,
            g(&self.lookups)
        ));
        s.push_str("# HELP dkimd_active_connections Milter connections open now.\n# TYPE dkimd_active_connections gauge\n");
        s.push_str(&format!(
            "dkimd_active_connections {}\n",
            self.active.load(Ordering::Relaxed)
        ));
        s.push_str("# HELP dkimd_connection_limit_reached_total Times milter.max_connections was reached with every connection inside a message (new connections waited).\n# TYPE dkimd_connection_limit_reached_total counter\n");
        s.push_str(&format!(
            "dkimd_connection_limit_reached_total {}\n",
            self.limit_reached.load(Ordering::Relaxed)
        ));
        s
    }
}

/// Serves `GET /metrics` (HTTP/1.0, one request per connection). Requests
/// are read with a size limit and a timeout.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                let read = tokio::time::timeout(
                    Duration::from_secs(5),
                    conn.read(buf.get_mut(n..).unwrap_or_default()),
                )
                .await;
                match read {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf
                    .get(..n)
                    .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
                {
                    break;
                }
            }
            let req = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
            let response = if req.starts_with("GET /metrics ") || req.starts_with("GET /metrics\r")
            {
                let body = metrics.render();
                format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

/// Shared, swappable snapshot.
pub type Shared = Arc<RwLock<Arc<Snapshot>>>;

fn load_snapshot(cfg: &Config) -> anyhow::Result<Arc<Snapshot>> {
    let store = SqliteStore::open(&cfg.state_dir)?;
    let st = store.load()?;
    Ok(Arc::new(Snapshot::build(&st, &cfg.milter)?))
}

/// A resolver for verification: the configured servers, with a cache that
/// honours TTLs (positive and negative).
pub fn verify_resolver(cfg: &Config) -> anyhow::Result<TokioResolver> {
    crate::dns::resolver_cached(
        &cfg.dns.nameservers,
        Duration::from_secs(cfg.dns.timeout.max(1)),
    )
}

/// The id of a group, from /etc/group (or a number).
fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config, check_only: bool) -> anyhow::Result<()> {
    let addr: ListenAddr = cfg
        .milter
        .socket
        .parse()
        .map_err(|e: String| crate::UsageError(format!("milter.socket: {e}")))?;
    let snap = load_snapshot(&cfg)?;
    if check_only {
        crate::web::check(&cfg)?;
        outln!(
            "configuration ok: socket {}, state {}, signing {} ({} domains stored, {} with keys that sign), verification {}",
            cfg.milter.socket,
            cfg.state_dir.display(),
            if snap.settings.signing { "on" } else { "off" },
            snap.stored_domains,
            snap.signers.len(),
            if snap.settings.verify { "on" } else { "off" }
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(serve(cfg, addr, snap))
}

async fn serve(cfg: Config, addr: ListenAddr, snap: Arc<Snapshot>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let addr = match addr {
        ListenAddr::Unix(p, _) => {
            let mode = u32::from_str_radix(&cfg.milter.socket_mode, 8).unwrap_or(0o660);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            ListenAddr::Unix(p, mode)
        }
        other => other,
    };
    let listener = Listener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.milter.socket))?;
    if let (ListenAddr::Unix(path, _), Some(group)) = (&addr, &cfg.milter.socket_group) {
        let gid =
            group_id(group).ok_or_else(|| anyhow!("milter.socket_group: no group {group:?}"))?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
    }
    let admin = crate::web::bind(&cfg).await?;
    let shared: Shared = Arc::new(RwLock::new(snap));
    let resolver = verify_resolver(&cfg)?;
    errln!(
        "dkimd: listening on {} (signing {}, verification {}); Postfix: smtpd_milters = {}",
        listener.postfix_addr(),
        if shared.read().map(|s| s.settings.signing).unwrap_or(false) {
            "on"
        } else {
            "off"
        },
        if shared.read().map(|s| s.settings.verify).unwrap_or(false) {
            "on"
        } else {
            "off"
        },
        listener.postfix_addr()
    );

    // Reload on SIGHUP and when the store changes.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let reload_cfg = cfg.clone();
    let reload_shared = shared.clone();
    tokio::spawn(async move {
        let mut watcher = crate::store::ChangeWatcher::open(&reload_cfg.state_dir).ok();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let why = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = tick.tick() => {
                    match watcher.as_mut().map(|w| w.changed()) {
                        Some(Ok(true)) => "store changed",
                        _ => continue,
                    }
                }
            };
            match load_snapshot(&reload_cfg) {
                Ok(s) => {
                    if let Ok(mut w) = reload_shared.write() {
                        *w = s;
                    }
                    errln!("dkimd: reloaded ({why})");
                }
                Err(e) => {
                    errln!("dkimd: reload ({why}) failed, keeping the previous state: {e:#}")
                }
            }
        }
    });

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        errln!("dkimd: shutting down; finishing messages in flight");
    };
    let metrics = Arc::new(Metrics::default());
    let stats = Stats {
        active: metrics.active.clone(),
        limit_reached: metrics.limit_reached.clone(),
        evicted: metrics.evicted.clone(),
    };
    // Say so (at most once a second) when the connection limit holds
    // connections back.
    let limit_hits = metrics.limit_reached.clone();
    let limit = cfg.milter.max_connections;
    tokio::spawn(async move {
        let mut seen = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = limit_hits.load(Ordering::Relaxed);
            if now > seen {
                errln!(
                    "dkimd: warning: connection limit reached (milter.max_connections = {limit}) with every connection inside a message; new connections wait until one ends"
                );
                seen = now;
            }
        }
    });
    if let Some(addr) = cfg.milter.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        errln!("dkimd: metrics on http://{addr}/metrics");
        tokio::spawn(serve_metrics(l, metrics.clone()));
    }
    if let Some(admin) = admin {
        tokio::spawn(async move {
            if let Err(e) = crate::web::serve(admin).await {
                errln!("dkimd: admin page stopped: {e:#}");
            }
        });
    }
    let factory_shared = shared.clone();
    let factory_metrics = metrics.clone();
    let threads = Threads::new(cfg.milter.body_thread);
    let factory = move || {
        let snap = factory_shared
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        DkimHandler::new(
            snap,
            resolver.clone(),
            factory_metrics.clone(),
            threads.clone(),
        )
    };
    let on_error = |e: milter::codec::FrameError| errln!("dkimd: connection ended: {e}");
    milter::server::serve(
        listener,
        milter::ServerConfig {
            read_timeout: Duration::from_secs(cfg.milter.read_timeout.max(1)),
            negotiate_timeout: Duration::from_secs(cfg.milter.negotiate_timeout.max(1)),
            idle_timeout: Duration::from_secs(cfg.milter.idle_timeout.max(1)),
            max_macro_bytes: cfg.milter.max_macro_bytes,
            max_macros: cfg.milter.max_macros,
            max_connections: cfg.milter.max_connections,
            ..milter::ServerConfig::default()
        }
        .with_body_replies(cfg.milter.body_replies),
        factory,
        on_error,
        shutdown,
        Duration::from_secs(cfg.milter.shutdown_grace),
        stats,
    )
    .await
    .context("milter server")?;
    errln!("dkimd: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hf(s: &str) -> HeaderField {
        HeaderField::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn author_domains() {
        assert_eq!(
            author_domain_of(&[hf("From: Joe <joe@Example.COM>")], false).as_deref(),
            Some("example.com")
        );
        assert_eq!(
            author_domain_of(&[hf("From: joe@example.org (Joe)")], false).as_deref(),
            Some("example.org")
        );
        assert_eq!(
            author_domain_of(&[hf("From: \"a@b\" <joe@c.net>")], false).as_deref(),
            Some("c.net")
        );
        assert_eq!(author_domain_of(&[hf("From: nobody")], false), None);
        assert_eq!(
            author_domain_of(&[hf("From: a@x.com"), hf("From: b@y.com")], false),
            None
        );
        assert_eq!(author_domain_of(&[hf("Subject: x")], false), None);
        let both = [
            hf("From: a@list.example"),
            hf("Sender: bounces@example.com"),
        ];
        assert_eq!(
            author_domain_of(&both, true).as_deref(),
            Some("example.com")
        );
        assert_eq!(
            author_domain_of(&both, false).as_deref(),
            Some("list.example")
        );
        assert_eq!(
            author_domain_of(&both[..1], true).as_deref(),
            Some("list.example")
        );
    }

    #[test]
    fn authserv_id_claims() {
        assert!(claims(b" mx.example.net; dkim=pass", "mx.example.net"));
        assert!(claims(b" MX.example.net 1; dkim=pass", "mx.example.net"));
        assert!(!claims(b" other.example; dkim=pass", "mx.example.net"));
        assert!(!claims(b" mx.example.network; dkim=pass", "mx.example.net"));
        // Comments before the id (RFC 8601 CFWS), nested and escaped.
        assert!(claims(b" (x) mx.example.net; dkim=pass", "mx.example.net"));
        assert!(claims(
            b" (a (b) \\) c)\n\t mx.example.net(c); dkim=pass",
            "mx.example.net"
        ));
        assert!(!claims(
            b" (unclosed mx.example.net; dkim=pass",
            "mx.example.net"
        ));
    }
}
