//! Upper bounds for every duration, size and count, and the readers that enforce them.
//!
//! A value far past any sensible setting is a typo (`"400000000000y"`, a size in the wrong
//! unit), and left unchecked it overflows the arithmetic that turns it into deadlines or
//! allocations. Each bound is generous: ten times what any deployment we know of uses, so it
//! only ever catches mistakes.

use std::time::Duration;

use toml::Spanned;

use super::Context;
use crate::duration::{FileDuration, format_duration};
use crate::size::{FileSize, format_size};

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);
pub(crate) const KIB: u64 = 1 << 10;
pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const GIB: u64 = 1 << 30;
pub(crate) const TIB: u64 = 1 << 40;

/// A duration with its default (in seconds), at most `max`.
pub(crate) fn duration(
    key: &str,
    value: &Option<Spanned<FileDuration>>,
    default_secs: u64,
    max: Duration,
    cx: &mut Context<'_>,
) -> Duration {
    let Some(value) = value else {
        return Duration::from_secs(default_secs);
    };
    let duration = value.get_ref().0;
    if duration > max {
        cx.error(
            value.span(),
            format!(
                "{key}: {} is too long (at most {})",
                format_duration(duration),
                format_duration(max)
            ),
        );
        return Duration::from_secs(default_secs);
    }
    duration
}

/// A duration that must not be zero either: a zero timeout or interval is never what was meant.
pub(crate) fn positive(
    key: &str,
    value: &Option<Spanned<FileDuration>>,
    default_secs: u64,
    max: Duration,
    cx: &mut Context<'_>,
) -> Duration {
    let duration = duration(key, value, default_secs, max, cx);
    if let Some(value) = value.as_ref().filter(|_| duration.is_zero()) {
        cx.error(value.span(), format!("{key}: must be more than 0s"));
    }
    duration
}

/// A size in bytes within `min..=max`, or its default.
pub(crate) fn bounded_size(
    key: &str,
    value: &Option<Spanned<FileSize>>,
    default: u64,
    range: (u64, u64),
    cx: &mut Context<'_>,
) -> u64 {
    let value = value
        .as_ref()
        .map(|v| Spanned::new(v.span(), v.get_ref().0));
    within(key, value, default, range, format_size, cx)
}

/// A count within `min..=max`, or its default.
pub(crate) fn count(
    key: &str,
    value: &Option<Spanned<u64>>,
    default: u64,
    range: (u64, u64),
    cx: &mut Context<'_>,
) -> u64 {
    let value = value.as_ref().map(|v| Spanned::new(v.span(), *v.get_ref()));
    within(key, value, default, range, |n| n.to_string(), cx)
}

/// `value` within `min..=max` (each shown by `show` in the error), or `default`.
fn within(
    key: &str,
    value: Option<Spanned<u64>>,
    default: u64,
    (min, max): (u64, u64),
    show: fn(u64) -> String,
    cx: &mut Context<'_>,
) -> u64 {
    let Some(value) = value else {
        return default;
    };
    let n = *value.get_ref();
    if !(min..=max).contains(&n) {
        cx.error(
            value.span(),
            format!(
                "{key}: {} is out of range ({} to {})",
                show(n),
                show(min),
                show(max)
            ),
        );
        return default;
    }
    n
}
