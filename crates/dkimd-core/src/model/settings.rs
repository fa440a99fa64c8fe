//! Global settings and the signing rules that decide which domains sign.

use super::period::Period;
use dkim::KeyAlgorithm;
use std::fmt;

/// What the daemon does with an active key whose record DNS does not
/// serve (missing, or another key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnservedKey {
    /// Go on signing with it, and raise the alarm (the default).
    Sign,
    /// Stop signing with it until DNS serves its record, and raise the alarm.
    Hold,
}

impl UnservedKey {
    /// The name as settings and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            UnservedKey::Sign => "sign",
            UnservedKey::Hold => "hold",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "sign" => Ok(UnservedKey::Sign),
            "hold" => Ok(UnservedKey::Hold),
            _ => Err(format!("{s:?} is not one of sign, hold")),
        }
    }
}

/// `off`, or a length of time.
fn period_or(s: &str, word: &str) -> Result<Option<Period>, String> {
    if s == word {
        return Ok(None);
    }
    s.parse::<Period>()
        .map(Some)
        .map_err(|e| format!("{e}, or {word}"))
}

fn show_period_or(p: Option<Period>, word: &str) -> String {
    p.map_or_else(|| word.to_string(), |p| p.to_string())
}

/// Which domains sign when nothing more specific says (Virtualmin's choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultRule {
    /// Domains with both the DNS and the mail feature (the default).
    DnsAndMail,
    /// Every domain with the DNS feature.
    AllDns,
    /// Every domain in the store.
    All,
    /// Only domains set to `always`.
    OptIn,
}

impl DefaultRule {
    /// The name as settings and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultRule::DnsAndMail => "dns-and-mail",
            DefaultRule::AllDns => "all-dns",
            DefaultRule::All => "all",
            DefaultRule::OptIn => "opt-in",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "dns-and-mail" => Ok(DefaultRule::DnsAndMail),
            "all-dns" => Ok(DefaultRule::AllDns),
            "all" => Ok(DefaultRule::All),
            "opt-in" => Ok(DefaultRule::OptIn),
            _ => Err(format!(
                "{s:?} is not one of dns-and-mail, all-dns, all, opt-in"
            )),
        }
    }
}

/// What happens to a message whose verification gave a result class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver (the result is in Authentication-Results).
    Accept,
    /// Refuse with a 5xx ("bounced").
    Reject,
    /// Refuse for now with a 4xx ("delayed").
    Tempfail,
}

impl Action {
    /// Orders actions from the mildest to the strictest: accept, tempfail,
    /// reject.
    pub fn strictness(self) -> u8 {
        match self {
            Action::Accept => 0,
            Action::Tempfail => 1,
            Action::Reject => 2,
        }
    }

    /// The name as settings and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "accept" => Ok(Action::Accept),
            "reject" => Ok(Action::Reject),
            "tempfail" => Ok(Action::Tempfail),
            _ => Err(format!("{s:?} is not one of accept, reject, tempfail")),
        }
    }
}

/// Per-domain override of the signing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Override {
    /// Signs whatever the rules say.
    Always,
    /// Never signs.
    Never,
    /// The rules decide.
    Default,
}

impl Override {
    /// The name as `dkimd domain set --dkim` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Override::Always => "always",
            Override::Never => "never",
            Override::Default => "default",
        }
    }

    /// Parses `always`, `never` or `default`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Override::Always),
            "never" => Ok(Override::Never),
            "default" => Ok(Override::Default),
            _ => Err(format!("{s:?} is not one of always, never, default")),
        }
    }
}

