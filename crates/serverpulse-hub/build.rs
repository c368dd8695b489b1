//! Puts the dashboard's front-end files where `include_bytes!` finds them.
//!
//! Third-party libraries (htmx, uPlot) come from npm as `web/package-lock.json` pins
//! them; when `web/node_modules` lacks them, `npm ci` fetches them (so a clean `cargo
//! build` needs nothing but npm). They are copied into `OUT_DIR` beside our own files, and
//! a hash of everything becomes `ASSET_VERSION`, which asset URLs carry so browsers can
//! cache them for good.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (file under web/, name served under /assets/)
const VENDOR: [(&str, &str); 3] = [
    ("node_modules/htmx.org/dist/htmx.min.js", "htmx.min.js"),
    ("node_modules/uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
    ("node_modules/uplot/dist/uPlot.min.css", "uPlot.min.css"),
];
const OWN: [&str; 2] = ["app.css", "app.js"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=web/package-lock.json");
    for own in OWN {
        println!("cargo:rerun-if-changed=web/{own}");
    }

    if VENDOR.iter().any(|(path, _)| !web.join(path).is_file()) {
        install_packages(&web);
    }

    let mut hash = Fnv::new();
    for (path, name) in VENDOR {
        println!("cargo:rerun-if-changed=web/{path}");
        copy(&web.join(path), &out.join(name), &mut hash);
    }
    for own in OWN {
        copy(&web.join(own), &out.join(own), &mut hash);
    }
    println!("cargo:rustc-env=ASSET_VERSION={:012x}", hash.0 & 0xffff_ffff_ffff);
}

fn install_packages(web: &Path) {
    let status = Command::new("npm")
        .args(["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(web)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            panic!("`npm ci` in {} failed ({status}); the dashboard's libraries come from npm", web.display())
        }
        Err(e) => panic!("cannot run npm ({e}): building the hub needs Node.js and npm for the dashboard's libraries"),
    }
}

fn copy(from: &Path, to: &Path, hash: &mut Fnv) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    hash.write(&bytes);
    std::fs::write(to, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", to.display()));
}

/// FNV-1a, 64 bits: enough to tell builds' assets apart, and no build dependency.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
