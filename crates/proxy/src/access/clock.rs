//! The time of a log line, in the system's time zone with its offset, formatted once a second
//! per thread (as nginx updates its cached `$time_local`).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// One second's time, formatted both ways.
pub(crate) struct Stamp {
    pub second: i64,
    /// `28/Nov/2026:10:00:00 +0000`
    pub local: String,
    /// `2026-11-28T10:00:00+00:00`
    pub rfc3339: String,
}

thread_local! {
    static NOW: RefCell<Option<Stamp>> = const { RefCell::new(None) };
}

/// Calls `f` with this second's stamp.
pub(crate) fn with_now<R>(f: impl FnOnce(&Stamp) -> R) -> R {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    NOW.with_borrow_mut(|now| {
        if now.as_ref().is_none_or(|s| s.second != second) {
            *now = Some(stamp(second, &TimeZone::system()));
        }
        match now {
            Some(s) => f(s),
            None => f(&stamp(second, &TimeZone::UTC)),
        }
    })
}

pub(crate) fn stamp(second: i64, tz: &TimeZone) -> Stamp {
    let zoned = Timestamp::from_second(second)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone());
    Stamp {
        second,
        local: zoned.strftime("%d/%b/%Y:%H:%M:%S %z").to_string(),
        rfc3339: zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_with_its_offset() {
        let tz = TimeZone::fixed(jiff::tz::offset(-5));
        // 2026-11-28T15:00:00Z
        let s = stamp(1_795_878_000, &tz);
        assert_eq!(s.local, "28/Nov/2026:10:00:00 -0500");
        assert_eq!(s.rfc3339, "2026-11-28T10:00:00-05:00");
        let utc = stamp(1_795_878_000, &TimeZone::UTC);
        assert_eq!(utc.local, "28/Nov/2026:15:00:00 +0000");
        assert_eq!(utc.rfc3339, "2026-11-28T15:00:00+00:00");
    }
}