/// The global settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Signing on (after `enable`) or off.
    pub signing: bool,
    /// The selector of the global key ("" before the first `enable`).
    pub selector: String,
    /// Verify incoming mail.
    pub verify: bool,
    /// Which domains sign when nothing more specific says.
    pub default_rule: DefaultRule,
    /// Extra domains to sign; `*.example.com` matches every subdomain.
    pub extra_domains: Vec<String>,
    /// Domains never signed (same patterns).
    pub excluded_domains: Vec<String>,
    /// The algorithms keys are made and used for, in order.
    pub algorithms: Vec<KeyAlgorithm>,
    /// The size of new RSA keys.
    pub rsa_bits: usize,
    /// What happens to mail whose signatures fail.
    pub policy_fail: Action,
    /// What happens to mail whose signatures are broken (permerror).
    pub policy_permerror: Action,
    /// What happens to mail whose keys cannot be fetched now (temperror).
    pub policy_temperror: Action,
    /// What happens to mail without a signature.
    pub policy_none: Action,
    /// Rotations start by themselves when the active key is this old;
    /// `None`: only by hand.
    pub rotate_every: Option<Period>,
    /// How long a retired key's record stays published.
    pub retire_after: Period,
    /// How long a revoked key's record is served with `p=` empty.
    pub revoke_for: Period,
    /// How long a pending key's record must have been served everywhere
    /// before it signs; `None`: the record's TTL.
    pub propagation_wait: Option<Period>,
    /// What the daemon does with an active key DNS does not serve.
    pub unserved_key: UnservedKey,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            signing: false,
            selector: String::new(),
            verify: true,
            default_rule: DefaultRule::DnsAndMail,
            extra_domains: Vec::new(),
            excluded_domains: Vec::new(),
            algorithms: vec![KeyAlgorithm::Rsa, KeyAlgorithm::Ed25519],
            rsa_bits: 2048,
            policy_fail: Action::Accept,
            policy_permerror: Action::Accept,
            policy_temperror: Action::Accept,
            policy_none: Action::Accept,
            rotate_every: None,
            retire_after: Period::days(7),
            revoke_for: Period::days(30),
            propagation_wait: None,
            unserved_key: UnservedKey::Sign,
        }
    }
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?} is not on or off")),
    }
}

fn show_bool(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Checks a domain pattern: a domain name, or `*.` followed by one.
pub fn check_pattern(p: &str) -> Result<String, String> {
    let name = p.strip_prefix("*.").unwrap_or(p);
    name.parse::<dkim::DomainName>()
        .map_err(|_| format!("{p:?} is not a domain name or *.domain pattern"))?;
    Ok(p.to_ascii_lowercase())
}

/// True when `domain` matches `pattern` (`*.x` matches subdomains of x, not x).
pub fn matches_pattern(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => domain.len() > parent.len() + 1 && domain.ends_with(&format!(".{parent}")),
        None => pattern == domain,
    }
}

/// A list of domains or `*.domain` patterns: one per line, or separated by
/// commas. White space around an entry is dropped; inside one it is an
/// error ("exa mple.com" is one wrong name, not two domains).
pub fn list(s: &str) -> Result<Vec<String>, String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.contains(char::is_whitespace) {
                Err(format!(
                    "{p:?} is not a domain: a name has no spaces (one domain per line, or separate them with commas)"
                ))
            } else {
                check_pattern(p)
            }
        })
        .collect()
}

/// The names `dkimd set` accepts, with what they take.
pub const SETTABLE: [(&str, &str); 15] = [
    ("verify", "on|off: verify incoming mail"),
    (
        "default-domains",
        "dns-and-mail|all-dns|all|opt-in: which domains sign by default",
    ),
    (
        "extra-domains",
        "comma-separated domains or *.domain patterns also signed",
    ),
    (
        "excluded-domains",
        "comma-separated domains or *.domain patterns never signed",
    ),
    (
        "algorithms",
        "rsa,ed25519 | rsa | ed25519: keys generated and used",
    ),
    ("rsa-bits", "2048|3072|4096: size of new RSA keys"),
    (
        "policy-fail",
        "accept|reject|tempfail: mail whose signatures fail",
    ),
    (
        "policy-permerror",
        "accept|reject|tempfail: mail whose signatures are broken",
    ),
    (
        "policy-temperror",
        "accept|reject|tempfail: mail whose keys cannot be fetched now",
    ),
    (
        "policy-none",
        "accept|reject|tempfail: mail without a signature",
    ),
    (
        "rotate-every",
        "off|30d|180d…: start a key rotation when the active key is this old",
    ),
    (
        "retire-after",
        "7d…: how long a replaced key's record stays published",
    ),
    (
        "revoke-for",
        "30d…: how long a retired key's record is served revoked (p= empty)",
    ),
    (
        "propagation-wait",
        "ttl|1h…: how long a new key's record must be served before it signs",
    ),
    (
        "unserved-key",
        "sign|hold: sign or not with an active key DNS does not serve",
    ),
];

