// rust-embed compiles in the files it finds under console/; a file added
// there later must rebuild the crate too, not only an edited one.
fn main() {
    println!("cargo:rerun-if-changed=console");
}
