//! Program names and process infos: between rouse's configured names and supervisord's structs.

use std::collections::BTreeMap;
use std::fmt;

use super::xmlrpc::Value;
use crate::driver::{ProcessInfo, ProcessState};

/// A process as supervisord names it: `group:name`; a bare `name` is `name:name`
/// (SV:options.py `split_namespec`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespec {
    pub group: String,
    pub name: String,
}

impl Namespec {
    /// `"name"` or `"group:name"`. A whole group (`"g:"`, `"g:*"`), an empty part or a control
    /// character is refused: rouse drives exactly one process per server.
    pub fn parse(program: &str) -> Result<Namespec, &'static str> {
        if program.chars().any(char::is_control) {
            return Err("control characters cannot be part of a program name");
        }
        let (group, name) = program.split_once(':').unwrap_or((program, program));
        if name.is_empty() || name == "*" {
            return Err(
                "that names a whole group; rouse drives one process per server, \
                        named group:name",
            );
        }
        if group.is_empty() || name.contains(':') {
            return Err("expected name or group:name");
        }
        Ok(Namespec {
            group: group.to_owned(),
            name: name.to_owned(),
        })
    }

    /// As rouse shows a program it was not configured with: `name` for `name:name`.
    pub fn short(&self) -> String {
        if self.group == self.name {
            self.name.clone()
        } else {
            self.to_string()
        }
    }
}

/// What supervisord is sent: always `group:name`.
impl fmt::Display for Namespec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.group, self.name)
    }
}

/// The programs rouse manages on one supervisord, by supervisord's name, each with the
/// spelling rouse was configured with (so that `ProcessInfo::program` matches the config).
#[derive(Debug, Default)]
pub struct Programs {
    by_spec: BTreeMap<Namespec, String>,
}

impl Programs {
    pub fn new(programs: Vec<String>) -> Programs {
        let mut by_spec = BTreeMap::new();
        for program in programs {
            match Namespec::parse(&program) {
                Ok(spec) => {
                    if let Some(earlier) = by_spec.insert(spec, program.clone()) {
                        tracing::warn!(
                            "programs {earlier:?} and {program:?} are the same supervisord \
                             process; {program:?} is used"
                        );
                    }
                }
                // start/stop report it; there is nothing to observe.
                Err(why) => tracing::warn!("program {program:?} ignored: {why}"),
            }
        }
        Programs { by_spec }
    }

    /// The managed programs' infos in `all` (a getAllProcessInfo answer), in program-name
    /// order; a managed program supervisord does not have is `Unknown`.
    pub fn snapshot(&self, all: &Value, supervisor: &str) -> Result<Vec<ProcessInfo>, String> {
        let Some(items) = all.as_array() else {
            return Err(format!(
                "getAllProcessInfo answered a {}, not an array",
                all.kind()
            ));
        };
        let mut seen: BTreeMap<&str, ProcessInfo> = BTreeMap::new();
        for item in items {
            let (spec, info) = process_info(item)?;
            if let Some(program) = self.by_spec.get(&spec) {
                seen.insert(
                    program,
                    ProcessInfo {
                        program: program.clone(),
                        ..info
                    },
                );
            }
        }
        for program in self.by_spec.values() {
            seen.entry(program).or_insert_with(|| ProcessInfo {
                program: program.clone(),
                state: ProcessState::Unknown,
                pid: None,
                description: missing(supervisor),
            });
        }
        Ok(seen.into_values().collect())
    }
}

/// Why a program is Unknown: supervisord has no such process.
pub fn missing(supervisor: &str) -> String {
    format!(
        "not in the configuration of supervisord {supervisor} (add a [program:...] section \
         there and run supervisorctl update)"
    )
}

/// One getProcessInfo struct: the process's name, and its info with `program` set to the
/// short name.
pub fn process_info(v: &Value) -> Result<(Namespec, ProcessInfo), String> {
    let text = |field: &str| v.member(field).and_then(Value::as_str);
    let int = |field: &str| v.member(field).and_then(Value::as_int);
    let (Some(name), Some(group)) = (text("name"), text("group")) else {
        return Err(format!(
            "a process info without string name and group: {}",
            summary(v)
        ));
    };
    let spec = Namespec {
        group: group.to_owned(),
        name: name.to_owned(),
    };
    let state = match (int("state"), text("statename")) {
        (Some(code), _) => ProcessState::from_code(code),
        (None, Some(name)) => ProcessState::from_name(name),
        (None, None) => return Err(format!("no state for process {spec}")),
    };
    let pid = int("pid")
        .filter(|&p| p > 0)
        .and_then(|p| u32::try_from(p).ok());
    let said = text("description").unwrap_or_default();
    let description = match state {
        // supervisord says only when ("Nov 25 01:40 PM"); the status matters more.
        ProcessState::Exited => match int("exitstatus") {
            Some(status) if said.is_empty() => format!("exited with status {status}"),
            Some(status) => format!("exited with status {status} ({said})"),
            None => said.to_owned(),
        },
        ProcessState::Fatal | ProcessState::Backoff if said.is_empty() => {
            text("spawnerr").unwrap_or_default().to_owned()
        }
        _ => said.to_owned(),
    };
    let info = ProcessInfo {
        program: spec.short(),
        state,
        pid,
        description,
    };
    Ok((spec, info))
}

