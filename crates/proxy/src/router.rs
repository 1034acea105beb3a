//! Which upstream a request goes to: its Host, then the longest matching `path_prefix`.
//!
//! Prefixes match literally, as nginx's prefix locations do ("/api" matches "/apix" too). A host
//! with upstreams of its own falls back to the default upstreams (those without `hosts`) when none
//! of its prefixes matches.

use std::collections::HashMap;

/// Routes to upstream positions (indices into the caller's upstream list).
#[derive(Debug, Default, Clone)]
pub struct Router {
    by_host: HashMap<Vec<u8>, Vec<(String, usize)>>,
    default: Vec<(String, usize)>,
}

impl Router {
    /// `upstreams` yields, per upstream in order, its hosts (lower-case, no port) and its prefix.
    pub fn new<'a, I>(upstreams: I) -> Router
    where
        I: IntoIterator<Item = (&'a [String], &'a str)>,
    {
        let mut r = Router::default();
        for (i, (hosts, prefix)) in upstreams.into_iter().enumerate() {
            if hosts.is_empty() {
                r.default.push((prefix.to_owned(), i));
            }
            for h in hosts {
                r.by_host
                    .entry(h.clone().into_bytes())
                    .or_default()
                    .push((prefix.to_owned(), i));
            }
        }
        // Longest prefix first, so the first match is the best one.
        for list in r
            .by_host
            .values_mut()
            .chain(std::iter::once(&mut r.default))
        {
            list.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        }
        r
    }

    /// `host` must already be lower-case without port (see `headers::host_of`). Bytes, as
    /// the fast path has them (`str` too).
    pub fn route(&self, host: impl AsRef<[u8]>, path: impl AsRef<[u8]>) -> Option<usize> {
        fn first_match(list: &[(String, usize)], path: &[u8]) -> Option<usize> {
            list.iter()
                .find(|(p, _)| path.starts_with(p.as_bytes()))
                .map(|(_, i)| *i)
        }
        let path = path.as_ref();
        self.by_host
            .get(host.as_ref())
            .and_then(|l| first_match(l, path))
            .or_else(|| first_match(&self.default, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(spec: &[(&[&str], &str)]) -> Router {
        let owned: Vec<(Vec<String>, String)> = spec
            .iter()
            .map(|(h, p)| (h.iter().map(|s| s.to_string()).collect(), p.to_string()))
            .collect();
        Router::new(owned.iter().map(|(h, p)| (h.as_slice(), p.as_str())))
    }

    #[test]
    fn host_then_longest_prefix() {
        let r = router(&[
            (&["a.example"], "/"),
            (&["a.example"], "/api"),
            (&[], "/"),
            (&["b.example"], "/static"),
        ]);
        assert_eq!(r.route("a.example", "/"), Some(0));
        assert_eq!(r.route("a.example", "/api/v1"), Some(1));
        assert_eq!(r.route("unknown", "/api"), Some(2));
        assert_eq!(r.route("b.example", "/static/x.css"), Some(3));
        // b.example has no "/" of its own: the default upstream answers.
        assert_eq!(r.route("b.example", "/other"), Some(2));
    }

    #[test]
    fn no_default_means_no_route() {
        let r = router(&[(&["a.example"], "/app")]);
        assert_eq!(r.route("a.example", "/"), None);
        assert_eq!(r.route("z", "/app"), None);
    }
}
