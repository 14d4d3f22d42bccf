//! What the daemon benches share: one command-line parser (options with environment
//! fallbacks), the daemon's readiness line read by field, and JSON reports written from
//! typed structs.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// One option of a bench: its names (`--rules`, and any aliases) and the environment
/// variable that sets it when the command line does not.
pub struct Opt {
    pub names: &'static [&'static str],
    pub env: Option<&'static str>,
}

impl Opt {
    pub const fn new(names: &'static [&'static str], env: Option<&'static str>) -> Opt {
        Opt { names, env }
    }
}

/// The values given for a bench's options, by first name.
#[derive(Debug, Default)]
pub struct Options {
    values: HashMap<&'static str, String>,
}

impl Options {
    /// Reads the process's arguments (after the program) and then the environment.
    /// `cargo bench` passes `--bench` and may pass filters: both are ignored. `-h`/`--help`
    /// prints `usage` and exits; an unknown option panics.
    pub fn parse(usage: &str, opts: &[Opt]) -> Options {
        Self::parse_from(
            std::env::args().skip(1),
            |k| std::env::var(k).ok(),
            usage,
            opts,
        )
    }

    /// [`parse`](Self::parse) over given arguments and environment.
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
        usage: &str,
        opts: &[Opt],
    ) -> Options {
        let mut values = HashMap::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if key == "--bench" {
                continue;
            }
            if key == "-h" || key == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            let Some(opt) = opts.iter().find(|o| o.names.contains(&key.as_str())) else {
                if key.starts_with('-') {
                    panic!("unknown option {key}");
                }
                continue;
            };
            let value = inline
                .or_else(|| it.next())
                .expect("a value after the option");
            values.insert(opt.names[0], value);
        }
        for opt in opts {
            if let (false, Some(var)) = (values.contains_key(opt.names[0]), opt.env) {
                if let Some(value) = env(var) {
                    values.insert(opt.names[0], value);
                }
            }
        }
        Options { values }
    }

    /// The value of the option first named `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A number (underscores allowed), or `default`.
    pub fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .map(|s| parse_num(s, name))
            .unwrap_or(default)
    }
}

/// A number such as `100_000`; panics naming `what` otherwise.
pub fn parse_num(s: &str, what: &str) -> u64 {
    s.trim()
        .replace('_', "")
        .parse()
        .unwrap_or_else(|_| panic!("bad {what}: {s}"))
}

/// A comma-separated list of numbers; empty for `""`, `none` or `off`.
pub fn parse_list(s: &str, what: &str) -> Vec<usize> {
    if matches!(s.trim(), "" | "none" | "off") {
        return Vec::new();
    }
    s.split(',').map(|x| parse_num(x, what) as usize).collect()
}

/// A comma-separated list of `option`'s choices, e.g. `cold,warm`.
pub fn parse_choices<T: Copy>(s: &str, option: &str, choices: &[(&str, T)]) -> Vec<T> {
    s.split(',')
        .map(|x| {
            let x = x.trim();
            choices
                .iter()
                .find(|(name, _)| *name == x)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| {
                    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                    panic!("{option} takes {}, not {x}", names.join(", "))
                })
        })
        .collect()
}

/// The daemon's readiness line, `Timer sensor ready: N rules running` (README, "What it
/// does"), as a JSON log line: the number of rules running from its `rules_running` field.
/// `None` for any other line.
pub fn rules_running(line: &Value) -> Option<u64> {
    line.get("rules_running")?.as_u64()
}

/// Writes `report` as pretty JSON to `path`, creating its directory.
pub fn write_json<T: Serialize>(path: &Path, report: &T) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let text = serde_json::to_string_pretty(report).expect("a report is JSON");
    std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt::new(&["--scenario", "--scenarios"], Some("X_SCENARIO")),
        Opt::new(&["--seconds"], Some("X_SECONDS")),
        Opt::new(&["--out"], None),
    ];

    #[test]
    fn options_come_from_arguments_then_the_environment() {
        let args = ["--bench", "--scenarios=1k,10k", "filter", "--out", "x.json"];
        let env = |k: &str| match k {
            "X_SCENARIO" => Some("100k".to_string()),
            "X_SECONDS" => Some("1_000".to_string()),
            _ => None,
        };
        let o = Options::parse_from(args.map(String::from), env, "usage", OPTS);
        assert_eq!(o.get("--scenario"), Some("1k,10k"));
        assert_eq!(o.num("--seconds", 60), 1000);
        assert_eq!(o.get("--out"), Some("x.json"));
        let o = Options::parse_from(Vec::<String>::new(), |_| None, "usage", OPTS);
        assert_eq!(o.num("--seconds", 60), 60);
        assert_eq!(o.get("--scenario"), None);
    }

    #[test]
    #[should_panic(expected = "unknown option --nope")]
    fn an_unknown_option_is_refused() {
        Options::parse_from(["--nope".to_string()], |_| None, "usage", OPTS);
    }

    #[test]
    fn lists_and_choices() {
        assert_eq!(parse_list("1000, 100_000", "--rules"), [1000, 100_000]);
        assert!(parse_list("none", "--rules").is_empty());
        assert_eq!(
            parse_choices("warm,cold", "--cache", &[("cold", 0), ("warm", 1)]),
            [1, 0]
        );
    }

    #[test]
    fn the_readiness_line_is_read_by_field() {
        let line: Value = serde_json::from_str(
            r#"{"level":"INFO","message":"Timer sensor ready: 3 rules running","rules_running":3}"#,
        )
        .unwrap();
        assert_eq!(rules_running(&line), Some(3));
        let other: Value =
            serde_json::from_str(r#"{"level":"INFO","message":"Timer started for rule"}"#).unwrap();
        assert_eq!(rules_running(&other), None);
    }
}