/// The name of a setting, as `dkimd set`, the page and the store write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SettingName {
    /// `signing` (only `enable` and `disable` change it).
    Signing,
    /// `selector` (only `enable` changes it).
    Selector,
    /// `verify`.
    Verify,
    /// `default-domains`.
    DefaultDomains,
    /// `extra-domains`.
    ExtraDomains,
    /// `excluded-domains`.
    ExcludedDomains,
    /// `algorithms`.
    Algorithms,
    /// `rsa-bits`.
    RsaBits,
    /// `policy-fail`.
    PolicyFail,
    /// `policy-permerror`.
    PolicyPermerror,
    /// `policy-temperror`.
    PolicyTemperror,
    /// `policy-none`.
    PolicyNone,
    /// `rotate-every`.
    RotateEvery,
    /// `retire-after`.
    RetireAfter,
    /// `revoke-for`.
    RevokeFor,
    /// `propagation-wait`.
    PropagationWait,
    /// `unserved-key`.
    UnservedKey,
}

impl SettingName {
    /// Every setting, in the order they are shown.
    pub const ALL: [SettingName; 17] = [
        SettingName::Signing,
        SettingName::Selector,
        SettingName::Verify,
        SettingName::DefaultDomains,
        SettingName::ExtraDomains,
        SettingName::ExcludedDomains,
        SettingName::Algorithms,
        SettingName::RsaBits,
        SettingName::PolicyFail,
        SettingName::PolicyPermerror,
        SettingName::PolicyTemperror,
        SettingName::PolicyNone,
        SettingName::RotateEvery,
        SettingName::RetireAfter,
        SettingName::RevokeFor,
        SettingName::PropagationWait,
        SettingName::UnservedKey,
    ];

    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingName::Signing => "signing",
            SettingName::Selector => "selector",
            SettingName::Verify => "verify",
            SettingName::DefaultDomains => "default-domains",
            SettingName::ExtraDomains => "extra-domains",
            SettingName::ExcludedDomains => "excluded-domains",
            SettingName::Algorithms => "algorithms",
            SettingName::RsaBits => "rsa-bits",
            SettingName::PolicyFail => "policy-fail",
            SettingName::PolicyPermerror => "policy-permerror",
            SettingName::PolicyTemperror => "policy-temperror",
            SettingName::PolicyNone => "policy-none",
            SettingName::RotateEvery => "rotate-every",
            SettingName::RetireAfter => "retire-after",
            SettingName::RevokeFor => "revoke-for",
            SettingName::PropagationWait => "propagation-wait",
            SettingName::UnservedKey => "unserved-key",
        }
    }
}

impl fmt::Display for SettingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SettingName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SettingName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = SETTABLE.iter().map(|(n, _)| *n).collect();
                format!("unknown setting {s:?}; settings: {}", names.join(", "))
            })
    }
}

