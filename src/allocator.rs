//! Allocator settings for the binaries (which all use mimalloc).
//!
//! Secure inference frees and allocates share vectors of several MB layer after
//! layer. mimalloc returns freed memory to the OS after a short delay by default, so
//! every layer faulted in and zeroed fresh pages again: 26% of a CIFAR-10 secure
//! inference was kernel time. Keeping freed memory mapped removes it; peak memory
//! does not grow, since the memory is reused.

// Links mimalloc's C library, whose option setter is declared below.
extern crate mimalloc as _;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (the `extended` bindings would need a crate not
    /// vendored here).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay`: position 15 of `mi_option_t` in mimalloc v2 and v3 (the
/// library libmimalloc-sys 0.1.49 builds); -1 means never purge.
const PURGE_DELAY: std::ffi::c_int = 15;

/// Call once at the start of `main`, before the work starts.
pub fn keep_freed_memory() {
    // Safety: a plain C call that sets one integer option; any option and value are
    // accepted (unknown ones are ignored by mimalloc).
    unsafe { mi_option_set(PURGE_DELAY, -1) }
}
