//! Checks that libtorch is where `.cargo/config.toml` says (a clear message instead of a wall of
//! linker errors), and gives every binary and test an rpath to it so they run with no
//! environment variables.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => match std::env::var("LIBTORCH") {
            Ok(dir) => PathBuf::from(dir).join("lib"),
            Err(_) => fail("LIBTORCH is not set"),
        },
    };
    let cpu = lib.join("libtorch_cpu.so");
    println!("cargo:rerun-if-changed={}", cpu.display());
    if !cpu.exists() {
        fail(&format!(
            "libtorch is missing: {} does not exist",
            cpu.display()
        ));
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

fn fail(what: &str) -> ! {
    eprintln!("error: {what}. Run scripts/setup.sh to lay out libtorch 2.13.0 in .libtorch/.");
    std::process::exit(1);
}
