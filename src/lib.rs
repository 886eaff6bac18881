#![doc = include_str!("../README.md")]
// The wasm the npm package ships is built with the `package` feature: without std, so that
// std's panic machinery (and the `core::fmt` it drags in through trait objects) is not in
// the download; a panic aborts (traps), which the JavaScript driver turns into a typed
// error for every pending call. Native builds and the wasm tests keep std.
#![cfg_attr(all(feature = "package", target_arch = "wasm32"), no_std)]

extern crate alloc;

pub mod core;

pub mod boundary;

/// What std's prelude gives and `no_std` does not.
mod prelude {
    #[allow(unused_imports)]
    pub use alloc::{
        borrow::ToOwned,
        boxed::Box,
        string::{String, ToString},
        vec,
        vec::Vec,
    };
}

#[cfg(all(feature = "package", target_arch = "wasm32"))]
mod package {
    /// A panic is a bug: trap at once, without formatting a message nobody can read.
    #[panic_handler]
    fn panic(_: &::core::panic::PanicInfo) -> ! {
        ::core::arch::wasm32::unreachable()
    }

    // One thread, and a small heap of short-lived strings: a free-list allocator of a few
    // hundred bytes instead of dlmalloc's several kilobytes (figures in the README).
    // SAFETY: wasm32-unknown-unknown without the atomics feature runs on one thread.
    #[global_allocator]
    static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
        unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
}
