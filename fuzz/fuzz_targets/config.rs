//! Fuzz target `config`: arbitrary text as `keypulse.toml`, its `[core]` table into
//! [`CoreConfig`] and through `CoreConfig::validate`, as the service's loader does
//! (src/config.rs parses the file into a TOML table, then deserializes and validates;
//! the `[core]` part of both is the core crate's). No panic on any text; a configuration
//! that validates survives a round trip through TOML unchanged.
#![no_main]

use keypulse_core::CoreConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    let core = table
        .get("core")
        .cloned()
        .unwrap_or(toml::Value::Table(toml::Table::new()));
    let Ok(cfg) = core.try_into::<CoreConfig>() else {
        return;
    };
    if let Err(e) = cfg.validate() {
        // The error names a key of the `[core]` section.
        assert!(e.to_string().starts_with("core."), "{e}");
        return;
    }
    let back = toml::to_string(&cfg).expect("a valid configuration serializes");
    let again: CoreConfig = toml::from_str(&back).expect("and parses back");
    assert_eq!(again, cfg, "{back}");
});
