//! Rebuilds the api when the console's built assets change.
//!
//! `src/console.rs` embeds `console/dist` at compile time. rust-embed makes cargo notice when an
//! embedded file changes or disappears, but not when files appear: a console built after the
//! api (or rebuilt with new content-hashed names) would leave the binary serving the old one.
//! Watching the folder fixes that; while it does not exist, watch `console/` for it to appear.

fn main() {
    if std::path::Path::new("../console/dist").is_dir() {
        println!("cargo::rerun-if-changed=../console/dist");
    } else {
        println!("cargo::rerun-if-changed=../console");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