impl Settings {
    /// Every setting as (name, value) text, as stored and shown.
    pub fn to_pairs(&self) -> Vec<(SettingName, String)> {
        use SettingName as N;
        vec![
            (N::Signing, show_bool(self.signing).into()),
            (N::Selector, self.selector.clone()),
            (N::Verify, show_bool(self.verify).into()),
            (N::DefaultDomains, self.default_rule.as_str().into()),
            (N::ExtraDomains, self.extra_domains.join(",")),
            (N::ExcludedDomains, self.excluded_domains.join(",")),
            (
                N::Algorithms,
                self.algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (N::RsaBits, self.rsa_bits.to_string()),
            (N::PolicyFail, self.policy_fail.as_str().into()),
            (N::PolicyPermerror, self.policy_permerror.as_str().into()),
            (N::PolicyTemperror, self.policy_temperror.as_str().into()),
            (N::PolicyNone, self.policy_none.as_str().into()),
            (N::RotateEvery, show_period_or(self.rotate_every, "off")),
            (N::RetireAfter, self.retire_after.to_string()),
            (N::RevokeFor, self.revoke_for.to_string()),
            (
                N::PropagationWait,
                show_period_or(self.propagation_wait, "ttl"),
            ),
            (N::UnservedKey, self.unserved_key.as_str().into()),
        ]
    }

    /// Sets one value by name, checking it. `signing` and `selector` are
    /// set only by the store and `enable`/`disable`.
    pub fn set(&mut self, name: SettingName, value: &str, internal: bool) -> Result<(), String> {
        use SettingName as N;
        let v = value.trim();
        match name {
            N::Signing if internal => self.signing = on_off(v)?,
            N::Selector if internal => self.selector = v.to_string(),
            N::Signing | N::Selector => {
                return Err(format!(
                    "{name} changes with `dkimd enable [--selector S]` and `dkimd disable`, not with set"
                ))
            }
            N::Verify => self.verify = on_off(v)?,
            N::DefaultDomains => self.default_rule = DefaultRule::parse(v)?,
            N::ExtraDomains => self.extra_domains = list(v)?,
            N::ExcludedDomains => self.excluded_domains = list(v)?,
            N::Algorithms => {
                let algs = v
                    .split(',')
                    .map(|a| a.trim().parse::<KeyAlgorithm>().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                self.set_algorithms(&algs)?;
            }
            N::RsaBits => {
                let bits: usize = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
                self.set_rsa_bits(bits)?;
            }
            N::PolicyFail => self.policy_fail = Action::parse(v)?,
            N::PolicyPermerror => self.policy_permerror = Action::parse(v)?,
            N::PolicyTemperror => self.policy_temperror = Action::parse(v)?,
            N::PolicyNone => self.policy_none = Action::parse(v)?,
            N::RotateEvery => self.rotate_every = period_or(v, "off")?,
            N::RetireAfter => self.retire_after = v.parse()?,
            N::RevokeFor => self.revoke_for = v.parse()?,
            N::PropagationWait => self.propagation_wait = period_or(v, "ttl")?,
            N::UnservedKey => self.unserved_key = UnservedKey::parse(v)?,
        }
        Ok(())
    }

    /// Sets one value by the setting's written name (the store, an export).
    pub fn set_named(&mut self, name: &str, value: &str, internal: bool) -> Result<(), String> {
        self.set(name.parse()?, value, internal)
    }

    /// Sets the algorithms (at least one; repeats dropped, order kept).
    pub fn set_algorithms(&mut self, algs: &[KeyAlgorithm]) -> Result<(), String> {
        if algs.is_empty() {
            return Err("algorithms needs rsa, ed25519 or both".into());
        }
        let mut uniq = Vec::new();
        for a in algs {
            if !uniq.contains(a) {
                uniq.push(*a);
            }
        }
        self.algorithms = uniq;
        Ok(())
    }

    /// Sets the size of new RSA keys: 2048, 3072 or 4096.
    pub fn set_rsa_bits(&mut self, bits: usize) -> Result<(), String> {
        if ![2048, 3072, 4096].contains(&bits) {
            return Err("rsa-bits must be 2048, 3072 or 4096".into());
        }
        self.rsa_bits = bits;
        Ok(())
    }
}

/// Why a domain signs or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// True when the domain signs.
    pub signs: bool,
    /// The rule that decided, in words.
    pub why: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            if self.signs { "yes" } else { "no" },
            self.why
        )
    }
}

