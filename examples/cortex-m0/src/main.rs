//! fusedprop inference on a Cortex-M0 without FPU: a 4-16-8-3 network (tanh, ReLU, softmax)
//! trained on the host and baked into flash (`src/model.rs`, a `static` built with `const fn`s)
//! classifies the 30 Iris test rows with `predict_one`. The program fails unless every class
//! equals the one the host build gave (`model::TEST_CLASSES`). It reports static RAM and
//! peak stack over semihosting and exits QEMU (`microbit`) with status 0 or 1.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};

mod model;
mod stack;

mod iris {
    include!(concat!(env!("OUT_DIR"), "/iris_test.rs"));
}

extern "C" {
    static __sdata: u32;
    static __euninit: u32;
}

/// A panic exits QEMU with failure, without formatting its message (which would cost flash).
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[entry]
fn main() -> ! {
    stack::paint();

    // The measured work: classify the test rows with the model in flash.
    let mut same = 0u32;
    let mut right = 0u32;
    let mut failed = false;
    for ((x10, &want), &label) in iris::TEST_X10
        .iter()
        .zip(&model::TEST_CLASSES)
        .zip(&iris::TEST_Y)
    {
        // Bit for bit the f32 of the CSV's decimal (see build.rs).
        let x = x10.map(|t| f32::from(t) / 10.0);
        match model::MODEL.predict_one(&x) {
            Ok(c) => {
                same += u32::from(c == want);
                right += u32::from(c == u32::from(label));
            }
            Err(_) => failed = true,
        }
    }
    let peak = stack::peak_used();

    let n = iris::TEST_X10.len() as u32;
    let sdata = core::ptr::addr_of!(__sdata) as usize;
    let euninit = core::ptr::addr_of!(__euninit) as usize;
    let ok = !failed && same == n;
    print(&[Str(
        "fusedprop on Cortex-M0 (no FPU): 4-16-8-3 tanh/relu/softmax model in flash\n",
    )]);
    print(&[
        Str("classes equal to the host build's: "),
        Int(same),
        Str("/"),
        Int(n),
        Str("; labels right: "),
        Int(right),
        Str("/"),
        Int(n),
        Str("\n"),
    ]);
    print(&[
        Str("static RAM (.data+.bss+.uninit): "),
        Int((euninit - sdata) as u32),
        Str(" bytes\n"),
    ]);
    print(&[Str("peak stack used: "), Int(peak as u32), Str(" bytes\n")]);
    print(&[Str(if ok {
        "RESULT: PASS\n"
    } else {
        "RESULT: FAIL\n"
    })]);
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::bkpt();
    }
}

/// A piece of a line for [`print`].
enum Piece<'a> {
    Str(&'a str),
    Int(u32),
}
use Piece::{Int, Str};

/// Writes the pieces to the host's stdout, integers in decimal: no `core::fmt` (about 1 KB).
fn print(pieces: &[Piece]) {
    let Ok(mut out) = hio::hstdout() else { return };
    for p in pieces {
        match p {
            Str(s) => {
                let _ = out.write_all(s.as_bytes());
            }
            Int(v) => {
                // Digits by subtracting powers of ten: the Cortex-M0 has no divide
                // instruction, and the library division is 400 bytes.
                let mut v = *v;
                let mut started = false;
                for p in [
                    1_000_000_000,
                    100_000_000,
                    10_000_000,
                    1_000_000,
                    100_000,
                    10_000,
                    1_000,
                    100,
                    10,
                    1,
                ] {
                    let mut d = b'0';
                    while v >= p {
                        v -= p;
                        d += 1;
                    }
                    if started || d > b'0' || p == 1 {
                        started = true;
                        let _ = out.write_all(&[d]);
                    }
                }
            }
        }
    }
}