/// A value for an error message: its first 120 characters (an answer can be megabytes).
pub(super) fn summary(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 120 {
        format!("{}...", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisord::xmlrpc::decode_response;

    fn answer(body: &[u8]) -> Value {
        decode_response(body).unwrap().unwrap()
    }

    #[test]
    fn namespecs() {
        let spec = |g: &str, n: &str| Namespec {
            group: g.to_owned(),
            name: n.to_owned(),
        };
        assert_eq!(Namespec::parse("app0"), Ok(spec("app0", "app0")));
        assert_eq!(Namespec::parse("g:a"), Ok(spec("g", "a")));
        assert_eq!(Namespec::parse("x:x"), Ok(spec("x", "x")));
        assert_eq!(Namespec::parse("app0").unwrap().to_string(), "app0:app0");
        assert_eq!(Namespec::parse("app0:app0").unwrap().short(), "app0");
        assert_eq!(Namespec::parse("g:a").unwrap().short(), "g:a");
        for bad in ["", "g:", "g:*", ":a", "a:b:c", "a\nb"] {
            assert!(Namespec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn snapshot_keeps_configured_spellings() {
        let all = answer(include_bytes!("fixtures/all_info.xml"));
        let programs = Programs::new(vec![
            "app0:app0".to_owned(),
            "g:a".to_owned(),
            "nosuch".to_owned(),
        ]);
        let infos = programs.snapshot(&all, "main").unwrap();
        let names: Vec<&str> = infos.iter().map(|i| i.program.as_str()).collect();
        assert_eq!(names, ["app0:app0", "g:a", "nosuch"]);
        assert_eq!(infos[0].state, ProcessState::Starting);
        assert_eq!(infos[0].pid, Some(16506));
        assert_eq!(infos[1].pid, Some(16564));
        assert_eq!(infos[2].state, ProcessState::Unknown);
        assert!(infos[2].description.contains("supervisord main"));
    }

    #[test]
    fn infos_of_each_state() {
        let (spec, fatal) =
            process_info(&answer(include_bytes!("fixtures/info_fatal.xml"))).unwrap();
        assert_eq!(spec.short(), "crashy");
        assert_eq!(fatal.state, ProcessState::Fatal);
        assert_eq!(fatal.pid, None);
        assert_eq!(
            fatal.description,
            "Exited too quickly (process log may have details)"
        );
        let (_, exited) =
            process_info(&answer(include_bytes!("fixtures/info_exited.xml"))).unwrap();
        assert_eq!(exited.state, ProcessState::Exited);
        assert!(exited.description.starts_with("exited with status 0 ("));
        let (_, running) =
            process_info(&answer(include_bytes!("fixtures/info_running.xml"))).unwrap();
        assert_eq!(running.state, ProcessState::Running);
        assert!(running.description.starts_with("pid 16506, uptime"));
        let (spec, _) = process_info(&answer(include_bytes!("fixtures/info_group.xml"))).unwrap();
        assert_eq!(spec.short(), "g:a");
    }

    #[test]
    fn odd_infos() {
        let s = |members: Vec<(&str, Value)>| {
            Value::Struct(
                members
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            )
        };
        // Wrong types, missing fields, huge and negative pids.
        assert!(process_info(&Value::Int(3)).is_err());
        assert!(process_info(&s(vec![("name", Value::str("a"))])).is_err());
        assert!(
            process_info(&s(vec![
                ("name", Value::str("a")),
                ("group", Value::Int(1)),
                ("state", Value::Int(20)),
            ]))
            .is_err()
        );
        assert!(
            process_info(&s(vec![
                ("name", Value::str("a")),
                ("group", Value::str("a"))
            ]))
            .is_err()
        );
        for (pid, want) in [
            (Value::Int(1 << 40), None),
            (Value::Int(-1), None),
            (Value::str("12"), None),
            (Value::Int(12), Some(12)),
        ] {
            let (_, info) = process_info(&s(vec![
                ("name", Value::str("a")),
                ("group", Value::str("a")),
                ("statename", Value::str("running")),
                ("pid", pid),
            ]))
            .unwrap();
            assert_eq!(info.state, ProcessState::Running);
            assert_eq!(info.pid, want);
        }
        let (_, info) = process_info(&s(vec![
            ("name", Value::str("a")),
            ("group", Value::str("a")),
            ("state", Value::Int(i64::MAX)),
        ]))
        .unwrap();
        assert_eq!(info.state, ProcessState::Unknown);
        assert!(
            Programs::new(vec![])
                .snapshot(&Value::Bool(true), "m")
                .is_err()
        );
    }
}
