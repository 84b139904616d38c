//! Links libtiff (4.5 or newer, for per-handle error handlers and
//! allocation limits). Debian's `libtiff-dev` provides it; `scripts/ensure-deps.sh`
//! installs it.

fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("4.5.0")
        .probe("libtiff-4")
    {
        panic!(
            "easel-render needs libtiff 4.5 or newer with its pkg-config file \
             (Debian/Ubuntu: apt-get install libtiff-dev pkg-config, which \
             scripts/ensure-deps.sh does): {e}"
        );
    }
}
