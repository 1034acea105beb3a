//! `[log]`'s access-log keys: where the lines go, their format, and which answers are logged.

use std::path::PathBuf;

use crate::file::{FileAccessLog, FileAccessLogFormat, FileLog};
use crate::model::AccessLogFormat;

use super::Context;

/// What `[log]` says of the access log.
pub(super) struct AccessLog {
    pub on: bool,
    pub file: Option<PathBuf>,
    pub format: AccessLogFormat,
    pub status: Vec<(u16, u16)>,
    pub sample: f64,
}

pub(super) fn access_log(file: Option<&FileLog>, cx: &mut Context<'_>) -> AccessLog {
    let (on, path) = match file.and_then(|f| f.access_log.as_ref()) {
        None => (true, None),
        Some(value) => match value.get_ref() {
            FileAccessLog::On(on) => (*on, None),
            // A word is a typo for a boolean ("yes", "on", "stderr"), not a file in the
            // working directory: a path says it is one.
            FileAccessLog::Path(path) if path.contains('/') && !path.trim().is_empty() => {
                (true, Some(PathBuf::from(path)))
            }
            FileAccessLog::Path(path) => {
                cx.error(
                    value.span(),
                    format!(
                        "access_log = {path:?}: write a boolean (true: stderr, false: off) or \
                         the path of a file, with a '/', such as \"/var/log/rouse/access.log\""
                    ),
                );
                (true, None)
            }
        },
    };
    let format = match file.and_then(|f| f.access_log_format) {
        Some(FileAccessLogFormat::Json) => AccessLogFormat::Json,
        Some(FileAccessLogFormat::Combined) | None => AccessLogFormat::Combined,
    };
    let mut status = Vec::new();
    if let Some(list) = file.and_then(|f| f.access_log_status.as_ref()) {
        if list.get_ref().is_empty() {
            cx.error(
                list.span(),
                "access_log_status = []: no answer would be logged; remove the key to log \
                 every status, or set access_log = false",
            );
        }
        for entry in list.get_ref() {
            match status_range(entry.get_ref()) {
                Some(range) => status.push(range),
                None => cx.error(
                    entry.span(),
                    format!(
                        "access_log_status: {:?} is not a status; write a class such as \
                         \"4xx\" or \"5xx\", or a code from 100 to 599 such as \"404\"",
                        entry.get_ref()
                    ),
                ),
            }
        }
    }
    let sample = match file.and_then(|f| f.access_log_sample.as_ref()) {
        None => 1.0,
        Some(value) => {
            let fraction = *value.get_ref();
            if fraction > 0.0 && fraction <= 1.0 {
                fraction
            } else {
                cx.error(
                    value.span(),
                    format!(
                        "access_log_sample = {fraction}: write the fraction of answers under 400 \
                         to log, more than 0 and at most 1 (such as 0.1); errors are always \
                         logged"
                    ),
                );
                1.0
            }
        }
    };
    AccessLog {
        on,
        file: path,
        format,
        status,
        sample,
    }
}

/// `"4xx"` → 400..=499, `"404"` → 404..=404.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let bytes = text.as_bytes();
    if bytes.len() != 3 || !(b'1'..=b'5').contains(&bytes[0]) {
        return None;
    }
    let class = u16::from(bytes[0] - b'0') * 100;
    if bytes[1..].eq_ignore_ascii_case(b"xx") {
        return Some((class, class + 99));
    }
    let code: u16 = text.parse().ok()?;
    Some((code, code))
}

#[cfg(test)]
mod tests {
    use super::status_range;

    #[test]
    fn classes_and_codes() {
        assert_eq!(status_range("4xx"), Some((400, 499)));
        assert_eq!(status_range("5XX"), Some((500, 599)));
        assert_eq!(status_range("404"), Some((404, 404)));
        for bad in ["6xx", "0xx", "4x", "40", "4044", "x04", "", "+04", "4x4"] {
            assert_eq!(status_range(bad), None, "{bad}");
        }
    }
}
