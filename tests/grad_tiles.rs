//! `Mlp::gradients` against plain f64 loops, for shapes that exercise every register tile of
//! the parameter-gradient kernel (2 x 8 and 1 x 16 runs, 4 x 4 and edge tiles) and batches of
//! one and several tiles.

use fusedprop::{Gradients, Mlp, Workspace, rng::SplitMix64};

#[allow(
    clippy::needless_range_loop,
    reason = "the oracle is written as plain index loops on purpose"
)]
fn check<const I: usize, const H: usize, const O: usize>(n: usize, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let x: Vec<[f32; I]> = (0..n)
        .map(|_| std::array::from_fn(|_| rng.uniform(1.0)))
        .collect();
    let y: Vec<u32> = (0..n).map(|_| (rng.next_u64() % O as u64) as u32).collect();
    let m: Box<Mlp<I, H, O>> = Box::new(Mlp::new(seed));
    let mut g: Box<Gradients<I, H, O>> = Box::new(Gradients::ZERO);
    let mut ws: Box<Workspace<I, H, O>> = Box::new(Workspace::ZERO);
    m.gradients(&x, &y, &mut g, &mut ws).unwrap();

    let (w1, b1) = (m.hidden().weights(), m.hidden().bias());
    let (w2, b2) = (m.output().weights(), m.output().bias());
    let mut dw1 = vec![[0.0f64; I]; H];
    let mut db1 = [0.0f64; H];
    let mut dw2 = vec![[0.0f64; H]; O];
    let mut db2 = [0.0f64; O];
    for (xs, &l) in x.iter().zip(&y) {
        let a: Vec<f64> = (0..H)
            .map(|j| {
                let z = f64::from(b1[j])
                    + (0..I)
                        .map(|k| f64::from(w1[j][k]) * f64::from(xs[k]))
                        .sum::<f64>();
                z.max(0.0)
            })
            .collect();
        let z: Vec<f64> = (0..O)
            .map(|j| f64::from(b2[j]) + (0..H).map(|k| f64::from(w2[j][k]) * a[k]).sum::<f64>())
            .collect();
        let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - mx).exp()).sum();
        let dz: Vec<f64> = (0..O)
            .map(|j| ((z[j] - mx).exp() / s - f64::from(u8::from(j == l as usize))) / n as f64)
            .collect();
        for j in 0..O {
            db2[j] += dz[j];
            for k in 0..H {
                dw2[j][k] += dz[j] * a[k];
            }
        }
        for k in 0..H {
            let da: f64 = (0..O).map(|j| f64::from(w2[j][k]) * dz[j]).sum();
            let dh = if a[k] > 0.0 { da } else { 0.0 };
            db1[k] += dh;
            for i in 0..I {
                dw1[k][i] += dh * f64::from(xs[i]);
            }
        }
    }
    let close = |got: f32, want: f64, what: &str| {
        assert!(
            (f64::from(got) - want).abs() <= 1e-5 + 1e-4 * want.abs(),
            "{I}-{H}-{O} x{n} {what}: {got} vs {want}"
        );
    };
    for j in 0..H {
        close(g.hidden.b[j], db1[j], "db1");
        for k in 0..I {
            close(g.hidden.w[j][k], dw1[j][k], "dw1");
        }
    }
    for j in 0..O {
        close(g.output.b[j], db2[j], "db2");
        for k in 0..H {
            close(g.output.w[j][k], dw2[j][k], "dw2");
        }
    }
}

#[test]
fn gradients_match_f64_over_tile_shapes() {
    check::<4, 32, 3>(120, 1);
    check::<33, 17, 5>(300, 2);
    check::<64, 33, 10>(129, 3);
    check::<80, 24, 7>(17, 4);
    check::<9, 16, 2>(1, 5);
}
