//! fusedprop on a Cortex-M4F: runs `workload::run` under QEMU (mps2-an386) or on
//! a real board, reports peak stack / static RAM over semihosting, and exits
//! with status 0 (all checks passed) or 1 (check failed or panic).
#![no_std]
#![no_main]

use cortex_m::peripheral::scb::FpuAccessMode;
use cortex_m::peripheral::SCB;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _; // prints the panic message, then exits with failure

mod stack;
mod workload;

extern "C" {
    static __sdata: u32;
    static __euninit: u32;
}

const PROBE_BYTES: usize = 8192;

/// Touches a `PROBE_BYTES` stack buffer (not optimised away thanks to black_box).
#[inline(never)]
fn stack_probe() -> u8 {
    let mut buf = [0u8; PROBE_BYTES];
    let buf = core::hint::black_box(&mut buf);
    buf[0] = 1;
    buf[PROBE_BYTES - 1] = 2;
    buf.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn stack_self_test() -> bool {
    stack::paint();
    let depth = stack::top() - stack::sp();
    core::hint::black_box(stack_probe());
    let with_probe = stack::peak_used();
    stack::paint();
    let after_repaint = stack::peak_used();
    hprintln!(
        "stack self-test: depth {} B, after {} B probe frame peak {} B, after re-paint {} B",
        depth,
        PROBE_BYTES,
        with_probe,
        after_repaint
    );
    with_probe >= depth + PROBE_BYTES
        && with_probe <= depth + PROBE_BYTES + 256
        && after_repaint <= depth + 64
}

#[entry]
fn main() -> ! {
    // First thing: paint the unused stack so peak_used() covers everything below.
    stack::paint();
    let sp_at_paint = stack::sp();

    // cortex-m-rt's Reset handler sets CPACR.CP10/CP11 on *-eabihf targets
    // (cfg has_fpu); without that the first float instruction would fault.
    let fpu_on = matches!(SCB::fpu_access_mode(), FpuAccessMode::Enabled);

    let result = workload::run();

    let peak = stack::peak_used(); // measure before printing (printing uses stack too)

    // Addresses of linker symbols (never dereferenced).
    let sdata = core::ptr::addr_of!(__sdata) as usize;
    let euninit = core::ptr::addr_of!(__euninit) as usize;
    hprintln!("FPU (CPACR CP10/CP11) enabled: {}", fpu_on);
    hprintln!(
        "static RAM (.data+.bss+.uninit): {} bytes; stack region: {} bytes ({:#010x}..{:#010x})",
        euninit - sdata,
        stack::available(),
        stack::bottom(),
        stack::top()
    );
    hprintln!(
        "peak stack used: {} bytes (SP depth at paint: {} bytes)",
        peak,
        stack::top() - sp_at_paint
    );

    // Self-test of the painting itself: a frame with a known 8 KiB buffer must
    // raise the measured peak to at least (current depth + 8 KiB), and a fresh
    // paint() must bring it back down to about the current depth.
    let probe_ok = stack_self_test();

    match result {
        Ok(()) if !probe_ok => {
            hprintln!("RESULT: FAIL: stack painting self-test");
            debug::exit(debug::EXIT_FAILURE);
        }
        Ok(()) if fpu_on => {
            hprintln!("RESULT: PASS");
            debug::exit(debug::EXIT_SUCCESS);
        }
        Ok(()) => {
            hprintln!("RESULT: FAIL: FPU not enabled");
            debug::exit(debug::EXIT_FAILURE);
        }
        Err(e) => {
            hprintln!("RESULT: FAIL: {}", e);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    // Only reached if a debugger resumes after the exit request.
    loop {
        cortex_m::asm::bkpt();
    }
}
