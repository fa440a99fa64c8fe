//! The one error type of the core: what went wrong, by kind, so that the
//! binary maps it to an exit code and the page puts a validation message
//! next to the field it is about.

use std::fmt;

/// The field of a command or form that a validation error is about. The
/// command line names it as a flag or argument, the page as a form field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// A domain name (argument `DOMAIN`, form field `domain`).
    Domain,
    /// The new name of a domain being renamed (`NEW`, form field `to`).
    NewName,
    /// A selector (`--selector`, form field `selector`).
    Selector,
    /// The algorithms to sign with (`--algorithms`, form field `algorithms`).
    Algorithms,
    /// A private key being imported (`--key`, form field `pem`).
    Key,
    /// A setting's name (`dkimd set NAME`).
    SettingName,
    /// A setting's value (`dkimd set NAME VALUE`, the settings form).
    SettingValue,
    /// A password (`dkimd admin passwd`, the login form).
    Password,
    /// One setting's value, by its written name (`policy-fail`, …).
    Setting(&'static str),
    /// Whether to make new keys (`--new-key`, form field `new_key`).
    NewKey,
    /// The delegation zone (`--delegate-zone`, form field `delegate_zone`).
    DelegateZone,
}

impl Field {
    /// The HTML form field this error belongs next to.
    pub fn form_name(self) -> &'static str {
        match self {
            Field::Domain => "domain",
            Field::NewName => "to",
            Field::Selector => "selector",
            Field::Algorithms => "algorithms",
            Field::Key => "pem",
            Field::SettingName => "name",
            Field::SettingValue => "value",
            Field::Password => "password",
            Field::Setting(name) => match name {
                "verify" => "verify",
                "default-domains" => "default_domains",
                "extra-domains" => "extra_domains",
                "excluded-domains" => "excluded_domains",
                "algorithms" => "algorithms",
                "rsa-bits" => "rsa_bits",
                "policy-fail" => "policy_fail",
                "policy-permerror" => "policy_permerror",
                "policy-temperror" => "policy_temperror",
                "policy-none" => "policy_none",
                "rotate-every" => "rotate_every",
                "retire-after" => "retire_after",
                "revoke-for" => "revoke_for",
                "propagation-wait" => "propagation_wait",
                "unserved-key" => "unserved_key",
                _ => "value",
            },
            Field::NewKey => "new_key",
            Field::DelegateZone => "delegate_zone",
        }
    }
}

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// How dkimd was called or configured is wrong (exit code 2): a bad
    /// configuration file, a flag that does not apply.
    #[error("{0}")]
    Usage(String),
    /// A value an admin gave is not valid; `field` says which one.
    #[error("{msg}")]
    Invalid {
        /// The field the value came from.
        field: Field,
        /// What is wrong with it, in words an admin acts on.
        msg: String,
    },
    /// Several values of one request are not valid, each with why (a form
    /// with errors next to several fields).
    #[error("{}", .0.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "))]
    Form(Vec<(Field, String)>),
    /// Something the admin named does not exist (a domain, a user).
    #[error("{0}")]
    NotFound(String),
    /// The store could not be read or written.
    #[error("{0}")]
    Store(String),
    /// A DNS server that dkimd publishes to did not answer (the change is
    /// kept and tried again later).
    #[error("{0}")]
    Unreachable(String),
    /// Publishing a record failed for another reason.
    #[error("{0}")]
    Publish(String),
    /// A DNS lookup failed.
    #[error("{0}")]
    Dns(String),
    /// A file or other operating-system resource failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
    /// An error with a description of what was being done.
    #[error("{msg}")]
    Context {
        /// What was being done.
        msg: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error described by `msg`.
    pub fn msg(msg: impl fmt::Display) -> Error {
        Error::Other(msg.to_string())
    }

    /// A usage error (exit code 2).
    pub fn usage(msg: impl fmt::Display) -> Error {
        Error::Usage(msg.to_string())
    }

    /// A validation error about `field`.
    pub fn invalid(field: Field, msg: impl fmt::Display) -> Error {
        Error::Invalid {
            field,
            msg: msg.to_string(),
        }
    }

    /// The error under all the context that was added to it.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// True when the error is about how dkimd was called or what it was given
    /// (exit code 2): a usage error, an invalid value, an unknown name.
    pub fn is_usage(&self) -> bool {
        matches!(
            self.root(),
            Error::Usage(_) | Error::Invalid { .. } | Error::Form(_) | Error::NotFound(_)
        )
    }

    /// The field a validation error is about, with its message (the first,
    /// for a form with several).
    pub fn field(&self) -> Option<(Field, &str)> {
        self.fields().into_iter().next()
    }

    /// Every field a validation error is about, with its message.
    pub fn fields(&self) -> Vec<(Field, &str)> {
        match self.root() {
            Error::Invalid { field, msg } => vec![(*field, msg.as_str())],
            Error::Form(v) => v.iter().map(|(f, m)| (*f, m.as_str())).collect(),
            _ => Vec::new(),
        }
    }

    /// The whole story on one line: every context, then the cause.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}

impl From<hickory_net::NetError> for Error {
    fn from(e: hickory_net::NetError) -> Error {
        Error::Dns(e.to_string())
    }
}

impl From<dkim::KeyError> for Error {
    fn from(e: dkim::KeyError) -> Error {
        Error::Other(e.to_string())
    }
}

impl From<String> for Error {
    fn from(e: String) -> Error {
        Error::Other(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Other(e.to_string())
    }
}

impl From<std::fmt::Error> for Error {
    fn from(e: std::fmt::Error) -> Error {
        Error::Other(e.to_string())
    }
}

/// Adds a description of what was being done to an error (or to a `None`).
pub trait Context<T> {
    /// Wraps the error with `msg`.
    fn context(self, msg: impl fmt::Display) -> Result<T>;
    /// Wraps the error with the message `f` makes, made only on error.
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, msg: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            msg: msg.to_string(),
            source: Box::new(e.into()),
        })
    }
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Error::Context {
            msg: f().to_string(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, msg: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::Other(msg.to_string()))
    }
    fn with_context<M: fmt::Display>(self, f: impl FnOnce() -> M) -> Result<T> {
        self.ok_or_else(|| Error::Other(f().to_string()))
    }
}

/// `Err(Error::Other(format!(…)))`, returned.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Other(format!($($arg)*)))
    };
}

/// `Error::Other(format!(…))`.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::error::Error::Other(format!($($arg)*))
    };
}

pub(crate) use {bail, err};

/// Shorthand for returning a usage error.
pub fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Usage(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_reads_as_one_line() {
        let e: Result<()> = Err(Error::invalid(Field::Selector, "bad selector"));
        let e = e.context("enabling").unwrap_err();
        assert_eq!(e.field(), Some((Field::Selector, "bad selector")));
        assert_eq!(e.chain(), "enabling: bad selector");
        assert!(e.is_usage(), "an invalid value exits 2 like a usage error");
        assert!(!Error::Store("x".into()).is_usage());
        let u: Result<()> = usage("no such flag");
        assert!(u.context("x").unwrap_err().is_usage());
    }

    #[test]
    fn io_errors_are_not_printed_twice() {
        let e: std::result::Result<(), std::io::Error> =
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(
            e.context("reading f").unwrap_err().chain(),
            "reading f: gone"
        );
    }
}
