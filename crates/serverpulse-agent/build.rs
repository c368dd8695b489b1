//! Links the agent as a position-dependent executable: the linker then resolves the
//! pointers in the binary's static tables (TLS roots, regex and Unicode tables) at link
//! time, so the loader does not rewrite — and so dirty and make resident — megabytes of
//! pages at every start. Measured: see docs/benchmarks.md (agent footprint).

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux") {
        println!("cargo:rustc-link-arg-bin=serverpulse-agent=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
