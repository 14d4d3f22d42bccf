//! Loading a component: compile once (or reuse the compiled form cached on disk), check
//! that it speaks a compatible `attune:timer` version and imports nothing it may not, and
//! link it into an instance template.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::bindings::{TimerComponentPre, TIMER_INTERFACE, WIT_PACKAGE_VERSION};
use super::sandbox::{self, SandboxCtx};
use super::types::LoadError;

/// A compiled, checked and linked component, ready to instantiate.
pub(crate) struct Loaded {
    pub(crate) pre: TimerComponentPre<SandboxCtx>,
    pub(crate) content_hash: String,
    pub(crate) wit_version: String,
}

/// Where compiled components are kept between runs. Compiling takes ~100+ ms per
/// component; loading the cached form takes about a millisecond.
#[derive(Debug, Clone, Default)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// No caching: always compile.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// Cache compiled components in `dir` (created when first needed).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
        }
    }

    /// The default place: `$XDG_CACHE_HOME/attune-timer-sensor`, else
    /// `$HOME/.cache/attune-timer-sensor`, else no caching.
    pub fn default_location() -> Self {
        Self::default_location_from(|key| std::env::var(key).ok())
    }

    /// [`default_location`](Self::default_location), with the environment read through
    /// `var` (the settings read theirs through their own source).
    pub fn default_location_from(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |key: &str| var(key).filter(|v| !v.trim().is_empty());
        let base = set("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")));
        Self {
            dir: base.map(|b| b.join("attune-timer-sensor")),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The cache file for these bytes on this engine: keyed by content hash, wasmtime
    /// version and the engine's compilation settings, so a stale entry is never picked.
    fn entry(&self, engine: &Engine, content_hash: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(dir.join(format!(
            "{content_hash}-wasmtime{}-{:016x}.cwasm",
            env!("WASMTIME_VERSION"),
            hasher.finish()
        )))
    }

    fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
    ) -> Result<Component, LoadError> {
        let entry = self.entry(engine, content_hash);
        if let Some(path) = &entry {
            if let Ok(compiled) = std::fs::read(path) {
                // SAFETY: the file was written by `Component::serialize` of this host (its
                // name carries the content hash and engine settings, and it lives in our own
                // cache directory); wasmtime still checks its header and refuses a mismatch.
                match unsafe { Component::deserialize(engine, &compiled) } {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "Ignoring unusable compiled-component cache entry"
                    ),
                }
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(path) = &entry {
            if let Err(e) = store_atomically(path, &component) {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "Cannot write the compiled-component cache; continuing without it"
                );
            }
        }
        Ok(component)
    }
}

fn store_atomically(path: &Path, component: &Component) -> std::io::Result<()> {
    let compiled = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiles (or loads from cache), checks and links a component.
pub(crate) fn load(
    engine: &Engine,
    bytes: &[u8],
    cache: &CompileCache,
) -> Result<Loaded, LoadError> {
    let content_hash = content_hash(bytes);
    let component = cache.compile(engine, bytes, &content_hash)?;
    let ty = component.component_type();

    let wit_version = check_exports(ty.exports(engine).map(|(name, _)| name))?;
    let forbidden: Vec<&str> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !sandbox::import_is_granted(name))
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImports {
            imports: forbidden.join(", "),
        });
    }

    let linker = sandbox::linker(engine).map_err(|e| LoadError::Link(format!("{e:#}")))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Link(format!("{e:#}")))?;
    let pre =
        TimerComponentPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
    Ok(Loaded {
        pre,
        content_hash,
        wit_version,
    })
}

/// Finds the exported `attune:timer/timer@X` and checks X against the host's version.
fn check_exports<'a>(exports: impl Iterator<Item = &'a str>) -> Result<String, LoadError> {
    let exports: Vec<&str> = exports.collect();
    let prefix = format!("{TIMER_INTERFACE}@");
    let Some(found) = exports
        .iter()
        .find_map(|name| name.strip_prefix(prefix.as_str()))
    else {
        return Err(LoadError::NotATimer {
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            },
        });
    };
    if !semver_compatible(found, WIT_PACKAGE_VERSION) {
        return Err(LoadError::IncompatibleVersion {
            found: found.to_string(),
            host: WIT_PACKAGE_VERSION,
            compatible: compatible_range(WIT_PACKAGE_VERSION),
        });
    }
    Ok(found.to_string())
}

/// Semver compatibility: same major; while the major is 0, same minor too.
fn semver_compatible(found: &str, host: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(found), parts(host)) {
        (Some((0, fmin)), Some((0, hmin))) => fmin == hmin,
        (Some((fmaj, _)), Some((hmaj, _))) => fmaj == hmaj,
        _ => false,
    }
}

fn compatible_range(host: &str) -> String {
    let mut it = host.split('.');
    match (it.next(), it.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}.x"),
        (Some(major), _) => format!("{major}.x"),
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_host_version() {
        let v = check_exports(["attune:timer/timer@0.1.0"].into_iter()).unwrap();
        assert_eq!(v, "0.1.0");
    }

    #[test]
    fn refuses_another_version_by_name() {
        let err = check_exports(["attune:timer/timer@0.2.0"].into_iter()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("attune:timer@0.2.0"), "{msg}");
        assert!(msg.contains("attune:timer@0.1.0"), "{msg}");
    }

    #[test]
    fn semver_rules() {
        assert!(semver_compatible("0.1.7", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(!semver_compatible("1.1.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.0"));
        assert!(!semver_compatible("garbage", "0.1.0"));
        assert_eq!(compatible_range("0.1.0"), "0.1.x");
    }

    #[test]
    fn refuses_a_component_without_the_interface() {
        let err = check_exports(["wasi:cli/run@0.2.0"].into_iter()).unwrap_err();
        assert!(err.to_string().contains("wasi:cli/run@0.2.0"));
    }
}