/// Decides whether a domain signs. Order: the per-domain override, then
/// exclusions, then extras, then the default rule. `known` is None for a
/// domain that is not in the store (only extras can make it sign).
pub fn decide(settings: &Settings, name: &str, known: Option<(bool, bool, Override)>) -> Decision {
    let d = |signs: bool, why: String| Decision { signs, why };
    if let Some((_, _, o)) = known {
        match o {
            Override::Always => return d(true, "domain set to always".into()),
            Override::Never => return d(false, "domain set to never".into()),
            Override::Default => {}
        }
    }
    if let Some(p) = settings
        .excluded_domains
        .iter()
        .find(|p| matches_pattern(p, name))
    {
        return d(false, format!("excluded by {p}"));
    }
    if let Some(p) = settings
        .extra_domains
        .iter()
        .find(|p| matches_pattern(p, name))
    {
        return d(true, format!("extra domain {p}"));
    }
    let Some((dns, mail, _)) = known else {
        return d(false, "not a known domain".into());
    };
    let rule = settings.default_rule;
    let signs = match rule {
        DefaultRule::DnsAndMail => dns && mail,
        DefaultRule::AllDns => dns,
        DefaultRule::All => true,
        DefaultRule::OptIn => false,
    };
    let what = match (rule, dns, mail) {
        (DefaultRule::OptIn, ..) => "rule opt-in: not set to always".to_string(),
        (DefaultRule::All, ..) => "rule all".to_string(),
        (_, dns, mail) => format!(
            "rule {}: dns {}, mail {}",
            rule.as_str(),
            show_bool(dns),
            show_bool(mail)
        ),
    };
    d(signs, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Settings {
        Settings::default()
    }

    #[test]
    fn default_rules() {
        let mut st = s();
        let dm = Some((true, true, Override::Default));
        let d_only = Some((true, false, Override::Default));
        let none = Some((false, false, Override::Default));
        assert!(decide(&st, "a.com", dm).signs);
        assert!(!decide(&st, "a.com", d_only).signs);
        st.default_rule = DefaultRule::AllDns;
        assert!(decide(&st, "a.com", d_only).signs);
        assert!(!decide(&st, "a.com", none).signs);
        st.default_rule = DefaultRule::All;
        assert!(decide(&st, "a.com", none).signs);
        st.default_rule = DefaultRule::OptIn;
        assert!(!decide(&st, "a.com", dm).signs);
        assert!(decide(&st, "a.com", Some((false, false, Override::Always))).signs);
    }

    #[test]
    fn overrides_exclusions_and_extras() {
        let mut st = s();
        st.set_named("excluded-domains", "secret.com, *.internal.example", false)
            .unwrap();
        st.set_named("extra-domains", "*.example.com,bulk.net", false)
            .unwrap();
        let dm = Some((true, true, Override::Default));
        let d = decide(&st, "secret.com", dm);
        assert!(!d.signs && d.why.contains("excluded"), "{d}");
        assert!(!decide(&st, "a.internal.example", dm).signs);
        assert!(
            decide(&st, "internal.example", dm).signs,
            "a wildcard does not match its parent"
        );
        assert!(decide(&st, "secret.com", Some((true, true, Override::Always))).signs);
        assert!(!decide(&st, "ok.com", Some((true, true, Override::Never))).signs);
        let d = decide(&st, "shop.example.com", None);
        assert!(d.signs && d.why.contains("*.example.com"), "{d}");
        assert!(decide(&st, "bulk.net", None).signs);
        assert!(!decide(&st, "example.com", None).signs);
    }

    #[test]
    fn set_checks_values() {
        let mut st = s();
        assert!(st.set_named("verify", "maybe", false).is_err());
        assert!(st.set_named("rsa-bits", "1024", false).is_err());
        assert!(st.set_named("extra-domains", "bad_domain", false).is_err());
        // Lines or commas separate; a space inside a name is an error, not
        // two domains.
        assert_eq!(
            list("a.example\n b.example , *.c.example\n\n").unwrap(),
            ["a.example", "b.example", "*.c.example"]
        );
        let e = list("ok.example\nexa mple.com").unwrap_err();
        assert!(
            e.contains("\"exa mple.com\" is not a domain: a name has no spaces"),
            "{e}"
        );
        assert!(st
            .set_named("selector", "x", false)
            .unwrap_err()
            .contains("enable"));
        assert!(st
            .set_named("nope", "x", false)
            .unwrap_err()
            .contains("unknown setting"));
        st.set_named("algorithms", "ed25519,rsa,ed25519", false)
            .unwrap();
        assert_eq!(
            st.algorithms,
            vec![KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa]
        );
        st.set_named("policy-fail", "reject", false).unwrap();
        assert_eq!(st.policy_fail, Action::Reject);
        st.set_named("rotate-every", "180d", false).unwrap();
        assert_eq!(st.rotate_every, Some(Period::days(180)));
        st.set_named("propagation-wait", "90m", false).unwrap();
        st.set_named("unserved-key", "hold", false).unwrap();
        assert!(st
            .set_named("retire-after", "off", false)
            .unwrap_err()
            .contains("not a length of time"));
        assert!(st
            .set_named("rotate-every", "soon", false)
            .unwrap_err()
            .contains("or off"));
        // Round trip through text.
        let mut back = Settings::default();
        for (k, v) in st.to_pairs() {
            back.set(k, &v, true).unwrap();
        }
        assert_eq!(back, st);
    }
}
