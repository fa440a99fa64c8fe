//! The clock the core reads: the system's, or a fixed one in tests, and the
//! calendar forms dkimd writes (year-month selectors, zone serials, RFC 3339
//! timestamps).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        now()
    }
}

/// A clock that says what it is told (tests).
#[derive(Clone, Debug, Default)]
pub struct FixedClock(Arc<AtomicU64>);

impl FixedClock {
    /// A clock stopped at `secs` since the epoch.
    pub fn at(secs: u64) -> FixedClock {
        FixedClock(Arc::new(AtomicU64::new(secs)))
    }

    /// Moves the clock on by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a shared handle.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Seconds since the epoch by the system clock (0 before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn civil(secs: u64) -> jiff::civil::DateTime {
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_zoned(jiff::tz::TimeZone::UTC).datetime()
}

/// The date as YYYYMMDD (a zone serial's date form).
pub fn yyyymmdd(secs: u64) -> u32 {
    let d = civil(secs);
    let (y, m, day) = (
        i32::from(d.year()),
        i32::from(d.month()),
        i32::from(d.day()),
    );
    u32::try_from(y * 10_000 + m * 100 + day).unwrap_or(0)
}

/// An RFC 3339 time (`2027-01-15T10:00:00Z`) as epoch seconds.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let t: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2027-01-15T10:00:00Z: {e}"))?;
    u64::try_from(t.as_second()).map_err(|_| format!("{s:?} is before 1970"))
}

/// The year and month as YYYYMM, e.g. `202612`: the default selector.
pub fn year_month(secs: u64) -> String {
    (yyyymmdd(secs) / 100).to_string()
}

/// An age in the largest whole unit: `45s`, `3m`, `3h`, `12d`.
pub fn short_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7_199 => format!("{}m", secs / 60),
        7_200..=172_799 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// An RFC 3339 UTC timestamp to the second, e.g. `2026-11-24T22:41:37Z`.
pub fn utc_timestamp(secs: u64) -> String {
    civil(secs).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_forms() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        // 2026-12-01T21:03:43Z
        assert_eq!(utc_timestamp(1_796_159_023), "2026-12-01T21:03:43Z");
        assert_eq!(yyyymmdd(1_796_159_023), 20261201);
        assert_eq!(year_month(1_796_159_023), "202612");
        // The last second of a month still belongs to it.
        assert_eq!(year_month(1_798_761_599), "202612");
        assert_eq!(year_month(1_798_761_600), "202701");
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::at(100);
        assert_eq!(c.now(), 100);
        c.advance(5);
        assert_eq!(c.now(), 105);
    }
}
