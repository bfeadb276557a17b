//! Hands the resolved apalis and apalis-redis versions (from Cargo.lock) to the program, so
//! the JSON line names the version that was built.
fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (krate, var) in [
        ("apalis", "APALIS_VERSION"),
        ("apalis-redis", "APALIS_REDIS_VERSION"),
    ] {
        let header = format!("name = \"{krate}\"\nversion = \"");
        let version = lock
            .find(&header)
            .map(|at| &lock[at + header.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?");
        println!("cargo:rustc-env={var}={version}");
    }
}
