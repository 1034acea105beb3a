//! The key layout under `/rouse/NAME/`, both ways: the keys this replica writes, and what a
//! key read or watched is about.

/// One cluster's keys, as this replica writes them.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    id: String,
}

/// What a key under the prefix is about; anything else under it is ignored (a newer
/// version's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    Member(&'a str),
    Load(&'a str),
    Leader,
    Drain(&'a str, usize),
}

impl Keys {
    pub(crate) fn new(name: &str, id: &str) -> Keys {
        Keys {
            prefix: format!("/rouse/{name}/"),
            id: id.to_owned(),
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Every key of the cluster starts with it (read and watched as a prefix).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn member(&self) -> String {
        format!("{}members/{}", self.prefix, self.id)
    }

    pub(crate) fn load(&self) -> String {
        format!("{}load/{}", self.prefix, self.id)
    }

    pub(crate) fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    pub(crate) fn drain(&self, upstream: &str, index: usize) -> String {
        format!("{}drain/{upstream}/{index}", self.prefix)
    }

    /// None for a key outside the prefix, not UTF-8, or of no known kind.
    pub(crate) fn parse<'a>(&self, key: &'a [u8]) -> Option<Key<'a>> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        if rest == "leader" {
            return Some(Key::Leader);
        }
        // Ids hold `/` (host/listen address): everything after the kind is the id.
        if let Some(id) = rest.strip_prefix("members/") {
            return (!id.is_empty()).then_some(Key::Member(id));
        }
        if let Some(id) = rest.strip_prefix("load/") {
            return (!id.is_empty()).then_some(Key::Load(id));
        }
        let (upstream, index) = rest.strip_prefix("drain/")?.rsplit_once('/')?;
        let index = index.parse().ok()?;
        (!upstream.is_empty()).then_some(Key::Drain(upstream, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_written_parse_back() {
        let keys = Keys::new("web", "edge-1/0.0.0.0:8080");
        assert_eq!(keys.member(), "/rouse/web/members/edge-1/0.0.0.0:8080");
        assert_eq!(
            keys.parse(keys.member().as_bytes()),
            Some(Key::Member("edge-1/0.0.0.0:8080"))
        );
        assert_eq!(
            keys.parse(keys.load().as_bytes()),
            Some(Key::Load("edge-1/0.0.0.0:8080"))
        );
        assert_eq!(keys.parse(keys.leader().as_bytes()), Some(Key::Leader));
        assert_eq!(
            keys.parse(keys.drain("app", 3).as_bytes()),
            Some(Key::Drain("app", 3))
        );
    }

    #[test]
    fn foreign_or_malformed_keys_are_ignored() {
        let keys = Keys::new("web", "a");
        for key in [
            &b"/rouse/other/leader"[..],
            b"/rouse/web/leaders",
            b"/rouse/web/members/",
            b"/rouse/web/load/",
            b"/rouse/web/drain/app",
            b"/rouse/web/drain/app/x",
            b"/rouse/web/drain//1",
            b"/rouse/web/drain/app/-1",
            b"/rouse/web/future/thing",
            b"/rouse/web/members/\xff",
        ] {
            assert_eq!(keys.parse(key), None, "{}", String::from_utf8_lossy(key));
        }
    }
}
