//! How many refused provider requests are written one by one: per client address, at most
//! `INBOUND_REFUSALS_PER_MINUTE` audit rows per window; beyond that a refusal is only counted
//! (metric [`UNRECORDED_TOTAL`] with `source` and `reason`) and summarized in one warn log line
//! per address and window, so a flood from one address cannot fill the database. The answer to
//! the client never changes.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses are tracked; when the table is full,
//! expired windows are dropped, and addresses that still find no room share one overflow window
//! with the same limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counter: refused provider requests not written as audit rows, labelled `source` and `reason`.
pub const UNRECORDED_TOTAL: &str = "wirehook_inbound_refusals_unrecorded_total";

/// Most addresses tracked at once (a window is about 64 bytes: under 1 MiB in all).
pub const MAX_TRACKED: usize = 10_000;

/// The limit: audit rows per address per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimit {
    /// Refusals written one by one per address and window.
    pub recorded: u32,
    /// The window (one minute outside tests).
    pub window: Duration,
}

impl RefusalLimit {
    /// `recorded` per minute.
    pub fn per_minute(recorded: u32) -> Self {
        Self {
            recorded,
            window: Duration::from_secs(60),
        }
    }
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Write its audit row.
    Record,
    /// Count it only: the address is over its limit in this window.
    CountOnly,
}

/// One address's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    recorded: u32,
    unrecorded: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            recorded: 0,
            unrecorded: 0,
        }
    }
}

/// Whose window a refusal counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    Address(IpAddr),
    /// Every address that found no room in the table.
    Overflow,
}

/// How often at most a full table is swept for expired windows (a sweep visits every entry).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The windows, and when the table was last swept.
#[derive(Debug, Default)]
struct Table {
    windows: HashMap<Bucket, Window>,
    swept: Option<Instant>,
}

/// The per-address refusal windows.
#[derive(Debug)]
pub struct RefusalLimiter {
    limit: RefusalLimit,
    max_tracked: usize,
    table: Mutex<Table>,
}

impl RefusalLimiter {
    /// A limiter tracking up to [`MAX_TRACKED`] addresses.
    pub fn new(limit: RefusalLimit) -> Self {
        Self::with_capacity(limit, MAX_TRACKED)
    }

    /// A limiter tracking up to `max_tracked` addresses (plus the overflow window).
    pub fn with_capacity(limit: RefusalLimit, max_tracked: usize) -> Self {
        Self {
            limit,
            max_tracked,
            table: Mutex::new(Table::default()),
        }
    }

    /// Whether the refusal of a request from `client` at `now` is written one by one.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Admission {
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut bucket = Bucket::Address(client);
        if !table.windows.contains_key(&bucket) && tracked(&table.windows) >= self.max_tracked {
            let due = table
                .swept
                .is_none_or(|swept| now.duration_since(swept) >= SWEEP_EVERY);
            if due {
                let window = self.limit.window;
                table.windows.retain(|bucket, w| {
                    let live = now.duration_since(w.started) < window;
                    if !live {
                        summarize(*bucket, w);
                    }
                    live || *bucket == Bucket::Overflow
                });
                table.swept = Some(now);
            }
            if tracked(&table.windows) >= self.max_tracked {
                bucket = Bucket::Overflow;
            }
        }
        let entry = table
            .windows
            .entry(bucket)
            .or_insert_with(|| Window::new(now));
        if now.duration_since(entry.started) >= self.limit.window {
            summarize(bucket, entry);
            *entry = Window::new(now);
        }
        if entry.recorded < self.limit.recorded {
            entry.recorded += 1;
            return Admission::Record;
        }
        entry.unrecorded += 1;
        if entry.unrecorded == 1 {
            tracing::warn!(
                client = %describe(bucket),
                limit = self.limit.recorded,
                window_secs = self.limit.window.as_secs(),
                "inbound refusals over the limit: counted, no longer recorded one by one \
                 until the window ends"
            );
        }
        Admission::CountOnly
    }

    /// Addresses tracked now, the overflow window not included.
    pub fn tracked(&self) -> usize {
        let table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tracked(&table.windows)
    }
}

/// Addresses in `windows`, the overflow window not included.
fn tracked(windows: &HashMap<Bucket, Window>) -> usize {
    windows.len() - usize::from(windows.contains_key(&Bucket::Overflow))
}

/// The one summary line of a window that counted refusals without recording them.
fn summarize(bucket: Bucket, window: &Window) {
    if window.unrecorded > 0 {
        tracing::warn!(
            client = %describe(bucket),
            recorded = window.recorded,
            unrecorded = window.unrecorded,
            "inbound refusals summary: refusals beyond the limit were counted, not recorded"
        );
    }
}

fn describe(bucket: Bucket) -> String {
    match bucket {
        Bucket::Address(ip) => ip.to_string(),
        Bucket::Overflow => "untracked addresses (table full)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn limit(recorded: u32) -> RefusalLimit {
        RefusalLimit {
            recorded,
            window: Duration::from_secs(60),
        }
    }

    fn recorded(limiter: &RefusalLimiter, client: IpAddr, n: usize, now: Instant) -> usize {
        (0..n)
            .filter(|_| limiter.admit(client, now) == Admission::Record)
            .count()
    }

    #[test]
    fn an_address_records_up_to_its_limit_per_window() {
        let limiter = RefusalLimiter::new(limit(3));
        let now = Instant::now();
        assert_eq!(recorded(&limiter, ip(1), 10, now), 3);
        assert_eq!(recorded(&limiter, ip(2), 10, now), 3, "addresses are apart");
        let later = now + Duration::from_secs(59);
        assert_eq!(recorded(&limiter, ip(1), 10, later), 0);
        let next_window = now + Duration::from_secs(60);
        assert_eq!(recorded(&limiter, ip(1), 10, next_window), 3);
    }

    #[test]
    fn the_table_never_tracks_more_than_its_capacity() {
        let limiter = RefusalLimiter::with_capacity(limit(2), 100);
        let now = Instant::now();
        let mut total = 0;
        for n in 0..10_000 {
            total += recorded(&limiter, ip(n), 3, now);
            assert!(limiter.tracked() <= 100);
        }
        // 100 tracked addresses and the overflow window record; nobody else does.
        assert_eq!(total, 100 * 2 + 2);
    }

    #[test]
    fn expired_windows_make_room_for_new_addresses() {
        let limiter = RefusalLimiter::with_capacity(limit(1), 2);
        let now = Instant::now();
        assert_eq!(recorded(&limiter, ip(1), 1, now), 1);
        assert_eq!(recorded(&limiter, ip(2), 1, now), 1);
        let later = now + Duration::from_secs(61);
        assert_eq!(recorded(&limiter, ip(3), 1, later), 1);
        assert_eq!(recorded(&limiter, ip(4), 1, later), 1);
        assert_eq!(limiter.tracked(), 2);
    }
}
