//! Loading components: the compiled-form cache, and the components the host must refuse.

use attune_timer::component::{CompileCache, LoadError, TimerRuntime, EMBEDDED_COMPONENT};

#[test]
fn the_compiled_form_is_cached_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::in_dir(dir.path().join("cache"));
    let first = TimerRuntime::builder()
        .cache(cache.clone())
        .embedded()
        .unwrap();

    let entries: Vec<_> = std::fs::read_dir(cache.dir().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one compiled component: {entries:?}");
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&first.info().content_hash) && name.ends_with(".cwasm"),
        "keyed by content hash: {name}"
    );

    let second = TimerRuntime::builder()
        .cache(cache.clone())
        .embedded()
        .unwrap();
    assert_eq!(first.info(), second.info());
}

#[test]
fn a_corrupt_cache_entry_is_replaced_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::in_dir(dir.path());
    let good = TimerRuntime::builder()
        .cache(cache.clone())
        .embedded()
        .unwrap();
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&entry, b"not a compiled component").unwrap();

    let again = TimerRuntime::builder().cache(cache).embedded().unwrap();
    assert_eq!(good.info(), again.info());
    let rewritten = std::fs::read(&entry).unwrap();
    assert_ne!(
        rewritten, b"not a compiled component",
        "the entry was rewritten"
    );
}

#[test]
fn the_embedded_component_describes_itself() {
    let rt = TimerRuntime::embedded().unwrap();
    let info = rt.info();
    assert_eq!(info.wit_version, "0.1.0");
    for r in [
        "core.intervaltimer",
        "core.crontimer",
        "core.datetimetimer",
        "core.rruletimer",
    ] {
        assert!(info.handles(r), "handles {r}: {info:?}");
    }
    assert_eq!(info.content_hash.len(), 64);
    assert!(
        EMBEDDED_COMPONENT.len() < 2 << 20,
        "release component stays small"
    );
}

#[test]
fn an_incompatible_wit_version_is_refused_with_both_versions_named() {
    let err = TimerRuntime::from_file(env!("FUTURE_TIMER_WASM")).unwrap_err();
    assert!(
        matches!(err, LoadError::IncompatibleVersion { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("attune:timer@0.2.0"), "{msg}");
    assert!(msg.contains("attune:timer@0.1.0"), "{msg}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let err = TimerRuntime::builder().bytes(b"\0asm garbage").unwrap_err();
    assert!(matches!(err, LoadError::Compile(_)), "{err:?}");
    let err = TimerRuntime::from_file("/nonexistent/timer.wasm").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/timer.wasm"), "{err}");
}
