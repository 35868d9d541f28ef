//! Configuration parsing and validation (`switchyard::config::parse_with_env`, what
//! `config::parse` runs) over arbitrary text, with a fixed environment so every input behaves
//! the same on every machine. Property: no panic; every input is a config or an error whose
//! message (which names the file, the field and the fix) can be written.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "GATEWAY_ADMIN_TOKEN" => Some("fuzz-token".into()),
        "FUZZ_PORT" => Some("19092".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = switchyard::config::parse_with_env("fuzz.yaml", text, &env) {
        std::hint::black_box(e.to_string());
    }
});
