//! `explore validate` passes on the shipped files and fails when a price changes.

use std::process::Command;

fn validate(extra: &[&str]) -> (Option<i32>, String) {
    let o =
        Command::new(env!("CARGO_BIN_EXE_explore")).arg("validate").args(extra).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn validate_passes_on_main() {
    let (code, out) = validate(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("72 checks, 72 passed, 0 failed"), "{out}");
}

#[test]
fn validate_fails_when_a_securenn_price_moves() {
    let dir = std::env::temp_dir().join(format!("explore-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = explore::spec::protocol::SECURENN_TOML;
    // One element more from P2 per Mul; and ring elements one bit wider.
    for (name, changed) in
        [("mul.toml", table.replace("p2 = { l = 1 }", "p2 = { l = 2 }")), ("ring.toml", table.replace("ring_bits = 64", "ring_bits = 65"))]
    {
        assert_ne!(changed, table);
        let path = dir.join(name);
        std::fs::write(&path, changed).unwrap();
        let (code, out) = validate(&["--protocol", path.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{name}: {out}");
        assert!(out.contains("FAIL  model = simulator"), "{name}: {out}");
    }
}
