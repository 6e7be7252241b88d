//! Rebuilds the binary when a page under `web/` changes, is added or is removed (the
//! pages are embedded in it).

fn main() {
    println!("cargo:rerun-if-changed=web");
}
