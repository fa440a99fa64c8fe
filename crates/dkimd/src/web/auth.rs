//! Passwords, sessions and the login rate limit of the admin page.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use base64::Engine as _;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The shortest password `dkimd admin passwd` accepts.
pub const MIN_PASSWORD: usize = 12;

/// Hashes a password (Argon2id, the crate's default cost, random salt) to a
/// PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let h: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(h.to_string())
}

/// Checks a password against a PHC string; a damaged hash never matches.
pub fn check_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash nobody's password matches, checked for unknown users so that a
/// wrong user name costs as much time as a wrong password.
pub fn dummy_hash() -> String {
    hash_password(&random_token()).unwrap_or_default()
}

/// 32 random bytes, base64url: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // aws-lc's generator does not fail on Linux; should it, the all-zero
    // token is still refused below because it is never stored.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// One logged-in admin.
#[derive(Clone, Debug)]
pub struct Session {
    /// The user.
    pub user: String,
    /// The CSRF token of its forms.
    pub csrf: String,
    /// The password hash at login: when it changes, the session ends.
    pub hash: String,
    created: Instant,
    seen: Instant,
    /// The steps of the last change, shown once on the next page.
    pub flash: Option<super::flash::Flash>,
}

/// The sessions of one running daemon (in memory: a restart logs everyone out).
pub struct Sessions {
    map: HashMap<String, Session>,
    idle: Duration,
    lifetime: Duration,
}

/// Sessions kept at most; the least recently used goes first.
const MAX_SESSIONS: usize = 1000;

impl Sessions {
    /// Sessions that end after `idle` without a request, or `lifetime` after login.
    pub fn new(idle: Duration, lifetime: Duration) -> Sessions {
        Sessions {
            map: HashMap::new(),
            idle,
            lifetime,
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.created) < self.lifetime
    }

    /// Starts a session; returns its id (the cookie value).
    pub fn start(&mut self, user: &str, hash: &str) -> String {
        let now = Instant::now();
        if self.map.len() >= MAX_SESSIONS {
            let idle = self.idle;
            let lifetime = self.lifetime;
            self.map.retain(|_, s| {
                now.duration_since(s.seen) < idle && now.duration_since(s.created) < lifetime
            });
            if self.map.len() >= MAX_SESSIONS {
                if let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, s)| s.seen)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&oldest);
                }
            }
        }
        let id = random_token();
        self.map.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: random_token(),
                hash: hash.to_string(),
                created: now,
                seen: now,
                flash: None,
            },
        );
        id
    }

    /// The live session with this id, marked as used now; expired ones are dropped.
    pub fn touch(&mut self, id: &str) -> Option<&mut Session> {
        let now = Instant::now();
        let live = self.map.get(id).map(|s| self.live(s, now))?;
        if !live || id.is_empty() {
            self.map.remove(id);
            return None;
        }
        let s = self.map.get_mut(id)?;
        s.seen = now;
        Some(s)
    }

    /// Ends a session (logout, removed user).
    pub fn end(&mut self, id: &str) {
        self.map.remove(id);
    }
}

/// Failed logins per client address and per user name within a window.
pub struct Limiter {
    per_addr: HashMap<String, VecDeque<Instant>>,
    per_user: HashMap<String, VecDeque<Instant>>,
    attempts: usize,
    window: Duration,
}

/// Keys kept at most per map before old ones are pruned.
const MAX_KEYS: usize = 10_000;

impl Limiter {
    /// At most `attempts` failed logins per address and per user in `window`.
    pub fn new(attempts: u32, window: Duration) -> Limiter {
        Limiter {
            per_addr: HashMap::new(),
            per_user: HashMap::new(),
            attempts: usize::try_from(attempts).unwrap_or(usize::MAX),
            window,
        }
    }

    fn recent(map: &mut HashMap<String, VecDeque<Instant>>, key: &str, window: Duration) -> usize {
        let now = Instant::now();
        let Some(q) = map.get_mut(key) else {
            return 0;
        };
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        q.len()
    }

    /// Seconds to wait before another login may be tried, or `None`.
    pub fn blocked(&mut self, addr: &str, user: &str) -> Option<u64> {
        let window = self.window;
        let by_addr = Self::recent(&mut self.per_addr, addr, window) >= self.attempts;
        let by_user =
            Self::recent(&mut self.per_user, user, window) >= self.attempts.saturating_mul(4);
        if !by_addr && !by_user {
            return None;
        }
        let now = Instant::now();
        let oldest = [
            by_addr.then(|| self.per_addr.get(addr).and_then(|q| q.front().copied())),
            by_user.then(|| self.per_user.get(user).and_then(|q| q.front().copied())),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .max();
        let wait = oldest
            .map(|t| self.window.saturating_sub(now.duration_since(t)))
            .unwrap_or(self.window);
        Some(wait.as_secs().max(1))
    }

    /// Counts a failed login.
    pub fn failed(&mut self, addr: &str, user: &str) {
        let now = Instant::now();
        let window = self.window;
        for (map, key) in [(&mut self.per_addr, addr), (&mut self.per_user, user)] {
            if map.len() >= MAX_KEYS {
                map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
                if map.len() >= MAX_KEYS {
                    map.clear();
                }
            }
            map.entry(key.to_string()).or_default().push_back(now);
        }
    }

    /// A successful login clears its address's failures.
    pub fn succeeded(&mut self, addr: &str) {
        self.per_addr.remove(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(check_password("correct horse battery", &h));
        assert!(!check_password("correct horse batterY", &h));
        assert!(!check_password("x", "not a phc string"));
    }

    #[test]
    fn limiter_blocks_after_the_allowed_failures() {
        let mut l = Limiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(l.blocked("1.2.3.4", "admin"), None);
            l.failed("1.2.3.4", "admin");
        }
        let wait = l.blocked("1.2.3.4", "admin").unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        // Another address may still try, until the user's own limit (4×).
        assert_eq!(l.blocked("5.6.7.8", "admin"), None);
        for i in 0..9 {
            l.failed(&format!("10.0.0.{i}"), "admin");
        }
        assert!(l.blocked("5.6.7.8", "admin").is_some());
        assert_eq!(l.blocked("5.6.7.8", "other"), None);
    }

    #[test]
    fn the_session_table_is_bounded() {
        let mut s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let first = s.start("admin", "h");
        for _ in 0..MAX_SESSIONS + 10 {
            s.start("admin", "h");
        }
        assert!(s.map.len() <= MAX_SESSIONS);
        assert!(
            s.touch(&first).is_none(),
            "the least recently used went first"
        );
        let mut l = Limiter::new(1, Duration::from_secs(60));
        for i in 0..MAX_KEYS + 10 {
            l.failed(&format!("addr{i}"), "u");
        }
        assert!(l.per_addr.len() <= MAX_KEYS);
    }

    #[test]
    fn sessions_expire_when_idle() {
        // Generous margins: the machine may be busy (no wall-clock
        // assertion, only "used within 2 s" and "idle for 2.3 s").
        let mut s = Sessions::new(Duration::from_secs(2), Duration::from_secs(60));
        let id = s.start("admin", "h");
        assert_eq!(s.touch(&id).unwrap().user, "admin");
        std::thread::sleep(Duration::from_millis(2300));
        assert!(s.touch(&id).is_none());
        assert!(s.touch("").is_none());
        assert!(!same_secret("", ""));
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
    }
}
