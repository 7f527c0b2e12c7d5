//! Peak-stack measurement by stack painting (as in `examples/cortex-m`, with Armv6-M's
//! Thumb-1 instructions in `paint`).
//!
//! cortex-m-rt (>= 0.7.4) places the stack at the top of RAM and exports:
//! * `_stack_start`: the initial SP = highest stack address (end of RAM by default),
//! * `_stack_end`: lowest usable stack address = end of `.bss`/`.uninit`
//!   (same value as `__sheap`; this program has no heap).
//!
//! [`paint`] fills every word in `[_stack_end, SP)` with [`PATTERN`]; later,
//! [`peak_used`] scans upwards from `_stack_end` for the first word that is no
//! longer the pattern. Everything above it has been written by some stack frame
//! (or an exception entry), so `_stack_start - addr` is the peak stack depth
//! since reset (frames that were live when `paint` ran are included, since they
//! lie above the painted range).
//!
//! Caveats: a frame that happens to store exactly `PATTERN` at its lowest word
//! is under-counted by one word; if the result equals [`available`], the stack
//! reached `.bss` (overflow or nearly so).
//!
//! `paint` is written in inline asm so that it uses no stack of its own while
//! writing below SP; both functions are `#[inline(always)]` so no extra frame
//! is pushed into the region being measured.

use core::arch::asm;
use core::ptr;

/// Fill value for unused stack (same as cortex-m-rt's `paint-stack` feature).
pub const PATTERN: u32 = 0xCCCC_CCCC;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// Highest stack address (initial SP).
#[inline(always)]
pub fn top() -> usize {
    // Taking the address of an extern static is safe (Rust >= 1.82).
    ptr::addr_of!(_stack_start) as usize
}

/// Lowest usable stack address (end of statically allocated RAM).
#[inline(always)]
pub fn bottom() -> usize {
    ptr::addr_of!(_stack_end) as usize
}

/// Paint all currently unused stack, `[_stack_end, SP)`, with [`PATTERN`].
/// May be called again later to re-arm the measurement (e.g. per phase).
#[inline(always)]
pub fn paint() {
    // SAFETY: the range lies strictly below the current SP and at/above the
    // end of .bss/.uninit, so it holds no live data; the loop runs entirely in
    // registers and pushes nothing. Exceptions may push frames below SP while
    // this runs, which only removes paint (over-estimates, never corrupts).
    unsafe {
        asm!(
            "mov {end}, sp",
            "2:",
            "cmp {p}, {end}",
            "bhs 3f",
            "str {pat}, [{p}]",
            "adds {p}, #4",
            "b 2b",
            "3:",
            p = inout(reg) bottom() => _,
            end = out(reg) _,
            pat = in(reg) PATTERN,
            options(nostack),
        );
    }
}

/// Peak stack usage in bytes since reset, measured as described in the module docs.
#[inline(always)]
pub fn peak_used() -> usize {
    let (lo, hi) = (bottom(), top());
    let mut p = lo;
    while p < hi {
        // SAFETY: p is a 4-aligned address inside RAM between _stack_end and
        // _stack_start; volatile so the compiler cannot assume the contents.
        if unsafe { ptr::read_volatile(p as *const u32) } != PATTERN {
            break;
        }
        p += 4;
    }
    hi - p
}
